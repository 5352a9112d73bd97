/**
 * Shared set-up for the HTTP decision API end-to-end tests: a real ExecLayer behind the real handler on an
 * ephemeral loopback port, an API-key authenticator (sha256-hashed keys), and a recorder that keeps every
 * event so tests can assert what was recorded.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AuthResult,
  createDecisionApiServer,
  type DecisionApiOptions,
} from '../src/enforce/http/index.js';
import { createExecLayer, type ExecLayer } from '../src/runtime/exec-layer.js';
import type { AuditEvent, Recorder } from '../src/types.js';

/** Keeps every event in memory, in order. */
export class CollectingRecorder implements Recorder {
  readonly events: AuditEvent[] = [];
  async record(event: AuditEvent): Promise<void> {
    this.events.push(event);
  }
  decisions() {
    return this.events.filter((e) => e.type === 'decision');
  }
}

/** Bearer API keys, stored as sha256 hex digests, each mapped to an agent and optional roles. */
export function apiKeyAuthenticator(
  keys: Record<string, { agent: string; roles?: string[] }>,
): (req: IncomingMessage) => Promise<AuthResult> {
  const byDigest = new Map(
    Object.entries(keys).map(([k, v]) => [createHash('sha256').update(k).digest('hex'), v]),
  );
  return async (req) => {
    const h = req.headers.authorization;
    if (h === undefined || !h.startsWith('Bearer '))
      return { ok: false, status: 401, reason: 'missing bearer token' };
    const who = byDigest.get(createHash('sha256').update(h.slice(7)).digest('hex'));
    if (who === undefined) return { ok: false, status: 401, reason: 'unknown api key' };
    return who.roles === undefined
      ? { ok: true, agent: who.agent }
      : { ok: true, agent: who.agent, roles: who.roles };
  };
}

export interface RunningApi {
  url: string;
  layer: ExecLayer;
  recorder: CollectingRecorder;
  server: Server;
  close(): Promise<void>;
}

/** Starts a real ExecLayer and the decision API server on 127.0.0.1:<ephemeral>. */
export async function startApi(
  policy: string | Record<string, unknown>,
  keys: Record<string, { agent: string; roles?: string[] }>,
  extra: Partial<Omit<DecisionApiOptions, 'authenticate'>> = {},
): Promise<RunningApi> {
  const recorder = new CollectingRecorder();
  const layer = await createExecLayer({ policy, recorder });
  const server = createDecisionApiServer(layer, { authenticate: apiKeyAuthenticator(keys), ...extra });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    layer,
    recorder,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await layer.close();
    },
  };
}

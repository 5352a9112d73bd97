/**
 * Shared set-up for the HTTP decision API end-to-end tests: a real ExecLayer behind the real handler on an
 * ephemeral loopback port, the real API-key authenticator, and a recorder that keeps every event so tests
 * can assert what was recorded.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAuthenticator, hashApiKey } from '../src/enforce/auth.js';
import { createDecisionApiServer, type DecisionApiOptions } from '../src/enforce/http/index.js';
import { createExecLayer, type ExecLayer, type ExecLayerOptions } from '../src/runtime/exec-layer.js';
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

/** One agent that may read reports, export small ones (a CEL condition) and share only with approval. */
export const REPORT_POLICY = {
  version: 1,
  agents: { 'report-bot': { owner: 'data@acme.com', roles: ['reporter'] } },
  roles: {
    reporter: [
      { id: 'read-reports', allow: 'reports.read' },
      { id: 'small-exports', allow: 'reports.export', when: { cel: 'args.rows <= 100' } },
      { id: 'share-needs-approval', ask: 'reports.share' },
    ],
  },
};

export interface RunningApi {
  url: string;
  layer: ExecLayer;
  recorder: CollectingRecorder;
  server: Server;
  close(): Promise<void>;
}

/**
 * Starts a real ExecLayer and the decision API server on 127.0.0.1:<ephemeral>. `keys` maps API keys to
 * agents; an agent whose key has the role `pdp-client` may ask about any subject. `stores` adds backends
 * beside the collecting recorder (a limit store for policies with limits).
 */
export async function startApi(
  policy: string | Record<string, unknown>,
  keys: Record<string, { agent: string; roles?: string[] }>,
  extra: Partial<Omit<DecisionApiOptions, 'authenticate'>> = {},
  stores: Pick<ExecLayerOptions, 'limits' | 'sessions'> = {},
): Promise<RunningApi> {
  const recorder = new CollectingRecorder();
  const layer = await createExecLayer({ policy, recorder, ...stores });
  const authenticate = createAuthenticator(
    { apiKeys: Object.entries(keys).map(([key, v]) => ({ sha256: hashApiKey(key), agent: v.agent })) },
    { recorder, point: 'http' },
  );
  const pdpClients = Object.values(keys)
    .filter((v) => v.roles?.includes('pdp-client'))
    .map((v) => v.agent);
  const server = createDecisionApiServer(layer, { authenticate, pdpClients, ...extra });
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

/**
 * `/healthz`, `/readyz` and `/metrics` as a mountable handler. Health and readiness answer without a
 * credential (load balancers and orchestrators probe them) and say only what is up, never why in detail;
 * `/metrics` needs a credential with the `viewer`, `operator` or `admin` role, since its labels name
 * agents and tools.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../enforce/auth.js';
import type { ExecLayerMetrics } from './metrics.js';

/** One readiness check: its name, whether it passed, and a short word on why not. */
export interface ReadyCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface ObserveHandlerOptions {
  metrics?: ExecLayerMetrics;
  /** Identifies scrapers of `/metrics`. */
  authenticate: Authenticator;
  /** Runs the readiness checks (each bounded by `checkTimeoutMs`). */
  checks: Array<{ name: string; run: () => Promise<ReadyCheck | ReadyCheck[]> }>;
  /** Default 2000 ms: a check that does not answer in time fails. */
  checkTimeoutMs?: number;
}

const METRICS_ROLES = new Set(['viewer', 'operator', 'admin']);

/** Handles `/healthz`, `/readyz` and `/metrics` (GET and HEAD); resolves false for other paths. */
export function createObserveHandler(
  opts: ObserveHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const timeout = opts.checkTimeoutMs ?? 2000;
  return async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'application/json', JSON.stringify({ error: 'method_not_allowed' }), {
        allow: 'GET, HEAD',
      });
      return true;
    }
    if (path === '/healthz') {
      send(res, 200, 'application/json', JSON.stringify({ status: 'ok' }));
      return true;
    }
    if (path === '/readyz') {
      const checks = (await Promise.all(opts.checks.map((c) => runCheck(c, timeout)))).flat();
      const ready = checks.every((c) => c.ok);
      send(
        res,
        ready ? 200 : 503,
        'application/json',
        JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks }),
      );
      return true;
    }
    const who = await opts.authenticate(req);
    if (!who.ok) {
      send(res, 401, 'application/json', JSON.stringify({ error: 'unauthenticated', reason: who.reason }), {
        'www-authenticate': 'Bearer',
      });
      return true;
    }
    if (!who.roles?.some((r) => METRICS_ROLES.has(r))) {
      send(
        res,
        403,
        'application/json',
        JSON.stringify({
          error: 'forbidden',
          reason: 'reading metrics needs the viewer, operator or admin role',
        }),
      );
      return true;
    }
    if (!opts.metrics) {
      send(res, 404, 'application/json', JSON.stringify({ error: 'not_found' }));
      return true;
    }
    const { contentType, body } = await opts.metrics.scrape();
    send(res, 200, contentType, body);
    return true;
  };
}

async function runCheck(
  c: { name: string; run: () => Promise<ReadyCheck | ReadyCheck[]> },
  ms: number,
): Promise<ReadyCheck[]> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<ReadyCheck>((resolve) => {
    timer = setTimeout(() => resolve({ name: c.name, ok: false, detail: `no answer within ${ms} ms` }), ms);
  });
  try {
    // INVARIANT: every wait is bounded — a store that hangs makes the replica not ready, not the probe hang.
    const r = await Promise.race([c.run(), late]);
    return Array.isArray(r) ? r : [r];
  } catch (e) {
    return [{ name: c.name, ok: false, detail: e instanceof Error ? e.message.slice(0, 200) : 'failed' }];
  } finally {
    clearTimeout(timer);
  }
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

/**
 * Remote mode for the SDK: the same `authorize(action)` / `outcome(decision, o)` / `guard(fn, meta)`
 * surface as an in-process ExecLayer, backed by `POST /v1/decide` and `POST /v1/outcome` on an ExecLayer
 * server. Every call asks the server; nothing is cached, so a policy change or suspension applies to the
 * next call. Any failure (network, timeout, non-2xx, malformed answer) is a deny Decision with code
 * `internal_error` (`invalid_action` when the server refused the action itself as malformed): `authorize`
 * never throws.
 */
import { randomUUID } from 'node:crypto';
import { jsonDigest } from '../canonical-json.js';
import { denyDecision } from '../engine/deny.js';
import { messageOf } from '../errors.js';
import { ApprovalRequiredError, DeniedError } from '../runtime/errors.js';
import type { Action, Decision, DecisionCode, Effect, Json } from '../types.js';

// `execlayer/remote` needs nothing from the root: the types it speaks and the errors `guard` throws.
export type { Action, Decision, DecisionCode, Effect, Json };
export { ApprovalRequiredError, DeniedError };

export interface RemoteExecLayerOptions {
  /** Base URL of the ExecLayer server, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** API key sent as `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /** Per-call deadline in milliseconds (default 5000). A call past it is denied. */
  timeoutMs?: number;
}

/** The SDK surface backed by a remote ExecLayer server. */
export interface RemoteExecLayer {
  /** Asks the server; resolves to its Decision, or to a deny Decision when the server cannot answer. */
  authorize(action: Action): Promise<Decision>;
  /**
   * Reports the outcome of an allowed action (`POST /v1/outcome`): recorded on the server, linked to the
   * decision, and releases what its limits hold. Only the SHA-256 digest of `result`'s canonical JSON is
   * sent. Rejects when the server did not record it.
   */
  outcome(
    decision: Pick<Decision, 'id'>,
    o: { ok: boolean; error?: string; result?: unknown; durationMs: number },
  ): Promise<void>;
  /**
   * Returns a function that runs fn only when allowed (deny -> throws DeniedError; ask ->
   * ApprovalRequiredError) and reports its outcome, as the in-process `guard` does.
   */
  guard<A extends Record<string, Json>, R>(
    fn: (args: A) => Promise<R>,
    meta: { agent: string; tool: string; session?: string; onBehalfOf?: string },
  ): (args: A) => Promise<R>;
}

const EFFECTS: ReadonlySet<string> = new Set<Effect>(['allow', 'deny', 'ask']);
/** Largest decision body accepted from the server. */
const MAX_RESPONSE_BYTES = 1_048_576;

/** Creates the remote SDK client. No request is made until the first `authorize`. */
export function createRemoteExecLayer(opts: RemoteExecLayerOptions): RemoteExecLayer {
  const base = opts.url.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 5000;
  const headers = {
    'content-type': 'application/json',
    authorization: `Bearer ${opts.apiKey}`,
    accept: 'application/json',
  };

  /** POSTs `body` to `path`; the parsed JSON answer of a 2xx, or why there is none. */
  async function post(
    path: string,
    body: string,
  ): Promise<
    { ok: true; value: unknown } | { ok: false; why: string; cause?: unknown; status?: number; code?: string }
  > {
    const endpoint = `${base}${path}`;
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: { ...headers, 'x-request-id': randomUUID() },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      return {
        ok: false,
        why: timedOut
          ? `the decision server did not answer within ${timeoutMs} ms`
          : `the decision server at \`${endpoint}\` is unreachable`,
        cause: err,
      };
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      return { ok: false, why: 'the decision server response could not be read', cause: err };
    }
    if (!res.ok) {
      let detail = '';
      let code: string | undefined;
      try {
        const p = JSON.parse(text) as { detail?: unknown; code?: unknown };
        if (typeof p.detail === 'string') detail = `: ${p.detail}`;
        if (typeof p.code === 'string') code = p.code;
      } catch {
        // Not a problem document; the status alone is reported.
      }
      const why = `the decision server answered HTTP ${res.status}${detail}`;
      return code === undefined
        ? { ok: false, why, status: res.status }
        : { ok: false, why, status: res.status, code };
    }
    if (text.length > MAX_RESPONSE_BYTES)
      return { ok: false, why: 'the decision server response is too large' };
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (err) {
      return { ok: false, why: 'the decision server response is not JSON', cause: err };
    }
  }

  async function authorize(action: Action): Promise<Decision> {
    let body: string;
    try {
      body = JSON.stringify(action);
    } catch (err) {
      return denied('the action could not be serialised as JSON', err);
    }
    // INVARIANT: fail closed — an unreachable, slow or failing decision server means deny, and only a
    // well-formed Decision is believed.
    const r = await post('/v1/decide', body);
    if (!r.ok) {
      // The server refused the action itself as malformed: the deny every in-process point gives for it.
      const code = r.status === 400 && r.code === 'invalid_request' ? 'invalid_action' : 'internal_error';
      return denied(r.why, r.cause, code);
    }
    return isDecision(r.value) ? r.value : denied('the decision server response is not a decision');
  }

  async function outcome(
    decision: Pick<Decision, 'id'>,
    o: { ok: boolean; error?: string; result?: unknown; durationMs: number },
  ): Promise<void> {
    const report: Record<string, Json> = { decision: decision.id, ok: o.ok, durationMs: o.durationMs };
    if (o.error !== undefined) report.error = o.error.slice(0, 2000);
    if (o.result !== undefined) {
      // Only the digest leaves this process; a result with no JSON form is reported without one.
      try {
        report.resultDigest = jsonDigest(o.result);
      } catch {
        // no digest
      }
    }
    const r = await post('/v1/outcome', JSON.stringify(report));
    if (!r.ok) {
      throw new Error(
        `the outcome of decision ${decision.id} was not recorded: ${r.why}${causeText(r.cause)}`,
      );
    }
  }

  function guard<A extends Record<string, Json>, R>(
    fn: (args: A) => Promise<R>,
    meta: { agent: string; tool: string; session?: string; onBehalfOf?: string },
  ): (args: A) => Promise<R> {
    return async (args: A) => {
      const action: Action = { agent: meta.agent, tool: meta.tool, args };
      if (meta.session !== undefined) action.session = meta.session;
      if (meta.onBehalfOf !== undefined) action.onBehalfOf = meta.onBehalfOf;
      const d = await authorize(action);
      if (d.effect === 'ask') throw new ApprovalRequiredError(d);
      if (d.effect !== 'allow') throw new DeniedError(d);
      // As in-process: the outcome (success or error, result digest, duration) goes on record, linked to
      // the decision, and frees what the decision's limits hold (concurrency slots).
      const t0 = performance.now();
      let result: R;
      try {
        result = await fn(args);
      } catch (e) {
        await outcome(d, {
          ok: false,
          error: messageOf(e),
          durationMs: performance.now() - t0,
        });
        throw e;
      }
      await outcome(d, { ok: true, result, durationMs: performance.now() - t0 });
      return result;
    };
  }

  return { authorize, outcome, guard };
}

/** ` (<message>)` of an Error that has one, else nothing. */
function causeText(cause: unknown): string {
  return cause instanceof Error && cause.message ? ` (${cause.message})` : '';
}

function denied(reason: string, cause?: unknown, code: DecisionCode = 'internal_error'): Decision {
  return denyDecision(code, `${reason}${causeText(cause)}; denied`);
}

function isDecision(v: unknown): v is Decision {
  if (v === null || typeof v !== 'object') return false;
  const d = v as Record<string, unknown>;
  return (
    typeof d.id === 'string' &&
    typeof d.effect === 'string' &&
    EFFECTS.has(d.effect) &&
    (d.rule === null || typeof d.rule === 'string') &&
    typeof d.reason === 'string' &&
    typeof d.policy === 'string' &&
    (d.mode === 'enforce' || d.mode === 'shadow') &&
    typeof d.code === 'string'
  );
}

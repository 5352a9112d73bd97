/**
 * Remote mode for the SDK: the same `authorize(action)` / `guard(fn, meta)` surface as an in-process
 * ExecLayer, backed by `POST /v1/decide` on an ExecLayer server. Every call asks the server; nothing is
 * cached, so a policy change or suspension applies to the next call. Any failure (network, timeout,
 * non-2xx, malformed answer) is a deny Decision with code `internal_error`: `authorize` never throws.
 */
import { randomUUID } from 'node:crypto';
import { ApprovalRequiredError, DeniedError } from '../runtime/errors.js';
import type { Action, Decision, DecisionCode, Effect, Json } from '../types.js';

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
  /** Returns a function that runs fn only when allowed: deny -> throws DeniedError; ask -> ApprovalRequiredError. */
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
  const endpoint = `${opts.url.replace(/\/+$/, '')}/v1/decide`;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const headers = {
    'content-type': 'application/json',
    authorization: `Bearer ${opts.apiKey}`,
    accept: 'application/json',
  };

  async function authorize(action: Action): Promise<Decision> {
    let body: string;
    try {
      body = JSON.stringify(action);
    } catch (err) {
      return denied('the action could not be serialised as JSON', err);
    }
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: { ...headers, 'x-request-id': randomUUID() },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      // INVARIANT: fail closed — an unreachable or slow decision server means deny.
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      return denied(
        timedOut
          ? `the decision server did not answer within ${timeoutMs} ms`
          : `the decision server at \`${endpoint}\` is unreachable`,
        err,
      );
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      return denied('the decision server response could not be read', err);
    }
    if (!res.ok) {
      let detail = '';
      try {
        const p = JSON.parse(text) as { detail?: unknown };
        if (typeof p.detail === 'string') detail = `: ${p.detail}`;
      } catch {
        // Not a problem document; the status alone is reported.
      }
      return denied(`the decision server answered HTTP ${res.status}${detail}`);
    }
    if (text.length > MAX_RESPONSE_BYTES) return denied('the decision server response is too large');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return denied('the decision server response is not JSON', err);
    }
    // INVARIANT: fail closed — only a well-formed Decision is believed; anything else is a deny.
    return isDecision(parsed) ? parsed : denied('the decision server response is not a decision');
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
      return fn(args);
    };
  }

  return { authorize, guard };
}

function denied(reason: string, cause?: unknown): Decision {
  const why = cause instanceof Error && cause.message ? ` (${cause.message})` : '';
  return {
    id: randomUUID(),
    effect: 'deny',
    rule: null,
    reason: `${reason}${why}; denied`,
    policy: '',
    mode: 'enforce',
    code: 'internal_error' satisfies DecisionCode,
  };
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

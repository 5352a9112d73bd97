/**
 * Makes a call wait for a human: polls an approval until it is decided, expires, or the wait times out,
 * reporting progress on the way (the MCP gateway turns progress into notifications).
 */
import type { Approval, ApprovalStore } from './types.js';

/** How a wait ended. Only `granted` lets the caller retry the call; everything else means no. */
export type WaitOutcome = 'granted' | 'denied' | 'expired' | 'used' | 'not_found' | 'timeout' | 'aborted';

/** Options for `waitForDecision`. */
export interface WaitOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Poll interval. Default 500 ms. */
  pollMs?: number;
  /** Called after each poll that is still pending. */
  onProgress?: (p: { elapsedMs: number; timeoutMs: number; approval: Approval }) => void;
  signal?: AbortSignal;
  /** Clock, for tests. */
  now?: () => number;
}

/** Result of `waitForDecision`. */
export interface WaitResult {
  outcome: WaitOutcome;
  approval?: Approval;
  /** Set when the last poll failed (the wait still fails closed: no grant). */
  error?: Error;
}

/** Waits until approval `id` leaves `pending`, or the timeout/abort. Never rejects. */
export async function waitForDecision(
  store: ApprovalStore,
  id: string,
  options: WaitOptions,
): Promise<WaitResult> {
  const now = options.now ?? Date.now;
  const start = now();
  const pollMs = Math.max(10, options.pollMs ?? 500);
  let last: Approval | undefined;
  let error: Error | undefined;
  for (;;) {
    if (options.signal?.aborted) return result('aborted', last, error);
    try {
      const a = await store.get(id, now());
      error = undefined;
      if (a === undefined) return { outcome: 'not_found' };
      last = a;
      if (a.status !== 'pending') return { outcome: a.status, approval: a };
      options.onProgress?.({ elapsedMs: now() - start, timeoutMs: options.timeoutMs, approval: a });
    } catch (err) {
      // A store hiccup is retried until the timeout; it never turns into a grant.
      error = err instanceof Error ? err : new Error(String(err));
    }
    const left = start + options.timeoutMs - now();
    if (left <= 0) return result('timeout', last, error);
    await sleep(Math.min(pollMs, left), options.signal);
  }
}

function result(outcome: WaitOutcome, approval: Approval | undefined, error: Error | undefined): WaitResult {
  const r: WaitResult = { outcome };
  if (approval !== undefined) r.approval = approval;
  if (error !== undefined) r.error = error;
  return r;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

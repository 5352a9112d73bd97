/**
 * The limit store contract: every backend (memory, SQLite, Redis) implements `LimitStore` and passes the
 * same contract suite (`contract.ts`).
 */
import type { Action, LimitSpec } from '../types.js';

/** One counter a ticket holds: enough to release a concurrency slot or refund a window. */
export interface TicketEntry {
  readonly kind: LimitSpec['kind'];
  /** Backend key of the counter (window included where the backend keys by window). */
  readonly key: string;
  /** What was added: 1 for calls/steps/concurrent, the argument value for sum. */
  readonly amount: number;
  /** Start of the fixed window the amount went into; 0 for steps and concurrent. */
  readonly window: number;
  /** Concurrency lease id (concurrent only). */
  readonly lease?: string;
}

/** What `consume` took. Hold it until the action finishes, then `release` it. */
export interface LimitTicket {
  readonly entries: readonly TicketEntry[];
  /** Set by `release`; a ticket is released at most once. */
  released: boolean;
}

/** Machine code of a failed consume. `invalid_action` and `evaluation_error` are DecisionCodes too. */
export type LimitFailureCode = 'limit_exceeded' | 'store_error' | 'invalid_action' | 'evaluation_error';

export type LimitResult =
  | { ok: true; ticket: LimitTicket }
  | {
      ok: false;
      limit: LimitSpec;
      /** Milliseconds until the limit can allow again; -1 when it will not reset (steps, oversize amount). */
      retryAfterMs: number;
      reason: string;
      code: LimitFailureCode;
    };

/** Options for `release`. */
export interface ReleaseOptions {
  /**
   * `true` when the action never ran: also give back the calls, sum and steps it consumed (only while
   * the same window is current). Without it only concurrency slots are freed, so a runtime that calls
   * `release(ticket)` after every action can never undo a rate or budget by accident.
   */
  refund?: boolean;
}

/** A backend that counts limit usage. All methods resolve; failures are results, never exceptions. */
export interface LimitStore {
  /** Atomically checks ALL specs and consumes them only if all pass (all-or-nothing). */
  consume(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): Promise<LimitResult>;
  /**
   * Frees the concurrency slots a ticket holds; with `{ refund: true }` also gives back what consume
   * took (the action never ran). Idempotent per ticket. Never rejects.
   */
  release(ticket: LimitTicket, options?: ReleaseOptions): Promise<void>;
  close(): Promise<void>;
}

/** Options every limit backend accepts. */
export interface LimitStoreOptions {
  /** A concurrency slot not released within this time is reclaimed (crashed holder). Default 15 min. */
  leaseMs?: number;
  /** Steps counters of a session idle this long are forgotten. Default 7 days. */
  stepsIdleMs?: number;
}

export const DEFAULT_LEASE_MS = 15 * 60_000;
export const DEFAULT_STEPS_IDLE_MS = 7 * 24 * 3_600_000;

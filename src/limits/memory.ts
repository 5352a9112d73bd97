/**
 * In-process limit store: one Map of counters. Atomic because the check-and-consume runs synchronously
 * on the one JavaScript thread. For a single process only; use SQLite or Redis to share limits.
 */
import type { Action, LimitSpec } from '../types.js';
import {
  amountOf,
  type CompiledLimit,
  compileLimit,
  counterKey,
  exceededResult,
  invalidResult,
  windowStart,
} from './spec.js';
import type {
  LimitResult,
  LimitStore,
  LimitStoreOptions,
  LimitTicket,
  ReleaseOptions,
  TicketEntry,
} from './types.js';
import { DEFAULT_STEPS_IDLE_MS } from './types.js';

interface Counter {
  /** Window start (calls/sum); 0 for steps and concurrent. */
  w: number;
  v: number;
  /** When the counter may be dropped by the sweep. */
  exp: number;
}

const SWEEP_EVERY = 8192;
const EMPTY: readonly TicketEntry[] = [];

/** Limit store kept in process memory. */
export class MemoryLimitStore implements LimitStore {
  readonly #counters = new Map<string, Counter>();
  readonly #stepsIdleMs: number;
  #ops = 0;
  #closed = false;

  constructor(options: LimitStoreOptions = {}) {
    this.#stepsIdleMs = options.stepsIdleMs ?? DEFAULT_STEPS_IDLE_MS;
  }

  consume(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): Promise<LimitResult> {
    return Promise.resolve(this.consumeSync(specs, action, roles, nowMs));
  }

  /** Synchronous `consume`, for callers that want to skip the promise. */
  consumeSync(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): LimitResult {
    if (this.#closed)
      return invalidResult(compileLimit(specs[0] ?? CLOSED_SPEC), 'limit store is closed', 'store_error');
    if ((++this.#ops & (SWEEP_EVERY - 1)) === 0) this.#sweep(nowMs);
    const n = specs.length;
    if (n === 0) return { ok: true, ticket: { entries: EMPTY, released: false } };
    if (n === 1) {
      // Single-limit fast path: no intermediate arrays.
      const c = compileLimit(specs[0] as LimitSpec);
      const e = this.#check(c, action, roles, nowMs);
      if ('ok' in e) return e;
      this.#apply(c, e, nowMs);
      return { ok: true, ticket: { entries: [e], released: false } };
    }
    const compiled: CompiledLimit[] = [];
    const entries: TicketEntry[] = [];
    for (const spec of specs) {
      const c = compileLimit(spec);
      const e = this.#check(c, action, roles, nowMs);
      if ('ok' in e) return e;
      // Two specs sharing one counter (same id and scope) must be checked against their combined amount.
      for (let i = 0; i < entries.length; i++) {
        const prev = entries[i] as TicketEntry;
        if (prev.key === e.key) {
          const used = this.#used(c, e.key, nowMs);
          if (used + prev.amount + e.amount > c.max) {
            return exceededResult(c, action, roles, used + prev.amount, e.amount, nowMs);
          }
        }
      }
      compiled.push(c);
      entries.push(e);
    }
    for (let i = 0; i < entries.length; i++)
      this.#apply(compiled[i] as CompiledLimit, entries[i] as TicketEntry, nowMs);
    return { ok: true, ticket: { entries, released: false } };
  }

  #used(c: CompiledLimit, key: string, nowMs: number): number {
    const ctr = this.#counters.get(key);
    if (ctr === undefined) return 0;
    if (c.windowMs > 0 && ctr.w !== windowStart(c.windowMs, nowMs)) return 0;
    return ctr.v;
  }

  #check(
    c: CompiledLimit,
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): TicketEntry | LimitResult {
    if (c.invalid !== null) return invalidResult(c, c.invalid, 'evaluation_error');
    const k = counterKey(c, action, roles);
    if (typeof k === 'string') return invalidResult(c, k, 'invalid_action');
    const amount = amountOf(c, action);
    if (typeof amount === 'string') return invalidResult(c, amount, 'invalid_action');
    const used = this.#used(c, k.key, nowMs);
    if (used + amount > c.max) return exceededResult(c, action, roles, used, amount, nowMs);
    return { kind: c.kind, key: k.key, amount, window: c.windowMs > 0 ? windowStart(c.windowMs, nowMs) : 0 };
  }

  #apply(c: CompiledLimit, e: TicketEntry, nowMs: number): void {
    const ctr = this.#counters.get(e.key);
    const exp =
      c.windowMs > 0
        ? e.window + c.windowMs
        : c.kind === 'steps'
          ? nowMs + this.#stepsIdleMs
          : Number.POSITIVE_INFINITY;
    if (ctr === undefined) this.#counters.set(e.key, { w: e.window, v: e.amount, exp });
    else {
      if (ctr.w !== e.window) {
        ctr.w = e.window;
        ctr.v = 0;
      }
      ctr.v += e.amount;
      ctr.exp = exp;
    }
  }

  release(ticket: LimitTicket, options?: ReleaseOptions): Promise<void> {
    if (ticket.released) return Promise.resolve();
    ticket.released = true;
    const refund = options?.refund === true;
    for (const e of ticket.entries) {
      if (e.kind !== 'concurrent' && !refund) continue;
      const ctr = this.#counters.get(e.key);
      if (ctr === undefined || ctr.w !== e.window) continue;
      ctr.v = Math.max(0, ctr.v - e.amount);
      if (e.kind === 'concurrent' && ctr.v === 0) this.#counters.delete(e.key);
    }
    return Promise.resolve();
  }

  #sweep(nowMs: number): void {
    for (const [k, ctr] of this.#counters) if (ctr.exp <= nowMs) this.#counters.delete(k);
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#counters.clear();
    return Promise.resolve();
  }
}

const CLOSED_SPEC: LimitSpec = { id: 'store', kind: 'calls', max: 0, windowMs: 1, scope: ['global'] };

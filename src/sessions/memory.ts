/** In-process session store: for one process, tests and `memory:`. */
import { type Endorsement, type FlowDelta, MAX_DELTAS, type SessionRecord } from '../flows/state.js';
import { DEFAULT_SESSION_IDLE_MS, type SessionStore, type SessionStoreOptions } from './types.js';

interface Entry {
  deltas: Map<string, FlowDelta>;
  endorsements: Map<string, Endorsement>;
  touched: number;
}

const SWEEP_EVERY = 4096;

/** Session store kept in process memory. */
export class MemorySessionStore implements SessionStore {
  readonly #sessions = new Map<string, Entry>();
  readonly #idleMs: number;
  #ops = 0;
  #closed = false;

  constructor(options: SessionStoreOptions = {}) {
    this.#idleMs = options.idleMs ?? DEFAULT_SESSION_IDLE_MS;
  }

  async append(scope: string, delta: FlowDelta): Promise<void> {
    const e = this.#entry(scope);
    // One past the cap is kept, so the fold sees the session as saturated (fail closed).
    if (e.deltas.size <= MAX_DELTAS && !e.deltas.has(delta.id)) e.deltas.set(delta.id, delta);
  }

  async endorse(scope: string, endorsement: Endorsement): Promise<void> {
    const e = this.#entry(scope);
    const key = `${endorsement.resultDigest}:${endorsement.approvalId}`;
    if (!e.endorsements.has(key)) e.endorsements.set(key, endorsement);
  }

  async load(scope: string): Promise<SessionRecord> {
    this.#open();
    const e = this.#sessions.get(scope);
    if (!e || Date.now() - e.touched > this.#idleMs) return { deltas: [], endorsements: [] };
    return { deltas: [...e.deltas.values()], endorsements: [...e.endorsements.values()] };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new Error('session store is closed');
  }

  #entry(scope: string): Entry {
    this.#open();
    const now = Date.now();
    if (++this.#ops % SWEEP_EVERY === 0) {
      for (const [k, v] of this.#sessions) if (now - v.touched > this.#idleMs) this.#sessions.delete(k);
    }
    let e = this.#sessions.get(scope);
    if (!e || now - e.touched > this.#idleMs) {
      e = { deltas: new Map(), endorsements: new Map(), touched: now };
      this.#sessions.set(scope, e);
    }
    e.touched = now;
    return e;
  }
}

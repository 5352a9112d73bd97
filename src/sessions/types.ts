/**
 * The session-state store contract: every backend (memory, SQLite, Redis) implements `SessionStore` and
 * passes the same contract suite (`contract.ts`). A store keeps, per session scope, two grow-only sets —
 * flow deltas keyed by id and endorsements keyed by result digest — so writes commute and replicas
 * converge; the state itself is folded from them (`flows/state.ts`).
 */
import type { Endorsement, FlowDelta, SessionRecord } from '../flows/state.js';

/**
 * A backend for session flow state. Methods reject when the backend cannot answer (down, locked, timed
 * out); the runtime then denies the call or withholds the result (fail closed).
 */
export interface SessionStore {
  /** Adds a delta to a session; a delta with an id already stored is ignored (idempotent). */
  append(scope: string, delta: FlowDelta): Promise<void>;
  /** Records an endorsement of one result of a session (idempotent per result digest and approval). */
  endorse(scope: string, endorsement: Endorsement): Promise<void>;
  /** Everything stored for a session; empty for an unknown one. */
  load(scope: string): Promise<SessionRecord>;
  close(): Promise<void>;
}

/** Options every session store accepts. */
export interface SessionStoreOptions {
  /** A session not written for this long is forgotten. Default 7 days. */
  idleMs?: number;
}

export const DEFAULT_SESSION_IDLE_MS = 7 * 24 * 3_600_000;

/** Reads a stored delta or endorsement; a row that does not parse is an error (never a silent skip). */
export function parseRow<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`session store holds a malformed ${what}`, { cause: e });
  }
}

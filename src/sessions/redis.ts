/**
 * Redis session store for several ExecLayer processes. Per session, one hash of deltas (field = delta
 * id) and one of endorsements: `HSETNX` makes appends idempotent, so writes from any replica commute.
 * Both keys expire when the session is idle. Commands fail fast (no offline queue): the runtime denies.
 */
import type { Redis } from 'ioredis';
import { type Endorsement, type FlowDelta, MAX_DELTAS, type SessionRecord } from '../flows/state.js';
import { failFastRedis, waitReady } from '../limits/redis.js';
import { DEFAULT_SESSION_IDLE_MS, parseRow, type SessionStore, type SessionStoreOptions } from './types.js';

// KEYS[1] = deltas hash, KEYS[2] = endorsements hash; ARGV = field, body, idle ms, cap.
const APPEND_LUA = `
if redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[4]) then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 0
`;

type SessionRedis = Redis & {
  execlayerFlowAppend(n: number, ...args: (string | number)[]): Promise<number>;
};

/** Options for the Redis session store. */
export interface RedisSessionStoreOptions extends SessionStoreOptions {
  /** Key prefix, default `execlayer:`. */
  prefix?: string;
  /** A command that gets no answer within this time fails (closed). Default 500 ms. */
  commandTimeoutMs?: number;
}

/** Session store on Redis. */
export class RedisSessionStore implements SessionStore {
  readonly #r: SessionRedis;
  readonly #prefix: string;
  readonly #idleMs: number;

  private constructor(r: Redis, options: RedisSessionStoreOptions) {
    r.defineCommand('execlayerFlowAppend', { lua: APPEND_LUA });
    this.#r = r as SessionRedis;
    this.#prefix = `${options.prefix ?? 'execlayer:'}flow:`;
    this.#idleMs = options.idleMs ?? DEFAULT_SESSION_IDLE_MS;
  }

  /** Connects (waiting at most a second for the first connection) and returns the store. */
  static async open(url: string, options: RedisSessionStoreOptions = {}): Promise<RedisSessionStore> {
    const r = failFastRedis(url, options.commandTimeoutMs);
    await waitReady(r, 1000);
    return new RedisSessionStore(r, options);
  }

  #keys(scope: string): [string, string] {
    // Scopes are JSON text; hash-tagged so both keys of a session share a cluster slot.
    return [`${this.#prefix}{${scope}}:d`, `${this.#prefix}{${scope}}:e`];
  }

  async append(scope: string, delta: FlowDelta): Promise<void> {
    const [d, e] = this.#keys(scope);
    await this.#r.execlayerFlowAppend(2, d, e, delta.id, JSON.stringify(delta), this.#idleMs, MAX_DELTAS);
  }

  async endorse(scope: string, en: Endorsement): Promise<void> {
    const [d, e] = this.#keys(scope);
    await this.#r
      .multi()
      .hsetnx(e, `${en.resultDigest}:${en.approvalId}`, JSON.stringify(en))
      .pexpire(e, this.#idleMs)
      .pexpire(d, this.#idleMs)
      .exec()
      .then(check);
  }

  async load(scope: string): Promise<SessionRecord> {
    const [d, e] = this.#keys(scope);
    const res = check(await this.#r.multi().hvals(d).hvals(e).exec());
    const [deltas, endorsements] = res as [string[], string[]];
    return {
      deltas: deltas.map((t) => parseRow<FlowDelta>(t, 'flow delta')),
      endorsements: endorsements.map((t) => parseRow<Endorsement>(t, 'endorsement')),
    };
  }

  async close(): Promise<void> {
    this.#r.disconnect();
  }
}

/** The replies of a MULTI, or the first error among them. */
function check(res: [Error | null, unknown][] | null): unknown[] {
  if (res === null) throw new Error('session store transaction was aborted');
  return res.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

/**
 * Redis limit store for several ExecLayer processes. One Lua script per consume checks every counter
 * and only then adds to all of them, so limits hold exactly across processes. Window counters are
 * string keys that include the window start and expire with it; concurrency slots are sorted-set members
 * scored by lease expiry, so a crashed holder's slot comes back by itself.
 *
 * Windows use the caller's clock (`nowMs`): processes sharing a Redis need synchronised clocks (NTP).
 * Keys of one consume may live in different cluster slots; use a single Redis (or Sentinel), not Cluster.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { messageOf } from '../errors.js';
import type { Action, LimitSpec } from '../types.js';
import {
  amountOf,
  type CompiledLimit,
  compileLimit,
  counterKey,
  exceededResult,
  invalidResult,
  storeErrorResult,
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
import { DEFAULT_LEASE_MS, DEFAULT_STEPS_IDLE_MS } from './types.js';

// ARGV[1] = now; then per key: kind ('c' concurrent, 'n' counter), max, amount, ttl ms, lease id.
// Returns {0} on success, or {i, used} for the first key that would exceed.
const CONSUME_LUA = `
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  local max = tonumber(ARGV[b + 1])
  local amt = tonumber(ARGV[b + 2])
  local used
  if ARGV[b] == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    used = redis.call('ZCARD', KEYS[i])
  else
    used = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  for j = 1, i - 1 do
    if KEYS[j] == KEYS[i] then used = used + tonumber(ARGV[2 + (j - 1) * 5 + 2]) end
  end
  if used + amt > max then return {i, string.format('%.17g', used)} end
end
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  local ttl = tonumber(ARGV[b + 3])
  if ARGV[b] == 'c' then
    redis.call('ZADD', KEYS[i], now + ttl, ARGV[b + 4])
  else
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[b + 2])
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return {0}
`;

// ARGV per key: kind, amount, lease id. Gives back counters (only while their window key still exists).
const RELEASE_LUA = `
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 3
  if ARGV[b] == 'c' then
    redis.call('ZREM', KEYS[i], ARGV[b + 2])
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    local v = tonumber(redis.call('INCRBYFLOAT', KEYS[i], '-' .. ARGV[b + 1]))
    if v < 0 then redis.call('SET', KEYS[i], '0', 'KEEPTTL') end
  end
end
return 0
`;

type LimitRedis = Redis & {
  execlayerConsume(n: number, ...args: (string | number)[]): Promise<[number, string?]>;
  execlayerRelease(n: number, ...args: (string | number)[]): Promise<number>;
};

/** Options for the Redis limit store. */
export interface RedisLimitStoreOptions extends LimitStoreOptions {
  /** Key prefix, default `execlayer:`. */
  prefix?: string;
  /** A command that gets no answer within this time fails (closed) and its connection is replaced. Default 500 ms. */
  commandTimeoutMs?: number;
}

/** Default deadline of one Redis command (ms). */
export const DEFAULT_REDIS_TIMEOUT_MS = 500;

/**
 * Creates an ioredis client that fails fast instead of queueing while disconnected. Send its commands
 * through `redisCommand`, which replaces a connection that goes silent.
 *
 * INVARIANT: every wait is bounded — a command unanswered after `commandTimeoutMs` rejects (the action is
 * denied). The client reconnects at once and then every 500 ms at most, so service resumes within about
 * half a second of the network returning. A command is never sent twice (`maxRetriesPerRequest: 0`): a
 * consume whose reply was lost may have counted, which only makes the limit stricter until its window ends.
 */
export function failFastRedis(url: string, commandTimeoutMs = DEFAULT_REDIS_TIMEOUT_MS): Redis {
  const r = new Redis(url, {
    // INVARIANT: fail closed — no offline queue and a short timeout: a down Redis is an immediate denial.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(commandTimeoutMs, 1000),
    // A new connection whose ready check times out is closed this fast, not after the default 2 s.
    disconnectTimeout: commandTimeoutMs,
    keepAlive: 5000,
    retryStrategy: (n: number) => Math.min(50 * n, 500),
    lazyConnect: false,
  });
  // Connection errors surface as failed commands; without a listener ioredis would log them.
  r.on('error', () => {});
  return r;
}

/**
 * Runs one command of `r`. When it times out, the connection it was sent on is destroyed (if it is still
 * the current one), and the client reconnects: a silent link may have lost bytes, and every later reply on
 * it would be out of step. ioredis's own `socketTimeout` is not used: its timer outlives the connection it
 * was set for and would destroy the next, healthy one.
 */
export async function redisCommand<T>(r: Redis, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const stream = r.stream;
  try {
    return await fn();
  } catch (err) {
    const msg = messageOf(err);
    if (/command timed out/i.test(msg) && stream !== undefined && r.stream === stream) stream.destroy();
    throw redisError(err, timeoutMs);
  }
}

/**
 * A Redis failure as a reason the stores wrap with their own name, e.g. `limit store unavailable (redis did
 * not answer within 500 ms)`.
 */
export function redisError(err: unknown, timeoutMs: number): Error {
  const msg = messageOf(err);
  if (/command timed out|socket timeout/i.test(msg)) {
    return new Error(`redis did not answer within ${timeoutMs} ms`, { cause: err });
  }
  if (/isn't writeable|connection is closed/i.test(msg)) {
    return new Error(`redis is not connected (${msg})`, { cause: err });
  }
  return new Error(`redis: ${msg}`, { cause: err });
}

/** Resolves when `r` is ready or after `ms` (a store that is down still opens, and fails closed). */
export function waitReady(r: Redis, ms: number): Promise<void> {
  if (r.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      r.off('ready', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    r.once('ready', done);
  });
}

/** Limit store on Redis. */
export class RedisLimitStore implements LimitStore {
  readonly #r: LimitRedis;
  readonly #prefix: string;
  readonly #leaseMs: number;
  readonly #stepsIdleMs: number;
  readonly #timeoutMs: number;

  private constructor(r: Redis, options: RedisLimitStoreOptions) {
    this.#timeoutMs = options.commandTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    r.defineCommand('execlayerConsume', { lua: CONSUME_LUA });
    r.defineCommand('execlayerRelease', { lua: RELEASE_LUA });
    this.#r = r as LimitRedis;
    this.#prefix = `${options.prefix ?? 'execlayer:'}lim:`;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#stepsIdleMs = options.stepsIdleMs ?? DEFAULT_STEPS_IDLE_MS;
  }

  /** Connects (waiting at most a second for the first connection) and returns the store. */
  static async open(url: string, options: RedisLimitStoreOptions = {}): Promise<RedisLimitStore> {
    const r = failFastRedis(url, options.commandTimeoutMs);
    await waitReady(r, 1000);
    return new RedisLimitStore(r, options);
  }

  async consume(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): Promise<LimitResult> {
    if (specs.length === 0) return { ok: true, ticket: { entries: [], released: false } };
    const compiled: CompiledLimit[] = [];
    const entries: TicketEntry[] = [];
    const args: (string | number)[] = [];
    const argv: (string | number)[] = [nowMs];
    for (const spec of specs) {
      const c = compileLimit(spec);
      if (c.invalid !== null) return invalidResult(c, c.invalid, 'evaluation_error');
      const k = counterKey(c, action, roles);
      if (typeof k === 'string') return invalidResult(c, k, 'invalid_action');
      const amount = amountOf(c, action);
      if (typeof amount === 'string') return invalidResult(c, amount, 'invalid_action');
      if (amount > c.max) return exceededResult(c, action, roles, 0, amount, nowMs);
      let e: TicketEntry;
      let ttl: number;
      if (c.kind === 'concurrent') {
        e = { kind: c.kind, key: `${this.#prefix}${k.key}`, amount: 1, window: 0, lease: randomUUID() };
        ttl = this.#leaseMs;
      } else if (c.windowMs > 0) {
        const win = windowStart(c.windowMs, nowMs);
        e = { kind: c.kind, key: `${this.#prefix}${k.key}@${win}`, amount, window: win };
        ttl = win + c.windowMs - nowMs + 1000;
      } else {
        e = { kind: c.kind, key: `${this.#prefix}${k.key}`, amount, window: 0 };
        ttl = this.#stepsIdleMs;
      }
      compiled.push(c);
      entries.push(e);
      args.push(e.key);
      argv.push(
        c.kind === 'concurrent' ? 'c' : 'n',
        c.max,
        numArg(amount),
        Math.max(1, Math.ceil(ttl)),
        e.lease ?? '',
      );
    }
    let res: [number, string?];
    try {
      res = await redisCommand(this.#r, this.#timeoutMs, () =>
        this.#r.execlayerConsume(args.length, ...args, ...argv),
      );
    } catch (err) {
      // INVARIANT: fail closed — an unreachable or failing Redis denies.
      return storeErrorResult(specs[0], err);
    }
    const i = Number(res[0]);
    if (i === 0) return { ok: true, ticket: { entries, released: false } };
    const c = compiled[i - 1];
    if (c === undefined)
      return storeErrorResult(specs[0], new Error(`unexpected script result ${String(i)}`));
    return exceededResult(
      c,
      action,
      roles,
      Number(res[1] ?? 0),
      (entries[i - 1] as TicketEntry).amount,
      nowMs,
    );
  }

  async release(ticket: LimitTicket, options?: ReleaseOptions): Promise<void> {
    if (ticket.released) return;
    ticket.released = true;
    const refund = options?.refund === true;
    const keys: string[] = [];
    const argv: string[] = [];
    for (const e of ticket.entries) {
      if (e.kind !== 'concurrent' && !refund) continue;
      keys.push(e.key);
      argv.push(e.kind === 'concurrent' ? 'c' : 'n', numArg(e.amount), e.lease ?? '');
    }
    if (keys.length === 0) return;
    try {
      await redisCommand(this.#r, this.#timeoutMs, () =>
        this.#r.execlayerRelease(keys.length, ...keys, ...argv),
      );
    } catch {
      // A lost release only makes the limit stricter until the lease or window expires (fails closed).
    }
  }

  async close(): Promise<void> {
    this.#r.disconnect();
  }
}

function numArg(n: number): string {
  // Full precision for Lua's tonumber; integers stay integers.
  return Number.isInteger(n) ? String(n) : n.toPrecision(17);
}

/**
 * The stop switch: suspending one agent, or every agent at once with the global stop `*`. Every backend
 * (memory, SQLite, Redis) implements `AgentStateStore` and passes the contract in `contract.ts`.
 * Each decision asks the store, so a suspend that has returned stops the very next decision in every process
 * sharing the store (SQLite keeps answers only until the stop switch's version row changes).
 */

import type BetterSqlite3 from 'better-sqlite3';
import type { Redis } from 'ioredis';
import { messageOf } from '../errors.js';
import { DEFAULT_REDIS_TIMEOUT_MS, failFastRedis, redisCommand, waitReady } from '../limits/redis.js';
import type { AgentStateEvent, Recorder } from '../types.js';
import { DEFAULT_BUSY_TIMEOUT_MS, openSqlite, retryBusy } from './sqlite-db.js';

/** The agent id that stands for every agent: the emergency stop. */
export const ALL_AGENTS = '*';

/** Answer of `isSuspended`. */
export interface SuspensionStatus {
  suspended: boolean;
  reason?: string;
  by?: string;
  /** Which entry applies: the agent itself or `*`. */
  agent?: string;
  /** When the suspension was set (ms since epoch). */
  at?: number;
}

/** One active suspension. */
export interface Suspension {
  agent: string;
  by: string;
  reason?: string;
  at: number;
}

/** Suspension flags shared by every enforcement point. */
export interface AgentStateStore {
  /**
   * True also when the global stop `*` is set. On any store error: suspended (fail closed). Never rejects.
   * `reason` is the operator's reason as given (for the global stop: `all agents are stopped: …`).
   */
  isSuspended(agent: string): Promise<SuspensionStatus>;
  /** Suspends `agent` (or everyone with `*`). Resolves once every process sharing the store will see it. */
  suspend(agent: string, by: string, reason?: string): Promise<void>;
  /** Lifts a suspension. Resolves `true` when one was lifted, `false` when there was none. */
  resume(agent: string, by: string): Promise<boolean>;
  list(): Promise<Suspension[]>;
  close(): Promise<void>;
}

/** Options every state backend accepts. */
export interface AgentStateStoreOptions {
  /** Records `AgentStateEvent`s after each successful suspend and each resume that lifted something. */
  recorder?: Recorder;
  /** Clock, for tests. */
  now?: () => number;
}

/** Error a state store raises at its edges (suspend/resume/list). */
export class AgentStateError extends Error {
  readonly code: 'store_error' | 'invalid_agent' | 'record_failed';
  constructor(code: AgentStateError['code'], message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AgentStateError';
    this.code = code;
  }
}

function checkAgent(agent: string): void {
  if (typeof agent !== 'string' || agent === '' || agent.length > 256) {
    throw new AgentStateError(
      'invalid_agent',
      'agent id must be a non-empty string of at most 256 characters',
    );
  }
}

function failClosed(err: unknown): SuspensionStatus {
  const msg = messageOf(err).toLowerCase();
  // INVARIANT: fail closed — when the stop switch cannot be read, the agent is treated as stopped.
  return {
    suspended: true,
    by: 'execlayer',
    reason: `agent state store unavailable (${msg}); treating as suspended to fail closed`,
  };
}

function pick(agent: string, own: Suspension | undefined, all: Suspension | undefined): SuspensionStatus {
  const s = own ?? all;
  if (s === undefined) return { suspended: false };
  const out: SuspensionStatus = { suspended: true, by: s.by, agent: s.agent, at: s.at };
  // `reason` is the operator's own words; the global stop says so, since the caller names the agent.
  if (s.agent === ALL_AGENTS && agent !== ALL_AGENTS) {
    out.reason = `all agents are stopped${s.reason ? `: ${s.reason}` : ''}`;
  } else if (s.reason !== undefined) out.reason = s.reason;
  return out;
}

abstract class BaseStateStore implements AgentStateStore {
  readonly #recorder: Recorder | undefined;
  protected readonly now: () => number;

  constructor(options: AgentStateStoreOptions) {
    this.#recorder = options.recorder;
    this.now = options.now ?? Date.now;
  }

  protected abstract read(agent: string): Promise<[Suspension | undefined, Suspension | undefined]>;
  protected abstract write(s: Suspension): Promise<void>;
  protected abstract remove(agent: string): Promise<boolean>;
  protected abstract readAll(): Promise<Suspension[]>;
  abstract close(): Promise<void>;

  async isSuspended(agent: string): Promise<SuspensionStatus> {
    try {
      const [own, all] = await this.read(agent);
      return pick(agent, own, all);
    } catch (err) {
      return failClosed(err);
    }
  }

  async suspend(agent: string, by: string, reason?: string): Promise<void> {
    checkAgent(agent);
    const s: Suspension = { agent, by, at: this.now() };
    if (reason !== undefined && reason !== '') s.reason = reason;
    await this.#edge(() => this.write(s));
    const ev: AgentStateEvent = { type: 'agent', status: 'suspended', agent, by };
    if (s.reason !== undefined) ev.reason = s.reason;
    await this.#record(ev);
  }

  async list(): Promise<Suspension[]> {
    return this.#edge(() => this.readAll());
  }

  async resume(agent: string, by: string): Promise<boolean> {
    checkAgent(agent);
    const lifted = await this.#edge(() => this.remove(agent));
    if (lifted) await this.#record({ type: 'agent', status: 'resumed', agent, by });
    return lifted;
  }

  async #edge<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const msg = messageOf(err).toLowerCase();
      throw new AgentStateError('store_error', `agent state store unavailable: ${msg}`, err);
    }
  }

  async #record(ev: AgentStateEvent): Promise<void> {
    if (this.#recorder === undefined) return;
    try {
      await this.#recorder.record(ev);
    } catch (err) {
      throw new AgentStateError('record_failed', `${ev.status} \`${ev.agent}\` but could not record it`, err);
    }
  }
}

/** State kept in process memory (one process only). */
export class MemoryAgentStateStore extends BaseStateStore {
  readonly #m = new Map<string, Suspension>();

  constructor(options: AgentStateStoreOptions = {}) {
    super(options);
  }

  protected async read(agent: string): Promise<[Suspension | undefined, Suspension | undefined]> {
    return [this.#m.get(agent), this.#m.get(ALL_AGENTS)];
  }
  protected async write(s: Suspension): Promise<void> {
    this.#m.set(s.agent, s);
  }
  protected async remove(agent: string): Promise<boolean> {
    return this.#m.delete(agent);
  }
  protected async readAll(): Promise<Suspension[]> {
    return [...this.#m.values()].sort((a, b) => a.agent.localeCompare(b.agent));
  }
  async close(): Promise<void> {}
}

interface Row {
  agent: string;
  by: string;
  reason: string | null;
  at: number;
}

function fromRow(r: Row | undefined): Suspension | undefined {
  if (r === undefined) return undefined;
  const s: Suspension = { agent: r.agent, by: r.by, at: r.at };
  if (r.reason !== null) s.reason = r.reason;
  return s;
}

/** Agents whose answers the SQLite store keeps while the stop switch is unchanged. */
const MAX_CACHED_AGENTS = 10_000;

// The stop switch's own version: triggers bump it on every change to `agent_state`, by this store or by
// anyone else with the file (the sqlite3 shell included), in the same transaction as the change.
const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS agent_state (agent TEXT PRIMARY KEY, by TEXT NOT NULL, reason TEXT, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agent_state_version (id INTEGER PRIMARY KEY CHECK (id = 1), v INTEGER NOT NULL);
INSERT OR IGNORE INTO agent_state_version (id, v) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS agent_state_inserted AFTER INSERT ON agent_state
  BEGIN UPDATE agent_state_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS agent_state_updated AFTER UPDATE ON agent_state
  BEGIN UPDATE agent_state_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS agent_state_deleted AFTER DELETE ON agent_state
  BEGIN UPDATE agent_state_version SET v = v + 1 WHERE id = 1; END;
`;

/** State in a SQLite file; processes sharing the file see a suspend on their next decision. */
export class SqliteAgentStateStore extends BaseStateStore {
  readonly #db: BetterSqlite3.Database;
  readonly #get: BetterSqlite3.Statement;
  readonly #put: BetterSqlite3.Statement;
  readonly #del: BetterSqlite3.Statement;
  readonly #all: BetterSqlite3.Statement;
  readonly #version: BetterSqlite3.Statement;
  readonly #busyMs: number;
  /** Answers per agent as of `#seen` (the stop switch's version and the file's schema version). */
  readonly #cache = new Map<string, [Suspension | undefined, Suspension | undefined]>();
  #seen = '';
  /** The version read the decisions started in this turn of the event loop wait for. */
  #versionRead: Promise<void> | null = null;

  /** Opens (creating) the file; throws at start-up when it cannot. */
  constructor(path: string, options: AgentStateStoreOptions & { busyTimeoutMs?: number } = {}) {
    super(options);
    this.#busyMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.#db = openSqlite(path, { busyTimeoutMs: this.#busyMs, schema: SQLITE_SCHEMA });
    this.#get = this.#db.prepare('SELECT agent, by, reason, at FROM agent_state WHERE agent IN (?, ?)');
    this.#put = this.#db.prepare(
      'INSERT INTO agent_state (agent, by, reason, at) VALUES (?, ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET by = excluded.by, reason = excluded.reason, at = excluded.at',
    );
    this.#del = this.#db.prepare('DELETE FROM agent_state WHERE agent = ?');
    this.#all = this.#db.prepare('SELECT agent, by, reason, at FROM agent_state ORDER BY agent');
    // The schema version too: a dropped or altered table (and with it its triggers) must not leave answers
    // cached from before.
    this.#version = this.#db
      .prepare(
        "SELECT v || '/' || (SELECT schema_version FROM pragma_schema_version) FROM agent_state_version WHERE id = 1",
      )
      .pluck();
  }

  // Each is one statement: safe to run again while another process holds the file's lock.
  protected async read(agent: string): Promise<[Suspension | undefined, Suspension | undefined]> {
    this.#versionRead ??= this.#readVersionSoon();
    await this.#versionRead;
    return retryBusy(() => {
      let hit = this.#cache.get(agent);
      if (hit === undefined) {
        const rows = this.#get.all(agent, ALL_AGENTS) as Row[];
        hit = [
          fromRow(rows.find((r) => r.agent === agent)),
          fromRow(rows.find((r) => r.agent === ALL_AGENTS)),
        ];
        if (this.#cache.size >= MAX_CACHED_AGENTS) this.#cache.clear();
        this.#cache.set(agent, hit);
      }
      return hit;
    }, this.#busyMs);
  }

  /**
   * Decisions that start in one turn of the event loop share one read of the version row, made in the
   * check phase that follows, after all of them started: a suspend that committed before a decision started
   * is still seen by it, and a burst of concurrent decisions pays for one read instead of one each (every
   * audit commit to the same file makes that read go to the file again). Commits by other connections leave
   * the cache alone unless they changed the stop switch. Rows are read after the version, so a cached answer
   * is never older than the version it is kept under.
   */
  #readVersionSoon(): Promise<void> {
    return new Promise((resolve, reject) => {
      setImmediate(() => {
        this.#versionRead = null;
        retryBusy(() => {
          const version = this.#version.get() as string | undefined;
          if (version === undefined) throw new Error('the stop switch version row is missing');
          if (version !== this.#seen) {
            this.#cache.clear();
            this.#seen = version;
          }
        }, this.#busyMs).then(resolve, reject);
      });
    });
  }
  protected async write(s: Suspension): Promise<void> {
    await retryBusy(() => this.#put.run(s.agent, s.by, s.reason ?? null, s.at), this.#busyMs);
    this.#cache.clear();
  }
  protected async remove(agent: string): Promise<boolean> {
    const { changes } = await retryBusy(() => this.#del.run(agent), this.#busyMs);
    this.#cache.clear();
    return changes > 0;
  }
  protected async readAll(): Promise<Suspension[]> {
    const rows = await retryBusy(() => this.#all.all() as Row[], this.#busyMs);
    return rows.map((r) => fromRow(r) as Suspension);
  }
  async close(): Promise<void> {
    this.#db.close();
  }
}

/** State in one Redis hash; every decision is one HMGET round trip. */
export class RedisAgentStateStore extends BaseStateStore {
  readonly #r: Redis;
  readonly #key: string;
  readonly #timeoutMs: number;

  private constructor(
    r: Redis,
    prefix: string,
    options: AgentStateStoreOptions & { commandTimeoutMs?: number },
  ) {
    super(options);
    this.#r = r;
    this.#key = `${prefix}suspended`;
    this.#timeoutMs = options.commandTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  }

  /** Runs one command; a failure names the store and, for a timeout, the bound. */
  #cmd<T>(fn: () => Promise<T>): Promise<T> {
    return redisCommand(this.#r, this.#timeoutMs, fn);
  }

  /** Connects (waiting at most a second) and returns the store; a down Redis reads as suspended. */
  static async open(
    url: string,
    options: AgentStateStoreOptions & { prefix?: string; commandTimeoutMs?: number } = {},
  ): Promise<RedisAgentStateStore> {
    const r = failFastRedis(url, options.commandTimeoutMs);
    await waitReady(r, 1000);
    return new RedisAgentStateStore(r, options.prefix ?? 'execlayer:', options);
  }

  protected async read(agent: string): Promise<[Suspension | undefined, Suspension | undefined]> {
    const [own, all] = await this.#cmd(() => this.#r.hmget(this.#key, agent, ALL_AGENTS));
    return [parse(own ?? null), parse(all ?? null)];
  }
  protected async write(s: Suspension): Promise<void> {
    await this.#cmd(() => this.#r.hset(this.#key, s.agent, JSON.stringify(s)));
  }
  protected async remove(agent: string): Promise<boolean> {
    return (await this.#cmd(() => this.#r.hdel(this.#key, agent))) > 0;
  }
  protected async readAll(): Promise<Suspension[]> {
    const all = await this.#cmd(() => this.#r.hgetall(this.#key));
    return Object.values(all)
      .map((v) => parse(v) as Suspension)
      .sort((a, b) => a.agent.localeCompare(b.agent));
  }
  async close(): Promise<void> {
    this.#r.disconnect();
  }
}

function parse(v: string | null): Suspension | undefined {
  if (v === null) return undefined;
  const o = JSON.parse(v) as Suspension;
  if (typeof o.agent !== 'string' || typeof o.by !== 'string' || typeof o.at !== 'number') {
    throw new Error('malformed suspension entry');
  }
  return o;
}

/**
 * Tool pinning: the sha256 of each upstream tool's canonical definition is recorded on first sight; a
 * later definition with another hash is held back (hidden, calls denied) until an operator approves it.
 * One small interface, three backends (memory, SQLite, PostgreSQL); `pins.test.ts` runs one contract suite
 * on all of them.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { canonicalJson } from '../../canonical-json.js';
import { sha256Hex } from '../../sha256.js';
import { DEFAULT_STORE_TIMEOUT_MS, pgPool, pgRun } from '../../state/pg-db.js';
import { openSqlite, retryBusy } from '../../state/sqlite-db.js';

/** What the store knows about one tool (by its policy name, e.g. `files.read_file`). */
export interface ToolPin {
  tool: string;
  /** Approved definition hash. */
  hash: string;
  /** A different hash seen since and not yet approved. */
  pendingHash?: string;
  /** ISO time of first sight. */
  pinnedAt: string;
  approvedBy?: string;
  updatedAt: string;
}

/** Result of comparing a seen definition with the pin. */
export interface PinCheck {
  /** `pinned`: first sight, now pinned; `match`: same as the pin; `changed`: differs, held back. */
  status: 'pinned' | 'match' | 'changed';
  /** For `changed`: true the first time this particular new hash is seen (record it once). */
  firstSeen: boolean;
  pin: ToolPin;
}

/** Storage for tool pins. Every method is atomic per tool. */
export interface ToolPinStore {
  /**
   * Compares `hash` with the tool's pin (pinning it on first sight). The definition behind the hash, when
   * this process hashed it (`hashToolDefinition`), is kept too, so a change can be shown as a diff.
   */
  check(tool: string, hash: string): Promise<PinCheck>;
  get(tool: string): Promise<ToolPin | undefined>;
  list(): Promise<ToolPin[]>;
  /** Makes the pending hash (or `hash` when given) the approved one. Undefined when nothing to approve. */
  approve(tool: string, by: string, hash?: string): Promise<ToolPin | undefined>;
  /** The definition (`{name, description, inputSchema}`) with this hash, if it was kept. */
  definition?(hash: string): Promise<PinnedDefinition | undefined>;
  close(): Promise<void>;
}

/** The part of a tool definition that is pinned. */
export interface PinnedDefinition {
  name: string;
  description?: string | undefined;
  inputSchema?: unknown;
}

/** sha256 (hex) of the canonical `{name, description, inputSchema}` of a tool. */
export function hashToolDefinition(def: PinnedDefinition): string {
  const body = canonicalJson({
    name: def.name,
    description: def.description ?? null,
    inputSchema: def.inputSchema ?? null,
  });
  const hash = sha256Hex(body);
  remember(hash, body);
  return hash;
}

/**
 * Canonical definitions this process hashed lately, by hash: `check` receives only the hash, and keeps the
 * definition behind it from here. Content-addressed, so a definition can never be stored under another
 * definition's hash. Bounded; the oldest is forgotten first.
 */
const recent = new Map<string, string>();
const MAX_RECENT = 4096;
/** Largest definition kept for diffs (a bigger one is pinned by hash only). */
const MAX_DEFINITION_CHARS = 256 * 1024;

function remember(hash: string, body: string): void {
  if (body.length > MAX_DEFINITION_CHARS) return;
  recent.delete(hash);
  recent.set(hash, body);
  if (recent.size > MAX_RECENT) recent.delete(recent.keys().next().value as string);
}

function parseDefinition(body: string | undefined): PinnedDefinition | undefined {
  if (body === undefined) return undefined;
  try {
    return JSON.parse(body) as PinnedDefinition;
  } catch {
    return undefined;
  }
}

/** Pins held in memory (tests, `store: memory:`). */
export class MemoryToolPinStore implements ToolPinStore {
  private readonly pins = new Map<string, ToolPin>();
  private readonly definitions = new Map<string, string>();

  async definition(hash: string): Promise<PinnedDefinition | undefined> {
    return parseDefinition(this.definitions.get(hash));
  }

  async check(tool: string, hash: string): Promise<PinCheck> {
    const now = new Date().toISOString();
    const body = recent.get(hash);
    if (body !== undefined) this.definitions.set(hash, body);
    const pin = this.pins.get(tool);
    if (!pin) {
      const created: ToolPin = { tool, hash, pinnedAt: now, updatedAt: now };
      this.pins.set(tool, created);
      return { status: 'pinned', firstSeen: true, pin: { ...created } };
    }
    if (pin.hash === hash) return { status: 'match', firstSeen: false, pin: { ...pin } };
    const firstSeen = pin.pendingHash !== hash;
    if (firstSeen) {
      pin.pendingHash = hash;
      pin.updatedAt = now;
    }
    return { status: 'changed', firstSeen, pin: { ...pin } };
  }

  async get(tool: string): Promise<ToolPin | undefined> {
    const p = this.pins.get(tool);
    return p ? { ...p } : undefined;
  }

  async list(): Promise<ToolPin[]> {
    return [...this.pins.values()].map((p) => ({ ...p })).sort((a, b) => a.tool.localeCompare(b.tool));
  }

  async approve(tool: string, by: string, hash?: string): Promise<ToolPin | undefined> {
    const pin = this.pins.get(tool);
    const target = hash ?? pin?.pendingHash;
    if (!pin || !target) return undefined;
    pin.hash = target;
    delete pin.pendingHash;
    pin.approvedBy = by;
    pin.updatedAt = new Date().toISOString();
    return { ...pin };
  }

  async close(): Promise<void> {}
}

interface PinRow {
  tool: string;
  hash: string;
  pending_hash: string | null;
  pinned_at: string;
  approved_by: string | null;
  updated_at: string;
}

function fromRow(r: PinRow): ToolPin {
  const pin: ToolPin = { tool: r.tool, hash: r.hash, pinnedAt: r.pinned_at, updatedAt: r.updated_at };
  if (r.pending_hash) pin.pendingHash = r.pending_hash;
  if (r.approved_by) pin.approvedBy = r.approved_by;
  return pin;
}

/** The pins table, the same in SQLite and PostgreSQL. */
const PINS_SCHEMA = `CREATE TABLE IF NOT EXISTS execlayer_tool_pins (
  tool TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  pending_hash TEXT,
  pinned_at TEXT NOT NULL,
  approved_by TEXT,
  updated_at TEXT NOT NULL
)`;

/** Tool definitions by hash (content-addressed: a row can only ever hold the definition with its hash). */
const DEFINITIONS_SCHEMA = `CREATE TABLE IF NOT EXISTS execlayer_tool_definitions (
  hash TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  seen_at TEXT NOT NULL
)`;

/** How long a pin check waits for other processes' write locks on the shared file. */
const BUSY_TIMEOUT_MS = 5000;

/** Pins in a table of the embedded SQLite store file (shared with the rest of the state). */
export class SqliteToolPinStore implements ToolPinStore {
  private readonly db: Database.Database;
  private readonly sel: Database.Statement<[string], PinRow>;
  private readonly ins: Database.Statement<[string, string, string, string]>;
  private readonly setPending: Database.Statement<[string, string, string]>;
  private readonly setHash: Database.Statement<[string, string, string, string]>;
  private readonly putDef: Database.Statement<[string, string, string]>;
  private readonly getDef: Database.Statement<[string], { definition: string }>;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    // A pin is the trust decision about a tool: it must survive an OS crash, so every commit is fsynced.
    this.db = openSqlite(file, {
      busyTimeoutMs: BUSY_TIMEOUT_MS,
      schema: `${PINS_SCHEMA};\n${DEFINITIONS_SCHEMA}`,
      synchronous: 'FULL',
    });
    this.putDef = this.db.prepare(
      'INSERT INTO execlayer_tool_definitions (hash, definition, seen_at) VALUES (?, ?, ?) ON CONFLICT(hash) DO NOTHING',
    );
    this.getDef = this.db.prepare('SELECT definition FROM execlayer_tool_definitions WHERE hash = ?');
    this.sel = this.db.prepare('SELECT * FROM execlayer_tool_pins WHERE tool = ?');
    this.ins = this.db.prepare(
      'INSERT INTO execlayer_tool_pins (tool, hash, pinned_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(tool) DO NOTHING',
    );
    this.setPending = this.db.prepare(
      'UPDATE execlayer_tool_pins SET pending_hash = ?, updated_at = ? WHERE tool = ?',
    );
    this.setHash = this.db.prepare(
      'UPDATE execlayer_tool_pins SET hash = ?, pending_hash = NULL, approved_by = ?, updated_at = ? WHERE tool = ?',
    );
  }

  async check(tool: string, hash: string): Promise<PinCheck> {
    const run = this.db.transaction((): PinCheck => {
      const now = new Date().toISOString();
      const body = recent.get(hash);
      if (body !== undefined) this.putDef.run(hash, body, now);
      const row = this.sel.get(tool);
      if (!row) {
        this.ins.run(tool, hash, now, now);
        return { status: 'pinned', firstSeen: true, pin: fromRow(this.sel.get(tool)!) };
      }
      if (row.hash === hash) return { status: 'match', firstSeen: false, pin: fromRow(row) };
      const firstSeen = row.pending_hash !== hash;
      if (firstSeen) this.setPending.run(hash, now, tool);
      return { status: 'changed', firstSeen, pin: fromRow(this.sel.get(tool)!) };
    });
    return retryBusy(() => run.immediate(), BUSY_TIMEOUT_MS);
  }

  async get(tool: string): Promise<ToolPin | undefined> {
    const row = this.sel.get(tool);
    return row ? fromRow(row) : undefined;
  }

  async definition(hash: string): Promise<PinnedDefinition | undefined> {
    return parseDefinition(this.getDef.get(hash)?.definition);
  }

  async list(): Promise<ToolPin[]> {
    return this.db.prepare<[], PinRow>('SELECT * FROM execlayer_tool_pins ORDER BY tool').all().map(fromRow);
  }

  async approve(tool: string, by: string, hash?: string): Promise<ToolPin | undefined> {
    const run = this.db.transaction((): ToolPin | undefined => {
      const row = this.sel.get(tool);
      const target = hash ?? row?.pending_hash ?? undefined;
      if (!row || !target) return undefined;
      this.setHash.run(target, by, new Date().toISOString(), tool);
      return fromRow(this.sel.get(tool)!);
    });
    return retryBusy(() => run.immediate(), BUSY_TIMEOUT_MS);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/**
 * Pins in a PostgreSQL table, shared by every gateway replica using the database. Each method is one
 * transaction that locks the tool's row. The table is created on first use.
 */
export class PostgresToolPinStore implements ToolPinStore {
  readonly #pool: pg.Pool;
  readonly #timeoutMs: number;
  #schema: Promise<void> | undefined;

  /** `timeoutMs`: deadline of one operation, connection included (default 2000 ms); a pin check past it fails. */
  constructor(url: string, options: { timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.#pool = pgPool(url, { max: 4, timeoutMs: this.#timeoutMs, applicationName: 'execlayer-pins' });
  }

  async check(tool: string, hash: string): Promise<PinCheck> {
    return this.#tx(async (c) => {
      const now = new Date().toISOString();
      const body = recent.get(hash);
      if (body !== undefined) {
        await c.query(
          'INSERT INTO execlayer_tool_definitions (hash, definition, seen_at) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING',
          [hash, body, now],
        );
      }
      const added = await c.query<PinRow>(
        'INSERT INTO execlayer_tool_pins (tool, hash, pinned_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (tool) DO NOTHING RETURNING *',
        [tool, hash, now],
      );
      if (added.rows[0]) return { status: 'pinned', firstSeen: true, pin: fromRow(added.rows[0]) };
      let row = (
        await c.query<PinRow>('SELECT * FROM execlayer_tool_pins WHERE tool = $1 FOR UPDATE', [tool])
      ).rows[0]!;
      if (row.hash === hash) return { status: 'match', firstSeen: false, pin: fromRow(row) };
      const firstSeen = row.pending_hash !== hash;
      if (firstSeen) {
        row = (
          await c.query<PinRow>(
            'UPDATE execlayer_tool_pins SET pending_hash = $1, updated_at = $2 WHERE tool = $3 RETURNING *',
            [hash, now, tool],
          )
        ).rows[0]!;
      }
      return { status: 'changed', firstSeen, pin: fromRow(row) };
    });
  }

  async get(tool: string): Promise<ToolPin | undefined> {
    await this.#ensureSchema();
    const r = await this.#read((c) =>
      c.query<PinRow>('SELECT * FROM execlayer_tool_pins WHERE tool = $1', [tool]),
    );
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  async definition(hash: string): Promise<PinnedDefinition | undefined> {
    await this.#ensureSchema();
    const r = await this.#pool.query<{ definition: string }>(
      'SELECT definition FROM execlayer_tool_definitions WHERE hash = $1',
      [hash],
    );
    return parseDefinition(r.rows[0]?.definition);
  }

  async list(): Promise<ToolPin[]> {
    await this.#ensureSchema();
    const r = await this.#read((c) => c.query<PinRow>('SELECT * FROM execlayer_tool_pins ORDER BY tool'));
    return r.rows.map(fromRow);
  }

  async approve(tool: string, by: string, hash?: string): Promise<ToolPin | undefined> {
    return this.#tx(async (c) => {
      const row = (
        await c.query<PinRow>('SELECT * FROM execlayer_tool_pins WHERE tool = $1 FOR UPDATE', [tool])
      ).rows[0];
      const target = hash ?? row?.pending_hash ?? undefined;
      if (!row || !target) return undefined;
      const r = await c.query<PinRow>(
        'UPDATE execlayer_tool_pins SET hash = $1, pending_hash = NULL, approved_by = $2, updated_at = $3 WHERE tool = $4 RETURNING *',
        [target, by, new Date().toISOString(), tool],
      );
      return fromRow(r.rows[0]!);
    });
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  #ensureSchema(): Promise<void> {
    this.#schema ??= pgRun(this.#pool, this.#opts(true), async (c) => {
      // Replicas starting together must not race on CREATE TABLE.
      await c.query("SELECT pg_advisory_xact_lock(hashtextextended('execlayer:tool_pins:schema', 0))");
      await c.query(PINS_SCHEMA);
      await c.query(DEFINITIONS_SCHEMA);
    }).catch((e: unknown) => {
      this.#schema = undefined;
      throw e;
    });
    return this.#schema;
  }

  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.#ensureSchema();
    return pgRun(this.#pool, this.#opts(true), fn);
  }

  #read<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return pgRun(this.#pool, { ...this.#opts(false), readOnly: true }, fn);
  }

  #opts(transaction: boolean): { store: string; timeoutMs: number; transaction: boolean } {
    return { store: 'tool pin store (postgres)', timeoutMs: this.#timeoutMs, transaction };
  }
}

/** Opens the pin store that belongs to a store URL (`sqlite:<file>`, `postgres://…` or `memory:`). */
export function openToolPinStore(store: string, options: { timeoutMs?: number } = {}): ToolPinStore {
  if (store.startsWith('sqlite:')) return new SqliteToolPinStore(store.slice('sqlite:'.length));
  if (store.startsWith('postgres://') || store.startsWith('postgresql://'))
    return new PostgresToolPinStore(store, options);
  if (store === 'memory:' || store.startsWith('memory:')) return new MemoryToolPinStore();
  throw new Error(
    `unsupported store \`${store}\` for tool pins: use \`sqlite:<file>\`, \`postgres://…\` or \`memory:\``,
  );
}

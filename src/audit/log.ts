/**
 * The audit log enforcement points write to. It implements `Recorder`: `record(event)` resolves once the
 * event is durable and rejects with `audit_unavailable` when it cannot be written — callers deny then.
 *
 * GROUP COMMIT: `record` only queues the event (a push and a promise — the cost on the decision's hot path).
 * Everything queued while a transaction is in flight goes into the next one, so one fsync (SQLite) or one
 * commit (PostgreSQL) makes a whole batch durable. Hashing happens inside the store's lock, from the head the
 * store read, so several processes sharing one store still build one gapless chain.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { AuditEvent, Recorder } from '../types.js';
import { canonicalJson } from './canonical-json.js';
import { type Checkpoint, loadOrCreateSigningKey, type SigningKey, signCheckpoint } from './checkpoint.js';
import { AuditError, isAuditError, messageOf } from './errors.js';
import { Frontier, leafHash } from './merkle.js';
import {
  type AuditRecord,
  type IndexColumns,
  indexColumns,
  matchesQuery,
  RECORD_VERSION,
  recordHash,
  type StoredRecord,
  toAuditRecord,
} from './record.js';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import type { AuditStore, ChainHead, RecordQuery, SealedBatch } from './store.js';
import {
  type InclusionProof,
  proveInclusion,
  type VerifyOptions,
  type VerifyReport,
  verifyStore,
} from './verify.js';

/** Retention default: 183 days, the EU AI Act's six-month minimum for deployers' logs (Art. 26(6)). */
export const DEFAULT_RETENTION_MS = 183 * 24 * 60 * 60 * 1000;

/** Options of `openAuditLog`. */
export interface AuditLogOptions {
  /** Sign a checkpoint once this many records are unsigned (default 1000). */
  checkpointEvery?: number;
  /** ... or once the oldest unsigned record is this old (default 5000 ms). */
  checkpointIntervalMs?: number;
  /** Signing key file. SQLite default `<db>.key`; PostgreSQL default `./execlayer-audit.key`. */
  keyPath?: string;
  /** Largest number of events in one transaction (default 10 000). */
  maxBatch?: number;
  sqlite?: SqliteStoreOptions;
  /** PostgreSQL pool size and timeouts. */
  postgres?: { poolSize?: number; statementTimeoutMs?: number; connectTimeoutMs?: number };
  /** Clock (ms since the epoch); for tests. */
  now?: () => number;
}

/** Where a store URL points. */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** The store URL used when none is given: `EXECLAYER_STORE`, else `sqlite:./execlayer.db`. */
export function defaultStoreUrl(): string {
  return process.env.EXECLAYER_STORE || 'sqlite:./execlayer.db';
}

/** Parse `sqlite:<path>` (also `sqlite://<abs path>`) or `postgres://…` / `postgresql://…`. */
export function parseStoreUrl(url: string): StoreLocation {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return { kind: 'postgres', url };
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (path.length === 0) throw new AuditError('invalid_store_url', `store url \`${url}\` has no file path`);
    return { kind: 'sqlite', path };
  }
  throw new AuditError(
    'invalid_store_url',
    `store url \`${url}\` is not understood: use \`sqlite:<file>\` or \`postgres://user@host:port/db\``,
  );
}

/** `url` with any password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Open just the store behind a URL (no signing key): what read-only tools such as `verify` and `export` use.
 * SQLite files are never created here.
 */
export async function openStore(
  url: string,
  options: Pick<AuditLogOptions, 'sqlite' | 'postgres'> & { create?: boolean } = {},
): Promise<AuditStore> {
  const loc = parseStoreUrl(url);
  if (loc.kind === 'sqlite') {
    return openSqliteStore(loc.path, { ...options.sqlite, create: options.create ?? false });
  }
  const { openPostgresStore } = await import('./postgres-store.js');
  return openPostgresStore(loc.url, options.postgres ?? {});
}

/** Where the signing key of the log at `url` lives by default. */
export function defaultKeyPath(url: string): string {
  const loc = parseStoreUrl(url);
  return loc.kind === 'sqlite' ? `${loc.path}.key` : './execlayer-audit.key';
}

/**
 * Open the audit log at `url`, creating the database and the signing key on first run. Rejects with
 * `audit_unavailable` (store unreachable), `audit_corrupt` (damaged or foreign file, left untouched) or
 * `audit_key_error` (key unreadable or not the key the log was created with).
 */
export async function openAuditLog(url: string, options: AuditLogOptions = {}): Promise<AuditLog> {
  const loc = parseStoreUrl(url);
  const keyPath = options.keyPath ?? defaultKeyPath(url);
  if (
    loc.kind === 'sqlite' &&
    existsSync(keyPath) &&
    (!existsSync(loc.path) || statSync(loc.path).size === 0)
  ) {
    // INVARIANT: never silently start a new log in place of a deleted one — the key proves one existed.
    throw new AuditError(
      'audit_corrupt',
      `audit database \`${loc.path}\` is missing or empty but its signing key \`${keyPath}\` exists: the log was deleted or moved; restore it, or move the key aside to start a new log`,
      { data: { path: loc.path, keyPath } },
    );
  }
  const store = await openStore(url, { ...options, create: true });
  try {
    const key = loadOrCreateSigningKey(resolvePath(keyPath));
    const bound = await store.bindPublicKey(key.publicPem);
    if (bound !== key.publicPem) {
      throw new AuditError(
        'audit_key_error',
        `signing key \`${keyPath}\` is not the key this audit log was created with; use the original key file`,
        { data: { keyPath } },
      );
    }
    const head = await store.head();
    checkHead(store, head, await store.read(Math.max(0, head.size - 1), 2));
    return new AuditLog(store, key, options);
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
}

function checkHead(store: AuditStore, head: ChainHead, last: StoredRecord[]): void {
  const tip = last[last.length - 1];
  const ok =
    head.size === 0
      ? last.length === 0
      : tip !== undefined && tip.seq === head.size - 1 && tip.hash.equals(head.hash);
  if (!ok) {
    throw new AuditError(
      'audit_corrupt',
      `audit log \`${store.location}\` does not end where its head says (${head.size} records): it was left untouched; run \`execlayer audit verify\``,
      { data: { headSize: head.size, lastSeq: tip?.seq ?? null } },
    );
  }
}

/**
 * Records matching `q`. The store answers from its index columns; every result is re-checked against its own
 * hashed event, so an edited index column can hide a record from a query but never put a wrong one in it.
 */
export async function queryRecords(store: AuditStore, q: RecordQuery): Promise<AuditRecord[]> {
  return (await store.query(q)).map(toAuditRecord).filter((r) => matchesQuery(r, q));
}

/** What `prune` did (or, for a dry run, would do). */
export interface PruneResult {
  /** Records with time before this (ms) were eligible. */
  cutoff: number;
  /** Records below this seq have no content now. */
  before: number;
  /** Records pruned by this call. */
  count: number;
  /** The signed checkpoint the pruned prefix ends at. */
  checkpoint: Checkpoint | null;
  dryRun: boolean;
}

/** What `append` resolves to: where the record landed. */
export interface Receipt {
  seq: number;
  time: number;
  /** Record hash, hex. */
  hash: string;
}

interface Pending {
  event: AuditEvent;
  resolve: (r: Receipt | undefined) => void;
  reject: (e: AuditError) => void;
  receipt: boolean;
}

/** The tamper-evident audit log. Create it with `openAuditLog`. */
export class AuditLog implements Recorder {
  private queue: Pending[] = [];
  private writing = false;
  private scheduled = false;
  private closing: Promise<void> | null = null;
  private wantCheckpoint: Array<{
    resolve: (c: Checkpoint | null) => void;
    reject: (e: AuditError) => void;
  }> = [];
  private idle: Array<() => void> = [];
  private readonly every: number;
  private readonly intervalMs: number;
  private readonly maxBatch: number;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  private unsigned = 0;
  private counters = { batches: 0, records: 0, failedBatches: 0, failedRecords: 0 };

  constructor(
    /** The backend; exposed for verification and tools. */
    readonly store: AuditStore,
    private readonly key: SigningKey,
    options: AuditLogOptions = {},
  ) {
    this.every = Math.max(1, options.checkpointEvery ?? 1000);
    this.intervalMs = Math.max(1, options.checkpointIntervalMs ?? 5000);
    this.maxBatch = Math.max(1, options.maxBatch ?? 10_000);
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => {
      if (this.unsigned > 0 && !this.writing && this.closing === null) {
        this.checkpoint().catch(() => undefined);
      }
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Transactions and records written (and failed) by this process, for metrics and group-commit sizing. */
  stats(): {
    batches: number;
    records: number;
    failedBatches: number;
    failedRecords: number;
    queued: number;
  } {
    return { ...this.counters, queued: this.queue.length };
  }

  /** The public key (SPKI PEM) that verifies this log's checkpoints. */
  get publicKeyPem(): string {
    return this.key.publicPem;
  }

  /** Key id of the signing key. */
  get keyId(): string {
    return this.key.keyId;
  }

  /**
   * Record an event. Resolves once it is durable; rejects with `AuditError` (`audit_unavailable`, or
   * `invalid_event` for a value with no JSON form). The event object must not be changed afterwards.
   */
  record(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue({ event, resolve: resolve as (r: Receipt | undefined) => void, reject, receipt: false });
    });
  }

  /** Like `record`, resolving with where the record landed. */
  append(event: AuditEvent): Promise<Receipt> {
    return new Promise<Receipt>((resolve, reject) => {
      this.enqueue({ event, resolve: resolve as (r: Receipt | undefined) => void, reject, receipt: true });
    });
  }

  private enqueue(p: Pending): void {
    if (this.closing !== null) {
      p.reject(new AuditError('audit_unavailable', `audit log \`${this.store.location}\` is closed`));
      return;
    }
    this.queue.push(p);
    this.schedule();
  }

  private schedule(): void {
    if (this.writing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.queue.length > 0 || this.wantCheckpoint.length > 0) {
        let batch: Pending[];
        if (this.queue.length <= this.maxBatch) {
          batch = this.queue;
          this.queue = [];
        } else {
          batch = this.queue.slice(0, this.maxBatch);
          this.queue = this.queue.slice(this.maxBatch);
        }
        const waiters = this.queue.length === 0 ? this.wantCheckpoint.splice(0) : [];
        await this.write(batch, waiters);
      }
    } finally {
      this.writing = false;
      for (const f of this.idle.splice(0)) f();
    }
  }

  private async write(
    batch: Pending[],
    waiters: Array<{ resolve: (c: Checkpoint | null) => void; reject: (e: AuditError) => void }>,
  ): Promise<void> {
    const texts: string[] = [];
    const cols: IndexColumns[] = [];
    const owners: Pending[] = [];
    for (const p of batch) {
      try {
        texts.push(canonicalJson(p.event));
        cols.push(indexColumns(p.event));
        owners.push(p);
      } catch (e) {
        p.reject(
          new AuditError('invalid_event', `audit event cannot be recorded: ${messageOf(e)}`, { cause: e }),
        );
      }
    }
    if (owners.length === 0 && waiters.length === 0) return;
    const force = waiters.length > 0;
    let sealed: SealedBatch;
    try {
      sealed = await this.store.append((head) => this.seal(head, texts, cols, force));
    } catch (e) {
      // INVARIANT: fail closed — every caller in the batch learns its event was not recorded.
      const err = isAuditError(e)
        ? e
        : new AuditError('audit_unavailable', `audit store failed: ${messageOf(e)}`, { cause: e });
      this.counters.failedBatches++;
      this.counters.failedRecords += owners.length;
      for (const o of owners) o.reject(err);
      for (const w of waiters) w.reject(err);
      return;
    }
    this.counters.batches++;
    this.counters.records += owners.length;
    this.unsigned = sealed.head.size - sealed.head.checkpointSize;
    const rows = sealed.rows;
    for (let i = 0; i < owners.length; i++) {
      const o = owners[i]!;
      if (o.receipt) {
        const r = rows[i]!;
        o.resolve({ seq: r.seq, time: r.time, hash: r.hash.toString('hex') });
      } else {
        o.resolve(undefined);
      }
    }
    if (waiters.length > 0) {
      let cp = sealed.checkpoint;
      if (cp === null) {
        try {
          cp = (await this.store.checkpoints()).at(-1) ?? null;
        } catch {
          cp = null;
        }
      }
      for (const w of waiters) w.resolve(cp);
    }
  }

  /** Build the batch from the head read under the store's lock. Pure apart from the signature. */
  private seal(head: ChainHead, texts: string[], cols: IndexColumns[], force: boolean): SealedBatch {
    const time = Math.max(this.now(), head.time);
    const frontier = Frontier.from(head.size, head.frontier);
    const rows: StoredRecord[] = new Array(texts.length);
    let prev = head.hash;
    let seq = head.size;
    for (let i = 0; i < texts.length; i++) {
      const event = texts[i]!;
      const hash = recordHash(RECORD_VERSION, prev, seq, time, event);
      frontier.append(leafHash(hash));
      rows[i] = { seq, v: RECORD_VERSION, time, hash, event, index: cols[i]! };
      prev = hash;
      seq++;
    }
    const size = seq;
    const due =
      size > head.checkpointSize &&
      (force || size - head.checkpointSize >= this.every || time - head.checkpointTime >= this.intervalMs);
    const checkpoint = due ? signCheckpoint(this.key, size, frontier.root(), time) : null;
    return {
      rows,
      checkpoint,
      head: {
        size,
        hash: prev,
        time,
        frontier: rows.length > 0 ? frontier.serialize() : head.frontier,
        checkpointSize: checkpoint ? size : head.checkpointSize,
        checkpointTime: checkpoint ? time : head.checkpointTime,
        prunedBefore: head.prunedBefore,
      },
    };
  }

  /**
   * Sign a checkpoint now over everything recorded so far (after the events already queued). Resolves with
   * the newest checkpoint, or null when the log is empty.
   */
  checkpoint(): Promise<Checkpoint | null> {
    return new Promise((resolve, reject) => {
      this.wantCheckpoint.push({ resolve, reject });
      this.schedule();
    });
  }

  /** Resolves when everything queued so far has been written (or has failed). */
  flush(): Promise<void> {
    if (!this.writing && !this.scheduled && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle.push(resolve);
    });
  }

  /** Records matching `q`, oldest first unless `q.order` is `desc`. */
  async query(q: RecordQuery = {}): Promise<AuditRecord[]> {
    return queryRecords(this.store, q);
  }

  /** The last `n` records, oldest first. */
  async tail(n: number): Promise<AuditRecord[]> {
    return (await this.store.query({ order: 'desc', limit: n })).map(toAuditRecord).reverse();
  }

  /** Records with seq in [from, from + limit). Pruned records have `event: null`. */
  async read(from: number, limit: number): Promise<AuditRecord[]> {
    return (await this.store.read(from, limit)).map(toAuditRecord);
  }

  /** Verify the whole log against this log's own public key (see `verifyStore`). */
  verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    return verifyStore(this.store, this.key.publicKey, options);
  }

  /** Inclusion proof for record `seq`, signing a checkpoint first when the record is not yet covered. */
  async proof(seq: number): Promise<InclusionProof> {
    const head = await this.store.head();
    if (seq >= head.checkpointSize && seq < head.size) await this.checkpoint();
    return proveInclusion(this.store, seq);
  }

  /**
   * Remove the content of records older than `olderThanMs` (default 183 days), keeping their hashes. Only
   * whole prefixes below a signed checkpoint are pruned, so the log stays verifiable.
   */
  async prune(options: { olderThanMs?: number; dryRun?: boolean } = {}): Promise<PruneResult> {
    const olderThanMs = options.olderThanMs ?? DEFAULT_RETENTION_MS;
    const cutoff = this.now() - olderThanMs;
    const head = await this.store.head();
    const firstKept = await this.store.seqAtTime(cutoff);
    let checkpoint: Checkpoint | null = null;
    for (const cp of await this.store.checkpoints()) if (cp.size <= firstKept) checkpoint = cp;
    const before = Math.max(checkpoint?.size ?? 0, head.prunedBefore);
    const count = before - head.prunedBefore;
    if (count > 0 && options.dryRun !== true) await this.store.prune(before);
    return { cutoff, before, count, checkpoint, dryRun: options.dryRun === true };
  }

  /** Wait for queued events, sign a final checkpoint, close the store. Later `record` calls reject. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.closing = (async () => {
        clearInterval(this.timer);
        try {
          if (this.unsigned > 0 || this.queue.length > 0) await this.checkpoint();
          await this.flush();
        } catch {
          // The store is unreachable; the unsigned tail is signed by the next process that opens the log.
        } finally {
          await this.store.close();
        }
      })();
    }
    return this.closing;
  }
}

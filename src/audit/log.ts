/**
 * The audit log enforcement points write to. It implements `Recorder`: `record(event)` resolves once the
 * event is durable and rejects with `audit_unavailable` when it cannot be written — callers deny then.
 *
 * GROUP COMMIT: `record` only queues the event (a push and a promise — the cost on the decision's hot path).
 * Once per tick the queued events are serialised to canonical JSON and handed to a writer thread
 * (writer.ts, writer-worker.ts) that owns the write connection; everything that reaches it while a
 * transaction is in flight goes into the next one, so one fsync (SQLite) or one commit (PostgreSQL) makes a
 * whole batch durable without blocking this thread. Hashing happens inside the store's lock, from the head
 * the store read, so several processes sharing one store still build one gapless chain.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { AuditEvent, Recorder, RecordOptions } from '../types.js';
import { type Checkpoint, loadOrCreateSigningKey, type SigningKey } from './checkpoint.js';
import { AuditError } from './errors.js';
import type { PostgresStoreOptions } from './postgres-store.js';
import { type AuditRecord, matchesQuery, toAuditRecord } from './record.js';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import type { AuditStore, RecordQuery } from './store.js';
import {
  BOUNDED_GAPS_META,
  type InclusionProof,
  proveInclusion,
  type VerifyOptions,
  type VerifyReport,
  verifyStore,
} from './verify.js';
import { type Receipt, WriterThread } from './writer.js';

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
  /** PostgreSQL pool size and deadlines (`timeoutMs`: appends, default 2000 ms). */
  postgres?: PostgresStoreOptions;
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

/** How much of an SQLite file the read-only tools map into memory (see `SqliteStoreOptions.mmapBytes`). */
const READ_ONLY_MMAP_BYTES = 1 << 30;

/**
 * Open just the store behind a URL (no signing key): what read-only tools such as `verify` and `export` use.
 * SQLite files are never created here unless `create` says so; read-only opens (`create` false) read
 * SQLite files through a memory map.
 */
export async function openStore(
  url: string,
  options: Pick<AuditLogOptions, 'sqlite' | 'postgres'> & { create?: boolean } = {},
): Promise<AuditStore> {
  const loc = parseStoreUrl(url);
  if (loc.kind === 'sqlite') {
    const create = options.create ?? false;
    return openSqliteStore(loc.path, {
      ...(create ? {} : { mmapBytes: READ_ONLY_MMAP_BYTES }),
      ...options.sqlite,
      create,
    });
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
    await checkHead(store);
    // From here on this log's writers sign at least every `checkpointEvery` records (seal.ts); earlier
    // versions could leave a whole batch between two checkpoints. Verification bounds gaps from this size.
    await store.bindMeta(BOUNDED_GAPS_META, String((await store.head()).checkpointSize));
    const writer = new WriterThread(
      {
        // The writer opens the file this process opened, whatever the working directory becomes.
        location: loc.kind === 'sqlite' ? { kind: 'sqlite', path: resolvePath(loc.path) } : loc,
        sqlite: options.sqlite ?? {},
        postgres: options.postgres ?? {},
        privateKey: key.privateKey,
        publicKey: key.publicKey,
        publicPem: key.publicPem,
        keyId: key.keyId,
        every: Math.max(1, options.checkpointEvery ?? 1000),
        intervalMs: Math.max(1, options.checkpointIntervalMs ?? 5000),
        maxBatch: Math.max(1, options.maxBatch ?? 10_000),
      },
      store.location,
      options.now ?? Date.now,
    );
    try {
      await writer.ready();
    } catch (e) {
      await writer.close();
      throw e;
    }
    return new AuditLog(store, key, options, writer);
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The log must end where its head says: the head's hash is the last record's, and no record lies beyond it.
 * Another process may append between reading the head and reading the records; then the head has moved on
 * and the check runs again on the new one. A log that stays inconsistent is refused as damaged.
 */
export async function checkHead(store: AuditStore): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const head = await store.head();
    const last = await store.read(Math.max(0, head.size - 1), 2);
    const tip = last[last.length - 1];
    const ok =
      head.size === 0
        ? last.length === 0
        : tip !== undefined && tip.seq === head.size - 1 && tip.hash.equals(head.hash);
    if (ok) return;
    if (attempt < 5 && (await store.head()).size !== head.size) continue;
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
export type { Receipt };

/** The tamper-evident audit log. Create it with `openAuditLog`. */
export class AuditLog implements Recorder {
  private closing: Promise<void> | null = null;
  private readonly writer: WriterThread;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    /** The backend; exposed for verification and tools. Appends go through the writer's own connection. */
    readonly store: AuditStore,
    private readonly key: SigningKey,
    options: AuditLogOptions,
    writer: WriterThread,
  ) {
    const intervalMs = Math.max(1, options.checkpointIntervalMs ?? 5000);
    this.writer = writer;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => {
      if (this.writer.unsigned > 0 && !this.writer.busy && this.closing === null) {
        this.checkpoint().catch(() => undefined);
      }
    }, intervalMs);
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
    return { ...this.writer.counters, queued: this.writer.queued };
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
  record(event: AuditEvent, options?: RecordOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.writer.enqueue({
        event,
        resolve: resolve as (r: Receipt | undefined) => void,
        reject,
        receipt: false,
        lazy: options?.lazy === true,
      });
    });
  }

  /** Like `record`, resolving with where the record landed. */
  append(event: AuditEvent): Promise<Receipt> {
    return new Promise<Receipt>((resolve, reject) => {
      this.writer.enqueue({
        event,
        resolve: resolve as (r: Receipt | undefined) => void,
        reject,
        receipt: true,
      });
    });
  }

  /**
   * Sign a checkpoint now over everything recorded so far (after the events already queued). Resolves with
   * the newest checkpoint, or null when the log is empty.
   */
  checkpoint(): Promise<Checkpoint | null> {
    return this.writer.checkpoint();
  }

  /** Resolves when everything queued so far has been written (or has failed). */
  flush(): Promise<void> {
    return this.writer.flush();
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

  /**
   * Wait for queued events, sign a final checkpoint, stop the writer thread and close the store. Later
   * `record` calls reject.
   */
  close(): Promise<void> {
    if (this.closing === null) {
      this.closing = (async () => {
        clearInterval(this.timer);
        try {
          if (this.writer.unsigned > 0 || this.writer.busy) await this.checkpoint();
          await this.flush();
        } catch {
          // The store is unreachable; the unsigned tail is signed by the next process that opens the log.
        } finally {
          await this.writer.close();
          await this.store.close();
        }
      })();
    }
    return this.closing;
  }
}

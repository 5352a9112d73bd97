/**
 * The main-thread side of the audit log's writer: queues events, hands them to the writer thread once per
 * tick, and settles each caller's promise when the thread reports the transaction that carried it durable.
 *
 * On this thread an event costs one canonical JSON serialisation (done once per tick for the whole batch,
 * not in `record()`) and a promise; hashing, signing, inserts and the fsync happen in writer-worker.ts.
 *
 * INVARIANT: fail closed — a caller's promise resolves only on the writer's `done` for its batch, which is
 * posted after the commit returned. A failed transaction, a writer that cannot open the store, and a writer
 * thread that dies reject every batch they held with `audit_unavailable`; the next batch starts a new writer,
 * so the log recovers by itself when the store returns.
 */
import type { Worker } from 'node:worker_threads';
import { canonicalJson } from '../canonical-json.js';
import { messageOf } from '../errors.js';
import type { AuditEvent } from '../types.js';
import type { Checkpoint } from './checkpoint.js';
import { AuditError } from './errors.js';
import { indexColumns } from './record.js';
import { spawnWorker } from './spawn-worker.js';
import { type BatchMessage, type FromWriter, fromWire, type WriterInit } from './wire.js';

/** Where a record landed. */
export interface Receipt {
  seq: number;
  time: number;
  /** Record hash, hex. */
  hash: string;
}

/** One caller waiting for its event to be durable. */
export interface PendingRecord {
  event: AuditEvent;
  resolve: (r: Receipt | undefined) => void;
  reject: (e: AuditError) => void;
  /** Resolve with a receipt (`append`) rather than undefined (`record`). */
  receipt: boolean;
  /** Nobody waits on it: it may wait up to LAZY_MS to share a transaction with later records. */
  lazy?: boolean;
}

interface Waiter {
  resolve: (c: Checkpoint | null) => void;
  reject: (e: AuditError) => void;
}

interface Flight {
  owners: PendingRecord[];
  waiters: Waiter[];
  worker: Worker;
}

/**
 * Events serialised and handed off per turn of the event loop. Bounds how long one turn blocks this thread,
 * and lets the writer start on the first part of a burst while this thread serialises the next.
 */
const CHUNK = 512;
/**
 * How long a lazy record (one no caller waits on: a denial, an outcome) may wait for a record someone waits
 * on, so both go in one transaction and one fsync instead of two.
 */
const LAZY_MS = 20;
/** After a writer failed to start, batches are refused for this long before the next start. */
const RESTART_DELAY_MS = 200;
/** How long `close` waits for the writer to close its store before terminating it. */
const CLOSE_TIMEOUT_MS = 10_000;

/** Counters for metrics and group-commit sizing. */
export interface WriterStats {
  batches: number;
  records: number;
  failedBatches: number;
  failedRecords: number;
}

/** Queues events for the writer thread and settles their promises. */
export class WriterThread {
  private queue: PendingRecord[] = [];
  private wantCheckpoint: Waiter[] = [];
  private scheduled = false;
  private lazyTimer: NodeJS.Timeout | null = null;
  /** Queued records someone waits on (not lazy). */
  private urgent = 0;
  private worker: Worker | null = null;
  private readonly answered = new WeakSet<Worker>();
  private readonly inflight = new Map<number, Flight>();
  private nextId = 1;
  private idle: Array<() => void> = [];
  private startFailure: { at: number; error: AuditError } | null = null;
  private readonly started = new WeakSet<Worker>();
  private startWaiters: Array<{ resolve: () => void; reject: (e: AuditError) => void }> = [];
  private closed = false;
  /** Records not yet under a checkpoint, as of the last commit. */
  unsigned = 0;
  readonly counters: WriterStats = { batches: 0, records: 0, failedBatches: 0, failedRecords: 0 };

  constructor(
    private readonly init: WriterInit,
    private readonly location: string,
    private readonly now: () => number,
  ) {}

  /**
   * Start the writer thread if it is not running and resolve once it has opened the store; rejects with the
   * reason it could not.
   */
  ready(): Promise<void> {
    const w = this.ensureWorker();
    if (w === null) return Promise.reject(this.startFailure!.error);
    if (this.started.has(w)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.startWaiters.push({ resolve, reject });
    });
  }

  /** Events queued on this thread (not yet handed to the writer). */
  get queued(): number {
    return this.queue.length;
  }

  /** True while anything is queued or awaiting its commit. */
  get busy(): boolean {
    return this.scheduled || this.queue.length > 0 || this.inflight.size > 0;
  }

  /** Send what is queued: now when someone waits on a record, else within LAZY_MS. */
  private scheduleQueued(): void {
    if (this.urgent > 0 || this.wantCheckpoint.length > 0) {
      this.schedule();
      return;
    }
    if (this.queue.length === 0 || this.scheduled || this.lazyTimer !== null) return;
    this.lazyTimer = setTimeout(() => {
      this.lazyTimer = null;
      this.schedule();
    }, LAZY_MS);
  }

  enqueue(p: PendingRecord): void {
    if (this.closed) {
      p.reject(new AuditError('audit_unavailable', `audit log \`${this.location}\` is closed`));
      return;
    }
    this.queue.push(p);
    if (p.lazy !== true) this.urgent++;
    this.scheduleQueued();
  }

  /** Sign a checkpoint after everything queued so far; resolves with the newest checkpoint. */
  checkpoint(): Promise<Checkpoint | null> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new AuditError('audit_unavailable', `audit log \`${this.location}\` is closed`));
        return;
      }
      this.wantCheckpoint.push({ resolve, reject });
      this.schedule();
    });
  }

  /** Resolves when everything queued so far has been committed or has failed. */
  flush(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    if (this.queue.length > 0) this.schedule();
    return new Promise((resolve) => {
      this.idle.push(resolve);
    });
  }

  /** Stop the writer: it closes its store and exits. Events queued later reject. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    this.failQueued(new AuditError('audit_unavailable', `audit log \`${this.location}\` is closed`));
    if (w === null) return;
    const exited = new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
    });
    w.ref();
    w.postMessage({ t: 'close' });
    const timer = setTimeout(() => void w.terminate(), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private schedule(): void {
    if (this.lazyTimer !== null) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = null;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.send();
    });
  }

  private send(): void {
    if (this.queue.length === 0 && this.wantCheckpoint.length === 0) {
      this.settleIdle();
      return;
    }
    const w = this.ensureWorker();
    if (w === null) {
      this.failQueued(this.startFailure!.error);
      return;
    }
    const n = Math.min(this.queue.length, CHUNK, this.init.maxBatch);
    const part = n === this.queue.length ? this.queue : this.queue.slice(0, n);
    this.queue = n === this.queue.length ? [] : this.queue.slice(n);
    for (const p of part) if (p.lazy !== true) this.urgent--;
    // A checkpoint waits for everything queued before it was asked for.
    const waiters = this.queue.length === 0 ? this.wantCheckpoint.splice(0) : [];
    const texts: string[] = [];
    const cols: Array<string | null> = [];
    const owners: PendingRecord[] = [];
    for (const p of part) {
      try {
        texts.push(canonicalJson(p.event));
        const c = indexColumns(p.event);
        cols.push(c.type, c.agent, c.tool, c.effect, c.rule, c.decisionId);
        owners.push(p);
      } catch (e) {
        p.reject(
          new AuditError('invalid_event', `audit event cannot be recorded: ${messageOf(e)}`, { cause: e }),
        );
      }
    }
    if (owners.length > 0 || waiters.length > 0) {
      const id = this.nextId++;
      this.inflight.set(id, { owners, waiters, worker: w });
      const msg: BatchMessage = { t: 'batch', id, time: this.now(), force: waiters.length > 0, texts, cols };
      w.postMessage(msg);
      w.ref();
    }
    // The rest of a burst follows at once: it was queued before this part went out.
    if (this.queue.length > 0 || this.wantCheckpoint.length > 0) this.schedule();
    else this.settleIdle();
  }

  private ensureWorker(): Worker | null {
    if (this.worker !== null) return this.worker;
    if (this.closed) return null;
    if (this.startFailure !== null && Date.now() - this.startFailure.at < RESTART_DELAY_MS) return null;
    let w: Worker;
    try {
      w = spawnWorker('writer-worker', { workerData: this.init });
    } catch (e) {
      this.startFailure = {
        at: Date.now(),
        error: new AuditError('audit_unavailable', `cannot start the audit writer: ${messageOf(e)}`, {
          cause: e,
        }),
      };
      return null;
    }
    let error: unknown = null;
    w.on('message', (m: FromWriter) => this.onMessage(w, m));
    w.on('error', (e) => {
      error = e;
    });
    w.on('exit', (code) => this.onExit(w, code, error));
    // Referenced until it has started (an awaited open must keep the process alive), then only while it
    // holds batches: an idle writer does not keep the process alive.
    this.worker = w;
    return w;
  }

  private onMessage(w: Worker, m: FromWriter): void {
    this.answered.add(w);
    switch (m.t) {
      case 'ready':
        this.started.add(w);
        for (const s of this.startWaiters.splice(0)) s.resolve();
        break;
      case 'done': {
        let off = 0;
        const hashes = Buffer.from(m.hashes.buffer, m.hashes.byteOffset, m.hashes.byteLength);
        for (let j = 0; j < m.ids.length; j++) {
          const f = this.inflight.get(m.ids[j]!);
          if (f === undefined) continue;
          this.inflight.delete(m.ids[j]!);
          const seq = m.seqs[j]!;
          const time = m.times[j]!;
          const owners = f.owners;
          for (let i = 0; i < owners.length; i++) {
            const o = owners[i]!;
            if (o.receipt) {
              const at = (off + i) * 32;
              o.resolve({ seq: seq + i, time, hash: hashes.toString('hex', at, at + 32) });
            } else {
              o.resolve(undefined);
            }
          }
          off += owners.length;
          for (const waiter of f.waiters) waiter.resolve(m.checkpoint);
        }
        this.counters.batches++;
        this.counters.records += off;
        this.unsigned = m.unsigned;
        break;
      }
      case 'fail':
        this.failFlights(m.ids, fromWire(m.error), true);
        break;
      case 'fatal': {
        const error = fromWire(m.error);
        this.startFailure = { at: Date.now(), error };
        if (this.worker === w) this.worker = null;
        for (const s of this.startWaiters.splice(0)) s.reject(error);
        this.failFlights(this.flightsOf(w), error, false);
        break;
      }
      case 'closed':
        break;
    }
    this.afterAnswer(w);
  }

  private onExit(w: Worker, code: number, error: unknown): void {
    if (this.worker === w) this.worker = null;
    const ids = this.flightsOf(w);
    if (ids.length > 0 || !this.closed) {
      const why = error === null ? `exit code ${code}` : messageOf(error);
      const err = new AuditError(
        'audit_unavailable',
        `audit writer for \`${this.location}\` stopped: ${why}`,
        {
          ...(error === null ? {} : { cause: error }),
          data: { exitCode: code },
        },
      );
      // A writer that dies before answering anything is a failed start: pause before the next one.
      if (!this.answered.has(w) && !this.closed) this.startFailure = { at: Date.now(), error: err };
      this.failFlights(ids, err, false);
      if (!this.started.has(w)) for (const s of this.startWaiters.splice(0)) s.reject(err);
    }
    this.afterAnswer(w);
  }

  private flightsOf(w: Worker): number[] {
    const ids: number[] = [];
    for (const [id, f] of this.inflight) if (f.worker === w) ids.push(id);
    return ids;
  }

  private failFlights(ids: number[], error: AuditError, countBatch: boolean): void {
    let records = 0;
    for (const id of ids) {
      const f = this.inflight.get(id);
      if (f === undefined) continue;
      this.inflight.delete(id);
      records += f.owners.length;
      for (const o of f.owners) o.reject(error);
      for (const waiter of f.waiters) waiter.reject(error);
    }
    if (ids.length > 0) {
      this.counters.failedBatches += countBatch ? 1 : ids.length;
      this.counters.failedRecords += records;
    }
  }

  private failQueued(error: AuditError): void {
    const queue = this.queue;
    const waiters = this.wantCheckpoint;
    this.queue = [];
    this.urgent = 0;
    this.wantCheckpoint = [];
    if (this.lazyTimer !== null) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = null;
    }
    if (queue.length > 0) {
      this.counters.failedBatches++;
      this.counters.failedRecords += queue.length;
    }
    for (const p of queue) p.reject(error);
    for (const waiter of waiters) waiter.reject(error);
    this.settleIdle();
  }

  private afterAnswer(w: Worker): void {
    if (this.flightsOf(w).length === 0 && !this.closed) w.unref();
    if (this.queue.length > 0 || this.wantCheckpoint.length > 0) this.scheduleQueued();
    else this.settleIdle();
  }

  private settleIdle(): void {
    if (this.busy) return;
    for (const f of this.idle.splice(0)) f();
  }
}

/**
 * The audit log's writer thread. It owns the write connection to the store and does everything a record
 * costs after the hand-off: chaining, hashing, the Merkle frontier, checkpoint signatures, the inserts and
 * the commit (for SQLite the fsync), so none of it blocks the event loop that enforces decisions.
 *
 * GROUP COMMIT: batches that arrive while a transaction runs are taken together into the next one (up to
 * `maxBatch` records), so one commit makes all of them durable. A batch is answered only after its commit
 * returned; an error rolls the whole transaction back and is answered as `fail` for every batch in it.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { canonicalJson } from '../canonical-json.js';
import { DEFAULT_STORE_TIMEOUT_MS } from '../state/pg-db.js';
import type { StoreEvent } from '../types.js';
import type { Checkpoint, SigningKey } from './checkpoint.js';
// Static, not `await import()`: under tsx the worker loads as CommonJS, where a dynamic import bypasses tsx.
import { openPostgresStore } from './postgres-store.js';
import { indexColumns } from './record.js';
import { type Sealed, type SealGroup, sealGroups } from './seal.js';
import { openSqliteStore } from './sqlite-store.js';
import type { AuditStore, LateCommit } from './store.js';
import type { BatchMessage, FromWriter, ToWriter, WriterInit } from './wire.js';
import { toWire } from './wire.js';

const init = workerData as WriterInit;
const port = parentPort!;
const key: SigningKey = {
  privateKey: init.privateKey,
  publicKey: init.publicKey,
  publicPem: init.publicPem,
  keyId: init.keyId,
};
const policy = { every: init.every, intervalMs: init.intervalMs };
const queue: BatchMessage[] = [];
/** When each queued batch reached this thread (performance.now()): its caller's wait starts there. */
const arrived = new Map<number, number>();
/**
 * INVARIANT: every wait is bounded — a caller is answered within the append deadline of its batch's arrival,
 * also when it queued behind a transaction that hung until its own deadline.
 */
const timeoutMs = init.postgres.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
let store: AuditStore | null = null;
let busy = false;
let closeRequested = false;
let closed = false;

function post(m: FromWriter, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

function take(m: ToWriter): void {
  if (m.t === 'close') closeRequested = true;
  else {
    queue.push(m);
    arrived.set(m.id, performance.now());
  }
}

async function write(batch: BatchMessage[]): Promise<void> {
  const s = store!;
  const ids = batch.map((b) => b.id);
  const force = batch.some((b) => b.force);
  let sealed: Sealed;
  let notes = 0;
  let start = Number.POSITIVE_INFINITY;
  for (const id of ids) {
    start = Math.min(start, arrived.get(id) ?? performance.now());
    arrived.delete(id);
  }
  try {
    sealed = (await s.append(
      (head, late) => {
        // Records that landed after their append had failed are told about first (see postgres-store.ts).
        const groups =
          late !== undefined && late.length > 0 ? [lateCommitGroup(late, batch), ...batch] : batch;
        notes = groups.length - batch.length;
        return sealGroups(head, groups, force, key, policy);
      },
      { deadline: start + timeoutMs },
    )) as Sealed;
  } catch (e) {
    // INVARIANT: fail closed — nothing of this transaction was committed; every batch in it is told so.
    post({ t: 'fail', ids, error: toWire(e, 'audit store failed') });
    return;
  }
  // The main thread knows only its own batches: the notes' rows and group are not reported.
  const rows = notes === 0 ? sealed.rows : sealed.rows.slice(sealed.placed[1]!.seq - sealed.placed[0]!.seq);
  const placed = notes === 0 ? sealed.placed : sealed.placed.slice(notes);
  const hashes = new Uint8Array(32 * rows.length);
  for (let i = 0; i < rows.length; i++) hashes.set(rows[i]!.hash, i * 32);
  let checkpoint = sealed.checkpoints.at(-1) ?? null;
  if (checkpoint === null && force) {
    // Only a hint for the waiters (the newest checkpoint); it must not hold up the batches queued behind it.
    checkpoint = await newestCheckpoint(s);
  }
  post(
    {
      t: 'done',
      ids,
      seqs: placed.map((p) => p.seq),
      times: placed.map((p) => p.time),
      hashes,
      unsigned: sealed.head.size - sealed.head.checkpointSize,
      checkpoint,
    },
    [hashes.buffer as ArrayBuffer],
  );
}

/** The store's newest checkpoint, or null when it cannot say within the append deadline. */
function newestCheckpoint(s: AuditStore): Promise<Checkpoint | null> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), timeoutMs);
    s.checkpoints().then(
      (cps) => {
        clearTimeout(t);
        resolve(cps.at(-1) ?? null);
      },
      () => {
        clearTimeout(t);
        resolve(null);
      },
    );
  });
}

/** One `store` event per late commit, in a group of its own at the time of the batch it goes with. */
function lateCommitGroup(late: readonly LateCommit[], batch: readonly BatchMessage[]): SealGroup {
  const texts: string[] = [];
  const cols: Array<string | null> = [];
  for (const l of late) {
    const ev: StoreEvent = {
      type: 'store',
      status: 'late_commit',
      store: 'audit',
      seq: l.seq,
      count: l.count,
      hash: l.hash,
      reason: `records ${l.seq} to ${l.seq + l.count - 1} were committed after their append had failed by its deadline: their callers were told they were not recorded, so the actions they allowed did not run`,
    };
    texts.push(canonicalJson(ev));
    const c = indexColumns(ev);
    cols.push(c.type, c.agent, c.tool, c.effect, c.rule, c.decisionId);
  }
  return { time: batch[0]?.time ?? Date.now(), texts, cols };
}

async function pump(): Promise<void> {
  if (busy || store === null || closed) return;
  busy = true;
  try {
    for (;;) {
      // Everything that arrived during the last transaction joins the next one.
      for (let r = receiveMessageOnPort(port); r !== undefined; r = receiveMessageOnPort(port)) {
        take(r.message as ToWriter);
      }
      if (queue.length === 0) break;
      let n = queue[0]!.texts.length;
      let k = 1;
      while (k < queue.length && n + queue[k]!.texts.length <= init.maxBatch) n += queue[k++]!.texts.length;
      await write(queue.splice(0, k));
    }
    if (closeRequested) {
      closed = true;
      await store.close().catch(() => undefined);
      post({ t: 'closed' });
      port.close();
    }
  } finally {
    busy = false;
  }
}

port.on('message', (m: ToWriter) => {
  take(m);
  void pump();
});

async function start(): Promise<void> {
  try {
    const loc = init.location;
    if (loc.kind === 'sqlite') {
      // The log's opener already checked the file (quick_check, application id) and created it.
      store = openSqliteStore(loc.path, { ...init.sqlite, create: false, quickCheck: false });
    } else {
      store = await openPostgresStore(loc.url, { ...init.postgres, poolSize: 2 });
    }
  } catch (e) {
    post({ t: 'fatal', error: toWire(e, 'cannot open the audit store') });
    port.close();
    return;
  }
  post({ t: 'ready' });
  await pump();
}

void start();

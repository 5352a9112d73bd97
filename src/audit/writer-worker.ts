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
import type { SigningKey } from './checkpoint.js';
// Static, not `await import()`: under tsx the worker loads as CommonJS, where a dynamic import bypasses tsx.
import { openPostgresStore } from './postgres-store.js';
import { type Sealed, sealGroups } from './seal.js';
import { openSqliteStore } from './sqlite-store.js';
import type { AuditStore } from './store.js';
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
let store: AuditStore | null = null;
let busy = false;
let closeRequested = false;
let closed = false;

function post(m: FromWriter, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

function take(m: ToWriter): void {
  if (m.t === 'close') closeRequested = true;
  else queue.push(m);
}

async function write(batch: BatchMessage[]): Promise<void> {
  const s = store!;
  const ids = batch.map((b) => b.id);
  const force = batch.some((b) => b.force);
  let sealed: Sealed;
  try {
    sealed = (await s.append((head) => sealGroups(head, batch, force, key, policy))) as Sealed;
  } catch (e) {
    // INVARIANT: fail closed — nothing of this transaction was committed; every batch in it is told so.
    post({ t: 'fail', ids, error: toWire(e, 'audit store failed') });
    return;
  }
  const rows = sealed.rows;
  const hashes = new Uint8Array(32 * rows.length);
  for (let i = 0; i < rows.length; i++) hashes.set(rows[i]!.hash, i * 32);
  let checkpoint = sealed.checkpoints.at(-1) ?? null;
  if (checkpoint === null && force) {
    try {
      checkpoint = (await s.checkpoints()).at(-1) ?? null;
    } catch {
      checkpoint = null;
    }
  }
  post(
    {
      t: 'done',
      ids,
      seqs: sealed.placed.map((p) => p.seq),
      times: sealed.placed.map((p) => p.time),
      hashes,
      unsigned: sealed.head.size - sealed.head.checkpointSize,
      checkpoint,
    },
    [hashes.buffer as ArrayBuffer],
  );
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

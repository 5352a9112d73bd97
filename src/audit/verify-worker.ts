/**
 * A verification worker: hashes packed rows (verify-hash.ts) and hands them back with the results, so the
 * thread that reads the log keeps reading while record hashes and Merkle leaves are computed here.
 */
import { parentPort } from 'node:worker_threads';
import { type HashRequest, type HashResponse, hashRows, transferList } from './verify-hash.js';

const port = parentPort!;
port.on('message', (m: HashRequest) => {
  const out = hashRows(m.rows, m.prev);
  const res: HashResponse = { id: m.id, rows: m.rows, ...out };
  port.postMessage(res, transferList(m.rows, out.chain, out.leaves));
});

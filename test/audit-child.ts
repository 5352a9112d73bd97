// Child process for the crash and multi-process audit tests (not a test file itself).
// Usage: audit-child.ts <store-url> <key-path> <agent> <count|0 for forever> [inflight] [start-at-ms]
// Prints `ack <seq>` once per durable append, then `done` after a clean close.
import { openAuditLog } from '../src/audit/log.js';
import { decisionEvent } from '../src/audit/testing.js';

const [url, keyPath, agent, countArg, inflightArg, startAtArg] = process.argv.slice(2);
const count = Number(countArg ?? 0);
const inflight = Number(inflightArg ?? 64);
const log = await openAuditLog(url!, { keyPath: keyPath!, checkpointEvery: 100, checkpointIntervalMs: 50 });
process.stdout.write('ready\n');
const wait = Number(startAtArg ?? 0) - Date.now();
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
let next = 0;
const worker = async () => {
  while (count === 0 || next < count) {
    const i = next++;
    const r = await log.append(decisionEvent(i, { agent: agent! }));
    process.stdout.write(`ack ${r.seq} ${i}\n`);
  }
};
await Promise.all(Array.from({ length: inflight }, worker));
await log.close();
process.stdout.write('done\n');

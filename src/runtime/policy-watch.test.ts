import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type PolicyRead, readPolicy } from '../policy/bundle-read.js';
import { PolicyWatcher, readSettled, readSnapshot } from './policy-watch.js';

const dir = mkdtempSync(join(tmpdir(), 'execlayer-policy-watch-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('policy watch', () => {
  test('a FIFO at the path is refused at once instead of blocking a thread', async (t) => {
    const fifo = join(dir, 'fifo.yaml');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return t.skip('mkfifo is not available');
    const t0 = Date.now();
    const s = await readSnapshot(fifo);
    assert.equal(s.ok, false);
    assert.ok(Date.now() - t0 < 1000);
  });

  test('a file that keeps changing is never settled; a quiet one is, with its exact bytes', async () => {
    const file = join(dir, 'busy.yaml');
    writeFileSync(file, 'a');
    let n = 0;
    const writer = setInterval(() => writeFileSync(file, `a${++n}`), 40);
    const busy = await readSettled(file, { settleMs: 100, timeoutMs: 600 });
    clearInterval(writer);
    assert.equal(busy.settled, false);
    writeFileSync(file, 'quiet');
    const quiet = await readSettled(file, { settleMs: 100, timeoutMs: 600 });
    assert.equal(quiet.settled, true);
    assert.equal(quiet.read.files[0]?.bytes.toString(), 'quiet');
  });

  test('the watcher hands over each settled content once, never a state shorter than the settle time', async () => {
    const file = join(dir, 'watched.yaml');
    writeFileSync(file, 'v1');
    const first = await readPolicy(file);
    const seen: string[] = [];
    const w = new PolicyWatcher(
      file,
      { pollMs: 20, settleMs: 120 },
      async (r: PolicyRead) => void seen.push(r.files[0]?.bytes.toString() ?? 'error'),
      first,
    );
    try {
      await sleep(200);
      assert.deepEqual(seen, [], 'the content it started from is not handed over');
      writeFileSync(file, 'half');
      await sleep(60);
      writeFileSync(file, 'v2');
      await sleep(400);
      assert.deepEqual(seen, ['v2']);
      // Content a forced reload already dealt with is not handed over again.
      writeFileSync(file, 'v3');
      w.handled(await readPolicy(file));
      await sleep(400);
      assert.deepEqual(seen, ['v2']);
      writeFileSync(file, 'v4');
      await sleep(400);
      assert.deepEqual(seen, ['v2', 'v4']);
    } finally {
      w.close();
    }
  });
});

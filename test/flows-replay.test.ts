/**
 * Shadow mode and `execlayer replay` for flow policies: traffic recorded under a policy without flow rules
 * (into a real SQLite audit log), then replayed with a candidate that has them, reports which sessions the
 * flow policy would have tainted and which calls it would have refused.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { replayCommand } from '../src/cli/replay.js';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import type { Json } from '../src/types.js';

const dir = mkdtempSync(join(tmpdir(), 'execlayer-flow-replay-'));
const store = `sqlite:${join(dir, 'audit.db')}`;
const base = {
  version: 1,
  agents: { bot: { rules: [{ id: 'tools', allow: ['web.fetch', 'crm.read', 'chat.post'] }] } },
};
const flows = {
  produces: {
    'web.fetch': { label: { integrity: 'untrusted', level: 'public' } },
    'crm.read': { label: { integrity: 'trusted', level: 'internal' } },
    // A post's result is an acknowledgement; undeclared, it would count as untrusted.
    'chat.post': { label: { integrity: 'trusted', level: 'public' } },
  },
  sinks: { 'chat.post': { trusted: true } },
};

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => {
    o += d;
  });
  err.on('data', (d) => {
    e += d;
  });
  const code = await replayCommand(argv, { stdout: out, stderr: err } as never);
  return { code, out: o, err: e };
}

before(async () => {
  const layer = await createExecLayer({ policy: base, store });
  const call = (tool: string, session: string, args: { [k: string]: Json } = {}) =>
    layer.guard(async () => `${tool} result`, { agent: 'bot', tool, session })(args);
  // s1: a web page, then a chat post (the flow policy would refuse it); s2: CRM, then a post (fine).
  await call('web.fetch', 's1', { url: 'https://news.example/' });
  await call('chat.post', 's1', { text: 'as the page said' });
  await call('crm.read', 's2');
  await call('chat.post', 's2', { text: 'summary' });
  await call('chat.post', 's3', { text: 'hello' });
  await layer.close();
  writeFileSync(join(dir, 'candidate.yaml'), JSON.stringify({ ...base, flows }));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('replay of a flow policy over recorded traffic', () => {
  it('reports the sessions it would have tainted and the calls it would have refused', async () => {
    const r = await run(['--policy', join(dir, 'candidate.yaml'), '--store', store, '--json']);
    assert.equal(r.code, 0, r.err);
    const rep = JSON.parse(r.out);
    assert.equal(rep.unchanged, 5, 'the per-call decisions do not change');
    assert.deepEqual(
      {
        sessions: rep.flows.sessions,
        tainted: rep.flows.tainted,
        blocked: rep.flows.blockedSessions,
        denied: rep.flows.denied,
      },
      { sessions: 3, tainted: 1, blocked: 1, denied: 1 },
    );
    assert.equal(rep.flows.examples[0].session, 's1');
    assert.equal(rep.flows.examples[0].tool, 'chat.post');
    assert.match(rep.flows.examples[0].reason, /untrusted content — tainted by `web\.fetch`/);
  });

  it('prints the flow part in text, and no flow part for a candidate without flows', async () => {
    const r = await run(['--policy', join(dir, 'candidate.yaml'), '--store', store]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /flow policy over 3 sessions:\n {2}tainted {9}1/);
    assert.match(r.out, /#\d+ bot \(session s1\) chat\.post: deny \(sink:chat\.post\)/);
    writeFileSync(join(dir, 'plain.yaml'), JSON.stringify(base));
    const p = await run(['--policy', join(dir, 'plain.yaml'), '--store', store, '--json']);
    assert.equal(JSON.parse(p.out).flows, undefined);
  });
});

describe('shadow mode over the same traffic', () => {
  it('tracks labels and records would-be verdicts while every call runs', async () => {
    const sdir = mkdtempSync(join(tmpdir(), 'execlayer-flow-shadow-'));
    try {
      const layer = await createExecLayer({
        policy: { ...base, flows: { ...flows, mode: 'shadow' } },
        store: `sqlite:${join(sdir, 'a.db')}`,
      });
      let ran = 0;
      const call = (tool: string, args: { [k: string]: Json } = {}) =>
        layer.guard(
          async () => {
            ran++;
            return 'ok';
          },
          { agent: 'bot', tool, session: 's1' },
        )(args);
      await call('web.fetch', { url: 'https://news.example/' });
      assert.equal(await call('chat.post', { text: 'x' }), 'ok');
      assert.equal(ran, 2);
      await layer.flush();
      await layer.close();
      const r = await run([
        '--policy',
        join(dir, 'candidate.yaml'),
        '--store',
        `sqlite:${join(sdir, 'a.db')}`,
        '--json',
      ]);
      assert.equal(JSON.parse(r.out).flows.denied, 1, 'the shadow-mode traffic replays to the same verdict');
    } finally {
      rmSync(sdir, { recursive: true, force: true });
    }
  });
});

/**
 * What flow tracking adds, beside the same work without it, in one process:
 *   decision  — authorize() of a sink call through the whole runtime (memory stores), a policy with 50 flow
 *               rules and a session that has received 20 results, vs the same policy without `flows:`
 *   verdict   — the pure flow evaluation alone (flowVerdict over the folded state)
 *   label     — labelling a 100 KB tool result (declared label, override, per-item rule over 1,000
 *               items, withholding, extraction), vs the result digest every outcome already computes
 * Prints p50/p99 per operation and the difference to its floor. Run: npm run bench:flows
 */
import { memoryApprovalStore } from '../src/approvals/memory.js';
import { jsonDigest } from '../src/canonical-json.js';
import { flowVerdict } from '../src/flows/decide.js';
import { labelResult } from '../src/flows/deliver.js';
import { EMPTY_STATE, foldState, sessionScope } from '../src/flows/state.js';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import { MemoryRecorder } from '../src/runtime/stores.js';
import { MemorySessionStore } from '../src/sessions/memory.js';
import type { Action } from '../src/types.js';

interface Stats {
  p50: number;
  p99: number;
}

/** Per-op latency in ns: batches of `batch` ops timed together. */
async function measure(fn: () => unknown, batches: number, batch: number, isAsync: boolean): Promise<Stats> {
  const samples: number[] = [];
  const run = async () => {
    if (isAsync) for (let i = 0; i < batch; i++) await (fn() as Promise<unknown>);
    else for (let i = 0; i < batch; i++) fn();
  };
  for (let w = 0; w < Math.min(100, batches); w++) await run();
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  samples.sort((a, b) => a - b);
  return {
    p50: samples[Math.floor(samples.length / 2)] ?? 0,
    p99: samples[Math.floor(samples.length * 0.99)] ?? 0,
  };
}

const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;

/** 50 flow rules: 20 sinks, 20 guards, 8 sequences, 2 presets, over 40 tools (a few name the call). */
function flows() {
  const sinks: Record<string, unknown> = {};
  for (let i = 0; i < 19; i++) sinks[`svc${i}.send`] = { trusted: true };
  sinks['mail.send'] = {
    recipients: { email: ['to'], text: ['body'] },
    seen: { to: 'contacts' },
    effect: 'ask',
  };
  const guards = Array.from({ length: 20 }, (_, i) => ({
    id: `g${i}`,
    ask: i === 0 ? 'mail.send' : `svc${i}.send`,
    when: { args: { to: { glob: '*@evil.example' } } },
  }));
  const sequences = Array.from({ length: 8 }, (_, i) => ({
    id: `s${i}`,
    after: [`web${i}.fetch`, 'files.read'],
    // biome-ignore lint/suspicious/noThenProperty: `then` is the policy keyword
    then: i === 0 ? 'mail.send' : `svc${i}.send`,
    within: '10m',
  }));
  return {
    produces: {
      'crm.lookup': {
        label: { integrity: 'trusted', level: 'internal', readers: ['acme.com'] },
        extract: { contacts: '$.contacts[*].email' },
      },
      'files.read': { label: { integrity: 'trusted', level: 'internal', readers: ['acme.com'] } },
      'web.fetch': {
        label: { integrity: 'untrusted', level: 'public' },
        overrides: [
          { when: { url: { arg: 'url', hosts: ['docs.acme.com'] } }, label: { integrity: 'trusted' } },
        ],
        items: [
          {
            path: '$.content[*]',
            unless: { association: { in: ['MEMBER'] } },
            label: { integrity: 'untrusted' },
          },
        ],
        withhold: [{ path: '$.content[*]', where: { association: { equals: 'SPAM' } }, action: 'drop' }],
        extract: { links: '$.links[*]' },
      },
    },
    sinks,
    guards,
    sequences,
    presets: {
      lethal_trifecta: { egress: ['mail.send', 'svc1.send'], sensitive: 'confidential' },
      rule_of_two: { egress: ['svc2.send'] },
    },
  };
}

const basePolicy = {
  version: 1,
  agents: {
    bot: { rules: [{ allow: ['crm.lookup', 'files.read', 'web.fetch', 'mail.send', 'svc*.send'] }] },
  },
};

async function main(): Promise<void> {
  const rows: string[][] = [['operation', 'p50', 'p99', 'added (p50)']];
  const send: Action = {
    agent: 'bot',
    tool: 'mail.send',
    session: 's1',
    args: { to: 'bob@acme.com', body: 'hello, see https://docs.acme.com/x' },
  };
  const make = async (withFlows: boolean) => {
    const sessions = new MemorySessionStore();
    const l = await createExecLayer({
      policy: withFlows ? { ...basePolicy, flows: flows() } : basePolicy,
      recorder: new MemoryRecorder(),
      approvals: memoryApprovalStore(),
      limits: new MemoryLimitStore(),
      sessions,
    });
    // A session that has received 20 results (one a contact list).
    for (let i = 0; i < 20; i++) {
      const tool = i === 0 ? 'crm.lookup' : 'files.read';
      const d = await l.authorize({ agent: 'bot', tool, session: 's1', args: { i } });
      const r = await l.deliver(d, {
        result: i === 0 ? { contacts: [{ email: 'bob@acme.com' }] } : `file ${i}`,
      });
      if (!r.ok) throw new Error(r.reason);
      await l.outcome(d, { ok: true, durationMs: 0 });
    }
    return { l, sessions };
  };
  const bare = await make(false);
  const flowed = await make(true);
  const calls: [string, Action][] = [
    [
      'a call no flow rule names',
      { agent: 'bot', tool: 'files.read', session: 's1', args: { path: '/srv/a' } },
    ],
    [
      'a sink that needs a trusted context',
      { agent: 'bot', tool: 'svc3.send', session: 's1', args: { to: 'ops@acme.com' } },
    ],
    ['a sink checking recipients (address + URL in the body) and seen values', send],
  ];
  const added: number[] = [];
  for (const [name, action] of calls) {
    const check = await flowed.l.authorize(action);
    if (check.effect !== 'allow') throw new Error(`benchmark call is not allowed: ${check.reason}`);
    // Median over rounds of each round's p50, floor and flows interleaved (a shared machine is noisy).
    const f50: number[] = [];
    const w50: number[] = [];
    let floor: Stats = { p50: 0, p99: 0 };
    let withF: Stats = { p50: 0, p99: 0 };
    for (let round = 0; round < 5; round++) {
      floor = await measure(() => bare.l.authorize(action), 100, 200, true);
      withF = await measure(() => flowed.l.authorize(action), 100, 200, true);
      f50.push(floor.p50);
      w50.push(withF.p50);
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
    rows.push([`${name}: no flows (floor)`, us(med(f50)), us(floor.p99), '']);
    rows.push([`${name}: 50 flow rules`, us(med(w50)), us(withF.p99), us(med(w50) - med(f50))]);
    added.push(med(w50) - med(f50));
  }

  const compiled = flowed.l.engine.policy.flows;
  if (!compiled) throw new Error('flows did not compile');
  const state = foldState(await flowed.sessions.load(sessionScope(send)), compiled.levels.length);
  const verdict = await measure(() => flowVerdict(compiled, send, state, Date.now()), 300, 1000, false);
  rows.push(['flow verdict alone (20-result session)', us(verdict.p50), us(verdict.p99), '']);
  const fold = await measure(
    () => foldState({ deltas: state.deltas, endorsements: [] }, 4),
    300,
    1000,
    false,
  );
  rows.push(['fold of the session state (20 deltas)', us(fold.p50), us(fold.p99), '']);

  // A 100 KB result: 1,000 items of ~100 bytes.
  const result = {
    content: Array.from({ length: 1000 }, (_, i) => ({
      type: 'text',
      text: `comment ${i} `.padEnd(60, 'x'),
      association: i % 10 === 0 ? 'NONE' : 'MEMBER',
    })),
    links: ['https://docs.acme.com/a'],
  };
  const bytes = Buffer.byteLength(JSON.stringify(result));
  const fetch: Action = {
    agent: 'bot',
    tool: 'web.fetch',
    session: 's1',
    args: { url: 'https://docs.acme.com/a' },
  };
  const digest = await measure(() => jsonDigest(result), 200, 5, false);
  const label = await measure(
    () => labelResult(compiled, fetch, result, EMPTY_STATE, Date.now()),
    200,
    5,
    false,
  );
  rows.push([`result digest, ${Math.round(bytes / 1024)} KB (floor)`, us(digest.p50), us(digest.p99), '']);
  rows.push([`labelling, ${Math.round(bytes / 1024)} KB`, us(label.p50), us(label.p99), us(label.p50)]);

  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  '));
  console.log(
    `\ntargets: added per decision ≤ 5 µs p50 → ${added.map((a) => (a <= 5000 ? 'met' : 'NOT met')).join(' / ')}; ` +
      `labelling 100 KB ≤ 200 µs p50 → ${label.p50 <= 200_000 ? 'met' : 'NOT met'}`,
  );
  await bare.l.close();
  await flowed.l.close();
}

await main();

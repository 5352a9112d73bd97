import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePrometheusText, sumOf } from '../testing/prom-text.js';
import type { DecisionEvent } from '../types.js';
import { ExecLayerMetrics, MAX_LABEL_VALUES } from './metrics.js';

function decision(
  tool: string,
  effect: 'allow' | 'deny',
  code: DecisionEvent['decision']['code'],
  reason = 'r',
) {
  return {
    type: 'decision',
    decision: { id: 'd', effect, rule: null, reason, policy: 'p', mode: 'enforce', code },
    action: { agent: 'bot', tool, args: {}, argsDigest: 'x' },
    point: 'http',
    latencyUs: 120,
  } satisfies DecisionEvent;
}

test('label values are capped: invented tool names are counted under _other, and nothing is lost', async () => {
  const m = new ExecLayerMetrics();
  const n = MAX_LABEL_VALUES + 50;
  for (let i = 0; i < n; i++) m.observe(decision(`t.${i}`, 'deny', 'no_matching_rule'));
  const f = parsePrometheusText((await m.scrape()).body);
  const samples = f.get('execlayer_decisions_total')?.samples ?? [];
  assert.equal(new Set(samples.map((s) => s.labels.tool)).size, MAX_LABEL_VALUES + 1);
  assert.equal(sumOf(f, 'execlayer_decisions_total', { tool: '_other' }), 50);
  assert.equal(sumOf(f, 'execlayer_decisions_total'), n);
});

test('limit refusals, store errors and deadline hits are told apart', async () => {
  const m = new ExecLayerMetrics();
  m.observe(decision('a.b', 'deny', 'limit_exceeded'));
  m.observe(
    decision('a.b', 'deny', 'store_error', 'denied: cannot read the suspension state (Command timed out)'),
  );
  m.observe(decision('a.b', 'deny', 'store_error', 'denied: connection refused'));
  const f = parsePrometheusText((await m.scrape()).body);
  assert.equal(sumOf(f, 'execlayer_limit_refusals_total'), 1);
  assert.equal(sumOf(f, 'execlayer_store_errors_total'), 2);
  assert.equal(sumOf(f, 'execlayer_store_deadline_hits_total'), 1);
});

test('a registry of its own: nothing lands in the global prom-client registry', async () => {
  const { register } = await import('prom-client');
  new ExecLayerMetrics().observe(decision('a.b', 'allow', 'allowed'));
  assert.equal(register.getSingleMetric('execlayer_decisions_total'), undefined);
});

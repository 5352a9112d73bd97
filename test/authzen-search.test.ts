/**
 * AuthZEN search (§8) never disagrees with single evaluations (§6), over generated policies: exact
 * names, wildcard patterns, deny and ask rules, CEL conditions and exceptions, shadow-mode agents and
 * rules. Each policy runs in a real ExecLayer behind the real decision API; every comparison is made
 * over HTTP, the evaluations through the whole pipeline.
 *
 * - subject search (§8.4) = the agents whose evaluation of (tool, resource) is true;
 * - action search (§8.6) = the tools the policy names whose evaluation for (agent, resource) is true;
 * - resource search (§8.5): every allowed evaluation was allowed by a rule the answer lists (or the
 *   answer says shadow mode, `*`); an empty answer means every evaluation is false;
 * - paging through any search with any page size yields the unpaged answer, once each, in order.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { type RunningApi, startApi } from './http-fixtures.js';

const PEP = 'k-pep';
const TOOLS = ['files.read', 'files.write', 'files.delete', 'db.query', 'mail.send'] as const;
const PATTERNS = ['files.*', 'db.*', '*'] as const;
const ARGS: ({ n: number } | Record<string, never>)[] = [{}, { n: 1 }, { n: 5 }, { n: 9 }];

type Rule = Record<string, unknown>;

const ruleArb: fc.Arbitrary<Rule> = fc
  .record({
    effect: fc.constantFrom('allow', 'allow', 'allow', 'deny', 'ask'),
    target: fc.oneof(fc.constantFrom(...TOOLS), fc.constantFrom(...PATTERNS)),
    when: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    unless: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    shadow: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
  })
  .map((r) => {
    const rule: Rule = { [r.effect]: r.target };
    if (r.when !== undefined) rule.when = { cel: `has(args.n) && args.n <= ${r.when}` };
    if (r.unless !== undefined) rule.unless = { cel: `has(args.n) && args.n == ${r.unless}` };
    if (r.shadow) rule.mode = 'shadow';
    return rule;
  });

const policyArb = fc
  .record({
    agents: fc.array(
      fc.record({
        rules: fc.array(ruleArb, { minLength: 0, maxLength: 5 }),
        shadow: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
      }),
      { minLength: 1, maxLength: 5 },
    ),
  })
  .map(({ agents }) => {
    const policy = { version: 1, agents: {} as Record<string, unknown>, roles: {} as Record<string, Rule[]> };
    agents.forEach((a, i) => {
      const id = `agent-${i}`;
      policy.roles[`r${i}`] = a.rules.map((r, j) => ({ id: `r${i}-${j}`, ...r }));
      policy.agents[id] = { owner: 'o@x.io', roles: [`r${i}`], ...(a.shadow ? { mode: 'shadow' } : {}) };
    });
    return policy;
  });

const apis: RunningApi[] = [];
after(async () => {
  for (const a of apis) await a.close();
});

async function post(api: RunningApi, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${api.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${PEP}` },
    body: JSON.stringify(body),
  });
  const json = (await r.json()) as Record<string, unknown>;
  assert.equal(r.status, 200, `${path}: ${JSON.stringify(json)}`);
  return json;
}

const subject = (id: string) => ({ type: 'agent', id });
const resource = (args: object) => ({ type: 'call', id: 'r', properties: args });

async function evaluate(api: RunningApi, agent: string, tool: string, args: object): Promise<boolean> {
  const r = await post(api, '/access/v1/evaluation', {
    subject: subject(agent),
    action: { name: tool },
    resource: resource(args),
  });
  return r.decision === true;
}

/** Every result of a search, page by page with `limit`, checking the page bookkeeping on the way. */
async function searchAll(
  api: RunningApi,
  path: string,
  body: Record<string, unknown>,
  limit?: number,
): Promise<unknown[]> {
  const out: unknown[] = [];
  let token: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page: Record<string, unknown> = {};
    if (limit !== undefined) page.limit = limit;
    if (token !== undefined) page.token = token;
    const r = await post(api, path, { ...body, page });
    const p = r.page as { next_token: string; count: number; total: number };
    const results = r.results as unknown[];
    assert.equal(p.count, results.length);
    out.push(...results);
    if (p.next_token === '') {
      assert.equal(out.length, p.total, 'total counts every result');
      return out;
    }
    assert.equal(results.length, limit, 'a page that is not the last one is full');
    token = p.next_token;
  }
  throw new Error('search did not end within 100 pages');
}

describe('authzen search agrees with evaluation over generated policies', () => {
  test('subject, action and resource search versus single evaluations', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb, fc.integer({ min: 1, max: 3 }), async (policy, limit) => {
        const api = await startApi(policy, { [PEP]: { agent: 'pep', roles: ['pdp-client'] } });
        try {
          const agents = Object.keys(policy.agents);
          const named = new Set(
            Object.values(policy.roles)
              .flat()
              .flatMap((rule) => [rule.allow, rule.deny, rule.ask])
              .filter((t): t is string => typeof t === 'string' && !t.includes('*')),
          );
          for (const tool of TOOLS) {
            for (const args of ARGS) {
              // §8.4 subject search: exactly the agents whose evaluation is true, paged or not.
              const body = { subject: { type: 'agent' }, action: { name: tool }, resource: resource(args) };
              const found = (await searchAll(api, '/access/v1/search/subject', body)) as { id: string }[];
              const expected: string[] = [];
              for (const a of agents) if (await evaluate(api, a, tool, args)) expected.push(a);
              assert.deepEqual(
                found.map((s) => s.id),
                expected.sort(),
                `subject search for ${tool} ${JSON.stringify(args)}`,
              );
              assert.deepEqual(await searchAll(api, '/access/v1/search/subject', body, limit), found);
            }
          }
          for (const agent of agents) {
            for (const args of ARGS) {
              // §8.6 action search: exactly the tools the policy names whose evaluation is true.
              const body = { subject: subject(agent), resource: resource(args) };
              const r = await post(api, '/access/v1/search/action', body);
              const found = (await searchAll(api, '/access/v1/search/action', body)) as { name: string }[];
              const expected: string[] = [];
              for (const t of named) if (await evaluate(api, agent, t, args)) expected.push(t);
              // Tools it may call beyond the named ones are covered by a pattern the answer states.
              const patterns = (
                (r.context as { patterns?: { pattern: string }[] } | undefined)?.patterns ?? []
              ).map((p) => p.pattern);
              for (const t of TOOLS) {
                if (named.has(t) || !(await evaluate(api, agent, t, args))) continue;
                assert.ok(
                  patterns.some((p) => p === '*' || (p.endsWith('.*') && t.startsWith(p.slice(0, -1)))),
                  `${agent} may call unnamed ${t}, but no pattern in ${JSON.stringify(r.context)} covers it`,
                );
              }
              assert.deepEqual(
                found.map((a) => a.name),
                expected.sort(),
                `action search for ${agent} ${JSON.stringify(args)}`,
              );
              assert.deepEqual(await searchAll(api, '/access/v1/search/action', body, limit), found);
            }
            for (const tool of TOOLS) {
              // §8.5 resource search: the rules that allowed any evaluation are listed.
              const body = { subject: subject(agent), action: { name: tool }, resource: { type: 'call' } };
              const found = (await searchAll(api, '/access/v1/search/resource', body)) as { id: string }[];
              const ids = new Set(found.map((r) => r.id));
              for (const args of ARGS) {
                const allowed = await evaluate(api, agent, tool, args);
                if (!allowed) continue;
                const rule = api.recorder.decisions().at(-1)?.decision.rule;
                assert.ok(
                  ids.has('*') || (rule != null && ids.has(rule)),
                  `${agent} may call ${tool} with ${JSON.stringify(args)} by rule ${rule}, but resource search lists ${[...ids].join(', ') || 'nothing'}`,
                );
              }
            }
          }
        } finally {
          await api.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  test('the search itself is not a decision: nothing is recorded and no limit is charged', async () => {
    const policy = {
      version: 1,
      agents: { a: { owner: 'o@x.io', roles: ['r'] } },
      roles: { r: [{ id: 'reads', allow: 'files.read', limit: { calls: 1, per: 'minute' } }] },
    };
    const api = await startApi(
      policy,
      { [PEP]: { agent: 'pep', roles: ['pdp-client'] } },
      {},
      { limits: new MemoryLimitStore() },
    );
    apis.push(api);
    const body = { subject: { type: 'agent' }, action: { name: 'files.read' }, resource: resource({}) };
    for (let i = 0; i < 3; i++) {
      const r = await post(api, '/access/v1/search/subject', body);
      assert.deepEqual(r.results, [{ type: 'agent', id: 'a' }]);
    }
    assert.equal(api.recorder.decisions().length, 0);
    // The one call the rate allows is still there for the real evaluation.
    assert.equal(await evaluate(api, 'a', 'files.read', {}), true);
    assert.equal(await evaluate(api, 'a', 'files.read', {}), false);
  });
});

/**
 * The HTTP decision API end to end: AuthZEN endpoints, native endpoints, identity rule, batch semantics,
 * recording, and every kind of bad input (each answered with an RFC 9457 problem that names the field).
 */
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createDecisionApiHandler } from '../src/enforce/http/index.js';
import { type RunningApi, startApi } from './http-fixtures.js';

const POLICY = {
  version: 1,
  agents: {
    'pep-backend': { owner: 'platform@acme.com', purpose: 'application backend asking on behalf of users' },
    alice: { owner: 'alice@acme.com', roles: ['writer'] },
    bob: { owner: 'bob@acme.com', roles: ['writer'] },
  },
  roles: {
    writer: [
      { id: 'read-docs', allow: 'docs.read' },
      { id: 'edit-own', allow: 'docs.edit', when: { cel: 'has(args.owner) && args.owner == agent.owner' } },
      { id: 'publish-needs-approval', ask: 'docs.publish' },
      { id: 'no-delete', deny: 'docs.delete' },
    ],
  },
};
const KEYS = {
  'k-pep': { agent: 'pep-backend', roles: ['pdp-client'] },
  'k-alice': { agent: 'alice' },
  'k-bob': { agent: 'bob' },
};

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: () => Record<string, unknown>;
}

function send(
  url: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; chunks?: Buffer[] } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${url}${path}`,
      { method: opts.method ?? 'POST', headers: opts.headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    if (opts.chunks) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else {
      req.end(opts.body);
    }
  });
}

const JSON_HEADERS = (key = 'k-pep') => ({
  'content-type': 'application/json',
  authorization: `Bearer ${key}`,
});

function evaluation(subject: string, tool: string, props: Record<string, unknown> = {}, type = 'agent') {
  return {
    subject: { type, id: subject },
    action: { name: tool },
    resource: { type: 'doc', id: 'd1', properties: props },
  };
}

function assertProblem(r: Reply, status: number, code: string, pointer?: string): Record<string, unknown> {
  assert.equal(r.status, status, r.text);
  assert.equal(r.headers['content-type'], 'application/problem+json');
  const p = r.json();
  assert.equal(p.status, status);
  assert.equal(p.code, code);
  assert.equal(p.type, `urn:execlayer:problem:${code}`);
  assert.equal(typeof p.title, 'string');
  assert.equal(typeof p.detail, 'string');
  if (pointer !== undefined) assert.equal(p.pointer, pointer);
  // Never a stack trace or an internal type name.
  assert.doesNotMatch(r.text, /\bat .+:\d+:\d+|SyntaxError|TypeError|node:internal/);
  return p;
}

describe('http decision api', () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(POLICY, KEYS);
  });
  after(async () => {
    await api?.close();
  });
  const post = (path: string, body: unknown, key = 'k-pep', headers: Record<string, string> = {}) =>
    send(api.url, path, { headers: { ...JSON_HEADERS(key), ...headers }, body: JSON.stringify(body) });

  describe('authzen evaluation', () => {
    test('allow and deny are exactly {decision} and every decision is recorded', async () => {
      const n = api.recorder.decisions().length;
      const allow = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'));
      assert.equal(allow.status, 200);
      assert.equal(allow.headers['content-type'], 'application/json');
      assert.equal(allow.text, '{"decision":true}');
      const deny = await post('/access/v1/evaluation', evaluation('alice', 'docs.delete'));
      assert.equal(deny.text, '{"decision":false}');
      const recorded = api.recorder.decisions().slice(n);
      assert.deepEqual(
        recorded.map((e) => [e.action.agent, e.action.tool, e.decision.effect, e.point]),
        [
          ['alice', 'docs.read', 'allow', 'authzen'],
          ['alice', 'docs.delete', 'deny', 'authzen'],
        ],
      );
    });

    test('resource properties become args (ownership via CEL)', async () => {
      const own = await post(
        '/access/v1/evaluation',
        evaluation('alice', 'docs.edit', { owner: 'alice@acme.com' }),
      );
      assert.equal(own.text, '{"decision":true}');
      const other = await post(
        '/access/v1/evaluation',
        evaluation('alice', 'docs.edit', { owner: 'bob@acme.com' }),
      );
      assert.equal(other.text, '{"decision":false}');
      const last = api.recorder.decisions().at(-1);
      assert.deepEqual(last?.action.args, { owner: 'bob@acme.com' });
    });

    test('a user subject sets onBehalfOf to the same id', async () => {
      const r = await post('/access/v1/evaluation', evaluation('alice', 'docs.read', {}, 'user'));
      assert.equal(r.text, '{"decision":true}');
      const last = api.recorder.decisions().at(-1);
      assert.equal(last?.action.agent, 'alice');
      assert.equal(last?.action.onBehalfOf, 'alice');
    });

    test('`Prefer: reasons` adds context with reason, code and decision id', async () => {
      const r = await post('/access/v1/evaluation', evaluation('alice', 'docs.delete'), 'k-pep', {
        prefer: 'reasons',
      });
      assert.equal(r.headers['preference-applied'], 'reasons');
      const body = r.json() as { decision: boolean; context: Record<string, string> };
      assert.equal(body.decision, false);
      assert.equal(body.context.code, 'denied_by_rule');
      assert.match(body.context.reason ?? '', /\S/);
      assert.equal(body.context.decision_id, api.recorder.decisions().at(-1)?.decision.id);
    });

    test('ask maps to decision false with a reason saying approval is required', async () => {
      const r = await post('/access/v1/evaluation', evaluation('alice', 'docs.publish'));
      const body = r.json() as { decision: boolean; context: Record<string, string> };
      assert.equal(body.decision, false);
      assert.equal(body.context.code, 'approval_required');
      assert.match(body.context.reason ?? '', /^approval required/);
      assert.equal(api.recorder.decisions().at(-1)?.decision.effect, 'ask');
    });

    test('X-Request-ID is echoed, generated when absent, and replaced when unsafe', async () => {
      const echoed = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'), 'k-pep', {
        'x-request-id': 'req-42',
      });
      assert.equal(echoed.headers['x-request-id'], 'req-42');
      const generated = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'));
      assert.match(String(generated.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      const unsafe = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'), 'k-pep', {
        'x-request-id': 'a b',
      });
      assert.match(String(unsafe.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      // Errors carry it too.
      const err = await send(api.url, '/access/v1/evaluation', {
        headers: { 'x-request-id': 'req-43' },
        body: '{}',
      });
      assert.equal(err.status, 401);
      assert.equal(err.headers['x-request-id'], 'req-43');
    });
  });

  describe('authzen evaluations (batch)', () => {
    const batch = (semantic?: string) => ({
      subject: { type: 'agent', id: 'alice' },
      resource: { type: 'doc', id: 'd' },
      ...(semantic ? { options: { evaluations_semantic: semantic } } : {}),
      evaluations: [
        { action: { name: 'docs.read' } },
        { action: { name: 'docs.delete' } },
        { action: { name: 'docs.read' } },
        { action: { name: 'docs.delete' } },
      ],
    });

    test('execute_all (the default) evaluates every item in order, with top-level defaults', async () => {
      const n = api.recorder.decisions().length;
      const r = await post('/access/v1/evaluations', batch());
      assert.deepEqual(r.json(), {
        evaluations: [{ decision: true }, { decision: false }, { decision: true }, { decision: false }],
      });
      assert.equal(api.recorder.decisions().length - n, 4);
    });

    test('deny_on_first_deny stops at the first deny; later items are never evaluated or recorded', async () => {
      const n = api.recorder.decisions().length;
      const r = await post('/access/v1/evaluations', batch('deny_on_first_deny'));
      assert.deepEqual(r.json(), { evaluations: [{ decision: true }, { decision: false }] });
      assert.equal(api.recorder.decisions().length - n, 2);
    });

    test('permit_on_first_permit stops at the first permit', async () => {
      const n = api.recorder.decisions().length;
      const body = batch('permit_on_first_permit');
      body.evaluations.unshift({ action: { name: 'docs.delete' } });
      const r = await post('/access/v1/evaluations', body);
      assert.deepEqual(r.json(), { evaluations: [{ decision: false }, { decision: true }] });
      assert.equal(api.recorder.decisions().length - n, 2);
    });

    test('an item value replaces the default whole', async () => {
      const r = await post('/access/v1/evaluations', {
        subject: { type: 'agent', id: 'alice' },
        action: { name: 'docs.edit' },
        resource: { type: 'doc', id: 'd', properties: { owner: 'alice@acme.com' } },
        evaluations: [{}, { resource: { type: 'doc', id: 'e' } }, { subject: { type: 'agent', id: 'bob' } }],
      });
      assert.deepEqual(r.json(), {
        evaluations: [{ decision: true }, { decision: false }, { decision: false }],
      });
    });

    test('without an evaluations array it answers like a single evaluation', async () => {
      const r = await post('/access/v1/evaluations', evaluation('alice', 'docs.read'));
      assert.equal(r.text, '{"decision":true}');
      // AuthZEN 1.0 §7.1: an empty array is the single form too, answered as one decision.
      const empty = await post('/access/v1/evaluations', {
        ...evaluation('alice', 'docs.read'),
        evaluations: [],
      });
      assert.equal(empty.text, '{"decision":true}');
      assertProblem(
        await post('/access/v1/evaluations', { evaluations: [] }),
        400,
        'invalid_request',
        '/subject',
      );
    });

    test('unknown evaluations_semantic is a 400 naming the option', async () => {
      const r = await post('/access/v1/evaluations', batch('first_one_wins'));
      const p = assertProblem(r, 400, 'invalid_request', '/options/evaluations_semantic');
      assert.match(String(p.detail), /`first_one_wins`/);
    });

    test('a batch over the cap is a 400 stating the cap; nothing is evaluated', async () => {
      const n = api.recorder.decisions().length;
      const items = Array.from({ length: 1001 }, () => ({ action: { name: 'docs.read' } }));
      const r = await post('/access/v1/evaluations', { ...batch(), evaluations: items });
      const p = assertProblem(r, 400, 'batch_too_large', '/evaluations');
      assert.match(String(p.detail), /1000/);
      assert.equal(api.recorder.decisions().length, n);
      const ok = await post('/access/v1/evaluations', { ...batch(), evaluations: items.slice(0, 1000) });
      assert.equal((ok.json().evaluations as unknown[]).length, 1000);
    });

    test('an invalid item is answered false in place, its error pointing into the evaluations array', async () => {
      const n = api.recorder.decisions().length;
      const r = await post('/access/v1/evaluations', {
        subject: { type: 'agent', id: 'alice' },
        resource: { type: 'doc', id: 'd' },
        evaluations: [{ action: { name: 'docs.read' } }, { action: { name: 7 } }],
      });
      assert.equal(r.status, 200);
      const items = r.json().evaluations as {
        decision: boolean;
        context?: { error?: { pointer?: string } };
      }[];
      assert.deepEqual(items[0], { decision: true });
      assert.equal(items[1]?.decision, false);
      assert.equal(items[1]?.context?.error?.pointer, '/evaluations/1/action/name');
      // Only the valid item was decided and recorded.
      assert.equal(api.recorder.decisions().length, n + 1);
    });
  });

  describe('identity: who may ask about whom', () => {
    test('an agent key may ask about itself only; a pdp-client may ask about anyone', async () => {
      const self = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'), 'k-alice');
      assert.equal(self.text, '{"decision":true}');
      const n = api.recorder.decisions().length;
      const events = api.recorder.events.length;
      const other = await post('/access/v1/evaluation', evaluation('bob', 'docs.read'), 'k-alice');
      const p = assertProblem(other, 403, 'forbidden_subject', '/subject/id');
      assert.match(String(p.detail), /`alice`.*`bob`/);
      // Refused before any decision; the refusal itself is recorded as an auth event.
      assert.equal(api.recorder.decisions().length, n);
      const last = api.recorder.events.slice(events).at(-1);
      assert.equal(last?.type, 'auth');
      const viaPep = await post('/access/v1/evaluation', evaluation('bob', 'docs.read'), 'k-pep');
      assert.equal(viaPep.text, '{"decision":true}');
    });

    test('one foreign subject in a batch refuses the whole batch', async () => {
      const n = api.recorder.decisions().length;
      const r = await post(
        '/access/v1/evaluations',
        {
          action: { name: 'docs.read' },
          resource: { type: 'doc', id: 'd' },
          evaluations: [
            { subject: { type: 'agent', id: 'alice' } },
            { subject: { type: 'user', id: 'bob' } },
          ],
        },
        'k-alice',
      );
      assertProblem(r, 403, 'forbidden_subject', '/evaluations/1/subject/id');
      assert.equal(api.recorder.decisions().length, n);
    });

    test('native decide: agent defaults to the caller; another agent needs pdp-client', async () => {
      const r = await post('/v1/decide', { tool: 'docs.read', args: {} }, 'k-alice');
      assert.equal(r.json().effect, 'allow');
      assert.equal(api.recorder.decisions().at(-1)?.action.agent, 'alice');
      assertProblem(
        await post('/v1/decide', { agent: 'bob', tool: 'docs.read' }, 'k-alice'),
        403,
        'forbidden_subject',
        '/agent',
      );
    });
  });

  describe('native endpoints', () => {
    test('/v1/decide returns the full Decision', async () => {
      const r = await post('/v1/decide', {
        agent: 'alice',
        tool: 'docs.edit',
        args: { owner: 'alice@acme.com' },
      });
      assert.equal(r.status, 200);
      const d = r.json();
      assert.equal(d.effect, 'allow');
      assert.equal(d.rule, 'edit-own');
      assert.equal(d.code, 'allowed');
      assert.equal(d.policy, api.layer.policyHash);
      assert.equal(d.id, api.recorder.decisions().at(-1)?.decision.id);
      assert.equal(api.recorder.decisions().at(-1)?.point, 'http');
    });

    test('/v1/decide/batch returns one decision per action, in order', async () => {
      const r = await post('/v1/decide/batch', {
        actions: [
          { agent: 'alice', tool: 'docs.read' },
          { agent: 'bob', tool: 'docs.delete' },
          { agent: 'mallory', tool: 'docs.read' },
        ],
      });
      const ds = r.json().decisions as { effect: string; code: string }[];
      assert.deepEqual(
        ds.map((d) => [d.effect, d.code]),
        [
          ['allow', 'allowed'],
          ['deny', 'denied_by_rule'],
          ['deny', 'unknown_agent'],
        ],
      );
    });

    test('bad native input names the field', async () => {
      assertProblem(await post('/v1/decide', { agent: 'alice' }), 400, 'invalid_request', '/tool');
      assertProblem(
        await post('/v1/decide', { tool: 'docs.read', argz: {} }),
        400,
        'invalid_request',
        '/argz',
      );
      assertProblem(
        await post('/v1/decide', { tool: 'docs.read', args: [] }),
        400,
        'invalid_request',
        '/args',
      );
      assertProblem(await post('/v1/decide/batch', { actions: {} }), 400, 'invalid_request', '/actions');
      assertProblem(
        await post('/v1/decide/batch', { actions: [{ tool: 'docs.read' }, { tool: 3 }] }),
        400,
        'invalid_request',
        '/actions/1/tool',
      );
      const many = Array.from({ length: 1001 }, () => ({ tool: 'docs.read' }));
      assertProblem(await post('/v1/decide/batch', { actions: many }), 400, 'batch_too_large', '/actions');
    });
  });

  describe('bad input', () => {
    test('unauthenticated: no credentials, then a wrong key; both 401 and recorded, nothing decided', async () => {
      const n = api.recorder.decisions().length;
      const e = api.recorder.events.length;
      const none = await send(api.url, '/access/v1/evaluation', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(evaluation('alice', 'docs.read')),
      });
      assertProblem(none, 401, 'unauthenticated');
      assert.equal(none.headers['www-authenticate'], 'Bearer');
      const wrong = await post('/access/v1/evaluation', evaluation('alice', 'docs.read'), 'k-nope');
      assertProblem(wrong, 401, 'unauthenticated');
      const native = await post('/v1/decide', { tool: 'docs.read' }, 'k-nope');
      assertProblem(native, 401, 'unauthenticated');
      assert.equal(api.recorder.decisions().length, n);
      assert.deepEqual(
        api.recorder.events.slice(e).map((x) => x.type),
        ['auth', 'auth', 'auth'],
      );
    });

    test('malformed JSON is a 400 without a stack trace', async () => {
      const r = await send(api.url, '/access/v1/evaluation', {
        headers: JSON_HEADERS(),
        body: '{"subject": {',
      });
      assertProblem(r, 400, 'invalid_json');
      assertProblem(
        await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body: '' }),
        400,
        'invalid_json',
      );
      assertProblem(
        await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body: '[1]' }),
        400,
        'invalid_request',
        '',
      );
    });

    test('wrong types name the field', async () => {
      const base = evaluation('alice', 'docs.read');
      const cases: [unknown, string][] = [
        [{ ...base, subject: { type: 'agent', id: 42 } }, '/subject/id'],
        [{ ...base, subject: 'alice' }, '/subject'],
        [{ ...base, action: 'docs.read' }, '/action'],
        [{ ...base, action: { name: ['docs.read'] } }, '/action/name'],
        [{ ...base, resource: { type: 'doc', id: 'd', properties: [] } }, '/resource/properties'],
        [{ ...base, resource: { type: 'doc' } }, '/resource/id'],
        [{ ...base, context: 'now' }, '/context'],
        [{ ...base, subject: { type: 'robot', id: 'alice' } }, '/subject/type'],
        [{ ...base, action: { name: 'docs read' } }, '/action/name'],
        [{ ...base, context: { subject: 'x' } }, '/context/subject'],
      ];
      for (const [body, pointer] of cases) {
        assertProblem(await post('/access/v1/evaluation', body), 400, 'invalid_request', pointer);
      }
    });

    test('missing subject, action or resource is a 400 naming it', async () => {
      const { subject, action, resource } = evaluation('alice', 'docs.read');
      assertProblem(
        await post('/access/v1/evaluation', { action, resource }),
        400,
        'invalid_request',
        '/subject',
      );
      assertProblem(
        await post('/access/v1/evaluation', { subject, resource }),
        400,
        'invalid_request',
        '/action',
      );
      assertProblem(
        await post('/access/v1/evaluation', { subject, action }),
        400,
        'invalid_request',
        '/resource',
      );
      assertProblem(
        await post('/access/v1/evaluation', { subject: { type: 'agent' }, action, resource }),
        400,
        'invalid_request',
        '/subject/id',
      );
    });

    test('prototype keys anywhere in the body are refused before any decision', async () => {
      const n = api.recorder.decisions().length;
      const raw =
        '{"subject":{"type":"agent","id":"alice"},"action":{"name":"docs.edit"},' +
        '"resource":{"type":"doc","properties":{"__proto__":{"owner":"alice@acme.com"}}}}';
      assertProblem(
        await send(api.url, '/access/v1/evaluation', { headers: JSON_HEADERS(), body: raw }),
        400,
        'invalid_request',
        '/resource/properties/__proto__',
      );
      const ctor = {
        ...evaluation('alice', 'docs.read'),
        context: { nested: [{ constructor: { prototype: 1 } }] },
      };
      assertProblem(
        await post('/access/v1/evaluation', ctor),
        400,
        'invalid_request',
        '/context/nested/0/constructor',
      );
      const escaped = '{"tool":"docs.read","args":{"\\u005f_proto__":{"x":1}}}';
      assertProblem(
        await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body: escaped }),
        400,
        'invalid_request',
        '/args/__proto__',
      );
      assert.equal(api.recorder.decisions().length, n);
      assert.equal(({} as Record<string, unknown>).owner, undefined);
    });

    test('a non-UTF-8 body is a 400', async () => {
      const body = Buffer.concat([
        Buffer.from('{"tool":"docs.read","args":{"s":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}}'),
      ]);
      assertProblem(
        await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body }),
        400,
        'invalid_encoding',
      );
    });

    test('a wrong content type is a 400 on AuthZEN endpoints (§10.1), a 415 on the native ones', async () => {
      const body = JSON.stringify(evaluation('alice', 'docs.read'));
      const auth = { authorization: 'Bearer k-pep' };
      assertProblem(
        await send(api.url, '/access/v1/evaluation', {
          headers: { ...auth, 'content-type': 'text/plain' },
          body,
        }),
        400,
        'unsupported_media_type',
      );
      assertProblem(
        await send(api.url, '/access/v1/evaluation', {
          headers: { ...auth, 'content-type': 'application/json; charset=latin1' },
          body,
        }),
        400,
        'unsupported_media_type',
      );
      assertProblem(
        await send(api.url, '/v1/decide', { headers: auth, body }),
        415,
        'unsupported_media_type',
      );
      const ok = await send(api.url, '/access/v1/evaluation', {
        headers: { ...auth, 'content-type': 'application/json; charset=UTF-8' },
        body,
      });
      assert.equal(ok.text, '{"decision":true}');
    });

    test('a body over the default 1 MiB cap is a 413 (declared length and chunked)', async () => {
      const n = api.recorder.decisions().length;
      const big = JSON.stringify({ tool: 'docs.read', args: { pad: 'x'.repeat(1024 * 1024) } });
      const p = assertProblem(
        await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body: big }),
        413,
        'payload_too_large',
      );
      assert.match(String(p.detail), /1048576 bytes/);
      const chunk = Buffer.alloc(256 * 1024, 0x20);
      const chunked = await send(api.url, '/v1/decide', {
        headers: { ...JSON_HEADERS(), 'transfer-encoding': 'chunked' },
        chunks: [
          Buffer.from('{"tool":"docs.read","args":{}'),
          chunk,
          chunk,
          chunk,
          chunk,
          chunk,
          Buffer.from('}'),
        ],
      });
      assertProblem(chunked, 413, 'payload_too_large');
      assert.equal(api.recorder.decisions().length, n);
    });

    test('wrong method is a 405 with Allow; unknown path is a 404; metadata is served', async () => {
      const get = await send(api.url, '/access/v1/evaluation', { method: 'GET' });
      assertProblem(get, 405, 'method_not_allowed');
      assert.equal(get.headers.allow, 'POST');
      assertProblem(
        await send(api.url, '/access/v1/search/nothing', { headers: JSON_HEADERS(), body: '{}' }),
        404,
        'not_found',
      );
      const meta = await send(api.url, '/.well-known/authzen-configuration', { method: 'GET' });
      assert.equal(meta.status, 200);
      const host = new URL(api.url).host;
      assert.deepEqual(meta.json(), {
        policy_decision_point: `http://${host}`,
        access_evaluation_endpoint: `http://${host}/access/v1/evaluation`,
        access_evaluations_endpoint: `http://${host}/access/v1/evaluations`,
        search_subject_endpoint: `http://${host}/access/v1/search/subject`,
        search_resource_endpoint: `http://${host}/access/v1/search/resource`,
        search_action_endpoint: `http://${host}/access/v1/search/action`,
      });
      assertProblem(
        await send(api.url, '/.well-known/authzen-configuration', { body: '{}' }),
        405,
        'method_not_allowed',
      );
    });

    test('the handler leaves other paths to the host server', async () => {
      const handler = createDecisionApiHandler(api.layer, {
        authenticate: async () => ({ ok: true, agent: 'x' }),
      });
      const fakeReq = { url: '/mcp', method: 'POST', headers: {} } as unknown as Parameters<
        typeof handler
      >[0];
      let touched = false;
      const res = new Proxy(
        {},
        {
          get: () => {
            touched = true;
            return () => undefined;
          },
        },
      ) as Parameters<typeof handler>[1];
      assert.equal(await handler(fakeReq, res), false);
      assert.equal(touched, false);
    });
  });
});

describe('http decision api: configured limits', () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(POLICY, KEYS, {
      maxBodyBytes: 512,
      maxBatch: 3,
      authzenReasons: 'always',
      publicUrl: 'https://pdp.example.com/',
    });
  });
  after(async () => {
    await api?.close();
  });

  test('custom body and batch caps, reasons always on, published base URL', async () => {
    const big = JSON.stringify({ tool: 'docs.read', args: { pad: 'x'.repeat(600) } });
    const p = assertProblem(
      await send(api.url, '/v1/decide', { headers: JSON_HEADERS(), body: big }),
      413,
      'payload_too_large',
    );
    assert.match(String(p.detail), /512 bytes/);
    const items = Array.from({ length: 4 }, () => ({ action: { name: 'docs.read' } }));
    const r = await send(api.url, '/access/v1/evaluations', {
      headers: JSON_HEADERS(),
      body: JSON.stringify({
        subject: { type: 'agent', id: 'alice' },
        resource: { type: 'd' },
        evaluations: items,
      }),
    });
    assertProblem(r, 400, 'batch_too_large', '/evaluations');
    const one = await send(api.url, '/access/v1/evaluation', {
      headers: JSON_HEADERS(),
      body: JSON.stringify(evaluation('alice', 'docs.read')),
    });
    const body = one.json() as { decision: boolean; context: { code: string } };
    assert.equal(body.decision, true);
    assert.equal(body.context.code, 'allowed');
    const meta = await send(api.url, '/.well-known/authzen-configuration', { method: 'GET' });
    assert.equal(meta.json().access_evaluations_endpoint, 'https://pdp.example.com/access/v1/evaluations');
  });
});

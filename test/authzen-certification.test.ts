/**
 * A certification-style check of the decision API against the text of OpenID AuthZEN Authorization API
 * 1.0: each test names the section whose MUST (or the REQUIRED member) it checks. Section numbers are
 * those of the 1.0 final specification (§5 information model, §6 evaluation, §7 evaluations, §8 search,
 * §9 metadata, §10 HTTPS binding, §11 security considerations). Real ExecLayer, real HTTP, real policy.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningApi, startApi } from './http-fixtures.js';

const POLICY = {
  version: 1,
  agents: {
    pep: { owner: 'platform@acme.com', purpose: 'application backend' },
    alice: { owner: 'alice@acme.com', roles: ['reader', 'writer'] },
    bob: { owner: 'bob@acme.com', roles: ['reader'] },
    carol: { owner: 'carol@acme.com', roles: ['reader', 'writer'] },
  },
  roles: {
    reader: [{ id: 'read-docs', allow: 'docs.read' }],
    writer: [
      { id: 'edit-own', allow: 'docs.edit', when: { cel: 'has(args.owner) && args.owner == agent.owner' } },
      { id: 'no-delete', deny: 'docs.delete' },
    ],
  },
};
const KEYS = { 'k-pep': { agent: 'pep', roles: ['pdp-client'] }, 'k-alice': { agent: 'alice' } };

let api: RunningApi;
before(async () => {
  api = await startApi(POLICY, KEYS, { publicUrl: 'https://pdp.example.com' });
});
after(async () => {
  await api?.close();
});

interface Reply {
  status: number;
  type: string;
  headers: Headers;
  body: Record<string, unknown>;
}

async function call(
  path: string,
  body: unknown,
  init: { key?: string | null; headers?: Record<string, string>; raw?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
  if (init.key !== null) headers.authorization = `Bearer ${init.key ?? 'k-pep'}`;
  const r = await fetch(`${api.url}${path}`, {
    method: 'POST',
    headers,
    body: init.raw ?? JSON.stringify(body),
  });
  const text = await r.text();
  return {
    status: r.status,
    type: (r.headers.get('content-type') ?? '').split(';')[0] ?? '',
    headers: r.headers,
    body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}

const subject = (id: string) => ({ type: 'agent', id });
const doc = (props: Record<string, unknown> = {}) => ({ type: 'doc', id: 'd1', properties: props });
const ev = (who: string, tool: string, props: Record<string, unknown> = {}) => ({
  subject: subject(who),
  action: { name: tool },
  resource: doc(props),
});

function isBadRequest(r: Reply, pointer?: string): void {
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(typeof r.body.detail, 'string', 'the body carries an error message');
  if (pointer !== undefined) assert.equal(r.body.pointer, pointer);
}

describe('§5 information model, required members (missing means 400, §10.1.1)', () => {
  test('§5.1 a Subject requires `type` and `id`, strings', async () => {
    const base = ev('alice', 'docs.read');
    isBadRequest(await call('/access/v1/evaluation', { ...base, subject: { id: 'alice' } }), '/subject/type');
    isBadRequest(await call('/access/v1/evaluation', { ...base, subject: { type: 'agent' } }), '/subject/id');
    isBadRequest(
      await call('/access/v1/evaluation', { ...base, subject: { type: 'agent', id: 7 } }),
      '/subject/id',
    );
  });

  test('§5.2 a Resource requires `type` and `id`', async () => {
    const base = ev('alice', 'docs.read');
    isBadRequest(await call('/access/v1/evaluation', { ...base, resource: { id: 'd1' } }), '/resource/type');
    isBadRequest(await call('/access/v1/evaluation', { ...base, resource: { type: 'doc' } }), '/resource/id');
  });

  test('§5.3 an Action requires `name`', async () => {
    const base = ev('alice', 'docs.read');
    isBadRequest(await call('/access/v1/evaluation', { ...base, action: {} }), '/action/name');
    isBadRequest(await call('/access/v1/evaluation', { ...base, action: { name: true } }), '/action/name');
  });

  test('§5.5 a Decision always has the boolean `decision`; false for what is not permitted', async () => {
    const yes = await call('/access/v1/evaluation', ev('alice', 'docs.read'));
    const no = await call('/access/v1/evaluation', ev('alice', 'docs.delete'));
    assert.deepEqual([yes.body, no.body], [{ decision: true }, { decision: false }]);
    // Unknown subject: default deny is a decision, not an error (§10.1.2: a deny is 200 with false).
    const unknown = await call('/access/v1/evaluation', ev('mallory', 'docs.read'));
    assert.equal(unknown.status, 200);
    assert.deepEqual(unknown.body, { decision: false });
  });
});

describe('§6 Access Evaluation API', () => {
  test('§6.1 subject, action and resource are REQUIRED; context is OPTIONAL', async () => {
    const { subject: s, action, resource } = ev('alice', 'docs.read');
    isBadRequest(await call('/access/v1/evaluation', { action, resource }), '/subject');
    isBadRequest(await call('/access/v1/evaluation', { subject: s, resource }), '/action');
    isBadRequest(await call('/access/v1/evaluation', { subject: s, action }), '/resource');
    const withContext = await call('/access/v1/evaluation', {
      subject: s,
      action,
      resource,
      context: { t: 1 },
    });
    assert.deepEqual(withContext.body, { decision: true });
  });

  test('§6.2 the response is a Decision, decided from the resource properties', async () => {
    const own = await call('/access/v1/evaluation', ev('alice', 'docs.edit', { owner: 'alice@acme.com' }));
    const other = await call('/access/v1/evaluation', ev('alice', 'docs.edit', { owner: 'bob@acme.com' }));
    assert.deepEqual([own.body, other.body], [{ decision: true }, { decision: false }]);
  });
});

describe('§7 Access Evaluations API', () => {
  test('§7.1 without an `evaluations` array, or with an empty one, it behaves as a single evaluation', async () => {
    const none = await call('/access/v1/evaluations', ev('alice', 'docs.read'));
    const empty = await call('/access/v1/evaluations', { ...ev('alice', 'docs.read'), evaluations: [] });
    assert.deepEqual([none.body, empty.body], [{ decision: true }, { decision: true }]);
    // An empty array with no top-level 4-tuple is a single evaluation missing its subject.
    isBadRequest(await call('/access/v1/evaluations', { evaluations: [] }), '/subject');
  });

  test('§7.1 top-level keys may be omitted when every item has them', async () => {
    const r = await call('/access/v1/evaluations', {
      evaluations: [ev('alice', 'docs.read'), ev('alice', 'docs.delete'), ev('bob', 'docs.read')],
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { evaluations: [{ decision: true }, { decision: false }, { decision: true }] });
  });

  test('§7.1.1 item keys override the defaults; a key missing from both is that item’s error', async () => {
    const n = api.recorder.decisions().length;
    const r = await call('/access/v1/evaluations', {
      subject: subject('alice'),
      action: { name: 'docs.read' },
      evaluations: [
        { resource: doc() },
        {},
        { subject: subject('bob'), action: { name: 'docs.edit' }, resource: doc({ owner: 'bob@acme.com' }) },
      ],
    });
    assert.equal(r.status, 200);
    const items = r.body.evaluations as {
      decision: boolean;
      context?: { error?: { pointer?: string; status?: number } };
    }[];
    assert.deepEqual(items[0], { decision: true });
    assert.equal(items[1]?.decision, false);
    assert.deepEqual(items[1]?.context?.error?.pointer, '/evaluations/1/resource');
    assert.equal(items[1]?.context?.error?.status, 400);
    // bob is a reader: the item's own subject and action replaced the defaults.
    assert.deepEqual(items[2], { decision: false });
    assert.equal(api.recorder.decisions().length, n + 2, 'only the two valid items were decided');
  });

  test('§7.1.2.1 execute_all (the default) runs every item, an error item included', async () => {
    const body = {
      subject: subject('alice'),
      evaluations: [
        { action: { name: 'docs.read' }, resource: doc() },
        { action: { name: 'docs.read' } },
        { action: { name: 'docs.delete' }, resource: doc() },
        { action: { name: 'docs.read' }, resource: doc() },
      ],
    };
    for (const options of [undefined, { evaluations_semantic: 'execute_all' }]) {
      const r = await call('/access/v1/evaluations', { ...body, ...(options ? { options } : {}) });
      assert.equal(r.status, 200);
      const items = r.body.evaluations as { decision: boolean; context?: { error?: { pointer?: string } } }[];
      assert.deepEqual(
        items.map((i) => i.decision),
        [true, false, false, true],
      );
      assert.equal(items[1]?.context?.error?.pointer, '/evaluations/1/resource');
    }
  });

  test('§7.1.2.1 deny_on_first_deny stops at the first denial, an error counting as one', async () => {
    const n = api.recorder.decisions().length;
    const r = await call('/access/v1/evaluations', {
      subject: subject('alice'),
      options: { evaluations_semantic: 'deny_on_first_deny' },
      evaluations: [
        { action: { name: 'docs.read' }, resource: doc() },
        { action: { name: 'docs.read' }, resource: { type: 'doc' } },
        { action: { name: 'docs.read' }, resource: doc() },
      ],
    });
    const items = r.body.evaluations as { decision: boolean }[];
    assert.deepEqual(
      items.map((i) => i.decision),
      [true, false],
    );
    assert.equal(api.recorder.decisions().length, n + 1, 'nothing after the denial was evaluated');
  });

  test('§7.1.2.1 permit_on_first_permit stops at the first permit', async () => {
    const n = api.recorder.decisions().length;
    const r = await call('/access/v1/evaluations', {
      subject: subject('alice'),
      options: { evaluations_semantic: 'permit_on_first_permit' },
      evaluations: [
        { action: { name: 'docs.delete' }, resource: doc() },
        { action: { name: 'docs.read' }, resource: doc() },
        { action: { name: 'docs.read' }, resource: doc() },
      ],
    });
    assert.deepEqual(r.body, { evaluations: [{ decision: false }, { decision: true }] });
    assert.equal(api.recorder.decisions().length, n + 2);
  });

  test('§7.2 results come in the order of the request', async () => {
    const tools = ['docs.delete', 'docs.read', 'docs.delete', 'docs.read', 'docs.read', 'docs.delete'];
    const r = await call('/access/v1/evaluations', {
      subject: subject('alice'),
      resource: doc(),
      evaluations: tools.map((name) => ({ action: { name } })),
    });
    assert.deepEqual(
      (r.body.evaluations as { decision: boolean }[]).map((i) => i.decision),
      tools.map((t) => t === 'docs.read'),
    );
  });

  test('§7.2.1 an error about the whole payload is a transport-level 4xx', async () => {
    isBadRequest(await call('/access/v1/evaluations', { evaluations: {} }), '/evaluations');
    isBadRequest(
      await call('/access/v1/evaluations', {
        ...ev('alice', 'docs.read'),
        options: { evaluations_semantic: 'x' },
      }),
      '/options/evaluations_semantic',
    );
  });
});

describe('§8 Search APIs', () => {
  const search = (kind: string, body: unknown, key = 'k-pep') =>
    call(`/access/v1/search/${kind}`, body, { key });

  test('§8.3 `results` is REQUIRED and holds only entities of the searched type', async () => {
    const s = await search('subject', {
      subject: { type: 'agent' },
      action: { name: 'docs.read' },
      resource: doc(),
    });
    assert.equal(s.status, 200);
    assert.equal(s.type, 'application/json');
    assert.deepEqual(s.body.results, [
      { type: 'agent', id: 'alice' },
      { type: 'agent', id: 'bob' },
      { type: 'agent', id: 'carol' },
    ]);
    const a = await search('action', {
      subject: subject('alice'),
      resource: doc({ owner: 'alice@acme.com' }),
    });
    const actions = a.body.results as { name: string }[];
    assert.deepEqual(
      actions.map((x) => x.name),
      ['docs.edit', 'docs.read'],
    );
    assert.ok(actions.every((x) => Object.keys(x).every((k) => k === 'name' || k === 'properties')));
    const r = await search('resource', {
      subject: subject('alice'),
      action: { name: 'docs.edit' },
      resource: { type: 'doc' },
    });
    // A resource of the searched type per allow rule: its id is the rule, its properties the constraint.
    const found = r.body.results as { type: string; id: string; properties: Record<string, string> }[];
    assert.equal(found.length, 1);
    assert.equal(found[0]?.type, 'doc');
    assert.equal(found[0]?.id, 'edit-own');
    assert.equal(found[0]?.properties.rule, 'edit-own');
    assert.match(found[0]?.properties.when ?? '', /args\.owner == agent\.owner/);
  });

  test('§8.4.1 subject search: `type` MUST be present, an `id` MUST be ignored', async () => {
    isBadRequest(
      await search('subject', { subject: {}, action: { name: 'docs.read' }, resource: doc() }),
      '/subject/type',
    );
    const withId = await search('subject', {
      subject: { type: 'agent', id: 'nobody' },
      action: { name: 'docs.edit' },
      resource: doc({ owner: 'carol@acme.com' }),
    });
    assert.deepEqual(withId.body.results, [{ type: 'agent', id: 'carol' }]);
    isBadRequest(await search('subject', { subject: { type: 'agent' }, resource: doc() }), '/action');
    isBadRequest(
      await search('subject', { subject: { type: 'agent' }, action: { name: 'docs.read' } }),
      '/resource',
    );
  });

  test('§8.5.1 resource search: `type` MUST be present, an `id` MUST be ignored', async () => {
    const body = { subject: subject('alice'), action: { name: 'docs.read' } };
    isBadRequest(await search('resource', { ...body, resource: {} }), '/resource/type');
    const a = await search('resource', { ...body, resource: { type: 'doc' } });
    const b = await search('resource', { ...body, resource: { type: 'doc', id: 'whatever' } });
    assert.deepEqual(a.body, b.body);
    assert.deepEqual(a.body.results, [{ type: 'doc', id: 'read-docs', properties: { rule: 'read-docs' } }]);
    // A denied tool has no resource on which it may be called.
    const denied = await search('resource', {
      ...body,
      action: { name: 'docs.delete' },
      resource: { type: 'doc' },
    });
    assert.deepEqual(denied.body.results, []);
  });

  test('§8.6.1 action search needs no `action` and ignores one that is sent', async () => {
    const body = { subject: subject('bob'), resource: doc() };
    const a = await search('action', body);
    const b = await search('action', { ...body, action: { name: 'docs.delete' } });
    assert.deepEqual(a.body, b.body);
    assert.deepEqual(a.body.results, [{ name: 'docs.read', properties: { rule: 'read-docs' } }]);
  });

  test('§8.2 a partial answer has a non-empty `next_token`; the last page an empty one', async () => {
    const body = { subject: { type: 'agent' }, action: { name: 'docs.read' }, resource: doc() };
    const first = await search('subject', { ...body, page: { limit: 2 } });
    const p1 = first.body.page as { next_token: string; count: number; total: number };
    assert.equal(p1.count, 2);
    assert.equal(p1.total, 3);
    assert.notEqual(p1.next_token, '');
    assert.equal(Object.keys(first.body)[0], 'page', '§8.3: page is RECOMMENDED first');
    const second = await search('subject', { ...body, page: { limit: 2, token: p1.next_token } });
    const p2 = second.body.page as { next_token: string; count: number };
    assert.equal(p2.next_token, '');
    assert.deepEqual(
      [...(first.body.results as unknown[]), ...(second.body.results as unknown[])],
      [
        { type: 'agent', id: 'alice' },
        { type: 'agent', id: 'bob' },
        { type: 'agent', id: 'carol' },
      ],
    );
  });

  test('§8.2 with a token, the entities and limit MUST be those of the first request (else 400)', async () => {
    const body = { subject: { type: 'agent' }, action: { name: 'docs.read' }, resource: doc() };
    const first = await search('subject', { ...body, page: { limit: 1 } });
    const token = (first.body.page as { next_token: string }).next_token;
    isBadRequest(
      await search('subject', { ...body, action: { name: 'docs.edit' }, page: { limit: 1, token } }),
      '/page/token',
    );
    isBadRequest(await search('subject', { ...body, page: { limit: 2, token } }), '/page/token');
    isBadRequest(await search('subject', { ...body, page: { limit: 1, token: `${token}x` } }), '/page/token');
    isBadRequest(await search('subject', { ...body, page: { limit: -1 } }), '/page/limit');
    const ok = await search('subject', { ...body, page: { limit: 1, token } });
    assert.deepEqual(ok.body.results, [{ type: 'agent', id: 'bob' }]);
  });

  test('a caller that is not a PDP client may search only about itself, and no subjects at all', async () => {
    const mine = await search('action', { subject: subject('alice'), resource: doc() }, 'k-alice');
    assert.equal(mine.status, 200);
    const other = await search('action', { subject: subject('bob'), resource: doc() }, 'k-alice');
    assert.equal(other.status, 403);
    const who = await search(
      'subject',
      { subject: { type: 'agent' }, action: { name: 'docs.read' }, resource: doc() },
      'k-alice',
    );
    assert.equal(who.status, 403);
  });
});

describe('§9 Policy Decision Point metadata', () => {
  test('§9.2 served by GET at /.well-known/authzen-configuration as 200 application/json', async () => {
    const r = await fetch(`${api.url}/.well-known/authzen-configuration`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    const meta = (await r.json()) as Record<string, string>;
    // §9.2.3: policy_decision_point is the identifier the document was fetched under (the public URL).
    assert.equal(meta.policy_decision_point, 'https://pdp.example.com');
    assert.deepEqual(meta, {
      policy_decision_point: 'https://pdp.example.com',
      access_evaluation_endpoint: 'https://pdp.example.com/access/v1/evaluation',
      access_evaluations_endpoint: 'https://pdp.example.com/access/v1/evaluations',
      search_subject_endpoint: 'https://pdp.example.com/access/v1/search/subject',
      search_resource_endpoint: 'https://pdp.example.com/access/v1/search/resource',
      search_action_endpoint: 'https://pdp.example.com/access/v1/search/action',
    });
    // §9.2: parameters with no value are omitted, never null or empty.
    assert.ok(Object.values(meta).every((v) => typeof v === 'string' && v.length > 0));
  });
});

describe('§10 HTTPS JSON binding', () => {
  test('§10.1 a request without Content-Type application/json is a 400', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
      isBadRequest(
        await call('/access/v1/evaluation', ev('alice', 'docs.read'), { headers: { 'content-type': type } }),
      );
    }
  });

  test('§10.1 a success is 200 with application/json', async () => {
    for (const path of ['/access/v1/evaluation', '/access/v1/evaluations']) {
      const r = await call(path, ev('alice', 'docs.read'));
      assert.equal(r.status, 200);
      assert.equal(r.type, 'application/json');
    }
  });

  test('§10.1.1 the top-level element MUST be an object; unknown members MUST be ignored', async () => {
    isBadRequest(await call('/access/v1/evaluation', null, { raw: '[1,2]' }));
    const extra = await call('/access/v1/evaluation', {
      ...ev('alice', 'docs.read'),
      future_member: { x: 1 },
      subject: { ...subject('alice'), nickname: 'al' },
      action: { name: 'docs.read', flavour: 'vanilla' },
    });
    assert.deepEqual(extra.body, { decision: true });
    const batch = await call('/access/v1/evaluations', {
      evaluations: [{ ...ev('alice', 'docs.read'), note: 'n' }],
      options: { evaluations_semantic: 'execute_all', another_option: 'value' },
    });
    assert.deepEqual(batch.body, { evaluations: [{ decision: true }] });
  });

  test('§10.1.2 a denial is a 200 decision, never an HTTP error', async () => {
    const r = await call('/access/v1/evaluation', ev('bob', 'docs.edit', { owner: 'bob@acme.com' }));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { decision: false });
  });

  test('§10.1.3 the X-Request-ID the PEP sent MUST come back on the response, errors included', async () => {
    for (const [body, status] of [
      [ev('alice', 'docs.read'), 200],
      [{}, 400],
    ] as const) {
      const r = await call('/access/v1/evaluation', body, { headers: { 'x-request-id': 'bfe9eb29-ab87' } });
      assert.equal(r.status, status);
      assert.equal(r.headers.get('x-request-id'), 'bfe9eb29-ab87');
    }
    const s = await call('/access/v1/search/subject', {}, { headers: { 'x-request-id': 'req-7' } });
    assert.equal(s.headers.get('x-request-id'), 'req-7');
  });
});

describe('§11 security considerations', () => {
  test('§11.3 without proper credentials the answer MUST be 401, with WWW-Authenticate', async () => {
    for (const key of [null, 'wrong-key']) {
      const r = await call('/access/v1/evaluation', ev('alice', 'docs.read'), { key });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
  });
});

/**
 * The operator API on the real `serve` stack: SQLite store in a temp dir, the memory MCP server as the
 * upstream, the official SDK client over Streamable HTTP. Approval round trips (bound to the exact call,
 * single use, recorded), roles on API keys and JWTs, the stop switch, and every bad-input answer.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { sqliteApprovalStore } from '../src/approvals/sqlite.js';
import { type AuditLog, openAuditLog } from '../src/audit/log.js';
import { type RunningServer, startServe } from '../src/cli/serve.js';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { createAdminApiHandler } from '../src/enforce/admin/index.js';
import { createAuthenticator, hashApiKey, newApiKey, rolesFromClaim } from '../src/enforce/auth.js';
import { SqliteAgentStateStore } from '../src/state/agent-state.js';
import type { AuditEvent } from '../src/types.js';
import { MEMORY, text } from './gateway-helpers.js';

const AGENT = newApiKey(); // support-bot, no roles
const LEAD = newApiKey(); // lead@acme.com: approver, named in the rule
const OTHER = newApiKey(); // other@acme.com: approver, not named in the rule
const BULK = newApiKey(); // bulk@acme.com: approver, for the rate cap
const OPS = newApiKey(); // ops@acme.com: operator
const PDP = newApiKey(); // backend: pdp-client
const SELF = newApiKey(); // self-approver: an agent that is also an approver

let dir: string;
let memoryFile: string;
let running: RunningServer;
let base: string;
let signJwt: (claims: Record<string, unknown>) => Promise<string>;

const POLICY = `version: 1
agents:
  support-bot:
    owner: support@acme.com
    purpose: keeps notes about customers
    roles: [notes]
  self-approver:
    owner: support@acme.com
    purpose: asks for, and may approve, deletions
    roles: [notes]
roles:
  notes:
    - id: read
      allow: [memory.read_graph, memory.open_nodes, memory.add_observations]
    - id: create-needs-lead
      ask: memory.create_entities
      approval: { ttl: 15m, uses: 1, approvers: [lead@acme.com] }
    - id: delete-observations
      ask: memory.delete_observations
    - id: delete-entities-quickly
      ask: memory.delete_entities
      approval: { ttl: 1s }
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'execlayer-admin-'));
  memoryFile = join(dir, 'memory.jsonl');
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  writeFileSync(
    join(dir, 'jwks.json'),
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }),
  );
  signJwt = (claims) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://idp.acme.com')
      .setAudience('execlayer')
      .setExpirationTime('5m')
      .sign(privateKey);
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  const key = (k: string, agent: string, roles?: string[]) =>
    `    - { sha256: ${hashApiKey(k)}, agent: "${agent}"${roles ? `, roles: [${roles.join(', ')}]` : ''} }`;
  writeFileSync(
    join(dir, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
upstreams:
  memory:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(MEMORY)}]
    env: { MEMORY_FILE_PATH: ${JSON.stringify(memoryFile)} }
auth:
  apiKeys:
${[
  key(AGENT, 'support-bot'),
  key(LEAD, 'lead@acme.com', ['approver']),
  key(OTHER, 'other@acme.com', ['approver']),
  key(BULK, 'bulk@acme.com', ['approver']),
  key(OPS, 'ops@acme.com', ['operator']),
  key(PDP, 'backend', ['pdp-client']),
  key(SELF, 'self-approver', ['approver']),
].join('\n')}
  jwt: { jwks: ./jwks.json, issuer: "https://idp.acme.com", audience: execlayer }
http: { port: 0 }
`,
  );
  running = await startServe(loadConfigFile(join(dir, 'execlayer.yaml')), { port: 0 });
  base = running.http.url.replace(/\/mcp$/, '');
});

after(async () => {
  await running?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function api(
  method: string,
  path: string,
  key: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
  at: string = base,
): Promise<Answer> {
  const h: Record<string, string> = { ...headers };
  if (key !== undefined) h.authorization = `Bearer ${key}`;
  let payload: string | Uint8Array | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${at}${path}`, {
    method,
    headers: h,
    ...(payload !== undefined ? { body: payload } : {}),
  });
  const raw = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: raw === '' ? {} : (JSON.parse(raw) as Record<string, unknown>),
  };
}

/** Asserts an RFC 9457 problem with this status and code. */
function isProblem(a: Answer, status: number, code: string): void {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.equal(a.headers.get('content-type'), 'application/problem+json');
  assert.equal(a.body.code, code);
  assert.equal(a.body.status, status);
  assert.equal(a.body.type, `urn:execlayer:problem:${code}`);
  assert.equal(typeof a.body.detail, 'string');
  assert.doesNotMatch(String(a.body.detail), /\n\s+at /, 'no stack trace');
}

async function agentClient(key = AGENT): Promise<Client> {
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(running.http.url), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

function pendingId(result: unknown): string {
  const m = /approval pending \(id (apr_[0-9a-f]+)\)/.exec(text(result));
  assert.ok(m?.[1], `expected an approval-pending refusal, got: ${text(result)}`);
  return m[1];
}

/** The entities the memory server has written to its file (its side effect). */
function stored(): string {
  return existsSync(memoryFile) ? readFileSync(memoryFile, 'utf8') : '';
}

async function events(type: AuditEvent['type']): Promise<AuditEvent[]> {
  const log = running.opened.layer.recorder.inner as AuditLog;
  return (await log.query({ type })).flatMap((r) => (r.event ? [r.event] : []));
}

/** Creates a pending approval through the decision API, as a pdp-client asking about `agent`. */
async function askVia(agent: string, tool: string, args: Record<string, unknown>): Promise<string> {
  const r = await api('POST', '/v1/decide', PDP, { agent, tool, args });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.effect, 'ask');
  return String(r.body.approvalId);
}

describe('approval round trip through the gateway and the operator API', () => {
  const ada = { entities: [{ name: 'Ada', entityType: 'person', observations: ['prefers email'] }] };
  let client: Client;
  let id: string;

  before(async () => {
    client = await agentClient();
  });
  after(async () => {
    await client?.close();
  });

  test('an `ask` call returns approval pending and does not run', async () => {
    const r = await client.callTool({ name: 'memory.create_entities', arguments: ada });
    assert.equal(r.isError, true);
    id = pendingId(r);
    assert.doesNotMatch(stored(), /Ada/);
  });

  test('approvers list and read it; agents and operators cannot', async () => {
    const list = await api('GET', '/v1/approvals?status=pending&agent=support-bot', LEAD);
    assert.equal(list.status, 200);
    const rows = list.body.approvals as Array<Record<string, unknown>>;
    const row = rows.find((a) => a.id === id);
    assert.ok(row, 'the pending approval is listed');
    assert.equal(row.tool, 'memory.create_entities');
    assert.equal(row.status, 'pending');
    assert.deepEqual(row.approvers, ['lead@acme.com']);
    const one = await api('GET', `/v1/approvals/${id}`, LEAD);
    assert.equal(one.status, 200);
    assert.equal(one.body.id, id);
    assert.deepEqual(one.body.args, ada);
    isProblem(await api('GET', `/v1/approvals/${id}`, AGENT), 403, 'forbidden');
    isProblem(await api('GET', '/v1/approvals', OPS), 403, 'forbidden');
  });

  test('the agent key cannot approve its own call; an approver not named by the rule cannot either', async () => {
    const byAgent = await api('POST', `/v1/approvals/${id}/approve`, AGENT, {});
    isProblem(byAgent, 403, 'forbidden');
    assert.match(String(byAgent.body.detail), /`support-bot` lacks the `approver` role/);
    const byOther = await api('POST', `/v1/approvals/${id}/approve`, OTHER, {});
    isProblem(byOther, 403, 'not_allowed');
    assert.match(String(byOther.body.detail), /`other@acme\.com` may not decide/);
    // Naming an approver in the body changes nothing: it is refused, not taken.
    const spoof = await api('POST', `/v1/approvals/${id}/approve`, OTHER, { approver: 'lead@acme.com' });
    isProblem(spoof, 400, 'invalid_request');
    assert.equal(spoof.body.pointer, '/approver');
    assert.equal((await api('GET', `/v1/approvals/${id}`, LEAD)).body.status, 'pending');
    const r = await client.callTool({ name: 'memory.create_entities', arguments: ada });
    assert.equal(pendingId(r), id, 'still the same pending request');
    assert.doesNotMatch(stored(), /Ada/);
  });

  test('the named approver approves; the identity is the credential, the request id is echoed', async () => {
    const r = await api(
      'POST',
      `/v1/approvals/${id}/approve`,
      LEAD,
      { note: 'customer asked' },
      {
        'x-request-id': 'req-approve-1',
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers.get('x-request-id'), 'req-approve-1');
    assert.equal(r.body.status, 'granted');
    assert.equal(r.body.approver, 'lead@acme.com');
    assert.equal(r.body.note, 'customer asked');
    isProblem(await api('POST', `/v1/approvals/${id}/approve`, LEAD, {}), 409, 'already_decided');
    isProblem(await api('POST', `/v1/approvals/${id}/deny`, LEAD), 409, 'already_decided');
  });

  test('a retry with changed arguments is refused; the same call runs once; a second retry is refused', async () => {
    const changed = { entities: [{ name: 'Eve', entityType: 'person', observations: ['prefers email'] }] };
    const other = await client.callTool({ name: 'memory.create_entities', arguments: changed });
    assert.equal(other.isError, true);
    assert.notEqual(pendingId(other), id);
    assert.doesNotMatch(stored(), /Eve/);

    const ok = await client.callTool({ name: 'memory.create_entities', arguments: ada });
    assert.notEqual(ok.isError, true, text(ok));
    assert.match(stored(), /"name":"Ada"/, 'the upstream wrote the entity');

    const again = await client.callTool({ name: 'memory.create_entities', arguments: ada });
    assert.equal(again.isError, true);
    const next = pendingId(again);
    assert.notEqual(next, id, 'the grant was single use: a new request is pending');
    assert.equal((await api('GET', `/v1/approvals/${id}`, LEAD)).body.status, 'used');
  });

  test('the request, the grant and its use are in the audit log, linked to the decisions', async () => {
    const mine = (await events('approval')).filter((e) => e.type === 'approval' && e.approvalId === id);
    assert.deepEqual(
      mine.map((e) => e.type === 'approval' && e.status),
      ['requested', 'granted', 'used'],
    );
    const granted = mine[1];
    assert.ok(granted?.type === 'approval');
    assert.equal(granted.approver, 'lead@acme.com');
    assert.equal(granted.agent, 'support-bot');
    const decisions = (await events('decision')).filter(
      (e) => e.type === 'decision' && e.decision.approvalId === id,
    );
    assert.deepEqual(
      decisions.map((e) => e.type === 'decision' && e.decision.effect),
      ['ask', 'ask', 'allow'],
      'asked twice (same pending request), then allowed by the grant',
    );
  });

  test('a denied request stays refused', async () => {
    const args = { deletions: [{ entityName: 'Ada', observations: ['prefers email'] }] };
    const first = await client.callTool({ name: 'memory.delete_observations', arguments: args });
    const denyId = pendingId(first);
    const d = await api('POST', `/v1/approvals/${denyId}/deny`, LEAD, { note: 'keep it' });
    assert.equal(d.status, 200);
    assert.equal(d.body.status, 'denied');
    const retry = await client.callTool({ name: 'memory.delete_observations', arguments: args });
    assert.equal(retry.isError, true);
    assert.notEqual(pendingId(retry), denyId);
    assert.match(stored(), /prefers email/, 'the observation was not deleted');
    const denied = (await events('approval')).find(
      (e) => e.type === 'approval' && e.approvalId === denyId && e.status === 'denied',
    );
    assert.ok(
      denied?.type === 'approval' && denied.approver === 'lead@acme.com' && denied.note === 'keep it',
    );
  });
});

describe('the approval store rules, through the API', () => {
  test('an expired request cannot be approved (409)', async () => {
    const id = await askVia('support-bot', 'memory.delete_entities', { entityNames: ['Ada'] });
    await new Promise((r) => setTimeout(r, 1100));
    const r = await api('POST', `/v1/approvals/${id}/approve`, LEAD, {});
    isProblem(r, 409, 'expired');
    assert.equal((await api('GET', `/v1/approvals/${id}`, LEAD)).body.status, 'expired');
  });

  test('an agent cannot approve its own request even with the approver role', async () => {
    const id = await askVia('self-approver', 'memory.delete_observations', { deletions: [] });
    const r = await api('POST', `/v1/approvals/${id}/approve`, SELF, {});
    isProblem(r, 403, 'not_allowed');
    assert.match(String(r.body.detail), /cannot decide its own approval/);
    const ok = await api('POST', `/v1/approvals/${id}/deny`, BULK);
    assert.equal(ok.status, 200);
  });

  test('the approver rate cap answers 429 with Retry-After', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      ids.push(await askVia('support-bot', 'memory.delete_observations', { deletions: [], n: i }));
    }
    // BULK made one decision above; 29 more reach the cap of 30 per minute.
    for (const id of ids.slice(0, 29)) {
      const r = await api('POST', `/v1/approvals/${id}/deny`, BULK);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const last = ids[29] as string;
    const capped = await api('POST', `/v1/approvals/${last}/approve`, BULK);
    isProblem(capped, 429, 'rate_limited');
    assert.equal(capped.headers.get('retry-after'), '60');
    assert.equal((await api('GET', `/v1/approvals/${last}`, LEAD)).body.status, 'pending');
  });

  test('unknown ids are 404, malformed ids 400', async () => {
    isProblem(await api('GET', '/v1/approvals/apr_00000000000000000000', LEAD), 404, 'not_found');
    isProblem(await api('POST', '/v1/approvals/apr_00000000000000000000/approve', LEAD), 404, 'not_found');
    isProblem(await api('GET', '/v1/approvals/bad%20id', LEAD), 400, 'invalid_request');
    isProblem(await api('POST', `/v1/approvals/${'a'.repeat(65)}/deny`, LEAD), 400, 'invalid_request');
    isProblem(await api('POST', '/v1/approvals/%E0%A4%A/approve', LEAD), 400, 'invalid_request');
  });
});

describe('the stop switch over the API', () => {
  let client: Client;
  const note = (text: string) => ({ observations: [{ entityName: 'Ada', contents: [text] }] });

  before(async () => {
    client = await agentClient();
  });
  after(async () => {
    await client?.close();
  });

  test('only operators may operate it', async () => {
    isProblem(await api('POST', '/v1/agents/support-bot/suspend', AGENT, {}), 403, 'forbidden');
    isProblem(await api('POST', '/v1/stop', LEAD, {}), 403, 'forbidden');
    isProblem(await api('GET', '/v1/agents', PDP), 403, 'forbidden');
    const r = await client.callTool({ name: 'memory.add_observations', arguments: note('before') });
    assert.notEqual(r.isError, true, text(r));
    assert.match(stored(), /before/);
  });

  test('suspend denies the very next call; resume restores it', async () => {
    const s = await api('POST', '/v1/agents/support-bot/suspend', OPS, { reason: 'incident 42' });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.deepEqual(s.body, {
      agent: 'support-bot',
      suspended: true,
      by: 'ops@acme.com',
      reason: 'incident 42',
    });
    const denied = await client.callTool({
      name: 'memory.add_observations',
      arguments: note('while-suspended'),
    });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /suspended by ops@acme\.com: incident 42/);
    assert.doesNotMatch(stored(), /while-suspended/, 'the upstream never saw the call');

    const list = await api('GET', '/v1/agents', OPS);
    assert.equal(list.status, 200);
    assert.equal(list.body.stopped, false);
    const rows = list.body.suspensions as Array<Record<string, unknown>>;
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.agent, 'support-bot');
    assert.equal(rows[0]?.by, 'ops@acme.com');

    const resumed = await api('POST', '/v1/agents/support-bot/resume', OPS);
    assert.equal(resumed.status, 200);
    assert.deepEqual(resumed.body, { agent: 'support-bot', resumed: true, by: 'ops@acme.com' });
    const ok = await client.callTool({ name: 'memory.add_observations', arguments: note('after-resume') });
    assert.notEqual(ok.isError, true, text(ok));
    assert.match(stored(), /after-resume/);
    isProblem(await api('POST', '/v1/agents/support-bot/resume', OPS), 404, 'not_suspended');
  });

  test('the global stop denies every agent, on every front door; resume-all lifts it', async () => {
    const s = await api('POST', '/v1/stop', OPS, { reason: 'drill' });
    assert.equal(s.status, 200);
    assert.equal(s.body.agent, '*');
    const denied = await client.callTool({ name: 'memory.add_observations', arguments: note('during-stop') });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /all agents are stopped: drill/);
    assert.doesNotMatch(stored(), /during-stop/);
    const viaApi = await api('POST', '/v1/decide', PDP, {
      agent: 'self-approver',
      tool: 'memory.read_graph',
    });
    assert.equal(viaApi.body.effect, 'deny');
    assert.equal(viaApi.body.code, 'suspended');
    assert.equal((await api('GET', '/v1/agents', OPS)).body.stopped, true);

    const lifted = await api('POST', '/v1/resume-all', OPS, {});
    assert.equal(lifted.status, 200);
    const ok = await client.callTool({ name: 'memory.add_observations', arguments: note('after-stop') });
    assert.notEqual(ok.isError, true, text(ok));
    assert.match(stored(), /after-stop/);
    isProblem(await api('POST', '/v1/resume-all', OPS), 404, 'not_suspended');
  });

  test('suspensions and resumptions are recorded with the operator', async () => {
    const got = (await events('agent')).map((e) =>
      e.type === 'agent' ? `${e.status}:${e.agent}:${e.by}` : '',
    );
    assert.deepEqual(got, [
      'suspended:support-bot:ops@acme.com',
      'resumed:support-bot:ops@acme.com',
      'suspended:*:ops@acme.com',
      'resumed:*:ops@acme.com',
    ]);
  });

  test('bad agent ids are 400; `*` must use the stop endpoints', async () => {
    const star = await api('POST', '/v1/agents/%2A/suspend', OPS, {});
    isProblem(star, 400, 'invalid_request');
    assert.match(String(star.body.detail), /\/v1\/stop/);
    isProblem(await api('POST', '/v1/agents/bad%20agent/suspend', OPS), 400, 'invalid_request');
    isProblem(await api('POST', '/v1/agents/%ZZ/resume', OPS), 400, 'invalid_request');
    isProblem(await api('POST', '/v1/agents/a/suspend', OPS, { reason: 7 }), 400, 'invalid_request');
    isProblem(await api('POST', '/v1/agents/a/suspend', OPS, { by: 'someone-else' }), 400, 'invalid_request');
    isProblem(await api('POST', '/v1/resume-all', OPS, { reason: 'x' }), 400, 'invalid_request');
    assert.deepEqual((await api('GET', '/v1/agents', OPS)).body.suspensions, [], 'nothing was suspended');
  });
});

describe('roles from configuration reach the decision API and JWTs', () => {
  test('a pdp-client key may ask about any subject; an agent key only about itself', async () => {
    const asPdp = await api('POST', '/v1/decide', PDP, { agent: 'support-bot', tool: 'memory.read_graph' });
    assert.equal(asPdp.status, 200);
    assert.equal(asPdp.body.effect, 'allow');
    const asAgent = await api('POST', '/v1/decide', AGENT, {
      agent: 'self-approver',
      tool: 'memory.read_graph',
    });
    isProblem(asAgent, 403, 'forbidden_subject');
    const authzen = await api('POST', '/access/v1/evaluation', PDP, {
      subject: { type: 'agent', id: 'support-bot' },
      action: { name: 'memory.read_graph' },
      resource: { type: 'tool', id: 'memory.read_graph' },
    });
    assert.equal(authzen.status, 200, JSON.stringify(authzen.body));
    assert.equal(authzen.body.decision, true);
  });

  test('JWT roles come from the `roles` claim (array or space-separated); unknown roles grant nothing', async () => {
    const ops = await signJwt({ sub: 'jwt-ops@acme.com', roles: ['operator', 'admin'] });
    const approver = await signJwt({ sub: 'jwt-lead@acme.com', roles: 'viewer approver' });
    const none = await signJwt({ sub: 'jwt-agent', roles: ['root', 'superuser'] });
    const odd = await signJwt({ sub: 'jwt-odd', roles: { operator: true } });
    assert.equal((await api('GET', '/v1/agents', ops)).status, 200);
    isProblem(await api('GET', '/v1/agents', approver), 403, 'forbidden');
    assert.equal((await api('GET', '/v1/approvals', approver)).status, 200);
    isProblem(await api('GET', '/v1/agents', none), 403, 'forbidden');
    isProblem(await api('GET', '/v1/agents', odd), 403, 'forbidden');
    const s = await api('POST', '/v1/agents/helper/suspend', ops);
    assert.equal(s.body.by, 'jwt-ops@acme.com');
    assert.equal((await api('POST', '/v1/agents/helper/resume', ops)).status, 200);
    assert.deepEqual(rolesFromClaim(['pdp-client', 'x', 'approver']), ['approver', 'pdp-client']);
    assert.deepEqual(rolesFromClaim('operator'), ['operator']);
    assert.deepEqual(rolesFromClaim(7), []);
  });
});

describe('bad input', () => {
  test('401 without or with a wrong credential, recorded as an auth event', async () => {
    const before = (await events('auth')).length;
    const none = await api('GET', '/v1/approvals', undefined, undefined, { 'x-request-id': 'r-401' });
    isProblem(none, 401, 'unauthenticated');
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.equal(none.headers.get('x-request-id'), 'r-401');
    isProblem(await api('POST', '/v1/stop', 'exl_wrong', {}), 401, 'unauthenticated');
    const recorded = (await events('auth')).slice(before);
    assert.deepEqual(
      recorded.map((e) => e.type === 'auth' && `${e.point}:${e.reason}`),
      ['http:missing bearer token', 'http:invalid api key'],
    );
    assert.equal((await api('GET', '/v1/agents', OPS)).body.stopped, false, 'the 401 stopped nothing');
  });

  test('403 for a missing role is recorded as an auth event', async () => {
    const before = (await events('auth')).length;
    await api('POST', '/v1/stop', AGENT, {});
    const recorded = (await events('auth')).slice(before);
    assert.equal(recorded.length, 1);
    assert.match(
      recorded[0]?.type === 'auth' ? recorded[0].reason : '',
      /`support-bot` lacks the `operator` role/,
    );
  });

  test('malformed bodies: bad JSON, not an object, prototype keys, wrong type, wrong media type', async () => {
    const id = await askVia('support-bot', 'memory.delete_observations', {
      deletions: [],
      probe: 'bad-input',
    });
    const p = `/v1/approvals/${id}/approve`;
    isProblem(await api('POST', p, LEAD, '{"note":'), 400, 'invalid_json');
    isProblem(await api('POST', p, LEAD, '[1]'), 400, 'invalid_request');
    isProblem(await api('POST', p, LEAD, '{"__proto__":{"approver":"x"}}'), 400, 'invalid_request');
    isProblem(await api('POST', p, LEAD, { note: 5 }), 400, 'invalid_request');
    isProblem(await api('POST', p, LEAD, { note: 'x'.repeat(2001) }), 400, 'invalid_request');
    isProblem(await api('POST', p, LEAD, { extra: 1 }), 400, 'invalid_request');
    isProblem(
      await api('POST', p, LEAD, 'note=hi', { 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
    );
    isProblem(await api('POST', p, LEAD, Buffer.from([0x7b, 0xff, 0x7d])), 400, 'invalid_encoding');
    assert.equal(
      (await api('GET', `/v1/approvals/${id}`, LEAD)).body.status,
      'pending',
      'nothing was decided',
    );
  });

  test('413 for an oversized body', async () => {
    const r = await api('POST', '/v1/stop', OPS, { reason: 'x'.repeat(70_000) });
    isProblem(r, 413, 'payload_too_large');
    assert.equal((await api('GET', '/v1/agents', OPS)).body.stopped, false);
  });

  test('405 for the wrong method, with Allow', async () => {
    const r = await api('GET', '/v1/stop', OPS);
    isProblem(r, 405, 'method_not_allowed');
    assert.equal(r.headers.get('allow'), 'POST');
    const d = await api('DELETE', '/v1/approvals/apr_00000000000000000000', LEAD);
    isProblem(d, 405, 'method_not_allowed');
    assert.equal(d.headers.get('allow'), 'GET');
    isProblem(await api('POST', '/v1/agents', OPS, {}), 405, 'method_not_allowed');
  });

  test('unknown paths under the API are 404; bad list queries are 400', async () => {
    isProblem(await api('GET', '/v1/approvals/x/y/z', LEAD), 404, 'not_found');
    isProblem(await api('POST', '/v1/agents/a/pause', OPS), 404, 'not_found');
    isProblem(await api('GET', '/v1/approvals?status=maybe', LEAD), 400, 'invalid_request');
    isProblem(await api('GET', '/v1/approvals?owner=me', LEAD), 400, 'invalid_request');
    isProblem(await api('GET', '/v1/approvals?limit=0', LEAD), 400, 'invalid_request');
    isProblem(await api('GET', '/v1/approvals?status=pending&status=used', LEAD), 400, 'invalid_request');
    const limited = await api('GET', '/v1/approvals?limit=2', LEAD);
    assert.equal((limited.body.approvals as unknown[]).length, 2);
  });
});

describe('failures answer without changing or allowing anything they cannot vouch for', () => {
  test('an unrecordable change is 500 record_failed; an unreachable store is 503', async () => {
    const d = mkdtempSync(join(tmpdir(), 'execlayer-admin-faults-'));
    const audit = await openAuditLog(`sqlite:${join(d, 'audit.db')}`);
    const approvals = sqliteApprovalStore(join(d, 'state.db'), { recorder: audit });
    const state = new SqliteAgentStateStore(join(d, 'state.db'), { recorder: audit });
    const key = newApiKey();
    const handle = createAdminApiHandler({
      approvals,
      state,
      recorder: audit,
      authenticate: createAuthenticator({
        apiKeys: [{ sha256: hashApiKey(key), agent: 'lead', roles: ['approver', 'operator'] }],
      }),
    });
    const server = createServer((req, res) => {
      void handle(req, res).then((done) => {
        if (!done) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const at = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const a = await approvals.request(
        {
          agent: 'support-bot',
          tool: 'mail.send',
          argsDigest: 'a'.repeat(64),
          policy: 'p1',
          rule: 'external-mail',
          reason: 'external recipient',
          args: {},
          ttlMs: 60_000,
          uses: 1,
        },
        Date.now(),
      );
      await audit.close();
      const granted = await api('POST', `/v1/approvals/${a.id}/approve`, key, {}, {}, at);
      isProblem(granted, 500, 'record_failed');
      const used = await approvals.consumeGrant(
        { agent: 'support-bot', tool: 'mail.send', argsDigest: 'a'.repeat(64), policy: 'p1' },
        Date.now(),
      );
      assert.equal(used, undefined, 'a grant whose use cannot be recorded is not usable');
      const suspended = await api('POST', '/v1/agents/support-bot/suspend', key, { reason: 'x' }, {}, at);
      isProblem(suspended, 500, 'record_failed');
      assert.match(String(suspended.body.detail), /the change is in effect/);
      assert.equal((await state.isSuspended('support-bot')).suspended, true);

      await state.close();
      isProblem(await api('POST', '/v1/stop', key, {}, {}, at), 503, 'store_unavailable');
      isProblem(await api('GET', '/v1/agents', key, undefined, {}, at), 503, 'store_unavailable');
      assert.equal(
        (await state.isSuspended('anyone')).suspended,
        true,
        'an unreadable stop switch is pressed',
      );
      await approvals.close();
      isProblem(await api('GET', '/v1/approvals', key, undefined, {}, at), 503, 'store_unavailable');
      const other = await api('GET', '/v1/decide', key, undefined, {}, at);
      assert.deepEqual([other.status, other.body], [404, {}], 'paths it does not own are left to others');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('an authenticator that throws authenticates nobody', async () => {
    const handle = createAdminApiHandler({
      approvals: running.opened.approvals,
      state: running.opened.state,
      recorder: running.opened.layer.recorder,
      authenticate: async () => {
        throw new Error('identity provider down');
      },
    });
    const server = createServer((req, res) => void handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const r = await api('POST', '/v1/stop', OPS, {}, {}, at);
      isProblem(r, 401, 'unauthenticated');
      assert.equal((await api('GET', '/v1/agents', OPS)).body.stopped, false);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('the configuration refuses unknown roles, with the place', () => {
    try {
      parseConfig(
        `policy: ./p.yaml\nauth:\n  apiKeys:\n    - { sha256: ${'a'.repeat(64)}, agent: x, roles: [root] }\n`,
        '/srv/execlayer.yaml',
      );
      assert.fail('expected a ConfigError');
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.problems[0]?.line, 4);
      assert.equal(e.problems[0]?.path, '/auth/apiKeys/0/roles/0');
    }
    const ok = parseConfig(
      `policy: ./p.yaml\nauth:\n  apiKeys:\n    - { sha256: ${'a'.repeat(64)}, agent: x, roles: [operator] }\n  jwt: { jwks: ./k.json, issuer: i, audience: a }\n`,
      '/srv/execlayer.yaml',
    );
    assert.deepEqual(ok.auth.apiKeys[0]?.roles, ['operator']);
    assert.equal(ok.auth.jwt?.rolesClaim, 'roles');
  });
});

describe('the admin role', () => {
  test('an admin JWT holds both operator API roles', async () => {
    const admin = await signJwt({ sub: 'jwt-admin@acme.com', roles: ['admin'] });
    assert.equal((await api('GET', '/v1/agents', admin)).status, 200);
    assert.equal((await api('GET', '/v1/approvals', admin)).status, 200);
    const viewer = await signJwt({ sub: 'jwt-viewer@acme.com', roles: ['viewer'] });
    isProblem(await api('GET', '/v1/approvals', viewer), 403, 'forbidden');
  });
});

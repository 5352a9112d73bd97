/**
 * schema/decision-api.openapi.json against the running decision API: it documents exactly the paths the
 * server answers, the server serves it at /openapi.json, and every answer of a set of real exchanges
 * (decisions, batches, outcomes and each kind of error) fits the schema the document gives for that path,
 * method, status and content type — as does every request the server accepted.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import {
  DECIDE_RESPONSE_MEMBERS,
  DECISION_CODES,
  EFFECTS,
  MODES,
} from '../src/enforce/http/decide-response.js';
import { DECISION_API_PATHS } from '../src/enforce/http/handler.js';
import { pointerJoin } from '../src/enforce/http/problem.js';
import { REPORT_POLICY, type RunningApi, startApi } from './http-fixtures.js';

const spec = JSON.parse(
  readFileSync(new URL('../schema/decision-api.openapi.json', import.meta.url), 'utf8'),
) as {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, JsonSchema> };
};

interface JsonSchema {
  type?: string | string[];
  required?: string[];
  additionalProperties?: boolean;
  properties?: Record<string, JsonSchema>;
  enum?: unknown[];
}

// The whole document is one schema resource, so `#/components/...` references resolve inside it.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema({ ...spec, $id: 'openapi' });
/** The JSON pointer (RFC 6901) of a location in the document, e.g. `/paths/~1v1~1decide/post`. */
const pointer = (...tokens: string[]) => tokens.reduce(pointerJoin, '');
const validators = new Map<string, ValidateFunction>();
function validator(ref: string): ValidateFunction {
  let v = validators.get(ref);
  if (v === undefined) {
    v = ajv.compile({ $ref: `openapi#${ref}` });
    validators.set(ref, v);
  }
  return v;
}

interface Exchange {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  status: number;
}

test('the DecideResponse schema describes exactly the DecideResponse type', () => {
  const schema = spec.components.schemas.DecideResponse;
  assert.ok(schema?.properties, 'components.schemas.DecideResponse is missing');
  const members = Object.entries(DECIDE_RESPONSE_MEMBERS);
  assert.deepEqual(Object.keys(schema.properties).sort(), members.map(([k]) => k).sort(), 'members');
  const required = members.filter(([, r]) => r === 'required').map(([k]) => k);
  assert.deepEqual([...(schema.required ?? [])].sort(), required.sort(), 'required members');
  assert.equal(schema.additionalProperties, false, 'a member outside the type is refused');
  const p = schema.properties;
  assert.deepEqual(p.effect?.enum, [...EFFECTS]);
  assert.deepEqual(p.wouldBe?.enum, [...EFFECTS]);
  assert.deepEqual(p.mode?.enum, [...MODES]);
  assert.deepEqual(p.code?.enum, [...DECISION_CODES]);
});

describe('the OpenAPI description of the decision API', () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(REPORT_POLICY, { 'k-report': { agent: 'report-bot' } }, { maxBodyBytes: 4096 });
  });
  after(async () => {
    await api?.close();
  });

  test('documents exactly the paths the server answers, and the server serves it', async () => {
    assert.equal(spec.openapi, '3.1.0');
    assert.deepEqual(Object.keys(spec.paths).sort(), [...DECISION_API_PATHS].sort());
    const r = await fetch(`${api.url}/openapi.json`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), spec);
  });

  test('every answer of real exchanges fits the schema documented for it', async () => {
    const auth = { authorization: 'Bearer k-report', 'content-type': 'application/json' };
    const subject = { type: 'agent', id: 'report-bot' };
    const allowed = (await (
      await fetch(`${api.url}/v1/decide`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ tool: 'reports.read' }),
      })
    ).json()) as { id: string; effect: string };
    assert.equal(allowed.effect, 'allow');

    const exchanges: Exchange[] = [
      {
        method: 'POST',
        path: '/access/v1/evaluation',
        body: { subject, action: { name: 'reports.read' }, resource: { type: 'report', id: 'q3' } },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluation',
        headers: { prefer: 'reasons' },
        body: {
          subject,
          action: { name: 'reports.export' },
          resource: { type: 'report', id: 'q3', properties: { rows: 1000 } },
        },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluation',
        body: { subject, action: { name: 'reports.share' }, resource: { type: 'report', id: 'q3' } },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluations',
        body: {
          subject,
          evaluations: [
            { action: { name: 'reports.read' }, resource: { type: 'report', id: 'q3' } },
            { action: { name: 'reports.delete' }, resource: { type: 'report', id: 'q3' } },
          ],
          options: { evaluations_semantic: 'deny_on_first_deny' },
        },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluations',
        // The second item has no resource anywhere: it is answered false with its error in place.
        body: {
          subject,
          action: { name: 'reports.read' },
          evaluations: [{ resource: { type: 'report', id: 'q3' } }, {}],
        },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluations',
        body: {
          subject,
          action: { name: 'reports.read' },
          resource: { type: 'report', id: 'q3' },
          evaluations: [],
        },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/search/action',
        body: { subject, resource: { type: 'report', id: 'q3' }, page: { limit: 1 } },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/search/resource',
        body: { subject, action: { name: 'reports.export' }, resource: { type: 'report' } },
        status: 200,
      },
      {
        method: 'POST',
        path: '/access/v1/search/subject',
        body: {
          subject: { type: 'agent' },
          action: { name: 'reports.read' },
          resource: { type: 'report', id: 'q3' },
        },
        status: 403,
      },
      {
        method: 'POST',
        path: '/access/v1/search/action',
        body: { subject, resource: { type: 'report', id: 'q3' }, page: { token: 'forged.token' } },
        status: 400,
      },
      {
        method: 'POST',
        path: '/access/v1/evaluation',
        headers: { 'content-type': 'text/plain' },
        raw: '{}',
        status: 400,
      },
      { method: 'GET', path: '/.well-known/authzen-configuration', status: 200 },
      {
        method: 'POST',
        path: '/v1/decide',
        body: { tool: 'reports.export', args: { rows: 5 } },
        status: 200,
      },
      {
        method: 'POST',
        path: '/v1/decide/batch',
        body: { actions: [{ tool: 'reports.read' }, { tool: 'reports.share', session: 's1' }] },
        status: 200,
      },
      {
        method: 'POST',
        path: '/v1/outcome',
        body: { decision: allowed.id, ok: true, durationMs: 3.5 },
        status: 200,
      },
      // Errors, each with the status the document gives for it.
      { method: 'POST', path: '/v1/decide', raw: '{"tool": ', status: 400 },
      { method: 'POST', path: '/v1/decide', body: { tool: 'reports.read', extra: 1 }, status: 400 },
      {
        method: 'POST',
        path: '/v1/decide',
        headers: { authorization: 'Bearer wrong' },
        body: { tool: 'reports.read' },
        status: 401,
      },
      {
        method: 'POST',
        path: '/v1/decide',
        body: { agent: 'someone-else', tool: 'reports.read' },
        status: 403,
      },
      {
        method: 'POST',
        path: '/v1/outcome',
        body: { decision: allowed.id, ok: true, durationMs: 1 },
        status: 404,
      },
      { method: 'GET', path: '/v1/decide', status: 405 },
      { method: 'POST', path: '/v1/decide', body: { tool: 'x'.repeat(5000) }, status: 413 },
      {
        method: 'POST',
        path: '/v1/decide',
        headers: { 'content-type': 'text/plain' },
        raw: 'tool=reports.read',
        status: 415,
      },
    ];

    for (const x of exchanges) {
      const what = `${x.method} ${x.path} → ${x.status}`;
      const init: RequestInit = { method: x.method, headers: { ...auth, ...x.headers } };
      if (x.method === 'POST') init.body = x.raw ?? JSON.stringify(x.body);
      const r = await fetch(`${api.url}${x.path}`, init);
      assert.equal(r.status, x.status, what);
      const op = pointer('paths', x.path, x.method.toLowerCase());
      const type = (r.headers.get('content-type') ?? '').split(';')[0] as string;
      // A method the path does not take is not an operation of the document: its 405 is a Problem.
      const ref =
        x.status === 405 && spec.paths[x.path]?.[x.method.toLowerCase()] === undefined
          ? pointer('components', 'schemas', 'Problem')
          : `${op}${pointer('responses', String(x.status), 'content', type, 'schema')}`;
      const documented = ajv.getSchema(`openapi#${ref}`);
      assert.ok(documented, `${what}: the document has no ${type} response schema for it`);
      const body = (await r.json()) as unknown;
      const check = validator(ref);
      assert.ok(check(body), `${what}: ${JSON.stringify(body)} ${ajv.errorsText(check.errors)}`);
      if (x.status === 200 && x.body !== undefined) {
        const req = validator(`${op}${pointer('requestBody', 'content', 'application/json', 'schema')}`);
        assert.ok(req(x.body), `${what}: request ${ajv.errorsText(req.errors)}`);
      }
    }
  });
});

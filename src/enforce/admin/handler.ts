/**
 * The operator API over node:http: approvers list and decide pending approvals, operators suspend and
 * resume agents, pull the emergency stop and force a policy reload. Every request is authenticated, and the acting identity is
 * the credential's agent id — never a field of the request. Errors are RFC 9457 problem details.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ApprovalError,
  type ApprovalFilter,
  type ApprovalStatus,
  type ApprovalStore,
} from '../../approvals/types.js';
import type { ReloadOutcome } from '../../runtime/exec-layer.js';
import { AgentStateError, type AgentStateStore, ALL_AGENTS } from '../../state/agent-state.js';
import type { Recorder } from '../../types.js';
import { isJsonContentType, readJsonBody } from '../http/body.js';
import { type Authenticate, type AuthResult, writeProblem } from '../http/handler.js';
import { type Problem, pointerJoin, problem } from '../http/problem.js';

/** The role each route needs. */
export type AdminRole = 'approver' | 'operator';

export interface AdminApiOptions {
  /** The approval store the runtime asks (open it with the audit log as its `recorder`). */
  approvals: ApprovalStore;
  /** The stop switch the runtime reads (open it with the audit log as its `recorder`). */
  state: AgentStateStore;
  /** Where refusals for a missing role are recorded as `auth` events (fail-soft). */
  recorder: Recorder;
  /** Identifies the caller; it records its own 401s (`createAuthenticator(auth, { recorder })`). */
  authenticate: Authenticate;
  /** Where the gateway's upstream connections are, for `GET /v1/upstreams`; without it the route is absent. */
  upstreams?: () => unknown[];
  /**
   * Forces a policy reload on behalf of the authenticated caller (`layer.reload({ trigger: 'api', by })`).
   * Without it, `POST /v1/policy/reload` is 404.
   */
  reload?: (by: string) => Promise<ReloadOutcome>;
  /** Largest accepted request body in bytes; default 64 KiB. Larger bodies get 413. */
  maxBodyBytes?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** Default cap on operator API request bodies: 64 KiB. */
export const DEFAULT_ADMIN_MAX_BODY_BYTES = 65_536;

const MAX_NOTE = 2000;
const MAX_REASON = 2000;
const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
/** The shape of an approval id (`apr_` + hex in every store), loosely: anything else is a bad request. */
const APPROVAL_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The agent id syntax credentials use (see src/enforce/auth.ts). */
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/;
const STATUSES: ReadonlySet<string> = new Set<ApprovalStatus>([
  'pending',
  'granted',
  'denied',
  'expired',
  'used',
]);

type Route =
  | { kind: 'approvals_list' }
  | { kind: 'approval_get'; id: string }
  | { kind: 'approval_decide'; id: string; approve: boolean }
  | { kind: 'agents_list' }
  | { kind: 'agent_suspend'; agent: string }
  | { kind: 'agent_resume'; agent: string }
  | { kind: 'stop' }
  | { kind: 'resume_all' }
  | { kind: 'upstreams' }
  | { kind: 'policy_reload' };

interface Matched {
  route: Route;
  method: 'GET' | 'POST';
  role: AdminRole;
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
type Body = { [k: string]: unknown };

/**
 * Creates the handler `serve` mounts next to the decision API. It resolves true when it handled the request
 * (`/v1/approvals…`, `/v1/agents…`, `/v1/stop`, `/v1/resume-all`, `/v1/policy/reload`, any method) and
 * false for any other path.
 *
 * | route                                         | role     |
 * | --------------------------------------------- | -------- |
 * | `GET /v1/approvals?status=&agent=&limit=`     | approver |
 * | `GET /v1/approvals/{id}`                      | approver |
 * | `POST /v1/approvals/{id}/approve` `{note?}`   | approver |
 * | `POST /v1/approvals/{id}/deny` `{note?}`      | approver |
 * | `GET /v1/agents`                              | operator |
 * | `POST /v1/agents/{agent}/suspend` `{reason?}` | operator |
 * | `POST /v1/agents/{agent}/resume`              | operator |
 * | `POST /v1/stop` `{reason?}`                   | operator |
 * | `POST /v1/resume-all`                         | operator |
 * | `GET /v1/upstreams` (with `upstreams`)        | operator |
 * | `POST /v1/policy/reload`                      | operator |
 */
export function createAdminApiHandler(
  opts: AdminApiOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_ADMIN_MAX_BODY_BYTES;
  const now = opts.now ?? Date.now;
  const { approvals, state } = opts;

  async function recordRefusal(reason: string, req: IncomingMessage): Promise<void> {
    try {
      const remote = req.socket.remoteAddress;
      await opts.recorder.record({
        type: 'auth',
        status: 'rejected',
        point: 'http',
        reason,
        ...(remote !== undefined ? { remote } : {}),
      });
    } catch {
      // The request is refused either way; a recorder failure must not turn a 403 into something else.
    }
  }

  return async function handleAdminApi(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const matched = match(path);
    if (matched === undefined) return false;
    if (matched !== 'not_found' && matched.route.kind === 'upstreams' && !opts.upstreams) return false;
    const rid = requestIdOf(req);
    try {
      if (matched === 'not_found') {
        writeProblem(res, problem(404, 'not_found', `no such endpoint \`${clip(path)}\``), rid);
        return true;
      }
      if (req.method !== matched.method) {
        writeProblem(
          res,
          problem(405, 'method_not_allowed', `use ${matched.method} for this endpoint`),
          rid,
          {
            allow: matched.method,
          },
        );
        return true;
      }

      let who: AuthResult;
      try {
        who = await opts.authenticate(req);
      } catch {
        // INVARIANT: fail closed — an authenticator that throws authenticates nobody.
        who = { ok: false, status: 401, reason: 'authentication failed' };
      }
      if (!who.ok) {
        writeProblem(res, problem(401, 'unauthenticated', who.reason), rid, { 'www-authenticate': 'Bearer' });
        return true;
      }
      // INVARIANT: identity from the channel — the actor is the credential's agent id, never the body.
      const actor = who.agent;
      // `admin` holds every operator API role.
      if (!(who.roles?.some((r) => r === matched.role || r === 'admin') ?? false)) {
        const reason = `\`${actor}\` lacks the \`${matched.role}\` role needed for ${matched.method} ${clip(path)}`;
        await recordRefusal(reason, req);
        writeProblem(res, problem(403, 'forbidden', reason), rid);
        return true;
      }

      const route = matched.route;
      const bad = checkPathParams(route);
      if (bad !== undefined) return reject(res, bad, rid);

      if (matched.method === 'GET') {
        if (route.kind === 'approvals_list') {
          const filter = parseListQuery(q === -1 ? '' : url.slice(q + 1));
          if (!filter.ok) return reject(res, filter.problem, rid);
          const rows = await approvals.list(filter.value, now());
          writeJson(res, 200, { approvals: rows as unknown as Json[] }, rid);
        } else if (route.kind === 'approval_get') {
          const a = await approvals.get(route.id, now());
          if (a === undefined)
            return reject(res, problem(404, 'not_found', `no approval \`${route.id}\``), rid);
          writeJson(res, 200, a as unknown as Json, rid);
        } else if (route.kind === 'upstreams') {
          writeJson(res, 200, { upstreams: (opts.upstreams?.() ?? []) as Json[] }, rid);
        } else {
          const rows = await state.list();
          writeJson(
            res,
            200,
            {
              suspensions: rows as unknown as Json[],
              stopped: rows.some((s) => s.agent === ALL_AGENTS),
            },
            rid,
          );
        }
        return true;
      }

      const body = await readBody(req, maxBody);
      if (!body.ok) {
        writeProblem(res, body.problem, rid, body.closeConnection ? { connection: 'close' } : undefined);
        return true;
      }
      switch (route.kind) {
        case 'approval_decide': {
          const fields = pickFields(body.value, { note: MAX_NOTE }, 'approver');
          if (!fields.ok) return reject(res, fields.problem, rid);
          const note = fields.value.note;
          const a = await approvals.decide(
            route.id,
            { approve: route.approve, approver: actor, ...(note !== undefined ? { note } : {}) },
            now(),
          );
          writeJson(res, 200, a as unknown as Json, rid);
          return true;
        }
        case 'agent_suspend':
        case 'stop': {
          const fields = pickFields(body.value, { reason: MAX_REASON }, 'operator');
          if (!fields.ok) return reject(res, fields.problem, rid);
          const agent = route.kind === 'stop' ? ALL_AGENTS : route.agent;
          const reason = fields.value.reason;
          await state.suspend(agent, actor, reason);
          const out: Json = { agent, suspended: true, by: actor };
          if (reason !== undefined && reason !== '') out.reason = reason;
          writeJson(res, 200, out, rid);
          return true;
        }
        case 'agent_resume':
        case 'resume_all': {
          const fields = pickFields(body.value, {}, 'operator');
          if (!fields.ok) return reject(res, fields.problem, rid);
          const agent = route.kind === 'resume_all' ? ALL_AGENTS : route.agent;
          const lifted = await state.resume(agent, actor);
          if (!lifted) {
            const detail =
              agent === ALL_AGENTS ? 'no emergency stop is set' : `agent \`${agent}\` is not suspended`;
            return reject(res, problem(404, 'not_suspended', detail), rid);
          }
          writeJson(res, 200, { agent, resumed: true, by: actor }, rid);
          return true;
        }
        case 'policy_reload': {
          const fields = pickFields(body.value, {}, 'operator');
          if (!fields.ok) return reject(res, fields.problem, rid);
          if (!opts.reload) {
            return reject(res, problem(404, 'not_found', 'this server has no policy file to reload'), rid);
          }
          const outcome = await opts.reload(actor);
          if (outcome.status === 'rejected') {
            const unrecorded = outcome.recorded ? '' : ' (this rejection is missing from the audit trail)';
            const detail = `the candidate policy was not loaded, \`${outcome.policy}\` stays in force${unrecorded}: ${clip(outcome.problems.join('; '), MAX_REASON)}`;
            return reject(res, problem(422, 'policy_rejected', detail), rid);
          }
          writeJson(res, 200, outcome as unknown as Json, rid);
          return true;
        }
        default:
          return reject(res, problem(404, 'not_found', 'no such endpoint'), rid);
      }
    } catch (err) {
      const p = problemOf(err);
      if (!res.headersSent) {
        writeProblem(res, p, rid, p.status === 429 ? { 'retry-after': '60' } : undefined);
      } else {
        res.destroy();
      }
      return true;
    }
  };
}

/** Maps a store refusal to its HTTP problem; anything unexpected is a 500 without internals. */
function problemOf(err: unknown): Problem {
  if (err instanceof ApprovalError) {
    switch (err.code) {
      case 'not_found':
        return problem(404, 'not_found', err.message);
      case 'expired':
        return problem(409, 'expired', err.message);
      case 'already_decided':
        return problem(409, 'already_decided', err.message);
      case 'not_allowed':
        return problem(403, 'not_allowed', err.message);
      case 'rate_limited':
        return problem(429, 'rate_limited', err.message);
      case 'invalid_request':
        return problem(400, 'invalid_request', err.message);
      case 'record_failed':
        return problem(500, 'record_failed', err.message);
      case 'store_error':
        return problem(503, 'store_unavailable', err.message);
    }
  }
  if (err instanceof AgentStateError) {
    switch (err.code) {
      case 'invalid_agent':
        return problem(400, 'invalid_request', err.message);
      case 'record_failed':
        // The change took effect; the operator must know it is missing from the audit trail.
        return problem(500, 'record_failed', `${err.message}; the change is in effect`);
      case 'store_error':
        return problem(503, 'store_unavailable', err.message);
    }
  }
  return problem(500, 'internal_error', 'the request could not be processed');
}

/** Routes a path under the operator API's prefixes; `undefined` for paths it does not own. */
function match(path: string): Matched | 'not_found' | undefined {
  if (path === '/v1/stop') return { route: { kind: 'stop' }, method: 'POST', role: 'operator' };
  if (path === '/v1/resume-all') return { route: { kind: 'resume_all' }, method: 'POST', role: 'operator' };
  if (path === '/v1/upstreams') return { route: { kind: 'upstreams' }, method: 'GET', role: 'operator' };
  if (path === '/v1/policy/reload')
    return { route: { kind: 'policy_reload' }, method: 'POST', role: 'operator' };
  const segs = path.split('/');
  // segs[0] is '' (the leading slash), segs[1] 'v1'.
  if (segs[1] !== 'v1') return undefined;
  if (segs[2] === 'approvals') {
    if (segs.length === 3) return { route: { kind: 'approvals_list' }, method: 'GET', role: 'approver' };
    const id = segs[3] ?? '';
    if (segs.length === 4) return { route: { kind: 'approval_get', id }, method: 'GET', role: 'approver' };
    if (segs.length === 5 && (segs[4] === 'approve' || segs[4] === 'deny')) {
      return {
        route: { kind: 'approval_decide', id, approve: segs[4] === 'approve' },
        method: 'POST',
        role: 'approver',
      };
    }
    return 'not_found';
  }
  if (segs[2] === 'agents') {
    if (segs.length === 3) return { route: { kind: 'agents_list' }, method: 'GET', role: 'operator' };
    const agent = segs[3] ?? '';
    if (segs.length === 5 && segs[4] === 'suspend')
      return { route: { kind: 'agent_suspend', agent }, method: 'POST', role: 'operator' };
    if (segs.length === 5 && segs[4] === 'resume')
      return { route: { kind: 'agent_resume', agent }, method: 'POST', role: 'operator' };
    return 'not_found';
  }
  return undefined;
}

/** Decodes and checks the id or agent in the path, in place; a problem when it is not one. */
function checkPathParams(route: Route): Problem | undefined {
  if (route.kind === 'approval_get' || route.kind === 'approval_decide') {
    const id = decode(route.id);
    if (id === undefined || !APPROVAL_ID.test(id)) {
      return problem(400, 'invalid_request', `\`${clip(route.id)}\` is not an approval id`);
    }
    route.id = id;
  } else if (route.kind === 'agent_suspend' || route.kind === 'agent_resume') {
    const agent = decode(route.agent);
    if (agent === ALL_AGENTS) {
      return problem(
        400,
        'invalid_request',
        '`*` names every agent: use POST /v1/stop and POST /v1/resume-all for the emergency stop',
      );
    }
    if (agent === undefined || !AGENT_ID.test(agent)) {
      return problem(
        400,
        'invalid_request',
        `\`${clip(route.agent)}\` is not an agent id (letters, digits and \`_.@:-\`, at most 128)`,
      );
    }
    route.agent = agent;
  }
  return undefined;
}

function parseListQuery(
  query: string,
): { ok: true; value: ApprovalFilter } | { ok: false; problem: Problem } {
  const bad = (detail: string) => ({ ok: false as const, problem: problem(400, 'invalid_request', detail) });
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(query);
  } catch {
    return bad('the query string could not be read');
  }
  const filter: ApprovalFilter = {};
  const seen = new Set<string>();
  for (const [k, v] of params) {
    if (seen.has(k)) return bad(`query parameter \`${clip(k)}\` is given more than once`);
    seen.add(k);
    if (k === 'status') {
      if (!STATUSES.has(v)) {
        return bad(`\`status\` must be one of pending, granted, denied, expired, used; got \`${clip(v)}\``);
      }
      filter.status = v as ApprovalStatus;
    } else if (k === 'agent') {
      if (v === '' || v.length > 256 || hasControl(v)) {
        return bad('`agent` must be a non-empty id of at most 256 characters');
      }
      filter.agent = v;
    } else if (k === 'limit') {
      const n = /^[0-9]{1,4}$/.test(v) ? Number(v) : Number.NaN;
      if (!(n >= 1 && n <= 1000))
        return bad(`\`limit\` must be an integer from 1 to 1000; got \`${clip(v)}\``);
      filter.limit = n;
    } else {
      return bad(`unknown query parameter \`${clip(k)}\`: use status, agent or limit`);
    }
  }
  return { ok: true, value: filter };
}

/**
 * Reads an optional JSON object body: no body at all counts as `{}`; a body must be `application/json`
 * and passes the decision API's checks (size, UTF-8, one parse, no prototype keys, bounded depth).
 */
async function readBody(
  req: IncomingMessage,
  maxBytes: number,
): Promise<{ ok: true; value: Body } | { ok: false; problem: Problem; closeConnection?: boolean }> {
  const length = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (length === undefined || length === '0')) return { ok: true, value: {} };
  if (!isJsonContentType(req.headers['content-type'])) {
    return {
      ok: false,
      problem: problem(415, 'unsupported_media_type', 'send the request body as `application/json` (UTF-8)'),
    };
  }
  const r = await readJsonBody(req, maxBytes);
  if (!r.ok) return r.closeConnection ? { ok: false, problem: r.problem, closeConnection: true } : r;
  return { ok: true, value: r.value as Body };
}

/**
 * Takes the optional string members named in `allowed` (with their length caps) and refuses any other
 * member. Naming the actor in the body is refused with a reason, not ignored.
 */
function pickFields<K extends string>(
  body: Body,
  allowed: Record<K, number>,
  actorWord: 'approver' | 'operator',
): { ok: true; value: Partial<Record<K, string>> } | { ok: false; problem: Problem } {
  const out: Partial<Record<K, string>> = {};
  const names = Object.keys(allowed) as K[];
  for (const key of Object.keys(body)) {
    const pointer = pointerJoin('', key);
    if (!(names as string[]).includes(key)) {
      const actorField = ['approver', 'operator', 'by', 'agent', 'actor', 'user'].includes(key);
      const detail = actorField
        ? `the ${actorWord} is the authenticated caller and cannot be set in the request (\`${clip(key)}\`)`
        : `unknown member \`${clip(key)}\`${names.length > 0 ? `: send ${names.join(', ')}` : ': send no members'}`;
      return { ok: false, problem: problem(400, 'invalid_request', detail, pointer) };
    }
    const v = body[key];
    const max = allowed[key as K];
    if (typeof v !== 'string' || v.length > max) {
      return {
        ok: false,
        problem: problem(
          400,
          'invalid_request',
          `\`${key}\` must be a string of at most ${max} characters`,
          pointer,
        ),
      };
    }
    out[key as K] = v;
  }
  return { ok: true, value: out };
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** User input quoted in a message, bounded so a long path cannot bloat the response or the audit log. */
function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function reject(res: ServerResponse, p: Problem, rid: string): true {
  writeProblem(res, p, rid);
  return true;
}

function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

function writeJson(res: ServerResponse, status: number, value: Json, rid: string): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': rid,
    'cache-control': 'no-store',
  });
  res.end(body);
}

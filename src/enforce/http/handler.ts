/**
 * The decision API over node:http: AuthZEN 1.0 (`/access/v1/evaluation`, `/access/v1/evaluations`,
 * `/.well-known/authzen-configuration`), the native endpoints (`/v1/decide`, `/v1/decide/batch`,
 * `/v1/outcome`) and their OpenAPI 3.1 description (`/openapi.json`, schema/decision-api.openapi.json).
 * Hand-written routing, one body parse per request, responses written with JSON.stringify.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parseAction } from '../../engine/action.js';
import { denyDecision } from '../../engine/deny.js';
import { messageOf } from '../../errors.js';
import type { ExecLayer } from '../../runtime/exec-layer.js';
import type { Action, Decision, EnforcementPoint, Json } from '../../types.js';
import { checkingIntervalMs, frontDoorLimits, guardServer } from '../front-door.js';
import {
  type BatchItem,
  type EvaluationsSemantic,
  parseEvaluationRequest,
  parseEvaluationsRequest,
} from './authzen.js';
import { isJsonContentType, readJsonBody } from './body.js';
import { type DecideBatchResponse, type OutcomeResponse, toDecideResponse } from './decide-response.js';
import {
  invalidRequest,
  type ParseResult,
  type Problem,
  pointerJoin,
  problem,
  problemBody,
} from './problem.js';
import { PageTokens, parseSearchRequest, runSearch, type SearchKind } from './search.js';

const SEARCH_KINDS = {
  search_subject: 'subject',
  search_resource: 'resource',
  search_action: 'action',
} as const satisfies Record<string, SearchKind>;

/** What an authenticator says about a request. `roles` may carry `pdp-client` (see `DecisionApiOptions`). */
export type AuthResult =
  | { ok: true; agent: string; principal?: string; roles?: readonly string[] }
  | { ok: false; status: 401; reason: string };

/** Authenticates one request from its headers (bearer API key, JWT, ...). */
export type Authenticate = (req: IncomingMessage) => Promise<AuthResult>;

/** The parts of ExecLayer the decision API uses. */
export type DecisionLayer = Pick<
  ExecLayer,
  'authorize' | 'outcome' | 'awaitingOutcome' | 'recorder' | 'policyHash' | 'engine' | 'deliver'
>;

export interface DecisionApiOptions {
  /** Identifies the caller. It records its own rejections (e.g. `createAuthenticator(auth, { recorder })`). */
  authenticate: Authenticate;
  /** Largest accepted request body in bytes; default 1 MiB (1,048,576). Larger bodies get 413. */
  maxBodyBytes?: number;
  /** Most evaluations (or native actions) in one batch; default 1000. Larger batches get 400. */
  maxBatch?: number;
  /**
   * Callers that may ask about any subject (a PEP such as an application backend). Any other caller may
   * only ask about itself (`subject.id` / `agent` equal to its authenticated agent id). A caller whose
   * authentication result carries the role `pdp-client` is treated the same as one listed here.
   */
  pdpClients?: readonly string[];
  /**
   * Public base URL published in the AuthZEN metadata; default `https://<Host header>` on a TLS
   * connection, `http://<Host header>` otherwise.
   */
  publicUrl?: string;
  /**
   * AuthZEN responses carry `context` (reason, code, decision id) only when the client sends
   * `Prefer: reasons` ('on-request', the default, keeps interop responses exactly `{decision}`), or always.
   * `ask` decisions and per-item errors always carry context.
   */
  authzenReasons?: 'on-request' | 'always';
}

/** Default cap on request bodies: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;
/** Default cap on evaluations per batch. */
export const DEFAULT_MAX_BATCH = 1000;

type RouteKind =
  | 'evaluation'
  | 'evaluations'
  | 'search_subject'
  | 'search_resource'
  | 'search_action'
  | 'config'
  | 'openapi'
  | 'decide'
  | 'decide_batch'
  | 'outcome';
const ROUTES: ReadonlyMap<string, { kind: RouteKind; method: 'GET' | 'POST' }> = new Map([
  ['/access/v1/evaluation', { kind: 'evaluation', method: 'POST' }],
  ['/access/v1/evaluations', { kind: 'evaluations', method: 'POST' }],
  ['/access/v1/search/subject', { kind: 'search_subject', method: 'POST' }],
  ['/access/v1/search/resource', { kind: 'search_resource', method: 'POST' }],
  ['/access/v1/search/action', { kind: 'search_action', method: 'POST' }],
  ['/.well-known/authzen-configuration', { kind: 'config', method: 'GET' }],
  ['/openapi.json', { kind: 'openapi', method: 'GET' }],
  ['/v1/decide', { kind: 'decide', method: 'POST' }],
  ['/v1/decide/batch', { kind: 'decide_batch', method: 'POST' }],
  ['/v1/outcome', { kind: 'outcome', method: 'POST' }],
] as const);

/** Every path this handler answers (documented in schema/decision-api.openapi.json). */
export const DECISION_API_PATHS: readonly string[] = [...ROUTES.keys()];

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
const HOST = /^[A-Za-z0-9.\-:[\]]{1,255}$/;
const NATIVE_KEYS: ReadonlySet<string> = new Set([
  'agent',
  'tool',
  'args',
  'session',
  'onBehalfOf',
  'delegation',
  'context',
]);

interface Caller {
  agent: string;
  pdpClient: boolean;
}

type JsonObject = { [key: string]: Json };

/**
 * Creates the request handler `serve` mounts. It resolves true when it handled the request (one of the
 * paths above, any method) and false for any other path, leaving the response untouched.
 */
export function createDecisionApiHandler(
  layer: DecisionLayer,
  opts: DecisionApiOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  const pdpClients = new Set(opts.pdpClients ?? []);
  const alwaysReasons = opts.authzenReasons === 'always';
  const authenticate = opts.authenticate;
  const pageTokens = new PageTokens();

  async function decide(action: Action, point: EnforcementPoint): Promise<Decision> {
    try {
      return await layer.authorize(action, { point });
    } catch (err) {
      // INVARIANT: fail closed — authorize promises never to reject; if it does, the answer is deny.
      return failedDecision(layer.policyHash, err);
    }
  }

  async function recordAuthFailure(
    point: EnforcementPoint,
    reason: string,
    req: IncomingMessage,
  ): Promise<void> {
    try {
      const ev = { type: 'auth' as const, status: 'rejected' as const, point, reason };
      const remote = req.socket.remoteAddress;
      await layer.recorder.record(remote === undefined ? ev : { ...ev, remote });
    } catch {
      // The request is refused either way; a recorder failure must not turn a 401/403 into something else.
    }
  }

  async function forbid(
    res: ServerResponse,
    req: IncomingMessage,
    rid: string,
    point: EnforcementPoint,
    caller: Caller,
    subjectId: string,
    pointer: string,
  ): Promise<true> {
    const reason = `caller \`${caller.agent}\` may not ask about subject \`${subjectId}\``;
    await recordAuthFailure(point, reason, req);
    writeProblem(res, problem(403, 'forbidden_subject', reason, pointer), rid);
    return true;
  }

  return async function handleDecisionApi(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const route = ROUTES.get(q === -1 ? url : url.slice(0, q));
    if (route === undefined) return false;
    const rid = requestIdOf(req);
    try {
      if (req.method !== route.method) {
        writeProblem(res, problem(405, 'method_not_allowed', `use ${route.method} for this endpoint`), rid, {
          allow: route.method,
        });
        return true;
      }
      if (route.kind === 'config') {
        writeJson(res, 200, configBody(opts.publicUrl, req), rid);
        return true;
      }
      if (route.kind === 'openapi') {
        writeJson(res, 200, openApiText(), rid);
        return true;
      }
      const point: EnforcementPoint =
        route.kind === 'decide' || route.kind === 'decide_batch' || route.kind === 'outcome'
          ? 'http'
          : 'authzen';

      let who: AuthResult;
      try {
        who = await authenticate(req);
      } catch {
        // INVARIANT: fail closed — an authenticator that throws authenticates nobody.
        who = { ok: false, status: 401, reason: 'authentication failed' };
      }
      if (!who.ok) {
        // The authenticator records its own rejections (createAuthenticator with a recorder). The body
        // is never read: the connection closes instead.
        writeProblem(res, problem(401, 'unauthenticated', who.reason), rid, {
          'www-authenticate': 'Bearer',
          connection: 'close',
        });
        return true;
      }
      const caller: Caller = {
        agent: who.agent,
        pdpClient: pdpClients.has(who.agent) || (who.roles?.includes('pdp-client') ?? false),
      };

      if (!isJsonContentType(req.headers['content-type'])) {
        // AuthZEN 1.0 §10.1 requires `application/json` and lists 400 as its error for a bad request;
        // the native endpoints answer the HTTP-standard 415.
        const status = point === 'authzen' ? 400 : 415;
        writeProblem(
          res,
          problem(status, 'unsupported_media_type', 'send the request body as `application/json` (UTF-8)'),
          rid,
          { accept: 'application/json' },
        );
        return true;
      }
      const body = await readJsonBody(req, maxBody);
      if (!body.ok) {
        writeProblem(res, body.problem, rid, body.closeConnection ? { connection: 'close' } : undefined);
        return true;
      }
      const json = body.value as JsonObject;

      switch (route.kind) {
        case 'evaluation': {
          const parsed = parseEvaluationRequest(json);
          if (!parsed.ok) return reject(res, parsed.problem, rid);
          const ev = parsed.value;
          if (!mayAsk(caller, ev.subjectId)) {
            return forbid(res, req, rid, point, caller, ev.subjectId, `${ev.subjectPointer}/id`);
          }
          const reasons = alwaysReasons || prefersReasons(req);
          const d = await decide(ev.action, point);
          writeJson(res, 200, authzenResult(d, reasons), rid, reasons ? PREF_APPLIED : undefined);
          return true;
        }
        case 'evaluations': {
          const parsed = parseEvaluationsRequest(json, maxBatch);
          if (!parsed.ok) return reject(res, parsed.problem, rid);
          const reasons = alwaysReasons || prefersReasons(req);
          const req2 = parsed.value;
          if (req2.single) {
            const ev = req2.evaluation;
            if (!mayAsk(caller, ev.subjectId)) {
              return forbid(res, req, rid, point, caller, ev.subjectId, `${ev.subjectPointer}/id`);
            }
            const d = await decide(ev.action, point);
            writeJson(res, 200, authzenResult(d, reasons), rid, reasons ? PREF_APPLIED : undefined);
            return true;
          }
          // A caller that may not ask about a subject named in the batch is refused for the whole
          // request, as for a single evaluation: it is the caller's permission, not an item's error.
          for (const item of req2.items) {
            if (item.ok && !mayAsk(caller, item.value.subjectId)) {
              const ev = item.value;
              return forbid(res, req, rid, point, caller, ev.subjectId, `${ev.subjectPointer}/id`);
            }
          }
          const results = await runBatch(req2.items, req2.semantic, (a) => decide(a, point));
          const out = `{"evaluations":[${results.map((r) => (typeof r === 'string' ? r : authzenResult(r, reasons))).join(',')}]}`;
          writeJson(res, 200, out, rid, reasons ? PREF_APPLIED : undefined);
          return true;
        }
        case 'search_subject':
        case 'search_resource':
        case 'search_action': {
          const kind = SEARCH_KINDS[route.kind];
          const parsed = parseSearchRequest(kind, json, pageTokens);
          if (!parsed.ok) return reject(res, parsed.problem, rid);
          const s = parsed.value;
          // A subject search names other agents: only a PDP client may ask it. The other two are about
          // one subject, which the caller must be allowed to ask about.
          if (s.subjectId === undefined ? !caller.pdpClient : !mayAsk(caller, s.subjectId)) {
            return forbid(res, req, rid, point, caller, s.subjectId ?? '*', '/subject');
          }
          writeJson(res, 200, runSearch(layer.engine, s, pageTokens).body, rid);
          return true;
        }
        case 'decide': {
          const parsed = parseNativeAction(json, '', caller.agent, sessionHeader(req));
          if (!parsed.ok) return reject(res, parsed.problem, rid);
          if (!mayAsk(caller, parsed.value.agent)) {
            return forbid(res, req, rid, point, caller, parsed.value.agent, '/agent');
          }
          const d = await decide(parsed.value, point);
          writeJson(res, 200, JSON.stringify(toDecideResponse(d)), rid);
          return true;
        }
        case 'decide_batch': {
          const keys = Object.keys(json);
          const extra = keys.find((k) => k !== 'actions');
          if (extra !== undefined) {
            return reject(
              res,
              problem(400, 'invalid_request', `unknown member \`${extra}\``, pointerJoin('', extra)),
              rid,
            );
          }
          const list = json.actions;
          if (!Array.isArray(list)) {
            return reject(res, problem(400, 'invalid_request', 'actions must be an array', '/actions'), rid);
          }
          if (list.length > maxBatch) {
            const p = problem(
              400,
              'batch_too_large',
              `actions has ${list.length} items; the limit is ${maxBatch}`,
              '/actions',
            );
            return reject(res, p, rid);
          }
          const actions: Action[] = [];
          for (let i = 0; i < list.length; i++) {
            const parsed = parseNativeAction(list[i], `/actions/${i}`, caller.agent, sessionHeader(req));
            if (!parsed.ok) return reject(res, parsed.problem, rid);
            if (!mayAsk(caller, parsed.value.agent)) {
              return forbid(res, req, rid, point, caller, parsed.value.agent, `/actions/${i}/agent`);
            }
            actions.push(parsed.value);
          }
          const decisions = await Promise.all(actions.map((a) => decide(a, point)));
          const body: DecideBatchResponse = { decisions: decisions.map(toDecideResponse) };
          writeJson(res, 200, JSON.stringify(body), rid);
          return true;
        }
        case 'outcome': {
          const parsed = parseOutcome(json);
          if (!parsed.ok) return reject(res, parsed.problem, rid);
          const { decision, label, result, ...o } = parsed.value;
          // Only decisions this API gave: the outcome of a gateway or in-process call is reported there.
          const pending = layer.awaitingOutcome(decision);
          if (pending === undefined || (pending.point !== 'http' && pending.point !== 'authzen')) {
            const why = `decision \`${decision}\` is not an allowed decision of this server awaiting its outcome (unknown, already reported, or made by another server)`;
            return reject(res, problem(404, 'unknown_decision', why, '/decision'), rid);
          }
          if (!mayAsk(caller, pending.agent)) {
            return forbid(res, req, rid, point, caller, pending.agent, '/decision');
          }
          // A flow policy labels the result (or takes the label reported with it) before anything else.
          const seen = await layer.deliver(
            { id: decision },
            result !== undefined
              ? { result }
              : { resultDigest: o.resultDigest ?? '', ...(label !== undefined ? { label } : {}) },
          );
          try {
            await layer.outcome({ id: decision }, result !== undefined ? { ...o, result } : o);
          } catch (err) {
            const why = `the outcome of decision \`${decision}\` could not be recorded (${messageOf(err)})`;
            return reject(res, problem(503, 'outcome_not_recorded', why), rid);
          }
          if (!seen.ok) return reject(res, problem(503, 'outcome_not_recorded', seen.reason), rid);
          const body: OutcomeResponse = { decision, recorded: true };
          if (seen.label !== undefined) body.label = seen.label;
          if (result !== undefined) body.result = seen.result as Json;
          if (seen.withheld !== undefined) body.withheld = seen.withheld;
          writeJson(res, 200, JSON.stringify(body), rid);
          return true;
        }
      }
    } catch {
      // INVARIANT: fail closed — an unexpected error answers 500 with no decision, never an allow.
      if (!res.headersSent) {
        writeProblem(res, problem(500, 'internal_error', 'the request could not be processed'), rid);
      } else {
        res.destroy();
      }
      return true;
    }
  };
}

/**
 * A standalone server with only the decision API; any other path gets a 404 problem. Used by tests and the
 * benchmark; `execlayer serve` mounts the handler next to its other routes instead. It has the same
 * deadlines and connection cap as `serve` with the configuration's defaults (src/enforce/front-door.ts).
 */
export function createDecisionApiServer(layer: DecisionLayer, opts: DecisionApiOptions): Server {
  const handle = createDecisionApiHandler(layer, opts);
  const limits = frontDoorLimits();
  const server = createServer({ connectionsCheckingInterval: checkingIntervalMs(limits) }, (req, res) => {
    void handle(req, res).then((handled) => {
      if (!handled) writeProblem(res, problem(404, 'not_found', 'no such endpoint'), requestIdOf(req));
    });
  });
  guardServer(server, limits);
  return server;
}

const PREF_APPLIED = { 'preference-applied': 'reasons' } as const;

function reject(res: ServerResponse, p: Problem, rid: string): true {
  writeProblem(res, p, rid);
  return true;
}

function mayAsk(caller: Caller, subjectId: string): boolean {
  return caller.pdpClient || caller.agent === subjectId;
}

/**
 * Runs a batch (AuthZEN 1.0 §7.1.2.1). An error item answers `decision: false` with the error in its
 * context and counts as a denial: `deny_on_first_deny` stops there, the other semantics go on.
 * Short-circuiting batches run in order, and nothing after the deciding item is evaluated or recorded.
 */
async function runBatch(
  items: readonly BatchItem[],
  semantic: EvaluationsSemantic,
  decide: (a: Action) => Promise<Decision>,
): Promise<(Decision | string)[]> {
  const one = (item: BatchItem): Promise<Decision | string> | string =>
    item.ok ? decide(item.value.action) : itemError(item.problem);
  if (semantic === 'execute_all') return Promise.all(items.map(one));
  const out: (Decision | string)[] = [];
  for (const item of items) {
    const r = await one(item);
    out.push(r);
    const allowed = typeof r !== 'string' && r.effect === 'allow';
    if (semantic === 'deny_on_first_deny' ? !allowed : allowed) break;
  }
  return out;
}

/** The result of a batch item that could not be evaluated: closed, with the error and where it is. */
function itemError(p: Problem): string {
  const error: JsonObject = { status: p.status, message: p.detail };
  if (p.pointer !== undefined) error.pointer = p.pointer;
  return `{"decision":false,"context":${JSON.stringify({ code: p.code, reason: p.detail, error })}}`;
}

/** One AuthZEN result object as JSON text. `ask` maps to `false` with a reason saying approval is required. */
function authzenResult(d: Decision, reasons: boolean): string {
  // In shadow mode effect is `allow` and the action proceeds, so the AuthZEN answer is true.
  const allowed = d.effect === 'allow';
  if (d.effect === 'ask') {
    const ctx: JsonObject = {
      reason: `approval required: ${d.reason}`,
      code: 'approval_required',
      decision_id: d.id,
    };
    if (d.approvalId !== undefined) ctx.approval_id = d.approvalId;
    return `{"decision":false,"context":${JSON.stringify(ctx)}}`;
  }
  if (!reasons) return allowed ? '{"decision":true}' : '{"decision":false}';
  return `{"decision":${allowed},"context":${JSON.stringify({ reason: d.reason, code: d.code, decision_id: d.id })}}`;
}

function prefersReasons(req: IncomingMessage): boolean {
  const raw = req.headers.prefer;
  if (raw === undefined) return false;
  const h = Array.isArray(raw) ? raw.join(',') : raw;
  for (const part of h.split(',')) {
    if (part.split(';')[0]?.split('=')[0]?.trim().toLowerCase() === 'reasons') return true;
  }
  return false;
}

/**
 * The session key the channel gives (`ExecLayer-Session` header), if any. A header the client sent more
 * than once, or an over-long one, is refused (undefined here; `parseNativeAction` then reports it).
 */
function sessionHeader(req: IncomingMessage): string | null | undefined {
  const h = req.headers['execlayer-session'];
  if (h === undefined) return undefined;
  if (typeof h !== 'string' || h.length === 0 || h.length > 256) return null;
  return h;
}

function parseNativeAction(
  raw: Json | undefined,
  base: string,
  callerAgent: string,
  session?: string | null,
): ParseResult<Action> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return invalidRequest('an action must be a JSON object', base);
  for (const k in raw) {
    if (!NATIVE_KEYS.has(k))
      return invalidRequest(
        `unknown member \`${k}\`: an action has agent, tool, args, session, onBehalfOf, delegation, context`,
        pointerJoin(base, k),
      );
  }
  if (raw.agent !== undefined && typeof raw.agent !== 'string')
    return invalidRequest('agent must be a string', `${base}/agent`);
  if (raw.tool === undefined) return invalidRequest('tool is required', `${base}/tool`);
  if (typeof raw.tool !== 'string') return invalidRequest('tool must be a string', `${base}/tool`);
  if (
    raw.args !== undefined &&
    (raw.args === null || typeof raw.args !== 'object' || Array.isArray(raw.args))
  ) {
    return invalidRequest('args must be an object', `${base}/args`);
  }
  if (session === null)
    return invalidRequest('the ExecLayer-Session header must be one value of 1 to 256 characters', base);
  if (session !== undefined && raw.session !== undefined && raw.session !== session)
    return invalidRequest('session differs from the ExecLayer-Session header', `${base}/session`);
  const candidate = {
    ...raw,
    agent: raw.agent ?? callerAgent,
    args: raw.args ?? {},
    ...(session !== undefined ? { session } : {}),
  };
  const checked = parseAction(candidate);
  if (!checked.ok) return invalidRequest(checked.error, base);
  return { ok: true, value: checked.action };
}

interface ReportedOutcome {
  decision: string;
  ok: boolean;
  durationMs: number;
  error?: string;
  resultDigest?: string;
  /** The result's label as the caller knows it (flow policies): it can only raise the declared one. */
  label?: Json;
  /** The result itself, for a flow policy to label, withhold from and extract values from. */
  result?: Json;
}

const OUTCOME_KEYS: ReadonlySet<string> = new Set([
  'decision',
  'ok',
  'durationMs',
  'error',
  'resultDigest',
  'label',
  'result',
]);
const SHA256_HEX = /^[0-9a-f]{64}$/;
const MAX_ERROR_CHARS = 2000;

/** `{decision, ok, durationMs, error?, resultDigest?}`: an outcome reported for an allowed decision. */
function parseOutcome(raw: JsonObject): ParseResult<ReportedOutcome> {
  for (const k in raw) {
    if (!OUTCOME_KEYS.has(k))
      return invalidRequest(
        `unknown member \`${k}\`: an outcome has decision, ok, durationMs, error, resultDigest, label, result`,
        pointerJoin('', k),
      );
  }
  const { decision, ok, durationMs, error, resultDigest, label, result } = raw;
  if (typeof decision !== 'string' || decision === '' || decision.length > 200)
    return invalidRequest('decision must be the id of a decision (a non-empty string)', '/decision');
  if (typeof ok !== 'boolean') return invalidRequest('ok must be true or false', '/ok');
  if (typeof durationMs !== 'number' || !Number.isFinite(durationMs) || durationMs < 0)
    return invalidRequest('durationMs must be a non-negative number of milliseconds', '/durationMs');
  const value: ReportedOutcome = { decision, ok, durationMs };
  if (error !== undefined) {
    if (typeof error !== 'string') return invalidRequest('error must be a string', '/error');
    if (error.length > MAX_ERROR_CHARS)
      return invalidRequest(
        `error has ${error.length} characters; the limit is ${MAX_ERROR_CHARS}`,
        '/error',
      );
    value.error = error;
  }
  if (resultDigest !== undefined) {
    if (typeof resultDigest !== 'string' || !SHA256_HEX.test(resultDigest))
      return invalidRequest(
        'resultDigest must be the lowercase hex SHA-256 of the canonical JSON of the result',
        '/resultDigest',
      );
    value.resultDigest = resultDigest;
  }
  if (label !== undefined) {
    if (label === null || typeof label !== 'object' || Array.isArray(label))
      return invalidRequest('label must be an object: { integrity, level, readers, tags }', '/label');
    value.label = label;
  }
  if (result !== undefined) value.result = result;
  return { ok: true, value };
}

function failedDecision(policy: string, err: unknown): Decision {
  return denyDecision('internal_error', `the decision could not be made (${messageOf(err)}); denied`, policy);
}

function configBody(publicUrl: string | undefined, req: IncomingMessage): string {
  const host = req.headers.host;
  // HTTP/1 over TLS and HTTP/2 alike expose the TLS socket's `encrypted` flag.
  const scheme = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http';
  const base = (
    publicUrl ?? `${scheme}://${host !== undefined && HOST.test(host) ? host : 'localhost'}`
  ).replace(/\/+$/, '');
  return JSON.stringify({
    policy_decision_point: base,
    access_evaluation_endpoint: `${base}/access/v1/evaluation`,
    access_evaluations_endpoint: `${base}/access/v1/evaluations`,
    search_subject_endpoint: `${base}/access/v1/search/subject`,
    search_resource_endpoint: `${base}/access/v1/search/resource`,
    search_action_endpoint: `${base}/access/v1/search/action`,
  });
}

/** `schema/decision-api.openapi.json` of this package (from `src/` or `dist/` alike), read once. */
const OPENAPI_FILE = new URL('../../../schema/decision-api.openapi.json', import.meta.url);
let openApi: string | undefined;

function openApiText(): string {
  openApi ??= readFileSync(OPENAPI_FILE, 'utf8');
  return openApi;
}

function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

function writeJson(
  res: ServerResponse,
  status: number,
  body: string,
  rid: string,
  extra?: Readonly<Record<string, string>>,
): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': rid,
  };
  if (extra !== undefined) Object.assign(headers, extra);
  writeNextTurn(res, status, headers, body);
}

/** Writes `p` as an `application/problem+json` response with the request id echoed. */
export function writeProblem(
  res: ServerResponse,
  p: Problem,
  requestId: string,
  extra?: Readonly<Record<string, string>>,
): void {
  const body = problemBody(p);
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
  };
  if (extra !== undefined) Object.assign(headers, extra);
  writeNextTurn(res, p.status, headers, body);
}

type PendingWrite = [ServerResponse, number, Record<string, string | number>, string];
const pendingWrites: PendingWrite[] = [];

/**
 * Responses are written once per turn of the event loop, after every request read in that turn has been
 * handled: under load the server's writes (and the client wake-ups each one causes) no longer interleave
 * with reading and deciding the next requests. Measured with 32 keep-alive connections on two cores: about
 * 1.6x the decisions per second of writing each response at once (`npm run bench:api`).
 */
function writeNextTurn(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number>,
  body: string,
): void {
  if (pendingWrites.push([res, status, headers, body]) === 1) setImmediate(flushWrites);
}

function flushWrites(): void {
  const writes = pendingWrites.splice(0);
  for (const [res, status, headers, body] of writes) {
    try {
      res.writeHead(status, headers);
      res.end(body);
    } catch {
      // A response that cannot be written (its connection is gone) is dropped; the others still go out.
      res.destroy();
    }
  }
}

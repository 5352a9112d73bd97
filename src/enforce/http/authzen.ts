/**
 * OpenID AuthZEN Authorization API 1.0 request parsing and the mapping onto ExecLayer actions.
 *
 * Mapping (documented in docs/http-api.md):
 * - `subject.id` is the agent id the policy knows (policy `agents:`). `subject.type` must be `agent` or
 *   `user`; a `user` subject also sets `onBehalfOf` to the same id, so the audit trail and
 *   `principal`-scoped limits name the human.
 * - `action.name` is the tool.
 * - `args` are built from the resource: first any members of `resource` other than `type`, `id` and
 *   `properties` (the draft-00 shape), then `resource.properties`, which win on conflict.
 * - `context` is the request `context` plus three reserved members the mapper sets:
 *   `subject` ({type, id, properties?}), `resource` ({type, id?}) and `action` ({name, properties?}).
 */
import { parseAction } from '../../engine/action.js';
import type { Action, Json } from '../../types.js';
import { invalidRequest, type ParseResult, type Problem, pointerJoin, problem } from './problem.js';

/** Longest accepted subject/resource type or id, and action name. */
export const MAX_NAME_LENGTH = 256;

/** AuthZEN batch semantics (`options.evaluations_semantic`). */
export type EvaluationsSemantic = 'execute_all' | 'deny_on_first_deny' | 'permit_on_first_permit';

const SEMANTICS: ReadonlySet<string> = new Set([
  'execute_all',
  'deny_on_first_deny',
  'permit_on_first_permit',
]);
const RESERVED_CONTEXT = ['subject', 'resource', 'action'] as const;
const SUBJECT_TYPES: ReadonlySet<string> = new Set(['agent', 'user']);

type JsonObject = { [key: string]: Json };

/** One evaluation after defaults were applied and the shape checked, ready to become an Action. */
export interface Evaluation {
  action: Action;
  /** The subject id the caller asks about (checked against the caller's identity). */
  subjectId: string;
  /** JSON pointer of the subject used (top-level default or the item's own). */
  subjectPointer: string;
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkName(v: unknown, what: string, pointer: string): { ok: false; problem: Problem } | undefined {
  if (v === undefined) return invalidRequest(`${what} is required`, pointer);
  if (typeof v !== 'string') return invalidRequest(`${what} must be a string`, pointer);
  if (v.length === 0) return invalidRequest(`${what} must not be empty`, pointer);
  if (v.length > MAX_NAME_LENGTH)
    return invalidRequest(`${what} is longer than ${MAX_NAME_LENGTH} characters`, pointer);
  return undefined;
}

/** Parses a single `POST /access/v1/evaluation` body. */
export function parseEvaluationRequest(body: JsonObject): ParseResult<Evaluation> {
  return buildEvaluation(
    body.subject,
    '/subject',
    body.action,
    '/action',
    body.resource,
    '/resource',
    body.context,
    '/context',
  );
}

/**
 * One item of a batch: an evaluation, or the problem that makes this item alone an error. AuthZEN 1.0
 * §7.2.1: an error in one evaluation is answered in that item (`decision: false`), not for the payload.
 */
export type BatchItem = { ok: true; value: Evaluation } | { ok: false; problem: Problem };

/**
 * A parsed `POST /access/v1/evaluations` body. `single` is true when no `evaluations` array was sent or
 * it is empty (AuthZEN 1.0 §7.1: then the request is a single evaluation and is answered as one).
 */
export type EvaluationsRequest =
  | { single: true; evaluation: Evaluation }
  | { single: false; semantic: EvaluationsSemantic; items: BatchItem[] };

/**
 * Parses a `POST /access/v1/evaluations` body; rejects batches larger than `maxBatch`. Errors about the
 * whole payload (options, the array itself, the shape of the top-level defaults) refuse the request; an
 * item that cannot be evaluated becomes an error item.
 */
export function parseEvaluationsRequest(body: JsonObject, maxBatch: number): ParseResult<EvaluationsRequest> {
  let semantic: EvaluationsSemantic = 'execute_all';
  if (body.options !== undefined) {
    if (!isObject(body.options)) return invalidRequest('options must be an object', '/options');
    const s = body.options.evaluations_semantic;
    if (s !== undefined) {
      if (typeof s !== 'string' || !SEMANTICS.has(s)) {
        return invalidRequest(
          `evaluations_semantic \`${String(typeof s === 'string' ? s : JSON.stringify(s))}\` is not supported: use execute_all, deny_on_first_deny or permit_on_first_permit`,
          '/options/evaluations_semantic',
        );
      }
      semantic = s as EvaluationsSemantic;
    }
  }
  const items = body.evaluations;
  if (items !== undefined && !Array.isArray(items))
    return invalidRequest('evaluations must be an array', '/evaluations');
  if (items === undefined || items.length === 0) {
    const one = parseEvaluationRequest(body);
    if (!one.ok) return one;
    return { ok: true, value: { single: true, evaluation: one.value } };
  }
  if (items.length > maxBatch) {
    return {
      ok: false,
      problem: problem(
        400,
        'batch_too_large',
        `evaluations has ${items.length} items; the limit is ${maxBatch}`,
        '/evaluations',
      ),
    };
  }
  for (const key of ['subject', 'action', 'resource', 'context'] as const) {
    if (body[key] !== undefined && !isObject(body[key]))
      return invalidRequest(`${key} must be an object`, `/${key}`);
  }
  const out: BatchItem[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const base = `/evaluations/${i}`;
    if (!isObject(item)) {
      out.push(invalidRequest('each evaluation must be an object', base));
      continue;
    }
    // Item values replace the top-level defaults whole (AuthZEN 1.0 §7.1.1, "Default values"); a key
    // missing from both is reported at the item, where the caller has to add it.
    const pick = (key: 'subject' | 'action' | 'resource' | 'context'): [Json | undefined, string] =>
      item[key] !== undefined
        ? [item[key], `${base}/${key}`]
        : [body[key], body[key] !== undefined ? `/${key}` : `${base}/${key}`];
    const [s, sp] = pick('subject');
    const [a, ap] = pick('action');
    const [r, rp] = pick('resource');
    const [c, cp] = pick('context');
    out.push(buildEvaluation(s, sp, a, ap, r, rp, c, cp));
  }
  return { ok: true, value: { single: false, semantic, items: out } };
}

/**
 * Checks one evaluation's subject, action, resource and context (each with the JSON pointer it came from)
 * and builds the action the engine decides. Search builds its template the same way.
 */
export function buildEvaluation(
  subject: Json | undefined,
  sp: string,
  action: Json | undefined,
  ap: string,
  resource: Json | undefined,
  rp: string,
  context: Json | undefined,
  cp: string,
): ParseResult<Evaluation> {
  if (subject === undefined) return invalidRequest('subject is required', sp);
  if (!isObject(subject)) return invalidRequest('subject must be an object', sp);
  const st = checkName(subject.type, 'subject type', `${sp}/type`);
  if (st) return st;
  if (!SUBJECT_TYPES.has(subject.type as string)) {
    return invalidRequest(
      `subject type \`${subject.type as string}\` is not supported: use \`agent\` or \`user\``,
      `${sp}/type`,
    );
  }
  const si = checkName(subject.id, 'subject id', `${sp}/id`);
  if (si) return si;
  if (subject.properties !== undefined && !isObject(subject.properties)) {
    return invalidRequest('subject properties must be an object', `${sp}/properties`);
  }

  if (action === undefined) return invalidRequest('action is required', ap);
  if (!isObject(action)) return invalidRequest('action must be an object', ap);
  const an = checkName(action.name, 'action name', `${ap}/name`);
  if (an) return an;
  if (action.properties !== undefined && !isObject(action.properties)) {
    return invalidRequest('action properties must be an object', `${ap}/properties`);
  }

  if (resource === undefined) return invalidRequest('resource is required', rp);
  if (!isObject(resource)) return invalidRequest('resource must be an object', rp);
  const rt = checkName(resource.type, 'resource type', `${rp}/type`);
  if (rt) return rt;
  // AuthZEN 1.0 §5.2: a Resource has a REQUIRED string `id` (§10.1.1: missing means 400).
  const ri = checkName(resource.id, 'resource id', `${rp}/id`);
  if (ri) return ri;
  if (resource.properties !== undefined && !isObject(resource.properties)) {
    return invalidRequest('resource properties must be an object', `${rp}/properties`);
  }

  if (context !== undefined && !isObject(context)) return invalidRequest('context must be an object', cp);
  if (context !== undefined) {
    for (const k of RESERVED_CONTEXT) {
      if (context[k] !== undefined) {
        return invalidRequest(
          `context member \`${k}\` is reserved: the mapper sets it from the request`,
          pointerJoin(cp, k),
        );
      }
    }
  }

  const args: JsonObject = {};
  for (const k in resource) {
    if (k !== 'type' && k !== 'id' && k !== 'properties') args[k] = resource[k] as Json;
  }
  if (resource.properties !== undefined) Object.assign(args, resource.properties);

  const subjectId = subject.id as string;
  const ctxSubject: JsonObject = { type: subject.type as string, id: subjectId };
  if (subject.properties !== undefined) ctxSubject.properties = subject.properties;
  const ctxResource: JsonObject = { type: resource.type as string };
  if (resource.id !== undefined) ctxResource.id = resource.id;
  const ctxAction: JsonObject = { name: action.name as string };
  if (action.properties !== undefined) ctxAction.properties = action.properties;
  const ctx: JsonObject = context === undefined ? {} : { ...context };
  ctx.subject = ctxSubject;
  ctx.resource = ctxResource;
  ctx.action = ctxAction;

  const out: Action = { agent: subjectId, tool: action.name as string, args, context: ctx };
  if (subject.type === 'user') out.onBehalfOf = subjectId;
  // The engine's own validation (tool name alphabet, sizes, depth) applies at the edge, so bad input is a
  // 400 that names the field rather than a recorded invalid_action deny.
  const checked = parseAction(out);
  if (!checked.ok) return invalidRequest(checked.error, pointerFor(checked.error, sp, ap, rp, cp));
  return { ok: true, value: { action: checked.action, subjectId, subjectPointer: sp } };
}

function pointerFor(error: string, sp: string, ap: string, rp: string, cp: string): string {
  if (error.startsWith('tool name') || error.startsWith('action.tool')) return `${ap}/name`;
  if (error.startsWith('action.agent') || error.startsWith('action.onBehalfOf')) return `${sp}/id`;
  if (error.startsWith('args')) return rp;
  if (error.startsWith('context')) return cp;
  return '';
}

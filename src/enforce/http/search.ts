/**
 * AuthZEN 1.0 Search APIs (§8): subject, resource and action search, answered from the compiled policy.
 *
 * - Subject search: the agents for which the same evaluation (action, resource, context) is allowed.
 * - Action search: the tools the subject may call with this resource (arguments) and context, each with
 *   the rule that allows it and that rule's argument constraints.
 * - Resource search: ExecLayer's resources are argument sets, which cannot be listed; the answer is one
 *   resource per allow rule that could let the subject call the tool: `id` is the rule id, `properties`
 *   its argument constraints.
 *
 * Subject and action search run the engine's own decision function on each candidate, so an answer and
 * a single evaluation agree (test/authzen-search.test.ts checks it over generated policies). Search
 * decides nothing that runs: no limit is charged and nothing is recorded. Suspensions, limits and
 * approvals apply when the evaluation is made (§8.1: a result "SHOULD" evaluate to true).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { canonicalJson } from '../../canonical-json.js';
import type { Engine } from '../../engine/compile.js';
import type { CheckedRule } from '../../policy/check.js';
import { hasWildcard } from '../../policy/glob.js';
import type { Action, Json } from '../../types.js';
import { buildEvaluation } from './authzen.js';
import { invalidRequest, type ParseResult } from './problem.js';

/** Which of the three searches. */
export type SearchKind = 'subject' | 'resource' | 'action';

/** Results per page when the request gives no `page.limit`. */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page; a larger `page.limit` is served this many. */
export const MAX_PAGE_SIZE = 1000;

type JsonObject = { [key: string]: Json };

/** A checked search request, ready to run. */
export interface SearchRequest {
  kind: SearchKind;
  /** The evaluation every candidate is substituted into (subject and action search). */
  template: Action;
  subjectType: string;
  /** The subject id asked about (action and resource search), checked against the caller. */
  subjectId: string | undefined;
  resourceType: string;
  limit: number;
  offset: number;
  /** Digest of everything but the page token: a token is only valid for the request it came from. */
  digest: string;
}

/** One page of a search answer, serialised. */
export interface SearchAnswer {
  body: string;
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Signs page tokens. Tokens are opaque and bound to the request that produced them; a token from
 * another request, another process or edited by hand is refused (§8.2: "SHOULD return an error").
 */
export class PageTokens {
  readonly #key = randomBytes(32);

  issue(digest: string, offset: number): string {
    const payload = Buffer.from(JSON.stringify([offset, digest])).toString('base64url');
    return `${payload}.${this.#mac(payload)}`;
  }

  /** The offset a token stands for, or undefined when it is not a token of this request. */
  read(token: string, digest: string): number | undefined {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 512) return undefined;
    const payload = token.slice(0, dot);
    const mac = Buffer.from(token.slice(dot + 1));
    const want = Buffer.from(this.#mac(payload));
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return undefined;
    try {
      const [offset, d] = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as [
        unknown,
        unknown,
      ];
      if (d !== digest || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
        return undefined;
      return offset;
    } catch {
      return undefined;
    }
  }

  #mac(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}

/** Parses a search body (§8.4.1, §8.5.1, §8.6.1) and its `page` object (§8.2.1). */
export function parseSearchRequest(
  kind: SearchKind,
  body: JsonObject,
  tokens: PageTokens,
): ParseResult<SearchRequest> {
  const subject = body.subject;
  if (subject === undefined) return invalidRequest('subject is required', '/subject');
  if (!isObject(subject)) return invalidRequest('subject must be an object', '/subject');
  // §8.4.1: in a subject search the subject `id` MUST be ignored; §8.5.1 the same for the resource id.
  const subjectIn = kind === 'subject' ? { ...subject, id: 'search' } : subject;
  const resource = body.resource;
  if (resource === undefined) return invalidRequest('resource is required', '/resource');
  if (!isObject(resource)) return invalidRequest('resource must be an object', '/resource');
  const resourceIn = kind === 'resource' ? { ...resource, id: 'search' } : resource;
  // §8.6.1: an action search has no `action`; any sent is ignored like any unknown member.
  const actionIn = kind === 'action' ? { name: 'search' } : body.action;
  const ev = buildEvaluation(
    subjectIn,
    '/subject',
    actionIn,
    '/action',
    resourceIn,
    '/resource',
    body.context,
    '/context',
  );
  if (!ev.ok) return ev;

  let limit = DEFAULT_PAGE_SIZE;
  let token: string | undefined;
  const page = body.page;
  if (page !== undefined) {
    if (!isObject(page)) return invalidRequest('page must be an object', '/page');
    if (page.limit !== undefined) {
      if (typeof page.limit !== 'number' || !Number.isSafeInteger(page.limit) || page.limit < 0)
        return invalidRequest('page limit must be a non-negative integer', '/page/limit');
      limit = Math.min(page.limit, MAX_PAGE_SIZE);
    }
    if (page.token !== undefined) {
      if (typeof page.token !== 'string') return invalidRequest('page token must be a string', '/page/token');
      if (page.token !== '') token = page.token;
    }
  }
  const { page: _page, ...rest } = body;
  const pageRest = isObject(page) ? { ...page } : {};
  delete pageRest.token;
  const digest = canonicalJson({
    kind,
    rest: kind === 'action' ? { ...rest, action: null } : rest,
    pageRest,
  });
  let offset = 0;
  if (token !== undefined) {
    const o = tokens.read(token, digest);
    if (o === undefined) {
      return invalidRequest(
        'page token is not one this server issued for this request: send the same subject, action, resource, context and limit as the request it came from',
        '/page/token',
      );
    }
    offset = o;
  }
  return {
    ok: true,
    value: {
      kind,
      template: ev.value.action,
      subjectType: subject.type as string,
      subjectId: kind === 'subject' ? undefined : ev.value.subjectId,
      resourceType: resource.type as string,
      limit,
      offset,
      digest,
    },
  };
}

/** Runs a search against `engine` and serialises one page of the answer (§8.3). */
export function runSearch(
  engine: Engine,
  req: SearchRequest,
  tokens: PageTokens,
  now?: number,
): SearchAnswer {
  const { results, context } =
    req.kind === 'subject'
      ? subjectSearch(engine, req, now)
      : req.kind === 'action'
        ? actionSearch(engine, req, now)
        : resourceSearch(engine, req);
  const total = results.length;
  const slice = results.slice(req.offset, req.offset + req.limit);
  const end = req.offset + slice.length;
  const next = end < total && req.limit > 0 ? tokens.issue(req.digest, end) : '';
  // §8.3: `page` first, so a client can show progress from `count` before reading the results.
  const page = { next_token: next, count: slice.length, total };
  const body =
    `{"page":${JSON.stringify(page)}` +
    (context !== undefined ? `,"context":${JSON.stringify(context)}` : '') +
    `,"results":[${slice.join(',')}]}`;
  return { body };
}

interface Found {
  /** Each result as JSON text, in a stable order (pagination depends on it). */
  results: string[];
  context?: JsonObject;
}

function sortedAgents(engine: Engine): string[] {
  return [...engine.policy.agents.keys()].sort();
}

function subjectSearch(engine: Engine, req: SearchRequest, now: number | undefined): Found {
  const t = req.template;
  const ctx = (t.context ?? {}) as JsonObject;
  const ctxSubject = ctx.subject as JsonObject;
  const results: string[] = [];
  for (const id of sortedAgents(engine)) {
    // `visible` is false only where no decision can allow (no allow candidate, an unconditional deny,
    // an unknown agent): skipping those saves the full decision for most agents of a large policy.
    if (!engine.visible(id, t.tool)) continue;
    // The same action an evaluation for subject `id` builds (authzen.ts buildEvaluation).
    const action: Action = {
      ...t,
      agent: id,
      context: { ...ctx, subject: { ...ctxSubject, id } },
    };
    if (req.subjectType === 'user') action.onBehalfOf = id;
    else delete action.onBehalfOf;
    if (engine.decide(action, now).effect === 'allow')
      results.push(JSON.stringify({ type: req.subjectType, id }));
  }
  return { results };
}

/** Every exact tool name the policy knows (rule patterns without wildcards, declared tools), sorted. */
function knownTools(engine: Engine): { names: string[] } {
  const names = new Set<string>();
  for (const a of engine.policy.agents.values())
    for (const r of a.rules) for (const p of r.patterns) if (!hasWildcard(p)) names.add(p);
  for (const t of Object.keys(engine.policy.doc.tools ?? {})) names.add(t);
  return { names: [...names].sort() };
}

function constraintsOf(rule: CheckedRule | undefined): JsonObject {
  const out: JsonObject = {};
  if (rule === undefined) return out;
  out.rule = rule.id;
  if (rule.when) out.when = rule.when.summary;
  if (rule.unless) out.unless = rule.unless.summary;
  return out;
}

function actionSearch(engine: Engine, req: SearchRequest, now: number | undefined): Found {
  const t = req.template;
  const agent = t.agent;
  const ctx = (t.context ?? {}) as JsonObject;
  const results: string[] = [];
  for (const name of knownTools(engine).names) {
    if (!engine.visible(agent, name)) continue;
    const action: Action = { ...t, tool: name, context: { ...ctx, action: { name } } };
    const d = engine.decide(action, now);
    if (d.effect !== 'allow') continue;
    const rule = engine.allowRules(agent, name).find((r) => r.id === d.rule);
    const properties = constraintsOf(rule);
    if (d.mode === 'shadow') properties.mode = 'shadow';
    results.push(JSON.stringify({ name, properties }));
  }
  // Patterns cover tools the policy does not name; they cannot be listed, so they are stated: the
  // wildcard allow rules, and the wildcard rules of any effect in shadow mode (their calls proceed).
  const checked = engine.policy.agents.get(agent);
  const patterns: Json[] = [];
  // INVARIANT: a shadow-mode agent's every call proceeds, so its answer says so rather than omit tools.
  if (checked?.mode === 'shadow') patterns.push({ pattern: '*', mode: 'shadow' });
  for (const r of checked?.rules ?? []) {
    const shadow = (r.mode ?? checked?.mode) === 'shadow';
    if (r.effect !== 'allow' && !shadow) continue;
    for (const p of r.patterns) {
      if (!hasWildcard(p)) continue;
      patterns.push({ pattern: p, ...constraintsOf(r), ...(shadow ? { mode: 'shadow' } : {}) });
    }
  }
  return patterns.length > 0 ? { results, context: { patterns } } : { results };
}

function resourceSearch(engine: Engine, req: SearchRequest): Found {
  const { agent, tool } = req.template;
  const checked = engine.policy.agents.get(agent);
  if (checked === undefined) return { results: [] };
  const results: string[] = [];
  // In shadow mode every call proceeds (a deny is only recorded), so any resource qualifies.
  const shadow = checked.mode === 'shadow' || checked.rules.some((r) => r.mode === 'shadow');
  if (shadow) {
    results.push(JSON.stringify({ type: req.resourceType, id: '*', properties: { mode: 'shadow' } }));
  }
  if (engine.visible(agent, tool)) {
    for (const rule of engine.allowRules(agent, tool)) {
      results.push(JSON.stringify({ type: req.resourceType, id: rule.id, properties: constraintsOf(rule) }));
    }
  }
  return { results };
}

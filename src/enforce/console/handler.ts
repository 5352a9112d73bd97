/**
 * The operator console at `/console`, served by `execlayer serve`: live decisions over server-sent events,
 * a decision's detail with its audit inclusion proof checked in the page, the approvals queue, agents and
 * the stop switch, pinned tools and definition diffs, the policy with its reload history and candidate
 * replay, and the audit trail's verification status.
 *
 * INVARIANT: no page or API without a session; every state change needs the session's CSRF token and the
 * right role, and acts as the credential's agent id, never as anything the form says.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApprovalError, type ApprovalStore } from '../../approvals/types.js';
import type { AuditLog } from '../../audit/log.js';
import type { AuditRecord } from '../../audit/record.js';
import { replay } from '../../audit/replay.js';
import { compile } from '../../engine/compile.js';
import { loadPolicyBytes } from '../../policy/load.js';
import { formatProblem } from '../../policy/problems.js';
import { MAX_POLICY_BYTES } from '../../policy/source.js';
import type { ExecLayer, ReloadOutcome } from '../../runtime/exec-layer.js';
import { AgentStateError, type AgentStateStore, ALL_AGENTS } from '../../state/agent-state.js';
import type { AuditEvent, DecisionEvent, LimitSpec } from '../../types.js';
import type { Authenticator } from '../auth.js';
import type { ToolPinStore } from '../mcp/pins.js';
import { diffLines } from './diff.js';
import type { Html } from './html.js';
import { type LiveDecision, type LiveFilter, LiveHub, matches, summarise } from './live.js';
import {
  type AgentRow,
  type AuditView,
  agentsPage,
  approvalsPage,
  auditPage,
  type DecisionView,
  decisionPage,
  livePage,
  loginPage,
  messagePage,
  type PolicyView,
  policyPage,
  toolPage,
  toolsPage,
} from './pages.js';
import {
  addCookies,
  type ConsoleRight,
  type ConsoleSession,
  cookie,
  LOGIN_COOKIE,
  may,
  SESSION_COOKIE,
  SessionStore,
  sameToken,
  setCookie,
  token,
} from './session.js';

export interface ConsoleOptions {
  layer: ExecLayer;
  /** The store the runtime asks (wrapped by `twoPersonApprovals` when the rule is on). */
  approvals: ApprovalStore & { firstApprover?(id: string): string | undefined };
  state: AgentStateStore;
  /** The audit log; without one (store `memory:`) the audit-backed views say so. */
  audit?: AuditLog | undefined;
  pins: ToolPinStore;
  /** The gateway's authenticator: the login form checks the key or token with it. */
  authenticate: Authenticator;
  upstreams: () => Array<{
    name: string;
    state: string;
    session: string;
    agent: string;
    tools: number;
    heldBack: unknown[];
  }>;
  reload: (by: string) => Promise<ReloadOutcome>;
  twoPersonRule?: boolean;
  now?: () => number;
}

/** The console: its request handler, and `close` for its live connections and subscription. */
export interface Console {
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  readonly live: LiveHub;
  close(): void;
}

const ASSETS: Record<string, string> = {
  'console.js': 'text/javascript; charset=utf-8',
  'verify.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};
/** Where the console's static files are, from `src/enforce/console/` and `dist/enforce/console/` alike. */
const ASSET_DIR = new URL('../../../assets/console/', import.meta.url);

/** No inline script or style, nothing from another origin, no framing. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SECURITY_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, which the front door refuses.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cache-control': 'no-store',
};

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/;
const APPROVAL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const TOOL_NAME = /^[A-Za-z0-9_.:/-]{1,256}$/;
const DECISION_ID = /^[A-Za-z0-9-]{1,64}$/;
const FORM_MAX = 64 * 1024;
const RECENT = 100;
const REPLAY_RECORDS = 5000;

/** Creates the console and subscribes it to the runtime's decisions. */
export function createConsole(opts: ConsoleOptions): Console {
  const now = opts.now ?? Date.now;
  const sessions = new SessionStore(now);
  const live = new LiveHub();
  const recent: LiveDecision[] = [];
  const assets = loadAssets();
  let lastVerify: AuditView['verification'];
  const unsubscribe = opts.layer.subscribe((e: AuditEvent, at: number) => {
    if (e.type !== 'decision') return;
    live.observe(e, at);
    // Without an audit log to query, the live page starts from what this process saw.
    if (!opts.audit) {
      recent.push(summarise(e, at));
      if (recent.length > 2 * RECENT) recent.splice(0, RECENT);
    }
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const path = url.pathname;
    if (path !== '/console' && !path.startsWith('/console/')) return false;
    try {
      await route(req, res, path, url.searchParams);
    } catch (e) {
      if (!res.headersSent)
        page(res, 500, messagePage(undefined, 'Error', 'the request could not be processed'));
      else res.destroy();
      void e;
    }
    return true;
  }

  async function route(req: IncomingMessage, res: ServerResponse, path: string, q: URLSearchParams) {
    const method = req.method ?? 'GET';
    if (path.startsWith('/console/static/')) return serveAsset(res, path.slice('/console/static/'.length));
    if (path === '/console/login') return method === 'POST' ? login(req, res) : loginForm(res);
    const s = sessions.get(req);
    if (!s) {
      // INVARIANT: no page or API without authentication.
      if (method === 'GET' && !path.startsWith('/console/api/') && path !== '/console/events') {
        return redirect(res, '/console/login');
      }
      return json(res, 401, { error: 'unauthenticated', reason: 'log in at /console/login' });
    }
    if (method === 'POST') return post(req, res, s, path);
    if (method !== 'GET' && method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, POST', ...SECURITY_HEADERS }).end();
      return;
    }
    const segs = path.split('/').slice(2);
    switch (segs[0]) {
      case undefined:
        return page(res, 200, livePage(s, await recentDecisions(filterOf(q)), filterOf(q)));
      case 'events': {
        // A stream outlives no session: logout or expiry ends it at the next sweep.
        const id = s.id;
        if (!live.attach(res, filterOf(q), () => sessions.alive(id))) {
          json(res, 503, { error: 'too_many_viewers' });
        }
        return;
      }
      case 'decisions':
        return decisionDetail(res, s, decode(segs[1]));
      case 'api':
        if (segs[1] === 'proof' && segs.length === 3) return proof(res, decode(segs[2]));
        return json(res, 404, { error: 'not_found' });
      case 'approvals':
        if (segs.length === 1) return approvals(res, s);
        break;
      case 'agents':
        if (segs.length === 1) return agents(res, s);
        break;
      case 'tools':
        if (segs.length === 1) return tools(res, s);
        if (segs.length === 2) return tool(res, s, decode(segs[1]));
        break;
      case 'policy':
        if (segs.length === 1) return policy(res, s);
        break;
      case 'audit':
        if (segs.length === 1) return auditView(res, s);
        break;
    }
    return page(res, 404, messagePage(s, 'Not found', 'there is no such page', '/console'));
  }

  // --- login --------------------------------------------------------------------------------------

  function loginForm(res: ServerResponse, error?: string, status = 200) {
    const t = token();
    addCookies(res, [setCookie(res.req, LOGIN_COOKIE, t, 600)]);
    page(res, status, loginPage(t, error));
  }

  async function login(req: IncomingMessage, res: ServerResponse) {
    const form = await readForm(req, FORM_MAX);
    // Login CSRF: the form must come from a page this server gave the same browser.
    if (!form || !sameToken(form.get('_csrf') ?? undefined, cookie(req, LOGIN_COOKIE) ?? '\0')) {
      return loginForm(res, 'the login form expired: try again', 403);
    }
    const key = form.get('key') ?? '';
    const who = await opts.authenticate({
      headers: { authorization: `Bearer ${key}` },
      socket: req.socket,
    } as IncomingMessage);
    if (!who.ok) return loginForm(res, 'that key or token is not valid', 401);
    const roles = who.roles ?? [];
    if (!may(roles, 'view')) {
      return loginForm(res, 'this credential has no console role (viewer, approver, operator or admin)', 403);
    }
    const s = sessions.create(who.agent, roles);
    addCookies(res, [setCookie(req, SESSION_COOKIE, s.id, 12 * 3600), setCookie(req, LOGIN_COOKIE, '', 0)]);
    redirect(res, '/console');
  }

  // --- state changes ------------------------------------------------------------------------------

  async function post(req: IncomingMessage, res: ServerResponse, s: ConsoleSession, path: string) {
    const big = path === '/console/policy/replay';
    const form = await readForm(req, big ? MAX_POLICY_BYTES + FORM_MAX : FORM_MAX);
    if (!form) return page(res, 413, messagePage(s, 'Too large', 'the form is too large or not url-encoded'));
    // INVARIANT: CSRF — a state change carries the session's token.
    if (!sameToken(form.get('_csrf') ?? undefined, s.csrf)) {
      return page(
        res,
        403,
        messagePage(s, 'Refused', 'the form is missing its CSRF token: reload the page and try again'),
      );
    }
    const segs = path.split('/').slice(2);
    const need = (right: ConsoleRight) => {
      if (may(s.roles, right)) return true;
      page(
        res,
        403,
        messagePage(
          s,
          'Refused',
          `your role cannot do this (it needs the ${right === 'approve' ? 'approver' : 'operator'} role)`,
        ),
      );
      return false;
    };
    try {
      if (path === '/console/logout') {
        sessions.end(s.id);
        live.sweep();
        addCookies(res, [setCookie(req, SESSION_COOKIE, '', 0)]);
        return redirect(res, '/console/login');
      }
      if (segs[0] === 'approvals' && segs.length === 3 && segs[2] === 'decide') {
        if (!need('approve')) return;
        const id = decode(segs[1]);
        const verdict = form.get('verdict');
        const note = (form.get('note') ?? '').trim();
        if (!APPROVAL_ID.test(id) || (verdict !== 'approve' && verdict !== 'deny')) {
          return page(res, 400, messagePage(s, 'Refused', 'not an approval decision', '/console/approvals'));
        }
        if (note === '' || note.length > 2000) {
          return page(
            res,
            400,
            messagePage(s, 'Refused', 'give a reason (at most 2000 characters)', '/console/approvals'),
          );
        }
        await opts.approvals.decide(id, { approve: verdict === 'approve', approver: s.user, note }, now());
        return redirect(res, '/console/approvals');
      }
      if (path === '/console/stop' || path === '/console/resume-all') {
        if (!need('operate')) return;
        if (path === '/console/stop') await opts.state.suspend(ALL_AGENTS, s.user, reasonOf(form));
        else await opts.state.resume(ALL_AGENTS, s.user);
        return redirect(res, '/console/agents');
      }
      if (segs[0] === 'agents' && segs.length === 3 && (segs[2] === 'suspend' || segs[2] === 'resume')) {
        if (!need('operate')) return;
        const agent = decode(segs[1]);
        if (!AGENT_ID.test(agent))
          return page(res, 400, messagePage(s, 'Refused', 'not an agent id', '/console/agents'));
        if (segs[2] === 'suspend') await opts.state.suspend(agent, s.user, reasonOf(form));
        else await opts.state.resume(agent, s.user);
        return redirect(res, '/console/agents');
      }
      if (segs[0] === 'tools' && segs.length === 3 && segs[2] === 'approve') {
        if (!need('operate')) return;
        return approveTool(res, s, decode(segs[1]), form.get('hash') ?? '');
      }
      if (path === '/console/policy/reload') {
        if (!need('operate')) return;
        const out = await opts.reload(s.user);
        if (out.status === 'rejected') {
          return page(
            res,
            422,
            messagePage(
              s,
              'Reload refused',
              `the policy file was not loaded, ${out.policy} stays in force: ${out.problems.join('; ')}`,
              '/console/policy',
            ),
          );
        }
        return redirect(res, '/console/policy');
      }
      if (path === '/console/policy/replay') {
        if (!need('operate')) return;
        return replayCandidate(res, s, form.get('candidate') ?? '');
      }
      if (path === '/console/audit/verify') {
        if (!need('operate')) return;
        if (opts.audit) {
          const r = await opts.audit.verify();
          lastVerify = {
            at: now(),
            ok: r.ok,
            size: r.size,
            problems: r.problems.slice(0, 20).map((p) => `record ${p.seq}: ${p.message}`),
            elapsedMs: r.elapsedMs,
            by: s.user,
          };
        }
        return redirect(res, '/console/audit');
      }
    } catch (e) {
      if (e instanceof ApprovalError) {
        const status =
          e.code === 'not_allowed'
            ? 403
            : e.code === 'not_found'
              ? 404
              : e.code === 'rate_limited'
                ? 429
                : 409;
        return page(res, status, messagePage(s, 'Refused', e.message, '/console/approvals'));
      }
      if (e instanceof AgentStateError) {
        return page(
          res,
          e.code === 'invalid_agent' ? 400 : 503,
          messagePage(s, 'Refused', e.message, '/console/agents'),
        );
      }
      throw e;
    }
    return page(res, 404, messagePage(s, 'Not found', 'there is no such action', '/console'));
  }

  async function approveTool(res: ServerResponse, s: ConsoleSession, name: string, hash: string) {
    const pin = TOOL_NAME.test(name) ? await opts.pins.get(name) : undefined;
    // The operator approves exactly the definition the page showed: a newer change is a new review.
    if (!pin?.pendingHash || pin.pendingHash !== hash) {
      return page(
        res,
        409,
        messagePage(
          s,
          'Refused',
          'this tool has no such pending definition (it may have changed again): review it anew',
          '/console/tools',
        ),
      );
    }
    // INVARIANT: the approval is recorded before it takes effect.
    await opts.layer.recorder.record({
      type: 'tool',
      status: 'approved',
      tool: name,
      hash,
      previousHash: pin.hash,
      by: s.user,
    });
    await opts.pins.approve(name, s.user, hash);
    redirect(res, `/console/tools/${encodeURIComponent(name)}`);
  }

  async function replayCandidate(res: ServerResponse, s: ConsoleSession, text: string) {
    const view = await policyView();
    const loaded = loadPolicyBytes(Buffer.from(text, 'utf8'), '<candidate>');
    if (!loaded.ok) {
      view.replay = { problems: loaded.problems.map(formatProblem), candidate: text, records: 0 };
      return page(res, 422, policyPage(s, view));
    }
    if (!opts.audit) {
      view.replay = {
        problems: ['there is no audit log to replay (store `memory:`)'],
        candidate: text,
        records: 0,
      };
      return page(res, 422, policyPage(s, view));
    }
    const engine = compile(loaded.policy);
    const records = (
      await opts.audit.query({ type: 'decision', order: 'desc', limit: REPLAY_RECORDS })
    ).reverse();
    const report = replay(records, (a, at) => engine.decide(a, at));
    view.replay = { report, candidate: text, records: records.length };
    page(res, 200, policyPage(s, view));
  }

  // --- views --------------------------------------------------------------------------------------

  async function recentDecisions(filter: LiveFilter): Promise<LiveDecision[]> {
    if (!opts.audit)
      return recent
        .filter((d) => matches(d, filter))
        .slice(-RECENT)
        .reverse();
    const rows = await opts.audit.query({
      type: 'decision',
      order: 'desc',
      limit: RECENT,
      ...(filter.agent ? { agent: filter.agent } : {}),
      ...(filter.tool ? { tool: filter.tool } : {}),
      ...(filter.effect ? { effect: filter.effect } : {}),
      ...(filter.rule && filter.rule !== 'none' ? { rule: filter.rule } : {}),
    });
    return rows.flatMap((r) =>
      r.event?.type === 'decision' ? [summarise(r.event, r.time)].filter((d) => matches(d, filter)) : [],
    );
  }

  async function decisionDetail(res: ServerResponse, s: ConsoleSession, id: string) {
    if (!DECISION_ID.test(id))
      return page(res, 404, messagePage(s, 'Not found', 'no such decision', '/console'));
    if (!opts.audit) {
      return page(
        res,
        404,
        messagePage(
          s,
          'Not recorded',
          'decisions are kept in an audit log: this server has none (store memory:)',
          '/console',
        ),
      );
    }
    const records = await opts.audit.query({ decisionId: id, limit: 50 });
    const rec = records.find((r) => r.event?.type === 'decision');
    if (rec?.event?.type !== 'decision') {
      return page(
        res,
        404,
        messagePage(s, 'Not found', 'no decision with this id in the audit trail (yet)', '/console'),
      );
    }
    const view: DecisionView = {
      seq: rec.seq,
      time: rec.time,
      hash: rec.hash,
      event: rec.event as DecisionEvent as DecisionView['event'],
      related: records.filter((r) => r !== rec).map(relatedSummary),
    };
    page(res, 200, decisionPage(s, view));
  }

  async function proof(res: ServerResponse, seqText: string) {
    if (!opts.audit) return json(res, 404, { error: 'no_audit_log' });
    if (!/^\d{1,15}$/.test(seqText)) return json(res, 400, { error: 'invalid_request' });
    try {
      const p = await opts.audit.proof(Number(seqText));
      json(res, 200, { proof: p, publicKeyPem: opts.audit.publicKeyPem, keyId: opts.audit.keyId });
    } catch (e) {
      json(res, 409, { error: 'no_proof', reason: e instanceof Error ? e.message : 'unavailable' });
    }
  }

  async function approvals(res: ServerResponse, s: ConsoleSession) {
    const t = now();
    const pending = (await opts.approvals.list({ status: 'pending', limit: 200 }, t)).map((a) => {
      const first = opts.approvals.firstApprover?.(a.id);
      return first ? { ...a, firstApprover: first } : a;
    });
    const all = await opts.approvals.list({ limit: 100 }, t);
    const decided = all.filter((a) => a.status !== 'pending' && a.decidedAt !== undefined).slice(0, 50);
    page(res, 200, approvalsPage(s, pending, decided, t, opts.twoPersonRule === true));
  }

  async function agents(res: ServerResponse, s: ConsoleSession) {
    const t = now();
    const suspensions = await opts.state.list();
    const stop = suspensions.find((x) => x.agent === ALL_AGENTS);
    const rows: AgentRow[] = [];
    for (const a of opts.layer.engine.policy.agents.values()) {
      const sus = suspensions.find((x) => x.agent === a.id);
      const limits = new Map<string, LimitSpec>();
      for (const l of a.limits) limits.set(l.id, l);
      for (const r of a.rules) for (const l of r.limits) limits.set(l.id, l);
      rows.push({
        id: a.id,
        owner: a.spec.owner,
        purpose: a.spec.purpose,
        ...(sus ? { suspended: { by: sus.by, reason: sus.reason, at: sus.at } } : {}),
        limits: await limitUsage(a.id, [...limits.values()], t),
        refusals: await refusals(a.id),
      });
    }
    page(res, 200, agentsPage(s, rows, stop && { by: stop.by, reason: stop.reason, at: stop.at }));
  }

  /** Allowed calls within each `calls` limit's window, counted from the audit trail (an estimate per log). */
  async function limitUsage(agent: string, specs: LimitSpec[], t: number): Promise<AgentRow['limits']> {
    const out: AgentRow['limits'] = [];
    for (const l of specs) {
      const row: AgentRow['limits'][number] = { id: l.id, kind: l.kind, max: l.max };
      if (l.windowMs !== undefined) row.window = durationText(l.windowMs);
      if (
        opts.audit &&
        l.kind === 'calls' &&
        l.windowMs !== undefined &&
        l.scope.every((x) => x === 'agent')
      ) {
        const rows = await opts.audit.query({
          type: 'decision',
          agent,
          effect: 'allow',
          since: t - l.windowMs,
          limit: 10_000,
        });
        row.used = rows.filter(
          (r) => r.event?.type === 'decision' && r.event.decision.limits?.some((x) => x.id === l.id),
        ).length;
      }
      out.push(row);
    }
    return out;
  }

  async function refusals(agent: string): Promise<AgentRow['refusals']> {
    if (!opts.audit) {
      return recent
        .filter((d) => d.agent === agent && d.effect === 'deny')
        .slice(-5)
        .reverse()
        .map((d) => ({ time: d.time, tool: d.tool, code: d.code, reason: d.reason }));
    }
    const rows = await opts.audit.query({ type: 'decision', agent, effect: 'deny', order: 'desc', limit: 5 });
    return rows.flatMap((r) =>
      r.event?.type === 'decision'
        ? [
            {
              time: r.time,
              tool: r.event.action.tool,
              code: r.event.decision.code,
              reason: r.event.decision.reason,
            },
          ]
        : [],
    );
  }

  async function tools(res: ServerResponse, s: ConsoleSession) {
    const pins = await opts.pins.list();
    const ups = opts.upstreams().map((u) => ({
      name: u.name,
      state: u.state,
      session: u.session,
      agent: u.agent,
      tools: u.tools,
      heldBack: u.heldBack.length,
    }));
    page(res, 200, toolsPage(s, pins, ups));
  }

  async function tool(res: ServerResponse, s: ConsoleSession, name: string) {
    const pin = TOOL_NAME.test(name) ? await opts.pins.get(name) : undefined;
    if (!pin)
      return page(res, 404, messagePage(s, 'Not found', 'no pinned tool with this name', '/console/tools'));
    const before = await opts.pins.definition?.(pin.hash);
    const after = pin.pendingHash ? await opts.pins.definition?.(pin.pendingHash) : undefined;
    const diff =
      before !== undefined && after !== undefined
        ? diffLines(JSON.stringify(before, null, 2), JSON.stringify(after, null, 2))
        : undefined;
    page(res, 200, toolPage(s, pin, diff, before));
  }

  async function policyView(): Promise<PolicyView> {
    const layer = opts.layer;
    const history = opts.audit
      ? (await opts.audit.query({ type: 'policy', order: 'desc', limit: 50 })).flatMap((r) =>
          r.event?.type === 'policy'
            ? [
                {
                  time: r.time,
                  status: r.event.status,
                  ...(r.event.policy !== undefined ? { policy: r.event.policy } : {}),
                  ...(r.event.previous !== undefined ? { previous: r.event.previous } : {}),
                  ...(r.event.trigger !== undefined ? { trigger: r.event.trigger } : {}),
                  ...(r.event.by !== undefined ? { by: r.event.by } : {}),
                  ...(r.event.problems !== undefined ? { problems: r.event.problems } : {}),
                },
              ]
            : [],
        )
      : [];
    return {
      hash: layer.policyHash,
      source: layer.policySource,
      agents: layer.engine.policy.agents.size,
      history,
    };
  }

  async function policy(res: ServerResponse, s: ConsoleSession) {
    page(res, 200, policyPage(s, await policyView()));
  }

  async function auditView(res: ServerResponse, s: ConsoleSession) {
    const audit = opts.audit;
    if (!audit) return page(res, 200, auditPage(s, { available: false }));
    const head = await audit.store.head();
    const cp = (await audit.store.checkpoints()).at(-1);
    const v: AuditView = {
      available: true,
      size: head.size,
      checkpoint: cp,
      keyId: audit.keyId,
      publicKeyPem: audit.publicKeyPem,
      ...(lastVerify ? { verification: lastVerify } : {}),
    };
    page(res, 200, auditPage(s, v));
  }

  function serveAsset(res: ServerResponse, name: string) {
    const type = ASSETS[name];
    const body = type ? assets.get(name) : undefined;
    if (!type || body === undefined) {
      res.writeHead(404, SECURITY_HEADERS).end();
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'content-length': body.length,
      'cache-control': 'no-cache',
    });
    res.end(body);
  }

  return {
    handle,
    live,
    close() {
      unsubscribe();
      live.close();
    },
  };
}

function loadAssets(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of Object.keys(ASSETS)) out.set(name, readFileSync(new URL(name, ASSET_DIR)));
  return out;
}

function relatedSummary(r: AuditRecord): { seq: number; time: number; type: string; summary: string } {
  const e = r.event;
  let summary = '';
  if (e?.type === 'outcome')
    summary = `${e.ok ? 'ran' : `failed: ${e.error ?? ''}`} in ${Math.round(e.durationMs)} ms`;
  else if (e?.type === 'approval')
    summary = `${e.status}${e.approver ? ` by ${e.approver}` : ''}${e.note ? `: ${e.note}` : ''}`;
  return { seq: r.seq, time: r.time, type: e?.type ?? 'pruned', summary };
}

function filterOf(q: URLSearchParams): LiveFilter {
  const f: LiveFilter = {};
  for (const k of ['agent', 'tool', 'effect', 'rule'] as const) {
    const v = q.get(k);
    if (v !== null && v !== '' && v.length <= 256) f[k] = v;
  }
  return f;
}

function reasonOf(form: URLSearchParams): string | undefined {
  const r = (form.get('reason') ?? '').trim().slice(0, 2000);
  return r === '' ? undefined : r;
}

function decode(seg: string | undefined): string {
  try {
    return decodeURIComponent(seg ?? '');
  } catch {
    return '';
  }
}

function durationText(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

/** Reads a url-encoded form of at most `max` bytes; undefined when it is larger or of another type. */
async function readForm(req: IncomingMessage, max: number): Promise<URLSearchParams | undefined> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return undefined;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) return undefined;
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function page(res: ServerResponse, status: number, body: Html) {
  const text = body.text;
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function json(res: ServerResponse, status: number, value: unknown) {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function redirect(res: ServerResponse, to: string) {
  res.writeHead(303, { ...SECURITY_HEADERS, location: to });
  res.end();
}

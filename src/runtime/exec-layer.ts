/**
 * The runtime every enforcement point calls: one pipeline, stop switch → decide (engine) → approvals →
 * limits → record. `authorize()` never rejects: each failure on any path is a deny Decision with a reason.
 */
import { type FSWatcher, watch } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { jsonDigest } from '../canonical-json.js';
import { compile, type Engine } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { type LoadResult, loadPolicyFile, loadPolicyObject } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { Action, Decision, EnforcementPoint, Json, Recorder, RecordOptions } from '../types.js';
import { ApprovalRequiredError, DeniedError, PolicyError } from './errors.js';
import type { ApprovalPort, LimitPort, LimitTicketPort, StatePort } from './ports.js';
import { DEFAULT_STORE, openStores, type StoreUrls } from './stores.js';

export interface ExecLayerOptions {
  /** Path to a YAML/JSON policy file, or a policy document object. */
  policy: string | Record<string, unknown>;
  /** Reload the policy file when it changes (validated whole, swapped atomically; failures keep the old one). */
  watch?: boolean;
  /**
   * One URL for all state, opened (and closed) by the runtime: `sqlite:./execlayer.db`, `postgres://…`,
   * `redis://…`, or `memory:` (nothing durable); or one URL per backend (`{ audit, approvals, limits, state }`,
   * e.g. PostgreSQL for the audit trail and approvals, Redis for limits and the stop switch; `auditKey`
   * names the signing key, default `./execlayer-audit.key` for PostgreSQL). Default: `$EXECLAYER_STORE`,
   * else `sqlite:./execlayer.db`, unless backends are given one by one below. `false` opens none: nothing
   * is recorded and a decision that carries limits is denied — for tests of the bare runtime only.
   */
  store?: string | StoreUrls | false;
  /** Where decisions and outcomes are recorded. Without one (and no store), decisions are not recorded. */
  recorder?: Recorder;
  /** Limit counters; without one, a decision that carries limits is denied (fail closed). */
  limits?: LimitPort;
  /** Pending approvals and grants; without one, `ask` stays `ask` with no request created. */
  approvals?: ApprovalPort;
  /** Suspension flags (the stop switch). */
  state?: StatePort;
  /** Called on policy reloads (ok or rejected) and on background recording failures. */
  onEvent?: (event: RuntimeEvent) => void;
  /** Clock, for tests. */
  now?: () => number;
}

export type RuntimeEvent =
  | { type: 'policy_loaded'; hash: string; source: string }
  | { type: 'policy_rejected'; source: string; problems: string[] }
  | { type: 'record_failed'; error: string };

/** Result of waiting for a pending approval. */
export type ApprovalWait = 'granted' | 'denied' | 'expired' | 'timeout';

export interface ExecLayer {
  /** Runs the pipeline — stop switch, decide, approvals, limits — and records the decision (durably
   *  before resolving when the action may run). Never rejects. */
  authorize(action: Action, opts?: { point?: EnforcementPoint }): Promise<Decision>;
  /** List filtering: true iff some allow/ask rule could let this agent call this tool. */
  visible(agent: string, tool: string): boolean;
  /**
   * Records the outcome of an allowed action and releases what its limits hold. The record carries the
   * digest of `result` (or `resultDigest`, when the result stayed elsewhere). `{ lazy: true }` when nothing
   * waits on it (see `RecordOptions`).
   */
  outcome(
    decision: Pick<Decision, 'id'>,
    o: { ok: boolean; error?: string; result?: unknown; resultDigest?: string; durationMs: number },
    options?: RecordOptions,
  ): Promise<void>;
  /**
   * The agent, tool and enforcement point of an allowed decision of this runtime whose outcome is not in
   * yet (the newest 65,536 are remembered), or undefined.
   */
  awaitingOutcome(decisionId: string): { agent: string; tool: string; point: EnforcementPoint } | undefined;
  /** Wraps fn so it runs only when allowed: deny → DeniedError; ask → ApprovalRequiredError. */
  guard<A extends { [k: string]: Json }, R>(
    fn: (args: A) => Promise<R>,
    meta: { agent: string; tool: string; session?: string; onBehalfOf?: string },
  ): (args: A) => Promise<R>;
  /** Waits until a pending approval is decided or the timeout passes; then call `authorize` again. */
  waitForApproval(
    approvalId: string,
    o: { timeoutMs: number; pollMs?: number; onProgress?: (elapsedMs: number) => void; signal?: AbortSignal },
  ): Promise<ApprovalWait>;
  /** The compiled engine in force (swapped atomically on reload). */
  readonly engine: Engine;
  readonly policyHash: string;
  readonly recorder: Recorder;
  /** Resolves when every decision recorded so far is durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const NO_RECORDER: Recorder = { record: async () => {} };
/** An allowed decision whose outcome is not in yet: what to name in the outcome and what to release. */
interface Awaiting {
  agent: string;
  tool: string;
  point: EnforcementPoint;
  ticket?: LimitTicketPort;
}
/** One decision on its way through the pipeline. */
interface Turn {
  action: Action;
  point: EnforcementPoint;
  /** The engine in force when the decision started (a reload does not change it midway). */
  engine: Engine;
}

/** A pipeline stage: takes the decision so far (none before `decide`), returns the next one. */
interface Stage {
  name: 'stop switch' | 'decide' | 'approvals' | 'limits';
  run(turn: Turn, d: Decision | undefined): Decision | undefined | Promise<Decision | undefined>;
}

/** The decision a stage after `decide` works on. */
function need(d: Decision | undefined): Decision {
  if (d === undefined) throw new Error('a pipeline stage ran before the decide stage');
  return d;
}

/** Records nothing waits on: denials, policy events (see `RecordOptions.lazy`). */
const LAZY: RecordOptions = { lazy: true };
/** Most allowed decisions awaiting their outcome that the runtime remembers. */
const MAX_INFLIGHT = 65_536;

/** Creates the runtime. Throws PolicyError when the first policy is invalid (a broken policy never starts). */
export async function createExecLayer(opts: ExecLayerOptions): Promise<ExecLayer> {
  await initFacts();
  const source = typeof opts.policy === 'string' ? opts.policy : '<object>';
  const loaded = await load(opts.policy);
  if (!loaded.ok) throw new PolicyError(loaded.problems.map(formatProblem));
  const engine = compile(loaded.policy);
  const piecemeal = opts.recorder || opts.limits || opts.approvals || opts.state;
  const url = opts.store ?? (piecemeal ? false : (process.env.EXECLAYER_STORE ?? DEFAULT_STORE));
  if (url === false) return new Runtime(opts, engine, source);
  const stores = await openStores(url);
  const merged: ExecLayerOptions = {
    ...opts,
    recorder: opts.recorder ?? stores.recorder,
    limits: opts.limits ?? stores.limits,
    approvals: opts.approvals ?? stores.approvals,
    state: opts.state ?? stores.state,
  };
  return new Runtime(merged, engine, source, () => stores.close());
}

async function load(policy: string | Record<string, unknown>): Promise<LoadResult> {
  return typeof policy === 'string' ? loadPolicyFile(policy) : loadPolicyObject(policy);
}

class Runtime implements ExecLayer {
  #engine: Engine;
  readonly recorder: Recorder;
  readonly #opts: ExecLayerOptions;
  /** Allowed decisions whose outcome is not in yet: what to name in the outcome and what to release. */
  readonly #inflight = new Map<string, Awaiting>();
  /**
   * The ids tracked last, oldest overwritten first: evicting through this ring is O(1), where taking a
   * Map's first entry walks every entry deleted before it (a decision API whose callers never report
   * outcomes made each call pay for tens of thousands of them).
   */
  readonly #order: Array<string | undefined> = new Array(MAX_INFLIGHT);
  #orderAt = 0;
  readonly #pending = new Set<Promise<void>>();
  readonly #now: () => number;
  #watcher: FSWatcher | undefined;
  #reloadTimer: NodeJS.Timeout | undefined;

  readonly #closeStores: (() => Promise<void>) | undefined;

  constructor(opts: ExecLayerOptions, engine: Engine, source: string, closeStores?: () => Promise<void>) {
    this.#opts = opts;
    this.#closeStores = closeStores;
    this.#engine = engine;
    this.recorder = opts.recorder ?? NO_RECORDER;
    this.#now = opts.now ?? Date.now;
    this.#background(
      this.recorder.record({ type: 'policy', status: 'loaded', policy: engine.hash, source }, LAZY),
    );
    if (opts.watch && typeof opts.policy === 'string') this.#watch(opts.policy);
  }

  get engine(): Engine {
    return this.#engine;
  }

  get policyHash(): string {
    return this.#engine.hash;
  }

  visible(agent: string, tool: string): boolean {
    return this.#engine.visible(agent, tool);
  }

  async authorize(action: Action, opts: { point?: EnforcementPoint } = {}): Promise<Decision> {
    const started = performance.now();
    const engine = this.#engine;
    const turn: Turn = { action, point: opts.point ?? 'sdk', engine };
    let d: Decision | undefined;
    try {
      for (const stage of this.#pipeline) {
        d = await stage.run(turn, d);
        // A deny is final: no later stage may turn it into anything else.
        if (d?.effect === 'deny') break;
      }
      if (d === undefined) throw new Error('the pipeline ended without a decision');
    } catch (e) {
      // INVARIANT: fail closed — any error on the way is a deny with a reason.
      d = denyFrom(engine.hash, 'internal_error', `internal error: ${message(e)}`);
    }
    const event = {
      type: 'decision' as const,
      decision: d,
      action: auditAction(action, engine),
      point: turn.point,
      latencyUs: Math.round((performance.now() - started) * 1000),
    };
    if (d.effect !== 'allow') {
      this.#background(this.recorder.record(event, LAZY));
      return d;
    }
    try {
      // INVARIANT: an allowed action is durably recorded before it runs.
      await this.recorder.record(event);
      const entry = this.#inflight.get(d.id);
      if (entry) {
        entry.agent = event.action.agent;
        entry.tool = event.action.tool;
      } else this.#track(d.id, { agent: event.action.agent, tool: event.action.tool, point: event.point });
      return d;
    } catch (e) {
      await this.#untrack(d.id, true);
      const denied = denyFrom(
        engine.hash,
        'store_error',
        `denied: the audit trail could not record this decision (${message(e)})`,
      );
      this.#background(this.recorder.record({ ...event, decision: denied }, LAZY));
      return denied;
    }
  }

  async outcome(
    decision: Pick<Decision, 'id'>,
    o: { ok: boolean; error?: string; result?: unknown; resultDigest?: string; durationMs: number },
    options?: RecordOptions,
  ): Promise<void> {
    const entry = await this.#untrack(decision.id, false);
    const resultDigest = o.result === undefined ? (o.resultDigest ?? '') : safeDigest(o.result);
    await this.recorder.record(
      {
        type: 'outcome',
        decisionId: decision.id,
        agent: entry?.agent ?? '',
        tool: entry?.tool ?? '',
        ok: o.ok,
        ...(o.error !== undefined ? { error: o.error.slice(0, 2000) } : {}),
        // A result with no JSON form (a function, a bigint) is recorded without a digest.
        ...(resultDigest ? { resultDigest } : {}),
        durationMs: o.durationMs,
      },
      options,
    );
  }

  awaitingOutcome(decisionId: string): { agent: string; tool: string; point: EnforcementPoint } | undefined {
    const e = this.#inflight.get(decisionId);
    return e && { agent: e.agent, tool: e.tool, point: e.point };
  }

  guard<A extends { [k: string]: Json }, R>(
    fn: (args: A) => Promise<R>,
    meta: { agent: string; tool: string; session?: string; onBehalfOf?: string },
  ): (args: A) => Promise<R> {
    return async (args: A) => {
      const d = await this.authorize({ ...meta, args }, { point: 'sdk' });
      if (d.effect === 'deny') throw new DeniedError(d);
      if (d.effect === 'ask') throw new ApprovalRequiredError(d);
      const t0 = performance.now();
      let result: R;
      try {
        result = await fn(args);
      } catch (e) {
        await this.outcome(d, { ok: false, error: message(e), durationMs: performance.now() - t0 });
        throw e;
      }
      await this.outcome(d, { ok: true, result, durationMs: performance.now() - t0 });
      return result;
    };
  }

  async waitForApproval(
    approvalId: string,
    o: { timeoutMs: number; pollMs?: number; onProgress?: (elapsedMs: number) => void; signal?: AbortSignal },
  ): Promise<ApprovalWait> {
    const store = this.#opts.approvals;
    if (!store) return 'denied';
    const start = this.#now();
    const poll = o.pollMs ?? 250;
    for (;;) {
      let status: string | undefined;
      try {
        status = (await store.get(approvalId))?.status;
      } catch {
        return 'denied';
      }
      if (status === 'granted') return 'granted';
      if (status === 'denied' || status === undefined) return 'denied';
      if (status === 'expired' || status === 'used') return 'expired';
      const elapsed = this.#now() - start;
      if (elapsed >= o.timeoutMs || o.signal?.aborted) return 'timeout';
      o.onProgress?.(elapsed);
      await new Promise((r) => setTimeout(r, Math.min(poll, o.timeoutMs - elapsed)));
    }
  }

  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async close(): Promise<void> {
    this.#watcher?.close();
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    await this.flush();
    await this.#closeStores?.();
  }

  /**
   * The stages of every decision, in order; `authorize` runs them, then the record stage (an allowed
   * decision is durably recorded before it is returned).
   *
   * INVARIANT: one pipeline — stop switch → decide → approvals → limits → record. Every action that will
   * run passes every stage. An approved call is turned into an allow by the approvals stage and only then
   * reaches the limits stage, so it is counted like any other call; a call that a limit refuses is
   * refused even though its grant was spent.
   */
  readonly #pipeline: readonly Stage[] = [
    { name: 'stop switch', run: (t) => this.#stopSwitch(t) },
    { name: 'decide', run: (t) => t.engine.decide(t.action, this.#now()) },
    { name: 'approvals', run: (t, d) => this.#approvals(t, need(d)) },
    { name: 'limits', run: (t, d) => this.#limits(t, need(d)) },
  ];

  /** A deny when the agent, or everyone, is stopped; otherwise nothing (the pipeline goes on). */
  async #stopSwitch({ action, engine }: Turn): Promise<Decision | undefined> {
    const state = this.#opts.state;
    // A malformed action has no agent to look up; the decide stage denies it.
    if (!state || typeof action?.agent !== 'string') return undefined;
    let s: { suspended: boolean; reason?: string; by?: string };
    try {
      s = await state.isSuspended(action.agent);
    } catch (e) {
      // INVARIANT: fail closed — a stop switch we cannot read counts as pressed.
      return denyFrom(engine.hash, 'store_error', `denied: cannot read the suspension state (${message(e)})`);
    }
    if (!s.suspended) return undefined;
    const why = `agent \`${action.agent}\` is suspended${s.by ? ` by ${s.by}` : ''}${s.reason ? `: ${s.reason}` : ''}; every action is denied until it is resumed`;
    return denyFrom(engine.hash, 'suspended', why);
  }

  /**
   * For an ask: consumes a grant for exactly this call (the decision becomes an allow, which the limits
   * stage then checks), or files a pending request. Anything else passes unchanged.
   */
  async #approvals({ action, engine }: Turn, d: Decision): Promise<Decision> {
    if (d.effect !== 'ask') return d;
    const store = this.#opts.approvals;
    if (!store) return d;
    const argsDigest = jsonDigest(action.args);
    const binding = {
      agent: action.agent,
      tool: action.tool,
      argsDigest,
      policy: d.policy,
      ...(action.session !== undefined ? { session: action.session } : {}),
    };
    const now = this.#now();
    const grant = await store.consumeGrant(binding, now);
    if (grant) {
      return {
        ...d,
        effect: 'allow',
        code: 'approval_granted',
        approvalId: grant.id,
        reason: `allowed: approval \`${grant.id}\` granted by ${grant.approver ?? 'an approver'} for exactly this call`,
      };
    }
    const approval = d.approval ?? { ttlMs: 15 * 60_000, uses: 1, approvers: [] };
    const req = await store.request(
      {
        ...binding,
        ...(action.onBehalfOf !== undefined ? { onBehalfOf: action.onBehalfOf } : {}),
        rule: d.rule ?? '',
        reason: d.reason,
        args: engine.redact(action.tool, action.args),
        ttlMs: approval.ttlMs,
        uses: approval.uses,
        approvers: approval.approvers,
        decisionId: d.id,
      },
      now,
    );
    return { ...d, approvalId: req.id };
  }

  /** For an action that will run (an allow, approved or not): consumes its limits, or denies. */
  async #limits({ action, point }: Turn, d: Decision): Promise<Decision> {
    // Shadow mode consumes limits only for what enforce mode would allow; an ask waits for its grant.
    const allowedForReal = d.effect === 'allow' && (d.wouldBe === undefined || d.wouldBe === 'allow');
    if (!allowedForReal || !d.limits || d.limits.length === 0) return d;
    const store = this.#opts.limits;
    if (!store) {
      return {
        ...d,
        effect: 'deny',
        code: 'store_error',
        reason: 'denied: the policy sets limits but no limit store is configured',
      };
    }
    const r = await store.consume(d.limits, action, d.roles ?? [], this.#now());
    if (r.ok) {
      this.#track(d.id, { agent: action.agent, tool: action.tool, point, ticket: r.ticket });
      return d;
    }
    const code =
      r.code === 'limit_exceeded'
        ? 'limit_exceeded'
        : r.code === 'store_error'
          ? 'store_error'
          : 'evaluation_error';
    if (d.mode === 'shadow')
      return { ...d, wouldBe: 'deny', reason: `shadow mode: would deny — ${r.reason}` };
    const spent = d.approvalId ? ` (approval \`${d.approvalId}\` was used by this refused call)` : '';
    return {
      ...d,
      effect: 'deny',
      code,
      reason: `${r.reason}${spent}`,
      ...(r.retryAfterMs >= 0 ? { retryAfterMs: r.retryAfterMs } : {}),
    };
  }

  /**
   * Remembers an allowed decision until its outcome arrives. Callers that never report outcomes (the
   * decision API) must not grow memory without bound: past the cap the oldest entries are dropped and
   * their concurrency slots freed (the stores also reclaim slots by lease).
   */
  #track(id: string, entry: Awaiting): void {
    this.#inflight.set(id, entry);
    const slot = this.#orderAt;
    this.#orderAt = (slot + 1) % MAX_INFLIGHT;
    const oldest = this.#order[slot];
    this.#order[slot] = id;
    // The id this slot held was tracked MAX_INFLIGHT calls ago; if its outcome never came, forget it.
    if (oldest === undefined || oldest === id) return;
    const dropped = this.#inflight.get(oldest);
    if (dropped === undefined) return;
    this.#inflight.delete(oldest);
    if (dropped.ticket) void this.#opts.limits?.release(dropped.ticket, { refund: false });
  }

  /**
   * Takes a decision off the awaiting list — at once, before anything is awaited, so a second report of the
   * same outcome finds nothing — then releases what its limits hold. Returns what was awaiting, if anything.
   */
  async #untrack(decisionId: string, refund: boolean): Promise<Awaiting | undefined> {
    const entry = this.#inflight.get(decisionId);
    this.#inflight.delete(decisionId);
    if (entry?.ticket && this.#opts.limits) await this.#opts.limits.release(entry.ticket, { refund });
    return entry;
  }

  #background(p: Promise<void>): void {
    const tracked = p.then(
      () => undefined,
      (e: unknown) => this.#opts.onEvent?.({ type: 'record_failed', error: message(e) }),
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  #watch(path: string): void {
    const reload = async () => {
      const r = await loadPolicyFile(path);
      if (!r.ok) {
        const problems = r.problems.map(formatProblem);
        // The old policy stays in force: a broken new policy never replaces a working one.
        this.#opts.onEvent?.({ type: 'policy_rejected', source: path, problems });
        this.#background(
          this.recorder.record({ type: 'policy', status: 'rejected', source: path, problems }, LAZY),
        );
        return;
      }
      if (r.policy.hash === this.#engine.hash) return;
      this.#engine = compile(r.policy);
      this.#opts.onEvent?.({ type: 'policy_loaded', hash: r.policy.hash, source: path });
      this.#background(
        this.recorder.record({ type: 'policy', status: 'loaded', policy: r.policy.hash, source: path }, LAZY),
      );
    };
    this.#watcher = watch(path, () => {
      if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
      this.#reloadTimer = setTimeout(() => void reload(), 50);
    });
    this.#watcher.on('error', (e) =>
      this.#opts.onEvent?.({ type: 'policy_rejected', source: path, problems: [message(e)] }),
    );
  }
}

function denyFrom(policy: string, code: Decision['code'], reason: string): Decision {
  return { id: crypto.randomUUID(), effect: 'deny', rule: null, reason, policy, mode: 'enforce', code };
}

function auditAction(action: Action, engine: Engine) {
  const valid = action !== null && typeof action === 'object';
  const args = valid && action.args && typeof action.args === 'object' ? action.args : {};
  return {
    agent: valid ? String(action.agent) : '',
    tool: valid ? String(action.tool) : '',
    ...(valid && typeof action.session === 'string' ? { session: action.session } : {}),
    ...(valid && typeof action.onBehalfOf === 'string' ? { onBehalfOf: action.onBehalfOf } : {}),
    ...(valid && Array.isArray(action.delegation) ? { delegation: action.delegation } : {}),
    args: safeRedact(engine, action, args),
    argsDigest: safeDigest(args),
  };
}

function safeRedact(engine: Engine, action: Action, args: { [k: string]: Json }): Json {
  try {
    return engine.redact(String(action.tool), args);
  } catch {
    return '[unrecordable]';
  }
}

function safeDigest(args: unknown): string {
  try {
    return jsonDigest(args);
  } catch {
    return '';
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

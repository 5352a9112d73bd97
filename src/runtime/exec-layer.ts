/**
 * The runtime every enforcement point calls: one pipeline, stop switch → decide (engine) → flows →
 * approvals → limits → record. `authorize()` never rejects: each failure on any path is a deny Decision with a reason.
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { jsonDigest } from '../canonical-json.js';
import { compile, type Engine } from '../engine/compile.js';
import { denyDecision } from '../engine/deny.js';
import { messageOf } from '../errors.js';
import { initFacts } from '../facts/index.js';
import { flowVerdict } from '../flows/decide.js';
import { labelResult } from '../flows/deliver.js';
import { join as joinLabels, labelJson, parseLabel } from '../flows/label.js';
import { lookup } from '../flows/match.js';
import {
  type FlowDelta,
  type FlowState,
  foldState,
  type SessionRecord,
  sessionScope,
} from '../flows/state.js';
import type { CompiledFlows } from '../flows/types.js';
import { type PolicyRead, readPolicy } from '../policy/bundle-read.js';
import { type LoadResult, loadPolicyObject, loadPolicyRead } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { PolicyKeyError, parsePolicyKey } from '../policy/signature.js';
import type {
  Action,
  Decision,
  EnforcementPoint,
  Json,
  PolicyEvent,
  Recorder,
  RecordOptions,
} from '../types.js';
import { ApprovalRequiredError, DeniedError, PolicyError } from './errors.js';
import { type EventListener, type EventTap, tapOf } from './events.js';
import { PolicyWatcher, type PolicyWatchTiming, readSettled } from './policy-watch.js';
import type { ApprovalPort, LimitPort, LimitTicketPort, SessionPort, StatePort } from './ports.js';
import { DEFAULT_STORE, openStores, type StoreUrls } from './stores.js';

export interface ExecLayerOptions {
  /**
   * Path to a YAML/JSON policy file, a policy bundle (a directory, or a file with `include:`), or a
   * policy document object.
   */
  policy: string | Record<string, unknown>;
  /**
   * Require a signed policy: the Ed25519 public key (PEM text, or the path of a PEM file) that the
   * detached signature `<policy>.sig` (`execlayer policy sign`) must verify against, at start and at
   * every reload. A policy whose signature is missing or does not verify never starts and never replaces
   * the one in force.
   */
  policyKey?: string | KeyObject;
  /**
   * Reload the policy file when the content its path names changes: atomic replaces, symlink swaps and
   * in-place writes alike. Content is loaded once it stayed unchanged for `settleMs` (default 250) and
   * validates whole; a broken candidate leaves the policy in force. The path is read every `pollMs`
   * (default 100), so a change applies within about 0.4 s of the last write. See `reload()` to force one.
   */
  watch?: boolean | PolicyWatchTiming;
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
  /** Session flow state; a policy with `flows:` and no session store refuses what its flow rules name. */
  sessions?: SessionPort;
  /** Called on policy reloads (ok or rejected) and on background recording failures. */
  onEvent?: (event: RuntimeEvent) => void;
  /** Clock, for tests. */
  now?: () => number;
}

/** What started a policy reload: the file watch, SIGHUP, the operator API, or a `reload()` call. */
export type ReloadTrigger = 'watch' | 'signal' | 'api' | 'manual';

/**
 * What a policy reload did. `policy` is the hash in force afterwards: the new one (`loaded`), or the one
 * that stayed (`unchanged`: same policy, e.g. only comments changed; `rejected`: the candidate was invalid,
 * unreadable or still being written). `recorded` says whether the audit record of it was written.
 */
export type ReloadOutcome = {
  policy: string;
  source: string;
  trigger: ReloadTrigger;
  recorded: boolean;
} & (
  | { status: 'loaded'; previous: string }
  | { status: 'unchanged' }
  | { status: 'rejected'; problems: string[] }
);

/** Runtime events; `hash` is the policy in force after the event. See `formatRuntimeEvent`. */
export type RuntimeEvent =
  | { type: 'policy_loaded'; hash: string; previous: string; source: string; trigger: ReloadTrigger }
  | { type: 'policy_unchanged'; hash: string; source: string; trigger: ReloadTrigger }
  | { type: 'policy_rejected'; hash: string; source: string; trigger: ReloadTrigger; problems: string[] }
  | { type: 'record_failed'; error: string };

/** One log line for a runtime event, naming the policy hashes (old → new) or why a candidate was refused. */
export function formatRuntimeEvent(e: RuntimeEvent): string {
  switch (e.type) {
    case 'policy_loaded':
      return `policy reloaded (${e.trigger}) from ${e.source}: ${e.previous} → ${e.hash}`;
    case 'policy_unchanged':
      return `policy reload (${e.trigger}) from ${e.source}: unchanged, ${e.hash} stays in force`;
    case 'policy_rejected':
      return `policy reload (${e.trigger}) from ${e.source} rejected, ${e.hash} stays in force: ${e.problems.join('; ')}`;
    case 'record_failed':
      return `audit record failed: ${e.error}`;
  }
}

/** Result of waiting for a pending approval. */
export type ApprovalWait = 'granted' | 'denied' | 'expired' | 'timeout';

export interface ExecLayer {
  /** Runs the pipeline — stop switch, decide, approvals, limits — and records the decision (durably
   *  before resolving when the action may run). Never rejects. */
  authorize(action: Action, opts?: { point?: EnforcementPoint }): Promise<Decision>;
  /** List filtering: true iff some allow/ask rule could let this agent call this tool. */
  visible(agent: string, tool: string): boolean;
  /** Whether the stop switch holds `agent` (or everyone); a switch that cannot be read counts as pressed. */
  stopped(agent: string): Promise<boolean>;
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
  /**
   * Hands a result of an allowed call over to the flow policy before the agent sees it: labels it, drops or
   * redacts the parts the policy withholds, adds the label delta to the session and records it in the
   * audit trail — durably, before it resolves. `ok: false` means the result must not be shown (fail
   * closed: the session state could not be updated). Without `flows:` in the policy the result passes as is.
   * The decision API, which never sees results, gives `label` (and `resultDigest`) instead: it can only
   * raise the label the policy declares for the tool.
   */
  deliver(
    decision: Pick<Decision, 'id'>,
    delivered: { result: unknown } | { resultDigest: string; label?: unknown },
  ): Promise<Delivered>;
  /**
   * Endorses (makes trusted) or declassifies (adds readers to) one result a session received, named by
   * its digest. Only an approval bound to exactly this session, result digest and change does it: the
   * first call files the request (`pending`); once an approver grants it, the next call applies it
   * (`endorsed`), records it in the audit trail and spends the grant. Never rejects.
   */
  endorse(o: EndorseRequest): Promise<EndorseOutcome>;
  /** Wraps fn so it runs only when allowed: deny → DeniedError; ask → ApprovalRequiredError. */
  guard<A extends { [k: string]: Json }, R>(
    fn: (args: A) => Promise<R>,
    meta: { agent: string; tool: string; session?: string; onBehalfOf?: string },
  ): (args: A) => Promise<R>;
  /**
   * Reloads the policy file now (SIGHUP, the operator API): reads it until its content stays unchanged
   * for the settle interval (at most 5 s), validates it whole and swaps it in, or keeps the policy in force.
   * Records the outcome in the audit trail, applied or not. `by` names who asked. Never rejects.
   */
  reload(o?: { trigger?: ReloadTrigger; by?: string }): Promise<ReloadOutcome>;
  /** Waits until a pending approval is decided or the timeout passes; then call `authorize` again. */
  waitForApproval(
    approvalId: string,
    o: { timeoutMs: number; pollMs?: number; onProgress?: (elapsedMs: number) => void; signal?: AbortSignal },
  ): Promise<ApprovalWait>;
  /**
   * Subscribes to every audit event recorded through this runtime (and through the stores opened with it):
   * decisions, outcomes, approvals, stop-switch changes, tool pins, policy reloads. Listeners run
   * synchronously and must be cheap; one that throws is skipped. Returns the unsubscribe function.
   */
  subscribe(listener: EventListener): () => void;
  /** The compiled engine in force (swapped atomically on reload). */
  readonly engine: Engine;
  readonly policyHash: string;
  /** Where the policy came from (its file path, or `<object>`). */
  readonly policySource: string;
  /** Records to the configured recorder and feeds `subscribe` (see `EventTap`). */
  readonly recorder: EventTap;
  /** Resolves when every decision recorded so far is durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** What `deliver` decided: the result the agent may see, or why it may see none. */
export type Delivered =
  | { ok: true; result: unknown; label?: Json; withheld?: number }
  | { ok: false; reason: string };

/** Which result of which session to endorse or declassify. */
export interface EndorseRequest {
  agent: string;
  session?: string;
  onBehalfOf?: string;
  /** sha256 of the result as delivered (the flow record's `resultDigest`). */
  resultDigest: string;
  integrity?: 'trusted';
  readers?: string[];
}

export type EndorseOutcome =
  | { status: 'pending' | 'endorsed'; approvalId: string }
  | { status: 'refused'; reason: string };

/** The tool name endorsement approvals are filed under. */
export const ENDORSE_TOOL = 'execlayer.endorse';

const NO_RECORDER: Recorder = { record: async () => {} };
/** An allowed decision whose outcome is not in yet: what to name in the outcome and what to release. */
interface Awaiting {
  agent: string;
  tool: string;
  point: EnforcementPoint;
  ticket?: LimitTicketPort;
  /** The action, for labelling its result (flow policies). */
  action?: Action;
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
  name: 'stop switch' | 'decide' | 'flows' | 'approvals' | 'limits';
  run(turn: Turn, d: Decision | undefined): Decision | undefined | Promise<Decision | undefined>;
}

/** The decision a stage after `decide` works on. */
function need(d: Decision | undefined): Decision {
  if (d === undefined) throw new Error('a pipeline stage ran before the decide stage');
  return d;
}

/** Records nothing waits on: denials, policy events (see `RecordOptions.lazy`). */
const LAZY: RecordOptions = { lazy: true };
/** Most folded session states kept. */
const MAX_FOLDS = 10_000;
/** Most allowed decisions awaiting their outcome that the runtime remembers. */
const MAX_INFLIGHT = 65_536;

/** Creates the runtime. Throws PolicyError when the first policy is invalid (a broken policy never starts). */
export async function createExecLayer(opts: ExecLayerOptions): Promise<ExecLayer> {
  await initFacts();
  const source = typeof opts.policy === 'string' ? opts.policy : '<object>';
  const publicKey = policyKeyOf(opts);
  const first = await loadFirst(opts.policy, publicKey);
  const loaded = first.result;
  if (!loaded.ok) throw new PolicyError(loaded.problems.map(formatProblem));
  const engine = compile(loaded.policy);
  const piecemeal = opts.recorder || opts.limits || opts.approvals || opts.state || opts.sessions;
  const url = opts.store ?? (piecemeal ? false : (process.env.EXECLAYER_STORE ?? DEFAULT_STORE));
  if (url === false) return new Runtime(opts, engine, source, first.read, publicKey);
  const stores = await openStores(url);
  const merged: ExecLayerOptions = {
    ...opts,
    recorder: opts.recorder ?? stores.recorder,
    limits: opts.limits ?? stores.limits,
    approvals: opts.approvals ?? stores.approvals,
    state: opts.state ?? stores.state,
    ...((opts.sessions ?? stores.sessions) ? { sessions: opts.sessions ?? stores.sessions } : {}),
  };
  return new Runtime(merged, engine, source, first.read, publicKey, () => stores.close());
}

/** The public key a signed policy must verify against, read once at start. Throws PolicyError. */
function policyKeyOf(opts: ExecLayerOptions): KeyObject | undefined {
  const key = opts.policyKey;
  if (key === undefined) return undefined;
  if (typeof opts.policy !== 'string')
    throw new PolicyError(['`policyKey` needs a policy path: a policy object has no signature']);
  try {
    if (typeof key !== 'string')
      return parsePolicyKey(key.export({ type: 'spki', format: 'pem' }).toString(), 'public', 'policyKey');
    const pem = key.includes('-----BEGIN') ? key : readFileSync(key, 'utf8');
    return parsePolicyKey(
      pem,
      pem.includes('PRIVATE KEY') ? 'private' : 'public',
      key.includes('-----BEGIN') ? 'policyKey' : key,
    );
  } catch (e) {
    const why =
      e instanceof PolicyKeyError ? e.message : `cannot read policy key \`${key}\`: ${messageOf(e)}`;
    throw new PolicyError([why], { cause: e });
  }
}

/** The first policy, and the read it came from (where the watch starts). */
async function loadFirst(
  policy: string | Record<string, unknown>,
  publicKey: KeyObject | undefined,
): Promise<{ result: LoadResult; read?: PolicyRead }> {
  if (typeof policy !== 'string') return { result: loadPolicyObject(policy) };
  const read = await readPolicy(policy, { signature: publicKey !== undefined });
  return { result: loadPolicyRead(read, publicKey ? { publicKey } : {}), read };
}

/** How long a forced reload waits for the file to stop changing. */
const FORCED_RELOAD_TIMEOUT_MS = 5000;

class Runtime implements ExecLayer {
  #engine: Engine;
  readonly recorder: EventTap;
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
  readonly #source: string;
  readonly #timing: PolicyWatchTiming;
  /** The key a signed policy must verify against; unset when policies are not signed. */
  readonly #publicKey: KeyObject | undefined;
  #watcher: PolicyWatcher | undefined;
  /** Reloads run one after another, in the order they were asked for. */
  #reloads: Promise<unknown> = Promise.resolve();

  readonly #closeStores: (() => Promise<void>) | undefined;
  /** Digests of results `deliver` computed, so the outcome record does not digest them again. */
  readonly #digests = new WeakMap<object, string>();
  /**
   * Folded session states by scope. A store's record is two grow-only sets, so its sizes and its first and
   * last delta name it: a hit is exactly the fold of what the store returned (a forgotten and regrown
   * session starts with another delta).
   */
  readonly #folds = new Map<string, { key: string; state: FlowState }>();

  constructor(
    opts: ExecLayerOptions,
    engine: Engine,
    source: string,
    first: PolicyRead | undefined,
    publicKey: KeyObject | undefined,
    closeStores?: () => Promise<void>,
  ) {
    this.#opts = opts;
    this.#publicKey = publicKey;
    this.#closeStores = closeStores;
    this.#engine = engine;
    this.#source = source;
    this.#timing = typeof opts.watch === 'object' ? opts.watch : {};
    // Stores opened with the same tap (`openStores`) feed the same subscribers.
    this.recorder = tapOf(opts.recorder ?? NO_RECORDER);
    this.#now = opts.now ?? Date.now;
    this.#background(
      this.recorder.record(
        { type: 'policy', status: 'loaded', policy: engine.hash, source, trigger: 'start' },
        LAZY,
      ),
    );
    if (opts.watch && typeof opts.policy === 'string' && first) {
      // Starts from the content the first policy was loaded from: a change since then is seen at once.
      this.#watcher = new PolicyWatcher(
        opts.policy,
        { ...this.#timing, signature: publicKey !== undefined },
        (read) => this.#serial(() => this.#consider(read, 'watch')).then(() => undefined),
        first,
      );
    }
  }

  get engine(): Engine {
    return this.#engine;
  }

  get policyHash(): string {
    return this.#engine.hash;
  }

  get policySource(): string {
    return this.#source;
  }

  subscribe(listener: EventListener): () => void {
    return this.recorder.subscribe(listener);
  }

  visible(agent: string, tool: string): boolean {
    return this.#engine.visible(agent, tool);
  }

  /**
   * Whether the stop switch holds `agent` (or everyone), for list filtering: a stopped agent is shown no
   * tool. INVARIANT: fail closed — a stop switch that cannot be read counts as pressed.
   */
  async stopped(agent: string): Promise<boolean> {
    const state = this.#opts.state;
    if (!state) return false;
    try {
      return (await state.isSuspended(agent)).suspended;
    } catch {
      return true;
    }
  }

  async authorize(action: Action, opts: { point?: EnforcementPoint } = {}): Promise<Decision> {
    const started = performance.now();
    const engine = this.#engine;
    const turn: Turn = { action, point: opts.point ?? 'sdk', engine };
    let d: Decision | undefined;
    let at: Stage['name'] = 'stop switch';
    try {
      for (const stage of this.#pipeline) {
        at = stage.name;
        const next = stage.run(turn, d);
        // A synchronous stage (decide) costs no extra turn of the microtask queue.
        d = next instanceof Promise ? await next : next;
        // A deny is final: no later stage may turn it into anything else.
        if (d?.effect === 'deny') break;
      }
      if (d === undefined) throw new Error('the pipeline ended without a decision');
    } catch (e) {
      // INVARIANT: fail closed — any error on the way is a deny with a reason.
      d = denyDecision('internal_error', `internal error in the ${at} stage: ${messageOf(e)}`, engine.hash);
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
        entry.action = action;
      } else
        this.#track(d.id, { agent: event.action.agent, tool: event.action.tool, point: event.point, action });
      return d;
    } catch (e) {
      await this.#untrack(d.id, true);
      const denied = denyDecision(
        'store_error',
        `denied: the audit trail could not record this decision (${messageOf(e)})`,
        engine.hash,
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
    const known = o.result !== null && typeof o.result === 'object' ? this.#digests.get(o.result) : undefined;
    const resultDigest = o.result === undefined ? (o.resultDigest ?? '') : (known ?? safeDigest(o.result));
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
        await this.outcome(d, { ok: false, error: messageOf(e), durationMs: performance.now() - t0 });
        throw e;
      }
      // The wrapped function's result goes through the flow policy before the caller sees it.
      const seen = await this.deliver(d, { result });
      await this.outcome(d, { ok: seen.ok, result, durationMs: performance.now() - t0 });
      if (!seen.ok) throw new DeniedError(denyDecision('store_error', seen.reason, this.#engine.hash));
      return seen.result as R;
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

  reload(o: { trigger?: ReloadTrigger; by?: string } = {}): Promise<ReloadOutcome> {
    const trigger = o.trigger ?? 'manual';
    const path = this.#opts.policy;
    return this.#serial(async () => {
      if (typeof path !== 'string') {
        return this.#reject(trigger, ['the policy was given as an object: there is no file to reload'], o.by);
      }
      const { read, settled } = await readSettled(path, {
        ...this.#timing,
        signature: this.#publicKey !== undefined,
        timeoutMs: FORCED_RELOAD_TIMEOUT_MS,
      });
      // The watch need not hand this content over again.
      this.#watcher?.handled(read);
      if (!settled) {
        const problem = `the policy file kept changing for ${FORCED_RELOAD_TIMEOUT_MS / 1000} s: it is still being written and was not loaded`;
        return this.#reject(trigger, [problem], o.by);
      }
      return this.#consider(read, trigger, o.by);
    });
  }

  async close(): Promise<void> {
    this.#watcher?.close();
    await this.#reloads;
    await this.flush();
    await this.#closeStores?.();
  }

  /**
   * The stages of every decision, in order; `authorize` runs them, then the record stage (an allowed
   * decision is durably recorded before it is returned).
   *
   * INVARIANT: one pipeline — stop switch → decide → flows → approvals → limits → record. Every action
   * that will run passes every stage. An approved call is turned into an allow by the approvals stage and only then
   * reaches the limits stage, so it is counted like any other call; a call that a limit refuses is
   * refused even though its grant was spent.
   */
  readonly #pipeline: readonly Stage[] = [
    // Each stage answers at once, without a turn of the microtask queue, when it has nothing to do.
    { name: 'stop switch', run: (t) => (this.#opts.state ? this.#stopSwitch(t) : undefined) },
    { name: 'decide', run: (t) => t.engine.decide(t.action, this.#now()) },
    // INVARIANT: flows only tighten — an allow may become ask or deny, an ask deny; nothing becomes allow
    // here (only a grant in the approvals stage does). The session state is read here and passed in:
    // the engine and the flow evaluator stay pure.
    {
      name: 'flows',
      run: (t, d) => (t.engine.policy.flows && need(d).effect !== 'deny' ? this.#flows(t, need(d)) : d),
    },
    { name: 'approvals', run: (t, d) => (need(d).effect === 'ask' ? this.#approvals(t, need(d)) : d) },
    { name: 'limits', run: (t, d) => (need(d).limits?.length ? this.#limits(t, need(d)) : d) },
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
      return denyDecision(
        'store_error',
        `denied: cannot read the suspension state (${messageOf(e)})`,
        engine.hash,
      );
    }
    if (!s.suspended) return undefined;
    const why = `agent \`${action.agent}\` is suspended${s.by ? ` by ${s.by}` : ''}${s.reason ? `: ${s.reason}` : ''}; every action is denied until it is resumed`;
    return denyDecision('suspended', why, engine.hash);
  }

  /** The fold of a session's record, from the cache when the record is the one folded last. */
  #folded(scope: string, record: SessionRecord, levels: number): FlowState {
    const d = record.deltas;
    const key = `${d.length}:${record.endorsements.length}:${d[0]?.id ?? ''}:${d[d.length - 1]?.id ?? ''}:${levels}`;
    const hit = this.#folds.get(scope);
    if (hit?.key === key) return hit.state;
    const state = foldState(record, levels);
    if (this.#folds.size >= MAX_FOLDS) {
      const oldest = this.#folds.keys().next().value;
      if (oldest !== undefined) this.#folds.delete(oldest);
    }
    this.#folds.delete(scope);
    this.#folds.set(scope, { key, state });
    return state;
  }

  /** Applies the flow policy's verdict on this call, given the session's state. */
  async #flows({ action, engine }: Turn, d: Decision): Promise<Decision> {
    const flows = engine.policy.flows;
    // Only calls a flow rule names read the session state: cost in proportion to the rules that match.
    if (!flows || !namedByFlows(flows, action.tool)) return d;
    const store = this.#opts.sessions;
    let verdict: ReturnType<typeof flowVerdict>;
    try {
      if (!store) throw new Error('the policy has flow rules but no session store is configured');
      const scope = sessionScope(action, flows.scope);
      const state = this.#folded(scope, await store.load(scope), flows.levels.length);
      verdict = flowVerdict(flows, action, state, this.#now());
    } catch (e) {
      // INVARIANT: fail closed — a session state we cannot read refuses the call.
      return {
        ...d,
        effect: 'deny',
        code: 'store_error',
        reason: `denied: cannot read this session's flow state (${messageOf(e)})`,
      };
    }
    if (!verdict) return d;
    const shadow = flows.mode === 'shadow' || d.mode === 'shadow';
    const flow = { ...verdict, applied: !shadow };
    if (shadow) {
      const was = d.wouldBe ?? d.effect;
      const wouldBe = verdict.effect === 'deny' || was === 'deny' ? 'deny' : 'ask';
      return {
        ...d,
        flow,
        wouldBe,
        reason: `${d.reason} (flow shadow mode: would ${wouldBe} — ${verdict.reason})`,
      };
    }
    if (verdict.effect === 'deny') {
      const { limits: _spent, ...rest } = d;
      return {
        ...rest,
        effect: 'deny',
        code: 'denied_by_flow',
        rule: verdict.rule,
        reason: verdict.reason,
        flow,
      };
    }
    if (d.effect === 'ask') return { ...d, flow, reason: `${d.reason}; ${verdict.reason}` };
    return { ...d, effect: 'ask', code: 'asked', rule: verdict.rule, reason: verdict.reason, flow };
  }

  async deliver(
    decision: Pick<Decision, 'id'>,
    delivered: { result: unknown } | { resultDigest: string; label?: unknown },
  ): Promise<Delivered> {
    const engine = this.#engine;
    const flows = engine.policy.flows;
    const given = 'result' in delivered ? delivered.result : undefined;
    if (!flows) return { ok: true, result: given };
    try {
      const entry = this.#inflight.get(decision.id);
      // INVARIANT: fail closed — a result with no allowed call we know of is not shown.
      if (!entry?.action)
        throw new Error(`decision \`${decision.id}\` is not an allowed call awaiting its result`);
      const action = entry.action;
      const store = this.#opts.sessions;
      if (!store) throw new Error('the policy has flow rules but no session store is configured');
      const scope = sessionScope(action, flows.scope);
      const now = this.#now();
      const state = this.#folded(scope, await store.load(scope), flows.levels.length);
      const d = labelResult(flows, action, given, state, now);
      let { label } = d;
      let resultDigest: string;
      if ('result' in delivered) {
        resultDigest = safeDigest(d.result);
        // The outcome record digests the result the upstream returned; unchanged, it is this one.
        if (d.result === given && given !== null && typeof given === 'object')
          this.#digests.set(given, resultDigest);
      } else {
        resultDigest = delivered.resultDigest;
        // A label reported with the outcome can only raise the declared one; a malformed one raises fully.
        if (delivered.label !== undefined) {
          const reported = parseLabel(delivered.label, flows.levels);
          label = joinLabels(
            label,
            reported ?? { integrity: 'untrusted', level: flows.levels.length - 1, readers: [], tags: [] },
          );
        }
      }
      const delta: FlowDelta = {
        id: `${decision.id}:${resultDigest}`,
        decisionId: decision.id,
        tool: action.tool,
        resultDigest,
        at: now,
        label,
        ...(Object.keys(d.seen).length > 0 && 'result' in delivered ? { seen: d.seen } : {}),
        ...(d.steps.length > 0 ? { steps: d.steps } : {}),
      };
      await store.append(scope, delta);
      // INVARIANT: the label delta is in the audit trail before the agent sees the result.
      await this.recorder.record({
        type: 'flow',
        status: 'delivered',
        agent: action.agent,
        tool: action.tool,
        ...(action.session !== undefined ? { session: action.session } : {}),
        ...(action.onBehalfOf !== undefined ? { onBehalfOf: action.onBehalfOf } : {}),
        scope,
        decisionId: decision.id,
        delta: { ...delta, label: labelJson(label, flows.levels) } as unknown as Json,
        ...(d.withheld.count > 0 ? { withheld: d.withheld } : {}),
        ...(flows.mode === 'shadow' ? { shadow: true } : {}),
      });
      return {
        ok: true,
        // Shadow mode withholds nothing: it records what enforcement would have withheld.
        result: flows.mode === 'shadow' ? given : d.result,
        label: labelJson(label, flows.levels) as unknown as Json,
        ...(d.withheld.count > 0 ? { withheld: d.withheld.count } : {}),
      };
    } catch (e) {
      return {
        ok: false,
        reason: `result withheld: the session's flow state could not be updated (${messageOf(e)})`,
      };
    }
  }

  async endorse(o: EndorseRequest): Promise<EndorseOutcome> {
    const engine = this.#engine;
    const flows = engine.policy.flows;
    const store = this.#opts.sessions;
    const approvals = this.#opts.approvals;
    if (!flows || !store || !approvals)
      return {
        status: 'refused',
        reason: 'endorsement needs a flow policy, a session store and an approval store',
      };
    if (o.integrity !== 'trusted' && !(o.readers && o.readers.length > 0))
      return { status: 'refused', reason: 'say what to endorse: `integrity: trusted` and/or `readers`' };
    try {
      const scope = sessionScope(o, flows.scope);
      const record = await store.load(scope);
      const delta = record.deltas.find((d) => d.resultDigest === o.resultDigest);
      if (!delta)
        return {
          status: 'refused',
          reason: `this session received no result with digest \`${o.resultDigest}\``,
        };
      const change = {
        resultDigest: o.resultDigest,
        ...(o.integrity ? { integrity: o.integrity } : {}),
        ...(o.readers ? { readers: [...o.readers].map((r) => r.toLowerCase()).sort() } : {}),
      };
      // INVARIANT: an endorsement is bound to exactly this session, result digest and change.
      const binding = {
        agent: o.agent,
        tool: ENDORSE_TOOL,
        argsDigest: jsonDigest({ scope, ...change }),
        policy: engine.hash,
        ...(o.session !== undefined ? { session: o.session } : {}),
      };
      const now = this.#now();
      const grant = await approvals.consumeGrant(binding, now);
      if (!grant) {
        const what = [
          o.integrity ? 'trust' : '',
          o.readers?.length ? `readers ${change.readers?.join(', ')}` : '',
        ]
          .filter(Boolean)
          .join(' and ');
        const req = await approvals.request(
          {
            ...binding,
            ...(o.onBehalfOf !== undefined ? { onBehalfOf: o.onBehalfOf } : {}),
            rule: 'flows.endorse',
            reason: `endorse the result of \`${delta.tool}\` (decision ${delta.decisionId}, digest ${o.resultDigest}): ${what}`,
            args: change as unknown as Json,
            ttlMs: 15 * 60_000,
            uses: 1,
            approvers: [],
            decisionId: delta.decisionId,
          },
          now,
        );
        return { status: 'pending', approvalId: req.id };
      }
      const endorsement = { ...change, approvalId: grant.id, at: now };
      await store.endorse(scope, endorsement);
      await this.recorder.record({
        type: 'flow',
        status: 'endorsed',
        agent: o.agent,
        tool: delta.tool,
        ...(o.session !== undefined ? { session: o.session } : {}),
        ...(o.onBehalfOf !== undefined ? { onBehalfOf: o.onBehalfOf } : {}),
        scope,
        decisionId: delta.decisionId,
        endorsement: endorsement as unknown as Json,
      });
      return { status: 'endorsed', approvalId: grant.id };
    } catch (e) {
      return { status: 'refused', reason: `endorsement failed: ${messageOf(e)}` };
    }
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
      this.#track(d.id, { agent: action.agent, tool: action.tool, point, ticket: r.ticket, action });
      return d;
    }
    const code =
      r.code === 'limit_exceeded'
        ? 'limit_exceeded'
        : r.code === 'store_error'
          ? 'store_error'
          : 'evaluation_error';
    if (d.mode === 'shadow')
      return { ...d, wouldBe: 'deny', code, reason: `shadow mode: would deny — ${r.reason}` };
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
      (e: unknown) => this.#opts.onEvent?.({ type: 'record_failed', error: messageOf(e) }),
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  /** Runs reloads one at a time, in order; the chain never rejects. */
  #serial<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#reloads.then(job);
    this.#reloads = run.catch(() => {});
    return run;
  }

  /**
   * Loads a settled read of the policy (every file of a bundle): validated whole (and its signature, when
   * one is required), then swapped in at once (decisions that started before keep the engine they started
   * with). Any failure keeps the policy in force.
   */
  async #consider(read: PolicyRead, trigger: ReloadTrigger, by?: string): Promise<ReloadOutcome> {
    const path = this.#source;
    const r = loadPolicyRead(read, this.#publicKey ? { publicKey: this.#publicKey } : {});
    // INVARIANT: a broken new policy never replaces a working one.
    if (!r.ok) return this.#reject(trigger, r.problems.map(formatProblem), by);
    const previous = this.#engine.hash;
    if (r.policy.hash === previous) {
      const base = { policy: previous, source: path, trigger };
      this.#opts.onEvent?.({ type: 'policy_unchanged', hash: previous, source: path, trigger });
      // Only a forced reload of an unchanged policy is an audit event; the watch sees comment edits too.
      if (trigger === 'watch') return { ...base, status: 'unchanged', recorded: false };
      const recorded = await this.#recordPolicy({
        type: 'policy',
        status: 'unchanged',
        policy: previous,
        source: path,
        trigger,
        ...(by !== undefined ? { by } : {}),
      });
      return { ...base, status: 'unchanged', recorded };
    }
    let engine: Engine;
    try {
      engine = compile(r.policy);
    } catch (e) {
      return this.#reject(trigger, [`${path}: the policy could not be compiled: ${messageOf(e)}`], by);
    }
    this.#engine = engine;
    this.#opts.onEvent?.({ type: 'policy_loaded', hash: engine.hash, previous, source: path, trigger });
    const recorded = await this.#recordPolicy({
      type: 'policy',
      status: 'loaded',
      policy: engine.hash,
      previous,
      source: path,
      trigger,
      ...(by !== undefined ? { by } : {}),
    });
    return { status: 'loaded', policy: engine.hash, previous, source: path, trigger, recorded };
  }

  async #reject(trigger: ReloadTrigger, problems: string[], by?: string): Promise<ReloadOutcome> {
    const hash = this.#engine.hash;
    const source = this.#source;
    this.#opts.onEvent?.({ type: 'policy_rejected', hash, source, trigger, problems });
    const recorded = await this.#recordPolicy({
      type: 'policy',
      status: 'rejected',
      previous: hash,
      source,
      trigger,
      problems,
      ...(by !== undefined ? { by } : {}),
    });
    return { status: 'rejected', policy: hash, source, trigger, problems, recorded };
  }

  /** Records a reload durably; a failure is reported, and the reload (applied or not) stands. */
  async #recordPolicy(event: PolicyEvent): Promise<boolean> {
    try {
      await this.recorder.record(event);
      return true;
    } catch (e) {
      this.#opts.onEvent?.({ type: 'record_failed', error: `policy reload not recorded: ${messageOf(e)}` });
      return false;
    }
  }
}

/** Does any sink, guard, sequence or preset name this tool? */
function namedByFlows(flows: CompiledFlows, tool: string): boolean {
  return lookup(flows.sinks, tool).length > 0 || lookup(flows.guards, tool).length > 0;
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
    ...(valid && Array.isArray(action.declaredArgs) ? { declaredArgs: action.declaredArgs } : {}),
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

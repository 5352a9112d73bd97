/**
 * The approval rules, written once over a small transactional row interface (`ApprovalTx`) that each
 * backend provides. The rules: grouping identical pending requests, expiry, who may decide, the approver
 * rate cap, and atomic single-binding grant consumption.
 */
import { randomBytes } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import { messageOf } from '../errors.js';
import { sha256Hex } from '../sha256.js';
import type { ApprovalEvent, Json, Recorder } from '../types.js';
import {
  type Approval,
  type ApprovalBinding,
  ApprovalError,
  type ApprovalFilter,
  type ApprovalNotifier,
  type ApprovalRequest,
  type ApprovalStore,
  type ApprovalStoreOptions,
  type ApprovalVerdict,
} from './types.js';

/** Row-level operations a backend runs inside one transaction. */
export interface ApprovalTx {
  /** Serialises concurrent transactions on `key` (a no-op where transactions are already serial). */
  lock(key: string): Promise<void>;
  get(id: string): Promise<Approval | undefined>;
  /** The pending row for a binding key (there is at most one that is not yet expired). */
  pendingFor(binding: string): Promise<Approval[]>;
  /** Granted rows for a binding key with uses left and `expiresAt > now`, oldest first. */
  grantsFor(binding: string, nowMs: number): Promise<Approval[]>;
  insert(a: Approval, binding: string): Promise<void>;
  update(a: Approval): Promise<void>;
  /** Decisions `approver` made with `decidedAt > sinceMs`. */
  decisionsSince(approver: string, sinceMs: number): Promise<number>;
  /** Pending or granted rows whose `expiresAt <= now`. */
  due(nowMs: number): Promise<Approval[]>;
  list(filter: ApprovalFilter): Promise<Approval[]>;
}

/** What a backend supplies: a transaction runner and a way to close. */
export interface ApprovalBackend {
  /** Runs `fn` atomically (all of it or none of it) and in isolation from other transactions. */
  transaction<T>(fn: (tx: ApprovalTx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const MAX_TTL_MS = 30 * 86_400_000;
const MAX_USES = 1000;
const MAX_ARGS_CHARS = 64 * 1024;
const DIGEST = /^[0-9a-f]{64}$/;

/** The key a binding is stored and grouped under: sha256 over its fields, unambiguously framed. */
export function bindingKey(b: ApprovalBinding): string {
  return sha256Hex(canonicalJson([b.agent, b.tool, b.argsDigest, b.policy, b.session ?? null]));
}

/** A new approval id: `apr_` and 20 hex digits. */
export function newApprovalId(): string {
  return `apr_${randomBytes(10).toString('hex')}`;
}

/** The status as of `nowMs`: a pending or granted approval past its expiry reads as `expired`. */
export function effective(a: Approval, nowMs: number): Approval {
  if ((a.status === 'pending' || a.status === 'granted') && nowMs >= a.expiresAt)
    return { ...a, status: 'expired' };
  return a;
}

function str(v: unknown, field: string, max = 512): string {
  if (typeof v !== 'string' || v === '' || v.length > max) {
    throw new ApprovalError(
      'invalid_request',
      `\`${field}\` must be a non-empty string of at most ${max} characters`,
      {
        field,
      },
    );
  }
  return v;
}

function validate(req: ApprovalRequest): void {
  str(req.agent, 'agent');
  str(req.tool, 'tool');
  str(req.policy, 'policy');
  str(req.rule, 'rule');
  if (typeof req.argsDigest !== 'string' || !DIGEST.test(req.argsDigest)) {
    throw new ApprovalError('invalid_request', '`argsDigest` must be a lowercase hex sha256', {
      field: 'argsDigest',
    });
  }
  if (req.session !== undefined) str(req.session, 'session');
  if (!Number.isSafeInteger(req.ttlMs) || req.ttlMs <= 0 || req.ttlMs > MAX_TTL_MS) {
    throw new ApprovalError('invalid_request', `\`ttlMs\` must be an integer between 1 and ${MAX_TTL_MS}`, {
      field: 'ttlMs',
    });
  }
  if (!Number.isSafeInteger(req.uses) || req.uses < 1 || req.uses > MAX_USES) {
    throw new ApprovalError('invalid_request', `\`uses\` must be an integer between 1 and ${MAX_USES}`, {
      field: 'uses',
    });
  }
  let argsText: string;
  try {
    argsText = canonicalJson(req.args);
  } catch (err) {
    throw new ApprovalError('invalid_request', '`args` is not json', { field: 'args' }, err);
  }
  if (argsText.length > MAX_ARGS_CHARS) {
    throw new ApprovalError('invalid_request', `\`args\` is larger than ${MAX_ARGS_CHARS} characters`, {
      field: 'args',
    });
  }
}

function event(a: Approval, status: ApprovalEvent['status'], decisionId?: string): ApprovalEvent {
  const e: ApprovalEvent = {
    type: 'approval',
    status,
    approvalId: a.id,
    agent: a.agent,
    tool: a.tool,
    argsDigest: a.argsDigest,
  };
  const d = decisionId ?? a.decisionId;
  if (d !== undefined) e.decisionId = d;
  if ((status === 'granted' || status === 'denied') && a.approver !== undefined) e.approver = a.approver;
  if ((status === 'granted' || status === 'denied') && a.note !== undefined) e.note = a.note;
  return e;
}

function storeError(err: unknown): ApprovalError {
  if (err instanceof ApprovalError) return err;
  const msg = messageOf(err).toLowerCase();
  return new ApprovalError('store_error', `approval store unavailable: ${msg}`, {}, err);
}

/** An `ApprovalStore` implementing the rules over any backend. */
export class ApprovalStoreImpl implements ApprovalStore {
  readonly #b: ApprovalBackend;
  readonly #recorder: Recorder | undefined;
  readonly #notifier: ApprovalNotifier | undefined;
  readonly #maxPerMinute: number;

  constructor(backend: ApprovalBackend, options: ApprovalStoreOptions = {}) {
    this.#b = backend;
    this.#recorder = options.recorder;
    this.#notifier = options.notifier;
    this.#maxPerMinute = options.approverMaxPerMinute ?? 30;
  }

  async #tx<T>(fn: (tx: ApprovalTx) => Promise<T>): Promise<T> {
    try {
      return await this.#b.transaction(fn);
    } catch (err) {
      throw storeError(err);
    }
  }

  async #record(events: ApprovalEvent[]): Promise<void> {
    if (this.#recorder === undefined) return;
    for (const e of events) {
      try {
        await this.#recorder.record(e);
      } catch (err) {
        throw new ApprovalError(
          'record_failed',
          `approval \`${e.approvalId}\` ${e.status} but the event could not be recorded`,
          { approvalId: e.approvalId, status: e.status },
          err,
        );
      }
    }
  }

  /** Stores every pending/granted approval past its expiry as `expired`; returns their events. */
  async #expire(tx: ApprovalTx, nowMs: number, rows?: Approval[]): Promise<ApprovalEvent[]> {
    const out: ApprovalEvent[] = [];
    for (const a of rows ?? (await tx.due(nowMs))) {
      if ((a.status !== 'pending' && a.status !== 'granted') || nowMs < a.expiresAt) continue;
      const x: Approval = { ...a, status: 'expired' };
      await tx.update(x);
      out.push(event(x, 'expired'));
    }
    return out;
  }

  async request(req: ApprovalRequest, nowMs: number): Promise<Approval> {
    validate(req);
    const key = bindingKey(req);
    const events: ApprovalEvent[] = [];
    let created = false;
    const a = await this.#tx(async (tx) => {
      await tx.lock(`binding:${key}`);
      const pending = await tx.pendingFor(key);
      events.push(...(await this.#expire(tx, nowMs, pending)));
      const live = pending.find((p) => nowMs < p.expiresAt);
      if (live !== undefined) return live;
      const n: Approval = {
        id: newApprovalId(),
        status: 'pending',
        agent: req.agent,
        tool: req.tool,
        argsDigest: req.argsDigest,
        policy: req.policy,
        rule: req.rule,
        reason: req.reason,
        args: req.args,
        ttlMs: req.ttlMs,
        uses: req.uses,
        approvers: [...(req.approvers ?? [])],
        used: 0,
        createdAt: nowMs,
        expiresAt: nowMs + req.ttlMs,
      };
      if (req.session !== undefined) n.session = req.session;
      if (req.onBehalfOf !== undefined) n.onBehalfOf = req.onBehalfOf;
      if (req.decisionId !== undefined) n.decisionId = req.decisionId;
      await tx.insert(n, key);
      created = true;
      events.push(event(n, 'requested'));
      return n;
    });
    await this.#record(events);
    if (created) {
      try {
        this.#notifier?.notify(a);
      } catch {
        // Notification is best effort and must never fail the request.
      }
    }
    return a;
  }

  async get(id: string, nowMs: number = Date.now()): Promise<Approval | undefined> {
    if (typeof id !== 'string' || id.length > 64) return undefined;
    const a = await this.#tx((tx) => tx.get(id));
    return a === undefined ? undefined : effective(a, nowMs);
  }

  async list(filter: ApprovalFilter = {}, nowMs: number = Date.now()): Promise<Approval[]> {
    const events: ApprovalEvent[] = [];
    const rows = await this.#tx(async (tx) => {
      events.push(...(await this.#expire(tx, nowMs)));
      return tx.list({ ...filter, limit: Math.min(Math.max(1, filter.limit ?? 100), 1000) });
    });
    await this.#record(events);
    return rows.map((a) => effective(a, nowMs));
  }

  async decide(id: string, verdict: ApprovalVerdict, nowMs: number): Promise<Approval> {
    const approver = str(verdict.approver, 'approver', 256);
    if (typeof verdict.approve !== 'boolean') {
      throw new ApprovalError('invalid_request', '`approve` must be true or false', { field: 'approve' });
    }
    if (verdict.note !== undefined && (typeof verdict.note !== 'string' || verdict.note.length > 2000)) {
      throw new ApprovalError('invalid_request', '`note` must be a string of at most 2000 characters', {
        field: 'note',
      });
    }
    const events: ApprovalEvent[] = [];
    let refusal: ApprovalError | undefined;
    const result = await this.#tx(async (tx) => {
      await tx.lock(`approver:${approver}`);
      await tx.lock(`approval:${id}`);
      const a = await tx.get(id);
      if (a === undefined) {
        refusal = new ApprovalError('not_found', `no approval \`${id}\``, { id });
        return undefined;
      }
      if (a.status !== 'pending') {
        refusal = new ApprovalError('already_decided', `approval \`${id}\` is already ${a.status}`, {
          id,
          status: a.status,
        });
        return undefined;
      }
      if (nowMs >= a.expiresAt) {
        events.push(...(await this.#expire(tx, nowMs, [a])));
        refusal = new ApprovalError('expired', `approval \`${id}\` expired; the agent must ask again`, {
          id,
        });
        return undefined;
      }
      if (approver === a.agent) {
        refusal = new ApprovalError('not_allowed', `agent \`${approver}\` cannot decide its own approval`, {
          id,
        });
        return undefined;
      }
      if (a.approvers.length > 0 && !a.approvers.includes(approver)) {
        refusal = new ApprovalError(
          'not_allowed',
          `\`${approver}\` may not decide approval \`${id}\`; allowed approvers: ${a.approvers.map((x) => `\`${x}\``).join(', ')}`,
          { id, approver },
        );
        return undefined;
      }
      const recent = await tx.decisionsSince(approver, nowMs - 60_000);
      if (recent >= this.#maxPerMinute) {
        refusal = new ApprovalError(
          'rate_limited',
          `\`${approver}\` made ${recent} decisions in the last minute (limit ${this.#maxPerMinute}); slow down and review each request`,
          { approver, limit: this.#maxPerMinute },
        );
        return undefined;
      }
      const d: Approval = {
        ...a,
        status: verdict.approve ? 'granted' : 'denied',
        approver,
        decidedAt: nowMs,
        // A grant gets its own full time to live, counted from the decision.
        expiresAt: verdict.approve ? nowMs + a.ttlMs : a.expiresAt,
      };
      if (verdict.note !== undefined && verdict.note !== '') d.note = verdict.note;
      await tx.update(d);
      events.push(event(d, verdict.approve ? 'granted' : 'denied'));
      return d;
    });
    await this.#record(events);
    if (refusal !== undefined) throw refusal;
    return result as Approval;
  }

  async consumeGrant(
    binding: ApprovalBinding & { decisionId?: string },
    nowMs: number,
  ): Promise<Approval | undefined> {
    try {
      const key = bindingKey(binding);
      const events: ApprovalEvent[] = [];
      const used = await this.#b.transaction(async (tx) => {
        await tx.lock(`binding:${key}`);
        const grants = await tx.grantsFor(key, nowMs);
        for (const g of grants) {
          // The key is a hash; compare the fields too so a grant can only ever cover its own binding.
          if (
            g.agent !== binding.agent ||
            g.tool !== binding.tool ||
            g.argsDigest !== binding.argsDigest ||
            g.policy !== binding.policy ||
            (g.session ?? null) !== (binding.session ?? null) ||
            g.status !== 'granted' ||
            g.used >= g.uses ||
            nowMs >= g.expiresAt
          ) {
            continue;
          }
          const u: Approval = { ...g, used: g.used + 1 };
          if (u.used >= u.uses) u.status = 'used';
          await tx.update(u);
          events.push(event(u, 'used', binding.decisionId));
          return u;
        }
        return undefined;
      });
      await this.#record(events);
      return used;
    } catch {
      // INVARIANT: fail closed — a store or recording error means no grant.
      return undefined;
    }
  }

  close(): Promise<void> {
    return this.#b.close();
  }
}

/** Serialises row ↔ approval for the SQL backends. */
export interface ApprovalRow {
  id: string;
  binding: string;
  status: string;
  agent: string;
  tool: string;
  args_digest: string;
  policy: string;
  session: string | null;
  on_behalf_of: string | null;
  rule: string;
  reason: string;
  args: string;
  approvers: string;
  ttl_ms: number | string;
  uses: number;
  used: number;
  created_at: number | string;
  expires_at: number | string;
  decided_at: number | string | null;
  approver: string | null;
  note: string | null;
  decision_id: string | null;
}

/** Column order shared by the SQL backends' INSERT statements. */
export const COLUMNS = [
  'id',
  'binding',
  'status',
  'agent',
  'tool',
  'args_digest',
  'policy',
  'session',
  'on_behalf_of',
  'rule',
  'reason',
  'args',
  'approvers',
  'ttl_ms',
  'uses',
  'used',
  'created_at',
  'expires_at',
  'decided_at',
  'approver',
  'note',
  'decision_id',
] as const;

/** Values in `COLUMNS` order. */
export function toValues(a: Approval, binding: string): (string | number | null)[] {
  return [
    a.id,
    binding,
    a.status,
    a.agent,
    a.tool,
    a.argsDigest,
    a.policy,
    a.session ?? null,
    a.onBehalfOf ?? null,
    a.rule,
    a.reason,
    canonicalJson(a.args),
    JSON.stringify(a.approvers),
    a.ttlMs,
    a.uses,
    a.used,
    a.createdAt,
    a.expiresAt,
    a.decidedAt ?? null,
    a.approver ?? null,
    a.note ?? null,
    a.decisionId ?? null,
  ];
}

/** Approval from a row (numbers may arrive as strings from PostgreSQL BIGINT). */
export function fromRow(r: ApprovalRow): Approval {
  const a: Approval = {
    id: r.id,
    status: r.status as Approval['status'],
    agent: r.agent,
    tool: r.tool,
    argsDigest: r.args_digest,
    policy: r.policy,
    rule: r.rule,
    reason: r.reason,
    args: JSON.parse(r.args) as Json,
    approvers: JSON.parse(r.approvers) as string[],
    ttlMs: Number(r.ttl_ms),
    uses: Number(r.uses),
    used: Number(r.used),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
  if (r.session !== null) a.session = r.session;
  if (r.on_behalf_of !== null) a.onBehalfOf = r.on_behalf_of;
  if (r.decided_at !== null) a.decidedAt = Number(r.decided_at);
  if (r.approver !== null) a.approver = r.approver;
  if (r.note !== null) a.note = r.note;
  if (r.decision_id !== null) a.decisionId = r.decision_id;
  return a;
}

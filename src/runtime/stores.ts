/**
 * One URL names all the runtime's state: `sqlite:<file>` (the embedded default: audit trail, limits,
 * approvals and the stop switch in one file), `postgres://…` or `redis://…` where a backend supports it,
 * or `memory:` (nothing durable — tests and trials only).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { openApprovalStore } from '../approvals/open.js';
import type { ApprovalStore } from '../approvals/types.js';
import { openAuditLog } from '../audit/log.js';
import { openLimitStore } from '../limits/open.js';
import type { LimitStore } from '../limits/types.js';
import { openSessionStore } from '../sessions/open.js';
import type { SessionStore } from '../sessions/types.js';
import type { AgentStateStore } from '../state/agent-state.js';
import { openAgentStateStore } from '../state/open.js';
import type { AuditEvent, Recorder } from '../types.js';
import { EventTap } from './events.js';

/** The embedded default store. */
export const DEFAULT_STORE = 'sqlite:./execlayer.db';

/**
 * A recorder that keeps events in memory (for `memory:`): the newest `limit` of them at least (default
 * 10,000), never more than twice that, so a long-running process with `memory:` does not grow without bound.
 */
export class MemoryRecorder implements Recorder {
  /** Recorded events, oldest first. */
  readonly events: AuditEvent[] = [];
  /** Events dropped from the front of `events` to keep it bounded. */
  dropped = 0;
  readonly #limit: number;

  constructor(options: { limit?: number } = {}) {
    this.#limit = Math.max(1, options.limit ?? 10_000);
  }

  async record(event: AuditEvent): Promise<void> {
    this.events.push(event);
    // Trimmed in bulk, so each event costs O(1) on average.
    if (this.events.length >= 2 * this.#limit) {
      const n = this.events.length - this.#limit;
      this.events.splice(0, n);
      this.dropped += n;
    }
  }
}

/** Every backend the runtime uses, opened from one URL; `close` releases them all. */
export interface Stores {
  /**
   * Records to the audit log (or memory) and feeds the runtime's event subscribers; `recorder.inner` is
   * the `AuditLog` itself (not named here, so the package's root types stay free of Node's).
   */
  recorder: EventTap;
  limits: LimitStore;
  approvals: ApprovalStore;
  state: AgentStateStore;
  /** Session flow state; absent for a URL its backends do not cover (PostgreSQL): give `sessions`. */
  sessions?: SessionStore;
  close(): Promise<void>;
}

/**
 * Where each backend lives, for deployments that split them: e.g. the audit trail and approvals on
 * PostgreSQL, limit counters and the stop switch on Redis. Unset entries use `audit`'s URL.
 */
export interface StoreUrls {
  audit: string;
  approvals?: string;
  limits?: string;
  state?: string;
  /** Session flow state: `memory:`, `sqlite:` or `redis://` (default: `audit`'s URL when it is one). */
  sessions?: string;
  /** The audit log's signing key (default: `<db>.key` for SQLite, `./execlayer-audit.key` otherwise). */
  auditKey?: string;
  /**
   * Deadline of every PostgreSQL and Redis operation (ms); past it the action is denied with a reason naming
   * the store. Default 2000 for PostgreSQL, 500 for Redis.
   */
  timeoutMs?: number;
}

/** Opens the audit log, limit, approval and stop-switch stores. Throws (naming the URL) when it cannot. */
export async function openStores(where: string | StoreUrls): Promise<Stores> {
  const urls: StoreUrls = typeof where === 'string' ? { audit: where } : where;
  const url = urls.audit;
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  for (const u of [urls.audit, urls.approvals, urls.limits, urls.state, urls.sessions]) {
    if (typeof u === 'string' && u.startsWith('sqlite:'))
      mkdirSync(dirname(u.slice('sqlite:'.length)), { recursive: true });
  }
  try {
    const t = urls.timeoutMs;
    const audit =
      url === 'memory:'
        ? undefined
        : await openAuditLog(url, {
            ...(urls.auditKey === undefined ? {} : { keyPath: urls.auditKey }),
            ...(t === undefined ? {} : { postgres: { timeoutMs: t } }),
          });
    const recorder = new EventTap(audit ?? new MemoryRecorder());
    if (audit) closers.push(() => audit.close());
    const limits = await openLimitStore(urls.limits ?? url, t === undefined ? {} : { commandTimeoutMs: t });
    closers.push(() => limits.close());
    // Approval and stop-switch changes go to the same audit log as the decisions they affect.
    const approvals = await openApprovalStore(urls.approvals ?? url, {
      recorder,
      ...(t === undefined ? {} : { timeoutMs: t }),
    });
    closers.push(() => approvals.close());
    const state = await openAgentStateStore(urls.state ?? url, {
      recorder,
      ...(t === undefined ? {} : { commandTimeoutMs: t }),
    });
    closers.push(() => state.close());
    const sessionsUrl = urls.sessions ?? (/^(memory:|sqlite:|rediss?:\/\/)/.test(url) ? url : undefined);
    const sessions = sessionsUrl === undefined ? undefined : await openSessionStore(sessionsUrl);
    if (sessions) closers.push(() => sessions.close());
    return { recorder, limits, approvals, state, ...(sessions ? { sessions } : {}), close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

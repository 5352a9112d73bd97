/**
 * Prometheus metrics for a running ExecLayer, on a prom-client Registry of its own (never the global
 * one, so an embedding application's metrics are not mixed in or exposed). Counters and histograms are
 * fed by the runtime's event feed; gauges are read when scraped. Nothing here sits on the decision path:
 * a metric that fails to update cannot change a decision.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEvent, DecisionEvent } from '../types.js';

/** What scrape-time gauges read; every source is optional. */
export interface MetricSources {
  /** Pending approvals (newest first is fine; only `createdAt` is read). */
  pendingApprovals?: () => Promise<Array<{ createdAt: number }>>;
  /** Upstream connections as the gateway reports them. */
  upstreams?: () => Array<{ name: string; state: string; generation: number; failures: number }>;
  /** The audit log's head and writer queue. */
  audit?: () => Promise<{ size: number; checkpointSize: number; checkpointTime: number; queued: number }>;
  now?: () => number;
}

/** Most distinct values kept per label; later ones are counted under `_other` (bounded cardinality). */
export const MAX_LABEL_VALUES = 500;
const OTHER = '_other';
const DEADLINE = /timed? ?out|timeout|deadline/i;

/** Keeps label values bounded: a caller inventing tool names cannot grow the registry without end. */
class LabelCap {
  readonly #seen = new Set<string>();
  constructor(readonly max: number) {}
  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.max) return OTHER;
    this.#seen.add(value);
    return value;
  }
}

/** The metrics of one process. Feed it with `observe` (subscribe it to the runtime's events). */
export class ExecLayerMetrics {
  /** The registry `/metrics` serves. */
  readonly registry = new Registry();
  readonly #decisions: Counter<'agent' | 'tool' | 'effect' | 'rule' | 'point'>;
  readonly #decisionSeconds: Histogram<'point' | 'effect'>;
  readonly #forwardSeconds: Histogram<'ok'>;
  readonly #limitRefusals: Counter<'agent' | 'tool'>;
  readonly #storeErrors: Counter<'point'>;
  readonly #deadlineHits: Counter<'point'>;
  readonly #approvalEvents: Counter<'status'>;
  readonly #counterChildren = new Map<string, { inc(): void }>();
  readonly #histChildren = new Map<string, { observe(v: number): void }>();
  readonly #caps = {
    agent: new LabelCap(MAX_LABEL_VALUES),
    tool: new LabelCap(MAX_LABEL_VALUES),
    rule: new LabelCap(MAX_LABEL_VALUES),
  };

  constructor(sources: MetricSources = {}) {
    const registers = [this.registry];
    const now = sources.now ?? Date.now;
    collectDefaultMetrics({ register: this.registry, prefix: 'execlayer_process_' });
    this.#decisions = new Counter({
      name: 'execlayer_decisions_total',
      help: 'Decisions made, by agent, tool, effect, deciding rule (`none` for default deny) and enforcement point.',
      labelNames: ['agent', 'tool', 'effect', 'rule', 'point'],
      registers,
    });
    this.#decisionSeconds = new Histogram({
      name: 'execlayer_decision_duration_seconds',
      help: 'Time to decide (stop switch, policy, approvals, limits), in seconds.',
      labelNames: ['point', 'effect'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2],
      registers,
    });
    this.#forwardSeconds = new Histogram({
      name: 'execlayer_forward_duration_seconds',
      help: 'Time an allowed call took to run (forwarded to its upstream or tool), in seconds.',
      labelNames: ['ok'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#limitRefusals = new Counter({
      name: 'execlayer_limit_refusals_total',
      help: 'Calls refused by a limit (rate, budget, concurrency, steps).',
      labelNames: ['agent', 'tool'],
      registers,
    });
    this.#storeErrors = new Counter({
      name: 'execlayer_store_errors_total',
      help: 'Decisions denied because a store (audit, limits, approvals, stop switch) failed.',
      labelNames: ['point'],
      registers,
    });
    this.#deadlineHits = new Counter({
      name: 'execlayer_store_deadline_hits_total',
      help: 'Store failures that were a timeout (the store did not answer within its deadline).',
      labelNames: ['point'],
      registers,
    });
    this.#approvalEvents = new Counter({
      name: 'execlayer_approval_events_total',
      help: 'Approval lifecycle events (requested, granted, denied, expired, used).',
      labelNames: ['status'],
      registers,
    });
    if (sources.pendingApprovals) {
      const read = sources.pendingApprovals;
      let last: Array<{ createdAt: number }> = [];
      const pending = new Gauge({
        name: 'execlayer_approvals_pending',
        help: 'Approvals waiting for a decision.',
        registers,
        async collect() {
          last = await read().catch(() => last);
          this.set(last.length);
        },
      });
      new Gauge({
        name: 'execlayer_approval_oldest_pending_age_seconds',
        help: 'Age of the oldest pending approval, in seconds (0 when none).',
        registers,
        collect() {
          // Runs after the pending gauge in registration order, on the same read.
          const oldest = Math.min(...last.map((a) => a.createdAt));
          this.set(last.length === 0 ? 0 : Math.max(0, (now() - oldest) / 1000));
        },
      });
      void pending;
    }
    if (sources.upstreams) {
      const read = sources.upstreams;
      new Gauge({
        name: 'execlayer_upstream_connections',
        help: 'Upstream connections by upstream and state.',
        labelNames: ['upstream', 'state'],
        registers,
        collect() {
          this.reset();
          for (const u of read()) this.inc({ upstream: u.name, state: u.state });
        },
      });
      new Gauge({
        name: 'execlayer_upstream_restarts',
        help: 'Restarts of the upstream connections open now (each re-connection after the first).',
        labelNames: ['upstream'],
        registers,
        collect() {
          this.reset();
          for (const u of read()) this.inc({ upstream: u.name }, Math.max(0, u.generation - 1) + u.failures);
        },
      });
    }
    if (sources.audit) {
      const read = sources.audit;
      let head: Awaited<ReturnType<typeof read>> | undefined;
      new Gauge({
        name: 'execlayer_audit_append_lag_records',
        help: 'Audit events queued in this process and not yet written.',
        registers,
        async collect() {
          head = await read().catch(() => undefined);
          if (head) this.set(head.queued);
        },
      });
      new Gauge({
        name: 'execlayer_audit_unsigned_records',
        help: 'Records written since the last signed checkpoint.',
        registers,
        collect() {
          if (head) this.set(head.size - head.checkpointSize);
        },
      });
      new Gauge({
        name: 'execlayer_audit_last_checkpoint_age_seconds',
        help: 'Age of the last signed checkpoint, in seconds (-1 when there is none).',
        registers,
        collect() {
          if (head)
            this.set(head.checkpointTime === 0 ? -1 : Math.max(0, (now() - head.checkpointTime) / 1000));
        },
      });
    }
  }

  /** Updates the counters for one runtime event. */
  readonly observe = (event: AuditEvent): void => {
    switch (event.type) {
      case 'decision':
        this.#decision(event);
        return;
      case 'outcome':
        this.#forwardSeconds.observe({ ok: event.ok ? 'true' : 'false' }, event.durationMs / 1000);
        return;
      case 'approval':
        this.#approvalEvents.inc({ status: event.status });
        return;
      default:
        return;
    }
  };

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  #decision(e: DecisionEvent): void {
    const d = e.decision;
    const agent = this.#caps.agent.of(e.action.agent);
    const tool = this.#caps.tool.of(e.action.tool);
    const rule = this.#caps.rule.of(d.rule ?? 'none');
    // Children cached by their label values: prom-client hashes a label object on every call otherwise.
    const key = `${agent}\0${tool}\0${d.effect}\0${rule}\0${e.point}`;
    let counter = this.#counterChildren.get(key);
    if (counter === undefined) {
      counter = this.#decisions.labels({ agent, tool, effect: d.effect, rule, point: e.point });
      this.#counterChildren.set(key, counter);
    }
    counter.inc();
    const hkey = `${e.point}\0${d.effect}`;
    let hist = this.#histChildren.get(hkey);
    if (hist === undefined) {
      hist = this.#decisionSeconds.labels({ point: e.point, effect: d.effect });
      this.#histChildren.set(hkey, hist);
    }
    hist.observe(e.latencyUs / 1e6);
    if (d.code === 'limit_exceeded') this.#limitRefusals.inc({ agent, tool });
    if (d.code === 'store_error') {
      this.#storeErrors.inc({ point: e.point });
      if (DEADLINE.test(d.reason)) this.#deadlineHits.inc({ point: e.point });
    }
  }
}

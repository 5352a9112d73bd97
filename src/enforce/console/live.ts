/**
 * The live decision feed of the console: server-sent events, one `decision` event per decision, filtered
 * per viewer by agent, tool, effect and rule. Events are gathered for up to `flushMs` (default 100 ms) and
 * each is serialised once for all viewers, so viewers cost one write per flush rather than per decision.
 */
import type { ServerResponse } from 'node:http';
import type { DecisionEvent } from '../../types.js';

/** What a viewer sees of one decision (the arguments are on the detail page, not in the feed). */
export interface LiveDecision {
  id: string;
  time: number;
  agent: string;
  tool: string;
  effect: string;
  rule: string | null;
  code: string;
  reason: string;
  point: string;
  approvalId?: string;
}

/** Exact-match filters; an absent field matches everything. */
export interface LiveFilter {
  agent?: string;
  tool?: string;
  effect?: string;
  rule?: string;
}

interface Viewer {
  res: ServerResponse;
  filter: LiveFilter;
  /** False once the viewer's session ended (logout, expiry): the stream is then closed. */
  alive: () => boolean;
}

/** Most viewers at once; more get 503. */
export const MAX_VIEWERS = 100;

/** Fans decisions out to SSE viewers. */
export class LiveHub {
  readonly #viewers = new Set<Viewer>();
  #queue: LiveDecision[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #flushMs: number;
  readonly #ping: NodeJS.Timeout;

  constructor(opts: { flushMs?: number; pingMs?: number } = {}) {
    this.#flushMs = opts.flushMs ?? 100;
    this.#ping = setInterval(() => this.sweep(), opts.pingMs ?? 15_000);
    this.#ping.unref();
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /** Takes a decision event off the runtime feed (cheap: queued, sent on the next flush). */
  readonly observe = (e: DecisionEvent, at: number): void => {
    if (this.#viewers.size === 0) return;
    this.#queue.push(summarise(e, at));
    this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs);
  };

  /** Ends the streams of viewers whose session ended and keeps the others' connections open. */
  sweep(): void {
    for (const v of this.#viewers) {
      if (!v.alive()) {
        this.#viewers.delete(v);
        v.res.end();
      } else v.res.write(': keep-alive\n\n');
    }
  }

  /**
   * Serves one viewer until it disconnects or `alive` turns false (checked at each sweep). False when the
   * hub is full (the caller answers 503).
   */
  attach(res: ServerResponse, filter: LiveFilter, alive: () => boolean = () => true): boolean {
    if (this.#viewers.size >= MAX_VIEWERS) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n: connected\n\n');
    const v: Viewer = { res, filter, alive };
    this.#viewers.add(v);
    res.on('close', () => this.#viewers.delete(v));
    return true;
  }

  close(): void {
    clearInterval(this.#ping);
    clearTimeout(this.#timer);
    for (const v of this.#viewers) v.res.end();
    this.#viewers.clear();
  }

  #flush(): void {
    this.#timer = undefined;
    const batch = this.#queue;
    this.#queue = [];
    const frames = batch.map((d) => ({
      d,
      frame: `event: decision\nid: ${d.id}\ndata: ${JSON.stringify(d)}\n\n`,
    }));
    // Viewers with the same filter (most often none) share one payload, built and encoded once per flush.
    const payloads = new Map<string, Buffer>();
    for (const v of this.#viewers) {
      const key = filterKey(v.filter);
      let out = payloads.get(key);
      if (out === undefined) {
        let text = '';
        for (const { d, frame } of frames) if (matches(d, v.filter)) text += frame;
        out = Buffer.from(text, 'utf8');
        payloads.set(key, out);
      }
      if (out.length > 0) v.res.write(out);
    }
  }
}

function filterKey(f: LiveFilter): string {
  return JSON.stringify([f.agent, f.tool, f.effect, f.rule]);
}

/** Whether a decision passes a viewer's filter. */
export function matches(d: LiveDecision, f: LiveFilter): boolean {
  return (
    (f.agent === undefined || d.agent === f.agent) &&
    (f.tool === undefined || d.tool === f.tool) &&
    (f.effect === undefined || d.effect === f.effect) &&
    (f.rule === undefined || (d.rule ?? 'none') === f.rule)
  );
}

/** The feed's view of a decision event. */
export function summarise(e: DecisionEvent, at: number): LiveDecision {
  const d = e.decision;
  return {
    id: d.id,
    time: at,
    agent: e.action.agent,
    tool: e.action.tool,
    effect: d.effect,
    rule: d.rule,
    code: d.code,
    reason: d.reason,
    point: e.point,
    ...(d.approvalId !== undefined ? { approvalId: d.approvalId } : {}),
  };
}

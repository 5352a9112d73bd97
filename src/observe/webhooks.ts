/**
 * Webhooks from the gateway configuration (`notifications.webhooks`): approval requests, suspensions and
 * resumptions, changed tool definitions. Each delivery is a POST signed with HMAC-SHA256 (the headers and
 * scheme of `approvals/webhook.ts`, so one receiver check serves both), retried with doubling back-off.
 * Deliveries run beside the pipeline, never in it: a slow, failing or refusing receiver cannot delay,
 * block or allow a call.
 */

import { SIGNATURE_HEADER, signWebhook, TIMESTAMP_HEADER } from '../approvals/webhook.js';
import type { WebhookConfig, WebhookEventKind } from '../config/load.js';
import type { AuditEvent, Json } from '../types.js';

/** The body of an `execlayer`-format delivery. */
export interface NotificationPayload {
  type: WebhookEventKind;
  /** Milliseconds since the epoch when the event happened. */
  time: number;
  data: { [k: string]: Json };
  /** Link to the console page of the subject, when the console's public URL is known. */
  link?: string;
}

export interface NotifierOptions {
  webhooks: WebhookConfig[];
  /** Fills in an approval request's details (arguments, expiry, rule) from the approval store. */
  approval?: (id: string) => Promise<{ [k: string]: Json } | undefined>;
  /** Base URL of the console (e.g. `https://execlayer.internal/console`), for links. */
  consoleUrl?: string;
  /** A delivery that failed for good, after its retries. */
  onError?: (message: string) => void;
  /** First retry delay; doubles each time. Default 1000 ms. */
  backoffMs?: number;
  /** Most deliveries waiting or in flight; past it new ones are dropped (and reported). Default 1000. */
  maxQueued?: number;
}

/** Sends notifications for runtime events. Subscribe `observe` to the runtime; `flush` waits for deliveries. */
export class WebhookNotifier {
  readonly #opts: NotifierOptions;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(opts: NotifierOptions) {
    this.#opts = opts;
  }

  /** Queues the deliveries an event calls for. Returns at once. */
  readonly observe = (event: AuditEvent, at: number): void => {
    const kind = kindOf(event);
    if (kind === undefined) return;
    const targets = this.#opts.webhooks.filter((w) => w.events.includes(kind));
    if (targets.length === 0) return;
    const max = this.#opts.maxQueued ?? 1000;
    if (this.#inFlight.size + targets.length > max) {
      this.#opts.onError?.(`webhook ${kind} dropped: ${this.#inFlight.size} deliveries are still pending`);
      return;
    }
    const job = this.#build(event, kind, at).then((payload) =>
      Promise.all(targets.map((w) => this.#deliver(w, payload))).then(() => undefined),
    );
    const tracked = job.catch((e: unknown) => this.#opts.onError?.(`webhook ${kind} failed: ${String(e)}`));
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
  };

  /** Resolves once every delivery started so far has finished (delivered or given up). */
  async flush(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  async #build(event: AuditEvent, type: WebhookEventKind, time: number): Promise<NotificationPayload> {
    const base = this.#opts.consoleUrl?.replace(/\/+$/, '');
    if (event.type === 'approval') {
      const details = await this.#opts.approval?.(event.approvalId).catch(() => undefined);
      return {
        type,
        time,
        data: details ?? {
          id: event.approvalId,
          agent: event.agent,
          tool: event.tool,
          argsDigest: event.argsDigest,
        },
        ...(base ? { link: `${base}/approvals#${encodeURIComponent(event.approvalId)}` } : {}),
      };
    }
    if (event.type === 'agent') {
      const data: { [k: string]: Json } = { agent: event.agent, by: event.by };
      if (event.reason !== undefined) data.reason = event.reason;
      return { type, time, data, ...(base ? { link: `${base}/agents` } : {}) };
    }
    const t = event as Extract<AuditEvent, { type: 'tool' }>;
    const data: { [k: string]: Json } = { tool: t.tool, hash: t.hash };
    if (t.previousHash !== undefined) data.previousHash = t.previousHash;
    return { type, time, data, ...(base ? { link: `${base}/tools` } : {}) };
  }

  async #deliver(w: WebhookConfig, payload: NotificationPayload): Promise<void> {
    const body = JSON.stringify(w.format === 'slack' ? slackBody(payload) : payload);
    const backoff = this.#opts.backoffMs ?? 1000;
    let last = '';
    for (let attempt = 0; attempt <= w.retries; attempt++) {
      if (attempt > 0) await sleep(backoff * 2 ** (attempt - 1));
      // Signed afresh per attempt: the timestamp the receiver checks is the send time.
      const ts = String(Date.now());
      try {
        const res = await fetch(w.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'execlayer-webhook',
            [TIMESTAMP_HEADER]: ts,
            [SIGNATURE_HEADER]: signWebhook(w.secret, ts, body),
          },
          body,
          signal: AbortSignal.timeout(w.timeoutMs),
          redirect: 'error',
        });
        await res.body?.cancel();
        if (res.ok) return;
        last = `http ${res.status}`;
        // A 4xx other than 408/429 will not get better by sending the same body again.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
      }
    }
    this.#opts.onError?.(`webhook ${payload.type} to ${redact(w.url)} failed: ${last}`);
  }
}

function kindOf(e: AuditEvent): WebhookEventKind | undefined {
  if (e.type === 'approval' && e.status === 'requested') return 'approval.requested';
  if (e.type === 'agent') return e.status === 'suspended' ? 'agent.suspended' : 'agent.resumed';
  if (e.type === 'tool' && e.status === 'changed') return 'tool.changed';
  return undefined;
}

/** Slack mrkdwn control characters in values from agents or tools are escaped, so they stay text. */
function slackText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A Slack-compatible body (`text` plus one section block); values in code spans, escaped. */
export function slackBody(p: NotificationPayload): { text: string; blocks: Json[] } {
  const d = p.data;
  const v = (k: string) =>
    slackText(typeof d[k] === 'string' ? (d[k] as string) : JSON.stringify(d[k] ?? null));
  let text: string;
  switch (p.type) {
    case 'approval.requested':
      text = `Approval requested: agent \`${v('agent')}\` wants to call \`${v('tool')}\` (approval \`${v('id')}\`)`;
      break;
    case 'agent.suspended':
      text = `Agent \`${v('agent')}\` suspended by \`${v('by')}\`${d.reason !== undefined ? `: ${v('reason')}` : ''}`;
      break;
    case 'agent.resumed':
      text = `Agent \`${v('agent')}\` resumed by \`${v('by')}\``;
      break;
    case 'tool.changed':
      text = `Tool definition of \`${v('tool')}\` changed: held back until approved`;
      break;
  }
  if (p.link !== undefined) text += ` <${slackText(p.link)}|open>`;
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? '/…' : ''}`;
  } catch {
    return '<webhook>';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

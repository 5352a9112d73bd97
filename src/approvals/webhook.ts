/**
 * Tells a human that an approval is waiting: POSTs JSON to a configured URL for each new pending
 * approval, signed with HMAC-SHA256. Fire-and-forget with a timeout and no retries, so a slow or down
 * receiver never delays a decision.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Approval, ApprovalNotifier } from './types.js';

/** Header with `sha256=<hex HMAC of "<timestamp>.<body>">`. */
export const SIGNATURE_HEADER = 'x-execlayer-signature';
/** Header with the send time in milliseconds since the epoch (covered by the signature). */
export const TIMESTAMP_HEADER = 'x-execlayer-timestamp';

/** Options for `webhookNotifier`. */
export interface WebhookOptions {
  url: string;
  /** Shared secret for the HMAC signature (at least 16 characters). */
  secret: string;
  /** Abort a delivery after this long. Default 3000 ms. */
  timeoutMs?: number;
  /** Link to the approval in the operator's UI or API, e.g. `https://execlayer.internal/approvals/`. */
  linkBase?: string;
  /** Called when a delivery fails (non-2xx, timeout, network). Default: ignore. */
  onError?: (err: Error, approval: Approval) => void;
}

/** The JSON body a receiver gets. */
export interface WebhookPayload {
  type: 'approval.requested';
  approval: {
    id: string;
    agent: string;
    tool: string;
    args: Approval['args'];
    argsDigest: string;
    reason: string;
    rule: string;
    policy: string;
    session?: string;
    onBehalfOf?: string;
    approvers: string[];
    uses: number;
    createdAt: number;
    expiresAt: number;
    link?: string;
  };
}

/** A notifier with a way to wait for deliveries in flight (shutdown, tests). */
export interface WebhookNotifier extends ApprovalNotifier {
  /** Resolves once every delivery started so far has finished (delivered or failed). */
  flush(): Promise<void>;
}

/** Signature value for `body` sent at `timestamp`. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * For receivers: true when `signature` is valid for `body` and `timestamp` is within `toleranceMs`
 * (default 5 minutes) of now, which stops replays of old deliveries.
 */
export function verifyWebhook(
  secret: string,
  body: string,
  timestamp: string | undefined,
  signature: string | undefined,
  options: { toleranceMs?: number; nowMs?: number } = {},
): boolean {
  if (timestamp === undefined || signature === undefined || !/^\d{1,16}$/.test(timestamp)) return false;
  if (Math.abs((options.nowMs ?? Date.now()) - Number(timestamp)) > (options.toleranceMs ?? 300_000))
    return false;
  const want = Buffer.from(signWebhook(secret, timestamp, body));
  const got = Buffer.from(signature);
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Creates a notifier that POSTs each new pending approval to `options.url`. */
export function webhookNotifier(options: WebhookOptions): WebhookNotifier {
  const target = new URL(options.url);
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    throw new Error(`webhook url \`${options.url}\` must be http or https`);
  }
  if (typeof options.secret !== 'string' || options.secret.length < 16) {
    throw new Error('webhook secret must be at least 16 characters');
  }
  const inFlight = new Set<Promise<void>>();
  const deliver = async (a: Approval): Promise<void> => {
    const payload: WebhookPayload = {
      type: 'approval.requested',
      approval: {
        id: a.id,
        agent: a.agent,
        tool: a.tool,
        args: a.args,
        argsDigest: a.argsDigest,
        reason: a.reason,
        rule: a.rule,
        policy: a.policy,
        approvers: a.approvers,
        uses: a.uses,
        createdAt: a.createdAt,
        expiresAt: a.expiresAt,
      },
    };
    if (a.session !== undefined) payload.approval.session = a.session;
    if (a.onBehalfOf !== undefined) payload.approval.onBehalfOf = a.onBehalfOf;
    if (options.linkBase !== undefined) payload.approval.link = `${options.linkBase}${a.id}`;
    const body = JSON.stringify(payload);
    const ts = String(Date.now());
    try {
      const res = await fetch(target, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'execlayer-webhook',
          [TIMESTAMP_HEADER]: ts,
          [SIGNATURE_HEADER]: signWebhook(options.secret, ts, body),
        },
        body,
        signal: AbortSignal.timeout(options.timeoutMs ?? 3000),
        redirect: 'error',
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`webhook answered http ${res.status}`);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      options.onError?.(
        new Error(`webhook delivery for approval \`${a.id}\` failed: ${e.message}`, { cause: e }),
        a,
      );
    }
  };
  return {
    notify(a: Approval): void {
      const p = deliver(a).finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    async flush(): Promise<void> {
      await Promise.all([...inFlight]);
    },
  };
}

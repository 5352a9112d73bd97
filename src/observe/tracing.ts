/**
 * OpenTelemetry spans for decisions and forwarded calls, through `@opentelemetry/api` only: without an
 * SDK registered by the application they are no-ops. Spans are made from the runtime's event feed, with
 * the timing the runtime measured (the decision's latency, the call's duration), as children of the
 * context active where the event was recorded — the caller's trace when its request carried a
 * `traceparent` (see `withTraceContext`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { AuditEvent } from '../types.js';

/** The instrumentation scope name of ExecLayer's spans. */
export const TRACER_NAME = 'execlayer';

/** Makes one span per decision (`execlayer.decide`) and per finished allowed call (`execlayer.forward`). */
export function spanForEvent(event: AuditEvent, at: number): void {
  if (event.type === 'decision') {
    const d = event.decision;
    const span = trace.getTracer(TRACER_NAME).startSpan(
      'execlayer.decide',
      {
        kind: SpanKind.INTERNAL,
        startTime: at - event.latencyUs / 1000,
        attributes: {
          'execlayer.agent': event.action.agent,
          'execlayer.tool': event.action.tool,
          'execlayer.effect': d.effect,
          'execlayer.rule': d.rule ?? '',
          'execlayer.code': d.code,
          'execlayer.decision_id': d.id,
          'execlayer.policy': d.policy,
          'execlayer.point': event.point,
          ...(d.wouldBe !== undefined ? { 'execlayer.would_be': d.wouldBe } : {}),
        },
      },
      context.active(),
    );
    span.end(at);
  } else if (event.type === 'outcome') {
    const span = trace.getTracer(TRACER_NAME).startSpan(
      'execlayer.forward',
      {
        kind: SpanKind.CLIENT,
        startTime: at - event.durationMs,
        attributes: {
          'execlayer.agent': event.agent,
          'execlayer.tool': event.tool,
          'execlayer.decision_id': event.decisionId,
          'execlayer.ok': event.ok,
        },
      },
      context.active(),
    );
    if (!event.ok)
      span.setStatus({ code: SpanStatusCode.ERROR, message: (event.error ?? 'failed').slice(0, 200) });
    span.end(at);
  }
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/**
 * Runs `handler` in the W3C trace context the request carries (`traceparent`/`tracestate`), so spans made
 * while serving it — decisions, forwarded calls, upstream requests — join the caller's trace. A request
 * without one runs as it is.
 */
export function withTraceContext(handler: Handler): Handler {
  return (req, res) => {
    if (req.headers.traceparent === undefined) return handler(req, res);
    const ctx = propagation.extract(ROOT_CONTEXT, req.headers);
    return context.with(ctx, () => handler(req, res));
  };
}

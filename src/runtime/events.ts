/**
 * The event feed of a runtime: every audit event recorded through it (decisions, outcomes, approvals,
 * stop-switch changes, tool pins, policy reloads, auth refusals) is also handed to subscribers — the
 * console's live view, metrics, traces, decision logs and webhooks. A recorder wrapper, so the pipeline
 * itself is unchanged: subscribers see what the audit trail is asked to record, in that order.
 */
import type { AuditEvent, Recorder, RecordOptions } from '../types.js';

/** Receives one event as it is handed to the audit trail; `at` is the wall-clock time (ms). */
export type EventListener = (event: AuditEvent, at: number) => void;

/** A `Recorder` that forwards to `inner` and tells subscribers about each event. */
export class EventTap implements Recorder {
  readonly #listeners = new Set<EventListener>();
  #onListenerError: ((err: unknown) => void) | undefined;

  constructor(
    /** The recorder events are written to (the audit log, a memory recorder). */
    readonly inner: Recorder,
  ) {}

  /**
   * Records through `inner` and tells every subscriber. A subscriber that throws is reported to
   * `onListenerError` and skipped: it can neither fail nor delay the record.
   */
  record(event: AuditEvent, options?: RecordOptions): Promise<void> {
    const p = this.inner.record(event, options);
    if (this.#listeners.size > 0) this.#emit(event);
    return p;
  }

  /** Adds a subscriber; the returned function removes it. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Where a throwing subscriber is reported (default: ignored). */
  set onListenerError(fn: ((err: unknown) => void) | undefined) {
    this.#onListenerError = fn;
  }

  /** How many subscribers there are. */
  get listeners(): number {
    return this.#listeners.size;
  }

  #emit(event: AuditEvent): void {
    const at = Date.now();
    for (const l of this.#listeners) {
      try {
        l(event, at);
      } catch (err) {
        // INVARIANT: an observer never changes a decision — its failure stays with it.
        this.#onListenerError?.(err);
      }
    }
  }
}

/** The tap `recorder` already is, or a new one around it. */
export function tapOf(recorder: Recorder): EventTap {
  return recorder instanceof EventTap ? recorder : new EventTap(recorder);
}

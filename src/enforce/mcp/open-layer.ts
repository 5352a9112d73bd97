/**
 * Builds the runtime a gateway process uses from its configuration: one `store:` URL for the audit
 * log, limits, approvals and the stop switch (`sqlite:<file>`), or `memory:` (nothing durable — tests
 * and trials only).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { openApprovalStore } from '../../approvals/open.js';
import type { ApprovalStore } from '../../approvals/types.js';
import { openAuditLog } from '../../audit/log.js';
import type { GatewayConfig } from '../../config/load.js';
import { openLimitStore } from '../../limits/open.js';
import { createExecLayer, type ExecLayer, type RuntimeEvent } from '../../runtime/exec-layer.js';
import type { AgentStateStore } from '../../state/agent-state.js';
import { openAgentStateStore } from '../../state/open.js';
import type { AuditEvent, Recorder } from '../../types.js';

/** A recorder that keeps events in memory (for `store: memory:`). */
export class MemoryRecorder implements Recorder {
  readonly events: AuditEvent[] = [];
  async record(event: AuditEvent): Promise<void> {
    this.events.push(event);
  }
}

/** The runtime and everything it opened; `close` releases it all. */
export interface OpenedLayer {
  layer: ExecLayer;
  /** The approval store the runtime asks (records its events to `layer.recorder`). */
  approvals: ApprovalStore;
  /** The stop switch the runtime reads (records its events to `layer.recorder`). */
  state: AgentStateStore;
  close(): Promise<void>;
}

/** Opens the stores named by `config.store` and creates the runtime over `config.policy`. */
export async function openLayer(
  config: GatewayConfig,
  opts: { watch?: boolean; onEvent?: (e: RuntimeEvent) => void } = {},
): Promise<OpenedLayer> {
  const closers: Array<() => Promise<void>> = [];
  if (config.store.startsWith('sqlite:'))
    mkdirSync(dirname(config.store.slice('sqlite:'.length)), { recursive: true });
  try {
    const recorder: Recorder & { close?: () => Promise<void> } =
      config.store === 'memory:' ? new MemoryRecorder() : await openAuditLog(config.store);
    if (recorder.close) closers.push(() => recorder.close!());
    const limits = await openLimitStore(config.store);
    closers.push(async () => (limits as { close?: () => Promise<void> }).close?.());
    // Approval and stop-switch changes go to the same audit log as the decisions they affect.
    const approvals = await openApprovalStore(config.store, { recorder });
    closers.push(async () => (approvals as { close?: () => Promise<void> }).close?.());
    const state = await openAgentStateStore(config.store, { recorder });
    closers.push(async () => (state as { close?: () => Promise<void> }).close?.());
    const layer = await createExecLayer({
      policy: config.policy,
      recorder,
      limits,
      approvals,
      state,
      ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    });
    return {
      layer,
      approvals,
      state,
      close: async () => {
        await layer.close();
        for (const c of closers.reverse()) await c().catch(() => {});
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => {});
    throw err;
  }
}

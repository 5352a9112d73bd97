/** Builds the runtime a gateway process uses from its configuration's `policy` and `store`. */
import type { ApprovalStore } from '../../approvals/types.js';
import { AuditLog } from '../../audit/log.js';
import type { GatewayConfig } from '../../config/load.js';
import { createExecLayer, type ExecLayer, type RuntimeEvent } from '../../runtime/exec-layer.js';
import { openStores } from '../../runtime/stores.js';
import type { AgentStateStore } from '../../state/agent-state.js';

export { MemoryRecorder } from '../../runtime/stores.js';

/** The runtime and everything it opened; `close` releases it all. */
export interface OpenedLayer {
  layer: ExecLayer;
  /** The approval store the runtime asks (records its events to `layer.recorder`). */
  approvals: ApprovalStore;
  /** The stop switch the runtime reads (records its events to `layer.recorder`). */
  state: AgentStateStore;
  /** The audit log (absent for `store: memory:`): queries, proofs and verification for the console. */
  audit?: AuditLog;
  close(): Promise<void>;
}

/** Opens the stores named by `config.store` and creates the runtime over `config.policy`. */
export async function openLayer(
  config: GatewayConfig,
  opts: { watch?: boolean; onEvent?: (e: RuntimeEvent) => void } = {},
): Promise<OpenedLayer> {
  // The tool pins' URL is opened by the gateway itself (`openToolPinStore`).
  const stores = await openStores(config.store);
  try {
    const { recorder, limits, approvals, state } = stores;
    const layer = await createExecLayer({
      policy: config.policy,
      ...(config.policyKey !== undefined ? { policyKey: config.policyKey } : {}),
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
      ...(stores.recorder.inner instanceof AuditLog ? { audit: stores.recorder.inner } : {}),
      close: async () => {
        await layer.close();
        await stores.close();
      },
    };
  } catch (err) {
    await stores.close();
    throw err;
  }
}

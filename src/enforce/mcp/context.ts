/** What every part of one gateway shares: the runtime, the config, the tool pin store and the log. */
import type { GatewayConfig } from '../../config/load.js';
import type { ExecLayer } from '../../runtime/exec-layer.js';
import type { ToolPinStore } from './pins.js';

/** What the gateway needs from the runtime. */
export type GatewayLayer = Pick<
  ExecLayer,
  'authorize' | 'visible' | 'stopped' | 'outcome' | 'waitForApproval' | 'recorder' | 'deliver'
>;

/** Shared by the upstream pool and every session of one gateway. */
export interface GatewayContext {
  layer: GatewayLayer;
  config: GatewayConfig;
  pins: ToolPinStore;
  log(line: string): void;
}

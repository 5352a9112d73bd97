/** The MCP gateway: one MCP server in front of all of an agent's MCP servers, every call decided. */

export { DECISION_META_KEY, decisionMeta, refusalText } from '../../runtime/refusal.js';
export type { GatewayContext, GatewayLayer } from './context.js';
export { type GatewayOptions, McpGateway } from './gateway.js';
export {
  type GatewayHttpServer,
  type HttpHandler,
  loopbackHosts,
  McpHttpEndpoint,
  type McpHttpOptions,
  refuseForeignOrigin,
  startGatewayHttp,
} from './http.js';
export { MemoryRecorder, type OpenedLayer, openLayer } from './open-layer.js';
export {
  hashToolDefinition,
  MemoryToolPinStore,
  openToolPinStore,
  type PinCheck,
  type PinnedDefinition,
  SqliteToolPinStore,
  type ToolPin,
  type ToolPinStore,
} from './pins.js';
export { findForbiddenKey, ScreenedTransport } from './screen.js';
export {
  GatewaySession,
  POLICY_DENIED,
  type SessionIdentity,
  type SessionUpstreamStatus,
} from './session.js';
export { StdioFrontTransport } from './stdio.js';
export {
  BACKOFF,
  UpstreamConnection,
  UpstreamError,
  type UpstreamHooks,
  type UpstreamLimits,
  type UpstreamState,
  type UpstreamStatus,
} from './upstream.js';

/**
 * `execlayer/mcp`: the MCP gateway, one MCP server in front of all of an agent's MCP servers with every
 * call decided. Programmatic use, as `execlayer mcp` and `execlayer serve` do it: `loadConfigFile`, then
 * `openLayer(config)`, then `new McpGateway(opened.layer, config)`, then `gateway.serveStdio(…)` or
 * `startGatewayHttp(gateway, { authenticate, handlers })`. See docs/gateway.md.
 */
export {
  ConfigError,
  type ConfigProblem,
  type GatewayConfig,
  type HttpUpstreamConfig,
  loadConfigFile,
  parseConfig,
  type StdioUpstreamConfig,
  type UpstreamConfig,
} from '../../config/load.js';
export { DECISION_META_KEY, decisionMeta, refusalText } from '../../runtime/refusal.js';
export type { GatewayLayer } from './context.js';
export { type GatewayOptions, McpGateway } from './gateway.js';
export { type GatewayHttpServer, type HttpHandler, startGatewayHttp } from './http.js';
export { type OpenedLayer, openLayer } from './open-layer.js';
export type { SessionIdentity, SessionUpstreamStatus } from './session.js';

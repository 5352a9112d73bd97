/** Gateway configuration: schema and loader. */
export {
  type ApiKeyConfig,
  type ApprovalsConfig,
  type AuthConfig,
  ConfigError,
  type ConfigProblem,
  DEFAULT_LIMITS,
  type GatewayConfig,
  type HttpConfig,
  type HttpUpstreamConfig,
  type JwtConfig,
  type LimitsConfig,
  loadConfigFile,
  parseConfig,
  type StdioUpstreamConfig,
  type UpstreamConfig,
} from './load.js';
export { CONFIG_SCHEMA } from './schema.js';

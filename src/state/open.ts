/**
 * Opens the agent state (stop switch) store from a URL: `memory:`, `sqlite:<path>` or `redis://…`.
 */
import {
  type AgentStateStore,
  type AgentStateStoreOptions,
  MemoryAgentStateStore,
  RedisAgentStateStore,
  SqliteAgentStateStore,
} from './agent-state.js';
import { sqlitePath } from './sqlite-db.js';

/** Options for `openAgentStateStore`; backend-specific ones are ignored by the others. */
export interface OpenAgentStateStoreOptions extends AgentStateStoreOptions {
  /** Redis key prefix, default `execlayer:`. */
  prefix?: string;
  commandTimeoutMs?: number;
  busyTimeoutMs?: number;
}

/** Opens the agent state store named by `url`. Throws at start-up for an unknown URL or an unopenable file. */
export async function openAgentStateStore(
  url: string,
  options: OpenAgentStateStoreOptions = {},
): Promise<AgentStateStore> {
  if (url === 'memory:' || url === 'memory') return new MemoryAgentStateStore(options);
  if (url.startsWith('sqlite:')) return new SqliteAgentStateStore(sqlitePath(url), options);
  if (url.startsWith('redis://') || url.startsWith('rediss://'))
    return RedisAgentStateStore.open(url, options);
  throw new Error(
    `unsupported agent state store url \`${url}\`: use memory:, sqlite:<path> or redis://host:port`,
    {
      cause: { code: 'invalid_store_url' },
    },
  );
}

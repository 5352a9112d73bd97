/**
 * Opens a limit store from a URL: `memory:`, `sqlite:<path>` (default `sqlite:./execlayer.db`) or
 * `redis://…` / `rediss://…`.
 */

import { sqlitePath } from '../state/sqlite-db.js';
import { MemoryLimitStore } from './memory.js';
import { RedisLimitStore, type RedisLimitStoreOptions } from './redis.js';
import { SqliteLimitStore, type SqliteLimitStoreOptions } from './sqlite.js';
import type { LimitStore } from './types.js';

/** Options any backend understands; backend-specific ones are ignored by the others. */
export type OpenLimitStoreOptions = SqliteLimitStoreOptions & RedisLimitStoreOptions;

/** Opens the limit store named by `url`. Throws (at start-up) only for a URL it does not understand. */
export async function openLimitStore(url: string, options: OpenLimitStoreOptions = {}): Promise<LimitStore> {
  if (url === 'memory:' || url === 'memory') return new MemoryLimitStore(options);
  if (url.startsWith('sqlite:')) return new SqliteLimitStore(sqlitePath(url), options);
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return RedisLimitStore.open(url, options);
  throw new Error(`unsupported limit store url \`${url}\`: use memory:, sqlite:<path> or redis://host:port`, {
    cause: { code: 'invalid_store_url' },
  });
}

/**
 * Opens a session store from a URL: `memory:`, `sqlite:<path>` or `redis://…` / `rediss://…`.
 */
import { sqlitePath } from '../state/sqlite-db.js';
import { MemorySessionStore } from './memory.js';
import { RedisSessionStore, type RedisSessionStoreOptions } from './redis.js';
import { SqliteSessionStore, type SqliteSessionStoreOptions } from './sqlite.js';
import type { SessionStore } from './types.js';

/** Options any backend understands; backend-specific ones are ignored by the others. */
export type OpenSessionStoreOptions = SqliteSessionStoreOptions & RedisSessionStoreOptions;

/** Opens the session store named by `url`. Throws (at start-up) for a URL it does not understand. */
export async function openSessionStore(
  url: string,
  options: OpenSessionStoreOptions = {},
): Promise<SessionStore> {
  if (url === 'memory:' || url === 'memory') return new MemorySessionStore(options);
  if (url.startsWith('sqlite:')) return new SqliteSessionStore(sqlitePath(url), options);
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return RedisSessionStore.open(url, options);
  throw new Error(
    `unsupported session store url \`${url}\`: use memory:, sqlite:<path> or redis://host:port`,
    { cause: { code: 'invalid_store_url' } },
  );
}

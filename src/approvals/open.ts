/**
 * Opens an approval store from a URL: `memory:`, `sqlite:<path>` (default `sqlite:./execlayer.db`) or
 * `postgres://…` / `postgresql://…`.
 */
import { sqlitePath } from '../state/sqlite-db.js';
import { memoryApprovalStore } from './memory.js';
import { type PostgresApprovalStoreOptions, postgresApprovalStore } from './postgres.js';
import { type SqliteApprovalStoreOptions, sqliteApprovalStore } from './sqlite.js';
import type { ApprovalStore } from './types.js';

/** Options any backend understands; backend-specific ones are ignored by the others. */
export type OpenApprovalStoreOptions = SqliteApprovalStoreOptions & PostgresApprovalStoreOptions;

/** Opens the approval store named by `url`. Throws at start-up for an unknown URL or an unreachable store. */
export async function openApprovalStore(
  url: string,
  options: OpenApprovalStoreOptions = {},
): Promise<ApprovalStore> {
  if (url === 'memory:' || url === 'memory') return memoryApprovalStore(options);
  if (url.startsWith('sqlite:')) return sqliteApprovalStore(sqlitePath(url), options);
  if (url.startsWith('postgres://') || url.startsWith('postgresql://'))
    return postgresApprovalStore(url, options);
  throw new Error(`unsupported approval store url \`${url}\`: use memory:, sqlite:<path> or postgres://…`, {
    cause: { code: 'invalid_store_url' },
  });
}

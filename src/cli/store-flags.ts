/**
 * What the `approvals` and `agents` commands share: which store and which audit log to use, who the
 * operator is, and how to describe times.
 */
import { userInfo } from 'node:os';
import { messageOf } from '../errors.js';
import type { Recorder } from '../types.js';

/** `--store`, else `EXECLAYER_STORE`, else `sqlite:./execlayer.db`. */
export function storeUrl(flag: string | undefined): string {
  return flag || process.env.EXECLAYER_STORE || 'sqlite:./execlayer.db';
}

/**
 * The audit log that records what the operator did: `--audit`, else `EXECLAYER_AUDIT`, else the store
 * itself when it is SQLite or PostgreSQL. `undefined` when there is none (`--no-audit`, or a Redis or
 * memory store without `--audit`).
 */
export function auditUrl(
  flag: string | undefined,
  noAudit: boolean | undefined,
  store: string,
): string | undefined {
  if (noAudit) return undefined;
  const u = flag || process.env.EXECLAYER_AUDIT;
  if (u) return u;
  return store.startsWith('sqlite:') || store.startsWith('postgres://') || store.startsWith('postgresql://')
    ? store
    : undefined;
}

/** Opens the audit log as a Recorder; the caller closes it (which flushes the last checkpoint). */
export async function openRecorder(url: string): Promise<Recorder & { close(): Promise<void> }> {
  const { openAuditLog } = await import('../audit/log.js');
  return openAuditLog(url);
}

/** `--as`, else `$USER`, else the OS account name. */
export function operator(flag: string | undefined): string {
  if (flag) return flag;
  if (process.env.USER) return process.env.USER;
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** `in 14m`, `3m ago`. */
export function relative(ms: number, nowMs: number): string {
  const d = ms - nowMs;
  const a = Math.abs(d);
  const txt =
    a < 60_000
      ? `${Math.round(a / 1000)}s`
      : a < 3_600_000
        ? `${Math.round(a / 60_000)}m`
        : a < 86_400_000
          ? `${Math.round(a / 3_600_000)}h`
          : `${Math.round(a / 86_400_000)}d`;
  return d >= 0 ? `in ${txt}` : `${txt} ago`;
}

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) widths[i] = Math.max(widths[i] ?? 0, (r[i] as string).length);
  }
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  '))
    .join('\n');
}

/** First line of an error's message, never a stack. */
export function firstLineOf(err: unknown): string {
  return messageOf(err).split('\n')[0] ?? '';
}

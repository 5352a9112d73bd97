/**
 * Export records as JSON Lines (lossless: every field and the hash) or CSV (flattened query columns, RFC 4180
 * quoting, formula-injection safe for spreadsheets).
 */
import { type AuditRecord, type FlatRecord, flatten } from './record.js';

/** Export formats. */
export type ExportFormat = 'jsonl' | 'csv';

/** Columns of the CSV export, in order. */
export const CSV_COLUMNS: ReadonlyArray<keyof FlatRecord> = [
  'seq',
  'time',
  'type',
  'status',
  'decisionId',
  'agent',
  'session',
  'onBehalfOf',
  'delegation',
  'point',
  'tool',
  'args',
  'argsDigest',
  'facts',
  'effect',
  'wouldBe',
  'rule',
  'code',
  'reason',
  'policy',
  'mode',
  'latencyUs',
  'v',
  'hash',
];

/**
 * One CSV cell: JSON for structured values, ISO 8601 is left to the caller; a text starting with `=`, `+`,
 * `-`, `@`, tab or carriage return is prefixed with `'` so spreadsheets do not run it as a formula; quoted
 * when it holds a comma, quote or line break.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let s =
    typeof value === 'string' ? value : typeof value === 'number' ? String(value) : JSON.stringify(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  if (/[",\r\n]/.test(s)) s = `"${s.replace(/"/g, '""')}"`;
  return s;
}

/** The CSV header line (with CRLF). */
export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`;
}

/** One record as a CSV line (with CRLF); `time` as ISO 8601. */
export function csvLine(r: AuditRecord): string {
  const flat = flatten(r);
  return `${CSV_COLUMNS.map((c) => (c === 'time' ? new Date(flat.time).toISOString() : csvCell(flat[c]))).join(',')}\r\n`;
}

/** One record as a JSON line. */
export function jsonLine(r: AuditRecord): string {
  return `${JSON.stringify(r)}\n`;
}

/**
 * Output helpers for benchmarks: microsecond and ratio formatting and markdown tables that read well in
 * a terminal and paste into docs unchanged.
 */

/** Formats microseconds with sensible precision: `0.071 µs`, `1.42 µs`, `455 µs`, `3.31 ms`. */
export function formatUs(us: number): string {
  if (!Number.isFinite(us)) return String(us);
  if (us >= 1000) return `${(us / 1000).toFixed(us >= 100_000 ? 0 : 2)} ms`;
  if (us >= 100) return `${us.toFixed(0)} µs`;
  if (us >= 10) return `${us.toFixed(1)} µs`;
  if (us >= 1) return `${us.toFixed(2)} µs`;
  return `${us.toFixed(3)} µs`;
}

/** Formats a ratio: `2400x`, `31x`, `1.4x`. */
export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return String(r);
  if (r >= 100) return `${Math.round(r)}x`;
  if (r >= 10) return `${r.toFixed(0)}x`;
  // Below 1x the second digit decides whether a ratio target (0.5x, 0.7x) is met.
  return `${r.toFixed(r < 1 ? 2 : 1)}x`;
}

/** Formats an integer with thousands separators: `10,000`. */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** A markdown table; numeric-looking columns are right-aligned. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const right = header.map(
    (_, i) =>
      rows.length > 0 && rows.every((r) => /^[-\d.,<>~ ]*[\d)][\d.,]*\s*(µs|ms|x|%)?$|^$/.test(r[i] ?? '')),
  );
  const cell = (s: string, i: number) =>
    right[i] ? s.padStart(widths[i] as number) : s.padEnd(widths[i] as number);
  const line = (cells: readonly string[]) =>
    `| ${header.map((_, i) => cell(cells[i] ?? '', i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

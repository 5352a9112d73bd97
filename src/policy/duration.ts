/** Durations in policies and CLI flags: `30s`, `15m`, `1h`, `7d`, `2w`, or a bare unit word (`minute`). */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const WORD_MS: Record<string, number> = {
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 604_800_000,
};

/** Parses a duration; returns undefined when the text is not one. */
export function parseDuration(text: string): number | undefined {
  const word = WORD_MS[text];
  if (word !== undefined) return word;
  let i = 0;
  while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  if (i === 0 || i > 9) return undefined;
  const unit = UNIT_MS[text.slice(i)];
  if (unit === undefined) return undefined;
  const n = Number(text.slice(0, i));
  return n > 0 ? n * unit : undefined;
}

/** Formats milliseconds for people, compactly: `3h12m`, `45s`, `2d4h`, `350ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`;
  let s = Math.ceil(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const out: string[] = [];
  if (d > 0) out.push(`${d}d`);
  if (h > 0) out.push(`${h}h`);
  if (m > 0 && d === 0) out.push(`${m}m`);
  if (s > 0 && d === 0 && h === 0) out.push(`${s}s`);
  return out.join('') || '0s';
}

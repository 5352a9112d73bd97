/** Problems found while loading a policy, each with a place in the source and a hint. */

export type Severity = 'error' | 'warning';

export interface Problem {
  severity: Severity;
  /** Stable snake_case code, e.g. `unknown_key`, `cel_syntax`, `unknown_role`. */
  code: string;
  message: string;
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  hint?: string;
  /** JSON path of the offending value, e.g. `/roles/support/0/when/cel`. */
  path: string;
}

/** `file:line:column: error: message (hint: …)` — the form editors and CI logs understand. */
export function formatProblem(p: Problem): string {
  const hint = p.hint ? `\n  hint: ${p.hint}` : '';
  return `${p.file}:${p.line}:${p.column}: ${p.severity}[${p.code}]: ${p.message}${hint}`;
}

/** Edit distance, for "did you mean" hints on short identifiers. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestScore) {
      bestScore = d;
      best = c;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Number.POSITIVE_INFINITY;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: `# HELP` and
 * `# TYPE` lines, samples with escaped label values, and every malformed line refused with its number.
 */

/** One sample line. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Metric families by name: their type, help and samples (histogram `_bucket`/`_sum`/`_count` included). */
export interface PromFamily {
  type: string;
  help: string;
  samples: PromSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Parses exposition text; throws naming the first bad line. */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const bad = (why: string) => new Error(`line ${i + 1}: ${why}: ${JSON.stringify(line)}`);
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
      if (!m) return; // other comments are allowed
      const f = family(m[2] ?? '');
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? ''))
          throw bad('unknown type');
        f.type = m[3] ?? '';
      } else f.help = m[3] ?? '';
      return;
    }
    const nm = NAME.exec(line);
    if (!nm) throw bad('no metric name');
    const name = nm[0];
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      rest = rest.slice(1);
      while (!rest.startsWith('}')) {
        const lm = LABEL.exec(rest);
        if (!lm) throw bad('bad label name');
        rest = rest.slice(lm[0].length);
        if (!rest.startsWith('="')) throw bad('expected ="');
        rest = rest.slice(2);
        let value = '';
        for (;;) {
          const c = rest[0];
          if (c === undefined) throw bad('unterminated label value');
          rest = rest.slice(1);
          if (c === '"') break;
          if (c === '\\') {
            const e = rest[0];
            rest = rest.slice(1);
            if (e === 'n') value += '\n';
            else if (e === '\\' || e === '"') value += e;
            else throw bad('bad escape');
          } else value += c;
        }
        labels[lm[0]] = value;
        if (rest.startsWith(',')) rest = rest.slice(1);
        else if (!rest.startsWith('}')) throw bad('expected , or }');
      }
      rest = rest.slice(1);
    }
    const vm = /^ (\S+)( -?\d+)?$/.exec(rest);
    if (!vm) throw bad('bad value');
    const raw = vm[1] ?? '';
    // As Go's ParseFloat, which Prometheus uses: NaN and Inf in any letter case.
    const word = raw.toLowerCase();
    const value =
      word === '+inf' || word === 'inf'
        ? Infinity
        : word === '-inf'
          ? -Infinity
          : word === 'nan'
            ? Number.NaN
            : Number(raw);
    if (Number.isNaN(value) && word !== 'nan') throw bad('value is not a number');
    const base = name.replace(/_(bucket|sum|count)$/, '');
    const f = families.has(name) ? family(name) : families.has(base) ? family(base) : family(name);
    f.samples.push({ name, labels, value });
  });
  return families;
}

/** Sum of the samples of `name` whose labels include `match`. */
export function sumOf(
  families: Map<string, PromFamily>,
  name: string,
  match: Record<string, string> = {},
  sample = name,
): number {
  const f = families.get(name);
  if (!f) return 0;
  return f.samples
    .filter((s) => s.name === sample && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

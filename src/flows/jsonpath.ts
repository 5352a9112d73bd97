/**
 * A small JSONPath subset for naming parts of a tool result: `$`, `.name`, `['name']`, `[3]`, `[*]` and
 * `.*`. No filters and no recursive descent: selection is linear in the size of the result, and item
 * predicates are typed constraints (`where:`), not expressions.
 */

export type Segment = { kind: 'key'; key: string } | { kind: 'index'; index: number } | { kind: 'all' };

/** A compiled path. `source` is the text as written. */
export interface JsonPath {
  readonly source: string;
  readonly segments: readonly Segment[];
}

/** Where a selected value sits: its container and key, so it can be dropped or replaced. */
export interface Location {
  readonly parent: unknown[] | Record<string, unknown> | undefined;
  readonly key: string | number | undefined;
  readonly value: unknown;
}

const NAME = /^[A-Za-z_$][A-Za-z0-9_$-]*/;
const MAX_PATH = 512;
const MAX_SEGMENTS = 32;

/** Compiles a path, or says what is wrong with it (and at which character). */
export function compileJsonPath(src: string): { ok: true; value: JsonPath } | { ok: false; error: string } {
  if (src.length > MAX_PATH) return { ok: false, error: `JSONPath is longer than ${MAX_PATH} characters` };
  if (!src.startsWith('$')) return { ok: false, error: 'a JSONPath starts with `$`' };
  const segments: Segment[] = [];
  let i = 1;
  while (i < src.length) {
    if (segments.length >= MAX_SEGMENTS)
      return { ok: false, error: `JSONPath has more than ${MAX_SEGMENTS} segments` };
    const c = src[i];
    if (c === '.') {
      if (src[i + 1] === '.')
        return { ok: false, error: `recursive descent \`..\` is not supported (at ${i + 1})` };
      if (src[i + 1] === '*') {
        segments.push({ kind: 'all' });
        i += 2;
        continue;
      }
      const m = NAME.exec(src.slice(i + 1));
      if (!m) return { ok: false, error: `expected a member name after \`.\` (at ${i + 2})` };
      segments.push({ kind: 'key', key: m[0] });
      i += 1 + m[0].length;
      continue;
    }
    if (c === '[') {
      const close = src.indexOf(']', i);
      if (close < 0) return { ok: false, error: `unclosed \`[\` (at ${i + 1})` };
      const inner = src.slice(i + 1, close);
      if (inner === '*') segments.push({ kind: 'all' });
      else if (/^(0|[1-9][0-9]{0,8})$/.test(inner)) segments.push({ kind: 'index', index: Number(inner) });
      else if (/^'[^'\\]*'$/.test(inner) || /^"[^"\\]*"$/.test(inner))
        segments.push({ kind: 'key', key: inner.slice(1, -1) });
      else
        return {
          ok: false,
          error: `\`[${inner}]\` is not supported: use [n], [*] or ['name'] (filters are written as \`where:\`)`,
        };
      i = close + 1;
      continue;
    }
    return { ok: false, error: `unexpected \`${c}\` (at ${i + 1})` };
  }
  return { ok: true, value: { source: src, segments } };
}

/** Every location the path selects in `doc`, in document order. Own properties only. */
export function select(path: JsonPath, doc: unknown): Location[] {
  let here: Location[] = [{ parent: undefined, key: undefined, value: doc }];
  for (const seg of path.segments) {
    const next: Location[] = [];
    for (const loc of here) {
      const v = loc.value;
      if (v === null || typeof v !== 'object') continue;
      if (Array.isArray(v)) {
        if (seg.kind === 'index') {
          if (seg.index < v.length) next.push({ parent: v, key: seg.index, value: v[seg.index] });
        } else if (seg.kind === 'all') {
          for (let i = 0; i < v.length; i++) next.push({ parent: v, key: i, value: v[i] });
        }
        continue;
      }
      const o = v as Record<string, unknown>;
      if (seg.kind === 'key') {
        if (Object.hasOwn(o, seg.key)) next.push({ parent: o, key: seg.key, value: o[seg.key] });
      } else if (seg.kind === 'all') {
        for (const k of Object.keys(o)) next.push({ parent: o, key: k, value: o[k] });
      }
    }
    here = next;
    if (here.length === 0) break;
  }
  return here;
}

/** Values the path selects that are strings (or numbers, written as text): for `extract`. */
export function selectStrings(path: JsonPath, doc: unknown): string[] {
  const out: string[] = [];
  for (const l of select(path, doc)) {
    if (typeof l.value === 'string') out.push(l.value);
    else if (typeof l.value === 'number' && Number.isFinite(l.value)) out.push(String(l.value));
  }
  return out;
}

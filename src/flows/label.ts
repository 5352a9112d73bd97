/**
 * Labels: what the content delivered to an agent carries. A label is integrity (`trusted` below
 * `untrusted`), a confidentiality level (an index into the policy's ordered levels), an optional set of
 * allowed readers, and tags. Labels form a join semilattice: `join` is commutative, associative and
 * idempotent, so a session's context (the join of everything delivered) is the same whatever order the
 * results arrived in, and replicas that apply the same deltas agree.
 */

export type Integrity = 'trusted' | 'untrusted';

/** One label. `readers` undefined means anyone may read it; an empty list means nobody may. */
export interface Label {
  readonly integrity: Integrity;
  /** Index into the policy's confidentiality levels (0 = least confidential). */
  readonly level: number;
  /** Addresses (`bob@acme.com`), domains (`acme.com`: its addresses and hosts) or principals. Sorted. */
  readonly readers?: readonly string[];
  /** Sorted, distinct. */
  readonly tags: readonly string[];
}

/** The label of a session that has been shown nothing: trusted, least confidential, anyone may read. */
export const BOTTOM: Label = Object.freeze({ integrity: 'trusted', level: 0, tags: Object.freeze([]) });

/** The label of content nothing is known about: untrusted, most confidential, nobody may read it. */
export function top(levels: number): Label {
  return { integrity: 'untrusted', level: Math.max(0, levels - 1), readers: [], tags: [] };
}

/** The least label at least as restrictive as both. Returns `a` itself when `b` adds nothing. */
export function join(a: Label, b: Label): Label {
  if (a === b) return a;
  const sameReaders = sameList(a.readers, b.readers);
  const readers = sameReaders ? a.readers : meetReaders(a.readers, b.readers);
  const tags = sameList(a.tags, b.tags) ? a.tags : unionSorted(a.tags, b.tags);
  const integrity = a.integrity === 'untrusted' || b.integrity === 'untrusted' ? 'untrusted' : 'trusted';
  const level = Math.max(a.level, b.level);
  if (
    integrity === a.integrity &&
    level === a.level &&
    tags === a.tags &&
    (sameReaders || sameList(readers, a.readers))
  )
    return a;
  return { integrity, level, ...(readers !== undefined ? { readers } : {}), tags };
}

/** True when `b` is at least as restrictive as `a` in every component (a ⊑ b). */
export function below(a: Label, b: Label): boolean {
  return sameLabel(join(a, b), b);
}

/** Structural equality. */
export function sameLabel(a: Label, b: Label): boolean {
  return (
    a.integrity === b.integrity &&
    a.level === b.level &&
    sameList(a.readers, b.readers) &&
    sameList(a.tags, b.tags)
  );
}

/**
 * Is `recipient` (an address, a host or a principal) among `readers`? An address or host is covered by
 * itself, and by a domain reader it equals or lies under (label-aware: `evilacme.com` is not under
 * `acme.com`). Comparison ignores ASCII case. Undefined readers cover everyone.
 */
export function covered(recipient: string, readers: readonly string[] | undefined): boolean {
  if (readers === undefined) return true;
  const r = recipient.toLowerCase();
  for (const reader of readers) if (covers(reader.toLowerCase(), r)) return true;
  return false;
}

function covers(reader: string, r: string): boolean {
  if (reader === r) return true;
  // A domain reader (no `@`) covers addresses at it and hosts under it.
  if (reader.includes('@')) return false;
  const at = r.lastIndexOf('@');
  const host = at >= 0 ? r.slice(at + 1) : r;
  return host === reader || host.endsWith(`.${reader}`);
}

/**
 * The readers both sets admit: an entry of one set is kept when the other set covers it. Commutative
 * (the same rule applied both ways) and never wider than either side.
 */
function meetReaders(
  a: readonly string[] | undefined,
  b: readonly string[] | undefined,
): readonly string[] | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const out = new Set<string>();
  for (const x of a) if (covered(x, b)) out.add(x.toLowerCase());
  for (const y of b) if (covered(y, a)) out.add(y.toLowerCase());
  return [...out].sort();
}

/** Adds readers (declassification): the readers of `a` together with `more`. */
export function withReaders(a: Label, more: readonly string[]): Label {
  if (a.readers === undefined) return a;
  const readers = unionSorted(
    a.readers,
    more.map((m) => m.toLowerCase()),
  );
  return { ...a, readers };
}

function unionSorted(a: readonly string[], b: readonly string[]): readonly string[] {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  return [...new Set([...a, ...b])].sort();
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A normalised label: tags and readers sorted and distinct, readers lowercased. */
export function makeLabel(l: {
  integrity: Integrity;
  level: number;
  readers?: readonly string[] | undefined;
  tags?: readonly string[] | undefined;
}): Label {
  return {
    integrity: l.integrity,
    level: l.level,
    ...(l.readers !== undefined
      ? { readers: [...new Set(l.readers.map((r) => r.toLowerCase()))].sort() }
      : {}),
    tags: [...new Set(l.tags ?? [])].sort(),
  };
}

/** Reads a label from untrusted JSON (an upstream's `_meta`, a store row); undefined when malformed. */
export function parseLabel(raw: unknown, levels: readonly string[]): Label | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const o = raw as Record<string, unknown>;
  const integrity = o.integrity ?? 'trusted';
  if (integrity !== 'trusted' && integrity !== 'untrusted') return undefined;
  let level = 0;
  if (o.level !== undefined) {
    const i = typeof o.level === 'string' ? levels.indexOf(o.level) : -1;
    if (i < 0) return undefined;
    level = i;
  }
  const list = (v: unknown): string[] | undefined | null =>
    v === undefined
      ? undefined
      : Array.isArray(v) && v.length <= 256 && v.every((s) => typeof s === 'string' && s.length <= 256)
        ? (v as string[])
        : null;
  const readers = list(o.readers);
  const tags = list(o.tags);
  if (readers === null || tags === null) return undefined;
  return makeLabel({ integrity, level, readers, tags });
}

/** A label as JSON for the audit trail and for stores: the level by name. */
export function labelJson(l: Label, levels: readonly string[]) {
  return {
    integrity: l.integrity,
    level: levels[l.level] ?? String(l.level),
    ...(l.readers !== undefined ? { readers: [...l.readers] } : {}),
    tags: [...l.tags],
  };
}

/** One line for messages: `untrusted, confidential, readers [acme.com], tags [pii]`. */
export function describeLabel(l: Label, levels: readonly string[]): string {
  const parts: string[] = [l.integrity, levels[l.level] ?? `level ${l.level}`];
  if (l.readers !== undefined)
    parts.push(l.readers.length === 0 ? 'no readers' : `readers [${l.readers.join(', ')}]`);
  if (l.tags.length > 0) parts.push(`tags [${l.tags.join(', ')}]`);
  return parts.join(', ');
}

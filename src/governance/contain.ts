/**
 * Containment: does every call a policy rule permits fall within a declared capability? Decided exactly
 * over the typed constraints — path prefixes (segment-aware), host sets and label-aware wildcards, ports
 * and schemes, numeric intervals, enums, SQL statement kinds and tables, email domains and addresses —
 * and never guessed: what cannot be compared (CEL, globs against other globs, shell conditions that are
 * not identical) is `unverifiable`, never `contained`.
 *
 * The comparison is between one rule and one declared capability. A rule is within a declaration when
 * its `when` implies the declaration's `when` part by part (each typed part of the declaration is implied
 * by a part of the rule on the same arguments), and the declaration's `unless` implies the rule's.
 */

import { canonicalJson } from '../canonical-json.js';
import type { HostPattern } from '../facts/host-pattern.js';
import { hostMatches, showHostPattern } from '../facts/host-pattern.js';
import type { EmailCondition, PathCondition, SqlCondition, UrlCondition } from '../facts/index.js';
import { canonicalisers } from '../facts/index.js';
import { isUnder } from '../facts/path.js';
import { nameMatches, type QualifiedName, showName } from '../facts/sql.js';
import type { CompiledConditions } from '../policy/check.js';
import { hasType } from '../policy/conditions.js';
import { compileGlob, globMatch } from '../policy/glob.js';
import type { ArgConstraint, CanonName, Conditions } from '../policy/types.js';

/** The verdict of one comparison. `excess` says, per constraint, what is permitted beyond the declaration. */
export type Containment =
  | { kind: 'contained' }
  | { kind: 'exceeds'; excess: string[] }
  | { kind: 'unverifiable'; why: string[] };

/** One side of a comparison: compiled conditions (normalised canonicaliser values) and the raw text. */
export interface ConditionPair {
  compiled?: CompiledConditions;
  raw?: Conditions;
}

interface Outcome {
  fail: string[];
  unknown: string[];
}

const DEFAULT_PORTS: Record<string, number> = { https: 443, http: 80, wss: 443, ws: 80 };
const TABLE_SCHEMAS = ['public'];
const FUNCTION_SCHEMAS = ['public', 'pg_catalog'];

/**
 * Is the rule (`when` ∧ ¬`unless`) within the capability (`when` ∧ ¬`unless`)? `effect` of an allow rule
 * must be allow-declared; an `ask` rule fits either (approval only narrows).
 */
export function contains(
  declared: { when: ConditionPair; unless: ConditionPair; effect: 'allow' | 'ask' },
  permitted: { when: ConditionPair; unless: ConditionPair; effect: 'allow' | 'ask' },
): Containment {
  const fail: string[] = [];
  const unknown: string[] = [];
  if (declared.effect === 'ask' && permitted.effect === 'allow') {
    fail.push('runs without approval; declared to need human approval');
  }
  const w = implies(permitted.when, declared.when);
  fail.push(...w.fail);
  unknown.push(...w.unknown);
  if (declared.unless.compiled !== undefined) {
    // The declaration excludes calls; the rule must exclude at least those: unless_d ⇒ unless_r.
    if (permitted.unless.compiled === undefined) {
      fail.push(`permits what the declaration excludes (${declared.unless.compiled.summary})`);
    } else {
      const u = implies(declared.unless, permitted.unless);
      fail.push(...u.fail.map((f) => `exclusion: ${f}`));
      unknown.push(...u.unknown);
    }
  }
  // The rule's own `unless` and CEL only narrow it: they may remove the excess, which cannot be shown.
  const narrows = permitted.unless.compiled !== undefined || permitted.when.compiled?.cel !== undefined;
  if (fail.length > 0 && narrows && !fail[0]?.startsWith('runs without approval')) {
    return {
      kind: 'unverifiable',
      why: [...fail, 'the rule also has `unless` or CEL, which may exclude this; it cannot be compared'],
    };
  }
  if (fail.length > 0) return { kind: 'exceeds', excess: fail };
  if (unknown.length > 0) return { kind: 'unverifiable', why: unknown };
  return { kind: 'contained' };
}

/** Does condition block `a` imply block `b` (every call `a` admits, `b` admits)? */
export function implies(a: ConditionPair, b: ConditionPair): Outcome {
  const out: Outcome = { fail: [], unknown: [] };
  const bc = b.compiled;
  if (bc === undefined) return out;
  const ac = a.compiled;
  for (const part of bc.canon) {
    const bArgs = argSet(part.name, part.args);
    const candidates = (ac?.canon ?? []).filter(
      (p) => p.name === part.name && bArgs.every((x) => argSet(p.name, p.args).includes(x)),
    );
    if (candidates.length === 0) {
      out.fail.push(`${part.name}: unconstrained; declared ${summarise(part.name, b.raw)}`);
      continue;
    }
    // Conditions are ANDed, so any one candidate that implies the part is enough.
    let best: Outcome | undefined;
    for (const c of candidates) {
      const r = impliesCanon(part.name, c.condition, part.condition);
      if (r.fail.length === 0 && r.unknown.length === 0) {
        best = r;
        break;
      }
      if (best === undefined || r.fail.length < best.fail.length) best = r;
    }
    if (best) {
      out.fail.push(...best.fail.map((f) => `${part.name}: ${f}`));
      out.unknown.push(...best.unknown.map((f) => `${part.name}: ${f}`));
    }
  }
  for (const [name, bRaw] of Object.entries(b.raw?.args ?? {})) {
    const aRaw = a.raw?.args?.[name];
    const r = impliesArg(aRaw, bRaw);
    out.fail.push(...r.fail.map((f) => `${name}: ${f}`));
    out.unknown.push(...r.unknown.map((f) => `${name}: ${f}`));
  }
  if (bc.cel !== undefined) {
    const bText = b.raw?.cel;
    if (bText === undefined || a.raw?.cel !== bText)
      out.unknown.push(`cel: \`${bText ?? '?'}\` cannot be compared with typed constraints`);
  }
  return out;
}

function argSet(name: CanonName, args: readonly string[] | undefined): string[] {
  return [...(args ?? canonicalisers[name].defaultArgs)];
}

function summarise(name: CanonName, raw: Conditions | undefined): string {
  const c = raw?.[name];
  if (!c) return '(constrained)';
  return Object.entries(c)
    .filter(([k]) => k !== 'arg' && k !== 'args')
    .map(([k, v]) => `${k} ${Array.isArray(v) ? `[${v.join(', ')}]` : String(v)}`)
    .join('; ');
}

function impliesCanon(name: CanonName, a: unknown, b: unknown): Outcome {
  switch (name) {
    case 'path':
      return impliesPath(a as PathCondition, b as PathCondition);
    case 'url':
      return impliesUrl(a as UrlCondition, b as UrlCondition);
    case 'sql':
      return impliesSql(a as SqlCondition, b as SqlCondition);
    case 'email':
      return impliesEmail(a as EmailCondition, b as EmailCondition);
    default:
      // Shell conditions describe programs, pipes and substitutions; only identical ones are compared.
      return canonicalJson(a) === canonicalJson(b)
        ? { fail: [], unknown: [] }
        : {
            fail: [],
            unknown: ['differs from the declaration; shell conditions are compared for equality only'],
          };
  }
}

const list = (xs: readonly string[]) => `[${xs.join(', ')}]`;

function impliesPath(a: PathCondition, b: PathCondition): Outcome {
  const fail: string[] = [];
  if (b.under !== undefined) {
    if (a.under === undefined) fail.push(`any path permitted; declared under ${list(b.under)}`);
    else {
      const outside = a.under.filter((d) => !b.under?.some((x) => isUnder(d, x)));
      if (outside.length > 0) fail.push(`permitted under ${list(outside)}; declared under ${list(b.under)}`);
    }
  }
  for (const e of b.notUnder ?? []) {
    for (const u of a.under ?? ['/']) {
      // The paths under both `u` and `e` are under the deeper of the two; the rule must exclude that one.
      const deeper = isUnder(u, e) ? u : isUnder(e, u) ? e : undefined;
      if (deeper === undefined) continue;
      if (!(a.notUnder ?? []).some((x) => isUnder(deeper, x))) {
        fail.push(`permits ${deeper}, which the declaration excludes (not under ${e})`);
      }
    }
  }
  if (a.allowTraversal && !b.allowTraversal) fail.push('permits `..` segments; declared without');
  return { fail, unknown: [] };
}

/** Does host pattern `outer` admit every host `inner` admits? */
export function hostCovers(outer: HostPattern, inner: HostPattern): boolean {
  if (outer.kind === 'exact') return inner.kind === 'exact' && inner.host === outer.host;
  if (inner.kind === 'exact') return hostMatches(outer, inner.host);
  return inner.suffix === outer.suffix || inner.suffix.endsWith(`.${outer.suffix}`);
}

function impliesUrl(a: UrlCondition, b: UrlCondition): Outcome {
  const fail: string[] = [];
  const show = (ps: readonly HostPattern[]) => list(ps.map(showHostPattern));
  if (b.hosts !== undefined) {
    if (a.hosts === undefined) fail.push(`any host permitted; declared hosts ${show(b.hosts)}`);
    else {
      const extra = a.hosts.filter((h) => !b.hosts?.some((x) => hostCovers(x, h)));
      if (extra.length > 0) fail.push(`permits hosts ${show(extra)} beyond the declared ${show(b.hosts)}`);
    }
  }
  const schemes = a.schemes.filter((s) => !b.schemes.includes(s));
  if (schemes.length > 0) fail.push(`permits schemes ${list(schemes)}; declared ${list(b.schemes)}`);
  // Ports each rule admits for each of its schemes; the declaration must admit them for that scheme.
  const extraPorts = new Set<string>();
  for (const s of a.schemes) {
    const aPorts = a.ports ?? (DEFAULT_PORTS[s] !== undefined ? [DEFAULT_PORTS[s]] : []);
    const bPorts = b.ports ?? (DEFAULT_PORTS[s] !== undefined ? [DEFAULT_PORTS[s]] : []);
    for (const p of aPorts) if (!bPorts.includes(p)) extraPorts.add(String(p));
  }
  if (extraPorts.size > 0) fail.push(`permits ports ${list([...extraPorts])} beyond the declaration`);
  if (a.allowUserinfo && !b.allowUserinfo) fail.push('permits credentials in the url; declared without');
  return { fail, unknown: [] };
}

function namesWithin(a: QualifiedName[], b: QualifiedName[], schemas: readonly string[]): QualifiedName[] {
  return a.filter((x) => !b.some((y) => nameMatches(y, x, schemas)));
}

function impliesSql(a: SqlCondition, b: SqlCondition): Outcome {
  const fail: string[] = [];
  const names = (xs: QualifiedName[]) => list(xs.map(showName));
  if (b.statements !== undefined) {
    if (a.statements === undefined) fail.push(`any statement kind permitted; declared ${list(b.statements)}`);
    else {
      const extra = a.statements.filter((k) => !b.statements?.includes(k));
      if (extra.length > 0) fail.push(`permits statements ${list(extra)}; declared ${list(b.statements)}`);
    }
  }
  const bound = (
    what: string,
    declared: QualifiedName[] | undefined,
    options: (QualifiedName[] | undefined)[],
    schemas: readonly string[],
  ) => {
    if (declared === undefined) return;
    const given = options.filter((o): o is QualifiedName[] => o !== undefined);
    if (given.length === 0) {
      fail.push(`any ${what} permitted; declared ${names(declared)}`);
      return;
    }
    const extras = given.map((o) => namesWithin(o, declared, schemas));
    if (extras.every((e) => e.length > 0)) {
      const least = extras.reduce((m, e) => (e.length < m.length ? e : m));
      fail.push(`permits ${what} ${names(least)} beyond the declared ${names(declared)}`);
    }
  };
  bound(
    'table',
    b.tables,
    [a.tables, a.reads && a.writes ? [...a.reads, ...a.writes] : undefined],
    TABLE_SCHEMAS,
  );
  bound('table read', b.reads, [a.reads, a.tables], TABLE_SCHEMAS);
  bound('table written', b.writes, [a.writes, a.tables], TABLE_SCHEMAS);
  // Functions: `any` permits every function; a list that keeps the vetted built-ins (`default`) permits
  // them too, which a declaration can only contain if it keeps them as well.
  const fa = a.functions;
  const fb = b.functions;
  if (fb !== undefined && fb.kind === 'list') {
    const declared = [...(fb.builtins ? ['the vetted built-ins'] : []), ...fb.names.map(showName)];
    if (fa === undefined || fa.kind === 'any')
      fail.push(`any function permitted; declared ${list(declared)}`);
    else {
      if (fa.builtins && !fb.builtins)
        fail.push('permits the vetted built-in functions; declared only named ones');
      bound('function', fb.names, [fa.names], FUNCTION_SCHEMAS);
    }
  }
  if (a.maxStatements > b.maxStatements)
    fail.push(`permits ${a.maxStatements} statements per call; declared ${b.maxStatements}`);
  return { fail, unknown: [] };
}

function impliesEmail(a: EmailCondition, b: EmailCondition): Outcome {
  const fail: string[] = [];
  const show = (ps: readonly HostPattern[]) => list(ps.map(showHostPattern));
  if (b.toDomains !== undefined) {
    const domains = b.toDomains;
    const viaDomains = a.toDomains?.filter((d) => !domains.some((x) => hostCovers(x, d)));
    const viaTo = a.to?.filter((t) => !domains.some((x) => hostMatches(x, t.slice(t.lastIndexOf('@') + 1))));
    const ok =
      (viaDomains !== undefined && viaDomains.length === 0) || (viaTo !== undefined && viaTo.length === 0);
    if (!ok) {
      if (viaDomains === undefined && viaTo === undefined)
        fail.push(`any recipient permitted; declared domains ${show(domains)}`);
      else if (viaDomains !== undefined)
        fail.push(`permits domains ${show(viaDomains)} beyond the declared ${show(domains)}`);
      else fail.push(`permits recipients ${list(viaTo ?? [])} outside the declared domains ${show(domains)}`);
    }
  }
  if (b.to !== undefined) {
    if (a.to === undefined) fail.push(`any address permitted; declared ${list(b.to)}`);
    else {
      const extra = a.to.filter((t) => !b.to?.includes(t));
      if (extra.length > 0) fail.push(`permits addresses ${list(extra)}; declared ${list(b.to)}`);
    }
  }
  if (b.maxRecipients !== undefined && (a.maxRecipients === undefined || a.maxRecipients > b.maxRecipients)) {
    fail.push(
      `permits ${a.maxRecipients ?? 'any number of'} recipients; declared at most ${b.maxRecipients}`,
    );
  }
  return { fail, unknown: [] };
}

type Scalar = string | number | boolean | null;

/** The finite set of values a constraint admits, when it names one (`equals`, `in`). */
function finite(c: ArgConstraint): Scalar[] | undefined {
  if (c.equals !== undefined) return c.in === undefined || c.in.some((x) => x === c.equals) ? [c.equals] : [];
  return c.in;
}

function impliedType(c: ArgConstraint): string | undefined {
  const numeric = c.min !== undefined || c.max !== undefined || c.gt !== undefined || c.lt !== undefined;
  return (
    c.type ?? (numeric ? 'number' : c.glob !== undefined || c.max_length !== undefined ? 'string' : undefined)
  );
}

/** The interval a constraint admits, as written: `> 0, <= 1000`; `any number` when unbounded. */
export function showInterval(c: ArgConstraint): string {
  const parts: string[] = [];
  if (c.gt !== undefined) parts.push(`> ${c.gt}`);
  if (c.min !== undefined) parts.push(`>= ${c.min}`);
  if (c.lt !== undefined) parts.push(`< ${c.lt}`);
  if (c.max !== undefined) parts.push(`<= ${c.max}`);
  return parts.length ? parts.join(', ') : 'any number';
}

/** Lower bound as (value, open); the tighter of `min` and `gt`. */
function lower(c: ArgConstraint): { v: number; open: boolean } | undefined {
  const g = c.gt !== undefined ? { v: c.gt, open: true } : undefined;
  const m = c.min !== undefined ? { v: c.min, open: false } : undefined;
  if (g && m) return g.v >= m.v ? g : m;
  return g ?? m;
}

function upper(c: ArgConstraint): { v: number; open: boolean } | undefined {
  const l = c.lt !== undefined ? { v: c.lt, open: true } : undefined;
  const m = c.max !== undefined ? { v: c.max, open: false } : undefined;
  if (l && m) return l.v <= m.v ? l : m;
  return l ?? m;
}

function impliesArg(a: ArgConstraint | undefined, b: ArgConstraint): Outcome {
  const fail: string[] = [];
  const unknown: string[] = [];
  if (b.present === false) {
    if (a?.present !== false) fail.push('may be sent; declared absent');
    return { fail, unknown };
  }
  if (a === undefined) {
    fail.push(`unconstrained; declared ${describe(b)}`);
    return { fail, unknown };
  }
  if (a.present === false) {
    // `a` admits only calls without the argument, which `b` (a constraint on its value) never admits.
    fail.push(`permitted only when absent; declared ${describe(b)}`);
    return { fail, unknown };
  }
  const fa = finite(a);
  const ta = impliedType(a);
  const tb = impliedType(b);
  if (tb !== undefined) {
    const ok = fa ? fa.every((v) => hasType(v, tb)) : ta === tb || (tb === 'number' && ta === 'integer');
    if (!ok) fail.push(`permitted ${ta ?? 'any type'}; declared ${tb}`);
  }
  const lb = lower(b);
  const ub = upper(b);
  if (lb || ub) {
    if (fa) {
      const out = fa.filter(
        (v) =>
          typeof v !== 'number' ||
          (lb && (lb.open ? !(v > lb.v) : !(v >= lb.v))) ||
          (ub && (ub.open ? !(v < ub.v) : !(v <= ub.v))),
      );
      if (out.length > 0) fail.push(`permits ${JSON.stringify(out)}; declared ${showInterval(b)}`);
    } else {
      const la = lower(a);
      const ua = upper(a);
      const lowOk = !lb || (la !== undefined && (la.v > lb.v || (la.v === lb.v && (la.open || !lb.open))));
      const upOk = !ub || (ua !== undefined && (ua.v < ub.v || (ua.v === ub.v && (ua.open || !ub.open))));
      if (!lowOk || !upOk) fail.push(`permitted ${showInterval(a)}; declared ${showInterval(b)}`);
    }
  }
  const fb = finite(b);
  if (fb !== undefined) {
    if (fa === undefined) fail.push(`permitted ${describe(a)}; declared one of ${JSON.stringify(fb)}`);
    else {
      const extra = fa.filter((v) => !fb.some((x) => x === v));
      if (extra.length > 0)
        fail.push(`permits ${JSON.stringify(extra)}; declared one of ${JSON.stringify(fb)}`);
    }
  }
  if (b.max_length !== undefined) {
    const ok = fa
      ? fa.every((v) => typeof v === 'string' && v.length <= (b.max_length as number))
      : a.max_length !== undefined && a.max_length <= b.max_length;
    if (!ok) fail.push(`permitted length ${a.max_length ?? 'unbounded'}; declared at most ${b.max_length}`);
  }
  if (b.glob !== undefined) {
    const g = compileGlob(b.glob);
    if (fa) {
      const out = fa.filter((v) => !(typeof v === 'string' && globMatch(g, v)));
      if (out.length > 0) fail.push(`permits ${JSON.stringify(out)}; declared like \`${b.glob}\``);
    } else if (a.glob === undefined) fail.push(`permitted any text; declared like \`${b.glob}\``);
    else if (a.glob !== b.glob)
      unknown.push(`\`${a.glob}\` against the declared \`${b.glob}\`: globs are compared for equality only`);
  }
  return { fail, unknown };
}

function describe(c: ArgConstraint): string {
  const f = finite(c);
  if (f) return `one of ${JSON.stringify(f)}`;
  const parts: string[] = [];
  const t = impliedType(c);
  if (t) parts.push(t);
  if (lower(c) || upper(c)) parts.push(showInterval(c));
  if (c.max_length !== undefined) parts.push(`length <= ${c.max_length}`);
  if (c.glob !== undefined) parts.push(`like \`${c.glob}\``);
  return parts.join(' ') || 'any value';
}

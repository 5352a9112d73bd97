/**
 * load for bundles: many policy files, each owned by a team, checked file by file for what they may
 * define, then merged into one policy and checked whole (every problem at its `file:line:column`).
 *
 * Ownership:
 * - The bundle root (a directory's `bundle.yaml`, or the file with `include:`) belongs to the base team
 *   (`team:` in the root, default `base`), and so do the files its `base:` names. Only the root sets
 *   bundle-wide keys (`mode`, `redact`, `description`, `include`, `base`).
 * - Every other file is a team file: `team:` and `owns: { agents, roles, tools }` (exact names or
 *   prefixes ending in `*`). It may define only names its `owns` covers; no two teams' namespaces may
 *   overlap; names no team claims belong to the base, and only base files may define them.
 * - A name is defined in one file only. An agent may be given its own team's roles and the base's
 *   (shared) roles, never another team's.
 * The policy hash covers every file: its name and its content.
 */
import { jsonDigest } from '../canonical-json.js';
import type { PolicyFile, PolicyRead } from './bundle-read.js';
import { type CheckedPolicy, checkPolicy } from './check.js';
import { compileGlob, globMatch } from './glob.js';
import type { Problem } from './problems.js';
import { schemaProblemsOf } from './schema-problems.js';
import { MAX_POLICY_BYTES, type PolicySource, parsePolicyText } from './source.js';
import type { AgentSpec, PolicyDocument, RuleSpec, ToolSpec } from './types.js';

type LoadResult =
  | { ok: true; policy: CheckedPolicy; warnings: Problem[] }
  | { ok: false; problems: Problem[] };

/** The name kinds a file can define, each a top-level mapping. */
const KINDS = ['agents', 'roles', 'tools'] as const;
type Kind = (typeof KINDS)[number];
const SINGULAR: Record<Kind, string> = { agents: 'agent', roles: 'role', tools: 'tool' };
/** Keys only the bundle root may set. */
const ROOT_ONLY = ['mode', 'redact', 'description', 'include', 'base'] as const;
const DEFAULT_BASE_TEAM = 'base';

/** One parsed bundle file and what it is in the bundle. */
interface Member {
  file: PolicyFile;
  source: PolicySource;
  data: FileData;
  role: 'root' | 'base' | 'team';
  team: string;
}

interface FileData {
  version: 1;
  team?: string;
  owns?: Partial<Record<Kind, string[]>>;
  include?: string[];
  base?: string[];
  mode?: PolicyDocument['mode'];
  redact?: string[];
  description?: string;
  agents?: Record<string, AgentSpec>;
  roles?: Record<string, RuleSpec[]>;
  tools?: Record<string, ToolSpec>;
}

/** A name's definition: where, and by which team. */
interface Definition {
  member: Member;
  at: { line: number; column: number };
}

/** Loads and checks a bundle read from disk (`kind` `include` or `directory`). Never throws. */
export function loadBundle(read: PolicyRead): LoadResult {
  const parsed = parseMembers(read);
  if (!parsed.ok) return parsed;
  const members = parsed.members;
  const problems: Problem[] = [];
  const report = (m: Member, code: string, message: string, path: (string | number)[], hint?: string) => {
    problems.push({
      severity: 'error',
      code,
      message,
      file: m.source.file,
      ...m.source.locate(path, true),
      path: `/${path.join('/')}`,
      ...(hint ? { hint } : {}),
    });
  };

  checkKeys(members, read.kind, report);
  const claims = collectClaims(members, report);
  const defs = collectDefinitions(members, claims, report);
  checkRoleReferences(members, defs.roles, report);

  const doc = mergedDocument(members);
  const source = composeSource(read, members, defs);
  const hash = bundleHash(members);
  const checked = checkPolicy(doc, source, { hash });
  const all = [...problems, ...checked.problems];
  if (all.some((p) => p.severity === 'error')) return { ok: false, problems: all };
  return { ok: true, policy: checked.policy, warnings: all };
}

/**
 * The hash of a bundle: sha256 of the canonical JSON of every file's name and the digest of its content
 * (as parsed, so comments and formatting do not count, as for a single file), in file order.
 */
function bundleHash(members: readonly Member[]): string {
  return jsonDigest({
    bundle: 1,
    files: members.map((m) => [m.file.name, jsonDigest(m.data)]),
  });
}

/** Parses and schema-checks every file; assigns each its place (root, base, team). */
function parseMembers(
  read: PolicyRead,
): { ok: true; members: Member[] } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  const parsed: { file: PolicyFile; source: PolicySource; data: FileData }[] = [];
  for (const file of read.files) {
    let source = file.source;
    if (!source) {
      const r = parseBytes(file);
      if (!r.ok) {
        problems.push(...r.problems);
        continue;
      }
      source = r.source;
    }
    const schema = schemaProblemsOf(source, 'file');
    if (schema.length > 0) {
      problems.push(...schema);
      continue;
    }
    parsed.push({ file, source, data: source.data as FileData });
  }
  if (problems.length > 0) return { ok: false, problems };
  const root = parsed[0];
  if (!root) return { ok: false, problems };
  const baseTeam = root.data.team ?? DEFAULT_BASE_TEAM;
  const baseNames = matchBase(read, root, problems);
  const members = parsed.map((p, i): Member => {
    const role = i === 0 ? 'root' : baseNames.has(p.file.name) ? 'base' : 'team';
    return { ...p, role, team: role === 'team' ? (p.data.team ?? '') : baseTeam };
  });
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, members };
}

/** The bytes of a file not parsed while reading: invalid UTF-8, or a syntax error to report. */
function parseBytes(file: PolicyFile) {
  if (file.bytes.length > MAX_POLICY_BYTES)
    return { ok: false as const, problems: [fileProblem(file, 'too_large', 'policy file is too large')] };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(file.bytes);
  } catch {
    return { ok: false as const, problems: [fileProblem(file, 'unreadable', 'policy is not valid utf-8')] };
  }
  return parsePolicyText(text, file.path);
}

function fileProblem(file: PolicyFile, code: string, message: string): Problem {
  return { severity: 'error', code, message, file: file.path, line: 1, column: 1, path: '' };
}

/** The files the root's `base:` names (in a file bundle the reader already loaded them). */
function matchBase(
  read: PolicyRead,
  root: { source: PolicySource; data: FileData },
  problems: Problem[],
): Set<string> {
  const names = read.files.map((f) => f.name);
  const out = new Set<string>();
  for (const [i, entry] of (root.data.base ?? []).entries()) {
    const norm = entry.replace(/^\.\//, '');
    const slash = norm.lastIndexOf('/');
    const dir = norm.slice(0, slash + 1);
    const glob = compileGlob(norm.slice(slash + 1));
    const hits = names.filter(
      (n) => n.startsWith(dir) && !n.slice(dir.length).includes('/') && globMatch(glob, n.slice(dir.length)),
    );
    for (const h of hits) out.add(h);
    // A file bundle's reader already reported a base entry that matches nothing.
    if (hits.length === 0 && read.kind === 'directory') {
      problems.push({
        severity: 'error',
        code: 'include_not_found',
        message: `base file \`${entry}\` is not in the bundle`,
        file: root.source.file,
        ...root.source.locate(['base', i]),
        path: `/base/${i}`,
      });
    }
  }
  return out;
}

type Report = (m: Member, code: string, message: string, path: (string | number)[], hint?: string) => void;

/** Which top-level keys each kind of file may set. */
function checkKeys(members: readonly Member[], kind: PolicyRead['kind'], report: Report): void {
  for (const m of members) {
    const d = m.data;
    if (m.role === 'root') {
      if (d.owns)
        report(
          m,
          'bundle_key',
          'the bundle root cannot have `owns`',
          ['owns'],
          'the base owns every name no team claims',
        );
      if (d.include && kind === 'directory')
        report(
          m,
          'bundle_key',
          'a directory bundle already includes every file in it',
          ['include'],
          'remove `include`',
        );
      continue;
    }
    for (const key of ROOT_ONLY) {
      if (d[key] === undefined || (key === 'include' && kind === 'include')) continue;
      if (key === 'include')
        report(
          m,
          'bundle_key',
          'a directory bundle already includes every file in it',
          [key],
          'remove `include`',
        );
      else
        report(
          m,
          'bundle_key',
          `\`${key}\` can be set only in the bundle root`,
          [key],
          'move it to the root file',
        );
    }
    if (m.role === 'base') {
      if (d.owns)
        report(
          m,
          'bundle_key',
          'a base file cannot have `owns`',
          ['owns'],
          'the base owns every name no team claims',
        );
      if (d.team !== undefined && d.team !== m.team)
        report(m, 'wrong_team', `base file says team \`${d.team}\`, but the base team is \`${m.team}\``, [
          'team',
        ]);
      continue;
    }
    if (d.team === undefined) {
      report(
        m,
        'missing_team',
        'a bundle file needs `team:` and `owns:` (or a place under `base:` in the root)',
        [],
        'add `team: <name>` and `owns: { agents: [<team>.*] }`',
      );
    } else if (d.team === m.team && isBaseTeamName(members, d.team)) {
      report(
        m,
        'base_team_file',
        `team \`${d.team}\` is the base team: only the root and its \`base:\` files belong to it`,
        ['team'],
        'list this file under `base:` in the bundle root',
      );
    } else if (d.owns === undefined)
      report(
        m,
        'missing_owns',
        `team file of \`${d.team}\` has no \`owns\``,
        ['team'],
        'add `owns: { agents: [...], roles: [...], tools: [...] }`',
      );
  }
}

function isBaseTeamName(members: readonly Member[], team: string): boolean {
  return members[0]?.team === team;
}

/** A namespace claim: a pattern in a team file's `owns`. */
interface Claim {
  member: Member;
  pattern: string;
  index: number;
}

/** Every team's claims per kind, refusing claims that overlap another team's. */
function collectClaims(members: readonly Member[], report: Report): Record<Kind, Claim[]> {
  const claims: Record<Kind, Claim[]> = { agents: [], roles: [], tools: [] };
  for (const m of members) {
    if (m.role !== 'team' || !m.data.owns) continue;
    for (const kind of KINDS) {
      for (const [index, pattern] of (m.data.owns[kind] ?? []).entries()) {
        const clash = claims[kind].find((c) => c.member.team !== m.team && overlaps(c.pattern, pattern));
        if (clash) {
          report(
            m,
            'overlapping_namespace',
            `team \`${m.team}\` claims ${kind} \`${pattern}\`, which overlaps \`${clash.pattern}\` of team \`${clash.member.team}\` (${where(clash.member, ['owns', kind, clash.index])})`,
            ['owns', kind, index],
            'each name belongs to one team: narrow the prefix',
          );
          continue;
        }
        claims[kind].push({ member: m, pattern, index });
      }
    }
  }
  return claims;
}

/** True when some name matches both ownership patterns (an exact name, or a prefix ending in `*`). */
export function overlaps(a: string, b: string): boolean {
  const pa = a.endsWith('*') ? a.slice(0, -1) : undefined;
  const pb = b.endsWith('*') ? b.slice(0, -1) : undefined;
  if (pa === undefined && pb === undefined) return a === b;
  if (pa === undefined) return a.startsWith(pb as string);
  if (pb === undefined) return b.startsWith(pa);
  return pa.startsWith(pb) || pb.startsWith(pa);
}

/** True when a name matches an ownership pattern. */
function owned(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function where(m: Member, path: (string | number)[]): string {
  const at = m.source.locate(path, true);
  return `${m.source.file}:${at.line}:${at.column}`;
}

/**
 * Where every agent, role and tool is defined, refusing a name defined twice, a team file defining
 * outside its `owns`, and a base file defining inside a team's namespace.
 */
function collectDefinitions(
  members: readonly Member[],
  claims: Record<Kind, Claim[]>,
  report: Report,
): Record<Kind, Map<string, Definition>> {
  const defs: Record<Kind, Map<string, Definition>> = {
    agents: new Map(),
    roles: new Map(),
    tools: new Map(),
  };
  for (const m of members) {
    for (const kind of KINDS) {
      for (const name of Object.keys(m.data[kind] ?? {})) {
        const path = [kind, name];
        const owner = claims[kind].find((c) => owned(c.pattern, name));
        if (m.role === 'team') {
          const mine = (m.data.owns?.[kind] ?? []).some((p) => owned(p, name));
          if (!mine) {
            const whose = owner
              ? `it belongs to team \`${owner.member.team}\``
              : `it belongs to the base team \`${members[0]?.team}\``;
            report(
              m,
              'outside_namespace',
              `team \`${m.team}\` cannot define ${SINGULAR[kind]} \`${name}\`: ${whose}`,
              path,
              `this file owns ${kind} ${(m.data.owns?.[kind] ?? []).map((p) => `\`${p}\``).join(', ') || '(none)'}`,
            );
            continue;
          }
        } else if (owner) {
          report(
            owner.member,
            'outside_namespace',
            `team \`${owner.member.team}\` claims \`${owner.pattern}\`, which covers ${SINGULAR[kind]} \`${name}\` of the base (${where(m, path)})`,
            ['owns', kind, owner.index],
            'shared names stay with the base team: narrow the prefix',
          );
          continue;
        }
        const prev = defs[kind].get(name);
        if (prev) {
          report(
            m,
            'duplicate_definition',
            `${SINGULAR[kind]} \`${name}\` is already defined at ${prev.member.source.file}:${prev.at.line}:${prev.at.column}`,
            path,
            `each ${SINGULAR[kind]} is defined in one file; its owner edits it there`,
          );
          continue;
        }
        defs[kind].set(name, { member: m, at: m.source.locate(path, true) });
      }
    }
  }
  return defs;
}

/** An agent may be given its own team's roles and shared (base) roles, not another team's. */
function checkRoleReferences(
  members: readonly Member[],
  roles: ReadonlyMap<string, Definition>,
  report: Report,
): void {
  const baseTeam = members[0]?.team;
  for (const m of members) {
    for (const [id, spec] of Object.entries(m.data.agents ?? {})) {
      for (const [i, role] of (spec.roles ?? []).entries()) {
        const def = roles.get(role);
        // An unknown role is reported by the whole-policy check, with a "did you mean".
        if (!def || def.member.team === baseTeam || def.member.team === m.team) continue;
        report(
          m,
          'foreign_role',
          `agent \`${id}\` of team \`${m.team}\` cannot use role \`${role}\` of team \`${def.member.team}\``,
          ['agents', id, 'roles', i],
          'use a shared role of the base, or define the role in this team',
        );
      }
    }
  }
}

/** One policy document from every file: the root's settings, every file's agents, roles and tools. */
function mergedDocument(members: readonly Member[]): PolicyDocument {
  const root = members[0]?.data;
  const doc: PolicyDocument = { version: 1, agents: {}, roles: {}, tools: {} };
  if (root?.mode) doc.mode = root.mode;
  if (root?.description !== undefined) doc.description = root.description;
  if (root?.redact) doc.redact = root.redact;
  const into = <T>(target: Record<string, T>, from: Record<string, T> | undefined) => {
    // The first definition wins; a second one is refused above.
    for (const [k, v] of Object.entries(from ?? {})) if (!Object.hasOwn(target, k)) target[k] = v;
  };
  for (const m of members) {
    into(doc.agents, m.data.agents);
    into(doc.roles as Record<string, RuleSpec[]>, m.data.roles);
    into(doc.tools as Record<string, ToolSpec>, m.data.tools);
  }
  return doc;
}

/**
 * A source over the merged document: a path under `agents`, `roles` or `tools` is located in the file that
 * defines that name, anything else in the root, and every position names its file. Offsets are global
 * (file after file), so positions inside a CEL scalar land in the right file.
 */
function composeSource(
  read: PolicyRead,
  members: readonly Member[],
  defs: Record<Kind, Map<string, Definition>>,
): PolicySource {
  const root = members[0] as Member;
  const bases: number[] = [];
  const baseOf = new Map<PolicySource, number>();
  let total = 0;
  for (const m of members) {
    bases.push(total);
    baseOf.set(m.source, total);
    total += m.source.text.length + 1;
  }
  const owner = (path: readonly (string | number)[]): PolicySource => {
    const [kind, name] = path;
    if ((kind === 'agents' || kind === 'roles' || kind === 'tools') && typeof name === 'string')
      return defs[kind].get(name)?.member.source ?? root.source;
    return root.source;
  };
  let text: string | undefined;
  return {
    file: read.path,
    // Read only for a CEL problem's position: joined once, on demand.
    get text() {
      text ??= members.map((m) => m.source.text).join('\n');
      return text;
    },
    data: undefined,
    locate(path, key) {
      const s = owner(path);
      return { ...s.locate(path, key), file: s.file };
    },
    offsetOf(path) {
      const s = owner(path);
      const o = s.offsetOf(path);
      return o === undefined ? undefined : o + (baseOf.get(s) ?? 0);
    },
    position(offset) {
      let lo = 0;
      let hi = bases.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if ((bases[mid] as number) <= offset) lo = mid;
        else hi = mid - 1;
      }
      const m = members[lo] as Member;
      return { ...m.source.position(offset - (bases[lo] as number)), file: m.source.file };
    },
  };
}

/**
 * check for the `flows:` section: resolves levels, compiles labels, JSONPaths, item constraints, typed
 * conditions, sinks, guards, sequences and presets, and reports every problem with its place. The result
 * is the immutable `CompiledFlows` the flow evaluator reads.
 */
import { compileJsonPath, type JsonPath } from '../flows/jsonpath.js';
import { makeLabel } from '../flows/label.js';
import type {
  CompiledContext,
  CompiledFlows,
  CompiledGuard,
  CompiledItem,
  CompiledProduces,
  CompiledSequence,
  CompiledSink,
  ContextSpec,
  FlowsSpec,
  ItemSpec,
  LabelSpec,
  PartialLabel,
  ToolIndex,
  ToolIndexLite,
} from '../flows/types.js';
import type { Mode } from '../types.js';
import type { CompiledConditions } from './check.js';
import { type ArgCheck, compileArgConstraint } from './conditions.js';
import { parseDuration } from './duration.js';
import { compileGlob, type Glob, isValidToolPattern } from './glob.js';
import { closest } from './problems.js';
import type { ArgConstraint, Conditions } from './types.js';

/** Confidentiality levels when a policy names none. */
export const DEFAULT_LEVELS: readonly string[] = ['public', 'internal', 'confidential', 'secret'];

type Path = (string | number)[];
type Report = (
  severity: 'error' | 'warning',
  code: string,
  message: string,
  path: Path,
  hint?: string,
) => void;
type CompileConditions = (
  c: Conditions,
  path: Path,
  effect: 'allow' | 'deny',
  negated: boolean,
) => CompiledConditions | undefined;

/** Compiles `flows:`; problems go to `report`. Returns undefined when the section is absent. */
export function checkFlows(
  spec: FlowsSpec | undefined,
  policyMode: Mode,
  report: Report,
  compileConditions: CompileConditions,
): CompiledFlows | undefined {
  if (spec === undefined) return undefined;
  const levels = spec.levels ?? DEFAULT_LEVELS;
  if (new Set(levels).size !== levels.length)
    report('error', 'flow_levels', '`flows.levels` names a level twice', ['flows', 'levels']);
  const top = levels.length - 1;

  const level = (name: string | undefined, path: Path): number | undefined => {
    if (name === undefined) return undefined;
    const i = levels.indexOf(name);
    if (i >= 0) return i;
    const guess = closest(name, levels);
    report(
      'error',
      'unknown_level',
      `unknown confidentiality level \`${name}\``,
      path,
      guess ? `did you mean \`${guess}\`?` : `levels: ${levels.join(', ')}`,
    );
    return undefined;
  };

  const partial = (l: LabelSpec, path: Path): PartialLabel => {
    const lv = level(l.level, [...path, 'level']);
    return {
      ...(l.integrity !== undefined ? { integrity: l.integrity } : {}),
      ...(lv !== undefined ? { level: lv } : {}),
      ...(l.readers !== undefined ? { readers: l.readers.map((r) => r.toLowerCase()) } : {}),
      ...(l.tags !== undefined ? { tags: l.tags } : {}),
    };
  };

  const jsonPath = (src: string, path: Path): JsonPath | undefined => {
    const r = compileJsonPath(src);
    if (r.ok) return r.value;
    report('error', 'bad_jsonpath', `JSONPath \`${src}\`: ${r.error}`, path);
    return undefined;
  };

  const constraints = (c: Record<string, ArgConstraint> | undefined, path: Path): ArgCheck[] => {
    const out: ArgCheck[] = [];
    for (const [name, k] of Object.entries(c ?? {})) {
      const r = compileArgConstraint(name, k);
      if (r.ok) out.push(r.value);
      else report('error', 'bad_condition', `${name}: ${r.error}`, [...path, name]);
    }
    return out;
  };

  const items = (list: ItemSpec[] | undefined, path: Path): CompiledItem[] => {
    const out: CompiledItem[] = [];
    (list ?? []).forEach((it, i) => {
      const p = jsonPath(it.path, [...path, i, 'path']);
      if (!p) return;
      out.push({
        path: p,
        where: constraints(it.where, [...path, i, 'where']),
        unless: constraints(it.unless, [...path, i, 'unless']),
        ...(it.label ? { label: partial(it.label, [...path, i, 'label']) } : {}),
        ...(it.action ? { action: it.action } : {}),
      });
    });
    return out;
  };

  // produces
  const produces = newIndex<CompiledProduces>();
  for (const [tool, p] of Object.entries(spec.produces ?? {})) {
    const path = ['flows', 'produces', tool];
    if (!pattern(tool, path, report)) continue;
    const base = partial(p.label ?? {}, [...path, 'label']);
    // INVARIANT: fail closed — a declaration that leaves integrity or level out gets the restrictive value.
    const label = makeLabel({
      integrity: base.integrity ?? 'untrusted',
      level: base.level ?? top,
      readers: base.readers,
      tags: base.tags,
    });
    const overrides: CompiledProduces['overrides'] = [];
    (p.overrides ?? []).forEach((o, i) => {
      const when = compileConditions(o.when, [...path, 'overrides', i, 'when'], 'allow', false);
      if (when) overrides.push({ when, label: partial(o.label, [...path, 'overrides', i, 'label']) });
    });
    const extract: CompiledProduces['extract'] = [];
    for (const [set, src] of Object.entries(p.extract ?? {})) {
      const jp = jsonPath(src, [...path, 'extract', set]);
      if (jp) extract.push({ set, path: jp });
    }
    add(produces, tool, {
      tool,
      label,
      overrides,
      items: items(p.items, [...path, 'items']),
      withhold: items(p.withhold, [...path, 'withhold']),
      extract,
    });
  }
  const extracted = new Set(Object.values(spec.produces ?? {}).flatMap((p) => Object.keys(p.extract ?? {})));

  // sinks
  const sinks = newIndex<CompiledSink>();
  for (const [tool, s] of Object.entries(spec.sinks ?? {})) {
    const path = ['flows', 'sinks', tool];
    if (!pattern(tool, path, report)) continue;
    const seen: CompiledSink['seen'] = [];
    for (const [arg, set] of Object.entries(s.seen ?? {})) {
      if (!extracted.has(set)) {
        const guess = closest(set, extracted);
        report(
          'error',
          'unknown_seen_set',
          `no \`produces\` entry extracts a set named \`${set}\``,
          [...path, 'seen', arg],
          guess ? `did you mean \`${guess}\`?` : 'declare it under `produces.<tool>.extract`',
        );
        continue;
      }
      seen.push({ arg, set });
    }
    const maxLevel = level(s.max_level, [...path, 'max_level']);
    add(sinks, tool, {
      tool,
      effect: s.effect ?? 'deny',
      trusted: s.trusted ?? false,
      ...(maxLevel !== undefined ? { maxLevel } : {}),
      recipients: {
        email: s.recipients?.email ?? [],
        url: s.recipients?.url ?? [],
        text: s.recipients?.text ?? [],
      },
      seen,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
    });
    if (!s.trusted && maxLevel === undefined && seen.length === 0 && !s.recipients)
      report('warning', 'empty_sink', `sink \`${tool}\` requires nothing, so it never refuses`, path);
  }

  const context = (c: ContextSpec | undefined, path: Path): CompiledContext | undefined => {
    if (!c) return undefined;
    const lv = level(c.level_at_least, [...path, 'level_at_least']);
    return {
      ...(c.integrity ? { integrity: c.integrity } : {}),
      ...(lv !== undefined ? { levelAtLeast: lv } : {}),
      ...(c.tags_any ? { tagsAny: c.tags_any } : {}),
    };
  };

  // guards
  const guards = newIndex<CompiledGuard>();
  const ids = new Set<string>();
  const uniqueId = (id: string, path: Path) => {
    if (ids.has(id)) report('error', 'duplicate_id', `flow rule id \`${id}\` is used twice`, path);
    ids.add(id);
  };
  let rules = 0;
  (spec.guards ?? []).forEach((g, i) => {
    const path = ['flows', 'guards', i];
    const effects = (['deny', 'ask'] as const).filter((e) => g[e] !== undefined);
    if (effects.length !== 1) {
      report('error', 'rule_effect', 'a guard gives exactly one of `deny` or `ask`', path);
      return;
    }
    const effect = effects[0] as 'deny' | 'ask';
    const id = g.id ?? `guard[${i}]`;
    uniqueId(id, [...path, 'id']);
    const when = g.when ? compileConditions(g.when, [...path, 'when'], 'deny', false) : undefined;
    const unless = g.unless ? compileConditions(g.unless, [...path, 'unless'], 'deny', true) : undefined;
    if ((g.when && !when) || (g.unless && !unless)) return;
    const guard: CompiledGuard = {
      id,
      effect,
      kind: 'guard',
      ...(when ? { when } : {}),
      ...(unless ? { unless } : {}),
      ...(g.context ? { context: context(g.context, [...path, 'context']) as CompiledContext } : {}),
      ...(g.reason !== undefined ? { reason: g.reason } : {}),
    };
    for (const t of patterns(g[effect] as string | string[], [...path, effect], report))
      add(guards, t, guard);
    rules++;
  });

  // sequences
  const steppers = newIndex<CompiledSequence>();
  (spec.sequences ?? []).forEach((s, i) => {
    const path = ['flows', 'sequences', i];
    const id = s.id ?? `sequence[${i}]`;
    uniqueId(id, [...path, 'id']);
    let withinMs: number | undefined;
    if (s.within !== undefined) {
      withinMs = parseDuration(s.within);
      if (withinMs === undefined)
        report(
          'error',
          'bad_duration',
          `\`within\`: \`${s.within}\` is not a duration`,
          [...path, 'within'],
          'e.g. `10m`, `2h`, `7d`',
        );
    }
    const steps = s.after.map((a, k) => lite(patterns(a, [...path, 'after', k], report)));
    const seq: CompiledSequence = { id, steps, ...(withinMs !== undefined ? { withinMs } : {}) };
    s.after.forEach((a, k) => {
      for (const t of patterns(a, [...path, 'after', k], () => {}))
        if (!hasSeq(steppers, t, seq)) add(steppers, t, seq);
    });
    const guard: CompiledGuard = {
      id,
      effect: s.effect ?? 'deny',
      kind: 'sequence',
      sequence: seq,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
    };
    for (const t of patterns(s.then, [...path, 'then'], report)) add(guards, t, guard);
    rules++;
  });

  // presets
  for (const name of ['lethal_trifecta', 'rule_of_two'] as const) {
    const p = spec.presets?.[name];
    if (!p) continue;
    const path = ['flows', 'presets', name];
    const sensitive = level(p.sensitive, [...path, 'sensitive']) ?? Math.min(1, top);
    const guard: CompiledGuard = {
      id: name,
      effect: p.effect ?? 'ask',
      kind: name,
      context: { integrity: 'untrusted', levelAtLeast: sensitive },
    };
    for (const t of patterns(p.egress, [...path, 'egress'], report)) add(guards, t, guard);
    rules++;
  }

  return {
    mode: spec.mode ?? policyMode,
    scope: spec.scope ?? 'session',
    levels,
    produces,
    sinks,
    guards,
    steppers,
    rules,
  };
}

function newIndex<T>(): ToolIndex<T> {
  return { exact: new Map(), globs: [] };
}

/** Adds an entry under a tool name or glob; names are matched case-insensitively (fail closed). */
function add<T>(idx: ToolIndex<T>, pattern: string, value: T): void {
  const key = pattern.toLowerCase();
  if (key.includes('*')) {
    idx.globs.push({ glob: compileGlob(key), value });
    return;
  }
  const list = idx.exact.get(key);
  if (list) list.push(value);
  else idx.exact.set(key, [value]);
}

function hasSeq(idx: ToolIndex<CompiledSequence>, pattern: string, s: CompiledSequence): boolean {
  const key = pattern.toLowerCase();
  return key.includes('*')
    ? idx.globs.some((g) => g.glob.source === key && g.value === s)
    : (idx.exact.get(key)?.includes(s) ?? false);
}

function lite(list: string[]): ToolIndexLite {
  const exact = new Set<string>();
  const globs: Glob[] = [];
  for (const p of list) {
    const k = p.toLowerCase();
    if (k.includes('*')) globs.push(compileGlob(k));
    else exact.add(k);
  }
  return { exact, globs };
}

function pattern(p: string, path: Path, report: Report): boolean {
  if (isValidToolPattern(p)) return true;
  report('error', 'bad_tool_pattern', `\`${p}\` is not a tool name or glob`, path);
  return false;
}

function patterns(raw: string | string[], path: Path, report: Report): string[] {
  const list = Array.isArray(raw) ? raw : [raw];
  return list.filter((p, i) => pattern(p, Array.isArray(raw) ? [...path, i] : path, report));
}

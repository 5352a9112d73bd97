/**
 * load → check: reads a policy file or object, validates it against the JSON Schema and the semantic
 * checks, and returns either a checked policy ready to compile or every problem with its place.
 */
import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject } from 'ajv';
import { type CheckedPolicy, checkPolicy } from './check.js';
import { closest, type Problem } from './problems.js';
import { policySchema } from './schema.js';
import { MAX_POLICY_BYTES, type PolicySource, parsePolicyText } from './source.js';
import type { PolicyDocument } from './types.js';

export type LoadResult =
  | { ok: true; policy: CheckedPolicy; warnings: Problem[] }
  | { ok: false; problems: Problem[] };

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(policySchema);

/** Loads and checks policy text; `file` names it in problems. */
export function loadPolicyText(text: string, file = '<policy>'): LoadResult {
  const parsed = parsePolicyText(text, file);
  if (!parsed.ok) return { ok: false, problems: parsed.problems };
  return loadSource(parsed.source);
}

/** Loads and checks a policy file (YAML or JSON). Never throws. */
export async function loadPolicyFile(path: string): Promise<LoadResult> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    return { ok: false, problems: [unreadable(path, e)] };
  }
  return loadPolicyBytes(buf, path);
}

/**
 * Loads and checks the bytes of a policy file, as read once (a reload checks exactly the bytes it saw
 * stay unchanged, never a second read). `path` names it in problems. Never throws.
 */
export function loadPolicyBytes(buf: Uint8Array, path: string): LoadResult {
  if (buf.length > MAX_POLICY_BYTES) {
    return {
      ok: false,
      problems: [problemAt(path, 'too_large', `policy is larger than ${MAX_POLICY_BYTES} bytes`)],
    };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return { ok: false, problems: [problemAt(path, 'unreadable', 'policy is not valid utf-8')] };
  }
  return loadPolicyText(text, path);
}

/** The problem for a policy file that could not be read. */
export function unreadable(path: string, e: unknown): Problem {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT'
    ? problemAt(path, 'not_found', `policy file \`${path}\` does not exist`)
    : problemAt(path, 'unreadable', `cannot read policy file \`${path}\`: ${(e as Error).message}`);
}

/** Checks a policy given as an object (e.g. built in code). Positions then point at `<object>:1:1`. */
export function loadPolicyObject(doc: unknown, name = '<object>'): LoadResult {
  let text: string;
  try {
    text = JSON.stringify(doc, null, 1);
  } catch (e) {
    return {
      ok: false,
      problems: [problemAt(name, 'not_json', `policy object is not plain JSON: ${(e as Error).message}`)],
    };
  }
  if (typeof text !== 'string')
    return { ok: false, problems: [problemAt(name, 'not_json', 'policy object is not plain JSON')] };
  return loadPolicyText(text, name);
}

function loadSource(source: PolicySource): LoadResult {
  if (!validate(source.data)) {
    const problems = schemaProblems(validate.errors ?? [], source);
    return { ok: false, problems: [...problems, ...checksBeyondSchema(source, problems)] };
  }
  const checked = checkPolicy(source.data as PolicyDocument, source);
  const errors = checked.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) return { ok: false, problems: checked.problems };
  return { ok: true, policy: checked.policy, warnings: checked.problems };
}

function problemAt(file: string, code: string, message: string): Problem {
  return { severity: 'error', code, message, file, line: 1, column: 1, path: '' };
}

/** Turns Ajv errors into positioned problems, keeping the most specific one per place. */
/** Most rounds of pruning a schema-invalid document before giving up on its semantic checks. */
const MAX_PRUNE_ROUNDS = 8;

/**
 * The semantic problems of a document that failed the schema, so one run reports every mistake (an
 * unknown role beside a misspelt key): the values the schema refused are removed from a copy — object
 * keys only, so every other position stays where it was — until the copy fits the schema, and the copy
 * is checked. Problems at or around a removed value are dropped (the schema already named that place).
 * Returns nothing when the copy cannot be made to fit.
 */
function checksBeyondSchema(source: PolicySource, schemaFound: Problem[]): Problem[] {
  const doc = structuredClone(source.data) as unknown;
  const removed: string[] = [];
  for (let round = 0; round < MAX_PRUNE_ROUNDS; round++) {
    if (validate(doc)) {
      const related = (p: string) =>
        removed.some((r) => p === r || p.startsWith(`${r}/`) || r.startsWith(`${p}/`));
      const known = new Set(schemaFound.map((p) => p.path));
      return checkPolicy(doc as PolicyDocument, source).problems.filter(
        (p) => p.severity === 'error' && !related(p.path) && !known.has(p.path),
      );
    }
    let progress = false;
    for (const e of validate.errors ?? []) {
      const segs = e.instancePath
        .split('/')
        .slice(1)
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
      if (e.keyword === 'additionalProperties')
        segs.push((e.params as { additionalProperty: string }).additionalProperty);
      const last = segs.pop();
      if (last === undefined) continue;
      let parent: unknown = doc;
      for (const s of segs) parent = (parent as Record<string, unknown> | undefined)?.[s];
      if (
        parent === null ||
        typeof parent !== 'object' ||
        Array.isArray(parent) ||
        !Object.hasOwn(parent, last)
      )
        continue;
      delete (parent as Record<string, unknown>)[last];
      removed.push(`/${[...segs, last].join('/')}`);
      progress = true;
    }
    if (!progress) return [];
  }
  return [];
}

export function schemaProblems(errors: ErrorObject[], source: PolicySource): Problem[] {
  const deeper = (e: ErrorObject) =>
    errors.some((f) => f !== e && f.instancePath.startsWith(`${e.instancePath}/`) && f.keyword !== 'oneOf');
  const kept = errors.filter((e) => {
    if (deeper(e)) return false;
    if (e.keyword === 'oneOf' || e.keyword === 'if') {
      return !errors.some((f) => f !== e && f.instancePath === e.instancePath && f.keyword !== 'oneOf');
    }
    return true;
  });
  // Alternatives (oneOf) that fail on type at the same place become one message: `a string or an array`.
  const typesAt = new Map<string, string[]>();
  for (const e of kept) {
    if (e.keyword !== 'type') continue;
    const list = typesAt.get(e.instancePath) ?? [];
    list.push(String((e.params as { type: string }).type));
    typesAt.set(e.instancePath, list);
  }
  const seen = new Set<string>();
  const out: Problem[] = [];
  for (const e of kept) {
    const path = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const segs = path.map((s, i) => (isIndexIn(source.data, path.slice(0, i)) ? Number(s) : s));
    let message: string;
    let hint: string | undefined;
    let at = source.locate(segs);
    let code = 'schema';
    const where = e.instancePath || '/';
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = allowedKeys(e.parentSchema);
        code = 'unknown_key';
        message = `unknown key \`${key}\` in \`${where}\``;
        const guess = closest(key, allowed);
        hint = guess
          ? `did you mean \`${guess}\`?`
          : allowed.length
            ? `allowed keys: ${allowed.join(', ')}`
            : undefined;
        at = source.locate([...segs, key], true);
        break;
      }
      case 'required':
        code = 'missing_key';
        message = `missing required key \`${(e.params as { missingProperty: string }).missingProperty}\` in \`${where}\``;
        break;
      case 'type':
        code = 'wrong_type';
        message = `\`${where}\` must be ${(typesAt.get(e.instancePath) ?? []).map(article).join(' or ')}`;
        break;
      case 'enum':
        code = 'wrong_value';
        message = `\`${where}\` must be one of: ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).join(', ')}`;
        break;
      case 'const':
        code = 'wrong_value';
        message = `\`${where}\` must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
        break;
      default:
        message = `\`${where}\` ${e.message ?? 'is invalid'}`;
    }
    const key = `${at.line}:${at.column}:${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      severity: 'error',
      code,
      message,
      file: source.file,
      ...at,
      path: where,
      ...(hint ? { hint } : {}),
    });
  }
  return out;
}

function isIndexIn(data: unknown, path: string[]): boolean {
  let node: unknown = data;
  for (const s of path) {
    if (node === null || typeof node !== 'object') return false;
    node = Array.isArray(node) ? node[Number(s)] : (node as Record<string, unknown>)[s];
  }
  return Array.isArray(node);
}

function allowedKeys(schema: unknown): string[] {
  const props = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

function article(type: string): string {
  const t = type.replace(/,/g, ' or ');
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

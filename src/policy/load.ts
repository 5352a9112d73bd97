/**
 * load → check: reads a policy (one file, a file bundle or a directory bundle) or an object, validates it
 * against the JSON Schema and the semantic checks, and returns either a checked policy ready to compile
 * or every problem with its place.
 */
import type { KeyObject } from 'node:crypto';
import { loadBundle } from './bundle.js';
import { BUNDLE_KEYS, type PolicyRead, readPolicy } from './bundle-read.js';
import { type CheckedPolicy, checkPolicy } from './check.js';
import type { Problem } from './problems.js';
import { fitsSchema, schemaErrors, schemaProblemsOf } from './schema-problems.js';

export { schemaProblems } from './schema-problems.js';

import { verifyPolicySignature } from './signature.js';
import { MAX_POLICY_BYTES, type PolicySource, parsePolicyText } from './source.js';
import type { PolicyDocument } from './types.js';

export type LoadResult =
  | { ok: true; policy: CheckedPolicy; warnings: Problem[] }
  | { ok: false; problems: Problem[] };

/** How a policy read from disk is accepted. */
export interface PolicyLoadOptions {
  /**
   * The Ed25519 public key the policy's detached signature (`<policy>.sig`, see `execlayer policy sign`)
   * must verify against. Unset: no signature is required.
   */
  publicKey?: KeyObject;
}

/** Loads and checks policy text; `file` names it in problems. */
export function loadPolicyText(text: string, file = '<policy>'): LoadResult {
  const parsed = parsePolicyText(text, file);
  if (!parsed.ok) return { ok: false, problems: parsed.problems };
  return loadSource(parsed.source);
}

/**
 * Loads and checks the policy a path names: one file (YAML or JSON), a file bundle (a file with
 * `include:`) or a directory bundle. With `publicKey`, the policy must carry a valid signature. Never throws.
 */
export async function loadPolicyFile(path: string, opts: PolicyLoadOptions = {}): Promise<LoadResult> {
  return loadPolicyRead(await readPolicy(path, { signature: opts.publicKey !== undefined }), opts);
}

/**
 * Loads and checks exactly the files of one read (a reload checks the bytes it saw stay unchanged, never
 * a second read). Never throws.
 */
export function loadPolicyRead(read: PolicyRead, opts: PolicyLoadOptions = {}): LoadResult {
  if (read.problems.length > 0) return { ok: false, problems: read.problems };
  const root = read.files[0];
  if (root === undefined)
    return { ok: false, problems: [problemAt(read.path, 'not_found', 'no policy file')] };
  const r = read.kind === 'file' ? loadPolicyBytes(root.bytes, read.path) : loadBundle(read);
  if (!r.ok || opts.publicKey === undefined) return r;
  // INVARIANT: fail closed — a policy that must be signed serves no call unless its signature verifies.
  const bad = verifyPolicySignature(r.policy.hash, read.signature, opts.publicKey);
  return bad ? { ok: false, problems: [bad] } : r;
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
  const bundleKey = bundleKeyIn(source);
  if (bundleKey) return { ok: false, problems: [bundleKey] };
  const schema = schemaProblemsOf(source);
  if (schema.length > 0) return { ok: false, problems: [...schema, ...checksBeyondSchema(source, schema)] };
  const checked = checkPolicy(source.data as PolicyDocument, source);
  const errors = checked.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) return { ok: false, problems: checked.problems };
  return { ok: true, policy: checked.policy, warnings: checked.problems };
}

/** Bundle keys in policy text given without a path: there are no files to include or own. */
function bundleKeyIn(source: PolicySource): Problem | undefined {
  const data = source.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  const key = BUNDLE_KEYS.find((k) => Object.hasOwn(data, k));
  if (key === undefined) return undefined;
  return {
    severity: 'error',
    code: 'bundle_key',
    message: `\`${key}\` belongs to a policy bundle, which is loaded from its path`,
    file: source.file,
    ...source.locate([key], true),
    path: `/${key}`,
    hint: 'load the bundle with `loadPolicyFile(path)` or `execlayer validate <path>`',
  };
}

function problemAt(file: string, code: string, message: string): Problem {
  return { severity: 'error', code, message, file, line: 1, column: 1, path: '' };
}

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
    if (fitsSchema(doc)) {
      const related = (p: string) =>
        removed.some((r) => p === r || p.startsWith(`${r}/`) || r.startsWith(`${p}/`));
      const known = new Set(schemaFound.map((p) => p.path));
      return checkPolicy(doc as PolicyDocument, source).problems.filter(
        (p) => p.severity === 'error' && !related(p.path) && !known.has(p.path),
      );
    }
    let progress = false;
    for (const e of schemaErrors(doc)) {
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

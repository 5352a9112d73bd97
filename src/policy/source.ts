/**
 * Parses policy text (YAML 1.2; JSON is accepted as the subset it is) into plain data, keeping the
 * position of every node so later stages can report file:line:column.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { Problem } from './problems.js';

/** Largest policy file accepted. */
export const MAX_POLICY_BYTES = 4 * 1024 * 1024;
/** Deepest nesting accepted. */
export const MAX_POLICY_DEPTH = 32;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export interface PolicySource {
  file: string;
  text: string;
  data: unknown;
  /** Position of the value (or with `key`, of the key) at a JSON path. */
  locate(path: readonly (string | number)[], key?: boolean): { line: number; column: number };
  /** Absolute offset of a node's value start, for positions inside scalars (CEL). */
  offsetOf(path: readonly (string | number)[]): number | undefined;
  position(offset: number): { line: number; column: number };
}

export type ParseResult = { ok: true; source: PolicySource } | { ok: false; problems: Problem[] };

export function parsePolicyText(text: string, file: string): ParseResult {
  const problems: Problem[] = [];
  const lc = new LineCounter();
  const pos = (offset: number) => {
    const p = lc.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const fail = (code: string, message: string, offset: number, hint?: string): ParseResult => {
    problems.push({
      severity: 'error',
      code,
      message,
      file,
      ...pos(offset),
      path: '',
      ...(hint ? { hint } : {}),
    });
    return { ok: false, problems };
  };

  if (Buffer.byteLength(text, 'utf8') > MAX_POLICY_BYTES) {
    return fail('too_large', `policy is larger than ${MAX_POLICY_BYTES} bytes`, 0);
  }
  const nul = text.indexOf('\u0000');
  if (nul >= 0) {
    lc.addNewLine(0);
    for (let i = 0; i < nul; i++) if (text.charCodeAt(i) === 10) lc.addNewLine(i + 1);
    return fail('nul_byte', 'policy contains a NUL byte', nul);
  }

  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, strict: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const code = e.code === 'DUPLICATE_KEY' ? 'duplicate_key' : 'syntax';
      const message = e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? 'syntax error';
      problems.push({
        severity: 'error',
        code,
        message: code === 'duplicate_key' ? `duplicate key: ${message.toLowerCase()}` : message.toLowerCase(),
        file,
        ...pos(e.pos[0]),
        path: '',
        hint:
          code === 'duplicate_key' ? 'each key may appear once per mapping' : 'check indentation and quoting',
      });
    }
    return { ok: false, problems };
  }

  // Walk the tree before converting it: depth, aliases and keys that could pollute prototypes.
  const walk = (node: unknown, depth: number): void => {
    if (problems.length > 20) return;
    if (isAlias(node)) {
      fail(
        'alias',
        'yaml aliases are not allowed in policies',
        node.range?.[0] ?? 0,
        'repeat the value instead',
      );
      return;
    }
    if (depth > MAX_POLICY_DEPTH) {
      const n = node as Node;
      fail('too_deep', `policy is nested deeper than ${MAX_POLICY_DEPTH} levels`, n.range?.[0] ?? 0);
      return;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        const k = pair.key;
        if (!isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number')) {
          fail('bad_key', 'mapping keys must be plain strings', (k as Node | null)?.range?.[0] ?? 0);
          continue;
        }
        if (FORBIDDEN_KEYS.has(String(k.value))) {
          fail('forbidden_key', `key \`${k.value}\` is not allowed`, k.range?.[0] ?? 0, 'rename it');
          continue;
        }
        walk(pair.value, depth + 1);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) walk(item, depth + 1);
    }
  };
  walk(doc.contents, 0);
  if (problems.length > 0) return { ok: false, problems };

  const data = doc.toJS({ maxAliasCount: 0 }) as unknown;

  const find = (path: readonly (string | number)[]): { node: unknown; keyNode: unknown } => {
    let node: unknown = doc.contents;
    let keyNode: unknown;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
        );
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (item === undefined) break;
        keyNode = item;
        node = item;
      } else break;
    }
    return { node, keyNode };
  };
  const offsetOf = (path: readonly (string | number)[], key = false): number | undefined => {
    const { node, keyNode } = find(path);
    const target = (key ? keyNode : node) as Node | null | undefined;
    return target?.range?.[0];
  };
  const source: PolicySource = {
    file,
    text,
    data,
    locate: (path, key = false) => pos(offsetOf(path, key) ?? 0),
    offsetOf: (path) => offsetOf(path),
    position: pos,
  };
  return { ok: true, source };
}

/**
 * YAML 1.2 text (JSON is accepted as the subset it is) parsed into plain data, keeping the position of every
 * node so a loader can report file:line:column. Shared by the policy loader and the gateway config loader.
 *
 * Refused before any data is built: text over the size limit, NUL bytes, syntax errors and duplicate keys,
 * aliases (no billion laughs, no shared nodes), keys that are not plain strings or numbers, keys that could
 * pollute prototypes (`__proto__`, `constructor`, `prototype`) and nesting over the depth limit.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';

/** A JSON path into the data: object keys and array indexes. */
export type DataPath = readonly (string | number)[];

/** Why the text was refused, and where. */
export interface YamlProblem {
  code:
    | 'too_large'
    | 'nul_byte'
    | 'syntax'
    | 'duplicate_key'
    | 'alias'
    | 'too_deep'
    | 'bad_key'
    | 'forbidden_key';
  message: string;
  line: number;
  column: number;
  /** Where in the data (the enclosing mapping or sequence for key problems); empty for the whole text. */
  path: DataPath;
  hint?: string;
}

/** Parsed text: its data and the positions of its nodes. */
export interface YamlSource {
  data: unknown;
  /** 1-based line and column of an offset into the text. */
  position(offset: number): { line: number; column: number };
  /**
   * Offset of the value at `path` (with `key`, of its key; for an array item, of the item). Where the path
   * leads past the text, the deepest node it reaches.
   */
  offsetOf(path: DataPath, key?: boolean): number | undefined;
}

export type YamlParse = { ok: true; source: YamlSource } | { ok: false; problems: YamlProblem[] };

/** What the text is (`policy`, `configuration`), for messages, and its limits. */
export interface YamlLimits {
  what: string;
  maxBytes: number;
  maxDepth: number;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
/** Problems reported before the walk stops looking for more. */
const MAX_PROBLEMS = 20;

export function parseYaml(text: string, limits: YamlLimits): YamlParse {
  const problems: YamlProblem[] = [];
  const lc = new LineCounter();
  const position = (offset: number) => {
    const p = lc.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const add = (
    code: YamlProblem['code'],
    message: string,
    offset: number | undefined,
    path: DataPath,
    hint?: string,
  ) => {
    problems.push({ code, message, ...position(offset ?? 0), path, ...(hint ? { hint } : {}) });
  };

  if (Buffer.byteLength(text, 'utf8') > limits.maxBytes) {
    // Refused before parsing, so no line is counted yet: the problem is at 1:1.
    lc.addNewLine(0);
    add('too_large', `${limits.what} is larger than ${limits.maxBytes} bytes`, 0, []);
    return { ok: false, problems };
  }
  const nul = text.indexOf('\u0000');
  if (nul >= 0) {
    lc.addNewLine(0);
    for (let i = 0; i < nul; i++) if (text.charCodeAt(i) === 10) lc.addNewLine(i + 1);
    add('nul_byte', `${limits.what} contains a NUL byte`, nul, []);
    return { ok: false, problems };
  }

  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, strict: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const duplicate = e.code === 'DUPLICATE_KEY';
      const message = (e.message.split('\n')[0] ?? 'syntax error')
        .replace(/ at line \d+, column \d+:?$/, '')
        .toLowerCase();
      add(
        duplicate ? 'duplicate_key' : 'syntax',
        duplicate ? `duplicate key: ${message}` : message,
        e.pos[0],
        [],
        duplicate ? 'each key may appear once per mapping' : 'check indentation and quoting',
      );
    }
    return { ok: false, problems };
  }

  // Walk the tree before converting it: depth, aliases and keys that could pollute prototypes.
  const walk = (node: unknown, path: (string | number)[]): void => {
    if (problems.length > MAX_PROBLEMS) return;
    if (isAlias(node)) {
      add(
        'alias',
        `yaml aliases are not allowed in a ${limits.what}`,
        node.range?.[0],
        path,
        'repeat the value instead',
      );
      return;
    }
    if (path.length > limits.maxDepth) {
      add(
        'too_deep',
        `${limits.what} is nested deeper than ${limits.maxDepth} levels`,
        (node as Node).range?.[0],
        path,
      );
      return;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        const k = pair.key;
        if (!isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number')) {
          add('bad_key', 'mapping keys must be plain strings', (k as Node | null)?.range?.[0], path);
          continue;
        }
        const key = String(k.value);
        if (FORBIDDEN_KEYS.has(key)) {
          add('forbidden_key', `key \`${key}\` is not allowed`, k.range?.[0], path, 'rename it');
          continue;
        }
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      for (const [i, item] of node.items.entries()) walk(item, [...path, i]);
    }
  };
  walk(doc.contents, []);
  if (problems.length > 0) return { ok: false, problems };

  const offsetOf = (path: DataPath, key = false): number | undefined => {
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
      } else if (isSeq(node)) {
        const item = node.items[Number(seg)];
        if (item === undefined) break;
        keyNode = item;
        node = item;
      } else break;
    }
    return ((key ? keyNode : node) as Node | null | undefined)?.range?.[0];
  };
  return { ok: true, source: { data: doc.toJS({ maxAliasCount: 0 }) as unknown, position, offsetOf } };
}

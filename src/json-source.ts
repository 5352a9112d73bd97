/**
 * Strict JSON text parsed into plain data with the position of every node, the same shape `parseYaml`
 * gives. JSON is the subset of YAML 1.2 policies may also be written in; for a `.json` file this parser
 * is used first because it is an order of magnitude faster than the YAML parser (what a bundle of
 * hundreds of generated files needs). Text it does not accept goes to the YAML parser, which decides.
 *
 * Refused, as by `parseYaml`: duplicate keys, keys that could pollute prototypes (`__proto__`,
 * `constructor`, `prototype`) and nesting over the depth limit (the caller has already refused oversized
 * text and NUL bytes). Strings and numbers are read by `JSON.parse`, so their values are exactly JSON's.
 */
import type { DataPath, YamlSource } from './yaml-source.js';

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Where a node starts; for containers, where each child (and each key) starts. */
interface Node {
  at: number;
  keys?: Map<string, { keyAt: number; node: Node }>;
  items?: Node[];
}

/** Why the fast path declined (the YAML parser then reads the text and reports what is wrong). */
class Decline extends Error {}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WS = /[ \t\n\r]*/y;

/**
 * Parses JSON text with positions; undefined when the text is not strict JSON this parser accepts, or
 * holds anything `parseYaml` would refuse (the caller then falls back to `parseYaml`).
 */
export function parseJsonWithPositions(text: string, maxDepth: number): YamlSource | undefined {
  let i = 0;
  const ws = () => {
    WS.lastIndex = i;
    WS.test(text);
    i = WS.lastIndex;
  };
  const str = (): string => {
    const start = i;
    i++;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c) || c < 0x20) throw new Decline();
      if (c === 0x22) break;
      i += c === 0x5c ? 2 : 1;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): [unknown, Node] => {
    if (depth > maxDepth) throw new Decline();
    ws();
    const at = i;
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      const keys = new Map<string, { keyAt: number; node: Node }>();
      ws();
      if (text[i] === '}') {
        i++;
        return [obj, { at, keys }];
      }
      for (;;) {
        ws();
        if (text[i] !== '"') throw new Decline();
        const keyAt = i;
        const key = str();
        if (FORBIDDEN_KEYS.has(key) || keys.has(key)) throw new Decline();
        ws();
        if (text[i] !== ':') throw new Decline();
        i++;
        const [v, node] = value(depth + 1);
        obj[key] = v;
        keys.set(key, { keyAt, node });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return [obj, { at, keys }];
        }
        throw new Decline();
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      const items: Node[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return [arr, { at, items }];
      }
      for (;;) {
        const [v, node] = value(depth + 1);
        arr.push(v);
        items.push(node);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return [arr, { at, items }];
        }
        throw new Decline();
      }
    }
    if (c === '"') return [str(), { at }];
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return [v, { at }];
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) throw new Decline();
    i = NUMBER.lastIndex;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) throw new Decline();
    return [n, { at }];
  };

  let data: unknown;
  let root: Node;
  try {
    ws();
    if (text[i] !== '{' && text[i] !== '[') return undefined;
    [data, root] = value(0);
    ws();
    if (i !== text.length) return undefined;
  } catch (e) {
    if (e instanceof Decline || e instanceof SyntaxError) return undefined;
    throw e;
  }

  // Line starts, for offset → line:column (binary search).
  const lines = [0];
  for (let k = text.indexOf('\n'); k >= 0; k = text.indexOf('\n', k + 1)) lines.push(k + 1);
  const position = (offset: number) => {
    let lo = 0;
    let hi = lines.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((lines[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (lines[lo] as number) + 1 };
  };
  const offsetOf = (path: DataPath, key = false): number | undefined => {
    let node: Node = root;
    let keyAt: number | undefined;
    for (const seg of path) {
      const child = node.keys?.get(String(seg));
      if (child) {
        keyAt = child.keyAt;
        node = child.node;
        continue;
      }
      const item = node.items?.[Number(seg)];
      if (item === undefined) break;
      keyAt = item.at;
      node = item;
    }
    return key ? keyAt : node.at;
  };
  return { data, position, offsetOf };
}

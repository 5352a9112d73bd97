/**
 * Parses policy text (YAML 1.2; JSON is accepted as the subset it is) into plain data, keeping the
 * position of every node so later stages can report file:line:column.
 */
import { parseJsonWithPositions } from '../json-source.js';
import { parseYaml, type YamlSource } from '../yaml-source.js';
import type { Problem } from './problems.js';

/** Largest policy file accepted. */
export const MAX_POLICY_BYTES = 4 * 1024 * 1024;
/** Deepest nesting accepted. */
export const MAX_POLICY_DEPTH = 32;

export interface PolicySource {
  file: string;
  text: string;
  data: unknown;
  /**
   * Position of the value (or with `key`, of the key) at a JSON path; `file` when it is in another file
   * than `file` (a bundle's merged document).
   */
  locate(path: readonly (string | number)[], key?: boolean): SourcePosition;
  /** Absolute offset of a node's value start, for positions inside scalars (CEL). */
  offsetOf(path: readonly (string | number)[]): number | undefined;
  position(offset: number): SourcePosition;
}

/** 1-based line and column, and the file when a source spans several. */
export interface SourcePosition {
  line: number;
  column: number;
  file?: string;
}

export type ParseResult = { ok: true; source: PolicySource } | { ok: false; problems: Problem[] };

export function parsePolicyText(text: string, file: string): ParseResult {
  // A `.json` file is read by the JSON parser (same data and positions, many times faster); anything it
  // declines, the YAML parser reads and reports on.
  const fast =
    file.endsWith('.json') && Buffer.byteLength(text, 'utf8') <= MAX_POLICY_BYTES
      ? parseJsonWithPositions(text, MAX_POLICY_DEPTH)
      : undefined;
  if (fast) return { ok: true, source: sourceOf(fast, text, file) };
  const parsed = parseYaml(text, { what: 'policy', maxBytes: MAX_POLICY_BYTES, maxDepth: MAX_POLICY_DEPTH });
  if (!parsed.ok) {
    return {
      ok: false,
      problems: parsed.problems.map((p) => ({
        severity: 'error',
        code: p.code,
        message: p.message,
        file,
        line: p.line,
        column: p.column,
        path: '',
        ...(p.hint ? { hint: p.hint } : {}),
      })),
    };
  }
  return { ok: true, source: sourceOf(parsed.source, text, file) };
}

function sourceOf({ data, position, offsetOf }: YamlSource, text: string, file: string): PolicySource {
  return {
    file,
    text,
    data,
    locate: (path, key = false) => position(offsetOf(path, key) ?? 0),
    offsetOf: (path) => offsetOf(path),
    position,
  };
}

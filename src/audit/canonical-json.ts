/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, numbers and strings as
 * `JSON.stringify` writes them (shortest round-trip numbers, escaped lone surrogates). For the JSON values
 * ExecLayer handles this is the RFC 8785 (JCS) form, so the same value always gives the same bytes — the
 * property the audit hash chain and the argument digests rely on.
 */
import { createHash } from 'node:crypto';

/** Thrown for values that have no JSON form (non-finite numbers, bigint, functions, cycles, too deep). */
export class CanonicalJsonError extends Error {
  readonly code = 'invalid_json_value';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(message);
    this.name = 'CanonicalJsonError';
  }
}

const MAX_DEPTH = 256;

/**
 * The canonical JSON text of `value`. Properties whose value is `undefined` are left out (as
 * `JSON.stringify` does); anything else without a JSON form throws `CanonicalJsonError`.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '$', 0, new Set());
}

function write(value: unknown, path: string, depth: number, seen: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`non-finite number at \`${path}\``, path);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new CanonicalJsonError(`${typeof value} has no json form at \`${path}\``, path);
  }
  if (depth >= MAX_DEPTH)
    throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH} at \`${path}\``, path);
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    return write((withToJson.toJSON as () => unknown)(), path, depth + 1, seen);
  }
  const obj = value as object;
  if (seen.has(obj)) throw new CanonicalJsonError(`cycle at \`${path}\``, path);
  seen.add(obj);
  let out: string;
  if (Array.isArray(obj)) {
    const parts: string[] = [];
    for (let i = 0; i < obj.length; i++) {
      const item: unknown = obj[i];
      // JSON.stringify turns undefined array items into null; do the same so digests agree.
      parts.push(item === undefined ? 'null' : write(item, `${path}[${i}]`, depth + 1, seen));
    }
    out = `[${parts.join(',')}]`;
  } else {
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec).sort();
    const parts: string[] = [];
    for (const k of keys) {
      const v = rec[k];
      if (v === undefined) continue;
      parts.push(`${JSON.stringify(k)}:${write(v, `${path}.${k}`, depth + 1, seen)}`);
    }
    out = `{${parts.join(',')}}`;
  }
  seen.delete(obj);
  return out;
}

/** sha256 (lowercase hex) of the canonical JSON of `value` — the form of `argsDigest` in audit events. */
export function jsonDigest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

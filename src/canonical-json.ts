/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, numbers and strings as
 * `JSON.stringify` writes them (shortest round-trip numbers, escaped lone surrogates). For the JSON values
 * ExecLayer handles this is the RFC 8785 (JCS) form, so the same value always gives the same bytes — the
 * property the audit hash chain and the argument digests rely on.
 */
import { sha256Hex } from './sha256.js';

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
 * `JSON.stringify` does); anything else without a JSON form throws `CanonicalJsonError` naming where.
 */
export function canonicalJson(value: unknown): string {
  try {
    return write(value, 0);
  } catch (e) {
    if (e instanceof CanonicalJsonError || e instanceof TypeError || e instanceof RangeError) {
      throw locate(value, e instanceof CanonicalJsonError ? e : new CanonicalJsonError(e.message, '$'));
    }
    throw e;
  }
}

// One pass that writes the text directly: about twice as fast as `JSON.stringify` with a key-sorting
// replacer (which calls back into JS for every value). Strings go through `JSON.stringify` so escapes are
// exactly the native ones. Only depth is tracked (a cycle hits the depth limit); the path of a failure is
// worked out afterwards by `locate`, so the common case pays nothing for error reporting.
function write(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError('non-finite number', '$');
      // Same digits as JSON.stringify for every finite number (-0 included).
      return `${value}`;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (depth >= MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH}`, '$');
      if (Array.isArray(value)) {
        const n = value.length;
        if (n === 0) return '[]';
        // JSON.stringify turns undefined array items into null; do the same so digests agree.
        const first: unknown = value[0];
        let out = `[${first === undefined ? 'null' : write(first, depth + 1)}`;
        for (let i = 1; i < n; i++) {
          const item: unknown = value[i];
          out += `,${item === undefined ? 'null' : write(item, depth + 1)}`;
        }
        return `${out}]`;
      }
      const withToJson = value as { toJSON?: unknown };
      if (typeof withToJson.toJSON === 'function') {
        return write((withToJson.toJSON as () => unknown)(), depth + 1);
      }
      // Boxed primitives serialise as their value, as in JSON.stringify.
      if (value instanceof Number || value instanceof String || value instanceof Boolean) {
        return write(value.valueOf(), depth);
      }
      if (typeof BigInt === 'function' && value instanceof BigInt) {
        throw new CanonicalJsonError('bigint has no json form', '$');
      }
      const rec = value as Record<string, unknown>;
      const keys = Object.keys(rec);
      const n = keys.length;
      for (let i = 1; i < n; i++) {
        if (keys[i - 1]! > keys[i]!) {
          keys.sort();
          break;
        }
      }
      let out = '{';
      let first = true;
      for (let i = 0; i < n; i++) {
        const k = keys[i]!;
        const v = rec[k];
        if (v === undefined) continue;
        out += `${first ? '' : ','}${quoteKey(k)}:${write(v, depth + 1)}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      throw new CanonicalJsonError(`${typeof value} has no json form`, '$');
  }
}

const keyCache = new Map<string, string>();

function quoteKey(k: string): string {
  let q = keyCache.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (keyCache.size < 4096) keyCache.set(k, q);
  }
  return q;
}

/** Slow path: find where `value` has no JSON form, for the error message. */
function locate(value: unknown, fallback: CanonicalJsonError): CanonicalJsonError {
  const seen = new Set<object>();
  const visit = (v: unknown, path: string, depth: number): CanonicalJsonError | null => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return null;
    if (typeof v === 'number')
      return Number.isFinite(v) ? null : new CanonicalJsonError(`non-finite number at \`${path}\``, path);
    if (typeof v !== 'object')
      return new CanonicalJsonError(`${typeof v} has no json form at \`${path}\``, path);
    if (seen.has(v)) return new CanonicalJsonError(`cycle at \`${path}\``, path);
    if (depth >= MAX_DEPTH)
      return new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH} at \`${path}\``, path);
    seen.add(v);
    const withToJson = v as { toJSON?: unknown };
    const target = typeof withToJson.toJSON === 'function' ? (withToJson.toJSON as () => unknown)() : v;
    let found: CanonicalJsonError | null = null;
    if (target !== v) found = visit(target, path, depth + 1);
    else if (Array.isArray(v)) {
      for (let i = 0; i < v.length && found === null; i++) {
        if (v[i] !== undefined) found = visit(v[i], `${path}[${i}]`, depth + 1);
      }
    } else {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        if (x === undefined) continue;
        found = visit(x, `${path}.${k}`, depth + 1);
        if (found !== null) break;
      }
    }
    seen.delete(v);
    return found;
  };
  return visit(value, '$', 0) ?? fallback;
}

/** sha256 (lowercase hex) of the canonical JSON of `value` — the form of `argsDigest` in audit events. */
export function jsonDigest(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}

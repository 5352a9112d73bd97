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
 * `JSON.stringify` does); anything else without a JSON form throws `CanonicalJsonError` naming where.
 */
export function canonicalJson(value: unknown): string {
  try {
    // Fast path: the native serializer with a replacer that hands it key-sorted objects. It bails out (to
    // the exact writer below) for objects with integer-like keys, whose order JS objects cannot express.
    const text = JSON.stringify(value, sortingReplacer);
    if (text === undefined) throw new CanonicalJsonError(`${typeof value} has no json form`, '$');
    return text;
  } catch (e) {
    try {
      if (e === INTEGER_KEYS) return write(value, 0);
      throw e;
    } catch (e2) {
      if (e2 instanceof CanonicalJsonError || e2 instanceof TypeError || e2 instanceof RangeError) {
        throw locate(value, e2 instanceof CanonicalJsonError ? e2 : new CanonicalJsonError(e2.message, '$'));
      }
      throw e2;
    }
  }
}

const INTEGER_KEYS = Symbol('integer-like keys');
const INTEGER_LIKE = /^(?:0|[1-9]\d{0,9})$/;

function sortingReplacer(this: unknown, _key: string, v: unknown): unknown {
  switch (typeof v) {
    case 'object': {
      if (v === null || Array.isArray(v)) return v;
      const keys = Object.keys(v);
      let sorted = true;
      for (let i = 1; i < keys.length; i++) {
        if (keys[i - 1]! > keys[i]!) {
          sorted = false;
          break;
        }
      }
      if (sorted) return v;
      keys.sort();
      // A null-prototype object keeps `__proto__` as an ordinary key, as JSON.parse does.
      const out: Record<string, unknown> = Object.create(null);
      for (const k of keys) {
        if (INTEGER_LIKE.test(k)) throw INTEGER_KEYS;
        out[k] = (v as Record<string, unknown>)[k];
      }
      return out;
    }
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalJsonError('non-finite number', '$');
      return v;
    case 'function':
    case 'symbol':
    case 'bigint':
      throw new CanonicalJsonError(`${typeof v} has no json form`, '$');
    default:
      return v;
  }
}

// The fast path builds strings directly and tracks only depth (a cycle hits the depth limit); the path of a
// failure is worked out afterwards by `locate`, so the common case pays nothing for error reporting.
function write(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError('non-finite number', '$');
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (depth >= MAX_DEPTH) throw new CanonicalJsonError(`nesting deeper than ${MAX_DEPTH}`, '$');
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          const item: unknown = value[i];
          // JSON.stringify turns undefined array items into null; do the same so digests agree.
          out += item === undefined ? 'null' : write(item, depth + 1);
        }
        return `${out}]`;
      }
      const withToJson = value as { toJSON?: unknown };
      if (typeof withToJson.toJSON === 'function') {
        return write((withToJson.toJSON as () => unknown)(), depth + 1);
      }
      const rec = value as Record<string, unknown>;
      const keys = Object.keys(rec);
      if (keys.length > 1) keys.sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = rec[k];
        if (v === undefined) continue;
        if (!first) out += ',';
        first = false;
        out += `${quoteKey(k)}:${write(v, depth + 1)}`;
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
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

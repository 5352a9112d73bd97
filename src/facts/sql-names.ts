/**
 * Names in SQL and in `sql` policy entries: PostgreSQL identifier rules (unquoted parts fold to lower
 * case, quoted parts keep theirs), rendered so that distinct names never render alike.
 */
import { quote } from './condition.js';

/** A qualified object name as the parser resolves it (identifiers already case-folded). */
export interface QualifiedName {
  catalog?: string;
  schema?: string;
  name: string;
}

/** Quotes an identifier part when PostgreSQL would not read it back unquoted as the same name. */
function quoteIdent(part: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(part) ? part : `"${part.replace(/"/g, '""')}"`;
}

/** Renders a name so that distinct names never render alike (`"a.b"` vs `a.b`). */
export function showName(n: QualifiedName): string {
  const parts = [n.catalog, n.schema, n.name].filter((p): p is string => p !== undefined);
  return parts.map(quoteIdent).join('.');
}

/**
 * Parses a name written in a policy with PostgreSQL identifier rules: unquoted parts fold to lower
 * case, `"Quoted"` parts keep their case, up to three dot-separated parts.
 */
export function parseName(entry: string): { ok: true; value: QualifiedName } | { ok: false; error: string } {
  const parts: string[] = [];
  let i = 0;
  const bad = {
    ok: false as const,
    error: `${quote(entry)} is not a name (\`name\`, \`schema.name\` or \`"Quoted"\`)`,
  };
  while (i <= entry.length) {
    if (entry[i] === '"') {
      let j = i + 1;
      let part = '';
      for (;;) {
        if (j >= entry.length) return bad;
        if (entry[j] === '"') {
          if (entry[j + 1] === '"') {
            part += '"';
            j += 2;
            continue;
          }
          break;
        }
        part += entry[j];
        j++;
      }
      if (part === '') return bad;
      parts.push(part);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(entry.slice(i));
      if (m === null) return bad;
      // PostgreSQL folds only ASCII letters in unquoted identifiers (UTF-8 databases).
      parts.push(m[0].replace(/[A-Z]/g, (c) => c.toLowerCase()));
      i += m[0].length;
    }
    if (i === entry.length) break;
    if (entry[i] !== '.') return bad;
    i++;
  }
  if (parts.length === 0 || parts.length > 3) return bad;
  const name = parts[parts.length - 1] as string;
  if (parts.length === 1) return { ok: true, value: { name } };
  if (parts.length === 2) return { ok: true, value: { schema: parts[0] as string, name } };
  return { ok: true, value: { catalog: parts[0] as string, schema: parts[1] as string, name } };
}

/**
 * Does a referenced name satisfy a policy entry? An unqualified entry matches the unqualified name and
 * the same name in `public` (and, for functions, `pg_catalog`); a qualified entry matches only itself.
 */
export function nameMatches(
  entry: QualifiedName,
  ref: QualifiedName,
  implicitSchemas: readonly string[],
): boolean {
  if (entry.name !== ref.name) return false;
  if (entry.catalog !== undefined && entry.catalog !== ref.catalog) return false;
  if (entry.catalog === undefined && ref.catalog !== undefined) return false;
  if (entry.schema === undefined) return ref.schema === undefined || implicitSchemas.includes(ref.schema);
  return entry.schema === ref.schema;
}

/** Renders an operator: `=`, or `public.===` for `OPERATOR(public.===)`. */
export function showOperator(n: QualifiedName): string {
  return n.schema === undefined ? n.name : `${quoteIdent(n.schema)}.${n.name}`;
}

const OPERATOR = /^(?:([A-Za-z_][A-Za-z0-9_$]*)\.)?([-+*/<>=~!@#%^&|`?]{1,63})$/;

/** Parses an operator written in a policy: `===` or `schema.===`. */
export function parseOperator(
  entry: string,
): { ok: true; value: QualifiedName } | { ok: false; error: string } {
  const m = OPERATOR.exec(entry);
  if (m === null)
    return { ok: false, error: `${quote(entry)} is not an operator (\`===\` or \`schema.===\`)` };
  const op = m[2] as string;
  return m[1] === undefined
    ? { ok: true, value: { name: op } }
    : { ok: true, value: { schema: m[1].toLowerCase(), name: op } };
}

/**
 * Canonicalisers for typed argument constraints: each turns a raw argument into facts with the
 * parser the target itself uses, and matches those facts against a policy condition.
 */
import { emailCanonicaliser } from './email.js';
import { pathCanonicaliser } from './path.js';
import { initShell, shellCanonicaliser, shellReady } from './shell.js';
import { initSql, sqlCanonicaliser, sqlReady } from './sql.js';
import type { Canonicaliser, CanonicaliserName } from './types.js';
import { urlCanonicaliser } from './url.js';

export type { EmailCondition, EmailFacts } from './email.js';
export type { PathCondition, PathFacts } from './path.js';
export type { ShellCommand, ShellCondition, ShellFacts } from './shell.js';
export type { SqlCondition, SqlFacts } from './sql.js';
export type {
  Canonicaliser,
  CanonicaliserName,
  CompileResult,
  ConditionError,
  FactResult,
  MatchResult,
} from './types.js';
export type { UrlCondition, UrlFacts } from './url.js';
export { emailCanonicaliser, pathCanonicaliser, shellCanonicaliser, sqlCanonicaliser, urlCanonicaliser };

/** Every canonicaliser by the name a policy uses under `when:` / `unless:`. */
export const canonicalisers: Record<CanonicaliserName, Canonicaliser<unknown, unknown>> = {
  path: pathCanonicaliser as Canonicaliser<unknown, unknown>,
  url: urlCanonicaliser as Canonicaliser<unknown, unknown>,
  sql: sqlCanonicaliser as Canonicaliser<unknown, unknown>,
  shell: shellCanonicaliser as Canonicaliser<unknown, unknown>,
  email: emailCanonicaliser as Canonicaliser<unknown, unknown>,
};

/**
 * Loads the SQL and shell parsers (wasm) once; after it resolves every `facts()` call is synchronous.
 * Idempotent. Rejects if a parser cannot be loaded (the caller must not start).
 */
export async function initFacts(): Promise<void> {
  await Promise.all([initSql(), initShell()]);
}

/** True once `initFacts()` has loaded both parsers. */
export function factsReady(): boolean {
  return sqlReady() && shellReady();
}

/**
 * Host and domain patterns shared by the `url` and `email` constraints: an exact host, or a
 * label-aware wildcard `*.acme.com` that matches `a.acme.com` and `a.b.acme.com` but not `acme.com`,
 * `evilacme.com` or `acme.com.evil.com`.
 */
import { quote } from './condition.js';

/** A compiled host pattern. `suffix` is stored without the leading `*.`. */
export type HostPattern = { kind: 'exact'; host: string } | { kind: 'wildcard'; suffix: string };

/** Splits a policy entry into wildcard-or-exact and hands the host part to `normalise`. */
export function compileHostPattern(
  entry: string,
  normalise: (host: string) => { ok: true; value: string } | { ok: false; error: string },
): { ok: true; value: HostPattern } | { ok: false; error: string } {
  if (entry.startsWith('*.')) {
    const rest = entry.slice(2);
    if (rest.includes('*'))
      return { ok: false, error: `a wildcard may only be a leading \`*.\`, got ${quote(entry)}` };
    const r = normalise(rest);
    if (!r.ok) return r;
    if (!isDnsName(r.value)) {
      return { ok: false, error: `a wildcard needs a domain name after \`*.\`, got ${quote(entry)}` };
    }
    return { ok: true, value: { kind: 'wildcard', suffix: r.value } };
  }
  if (entry.includes('*')) {
    return {
      ok: false,
      error: `a wildcard must be written \`*.domain\` (a whole leading label), got ${quote(entry)}`,
    };
  }
  const r = normalise(entry);
  return r.ok ? { ok: true, value: { kind: 'exact', host: r.value } } : r;
}

/** True for a host name made of dot-separated labels (not an IP literal). */
export function isDnsName(host: string): boolean {
  return !host.startsWith('[') && !/^[0-9.]+$/.test(host) && host.length > 0;
}

/** Does `host` (already normalised: lowercase ASCII, no trailing dot) match the pattern? */
export function hostMatches(pattern: HostPattern, host: string): boolean {
  if (pattern.kind === 'exact') return host === pattern.host;
  // INVARIANT: label-aware — the character before the suffix must be a dot, and at least one label precedes it.
  return host.length > pattern.suffix.length + 1 && host.endsWith(`.${pattern.suffix}`) && isDnsName(host);
}

/**
 * A wildcard over a whole top-level domain (`*.com`, `*.co`): it admits hosts anyone can register.
 * (A public-suffix list would catch `*.co.uk` too; a single label is the case that needs no list.)
 */
export function isBroadWildcard(pattern: HostPattern): boolean {
  return pattern.kind === 'wildcard' && !pattern.suffix.includes('.');
}

/** The pattern as written in a policy, for messages. */
export function showHostPattern(pattern: HostPattern): string {
  return pattern.kind === 'exact' ? pattern.host : `*.${pattern.suffix}`;
}

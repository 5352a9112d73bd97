/**
 * Recipients of a sink call: the addresses of email arguments, the hosts of URL arguments, and the
 * addresses and URLs found inside free-text arguments (a message body that smuggles a link or an
 * address out). Parsed with the same canonicalisers the typed conditions use; the free-text scan is
 * linear in the text (no backtracking).
 */
import { parseRecipients } from '../facts/email.js';
import { parseUrl } from '../facts/url.js';
import { readArg } from '../policy/conditions.js';
import type { Json } from '../types.js';

/** Most recipients read from one call; more is refused (fail closed). */
export const MAX_RECIPIENTS = 1024;

export type Recipients = { ok: true; values: string[] } | { ok: false; error: string };

/** The recipients of one call, or why they cannot be read (the caller refuses). */
export function recipientsOf(
  args: { [k: string]: Json },
  spec: { email: readonly string[]; url: readonly string[]; text: readonly string[] },
): Recipients {
  const out = new Set<string>();
  const strings = (name: string): string[] | string => {
    const v = readArg(args, name);
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'string')) return `argument \`${name}\` is not text`;
    return list as string[];
  };
  for (const name of spec.email) {
    const vs = strings(name);
    if (typeof vs === 'string') return { ok: false, error: vs };
    for (const v of vs) {
      const r = parseRecipients(v);
      if (!r.ok) return { ok: false, error: `argument \`${name}\`: ${r.error}` };
      for (const a of r.value.recipients) out.add(a.toLowerCase());
    }
  }
  for (const name of spec.url) {
    const vs = strings(name);
    if (typeof vs === 'string') return { ok: false, error: vs };
    for (const v of vs) {
      const r = parseUrl(v);
      if (!r.ok) return { ok: false, error: `argument \`${name}\`: ${r.error}` };
      out.add(r.value.host);
    }
  }
  for (const name of spec.text) {
    const vs = strings(name);
    if (typeof vs === 'string') return { ok: false, error: vs };
    for (const v of vs) for (const r of scanText(v)) out.add(r);
  }
  if (out.size > MAX_RECIPIENTS) return { ok: false, error: `more than ${MAX_RECIPIENTS} recipients` };
  return { ok: true, values: [...out] };
}

const WORD = /[A-Za-z0-9._%+-]/;
const HOSTCHAR = /[A-Za-z0-9.-]/;
const URLCHAR = /[^\s<>"'`()[\]{}]/;

/**
 * Addresses (`local@domain.tld`) and the hosts of `scheme://` URLs in free text, lowercased. Each
 * character is visited a bounded number of times: the scan expands around `@` and `://` only.
 */
export function scanText(text: string): string[] {
  const found: string[] = [];
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('@', i);
    const scheme = text.indexOf('://', i);
    if (at < 0 && scheme < 0) break;
    if (scheme >= 0 && (at < 0 || scheme < at)) {
      let s = scheme;
      while (s > 0 && /[A-Za-z0-9+.-]/.test(text[s - 1] as string) && scheme - s < 32) s--;
      let e = scheme + 3;
      while (e < text.length && URLCHAR.test(text[e] as string)) e++;
      if (s < scheme) {
        const r = parseUrl(text.slice(s, e));
        if (r.ok && r.value.host) found.push(r.value.host);
      }
      i = e;
      continue;
    }
    let s = at;
    while (s > 0 && WORD.test(text[s - 1] as string) && at - s < 64) s--;
    let e = at + 1;
    while (e < text.length && HOSTCHAR.test(text[e] as string) && e - at < 255) e++;
    const domain = text.slice(at + 1, e).replace(/\.+$/, '');
    if (s < at && domain.includes('.')) found.push(`${text.slice(s, at)}@${domain}`.toLowerCase());
    i = Math.max(e, at + 1);
  }
  return found;
}

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
  const strings = textValues.bind(undefined, args);
  for (const name of spec.email) {
    const vs = strings(name);
    if (typeof vs === 'string') return { ok: false, error: vs };
    for (const v of vs) {
      const r = recipientsMemo(v);
      if (!r.ok) return { ok: false, error: `argument \`${name}\`: ${r.error}` };
      for (const a of r.value) out.add(a);
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
    for (const v of vs) {
      const found = scanText(v);
      if (!Array.isArray(found)) return { ok: false, error: `argument \`${name}\`: ${found.error}` };
      for (const r of found) out.add(r);
    }
  }
  if (out.size > MAX_RECIPIENTS) return { ok: false, error: `more than ${MAX_RECIPIENTS} recipients` };
  return { ok: true, values: [...out] };
}

/** The text values of an argument (one string or a list), or why it has none that is text. */
function textValues(args: { [k: string]: Json }, name: string): string[] | string {
  const v = readArg(args, name);
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) if (typeof x !== 'string') return `argument \`${name}\` is not text`;
  return list as string[];
}

/** Recipient lists parsed lately: a pure function's results, bounded (cleared when full). */
const memo = new Map<string, { ok: true; value: string[] } | { ok: false; error: string }>();
const MEMO_MAX = 4096;
const MEMO_KEY_MAX = 512;

/** `parseRecipients`, lowercased, remembered for short inputs (agents mail the same people again). */
function recipientsMemo(v: string): { ok: true; value: string[] } | { ok: false; error: string } {
  const hit = memo.get(v);
  if (hit) return hit;
  const r = parseRecipients(v);
  const out = r.ok
    ? { ok: true as const, value: r.value.recipients.map((a) => a.toLowerCase()) }
    : { ok: false as const, error: r.error };
  if (v.length <= MEMO_KEY_MAX) {
    if (memo.size >= MEMO_MAX) memo.clear();
    memo.set(v, out);
  }
  return out;
}

/**
 * The host of a URL found in free text, by the WHATWG parser a reader's client uses (trailing dot
 * dropped, as the url canonicaliser does); an error when it does not parse.
 */
function textUrlHost(token: string): { ok: true; host: string } | { ok: false; error: string } {
  let u: URL;
  try {
    u = new URL(token);
  } catch {
    return { ok: false, error: `\`${token.slice(0, 120)}\` is not a URL` };
  }
  return { ok: true, host: u.hostname.replace(/\.+$/, '') };
}

/** ASCII letter or digit. */
function alnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
/** A character of an address's local part (the common dot-atom subset). */
function word(c: number): boolean {
  return alnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;
}
/** A character of a host name. */
function hostChar(c: number): boolean {
  return alnum(c) || c === 46 || c === 45;
}
/** A character of a scheme. */
function schemeChar(c: number): boolean {
  return alnum(c) || c === 43 || c === 46 || c === 45;
}
/** A character that can continue a URL in running text (not space, quotes, brackets, angle brackets). */
function urlChar(c: number): boolean {
  return c > 32 && c !== 127 && !'<>"\'`()[]{}'.includes(String.fromCharCode(c));
}

/** Schemes a reader's client makes a link of, longest first (so `xhttps://` is read as `https://`). */
const LINK_SCHEMES = ['https', 'http', 'wss', 'ws', 'ftp'];

/**
 * Addresses (`local@domain.tld`) and the hosts of `scheme://` URLs in free text, lowercased; or why a
 * URL-looking token cannot be read (the caller refuses: fail closed). Each character is visited a
 * bounded number of times: the scan expands around `@` and `://` only.
 */
export function scanText(text: string): string[] | { error: string } {
  const found: string[] = [];
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('@', i);
    const scheme = text.indexOf('://', i);
    if (at < 0 && scheme < 0) break;
    if (scheme >= 0 && (at < 0 || scheme < at)) {
      let s = scheme;
      while (s > 0 && schemeChar(text.charCodeAt(s - 1)) && scheme - s < 32) s--;
      let e = scheme + 3;
      while (e < text.length && urlChar(text.charCodeAt(e))) e++;
      if (s < scheme) {
        const written = text.slice(s, scheme).toLowerCase();
        const known = LINK_SCHEMES.find((k) => written.endsWith(k));
        if (known) s = scheme - known.length;
        const r = textUrlHost(text.slice(s, e));
        if (!r.ok) return { error: `cannot read the URL in the text: ${r.error}` };
        if (r.host) found.push(r.host);
      }
      i = e;
      continue;
    }
    let s = at;
    while (s > 0 && word(text.charCodeAt(s - 1)) && at - s < 64) s--;
    let e = at + 1;
    while (e < text.length && hostChar(text.charCodeAt(e)) && e - at < 255) e++;
    const domain = text.slice(at + 1, e).replace(/\.+$/, '');
    if (s < at && domain.includes('.')) found.push(`${text.slice(s, at)}@${domain}`.toLowerCase());
    i = Math.max(e, at + 1);
  }
  return found;
}

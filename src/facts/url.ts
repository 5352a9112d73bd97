/**
 * The `url` constraint, using the WHATWG URL parser (the one `fetch`/undici use).
 *
 *   when: { url: { hosts: [api.acme.com, '*.cdn.acme.com'], schemes: [https] } }
 *
 * Facts carry the lowercased ASCII host without a trailing dot, the effective port, and whether
 * credentials were embedded.
 *
 * INVARIANT: no parser differential — the tool forwards the raw string, and its client (curl, Python's
 * urllib/requests, Go's net/url) may parse it differently from WHATWG. So an input is accepted only if
 * WHATWG's `href` for it is the input itself, up to the letter case of scheme and host, an explicit
 * default port, and the `/` of an empty path. Everything WHATWG would repair is refused, with the
 * canonical form in the message: `https:host`, `%2e` in a host, non-ASCII (IDNA) hosts, IPv4 written
 * in hex, octal or as one number, uncompressed IPv6, `..` and `%2e%2e` path segments, whitespace,
 * control characters, backslashes.
 */
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { flag, integerList, stringList } from './fields.js';
import {
  compileHostPattern,
  type HostPattern,
  hostMatches,
  isBroadWildcard,
  showHostPattern,
} from './host-pattern.js';
import type {
  Canonicaliser,
  CompileResult,
  ConditionFields,
  ConditionWarning,
  FactResult,
  MatchResult,
} from './types.js';

/** Longest URL accepted. */
export const URL_MAX = 8192;

/** Ports filled in when a URL names none, per WHATWG special scheme. */
const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443, ws: 80, wss: 443, ftp: 21 };

/** Schemes allowed when a condition does not list any. */
export const DEFAULT_SCHEMES: readonly string[] = ['https', 'http'];

/** Facts about one URL argument. */
export interface UrlFacts {
  /** Lowercase scheme without the colon. */
  scheme: string;
  /** Lowercase ASCII host, no trailing dot; IPv6 in brackets; empty for host-less URLs (`file:`, `data:`). */
  host: string;
  /** Explicit or default port; null when the scheme has none. */
  port: number | null;
  /** Percent-encoded path as the parser serialises it. */
  path: string;
  hostKind: 'dns' | 'ipv4' | 'ipv6' | 'none';
  /** The URL embedded a user name or password. */
  userinfo: boolean;
  /** The normalised URL with any credentials removed (for the audit trail). */
  href: string;
}

/** A compiled `url` condition. */
export interface UrlCondition {
  hosts?: HostPattern[];
  schemes: string[];
  /** Allowed ports; when absent, only the scheme's default port is allowed. */
  ports?: number[];
  allowUserinfo: boolean;
}

/** Whitespace, control characters or a backslash: WHATWG strips or rewrites them, other clients do not. */
function hasUnsafeChars(s: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: whitespace and control characters are refused
  return /[\u0000-\u0020\u007f-\u00a0\\\u1680\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff]/.test(s);
}

function classify(host: string): UrlFacts['hostKind'] {
  if (host === '') return 'none';
  if (host.startsWith('[')) return 'ipv6';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return 'ipv4';
  return 'dns';
}

/**
 * Quotes a url for a message with any credentials masked: refusals reach the agent and the audit trail.
 * Masks from `//` to the last `@` before the path, as both WHATWG and the clients that split at the
 * first `@` would include it in the userinfo.
 */
function show(raw: string): string {
  return quote(raw.replace(/^([^/?#]*\/\/)[^/?#]*@/, '$1***@'));
}

/** End of the authority that starts at `from` (after `//`): the first `/`, `?` or `#`, or the end. */
function authorityEnd(s: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) return i;
  }
  return s.length;
}

/**
 * Does WHATWG's `href` differ from the raw input in more than the letter case of scheme and host, an
 * explicit default port, and the `/` of an empty path? `raw` is ASCII without whitespace or backslashes.
 */
export function repaired(raw: string, u: URL): boolean {
  const href = u.href;
  if (raw === href) return false;
  const p = u.protocol.length; // `https:`
  if (raw.slice(0, p).toLowerCase() !== u.protocol) return true;
  const r = raw.slice(p);
  const h = href.slice(p);
  if (!r.startsWith('//') || !h.startsWith('//')) return r !== h;
  const re = authorityEnd(r, 2);
  const he = authorityEnd(h, 2);
  const ra = r.slice(2, re);
  const ha = h.slice(2, he);
  if (ra !== ha) {
    const ri = ra.lastIndexOf('@') + 1;
    const hi = ha.lastIndexOf('@') + 1;
    if (ra.slice(0, ri) !== ha.slice(0, hi)) return true; // userinfo is compared exactly
    const rhp = ra.slice(ri).toLowerCase();
    const hhp = ha.slice(hi);
    const def = DEFAULT_PORTS[u.protocol.slice(0, -1)];
    if (rhp !== hhp && !(def !== undefined && u.port === '' && rhp === `${hhp}:${def}`)) return true;
  }
  const rt = r.slice(re);
  const ht = h.slice(he);
  return !(rt === ht || (ht === `/${rt}` && (rt === '' || rt[0] === '?' || rt[0] === '#')));
}

/** Parses one URL with the WHATWG parser and normalises it. Never throws. */
export function parseUrl(raw: string): FactResult<UrlFacts> {
  if (raw.length === 0) return { ok: false, error: 'url is empty' };
  if (raw.length > URL_MAX) return { ok: false, error: `url is longer than ${URL_MAX} characters` };
  if (hasUnsafeChars(raw)) {
    return { ok: false, error: `url ${show(raw)} contains whitespace, a control character or a backslash` };
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, error: `url ${show(raw)} does not parse (an absolute url is required)` };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: every non-ASCII character is refused
  if (/[^\u0000-\u007f]/.test(raw)) {
    // WHATWG maps IDNA hosts (`ｅｘａｍｐｌｅ`, `faß`) and percent-encodes paths; clients map differently.
    return {
      ok: false,
      error: `url ${show(raw)} contains non-ascii characters; send ${show(u.href)} (punycode host, percent-encoded path)`,
    };
  }
  if (repaired(raw, u)) {
    return {
      ok: false,
      error: `url ${show(raw)} is not in canonical form (other clients may read it differently); send ${show(u.href)}`,
    };
  }
  const scheme = u.protocol.slice(0, -1);
  // Special schemes lowercase the host already; an opaque host (`ssh://Host/`) keeps its case in WHATWG.
  let host = u.hostname.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.startsWith('.') || host.endsWith('.') || host.includes('..')) {
    return { ok: false, error: `url ${show(raw)} has an empty label in its host` };
  }
  const hostKind = classify(host);
  if (hostKind === 'dns' && u.host !== '' && !/^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/.test(host)) {
    // WHATWG keeps `!`, `;`, `$`, `*`, ... in a host; resolvers and TLS libraries do not agree on them.
    return {
      ok: false,
      error: `url ${show(raw)} has a host with characters other than letters, digits, \`-\`, \`_\` and dots`,
    };
  }
  const port = u.port !== '' ? Number(u.port) : (DEFAULT_PORTS[scheme] ?? null);
  const userinfo = u.username !== '' || u.password !== '';
  u.username = '';
  u.password = '';
  return { ok: true, value: { scheme, host, port, path: u.pathname, hostKind, userinfo, href: u.href } };
}

/** Normalises a host written in a policy exactly as a URL's host would be. */
export function normaliseHost(entry: string): { ok: true; value: string } | { ok: false; error: string } {
  let h = entry;
  // A bare IPv6 literal is accepted in a policy for readability; URLs always bracket it.
  if (h.includes(':') && !h.startsWith('[') && /^[0-9a-fA-F:.]+$/.test(h)) h = `[${h}]`;
  if (
    h === '' ||
    hasUnsafeChars(h) ||
    /[/?#@]/.test(h) ||
    (h.includes(':') && !/^\[[0-9a-fA-F:.]+\]$/.test(h))
  ) {
    return { ok: false, error: `${quote(entry)} is not a host name or ip address` };
  }
  // A policy entry is trusted text: WHATWG normalises it (IP notations, IDNA); a url value must be canonical.
  let host: string;
  try {
    host = new URL(`http://${h}/`).hostname;
  } catch {
    return { ok: false, error: `${quote(entry)} is not a valid host` };
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host === '' || host.startsWith('.') || host.includes('..') || /[^a-z0-9_.\-[\]:]/.test(host)) {
    return { ok: false, error: `${quote(entry)} is not a valid host` };
  }
  return { ok: true, value: host };
}

/** The fields of a `url` condition (the one definition: schema, loader and docs test read it). */
const FIELDS: ConditionFields = {
  hosts: stringList('Exact hosts, `*.example.com` label-aware wildcards, or IP literals.', {
    allowList: true,
  }),
  schemes: stringList('Allowed schemes (default https and http).'),
  ports: integerList("Allowed ports (default: only the scheme's default port).", 1, 65535),
  allow_userinfo: flag('Accept `user:pass@` in the URL (default false).'),
};

function compile(condition: unknown): CompileResult<UrlCondition> {
  const r = new ConditionReader(condition, 'url', FIELDS);
  const hosts = r.strings('hosts', (e) => compileHostPattern(e, normaliseHost));
  const schemes = r.strings('schemes', (e) => {
    const s = e.toLowerCase().replace(/:$/, '');
    return /^[a-z][a-z0-9+.-]*$/.test(s)
      ? { ok: true, value: s }
      : { ok: false, error: `${quote(e)} is not a scheme` };
  });
  const ports = r.ints('ports', 1, 65535);
  const allowUserinfo = r.bool('allow_userinfo') ?? false;
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const value: UrlCondition = { schemes: schemes ?? [...DEFAULT_SCHEMES], allowUserinfo };
  if (hosts !== undefined) value.hosts = hosts;
  if (ports !== undefined) value.ports = ports;
  return { ok: true, value };
}

function facts(raw: Json): FactResult<UrlFacts> {
  if (typeof raw !== 'string')
    return { ok: false, error: `a url must be a string, got ${describeType(raw)}` };
  return parseUrl(raw);
}

function match(c: UrlCondition, f: UrlFacts): MatchResult {
  if (!c.schemes.includes(f.scheme)) {
    return {
      ok: false,
      why: `url scheme ${quote(f.scheme)} is not allowed; allowed: ${listForWhy(c.schemes)}`,
    };
  }
  if (f.userinfo && !c.allowUserinfo) {
    return {
      ok: false,
      why: 'url embeds a user name or password (`user@host`); send it without credentials',
    };
  }
  if (c.hosts !== undefined && !c.hosts.some((p) => hostMatches(p, f.host))) {
    return {
      ok: false,
      why: `url host ${quote(f.host)} is not allowed; allowed: ${listForWhy(c.hosts.map(showHostPattern))}`,
    };
  }
  if (c.ports !== undefined) {
    if (f.port === null || !c.ports.includes(f.port)) {
      return {
        ok: false,
        why: `url port ${quote(String(f.port))} is not allowed; allowed: ${listForWhy(c.ports.map(String))}`,
      };
    }
  } else if (f.port !== (DEFAULT_PORTS[f.scheme] ?? null)) {
    return {
      ok: false,
      why: `url port ${quote(String(f.port))} is not the default port for ${f.scheme}; only the default port is allowed`,
    };
  }
  return { ok: true };
}

/** Schemes whose target is a host on the network, reached as the host and port say. */
const NETWORK_SCHEMES: readonly string[] = ['https', 'http', 'wss', 'ws'];

/** The dangerous defaults an allow rule's `url` condition may leave open. */
function warnings(c: UrlCondition): ConditionWarning[] {
  const out: ConditionWarning[] = [];
  if (c.hosts === undefined) {
    out.push({
      field: '',
      code: 'url_any_host',
      message: 'no `hosts`: any host can be reached, internal ones too (127.0.0.1, 169.254.169.254)',
      hint: 'list the hosts the tool may reach: `hosts: [api.example.com]`',
    });
  }
  c.hosts?.forEach((p, i) => {
    if (isBroadWildcard(p)) {
      out.push({
        field: `hosts.${i}`,
        code: 'url_broad_wildcard',
        message: `\`${showHostPattern(p)}\` admits every host under a top-level domain, which anyone can register`,
      });
    }
  });
  for (const s of c.schemes) {
    if (!NETWORK_SCHEMES.includes(s)) {
      out.push({
        field: 'schemes',
        code: 'url_scheme',
        message: `scheme \`${s}\` is not http(s) or ws(s): \`hosts\` and \`ports\` may not say what it reaches (\`file:\` reads local files)`,
      });
    }
  }
  if (c.allowUserinfo) {
    out.push({
      field: 'allow_userinfo',
      code: 'url_userinfo',
      message: '`allow_userinfo: true` lets credentials in the url reach the target and its logs',
    });
  }
  return out;
}

/** The `url` canonicaliser. */
export const urlCanonicaliser: Canonicaliser<UrlCondition, UrlFacts> = {
  name: 'url',
  description: 'URL facts (WHATWG parse, normalised host).',
  fields: FIELDS,
  defaultArgs: ['url', 'uri', 'href', 'endpoint'],
  compile,
  facts,
  match,
  warnings,
  toJson: (f) => ({
    scheme: f.scheme,
    host: f.host,
    port: f.port,
    path: f.path,
    hostKind: f.hostKind,
    userinfo: f.userinfo,
    href: f.href,
  }),
};

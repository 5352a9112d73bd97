/**
 * The `email` constraint: recipient addresses parsed strictly (a subset of RFC 5322) and matched by
 * address or domain.
 *
 *   when: { email: { to_domains: [acme.com, '*.acme.com'], max_recipients: 5 } }
 *
 * One raw value may hold several comma-separated mailboxes (`"Doe, J" <j@x.com>, Bob Roe <b@y.com>`).
 * INVARIANT: never misread the recipient — anything a mail library (nodemailer's addressparser, an
 * SMTP relay) might route differently is refused, not guessed at: comments, groups and `;` lists,
 * quoted local parts (nodemailer drops the quotes), `%` and `!` routing hacks, source routes,
 * non-ASCII domains (`ａｃｍｅ.com` maps to `acme.com` in IDNA but not in every library),
 * encoded-words in display names, IP-literal domains, control and invisible characters, more than
 * one `@` or `<`, text after `>`, unquoted display names holding anything but letters, digits,
 * spaces and `.'_-`. An empty string holds no recipients; `null` is refused.
 */
import { domainToASCII } from 'node:url';
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { integer, stringList } from './fields.js';
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

/** Longest address accepted (RFC 5321 path limit less the angle brackets). */
export const ADDRESS_MAX = 254;
/** Longest raw value accepted. */
export const EMAIL_VALUE_MAX = 64 * 1024;

/** Facts about one recipient argument. */
export interface EmailFacts {
  /** `local@domain`, domain lowercased ASCII; local part as sent. In order, duplicates removed. */
  recipients: string[];
  /** Distinct recipient domains. */
  domains: string[];
}

/** A compiled `email` condition. */
export interface EmailCondition {
  toDomains?: HostPattern[];
  /** Allowed addresses, normalised with the local part lowercased for comparison. */
  to?: string[];
  maxRecipients?: number;
}

type R<T> = { ok: true; value: T } | { ok: false; error: string };

const ATEXT = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Normalises a domain: IDNA to ASCII, lowercase, no IP literals, LDH labels. */
export function normaliseDomain(raw: string): R<string> {
  if (raw.startsWith('[')) return { ok: false, error: `ip-literal domain ${quote(raw)} is not accepted` };
  if (raw === '' || raw.endsWith('.') || raw.startsWith('.') || raw.includes('..')) {
    return { ok: false, error: `domain ${quote(raw)} is not a valid domain name` };
  }
  if (/[^\p{L}\p{N}\p{M}.-]/u.test(raw))
    return { ok: false, error: `domain ${quote(raw)} contains invalid characters` };
  const ascii = domainToASCII(raw);
  if (ascii === '' || ascii.length > 253)
    return { ok: false, error: `domain ${quote(raw)} is not a valid domain name` };
  const labels = ascii.split('.');
  if (!labels.every((l) => LABEL.test(l)))
    return { ok: false, error: `domain ${quote(raw)} is not a valid domain name` };
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) {
    return { ok: false, error: `domain ${quote(raw)} looks like an ip address` };
  }
  return { ok: true, value: ascii };
}

/** Parses one addr-spec `local@domain`. */
export function parseAddrSpec(raw: string): R<{ local: string; domain: string }> {
  if (raw.length > ADDRESS_MAX)
    return { ok: false, error: `address ${quote(raw)} is longer than ${ADDRESS_MAX} characters` };
  const at = raw.lastIndexOf('@');
  if (at < 0) return { ok: false, error: `address ${quote(raw)} has no \`@\`` };
  const local = raw.slice(0, at);
  const domainRaw = raw.slice(at + 1);
  if (local.startsWith('"')) {
    // nodemailer's parser drops the quotes (`"a b"@x` becomes `a b@x`); libraries disagree, so refuse.
    return {
      ok: false,
      error: `address ${quote(raw)} has a quoted local part; quoted local parts are not accepted`,
    };
  }
  if (local.includes('@')) return { ok: false, error: `address ${quote(raw)} has more than one \`@\`` };
  const atoms = local.split('.');
  if (local === '' || !atoms.every((a) => ATEXT.test(a))) {
    return { ok: false, error: `address ${quote(raw)} has an invalid local part` };
  }
  if (/[%!]/.test(local)) {
    // `user%evil.com@relay` and `evil!user@relay` are relayed onwards by hosts that still honour them.
    return { ok: false, error: `address ${quote(raw)} has \`%\` or \`!\` in its local part (mail routing)` };
  }
  if (local.length > 64)
    return { ok: false, error: `address ${quote(raw)} has a local part longer than 64 characters` };
  if (domainRaw === '') return { ok: false, error: `address ${quote(raw)} has no domain` };
  const d = normaliseDomain(domainRaw);
  if (!d.ok) return { ok: false, error: `address ${quote(raw)}: ${d.error}` };
  return { ok: true, value: { local, domain: d.value } };
}

/** Splits at commas outside quoted strings and angle brackets. */
function splitList(raw: string): R<string[]> {
  const parts: string[] = [];
  let start = 0;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (inQuote) {
      if (c === '\\') i++;
      else if (c === '"') inQuote = false;
      continue;
    }
    if (c === '"') inQuote = true;
    else if (c === '<') {
      if (inAngle) return { ok: false, error: `recipients ${quote(raw)} have nested \`<\`` };
      inAngle = true;
    } else if (c === '>') {
      if (!inAngle) return { ok: false, error: `recipients ${quote(raw)} have an unmatched \`>\`` };
      inAngle = false;
    } else if (c === '(' || c === ')') {
      return {
        ok: false,
        error: `recipients ${quote(raw)} contain a comment \`(...)\`; comments are not accepted`,
      };
    } else if ((c === ':' || c === ';') && !inAngle) {
      return {
        ok: false,
        error: `recipients ${quote(raw)} contain a group (\`:\` or \`;\`); list addresses directly`,
      };
    } else if (c === ',' && !inAngle) {
      parts.push(raw.slice(start, i));
      start = i + 1;
    }
  }
  if (inQuote || inAngle)
    return { ok: false, error: `recipients ${quote(raw)} have an unterminated quote or \`<\`` };
  parts.push(raw.slice(start));
  return { ok: true, value: parts };
}

/** Parses one mailbox: `addr-spec` or `display name <addr-spec>`. */
function parseMailbox(item: string): R<{ local: string; domain: string }> {
  const s = item.trim();
  if (s === '') return { ok: false, error: 'empty recipient in the list' };
  // Find `<` outside a quoted display name: `"<a@acme.com>" <x@evil.com>` addresses evil.com.
  let lt = -1;
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inQuote) {
      if (c === '\\') i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === '<') {
      lt = i;
      break;
    }
  }
  if (lt < 0) return asciiAddress(s);
  if (!s.endsWith('>') || s.indexOf('>', lt) !== s.length - 1) {
    return { ok: false, error: `recipient ${quote(s)} has text after \`>\`` };
  }
  const display = s.slice(0, lt).trim();
  if (display !== '' && !/^"(?:[^"\\]|\\.)*"$/.test(display) && !/^[\p{L}\p{N}\p{M} .'_-]+$/u.test(display)) {
    // An unquoted display name holding `@`, `<` or other specials is how spoofed headers are built.
    return { ok: false, error: `recipient ${quote(s)} has a display name that must be quoted` };
  }
  if (display.includes('=?')) {
    // A decoder may turn `=?utf-8?b?...?=` into `<x@evil.com>`; what it says cannot be checked here.
    return {
      ok: false,
      error: `recipient ${quote(s)} has an encoded-word (\`=?...?=\`) in its display name`,
    };
  }
  return asciiAddress(s.slice(lt + 1, -1));
}

/** An addr-spec from a value: as `parseAddrSpec`, but the domain must already be ASCII. */
function asciiAddress(raw: string): R<{ local: string; domain: string }> {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: every non-ASCII character is refused
  if (/[^\u0000-\u007f]/.test(raw)) {
    const at = raw.lastIndexOf('@');
    const ascii = at < 0 ? '' : domainToASCII(raw.slice(at + 1));
    const hint = ascii !== '' ? `; send the domain as ${quote(ascii)} if that is the one meant` : '';
    return { ok: false, error: `address ${quote(raw)} has non-ascii characters${hint}` };
  }
  return parseAddrSpec(raw);
}

/** Parses a comma-separated recipient list. Never throws. */
export function parseRecipients(raw: string): FactResult<EmailFacts> {
  if (raw.length > EMAIL_VALUE_MAX)
    return { ok: false, error: `recipients are longer than ${EMAIL_VALUE_MAX} characters` };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: CR/LF and other control characters are refused (header injection)
  if (/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/.test(raw)) {
    return { ok: false, error: `recipients ${quote(raw)} contain a control character` };
  }
  if (/[\p{Cf}\p{Cs}\u2028\u2029]/u.test(raw)) {
    // Zero-width and bidi characters make a reviewer read another address; lone surrogates have no UTF-8.
    return { ok: false, error: `recipients ${quote(raw)} contain an invisible or unpaired character` };
  }
  if (raw.trim() === '') return { ok: true, value: { recipients: [], domains: [] } };
  const parts = splitList(raw);
  if (!parts.ok) return parts;
  const recipients: string[] = [];
  const seen = new Set<string>();
  const domains: string[] = [];
  for (const p of parts.value) {
    const m = parseMailbox(p);
    if (!m.ok) return m;
    const addr = `${m.value.local}@${m.value.domain}`;
    const key = addr.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      recipients.push(addr);
    }
    if (!domains.includes(m.value.domain)) domains.push(m.value.domain);
  }
  return { ok: true, value: { recipients, domains } };
}

/** The fields of an `email` condition (the one definition: schema, loader and docs test read it). */
const FIELDS: ConditionFields = {
  to_domains: stringList('Every recipient must be at one of these domains (`*.x` for subdomains).', {
    allowList: true,
  }),
  to: stringList('Every recipient must be one of these addresses.', { allowList: true }),
  max_recipients: integer('At most this many distinct recipients in all values read.', 1, 10_000),
};

function compile(condition: unknown): CompileResult<EmailCondition> {
  const r = new ConditionReader(condition, 'email', FIELDS);
  const toDomains = r.strings('to_domains', (e) => compileHostPattern(e, normaliseDomain));
  const to = r.strings('to', (e) => {
    const a = parseAddrSpec(e);
    return a.ok ? { ok: true, value: `${a.value.local}@${a.value.domain}`.toLowerCase() } : a;
  });
  const maxRecipients = r.int('max_recipients', 1, 10_000);
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const value: EmailCondition = {};
  if (toDomains !== undefined) value.toDomains = toDomains;
  if (to !== undefined) value.to = to;
  if (maxRecipients !== undefined) value.maxRecipients = maxRecipients;
  return { ok: true, value };
}

function facts(raw: Json): FactResult<EmailFacts> {
  // `null` is refused like every non-string (omit the key instead); `""` holds no recipients.
  if (typeof raw !== 'string')
    return { ok: false, error: `recipients must be a string, got ${describeType(raw)}` };
  return parseRecipients(raw);
}

function domainOf(addr: string): string {
  return addr.slice(addr.lastIndexOf('@') + 1);
}

// `max_recipients` counts distinct recipients over every value read (`to`, `cc` and `bcc` together, each
// item of a list), so splitting a mailing across fields or items does not multiply the limit.
function matchAll(c: EmailCondition, all: readonly EmailFacts[], args: readonly string[]): MatchResult {
  if (c.maxRecipients === undefined) return { ok: true };
  const distinct = new Set<string>();
  for (const f of all) for (const a of f.recipients) distinct.add(a.toLowerCase());
  if (distinct.size <= c.maxRecipients) return { ok: true };
  const where = args.length > 1 ? ` (${args.map((a) => `\`${a}\``).join(', ')} together)` : '';
  return { ok: false, why: `${distinct.size} recipients${where} exceed the maximum of ${c.maxRecipients}` };
}

function match(c: EmailCondition, f: EmailFacts): MatchResult {
  if (c.toDomains !== undefined) {
    const patterns = c.toDomains;
    const bad = f.recipients.filter((a) => !patterns.some((p) => hostMatches(p, domainOf(a))));
    if (bad.length > 0) {
      return {
        ok: false,
        why: `recipient ${listForWhy(bad.map(quote))} is outside the allowed domains: ${listForWhy(patterns.map(showHostPattern))}`,
      };
    }
  }
  if (c.to !== undefined) {
    const allowed = c.to;
    const bad = f.recipients.filter((a) => !allowed.includes(a.toLowerCase()));
    if (bad.length > 0) {
      return {
        ok: false,
        why: `recipient ${listForWhy(bad.map(quote))} is not an allowed address: ${listForWhy(allowed)}`,
      };
    }
  }
  return { ok: true };
}

/** The dangerous defaults an allow rule's `email` condition may leave open. */
function warnings(c: EmailCondition): ConditionWarning[] {
  const out: ConditionWarning[] = [];
  if (c.toDomains === undefined && c.to === undefined) {
    out.push({
      field: '',
      code: 'email_any_recipient',
      message: 'neither `to_domains` nor `to`: mail may go to any address',
      hint: 'list the domains or addresses allowed: `to_domains: [example.com]`',
    });
  }
  c.toDomains?.forEach((p, i) => {
    if (isBroadWildcard(p)) {
      out.push({
        field: `to_domains.${i}`,
        code: 'email_broad_wildcard',
        message: `\`${showHostPattern(p)}\` admits every domain under a top-level domain, which anyone can register`,
      });
    }
  });
  return out;
}

/** The `email` canonicaliser. */
export const emailCanonicaliser: Canonicaliser<EmailCondition, EmailFacts> = {
  name: 'email',
  description: 'Email recipient facts.',
  fields: FIELDS,
  defaultArgs: ['to', 'cc', 'bcc', 'recipients'],
  compile,
  facts,
  match,
  matchAll,
  warnings,
  toJson: (f) => ({ recipients: [...f.recipients], domains: [...f.domains] }),
};

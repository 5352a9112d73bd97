import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { emailCanonicaliser as c } from './email.js';
import { harness, mutate } from './testing.js';

const { cond, facts, refused, verdict } = harness(c);

const internal = { to_domains: ['acme.com'] };

describe('email facts', () => {
  test('display names, several recipients, uppercase domains', () => {
    assert.deepEqual(facts('Alice Doe <alice@ACME.com>, bob@Sub.Acme.COM'), {
      recipients: ['alice@acme.com', 'bob@sub.acme.com'],
      domains: ['acme.com', 'sub.acme.com'],
    });
    assert.deepEqual(facts('"Doe, Jane" <Jane.Doe@acme.com>').recipients, ['Jane.Doe@acme.com']);
    assert.deepEqual(facts('a@acme.com, A@ACME.COM').recipients, ['a@acme.com']);
  });

  test('a quoted display name that looks like an address does not hide the real one', () => {
    assert.deepEqual(facts('"ceo@acme.com" <x@evil.com>').recipients, ['x@evil.com']);
    assert.deepEqual(facts('"<ceo@acme.com>" <x@evil.com>').recipients, ['x@evil.com']);
  });

  test('non-ASCII domains are refused with their punycode form; punycode passes as sent', () => {
    refused('a@\u0430cme.com', /non-ascii.*send the domain as `xn--cme-5cd\.com`/);
    // Full-width letters map to `acme.com` under IDNA, but not in every mail library: refused.
    refused('a@\uff41\uff43\uff4d\uff45.com', /non-ascii/);
    refused('Jane <a@acme\u3002com>', /non-ascii/);
    assert.deepEqual(facts('a@xn--cme-5cd.com').domains, ['xn--cme-5cd.com']);
    // A display name may be any script: it does not route.
    assert.deepEqual(facts('Jos\u00e9 N\u00fa\u00f1ez <jose@acme.com>').recipients, ['jose@acme.com']);
  });

  test('empty values hold no recipients; unquoted display names with spaces are read as nodemailer does', () => {
    assert.deepEqual(facts(''), { recipients: [], domains: [] });
    assert.deepEqual(facts('  '), { recipients: [], domains: [] });
    refused(null, /must be a string, got null/); // like every non-string: omit the key instead
    assert.deepEqual(facts('Jane Doe <jane@acme.com>').recipients, ['jane@acme.com']);
    assert.deepEqual(facts('J. O\'Brien-Smith <j@acme.com>, "Roe, R." <r@acme.com>').recipients, [
      'j@acme.com',
      'r@acme.com',
    ]);
    // nodemailer splits `Doe, Jane <..>` into `Doe` (no address) and `Jane <..>`: refused, not guessed.
    refused('Doe, Jane <jane@acme.com>', /no `@`/);
  });

  test('refuses what a mail library might read differently', () => {
    refused('alice', /no `@`/);
    refused('a@b@acme.com', /more than one `@`/);
    refused('"a@evil.com"@acme.com', /quoted local part/);
    refused('"john doe"@acme.com', /quoted local part/);
    refused('user%evil.com@acme.com', /`%` or `!`/);
    refused('evil.com!user@acme.com', /`%` or `!`/);
    refused('<@relay.acme.com:x@evil.com>', /more than one `@`/);
    refused('@relay.acme.com:x@evil.com', /group/);
    refused('"=?utf-8?b?PHhAZXZpbC5jb20+?=" <a@acme.com>', /encoded-word/);
    refused('=?utf-8?q?x?= <a@acme.com>', /display name that must be quoted/);
    refused('a@acme.com; x@evil.com', /group/);
    refused('a\u200b@acme.com', /invisible/);
    refused('Jane \u202eDoe <a@acme.com>', /invisible/);
    refused('a@acme.com\ud800', /invisible or unpaired/);
    refused('Jane <a@evil.com> <b@acme.com>', /text after `>`/);
    refused('<a@evil.com<b@acme.com>>', /nested/);
    refused('a.@acme.com', /invalid local part/);
    refused('.a@acme.com', /invalid local part/);
    refused('alice@', /no domain/);
    refused('alice@[127.0.0.1]', /ip-literal/);
    refused('alice@127.0.0.1', /looks like an ip address/);
    refused('alice@acme.com (comment)', /comment/);
    refused('alice(x)@acme.com', /comment/);
    refused('undisclosed-recipients:;', /group/);
    refused('a@acme.com\r\nBcc: x@evil.com', /control character/);
    refused('a@acme.com\u0000', /control character/);
    refused('a@acme.com,', /empty recipient/);
    refused('a@acme.com,,b@acme.com', /empty recipient/);
    refused(`${'a'.repeat(250)}@acme.com`, /longer than 254/);
    refused(`${'a'.repeat(65)}@acme.com`, /longer than 64/);
    refused('ceo@acme.com <x@evil.com>', /display name that must be quoted/);
    refused('<a@acme.com> x', /text after `>`/);
    refused('<<a@acme.com>>', /nested/);
    refused('a..b@acme.com', /invalid local part/);
    refused('a@acme..com', /not a valid domain/);
    refused('a@acme.com.', /not a valid domain/);
    refused('a@-acme.com', /not a valid domain/);
    refused('a@acme_x.com', /invalid characters/);
    refused(42, /must be a string, got a number/);
    refused(['a@acme.com'], /got an array/);
  });
});

describe('email conditions', () => {
  test('one external recipient among internal ones fails `to_domains`', () => {
    assert.deepEqual(verdict(internal, 'a@acme.com, b@ACME.COM'), { ok: true });
    const r = verdict(internal, 'a@evil.com, b@acme.com');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /recipient `a@evil\.com` is outside the allowed domains: acme\.com/);
  });

  test('a domain that merely starts with the allowed one fails', () => {
    assert.equal(verdict(internal, 'a@acme.com.evil.com').ok, false);
    assert.equal(verdict(internal, 'a@evilacme.com').ok, false);
    assert.equal(verdict(internal, 'a@sub.acme.com').ok, false);
  });

  test('wildcards are label-aware (the matcher shared with url hosts)', () => {
    const w = { to_domains: ['*.acme.com'] };
    assert.equal(verdict(w, 'a@sub.acme.com').ok, true);
    assert.equal(verdict(w, 'a@acme.com').ok, false);
    assert.equal(verdict(w, 'a@evilacme.com').ok, false);
    assert.equal(verdict(w, 'a@sub.acme.com.evil.com').ok, false);
  });

  test('an IDN homograph does not match the ASCII domain', () => {
    assert.equal(c.facts('a@\u0430cme.com').ok, false);
    assert.equal(verdict(internal, 'a@xn--cme-5cd.com').ok, false);
  });

  test('an empty value passes every condition: it sends nothing', () => {
    assert.deepEqual(verdict({ ...internal, max_recipients: 1 }, ''), { ok: true });
  });

  test('`recipients` is read by default, and `from`/`reply_to` are not recipients', () => {
    assert.deepEqual(c.defaultArgs, ['to', 'cc', 'bcc', 'recipients']);
    assert.ok(!c.defaultArgs.includes('from') && !c.defaultArgs.includes('reply_to'));
  });

  test('`to` compares the local part case-insensitively and the domain normalised', () => {
    const t = { to: ['Alice@Acme.com'] };
    assert.equal(verdict(t, 'alice@ACME.COM').ok, true);
    const r = verdict(t, 'alice@acme.com, bob@acme.com');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /`bob@acme\.com` is not an allowed address/);
  });

  test('`max_recipients` counts distinct recipients in the value', () => {
    const m = { max_recipients: 2 };
    assert.equal(verdict(m, 'a@x.com, b@x.com').ok, true);
    assert.equal(verdict(m, 'a@x.com, b@x.com, A@X.COM').ok, true);
    const r = verdict(m, 'a@x.com, b@x.com, c@x.com');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /3 recipients exceed the maximum of 2/);
  });

  test('compile rejects bad entries with field-keyed messages', () => {
    const r = c.compile({
      to_domains: ['acme..com', '[1.2.3.4]', 'a*.com'],
      to: ['nobody'],
      max_recipients: 0,
      cc: [],
    });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.deepEqual(r.errors.map((e) => e.field).sort(), [
      'cc',
      'max_recipients',
      'to[0]',
      'to_domains[0]',
      'to_domains[1]',
      'to_domains[2]',
    ]);
  });
});

describe('email warnings', () => {
  const codes = (x: unknown) => (c.warnings?.(cond(x)) ?? []).map((w) => w.code);
  test('names the dangerous defaults an allow rule leaves open', () => {
    assert.deepEqual(codes({ max_recipients: 3 }), ['email_any_recipient']);
    assert.deepEqual(codes({ to_domains: ['acme.com'] }), []);
    assert.deepEqual(codes({ to: ['a@acme.com'] }), []);
    assert.deepEqual(codes({ to_domains: ['*.com'] }), ['email_broad_wildcard']);
  });
});

describe('email properties', () => {
  test('mutating a denied recipient list (case, quoting, whitespace, separators) never gets it allowed', () => {
    const k = cond(internal);
    const denied = fc.constantFrom(
      'x@evil.com',
      'a@acme.com, x@evil.com',
      '"a@acme.com" <x@evil.com>',
      'Jane <x@acme.com.evil.com>',
      'x@evilacme.com',
      'x@sub.acme.com',
    );
    const insert = fc.constantFrom(
      ' ',
      '\t',
      '"',
      '<',
      '>',
      ',',
      ';',
      ':',
      '(',
      ')',
      '\\',
      '@',
      '%',
      '!',
      '.',
      '\r\n',
      '=?',
      '\u200b',
      '\uff0e',
      '\uff20',
    );
    const mutation = fc.oneof(
      fc.record({ at: fc.nat(), text: insert }),
      fc.record({ at: fc.nat(), text: fc.constant('') }), // case flip at `at`
    );
    fc.assert(
      fc.property(denied, fc.array(mutation, { minLength: 1, maxLength: 4 }), (v0, ms) => {
        const v = mutate(v0, ms);
        const f = c.facts(v);
        if (!f.ok || !c.match(k, f.value).ok) return;
        // Allowed only if every mailbox an address parser finds really is at acme.com.
        for (const d of f.value.domains) assert.equal(d, 'acme.com', `${v0} -> ${v}`);
        assert.ok(!/evil/i.test(v.replace(/"[^"]*"/g, '')), `${v0} -> ${v} allowed with evil outside quotes`);
      }),
      { numRuns: 3000 },
    );
  });

  test('facts never throws; accepted domains are lowercase ASCII', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const r = c.facts(s);
        if (r.ok) for (const d of r.value.domains) assert.match(d, /^[a-z0-9.-]+$/);
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.emailAddress(), { minLength: 1, maxLength: 4 }), (xs) => {
        const r = c.facts(xs.join(', '));
        if (r.ok) for (const d of r.value.domains) assert.equal(d, d.toLowerCase());
      }),
    );
    fc.assert(fc.property(fc.jsonValue(), (v) => void c.facts(v as Json)));
  });

  test('if `to_domains: [acme.com]` matches, every recipient domain is exactly acme.com', () => {
    const cd = cond(internal);
    const local = fc.constantFrom('a', 'B', 'x.y');
    const domain = fc.constantFrom(
      'acme.com',
      'ACME.com',
      'evil.com',
      'acme.com.evil.com',
      'sub.acme.com',
      'acme.co',
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(local, domain), { minLength: 1, maxLength: 4 }), (xs) => {
        const r = c.facts(xs.map(([l, d]) => `${l}@${d}`).join(', '));
        assert.ok(r.ok);
        const expected = xs.every(([, d]) => d.toLowerCase() === 'acme.com');
        assert.equal(c.match(cd, r.value).ok, expected);
      }),
    );
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { emailCanonicaliser as c } from './email.js';
import { harness } from './testing.js';

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

  test('IDN domains become punycode', () => {
    assert.deepEqual(facts('a@\u0430cme.com').domains, ['xn--cme-5cd.com']);
  });

  test('refuses what a mail library might read differently', () => {
    refused('', /empty/);
    refused('alice', /no `@`/);
    refused('a@b@acme.com', /more than one `@`/);
    refused('"a@evil.com"@acme.com', /quoted local part/);
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
    assert.equal(verdict(internal, 'a@\u0430cme.com').ok, false);
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

describe('email properties', () => {
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

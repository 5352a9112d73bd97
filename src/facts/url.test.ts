import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { harness } from './testing.js';
import { urlCanonicaliser as c } from './url.js';

const { cond, facts, refused, allowed, why } = harness(c);

const api = { hosts: ['api.acme.com'] };

describe('url facts', () => {
  test('lowercases the host, strips one trailing dot, fills default ports', () => {
    const f = facts('HTTPS://API.Acme.COM./v1/x?q=1');
    assert.equal(f.scheme, 'https');
    assert.equal(f.host, 'api.acme.com');
    assert.equal(f.port, 443);
    assert.equal(f.path, '/v1/x');
    assert.equal(f.hostKind, 'dns');
    assert.equal(facts('http://a.b').port, 80);
    assert.equal(facts('http://a.b:8080').port, 8080);
    assert.equal(facts('https://a.b:443').port, 443);
  });

  test('normalises IPv4 in decimal, hex and octal notation', () => {
    for (const u of [
      'http://2130706433/',
      'http://0x7f000001/',
      'http://0177.0.0.1/',
      'http://0x7f.1/',
      'http://127.1/',
    ]) {
      const f = facts(u);
      assert.equal(f.host, '127.0.0.1', u);
      assert.equal(f.hostKind, 'ipv4', u);
    }
  });

  test('IPv6 is bracketed and compressed; IPv4-mapped stays IPv6', () => {
    const f = facts('http://[0:0:0:0:0:0:0:1]:8080/');
    assert.equal(f.host, '[::1]');
    assert.equal(f.hostKind, 'ipv6');
    const m = facts('http://[::ffff:127.0.0.1]/');
    assert.equal(m.host, '[::ffff:7f00:1]');
    assert.equal(m.hostKind, 'ipv6');
  });

  test('IDN hosts become punycode', () => {
    // Cyrillic "а" (U+0430) in place of the Latin "a".
    const f = facts('https://\u0430pi.acme.com/');
    assert.equal(f.host, 'xn--pi-6kc.acme.com');
  });

  test('refuses input WHATWG would silently repair, and non-strings', () => {
    refused('', /empty/);
    refused('not a url', /whitespace/);
    refused('/relative/path', /does not parse/);
    refused(' https://api.acme.com/', /whitespace/);
    refused('https://api.acme.com/\t', /whitespace/);
    refused('https://api.acme.com\\@evil.com/', /backslash/);
    refused('https://api.acme.com/\u0000', /control/);
    refused('https://a..b/', /empty label/);
    refused('https://api.acme.com../', /empty label/);
    refused(443, /must be a string, got a number/);
    refused(['https://api.acme.com'], /got an array/);
  });

  test('credentials are flagged and never reach the audit trail', () => {
    const f = facts('https://user:secret@api.acme.com/');
    assert.equal(f.userinfo, true);
    assert.equal(f.host, 'api.acme.com');
    const j = JSON.stringify(c.toJson(f));
    assert.ok(!j.includes('secret'), j);
    assert.ok(!j.includes('user:'), j);
  });
});

describe('url conditions', () => {
  test('exact host allows the host and nothing that merely contains it', () => {
    assert.ok(allowed(api, 'https://api.acme.com/v1'));
    assert.ok(allowed(api, 'https://API.ACME.COM./v1'));
    assert.match(
      why(api, 'https://api.acme.com.evil.com/'),
      /host `api\.acme\.com\.evil\.com` is not allowed/,
    );
    assert.match(why(api, 'https://evil.com#@api.acme.com'), /host `evil\.com`/);
    assert.match(why(api, 'https://evil.com?@api.acme.com'), /host `evil\.com`/);
    assert.match(why(api, 'https://evilapi.acme.com/'), /not allowed/);
  });

  test('userinfo fails unless allowed', () => {
    assert.equal(facts('https://api.acme.com@evil.com/').host, 'evil.com');
    assert.match(why(api, 'https://api.acme.com@evil.com/'), /user name or password/);
    assert.match(why({ ...api, allow_userinfo: true }, 'https://api.acme.com@evil.com/'), /host `evil\.com`/);
    assert.match(why(api, 'https://user@api.acme.com/'), /user name or password/);
    assert.ok(allowed({ ...api, allow_userinfo: true }, 'https://user@api.acme.com/'));
  });

  test('only the default port unless `ports` says otherwise', () => {
    assert.match(why(api, 'http://api.acme.com:8080/'), /port `8080` is not the default port/);
    assert.ok(allowed({ ...api, ports: [8080] }, 'http://api.acme.com:8080/'));
    assert.match(
      why({ ...api, ports: [443] }, 'http://api.acme.com:8080/'),
      /port `8080` is not allowed; allowed: 443/,
    );
    assert.ok(allowed(api, 'https://api.acme.com:443/'));
  });

  test('schemes default to https and http; javascript:, file:, data: are refused', () => {
    assert.match(why({}, 'javascript:alert(1)'), /scheme `javascript` is not allowed; allowed: https, http/);
    assert.match(why({}, 'file:///etc/passwd'), /scheme `file`/);
    assert.match(why({}, 'data:text/html,hi'), /scheme `data`/);
    assert.match(why({ schemes: ['https'] }, 'http://api.acme.com/'), /scheme `http`/);
    assert.ok(allowed({ schemes: ['HTTPS:'] }, 'https://x.y/'));
  });

  test('wildcards are label-aware', () => {
    const w = { hosts: ['*.acme.com'] };
    assert.ok(allowed(w, 'https://a.acme.com/'));
    assert.ok(allowed(w, 'https://a.b.acme.com/'));
    assert.equal(allowed(w, 'https://acme.com/'), false);
    assert.equal(allowed(w, 'https://evilacme.com/'), false);
    assert.equal(allowed(w, 'https://acme.com.evil.com/'), false);
    assert.equal(allowed(w, 'https://a.acme.com.evil.com/'), false);
  });

  test('IP literals in a policy are normalised, and every notation of the address matches', () => {
    const loop = { hosts: ['127.0.0.1'] };
    assert.ok(allowed(loop, 'http://2130706433/'));
    assert.ok(allowed(loop, 'http://0x7f.0.0.1/'));
    assert.equal(allowed(loop, 'http://[::ffff:127.0.0.1]/'), false);
    assert.ok(allowed({ hosts: ['::1'] }, 'http://[0::1]/'));
    assert.ok(allowed({ hosts: ['[::ffff:127.0.0.1]'] }, 'http://[::ffff:7f00:1]/'));
    assert.ok(allowed({ hosts: ['0x7f000001'] }, 'http://127.0.0.1/'));
  });

  test('an IDN homograph does not match the ASCII host', () => {
    assert.equal(allowed(api, 'https://\u0430pi.acme.com/'), false);
    assert.equal(allowed({ hosts: ['*.acme.com'] }, 'https://api.\u0430cme.com/'), false);
  });

  test('compile rejects bad entries with field-keyed messages', () => {
    const r = c.compile({
      hosts: ['acme.com/x', 'user@acme.com', '*', 'a.*.com', '*.127.0.0.1', 'acme.com:443'],
      ports: [0, 70000, 'x'],
      schemes: ['ht tp'],
      allow_userinfo: 'yes',
      host: 'x',
    });
    assert.equal(r.ok, false);
    if (r.ok) return;
    const fields = r.errors.map((e) => e.field).sort();
    assert.deepEqual(fields, [
      'allow_userinfo',
      'host',
      'hosts[0]',
      'hosts[1]',
      'hosts[2]',
      'hosts[3]',
      'hosts[4]',
      'hosts[5]',
      'ports[0]',
      'ports[1]',
      'ports[2]',
      'schemes[0]',
    ]);
  });
});

describe('url properties', () => {
  test('facts never throws on arbitrary strings and JSON', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => void c.facts(s)));
    fc.assert(
      fc.property(fc.webUrl({ withFragments: true, withQueryParameters: true }), (s) => void c.facts(s)),
    );
    fc.assert(fc.property(fc.jsonValue(), (v) => void c.facts(v as Json)));
  });

  test('a wildcard match always means the host ends with `.suffix` and has a label before it', () => {
    const w = cond({ hosts: ['*.acme.com'] });
    const label = fc.constantFrom('a', 'acme', 'com', 'evil', 'evilacme', 'ACME', 'xn--pi-6kc', '');
    const host = fc.array(label, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('.'));
    fc.assert(
      fc.property(host, fc.constantFrom('', '.', ':443', '@x.y'), (h, tail) => {
        const f = c.facts(`https://${h}${tail}/`);
        if (!f.ok || !c.match(w, f.value).ok) return;
        assert.ok(f.value.host.endsWith('.acme.com') && f.value.host !== 'acme.com', f.value.host);
      }),
      { numRuns: 2000 },
    );
  });
});

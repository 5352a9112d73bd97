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

  test('refuses IPv4 in any notation but dotted decimal, naming the canonical form', () => {
    // curl and glibc read `0177.0.0.1` as octal, some clients as decimal 177.0.0.1: only one form is safe.
    for (const u of [
      'http://2130706433/',
      'http://0x7f000001/',
      'http://0177.0.0.1/',
      'http://0x7f.1/',
      'http://127.1/',
      'http://127.0.0.1./',
    ]) {
      refused(u, /not in canonical form.*send `http:\/\/127\.0\.0\.1\/`/);
    }
    const f = facts('http://127.0.0.1/');
    assert.equal(f.host, '127.0.0.1');
    assert.equal(f.hostKind, 'ipv4');
  });

  test('IPv6 must be compressed; IPv4-mapped stays IPv6', () => {
    refused('http://[0:0:0:0:0:0:0:1]:8080/', /send `http:\/\/\[::1\]:8080\/`/);
    const f = facts('http://[::1]:8080/');
    assert.equal(f.host, '[::1]');
    assert.equal(f.hostKind, 'ipv6');
    refused('http://[::ffff:127.0.0.1]/', /send `http:\/\/\[::ffff:7f00:1\]\/`/);
    const m = facts('http://[::FFFF:7f00:1]/');
    assert.equal(m.host, '[::ffff:7f00:1]');
    assert.equal(m.hostKind, 'ipv6');
  });

  test('non-ASCII hosts are refused with their punycode form', () => {
    // Cyrillic "а" (U+0430) in place of the Latin "a"; full-width letters that IDNA maps to ASCII.
    refused('https://\u0430pi.acme.com/', /non-ascii.*send `https:\/\/xn--pi-6kc\.acme\.com\/`/);
    refused('https://\uff41pi.acme.com/', /non-ascii.*send `https:\/\/api\.acme\.com\/`/);
    refused('https://api\u3002acme.com/', /non-ascii/);
    assert.equal(facts('https://xn--pi-6kc.acme.com/').host, 'xn--pi-6kc.acme.com');
  });

  test('accepts only case, an explicit default port and the `/` of an empty path as differences', () => {
    assert.equal(facts('HTTPS://API.ACME.COM').href, 'https://api.acme.com/');
    assert.equal(facts('https://api.acme.com?q=1').href, 'https://api.acme.com/?q=1');
    assert.equal(facts('https://api.acme.com#x').href, 'https://api.acme.com/#x');
    assert.equal(facts('https://api.acme.com:443/x').href, 'https://api.acme.com/x');
    assert.equal(facts('https://api.acme.com/a/b?c=d&e=%2F#f').path, '/a/b');
    assert.equal(facts('https://USER@API.acme.com/').userinfo, true);
    for (const [u, canonical] of [
      ['https:api.acme.com', 'https://api.acme.com/'],
      ['https:/api.acme.com', 'https://api.acme.com/'],
      ['https:///api.acme.com', 'https://api.acme.com/'],
      ['https://api%2Eacme.com/', 'https://api.acme.com/'],
      ['https://api.acme.com/v1/../admin', 'https://api.acme.com/admin'],
      ['https://api.acme.com/v1/%2e%2e/admin', 'https://api.acme.com/admin'],
      ['https://api.acme.com/./x', 'https://api.acme.com/x'],
      ['https://api.acme.com:0443/', 'https://api.acme.com/'],
      ['https://api.acme.com:/', 'https://api.acme.com/'],
      ['https://@api.acme.com/', 'https://api.acme.com/'],
      ['https://a@b@api.acme.com/', 'https://***@api.acme.com/'], // userinfo masked
      ["https://api.acme.com/?q='x'", 'https://api.acme.com/?q=%27x%27'],
      ['https://api.acme.com/a"b', 'https://api.acme.com/a%22b'],
      ['file://localhost/etc/passwd', 'file:///etc/passwd'],
    ]) {
      refused(
        u as string,
        new RegExp(`send \`${(canonical as string).replace(/[.?*+^$()[\]{}|/\\]/g, '\\$&')}\``),
      );
    }
  });

  test('opaque hosts of other schemes are compared lowercased', () => {
    assert.ok(
      allowed({ hosts: ['git.acme.com'], schemes: ['ssh'], ports: [22] }, 'ssh://Git.Acme.com:22/repo'),
    );
    refused('ssh://%41cme.com/', /letters, digits/);
  });

  test('hosts with characters resolvers disagree on are refused', () => {
    refused('https://api.acme.com;.evil.com/', /letters, digits/);
    refused('https://evil!api.acme.com/', /letters, digits/);
    refused('https://a*b.acme.com/', /letters, digits/);
    assert.equal(facts('https://a_b.acme.com/').host, 'a_b.acme.com');
  });

  test('refuses input WHATWG would silently repair, and non-strings', () => {
    refused('', /empty/);
    refused('not a url', /whitespace/);
    refused('/relative/path', /does not parse/);
    refused(' https://api.acme.com/', /whitespace/);
    refused('https://api.acme.com/\t', /whitespace/);
    refused('https://api.acme.com\\@evil.com/', /backslash/);
    refused('https://api.acme.com/\u0000', /control/);
    refused('https://api.acme.com\u3000/', /whitespace/);
    refused('https://api.acme.com/\u00a0', /whitespace/);
    refused('https://a..b/', /empty label/);
    refused('https://api.acme.com../', /empty label/);
    refused(443, /must be a string, got a number/);
    refused(['https://api.acme.com'], /got an array/);
  });

  test('credentials never appear in a refusal', () => {
    for (const u of [
      'https://user:s3cret@api.acme.com/a b',
      'https://u:s3cret@b@api.acme.com/',
      'https://u:s3cret@API%2e.com/',
    ]) {
      const r = c.facts(u);
      assert.ok(!r.ok && !r.error.includes('s3cret') && r.error.includes('***@'), JSON.stringify(r));
    }
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

  test('IP literals in a policy are normalised to the one notation a url may use', () => {
    const loop = { hosts: ['127.0.0.1'] };
    assert.ok(allowed(loop, 'http://127.0.0.1/'));
    assert.equal(c.facts('http://2130706433/').ok, false);
    assert.equal(allowed(loop, 'http://[::ffff:7f00:1]/'), false);
    assert.ok(allowed({ hosts: ['::1'] }, 'http://[::1]/'));
    assert.ok(allowed({ hosts: ['[::ffff:127.0.0.1]'] }, 'http://[::ffff:7f00:1]/'));
    assert.ok(allowed({ hosts: ['0x7f000001'] }, 'http://127.0.0.1/'));
  });

  test('an IDN homograph is refused before any host is compared', () => {
    refused('https://\u0430pi.acme.com/', /non-ascii/);
    assert.equal(allowed(api, 'https://xn--pi-6kc.acme.com/'), false);
    assert.equal(allowed({ hosts: ['*.acme.com'] }, 'https://api.xn--cme-5cd.com/'), false);
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

describe('url warnings', () => {
  const codes = (x: unknown) => (c.warnings?.(cond(x)) ?? []).map((w) => w.code);
  test('names the dangerous defaults an allow rule leaves open', () => {
    assert.deepEqual(codes({}), ['url_any_host']);
    assert.deepEqual(codes({ hosts: ['api.acme.com'] }), []);
    assert.deepEqual(codes({ hosts: ['*.com', '*.acme.com'] }), ['url_broad_wildcard']);
    assert.deepEqual(codes({ hosts: ['a.b'], schemes: ['https', 'file'] }), ['url_scheme']);
    assert.deepEqual(codes({ hosts: ['a.b'], allow_userinfo: true }), ['url_userinfo']);
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

  test('mutating a denied url (case, percent-encoding, whitespace, dots, ports) never gets it allowed', () => {
    const k = cond({ hosts: ['api.acme.com'], schemes: ['https'] });
    const denied = fc.constantFrom(
      'https://evil.com/',
      'https://api.acme.com.evil.com/',
      'https://evil.com#@api.acme.com',
      'https://api.acme.com@evil.com/',
      'http://api.acme.com/',
      'https://api.acme.com:8443/',
      'https://127.0.0.1/',
      'https://xn--pi-6kc.acme.com/',
    );
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('case' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('percent' as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(),
        text: fc.constantFrom(
          ' ',
          '\t',
          '\n',
          '\r',
          '\u0000',
          '\\',
          '.',
          '%2e',
          '%2E',
          '\u3002',
          '\uff0e',
          '\u200b',
          '@',
          '#',
          '/',
          ':443',
          '\u00a0',
        ),
      }),
    );
    const apply = (
      u: string,
      m: { kind: 'case' | 'percent' | 'insert'; at: number; text?: string },
    ): string => {
      const i = m.at % (u.length + 1);
      if (m.kind === 'insert') return u.slice(0, i) + (m.text ?? '') + u.slice(i);
      const ch = u[i % u.length] as string;
      const repl =
        m.kind === 'case'
          ? ch === ch.toLowerCase()
            ? ch.toUpperCase()
            : ch.toLowerCase()
          : `%${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
      return u.slice(0, i % u.length) + repl + u.slice((i % u.length) + 1);
    };
    fc.assert(
      fc.property(denied, fc.array(mutation, { minLength: 1, maxLength: 4 }), (u, ms) => {
        const v = ms.reduce(apply, u);
        const f = c.facts(v);
        if (!f.ok) return;
        const m = c.match(k, f.value);
        // Still allowed only if the mutation produced the allowed host itself over https on 443.
        if (m.ok) {
          const t = new URL(v);
          assert.equal(t.hostname.replace(/\.$/, ''), 'api.acme.com', `${u} -> ${v} was allowed`);
          assert.ok(t.protocol === 'https:' && t.port === '' && t.username === '', `${u} -> ${v}`);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('an accepted url is its own href up to case, default port and empty-path slash', () => {
    fc.assert(
      fc.property(fc.webUrl({ withFragments: true, withQueryParameters: true }), (s) => {
        const f = c.facts(s);
        if (!f.ok) return;
        const href = new URL(s).href;
        const strip = (x: string) =>
          x
            .toLowerCase()
            .replace(/:443(?=[/?#]|$)|:80(?=[/?#]|$)/, '')
            .replace(/\/(?=[?#]|$)/g, '');
        assert.equal(strip(href), strip(s));
      }),
      { numRuns: 2000 },
    );
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

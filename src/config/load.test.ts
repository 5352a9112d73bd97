import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ConfigError, parseConfig } from './load.js';
import { CONFIG_SCHEMA } from './schema.js';

const FILE = '/srv/gw/execlayer.yaml';

function problems(text: string, env: NodeJS.ProcessEnv = {}) {
  try {
    parseConfig(text, FILE, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

test('the published schema file is the schema the loader uses', () => {
  const file = JSON.parse(
    readFileSync(new URL('../../schema/execlayer-config.schema.json', import.meta.url), 'utf8'),
  );
  assert.deepEqual(file, JSON.parse(JSON.stringify(CONFIG_SCHEMA)));
});

test('a full config loads with defaults, absolute paths and interpolated secrets', () => {
  const cfg = parseConfig(
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
agent: desktop
upstreams:
  files:
    command: npx
    args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/kb"]
    env: { TOKEN: "\${FILES_TOKEN}", LITERAL: "a$$b" }
  crm:
    url: https://crm.example.com/mcp
    headers: { Authorization: "Bearer \${CRM_TOKEN}" }
    stateful: true
auth:
  apiKeys:
    - { sha256: ${'A'.repeat(64)}, agent: support-bot }
limits: { callTimeoutMs: 5000 }
approvals: { wait: block, maxWaitMs: 1000 }
`,
    FILE,
    { FILES_TOKEN: 'f-secret', CRM_TOKEN: 'c-secret' },
  );
  assert.equal(cfg.policy, '/srv/gw/policy.yaml');
  const db = 'sqlite:/srv/gw/state/execlayer.db';
  assert.deepEqual(cfg.store, { audit: db, approvals: db, limits: db, state: db, pins: db });
  assert.equal(cfg.agent, 'desktop');
  assert.deepEqual(cfg.upstreams.files, {
    kind: 'stdio',
    command: 'npx',
    args: ['-y', '@modelcontextprotocol/server-filesystem', '/srv/kb'],
    env: { TOKEN: 'f-secret', LITERAL: 'a$b' },
    expose: 'prefixed',
    stateful: false,
  });
  assert.deepEqual(cfg.upstreams.crm, {
    kind: 'http',
    url: 'https://crm.example.com/mcp',
    headers: { Authorization: 'Bearer c-secret' },
    expose: 'prefixed',
    stateful: true,
  });
  assert.equal(cfg.auth.apiKeys[0]?.sha256, 'a'.repeat(64));
  assert.equal(cfg.limits.callTimeoutMs, 5000);
  assert.equal(cfg.limits.maxArgBytes, 1024 * 1024);
  assert.deepEqual(cfg.approvals, { wait: 'block', maxWaitMs: 1000, twoPersonRule: false });
  assert.equal(cfg.http.host, '127.0.0.1');
});

test('an unknown key is reported at its line and column', () => {
  const p = problems('policy: ./p.yaml\nupstreams:\n  files:\n    command: x\n    comand: y\n');
  assert.equal(p.length, 1);
  assert.deepEqual(
    { line: p[0]?.line, column: p[0]?.column, file: p[0]?.file },
    { line: 5, column: 5, file: FILE },
  );
  assert.match(p[0]!.message, /unknown key `comand`/);
});

test('a missing environment variable names the variable and where it is used', () => {
  const p = problems(
    // biome-ignore lint/suspicious/noTemplateCurlyInString: `${NOPE}` is the config's own interpolation syntax
    'policy: ./p.yaml\nupstreams:\n  crm:\n    url: https://x\n    headers:\n      A: "${NOPE}"\n',
  );
  assert.equal(p[0]?.line, 6);
  assert.match(p[0]!.message, /environment variable `NOPE` is not set/);
});

test('store: one URL per backend, defaulting to the audit trail, with secrets from the environment', () => {
  const cfg = parseConfig(
    `policy: p.yaml
store:
  audit: postgres://gw:\${PG_PASSWORD}@db:5432/execlayer
  limits: redis://cache:6379
  state: redis://cache:6379
`,
    FILE,
    { PG_PASSWORD: 's3cret' },
  );
  const pg = 'postgres://gw:s3cret@db:5432/execlayer';
  assert.deepEqual(cfg.store, {
    audit: pg,
    approvals: pg,
    limits: 'redis://cache:6379',
    state: 'redis://cache:6379',
    pins: pg,
    auditKey: '/srv/gw/execlayer-audit.key',
  });
  const local = parseConfig(
    'policy: p.yaml\nstore: { audit: "memory:", pins: "sqlite:pins.db" }\n',
    FILE,
    {},
  );
  assert.equal(local.store.pins, 'sqlite:/srv/gw/pins.db', 'relative to the config file');
  // A whole URL from the environment is checked once filled in, and never echoed (it may hold a password).
  // biome-ignore lint/suspicious/noTemplateCurlyInString: `${DB_URL}` is the config's own interpolation syntax
  const fromEnv = 'policy: p\nstore: { audit: "${DB_URL}" }\n';
  assert.equal(parseConfig(fromEnv, FILE, { DB_URL: pg }).store.audit, pg);
  const wrong = problems(fromEnv, { DB_URL: 'redis://:pw@cache' });
  assert.match(
    wrong[0]!.message,
    /`\/store\/audit` must be a `sqlite:<file>`, `postgres:\/\/…` or `memory:` URL/,
  );
  assert.doesNotMatch(wrong[0]!.message, /pw/);
  // Each backend takes only what it supports: the audit trail is not a Redis, a single URL is embedded.
  assert.ok(problems('policy: p\nstore: { audit: "redis://x" }\n').length > 0);
  assert.ok(problems('policy: p\nstore: postgres://db/x\n').length > 0);
  assert.ok(problems('policy: p\nstore: { audit: "memory:", limits: "postgres://db/x" }\n').length > 0);
  assert.match(
    problems('policy: p\nstore: { audit: "memory:", cache: "memory:" }\n')[0]!.message,
    /unknown key `cache`/,
  );
});

test('store.timeoutMs bounds every PostgreSQL and Redis operation; absent, each backend keeps its default', () => {
  const cfg = parseConfig('policy: p\nstore: { audit: "memory:", timeoutMs: 1500 }\n', FILE, {});
  assert.equal(cfg.store.timeoutMs, 1500);
  assert.equal(parseConfig('policy: p\nstore: { audit: "memory:" }\n', FILE, {}).store.timeoutMs, undefined);
  assert.match(problems('policy: p\nstore: { audit: "memory:", timeoutMs: 0 }\n')[0]!.message, /timeoutMs/);
  assert.ok(problems('policy: p\nstore: { audit: "memory:", timeoutMs: "2s" }\n').length > 0);
});

test('bad values, names and syntax are problems with positions, never exceptions of other kinds', () => {
  assert.match(problems('store: sqlite:x\n')[0]!.message, /missing `policy`/);
  assert.match(
    problems('policy: p\nupstreams:\n  Files.X:\n    command: x\n')[0]!.message,
    /invalid name `Files.X`/,
  );
  assert.equal(problems('policy: p\nlimits: { callTimeoutMs: -1 }\n')[0]?.line, 2);
  assert.equal(problems('policy: [\n')[0]?.file, FILE);
  assert.match(problems('policy: p\n__proto__: {}\n')[0]!.message, /`__proto__` is not allowed/);
  // The same YAML screen as policies: aliases, NUL bytes and deep nesting are refused, with positions.
  const alias = problems('policy: &p p\nagent: *p\n')[0]!;
  assert.match(alias.message, /aliases are not allowed in a configuration/);
  assert.deepEqual([alias.line, alias.column, alias.path], [2, 8, '/agent']);
  const big = problems(`policy: p\n# ${'x'.repeat(1024 * 1024)}\n`);
  assert.deepEqual(
    big.map((p) => [p.line, p.column, p.message]),
    [[1, 1, 'configuration is larger than 1048576 bytes']],
  );
  const nul = problems('policy: p\nagent: a\u0000b\n')[0]!;
  assert.deepEqual([nul.line, nul.column, nul.message], [2, 9, 'configuration contains a NUL byte']);
  assert.match(
    problems(`policy: p\npins: ${'['.repeat(40)}${']'.repeat(40)}\n`)[0]!.message,
    /nested deeper than 32/,
  );
  const dup = `{ sha256: ${'b'.repeat(64)}, agent: a }`;
  assert.match(
    problems(`policy: p\nauth:\n  apiKeys:\n    - ${dup}\n    - ${dup}\n`)[0]!.message,
    /duplicate api key/,
  );
});

test('http.tls paths are resolved beside the config; http.publicUrl must be a plain base URL', () => {
  const cfg = parseConfig(
    'policy: p\nhttp:\n  tls: { cert: ./tls/cert.pem, key: /etc/k.pem }\n  publicUrl: https://pdp.acme.com/authz/\n',
    FILE,
    {},
  );
  assert.deepEqual(cfg.http.tls, { cert: '/srv/gw/tls/cert.pem', key: '/etc/k.pem' });
  assert.equal(cfg.http.publicUrl, 'https://pdp.acme.com/authz');
  assert.equal(parseConfig('policy: p\n', FILE, {}).http.tls, undefined);
  assert.match(problems('policy: p\nhttp: { tls: { cert: c.pem } }\n')[0]!.message, /missing `key`/);
  for (const bad of [
    'https://pdp.acme.com/?x=1',
    'https://u:p@pdp.acme.com',
    'https://pdp.acme.com/#f',
    'ftp://x',
  ]) {
    const p = problems(`policy: p\nhttp:\n  publicUrl: "${bad}"\n`)[0]!;
    assert.equal(p.path, '/http/publicUrl', bad);
    assert.equal(p.line, 3, bad);
  }
});

test('webhooks take defaults and their secret from the environment; a short secret is refused', () => {
  const cfg = parseConfig(
    `policy: ./policy.yaml
notifications:
  webhooks:
    - { url: "https://hooks.example/x", secret: "\${HOOK_SECRET}", format: slack }
`,
    '/etc/execlayer/execlayer.yaml',
    { HOOK_SECRET: 'a-long-enough-secret' },
  );
  assert.deepEqual(cfg.notifications.webhooks, [
    {
      url: 'https://hooks.example/x',
      secret: 'a-long-enough-secret',
      events: ['approval.requested', 'agent.suspended', 'agent.resumed', 'tool.changed'],
      format: 'slack',
      timeoutMs: 3000,
      retries: 3,
    },
  ]);
  assert.throws(
    () =>
      parseConfig(
        'policy: ./p.yaml\nnotifications: { webhooks: [{ url: "https://h.example", secret: short }] }\n',
        '/x.yaml',
        {},
      ),
    /secret/,
  );
});

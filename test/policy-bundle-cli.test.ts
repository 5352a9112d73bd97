// `execlayer validate`, `test` and `policy sign` on a bundle directory, through the built CLI (run
// `npx tsc -p tsconfig.build.json` first), as users and CI pipelines run them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/execlayer.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tmp = mkdtempSync(join(tmpdir(), 'execlayer-bundle-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const dir = join(tmp, 'policy');
mkdirSync(join(dir, 'teams'), { recursive: true });
writeFileSync(
  join(dir, 'bundle.yaml'),
  'version: 1\nteam: platform\nroles:\n  kb-reader:\n    - { id: read-kb, allow: files.read_file }\n',
);
const payments = `version: 1
team: payments
owns: { agents: [payments.*] }
agents:
  payments.bot:
    roles: [kb-reader]
    rules:
      - { id: refund, allow: payments.refund, when: { args: { amount: { max: 100 } } } }
`;
writeFileSync(join(dir, 'teams/payments.yaml'), payments);
const cases = join(tmp, 'cases.yaml');
writeFileSync(
  cases,
  `cases:
  - name: small refund
    action: { agent: payments.bot, tool: payments.refund, args: { amount: 5 } }
    expect: { effect: allow, rule: refund }
  - name: shared role
    action: { agent: payments.bot, tool: files.read_file, args: {} }
    expect: { effect: allow, rule: read-kb }
  - name: large refund
    action: { agent: payments.bot, tool: payments.refund, args: { amount: 500 } }
    expect: deny
`,
);

describe('execlayer CLI on a policy bundle', () => {
  test('validate and test take the directory', () => {
    const v = cli('validate', dir, '--json');
    assert.equal(v.code, 0, v.stderr);
    const out = JSON.parse(v.stdout) as { ok: boolean; hash: string };
    assert.equal(out.ok, true);
    assert.match(out.hash, /^[0-9a-f]{64}$/);
    const t = cli('test', dir, cases);
    assert.equal(t.code, 0, `${t.stdout}${t.stderr}`);
  });

  test('validate names the team file and position of a namespace violation, and exits 1', () => {
    const bad = join(tmp, 'bad');
    mkdirSync(join(bad, 'teams'), { recursive: true });
    writeFileSync(join(bad, 'bundle.yaml'), 'version: 1\n');
    writeFileSync(join(bad, 'teams/payments.yaml'), payments.replace('kb-reader', 'support.reader'));
    writeFileSync(
      join(bad, 'teams/support.yaml'),
      'version: 1\nteam: support\nowns: { agents: [support.*], roles: [support.*] }\nroles:\n  support.reader: [{ allow: crm.read }]\nagents:\n  payments.bot: {}\n',
    );
    const v = cli('validate', bad);
    assert.equal(v.code, 1);
    assert.match(
      v.stderr,
      /teams\/support\.yaml:7:3: error\[outside_namespace\]: team `support` cannot define agent `payments\.bot`/,
    );
    assert.match(v.stderr, /teams\/payments\.yaml:6:13: error\[foreign_role\]/);
    assert.equal(cli('test', bad, cases).code, 3, 'test refuses an invalid bundle');
  });

  test('policy sign writes <dir>.sig; validate --key verifies it and refuses a tampered file', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const priv = join(tmp, 'signing.pem');
    const pub = join(tmp, 'signing.pub.pem');
    writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
    assert.equal(cli('validate', dir, '--key', pub).code, 1, 'unsigned is refused with a key');

    const s = cli('policy', 'sign', '--key', priv, dir, '--json');
    assert.equal(s.code, 0, s.stderr);
    const signed = JSON.parse(s.stdout) as { policy: string; signature: string };
    assert.equal(signed.signature, `${dir}.sig`);
    assert.equal(JSON.parse(readFileSync(`${dir}.sig`, 'utf8')).policy, signed.policy);
    assert.equal(cli('validate', dir, '--key', pub).code, 0);

    writeFileSync(join(dir, 'teams/payments.yaml'), payments.replace('max: 100', 'max: 100000'));
    const v = cli('validate', dir, '--key', pub);
    assert.equal(v.code, 1);
    assert.match(v.stderr, /policy\.sig:1:1: error\[signature_mismatch\]/);

    // An invalid bundle is never signed.
    writeFileSync(join(dir, 'teams/payments.yaml'), `${payments}  oops: {}\n`);
    rmSync(`${dir}.sig`);
    assert.equal(cli('policy', 'sign', '--key', priv, dir).code, 1);
    assert.equal(existsSync(`${dir}.sig`), false);
    assert.equal(cli('policy', 'sign', dir).code, 2, '--key is required');
    assert.equal(cli('policy', 'sign', '--key', pub, dir).code, 3, 'a public key cannot sign');
  });
});

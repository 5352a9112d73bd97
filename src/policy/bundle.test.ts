import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compile } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { overlaps } from './bundle.js';
import { readPolicy, signaturePath } from './bundle-read.js';
import { type LoadResult, loadPolicyFile, loadPolicyRead, loadPolicyText } from './load.js';
import type { Problem } from './problems.js';
import { signPolicyHash } from './signature.js';

const tmp = mkdtempSync(join(tmpdir(), 'execlayer-bundle-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
before(() => initFacts());

let n = 0;
/** Writes a bundle's files under a fresh directory; returns its path. */
function bundle(files: Record<string, string>): string {
  const dir = join(tmp, `b${n++}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const ROOT = `version: 1
team: platform
base: [shared.yaml]
redact: [password]
`;
const SHARED = `version: 1
roles:
  kb-reader:
    - id: read-kb
      allow: files.read_file
      when: { path: { under: [/srv/kb] } }
tools:
  files.read_file: { args: { path: { type: string } } }
`;
const PAYMENTS = `version: 1
team: payments
owns: { agents: [payments.*], roles: [payments.*], tools: [payments.*] }
agents:
  payments.refund-bot:
    roles: [kb-reader, payments.refunder]
roles:
  payments.refunder:
    - id: refund-small
      allow: payments.refund
      when: { cel: "args.amount > 0 && args.amount <= 100" }
`;
const SUPPORT = `version: 1
team: support
owns: { agents: [support.*] }
agents:
  support.bot:
    roles: [kb-reader]
    rules:
      - id: read-crm
        allow: crm.read
`;
const GOOD = {
  'bundle.yaml': ROOT,
  'shared.yaml': SHARED,
  'teams/payments.yaml': PAYMENTS,
  'teams/support.yaml': SUPPORT,
};

function problems(r: LoadResult): Problem[] {
  assert.equal(r.ok, false, 'the bundle should be refused');
  return r.ok ? [] : r.problems.filter((p) => p.severity === 'error');
}
function only(r: LoadResult, code: string): Problem {
  const ps = problems(r);
  assert.deepEqual(
    ps.map((p) => p.code),
    [code],
    ps.map((p) => `${p.file}:${p.line}:${p.column} ${p.code} ${p.message}`).join('\n'),
  );
  return ps[0] as Problem;
}

describe('policy bundles: directory', () => {
  test('a valid directory bundle loads whole, and each team’s agents get exactly their rules', async () => {
    const r = await loadPolicyFile(bundle(GOOD));
    assert.ok(r.ok, r.ok ? '' : r.problems.map((p) => p.message).join('\n'));
    const engine = compile(r.policy);
    const refund = (agent: string, amount: number) =>
      engine.decide({ agent, tool: 'payments.refund', args: { amount } }).effect;
    assert.equal(refund('payments.refund-bot', 50), 'allow');
    assert.equal(refund('payments.refund-bot', 500), 'deny');
    assert.equal(refund('support.bot', 50), 'deny');
    const kb = engine.decide({ agent: 'support.bot', tool: 'files.read_file', args: { path: '/srv/kb/a' } });
    assert.equal(kb.effect, 'allow');
    assert.equal(kb.rule, 'read-kb');
    assert.equal(kb.policy, r.policy.hash);
    // The root's bundle-wide settings apply.
    assert.deepEqual([...r.policy.redact.all], ['password']);
  });

  test('a team file adding a rule to another team’s agent is refused at the agent’s key', async () => {
    const file = PAYMENTS.replace(
      'agents:\n',
      'agents:\n  support.bot:\n    rules:\n      - allow: payments.refund\n',
    );
    const dir = bundle({ ...GOOD, 'teams/payments.yaml': file });
    const p = problems(await loadPolicyFile(dir));
    const outside = p.find((x) => x.code === 'outside_namespace');
    assert.ok(outside, p.map((x) => x.code).join(', '));
    assert.equal(outside.file, join(dir, 'teams/payments.yaml'));
    assert.deepEqual([outside.line, outside.column], [5, 3]);
    assert.match(
      outside.message,
      /team `payments` cannot define agent `support\.bot`: it belongs to team `support`/,
    );
    assert.equal(p.length, 1);
  });

  test('a team file redefining a shared role is refused; using it is fine', async () => {
    const file = `${SUPPORT}roles:\n  kb-reader:\n    - allow: "*"\n`;
    const dir = bundle({ ...GOOD, 'teams/support.yaml': file });
    const p = only(await loadPolicyFile(dir), 'outside_namespace');
    assert.equal(p.file, join(dir, 'teams/support.yaml'));
    assert.deepEqual([p.line, p.column], [11, 3]);
    assert.match(p.message, /cannot define role `kb-reader`: it belongs to the base team `platform`/);
  });

  test('a team claiming a shared name in `owns` is refused at the claim', async () => {
    const file = SUPPORT.replace(
      'owns: { agents: [support.*] }',
      'owns: { agents: [support.*], roles: [kb-*] }',
    );
    const dir = bundle({ ...GOOD, 'teams/support.yaml': file });
    const p = only(await loadPolicyFile(dir), 'outside_namespace');
    assert.equal(p.file, join(dir, 'teams/support.yaml'));
    assert.equal(p.line, 3);
    assert.match(p.message, /claims `kb-\*`, which covers role `kb-reader` of the base/);
  });

  test('a tool defined outside the team’s namespace is refused', async () => {
    const file = `${PAYMENTS}tools:\n  crm.read: {}\n  payments.refund: { args: { amount: { type: number } } }\n`;
    const dir = bundle({ ...GOOD, 'teams/payments.yaml': file });
    const p = only(await loadPolicyFile(dir), 'outside_namespace');
    assert.deepEqual([p.file, p.line, p.column], [join(dir, 'teams/payments.yaml'), 13, 3]);
    assert.match(p.message, /cannot define tool `crm\.read`/);
  });

  test('overlapping namespaces of two teams, another team’s role, and a stray base-team file are refused', async () => {
    const overlap = SUPPORT.replace(
      'owns: { agents: [support.*] }',
      'owns: { agents: [support.*, payments.refund*] }',
    );
    let p = only(
      await loadPolicyFile(bundle({ ...GOOD, 'teams/support.yaml': overlap })),
      'overlapping_namespace',
    );
    assert.equal(p.line, 3);
    assert.match(p.message, /overlaps `payments\.\*` of team `payments`/);

    const borrow = SUPPORT.replace('roles: [kb-reader]', 'roles: [kb-reader, payments.refunder]');
    p = only(await loadPolicyFile(bundle({ ...GOOD, 'teams/support.yaml': borrow })), 'foreign_role');
    assert.deepEqual([p.line, p.column], [6, 24]);

    const stray = 'version: 1\nteam: platform\nroles:\n  kb-admin: [{ allow: "*" }]\n';
    const strayed = problems(await loadPolicyFile(bundle({ ...GOOD, 'teams/x.yaml': stray })));
    assert.ok(strayed.some((x) => x.code === 'base_team_file' && x.line === 2));

    const noTeam = 'version: 1\nagents:\n  ghost: {}\n';
    const ps = problems(await loadPolicyFile(bundle({ ...GOOD, 'teams/ghost.yaml': noTeam })));
    assert.ok(ps.some((x) => x.code === 'missing_team'));
  });

  test('bundle-wide settings outside the root are refused; a directory needs its bundle.yaml', async () => {
    const p = only(
      await loadPolicyFile(bundle({ ...GOOD, 'teams/support.yaml': `mode: shadow\n${SUPPORT}` })),
      'bundle_key',
    );
    assert.deepEqual([p.line, p.column, p.message], [1, 1, '`mode` can be set only in the bundle root']);
    const { 'bundle.yaml': _, ...rest } = GOOD;
    only(await loadPolicyFile(bundle(rest)), 'no_bundle_root');
  });

  test('a symlink back up the tree is refused, not walked again and again', async () => {
    const dir = bundle(GOOD);
    symlinkSync('..', join(dir, 'teams/up'));
    symlinkSync('..', join(dir, 'teams/up2'));
    const t0 = Date.now();
    const ps = problems(await loadPolicyFile(dir));
    assert.ok(Date.now() - t0 < 2000);
    assert.ok(
      ps.some((p) => p.code === 'directory_cycle'),
      ps.map((p) => p.code).join(', '),
    );
  });

  test('the hash covers every file’s name and content, not its comments', async () => {
    const hashOf = async (files: Record<string, string>) => {
      const r = await loadPolicyFile(bundle(files));
      assert.ok(r.ok);
      return r.policy.hash;
    };
    const base = await hashOf(GOOD);
    assert.equal(
      await hashOf({ ...GOOD, 'teams/support.yaml': `# owners: support-platform\n${SUPPORT}` }),
      base,
    );
    const { 'teams/support.yaml': s, ...rest } = GOOD;
    assert.notEqual(await hashOf({ ...rest, 'teams/support-team.yaml': s }), base);
    assert.notEqual(
      await hashOf({ ...GOOD, 'teams/support.yaml': SUPPORT.replace('crm.read', 'crm.list') }),
      base,
    );
  });
});

describe('policy bundles: include', () => {
  test('a file with include loads the files it names, globs in the last segment', async () => {
    const dir = bundle({ ...GOOD, 'bundle.yaml': `${ROOT}include: [teams/*.yaml]\n` });
    const r = await loadPolicyFile(join(dir, 'bundle.yaml'));
    assert.ok(r.ok, r.ok ? '' : r.problems.map((p) => p.message).join('\n'));
    assert.deepEqual([...r.policy.agents.keys()].sort(), ['payments.refund-bot', 'support.bot']);
  });

  test('include cycles are refused, with the chain and the place of the include', async () => {
    const dir = bundle({
      'policy.yaml': `${ROOT}include: [teams/a.yaml]\n`,
      'shared.yaml': SHARED,
      'teams/a.yaml': `${SUPPORT}include: [../policy.yaml]\n`,
    });
    const p = only(await loadPolicyFile(join(dir, 'policy.yaml')), 'include_cycle');
    assert.equal(p.file, join(dir, 'teams/a.yaml'));
    assert.deepEqual([p.line, p.column], [10, 11]);
    assert.match(p.message, /`policy\.yaml` → `teams\/a\.yaml` → `policy\.yaml`/);
  });

  test('a missing include, a glob matching nothing and a path outside the bundle are refused', async () => {
    const dir = bundle({
      'policy.yaml': `${ROOT}include: [teams/missing.yaml, other/*.yaml, ../../etc/x.yaml]\n`,
      'shared.yaml': SHARED,
    });
    const ps = problems(await loadPolicyFile(join(dir, 'policy.yaml')));
    assert.deepEqual(
      ps.map((p) => [p.code, p.line, p.column]),
      [
        ['include_not_found', 5, 11],
        ['include_not_found', 5, 31],
        ['bad_include', 5, 45],
      ],
    );
  });

  test('includes nest at most 8 files deep', async () => {
    const files: Record<string, string> = {
      'policy.yaml': `${ROOT}include: [f1.yaml]\n`,
      'shared.yaml': SHARED,
    };
    for (let i = 1; i <= 9; i++)
      files[`f${i}.yaml`] =
        `version: 1\nteam: t${i}\nowns: { agents: [t${i}.*] }\ninclude: [f${i + 1}.yaml]\n`;
    files['f10.yaml'] = 'version: 1\nteam: t10\nowns: { agents: [t10.*] }\n';
    const p = only(await loadPolicyFile(join(bundle(files), 'policy.yaml')), 'include_too_deep');
    // policy.yaml → f1 … f7 is 8 files; f7's include of f8 is the one refused.
    assert.match(p.file, /f7\.yaml$/);
  });

  test('a single file stays a single file: same hash as its text, and bundle keys need a path', async () => {
    const text = 'version: 1\nagents:\n  bot:\n    rules: [{ allow: a.b }]\n';
    const dir = bundle({ 'policy.yaml': text });
    const r = await loadPolicyFile(join(dir, 'policy.yaml'));
    const t = loadPolicyText(text);
    assert.ok(r.ok && t.ok);
    assert.equal(r.policy.hash, t.policy.hash);
    const p = only(loadPolicyText(`${text}include: [x.yaml]\n`, 'p.yaml'), 'bundle_key');
    assert.deepEqual([p.line, p.column], [5, 1]);
  });

  test('ownership patterns overlap exactly when some name matches both', () => {
    assert.equal(overlaps('payments.*', 'pay*'), true);
    assert.equal(overlaps('payments.*', 'payments.bot'), true);
    assert.equal(overlaps('payments.*', 'support.*'), false);
    assert.equal(overlaps('payments.bot', 'payments.bot2'), false);
    assert.equal(overlaps('a.*', 'a.*'), true);
  });
});

describe('signed bundles', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');

  async function signed(files: Record<string, string>): Promise<string> {
    const dir = bundle(files);
    const r = await loadPolicyFile(dir);
    assert.ok(r.ok);
    writeFileSync(signaturePath(dir), JSON.stringify(signPolicyHash(r.policy.hash, privateKey)));
    return dir;
  }

  test('a bundle with a valid signature loads; unsigned, tampered or signed by another key does not', async () => {
    const dir = await signed(GOOD);
    assert.equal((await loadPolicyFile(dir, { publicKey })).ok, true);
    only(await loadPolicyFile(dir, { publicKey: other.publicKey }), 'signature_invalid');

    // One team file changed after signing: every file is covered.
    writeFileSync(join(dir, 'teams/support.yaml'), SUPPORT.replace('crm.read', 'crm.*'));
    const p = only(await loadPolicyFile(dir, { publicKey }), 'signature_mismatch');
    assert.equal(p.file, signaturePath(dir));
    // A file added after signing, too.
    const dir2 = await signed(GOOD);
    writeFileSync(join(dir2, 'teams/extra.yaml'), 'version: 1\nteam: extra\nowns: { agents: [extra.*] }\n');
    only(await loadPolicyFile(dir2, { publicKey }), 'signature_mismatch');

    renameSync(signaturePath(dir2), `${signaturePath(dir2)}.old`);
    only(await loadPolicyFile(dir2, { publicKey }), 'signature_missing');
  });

  test('a signature over another policy, or garbage, is refused', async () => {
    const dir = await signed(GOOD);
    const read = await readPolicy(dir, { signature: true });
    const forged = { ...read, signature: { path: 'x.sig', bytes: Buffer.from('{"version":1}') } };
    only(loadPolicyRead(forged, { publicKey }), 'signature_invalid');
    const good = JSON.parse(read.signature?.bytes?.toString() ?? '{}');
    const swapped = Buffer.from(
      JSON.stringify({ ...good, signature: signPolicyHash('0'.repeat(64), privateKey).signature }),
    );
    only(
      loadPolicyRead({ ...read, signature: { path: 'x.sig', bytes: swapped } }, { publicKey }),
      'signature_invalid',
    );
  });
});

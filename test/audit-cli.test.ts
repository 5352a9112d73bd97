// `execlayer audit …` and `execlayer replay` against a real SQLite log, as an operator would use them.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openAuditLog } from '../src/audit/log.js';
import { decisionEvent } from '../src/audit/testing.js';
import { auditCommand, type CommandIo } from '../src/cli/audit.js';
import { replayCommand } from '../src/cli/replay.js';

async function run(
  fn: (argv: string[], io: CommandIo) => Promise<number>,
  argv: string[],
): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => {
    o += d;
  });
  err.on('data', (d) => {
    e += d;
  });
  const code = await fn(argv, { stdout: out, stderr: err });
  await new Promise((r) => setImmediate(r));
  return { code, out: o, err: e };
}

const audit = (...argv: string[]) => run(auditCommand, argv);
const DAY = 86_400_000;

describe('execlayer audit', () => {
  let dir: string;
  let db: string;
  let store: string;
  const now = Date.now();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-cli-'));
    db = join(dir, 'audit.db');
    store = `sqlite:${db}`;
    // 30 old records (200 days ago), then 30 recent ones.
    let clock = now - 200 * DAY;
    const log = await openAuditLog(store, { checkpointEvery: 10, now: () => clock });
    for (let i = 0; i < 30; i++) await log.record(decisionEvent(i, { agent: 'old-bot' }));
    clock = now - 60_000;
    for (let i = 30; i < 60; i++) {
      await log.record(
        decisionEvent(i, {
          agent: i === 45 ? '=HYPERLINK("http://evil")' : 'support-bot',
          tool: i % 2 === 0 ? 'db.query' : 'files.write_file',
          effect: i % 2 === 0 ? 'allow' : 'deny',
          rule: i % 2 === 0 ? 'support.db-read' : null,
        }),
      );
    }
    await log.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every subcommand has --help, and unknown input is a usage error', async () => {
    for (const sub of ['verify', 'proof', 'verify-proof', 'tail', 'query', 'export', 'prune', 'key']) {
      const r = await audit(sub, '--help');
      assert.equal(r.code, 0, sub);
      assert.match(r.out, new RegExp(`usage: execlayer audit ${sub}`));
    }
    assert.equal((await audit('frobnicate')).code, 2);
    assert.equal((await audit('query', '--store', store, '--bogus')).code, 2);
    assert.equal((await audit('query', '--store', store, '--since', 'yesterday-ish')).code, 2);
    assert.equal((await audit('verify', '--store', 'mysql://x')).code, 2);
  });

  it('verify passes on an intact log and names the first bad seq otherwise', async () => {
    const pub = join(dir, 'trusted.pem');
    writeFileSync(pub, (await audit('key', '--public', '--store', store)).out);
    let r = await audit('verify', '--store', store, '--key', pub);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^ok: 60 records verified/);
    assert.match(r.out, /signing key: sha256:[0-9a-f]{64}, from trusted public key/);
    r = await audit('verify', '--store', store, '--json', '--key', pub);
    const report = JSON.parse(r.out);
    assert.equal(report.ok, true);
    assert.equal(report.size, 60);
    assert.equal(report.trust, 'key');
    // Without a key of the verifier's own, an intact log is only self-signed: its own exit code.
    r = await audit('verify', '--store', store);
    assert.equal(r.code, 5, r.out);
    assert.match(r.out, /^SELF-SIGNED: 60 records/);
    assert.doesNotMatch(r.out, /^ok/m);

    const copy = join(dir, 'tampered.db');
    writeFileSync(copy, readFileSync(db));
    writeFileSync(`${copy}.key`, readFileSync(`${db}.key`), { mode: 0o600 });
    const raw = new Database(copy);
    raw
      .prepare(
        `UPDATE audit_records SET event = replace(event, '"effect":"deny"', '"effect":"allow"') WHERE seq = 41`,
      )
      .run();
    raw.close();
    r = await audit('verify', '--store', `sqlite:${copy}`);
    assert.equal(r.code, 1);
    assert.match(r.out, /FAILED: first bad record is seq 41/);
    r = await audit('verify', '--store', `sqlite:${copy}`, '--json', '--progress');
    assert.equal(JSON.parse(r.out).firstBadSeq, 41);
    assert.match(r.err, /verifying: \d+\/60 records/);
    // 100000 asks for far more threads than anyone should get: capped (at 16), it still names the record.
    for (const workers of ['0', '2', '100000']) {
      r = await audit('verify', '--store', `sqlite:${copy}`, '--json', '--workers', workers);
      assert.equal(r.code, 1, `--workers ${workers}`);
      assert.equal(JSON.parse(r.out).firstBadSeq, 41, `--workers ${workers}`);
    }
    r = await audit('verify', '--store', store, '--workers', 'two');
    assert.equal(r.code, 2);
    assert.match(r.err, /--workers `two` is not a whole number/);

    r = await audit('verify', '--store', `sqlite:${join(dir, 'nope.db')}`);
    assert.equal(r.code, 3);
    assert.match(r.err, /does not exist/);
  });

  it('proof and verify-proof work offline with only the public key', async () => {
    const keyOut = await audit('key', '--public', '--store', store);
    assert.equal(keyOut.code, 0);
    assert.match(keyOut.out, /^-----BEGIN PUBLIC KEY-----/);
    const pub = join(dir, 'pub.pem');
    writeFileSync(pub, keyOut.out);
    const proofFile = join(dir, 'proof.json');
    let r = await audit('proof', '37', '--store', store, '--out', proofFile);
    assert.equal(r.code, 0, r.err);
    r = await audit('verify-proof', proofFile, '--key', pub);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^ok: record 37 is in the log/);
    const proof = JSON.parse(readFileSync(proofFile, 'utf8'));
    proof.record.event.decision.reason = 'nothing to see here';
    writeFileSync(proofFile, JSON.stringify(proof));
    r = await audit('verify-proof', proofFile, '--key', pub, '--json');
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.out).code, 'record_modified');
    assert.equal((await audit('verify-proof', proofFile)).code, 2, '--key is required');
    assert.equal((await audit('proof', '999', '--store', store)).code, 2);
  });

  it('query filters and tail read records back', async () => {
    let r = await audit(
      'query',
      '--store',
      store,
      '--agent',
      'support-bot',
      '--effect',
      'deny',
      '--since',
      '1h',
      '--json',
    );
    const rows = JSON.parse(r.out) as Array<{ seq: number }>;
    assert.deepEqual(
      rows.map((x) => x.seq),
      [31, 33, 35, 37, 39, 41, 43, 47, 49, 51, 53, 55, 57, 59],
    );
    r = await audit('query', '--store', store, '--agent', 'old-bot', '--until', '100d');
    assert.equal(r.out.trim().split('\n').length, 30);
    r = await audit('tail', '-n', '3', '--store', store);
    assert.deepEqual(
      r.out
        .trim()
        .split('\n')
        .map((l) => l.split('  ')[0]),
      ['#57', '#58', '#59'],
    );
  });

  it('tail --follow prints records as they arrive', async () => {
    const running = run(auditCommand, ['tail', '-n', '0', '--follow', '--store', store, '--json']);
    const log = await openAuditLog(store);
    await log.record({ type: 'agent', status: 'suspended', agent: 'support-bot', by: 'ops' });
    await new Promise((r) => setTimeout(r, 600));
    process.emit('SIGINT');
    const r = await running;
    await log.close();
    assert.equal(r.code, 0);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.at(-1).event.status, 'suspended');
  });

  it('export writes JSON Lines and formula-safe CSV', async () => {
    const out = join(dir, 'x.csv');
    let r = await audit('export', '--format', 'csv', '--store', store, '--out', out, '--since', '1h');
    assert.equal(r.code, 0, r.err);
    const csv = readFileSync(out, 'utf8').split('\r\n');
    assert.ok(csv[0]!.startsWith('seq,time,type'));
    const evil = csv.find((l) => l.startsWith('45,'));
    assert.ok(evil?.includes('"\'=HYPERLINK(""http://evil"")"'), evil);
    r = await audit('export', '--format', 'jsonl', '--store', store, '--limit', '5');
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => l.seq),
      [0, 1, 2, 3, 4],
    );
    assert.match(lines[0].hash, /^[0-9a-f]{64}$/);
    assert.equal((await audit('export', '--store', store)).code, 2, '--format is required');
  });

  it('prune keeps the default 183 days, removes older content, and the log still verifies', async () => {
    let r = await audit('prune', '--store', store, '--dry-run', '--json');
    const dry = JSON.parse(r.out);
    assert.equal(dry.count, 21, 'records 0..20 are below the checkpoint at 21 and 200 days old');
    assert.equal(dry.dryRun, true);
    r = await audit('prune', '--store', store);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /pruned 21 records/);
    r = await audit('verify', '--store', store, '--json');
    assert.equal(r.code, 5, 'intact, self-signed');
    const report = JSON.parse(r.out);
    assert.equal(report.ok, true, r.out);
    assert.equal(report.selfSigned, true);
    assert.equal(report.pruned, 21);
    assert.equal((await audit('prune', '--store', store, '--older-than', 'soon')).code, 2);
  });
});

describe('execlayer replay', () => {
  let dir: string;
  let store: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-replay-'));
    store = `sqlite:${join(dir, 'audit.db')}`;
    const log = await openAuditLog(store);
    await log.record(
      decisionEvent(0, {
        agent: 'bot',
        tool: 'db.query',
        effect: 'allow',
        rule: 'read-db',
        args: { sql: 'select 1' },
      }),
    );
    await log.record(
      decisionEvent(1, {
        agent: 'bot',
        tool: 'files.write_file',
        effect: 'deny',
        rule: null,
        args: { path: '/tmp/x' },
      }),
    );
    await log.record(
      decisionEvent(2, {
        agent: 'bot',
        tool: 'email.send',
        effect: 'allow',
        rule: 'mail',
        args: { to: 'a@b.c' },
      }),
    );
    await log.record(
      decisionEvent(3, { agent: 'bot', tool: 'crm.read', effect: 'allow', rule: 'crm', args: { id: 1 } }),
    );
    const redacted = decisionEvent(4, {
      agent: 'bot',
      tool: 'crm.read',
      effect: 'allow',
      rule: 'crm',
      args: { id: 2 },
    });
    redacted.action.args = { id: '[redacted]' };
    await log.record(redacted);
    await log.close();
    writeFileSync(
      join(dir, 'candidate.yaml'),
      `version: 1
agents:
  bot:
    roles: [r]
roles:
  r:
    - id: no-db
      deny: db.query
    - id: write
      allow: files.write_file
    - id: mail-ask
      ask: email.send
    - id: crm
      allow: crm.read
`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reports newly denied, allowed and asked decisions per rule', async () => {
    const r = await run(replayCommand, ['--policy', join(dir, 'candidate.yaml'), '--store', store, '--json']);
    assert.equal(r.code, 0, r.err);
    const rep = JSON.parse(r.out);
    assert.deepEqual(
      [rep.decisions, rep.unchanged, rep.newlyDenied, rep.newlyAllowed, rep.newlyAsked, rep.notReplayable],
      [5, 1, 1, 1, 1, 1],
    );
    assert.equal(rep.byRule['no-db'].newlyDenied, 1);
    assert.equal(rep.examples.newly_allowed[0].tool, 'files.write_file');
  });

  it('--fail-on turns a change into exit 1; bad input is a usage error', async () => {
    const policy = join(dir, 'candidate.yaml');
    let r = await run(replayCommand, ['--policy', policy, '--store', store, '--fail-on', 'newly-allowed']);
    assert.equal(r.code, 1);
    assert.match(r.out, /FAILED: newly-allowed/);
    r = await run(replayCommand, [
      '--policy',
      policy,
      '--store',
      store,
      '--since',
      '1h',
      '--fail-on',
      'any-change',
    ]);
    assert.equal(r.code, 1);
    r = await run(replayCommand, ['--policy', policy, '--store', store, '--fail-on', 'sometimes']);
    assert.equal(r.code, 2);
    r = await run(replayCommand, ['--store', store]);
    assert.equal(r.code, 2);
    writeFileSync(join(dir, 'broken.yaml'), 'version: 1\nagents: [unclosed\n');
    r = await run(replayCommand, ['--policy', join(dir, 'broken.yaml'), '--store', store]);
    assert.equal(r.code, 1);
    assert.match(r.err, /broken\.yaml:\d+/);
  });
});

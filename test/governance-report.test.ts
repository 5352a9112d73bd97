// The evidence bundle over the scenario recorded through the real gateway: built twice it is byte-identical;
// it verifies offline; an altered record, a removed file and an edited policy version are each named by
// `report verify`; the controls say what the records show, honestly.
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { reportCommand } from '../src/cli/report.js';
import { verifyBundle } from '../src/governance/report-verify.js';
import { recordScenario, type Scenario } from './governance-fixture.js';

let s: Scenario;
let bundle: string;

async function report(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d) => {
    stdout += d;
  });
  err.on('data', (d) => {
    stderr += d;
  });
  const code = await reportCommand(args, { stdout: out, stderr: err });
  return { code, stdout, stderr };
}

function build(out: string) {
  return report([
    '--from',
    new Date(s.from).toISOString(),
    '--to',
    new Date(s.to).toISOString(),
    '--policy',
    s.policyFile,
    '--declarations',
    s.declFile,
    '--store',
    s.store,
    '--key',
    s.keyPath,
    '--out',
    out,
    '--json',
  ]);
}

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

before(async () => {
  s = await recordScenario();
  bundle = join(s.dir, 'bundle-1');
  const r = await build(bundle);
  assert.equal(r.code, 0, r.stderr);
});
after(() => {
  if (s) rmSync(s.dir, { recursive: true, force: true });
});

test('built twice from the same inputs, the bundle is byte-identical', async () => {
  const again = join(s.dir, 'bundle-2');
  assert.equal((await build(again)).code, 0);
  const a = files(bundle);
  assert.deepEqual(files(again), a);
  assert.ok(a.length > 30, `${a.length} files`);
  for (const f of a)
    assert.ok(readFileSync(join(bundle, f)).equals(readFileSync(join(again, f))), `${f} differs`);
  // Nothing from the building machine leaks in: no temp paths in the manifest, the gap report or the summary.
  for (const f of ['manifest.json', 'gap.json', 'summary.html']) {
    assert.doesNotMatch(
      readFileSync(join(bundle, f), 'utf8'),
      /execlayer-governance-[A-Za-z0-9]{6}\/(policy|decl)/,
      f,
    );
  }
  assert.equal((await build(again)).code, 2, 'a non-empty output directory is refused');
});

test('the bundle verifies offline, also against the pinned log key', async () => {
  const r = verifyBundle(bundle);
  assert.deepEqual(r.problems, []);
  assert.ok(
    r.checked.records > 20 && r.checked.proofs > 5 && r.checked.checkpoints > 1 && r.checked.policies === 1,
    JSON.stringify(r.checked),
  );
  const pem = readFileSync(join(bundle, 'public-key.pem'), 'utf8');
  assert.equal(verifyBundle(bundle, pem).ok, true);
  const { generateKeyPairSync } = await import('node:crypto');
  const other = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const wrong = verifyBundle(bundle, other);
  assert.deepEqual([...new Set(wrong.problems.map((p) => p.code))].sort(), [
    'checkpoint_invalid',
    'key_mismatch',
    'proof_invalid',
    'signature_invalid',
  ]);
  assert.equal((await report(['verify', join(s.dir, 'no-such-bundle')])).code, 3);
  const cli = await report(['verify', bundle]);
  assert.equal(cli.code, 0);
  assert.match(cli.stdout, /^ok: \d+ files, \d+ records, \d+ proofs/);
});

function tamper(name: string, change: (dir: string) => void): ReturnType<typeof verifyBundle> {
  const dir = join(s.dir, `tampered-${name}`);
  cpSync(bundle, dir, { recursive: true });
  change(dir);
  return verifyBundle(dir);
}

test('an altered record is named by its seq', () => {
  let seq = -1;
  const r = tamper('record', (dir) => {
    const path = join(dir, 'audit', 'segment.jsonl');
    const lines = readFileSync(path, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"a":700'));
    assert.ok(i >= 0);
    seq = (JSON.parse(lines[i] as string) as { seq: number }).seq;
    lines[i] = (lines[i] as string).replace('"a":700', '"a":70');
    writeFileSync(path, lines.join('\n'));
  });
  assert.equal(r.ok, false);
  assert.deepEqual(
    r.problems.map((p) => [p.code, p.file, p.seq ?? null]),
    [
      ['file_altered', 'audit/segment.jsonl', null],
      ['record_altered', 'audit/segment.jsonl', seq],
    ],
  );
  assert.match(r.problems[1]?.message ?? '', new RegExp(`record ${seq} does not hash to its recorded hash`));
});

test('a removed file and a removed record are named', () => {
  const proof = readdirSync(join(bundle, 'audit', 'proofs'))[0] as string;
  const r = tamper('file', (dir) => rmSync(join(dir, 'audit', 'proofs', proof)));
  assert.equal(r.ok, false);
  const seq = Number(proof.replace('.json', ''));
  assert.deepEqual(r.problems[0], {
    code: 'file_missing',
    file: `audit/proofs/${proof}`,
    message: `\`audit/proofs/${proof}\` is missing`,
  });
  assert.ok(r.problems.some((p) => p.code === 'proof_missing' && p.seq === seq));

  const gone = tamper('line', (dir) => {
    const path = join(dir, 'audit', 'segment.jsonl');
    const lines = readFileSync(path, 'utf8').split('\n');
    lines.splice(3, 1);
    writeFileSync(path, lines.join('\n'));
  });
  const first = (JSON.parse(readFileSync(join(bundle, 'audit', 'segment.json'), 'utf8')) as { first: number })
    .first;
  assert.ok(
    gone.problems.some((p) => p.code === 'record_missing' && p.seq === first + 3),
    JSON.stringify(gone.problems),
  );
});

test('an edited policy version is named', () => {
  const index = JSON.parse(readFileSync(join(bundle, 'policies', 'index.json'), 'utf8')) as {
    versions: { file: string }[];
  };
  const file = index.versions[0]?.file as string;
  const r = tamper('policy', (dir) => {
    const path = join(dir, file);
    writeFileSync(path, readFileSync(path, 'utf8').replace('max: 1000', 'max: 100'));
  });
  assert.deepEqual(
    r.problems.map((p) => [p.code, p.file]),
    [
      ['file_altered', file],
      ['policy_altered', file],
    ],
  );
});

test('the controls say what the records show: statuses, approvals, stops, policy versions', () => {
  const index = JSON.parse(readFileSync(join(bundle, 'controls', 'index.json'), 'utf8')) as {
    controls: { id: string; status: string }[];
  };
  assert.deepEqual(Object.fromEntries(index.controls.map((c) => [c.id, c.status])), {
    'eu-ai-act-art-12': 'evidence_observed',
    'eu-ai-act-art-14': 'partial',
    'eu-ai-act-art-19': 'not_applicable',
    'eu-ai-act-art-26-6': 'partial',
    'eu-ai-act-art-72': 'partial',
    'nist-ai-rmf-govern-1.6': 'evidence_observed',
    'nist-ai-rmf-measure-2.6': 'evidence_observed',
    'nist-ai-rmf-manage-2.4': 'evidence_observed',
    'nist-ai-rmf-manage-4.1': 'partial',
    'owasp-asi02': 'gap',
    'owasp-asi03': 'gap',
    'owasp-asi04': 'evidence_observed',
    'owasp-asi10': 'evidence_observed',
    'sp800-53-au-2': 'evidence_observed',
    'sp800-53-au-3': 'evidence_observed',
    'sp800-53-au-9': 'evidence_observed',
    'sp800-53-au-10': 'evidence_observed',
    'sp800-53-au-11': 'partial',
    'sp800-53-au-12': 'evidence_observed',
  });
  const art14 = JSON.parse(readFileSync(join(bundle, 'controls', 'eu-ai-act-art-14.json'), 'utf8')) as {
    evidence: { quickApprovals: string[]; medianDwellMs: number };
    summary: string;
  };
  assert.equal(art14.evidence.quickApprovals.length, 1, 'the 40 ms approval is flagged');
  assert.ok(art14.evidence.medianDwellMs >= 40);
  const approvals = JSON.parse(readFileSync(join(bundle, 'approvals.json'), 'utf8')) as {
    approvals: {
      agent: string;
      tool: string;
      decided: { approver: string; status: string };
      dwellMs: number;
      used: unknown;
    }[];
  };
  assert.equal(approvals.approvals.length, 1);
  const a = approvals.approvals[0];
  assert.deepEqual(
    [a?.agent, a?.tool, a?.decided.status, a?.decided.approver],
    ['ops-bot', 'everything.echo', 'granted', 'lead@acme.com'],
  );
  const stops = JSON.parse(readFileSync(join(bundle, 'stops.json'), 'utf8')) as {
    stops: { agent: string; by: string; timeToHaltMs: number; allowedAfter: number[]; resumed: unknown }[];
  };
  assert.equal(stops.stops.length, 1);
  assert.equal(stops.stops[0]?.by, 'oncall@acme.com');
  assert.ok((stops.stops[0]?.timeToHaltMs ?? -1) >= 0);
  assert.deepEqual(stops.stops[0]?.allowedAfter, []);
  const policies = JSON.parse(readFileSync(join(bundle, 'policies', 'index.json'), 'utf8')) as {
    versions: { activations: unknown[]; decisions: number; inForce: boolean }[];
  };
  assert.equal(policies.versions.length, 1);
  assert.equal(policies.versions[0]?.activations.length, 1);
  assert.equal(policies.versions[0]?.inForce, true);
  // Every cited record has a proof; the gap report inside is the one for this window.
  const gap = JSON.parse(readFileSync(join(bundle, 'gap.json'), 'utf8')) as {
    totals: Record<string, number>;
  };
  assert.equal(gap.totals.over_permitted, 1);
  assert.equal(gap.totals.undeclared_attempt, 3);
});

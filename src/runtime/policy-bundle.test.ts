// Bundles at run time: a change of several files is applied all or nothing, and a signed bundle that no
// longer verifies is refused at start and at every reload while the policy in force stays.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { signaturePath } from '../policy/bundle-read.js';
import { loadPolicyFile } from '../policy/load.js';
import { signPolicyHash } from '../policy/signature.js';
import { createExecLayer, type ExecLayer, type RuntimeEvent } from './exec-layer.js';

const tmp = mkdtempSync(join(tmpdir(), 'execlayer-bundle-reload-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const TIMING = { pollMs: 20, settleMs: 150 };
let n = 0;

/** A team file whose agent `<team>.bot` may call `tool`. */
const teamFile = (team: string, tool: string) =>
  `version: 1\nteam: ${team}\nowns: { agents: [${team}.*] }\nagents:\n  ${team}.bot:\n    rules: [{ allow: ${tool} }]\n`;

function bundleDir(tool: string): string {
  const dir = join(tmp, `b${n++}`);
  mkdirSync(join(dir, 'teams'), { recursive: true });
  writeFileSync(join(dir, 'bundle.yaml'), 'version: 1\n');
  writeFileSync(join(dir, 'teams/a.yaml'), teamFile('a', tool));
  writeFileSync(join(dir, 'teams/b.yaml'), teamFile('b', tool));
  return dir;
}

/**
 * Takes decisions on both teams' agents from one engine at a time, every few ms, until stopped: each
 * sample says whether each agent may call `tool.v2`.
 */
function sampler(layer: ExecLayer) {
  const samples: { a: string; b: string; policy: string }[] = [];
  let on = true;
  const run = (async () => {
    while (on) {
      const engine = layer.engine;
      const a = engine.decide({ agent: 'a.bot', tool: 'tool.v2', args: {} });
      const b = engine.decide({ agent: 'b.bot', tool: 'tool.v2', args: {} });
      samples.push({ a: a.effect, b: b.effect, policy: a.policy });
      await sleep(2);
    }
  })();
  return {
    samples,
    stop: async () => {
      on = false;
      await run;
    },
  };
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('bundle reload', () => {
  test('two files changed 80 ms apart are applied as one: no decision sees one without the other', async () => {
    const dir = bundleDir('tool.v1');
    // A settle time well above the gap between the writes, so a loaded machine does not stretch the gap past it.
    const layer = await createExecLayer({ policy: dir, store: false, watch: { pollMs: 20, settleMs: 400 } });
    const before = layer.policyHash;
    const s = sampler(layer);
    try {
      await sleep(100);
      // Longer apart than a poll (the watch sees the state in between), shorter than the settle time.
      writeFileSync(join(dir, 'teams/a.yaml'), teamFile('a', 'tool.v2'));
      await sleep(80);
      writeFileSync(join(dir, 'teams/b.yaml'), teamFile('b', 'tool.v2'));
      await waitFor(() => layer.policyHash !== before, 3000, 'the reload');
      await sleep(50);
    } finally {
      await s.stop();
      await layer.close();
    }
    const mixed = s.samples.filter((x) => x.a !== x.b);
    assert.deepEqual(mixed, [], 'a decision saw one file changed and the other not');
    assert.deepEqual(new Set(s.samples.map((x) => x.policy)).size, 2, 'exactly the old and the new bundle');
    assert.equal(s.samples[0]?.a, 'deny');
    assert.equal(s.samples.at(-1)?.a, 'allow');
  });

  test('control: a writer pausing longer than the settle time exposes the state in between', async () => {
    // Shows the sampler above can see a mix: with a pause longer than `settleMs` each state is loaded.
    const dir = bundleDir('tool.v1');
    const layer = await createExecLayer({ policy: dir, store: false, watch: TIMING });
    const s = sampler(layer);
    try {
      writeFileSync(join(dir, 'teams/a.yaml'), teamFile('a', 'tool.v2'));
      await waitFor(() => s.samples.some((x) => x.a !== x.b), 3000, 'the state in between');
      writeFileSync(join(dir, 'teams/b.yaml'), teamFile('b', 'tool.v2'));
      await waitFor(() => s.samples.at(-1)?.b === 'allow', 3000, 'the second file');
    } finally {
      await s.stop();
      await layer.close();
    }
  });

  test('a file added to the directory, and a file removed, are reloaded', async () => {
    const dir = bundleDir('tool.v1');
    const layer = await createExecLayer({ policy: dir, store: false, watch: TIMING });
    try {
      writeFileSync(join(dir, 'teams/c.yaml'), teamFile('c', 'tool.v2'));
      await waitFor(
        () => layer.engine.decide({ agent: 'c.bot', tool: 'tool.v2', args: {} }).effect === 'allow',
        3000,
        'c',
      );
      rmSync(join(dir, 'teams/c.yaml'));
      await waitFor(
        () => layer.engine.decide({ agent: 'c.bot', tool: 'tool.v2', args: {} }).effect === 'deny',
        3000,
        'c gone',
      );
    } finally {
      await layer.close();
    }
  });

  test('a change to a file reached through include is reloaded', async () => {
    const dir = bundleDir('tool.v1');
    writeFileSync(join(dir, 'root.yaml'), 'version: 1\ninclude: [teams/*.yaml]\n');
    const layer = await createExecLayer({ policy: join(dir, 'root.yaml'), store: false, watch: TIMING });
    try {
      assert.equal(layer.engine.decide({ agent: 'a.bot', tool: 'tool.v1', args: {} }).effect, 'allow');
      writeFileSync(join(dir, 'teams/a.yaml'), teamFile('a', 'tool.v2'));
      await waitFor(
        () => layer.engine.decide({ agent: 'a.bot', tool: 'tool.v2', args: {} }).effect === 'allow',
        3000,
        'a',
      );
    } finally {
      await layer.close();
    }
  });
});

describe('signed bundle', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

  async function sign(dir: string): Promise<string> {
    const r = await loadPolicyFile(dir);
    assert.ok(r.ok);
    writeFileSync(signaturePath(dir), JSON.stringify(signPolicyHash(r.policy.hash, privateKey)));
    return r.policy.hash;
  }

  test('a tampered file is refused at start', async () => {
    const dir = bundleDir('tool.v1');
    await sign(dir);
    const ok = await createExecLayer({ policy: dir, store: false, policyKey: publicPem });
    await ok.close();
    writeFileSync(join(dir, 'teams/b.yaml'), teamFile('b', '"*"'));
    await assert.rejects(createExecLayer({ policy: dir, store: false, policyKey: publicPem }), (e: Error) => {
      assert.match(e.message, /signature_mismatch/);
      return true;
    });
    // Unsigned is refused too when a key is configured.
    rmSync(signaturePath(dir));
    await assert.rejects(
      createExecLayer({ policy: dir, store: false, policyKey: publicPem }),
      /signature_missing/,
    );
  });

  test('a tampered file is refused at reload: the signed policy stays, and re-signing loads the change', async () => {
    const dir = bundleDir('tool.v1');
    const signed = await sign(dir);
    const keyFile = join(dir, '..', `key${n}.pem`);
    writeFileSync(keyFile, publicPem);
    const events: RuntimeEvent[] = [];
    const layer = await createExecLayer({
      policy: dir,
      store: false,
      policyKey: keyFile,
      watch: TIMING,
      onEvent: (e) => events.push(e),
    });
    try {
      writeFileSync(join(dir, 'teams/b.yaml'), teamFile('b', '"*"'));
      await waitFor(() => events.some((e) => e.type === 'policy_rejected'), 3000, 'the rejection');
      const rejected = events.find((e) => e.type === 'policy_rejected');
      assert.ok(rejected?.type === 'policy_rejected' && /signature_mismatch/.test(rejected.problems.join()));
      assert.equal(layer.policyHash, signed);
      assert.equal(layer.engine.decide({ agent: 'b.bot', tool: 'anything', args: {} }).effect, 'deny');

      // A forced reload says the same.
      const forced = await layer.reload();
      assert.equal(forced.status, 'rejected');
      assert.equal(layer.policyHash, signed);

      // The owner reviews and signs the change: the new signature alone triggers the reload.
      const resigned = await sign(dir);
      await waitFor(() => layer.policyHash === resigned, 3000, 'the signed change');
      assert.equal(layer.engine.decide({ agent: 'b.bot', tool: 'anything', args: {} }).effect, 'allow');
    } finally {
      await layer.close();
    }
  });

  test('a single signed file works the same way', async () => {
    const dir = join(tmp, `single${n++}`);
    mkdirSync(dir);
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'version: 1\nagents:\n  bot:\n    rules: [{ allow: a.b }]\n');
    await sign(file);
    const layer = await createExecLayer({ policy: file, store: false, policyKey: publicKey });
    await layer.close();
    writeFileSync(file, 'version: 1\nagents:\n  bot:\n    rules: [{ allow: "*" }]\n');
    await assert.rejects(
      createExecLayer({ policy: file, store: false, policyKey: publicKey }),
      /signature_mismatch/,
    );
  });
});

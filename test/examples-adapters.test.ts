// Runs each adapter example as a user would (`npx tsx examples/adapters/<name>.ts`) and checks that
// what it prints shows the refusals with their reasons and the allowed result, so the examples keep working.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function spawnExample(name: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', `examples/adapters/${name}.ts`],
      { cwd: root, encoding: 'utf8', timeout: 120_000 },
      (error, stdout, stderr) =>
        resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

// The examples start in parallel (each pays for loading its framework); each test awaits its own.
const runs = new Map<string, Promise<Run>>();
async function runExample(name: string): Promise<string> {
  const r = await runs.get(name);
  assert.ok(r, `example ${name} was not started`);
  assert.equal(r.status, 0, `examples/adapters/${name}.ts exited with ${r.status}:\n${r.stderr}`);
  return r.stdout;
}

const frameworkExamples = ['ai-sdk', 'openai-agents', 'langchain'];

describe('adapter examples', () => {
  before(() => {
    for (const name of [...frameworkExamples, 'mcp-server']) runs.set(name, spawnExample(name));
  });

  for (const name of frameworkExamples) {
    it(`${name}: refuses by rule and by constraint, runs the allowed call`, async () => {
      const out = await runExample(name);
      assert.match(
        out,
        /DENIED +delete_customer: the model read: .*the support agent never deletes customer records/,
      );
      assert.match(out, /DENIED +refund: the model read: .*argument `amount` must be <= 100/);
      assert.match(out, /ALLOWED refund: the model read: "refunded 25 EUR"/);
      // The side effects: only the allowed call ran.
      assert.match(out, /\[tool ran\] refund 25/);
      assert.doesNotMatch(out, /\[tool ran\] delete_customer/);
      assert.doesNotMatch(out, /\[tool ran\] refund 500/);
      assert.match(out, /final answer: done/);
    });
  }

  it('mcp-server: hides and refuses what the agent may not do, runs the allowed call', async () => {
    const out = await runExample('mcp-server');
    assert.match(out, /tools\/list shows: lookup_customer\n/);
    assert.match(out, /DENIED +delete_customer .*the support agent never deletes customer records/);
    assert.match(out, /DENIED +lookup_customer \{"id":"admin"\}.*argument `id` must match `c-\*`/);
    assert.match(
      out,
      /ALLOWED lookup_customer \{"id":"c-42"\}: the client read: "customer c-42: Ada Lovelace"/,
    );
    assert.match(out, /\[tool ran\] lookup_customer c-42/);
    assert.doesNotMatch(out, /\[tool ran\] delete_customer/);
    assert.doesNotMatch(out, /\[tool ran\] lookup_customer admin/);
  });
});

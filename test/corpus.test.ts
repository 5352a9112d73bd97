// Decides every case of the adversarial corpus (test/corpus/*.yaml) through the compiled engine: each
// case must get the decision the corpus says, for the reason it gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compile } from '../src/engine/compile.js';
import { initFacts } from '../src/facts/index.js';
import { loadPolicyObject } from '../src/policy/load.js';
import { caseArgs, groupPolicy, readCorpus } from '../src/testing/corpus.js';

const files = readCorpus();

test('the corpus holds at least 400 cases', () => {
  const n = files.reduce((s, f) => s + f.groups.reduce((t, g) => t + g.cases.length, 0), 0);
  assert.ok(n >= 400, `${n} cases`);
});

for (const file of files) {
  for (const group of file.groups) {
    test(`corpus ${file.file}: ${group.name}`, async () => {
      await initFacts();
      const loaded = loadPolicyObject(groupPolicy(group), `${file.file}#${group.name}`);
      assert.ok(loaded.ok, JSON.stringify(loaded));
      const engine = compile(loaded.policy);
      const wrong: string[] = [];
      for (const c of group.cases) {
        const tool = c.tool ?? group.tool ?? 't.call';
        const d = engine.decide({ agent: 'corpus', tool, args: caseArgs(file, c) });
        const effect = d.effect === 'allow' ? 'allow' : 'deny';
        const problems: string[] = [];
        if (effect !== c.expect) problems.push(`got ${d.effect}`);
        if (c.code !== undefined && d.code !== c.code) problems.push(`code ${d.code}`);
        if (c.reason !== undefined && !d.reason.includes(c.reason)) problems.push('reason lacks the text');
        if (problems.length > 0) {
          wrong.push(
            `- ${JSON.stringify(c.value ?? c.args)} on ${tool}: expected ${c.expect} (${c.why}); ${problems.join(', ')}: ${d.reason}`,
          );
        }
      }
      assert.equal(
        wrong.length,
        0,
        `${wrong.length} of ${group.cases.length} cases wrong:\n${wrong.join('\n')}`,
      );
    });
  }
}

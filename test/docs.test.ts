// The docs cannot drift from the code: every YAML/JSON block in README.md and docs/*.md that is a
// policy, a piece of one, or a gateway configuration loads without error, and every field table names
// exactly the fields the loader accepts. A documented key the loader refuses is a bypass waiting to
// happen (the fix a user reads does not load); an accepted key the docs do not describe is a surprise.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import { canonicalisers, initFacts } from '../src/facts/index.js';
import { FLOW_SECTIONS } from '../src/flows/fields.js';
import { loadPolicyObject, loadPolicyText } from '../src/policy/load.js';
import { policySchema } from '../src/policy/schema.js';

const root = new URL('../', import.meta.url);
const docFiles = ['README.md', ...readdirSync(new URL('docs/', root)).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

interface Block {
  where: string;
  lang: string;
  text: string;
}

function blocks(file: string): Block[] {
  const lines = readFileSync(new URL(file, root), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(\w*)/.exec(lines[i] as string);
    if (!open) continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j] as string)) j++;
    out.push({ where: `${file}:${start}`, lang: open[1] ?? '', text: lines.slice(start, j).join('\n') });
    i = j;
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
const isRule = (v: unknown) => isObject(v) && ('allow' in v || 'deny' in v || 'ask' in v);
/** Any `${VAR}` in a documented configuration expands to a placeholder. */
const anyEnv = new Proxy(
  {},
  { get: (_t, k) => (typeof k === 'string' ? 'x' : undefined) },
) as NodeJS.ProcessEnv;

type Kind =
  | 'policy'
  | 'policy-part'
  | 'rules'
  | 'conditions'
  | 'config'
  | 'cases'
  | 'client-config'
  | 'http'
  | 'other';

/** What a block is, by its shape; `other` blocks must be listed in OTHER below. */
function kindOf(doc: unknown): Kind {
  if (isObject(doc) && 'version' in doc && 'agents' in doc) return 'policy';
  if (isObject(doc) && ('roles' in doc || 'tools' in doc) && !('policy' in doc)) return 'policy-part';
  if (Array.isArray(doc) && doc.length > 0 && doc.every(isRule)) return 'rules';
  if (isRule(doc)) return 'rules';
  if (isObject(doc) && Object.keys(doc).every((k) => k === 'when' || k === 'unless')) return 'conditions';
  if (isObject(doc) && 'cases' in doc) return 'cases';
  if (isObject(doc) && 'mcpServers' in doc) return 'client-config';
  if (isObject(doc) && ('status' in doc || 'subject' in doc || 'evaluations' in doc)) return 'http';
  if (isObject(doc) && ('policy' in doc || isObject(doc.upstreams) || 'store' in doc)) return 'config';
  if (isObject(doc) && Array.isArray(doc.upstreams)) return 'http';
  return 'other';
}

function problemsOf(r: ReturnType<typeof loadPolicyText>): string {
  return r.ok ? '' : r.problems.map((p) => `${p.line}:${p.column} ${p.message}`).join('; ');
}

test('every policy, rule, condition and configuration block in the docs loads', async () => {
  await initFacts();
  const wrong: string[] = [];
  let checked = 0;
  for (const file of docFiles) {
    for (const b of blocks(file)) {
      if (b.lang !== 'yaml' && b.lang !== 'json') continue;
      let doc: unknown;
      try {
        doc = b.lang === 'json' ? JSON.parse(b.text) : parse(b.text);
      } catch (e) {
        wrong.push(`${b.where}: does not parse: ${(e as Error).message.split('\n')[0]}`);
        continue;
      }
      const kind = kindOf(doc);
      checked++;
      if (kind === 'policy') {
        const r = loadPolicyText(b.text, b.where);
        if (!r.ok) wrong.push(`${b.where}: policy does not load: ${problemsOf(r)}`);
      } else if (kind === 'policy-part') {
        const part = doc as { roles?: Record<string, unknown> };
        const agents = { doc: { roles: Object.keys(part.roles ?? {}) } };
        const r = loadPolicyObject({ version: 1, agents, ...part }, b.where);
        if (!r.ok) wrong.push(`${b.where}: policy part does not load: ${problemsOf(r)}`);
      } else if (kind === 'rules' || kind === 'conditions') {
        const rules = kind === 'conditions' ? [{ allow: 'doc.tool', ...(doc as object) }] : [doc].flat();
        const r = loadPolicyObject({ version: 1, agents: { doc: { rules } } }, b.where);
        if (!r.ok) wrong.push(`${b.where}: rules do not load: ${problemsOf(r)}`);
      } else if (kind === 'config') {
        try {
          // A fragment (a `store:` block alone) is checked inside a configuration that names a policy.
          const text = 'policy' in (doc as object) ? b.text : `policy: ./policy.yaml\n${b.text}`;
          parseConfig(text, `/docs/${b.where.replace(/[/:]/g, '_')}.yaml`, anyEnv);
        } catch (e) {
          wrong.push(`${b.where}: configuration does not load: ${(e as Error).message}`);
        }
      } else if (kind === 'other') {
        wrong.push(
          `${b.where}: a ${b.lang} block the docs test does not recognise; teach kindOf() what it is`,
        );
      }
    }
  }
  assert.ok(checked >= 10, `only ${checked} blocks found`);
  assert.deepEqual(wrong, []);
});

/** First-column names of the markdown table right after `heading`'s line whose header starts with `first`. */
function tableNames(file: string, heading: RegExp, first: string): string[] {
  const lines = readFileSync(new URL(file, root), 'utf8').split('\n');
  const h = lines.findIndex((l) => heading.test(l));
  assert.ok(h >= 0, `${file}: no heading ${heading}`);
  let i = h + 1;
  while (i < lines.length && !/^#/.test(lines[i] as string)) {
    const cells = (lines[i] as string).split('|').map((c) => c.trim());
    if (cells[1] === first) break;
    i++;
  }
  assert.ok(
    i < lines.length && !/^#/.test(lines[i] as string),
    `${file}: no \`${first}\` table under ${heading}`,
  );
  const names: string[] = [];
  for (i += 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
    const cell = (lines[i] as string).split('|')[1] ?? '';
    // `a` / `b` names two keys; anything after the first name of each part is explanation.
    for (const part of cell.split(' / ')) {
      const m = /^\s*`([a-z_]+)[`:\s(]/.exec(part);
      if (m) names.push(m[1] as string);
    }
  }
  return [...new Set(names)].sort();
}

const keysOf = (o: object) => Object.keys(o).sort();

for (const [name, canon] of Object.entries(canonicalisers)) {
  test(`docs/constraints.md lists exactly the fields a \`${name}\` condition accepts`, () => {
    assert.deepEqual(
      tableNames('docs/constraints.md', new RegExp(`^## ${name}\\b`), 'field'),
      keysOf(canon.fields),
    );
  });
}

for (const [name, fields] of Object.entries(FLOW_SECTIONS)) {
  test(`docs/flows.md lists exactly the keys of \`${name}\` the loader accepts`, () => {
    assert.deepEqual(tableNames('docs/flows.md', new RegExp(`^### \`${name}\``), 'key'), keysOf(fields));
  });
}

const schema = policySchema as unknown as {
  properties: {
    agents: { additionalProperties: { properties: object } };
    roles: { additionalProperties: { items: { properties: object } } };
  };
};
const ruleKeys = keysOf(schema.properties.roles.additionalProperties.items.properties);
const conditionSchema = (
  schema.properties.roles.additionalProperties.items.properties as {
    when: { properties: { args: { additionalProperties: { properties: object } } } & { properties: object } };
  }
).when;

test('docs/policy.md lists exactly the keys a rule accepts', () => {
  assert.deepEqual(tableNames('docs/policy.md', /^## Rules/, 'key'), ruleKeys);
});

test('docs/policy.md lists exactly the conditions `when` accepts', () => {
  assert.deepEqual(
    tableNames('docs/policy.md', /^## Conditions/, 'condition'),
    keysOf(conditionSchema.properties),
  );
});

test('docs/policy.md lists exactly the typed constraints `args` accepts', () => {
  const argKeys = keysOf(conditionSchema.properties.args.additionalProperties.properties);
  assert.deepEqual(tableNames('docs/policy.md', /^## Typed argument constraints/, 'key'), argKeys);
});

test('the reference policy in docs/policy.md shows every top-level and agent key', () => {
  const first = blocks('docs/policy.md').find((b) => b.lang === 'yaml');
  assert.ok(first);
  const doc = parse(first.text) as { agents: Record<string, object> };
  const agent = Object.values(doc.agents)[0] as object;
  const top = keysOf(policySchema.properties).filter((k) => k !== '$schema');
  assert.deepEqual(keysOf(doc), top);
  assert.deepEqual(keysOf(agent), keysOf(schema.properties.agents.additionalProperties.properties));
});

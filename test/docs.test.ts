// The docs cannot drift from the code: every YAML/JSON block in README.md and docs/*.md that is a
// policy, a piece of one, or a gateway configuration loads without error, and every field table names
// exactly the fields the loader accepts. A documented key the loader refuses is a bypass waiting to
// happen (the fix a user reads does not load); an accepted key the docs do not describe is a surprise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import { canonicalisers, initFacts } from '../src/facts/index.js';
import { FLOW_SECTIONS } from '../src/flows/fields.js';
import { loadDeclarationTexts } from '../src/governance/declaration.js';
import { BUNDLE_KEYS } from '../src/policy/bundle-read.js';
import { loadPolicyFile, loadPolicyObject, loadPolicyText } from '../src/policy/load.js';
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
  // Long enough for fields with a minimum length (webhook secrets).
  { get: (_t, k) => (typeof k === 'string' ? 'x'.repeat(32) : undefined) },
) as NodeJS.ProcessEnv;

type Kind =
  | 'policy'
  | 'policy-part'
  | 'rules'
  | 'conditions'
  | 'config'
  | 'cases'
  | 'client-config'
  | 'declaration'
  | 'http'
  | 'prometheus'
  | 'other';

/** A governance declaration: agents with capabilities or prohibited uses (docs/governance.md). */
function isDeclaration(doc: unknown): boolean {
  if (!isObject(doc) || !('version' in doc) || !isObject(doc.agents)) return false;
  return Object.values(doc.agents).some((a) => isObject(a) && ('capabilities' in a || 'prohibited' in a));
}

/** What a block is, by its shape; `other` blocks must be listed in OTHER below. */
function kindOf(doc: unknown): Kind {
  if (isDeclaration(doc)) return 'declaration';
  if (isObject(doc) && 'version' in doc && 'agents' in doc) return 'policy';
  if (isObject(doc) && ('roles' in doc || 'tools' in doc) && !('policy' in doc)) return 'policy-part';
  if (Array.isArray(doc) && doc.length > 0 && doc.every(isRule)) return 'rules';
  if (isRule(doc)) return 'rules';
  if (isObject(doc) && Object.keys(doc).every((k) => k === 'when' || k === 'unless')) return 'conditions';
  if (isObject(doc) && 'cases' in doc) return 'cases';
  if (isObject(doc) && 'mcpServers' in doc) return 'client-config';
  if (isObject(doc) && ('status' in doc || 'subject' in doc || 'evaluations' in doc)) return 'http';
  if (
    isObject(doc) &&
    ('policy' in doc || isObject(doc.upstreams) || 'store' in doc || 'notifications' in doc)
  )
    return 'config';
  // A Prometheus scrape configuration (docs/observability.md): not ExecLayer's to load.
  if (isObject(doc) && 'scrape_configs' in doc) return 'prometheus';
  if (isObject(doc) && Array.isArray(doc.upstreams)) return 'http';
  return 'other';
}

function problemsOf(r: ReturnType<typeof loadPolicyText>): string {
  return r.ok ? '' : r.problems.map((p) => `${p.line}:${p.column} ${p.message}`).join('; ');
}

test('every policy, rule, condition and configuration block in the docs loads', async () => {
  await initFacts();
  const wrong: string[] = [];
  const bundles = new Map<string, Map<string, string>>();
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
      // A file of a documented bundle (`# file: policy/teams/x.yaml` on its first line) is loaded with the
      // others of its document, as the bundle they make.
      const named = /^# file: (\S+)/.exec(b.text);
      if (named) {
        const files = bundles.get(file) ?? new Map<string, string>();
        files.set(named[1] as string, b.text);
        bundles.set(file, files);
        checked++;
        continue;
      }
      const kind = kindOf(doc);
      checked++;
      if (kind === 'policy') {
        const r = loadPolicyText(b.text, b.where);
        if (!r.ok) wrong.push(`${b.where}: policy does not load: ${problemsOf(r)}`);
      } else if (kind === 'declaration') {
        const r = loadDeclarationTexts([{ text: b.text, file: b.where }]);
        if (!r.ok)
          wrong.push(
            `${b.where}: declaration does not load: ${r.problems.map((p) => `${p.line}:${p.column} ${p.message}`).join('; ')}`,
          );
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
  for (const [file, files] of bundles) {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-docs-bundle-'));
    try {
      for (const [name, text] of files) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), text);
      }
      const roots = new Set([...files.keys()].map((n) => n.split('/')[0] as string));
      for (const r of roots) {
        const loaded = await loadPolicyFile(join(dir, r));
        if (!loaded.ok) wrong.push(`${file}: the bundle \`${r}\` does not load: ${problemsOf(loaded)}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.ok(checked >= 10, `only ${checked} blocks found`);
  assert.deepEqual(wrong, []);
});

test('examples/gateway/execlayer.yaml, the complete commented configuration, loads', () => {
  const file = new URL('examples/gateway/execlayer.yaml', root).pathname;
  const config = parseConfig(readFileSync(file, 'utf8'), file, anyEnv);
  assert.deepEqual(Object.keys(config.upstreams).sort(), ['crm', 'files', 'github']);
});

test('every `npx execlayer <command>` the README names is a command that answers --help', async () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const named = new Set(
    [...readme.matchAll(/`npx execlayer ([a-z]+)(?: ([a-z]+))?/g)].map((m) =>
      [m[1], m[2]].filter(Boolean).join(' '),
    ),
  );
  assert.ok(named.size >= 6, [...named].join(', '));
  const bin = new URL('bin/execlayer.js', root).pathname;
  for (const cmd of named) {
    const r = spawnSync(process.execPath, [bin, ...cmd.split(' '), '--help'], { encoding: 'utf8' });
    // A second word that is an argument, not a subcommand, makes --help of the command itself.
    assert.equal(r.status, 0, `execlayer ${cmd} --help: ${r.stderr}`);
  }
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
  // Bundle keys are shown in the Bundles section, whose table must name each of them.
  const bundleKeys: readonly string[] = BUNDLE_KEYS;
  const top = keysOf(policySchema.properties).filter((k) => k !== '$schema' && !bundleKeys.includes(k));
  assert.deepEqual(keysOf(doc), top);
  const text = readFileSync(new URL('docs/policy.md', root), 'utf8');
  const table = text.slice(text.indexOf('### Who may define what'));
  for (const k of BUNDLE_KEYS) assert.match(table, new RegExp(`\\| [^\\n]*\`${k}\``), `bundle key \`${k}\``);
  assert.deepEqual(keysOf(agent), keysOf(schema.properties.agents.additionalProperties.properties));
});

// The package as a user gets it: `npm pack`, then `npm install <tarball>` into an empty project. It must
// install only runtime dependencies, run no install script but the ones the project chose
// (better-sqlite3's native build), and give a working `execlayer` command, SDK and types — and the
// stdio gateway must start the way desktop MCP clients start servers: working directory `/`, nothing
// but `command`, `args` and `env`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const run = promisify(execFile);
const repo = new URL('../', import.meta.url).pathname;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
/** The install scripts a user's `npm install execlayer` may run. */
const CHOSEN_INSTALL_SCRIPTS = ['better-sqlite3'];

let dir = '';
let bin = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'execlayer-package-'));
  // The suite builds dist/ first; pack exactly that (no second build).
  const { stdout } = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: repo,
    maxBuffer: 64 << 20,
  });
  const tarball = join(dir, (JSON.parse(stdout) as { filename: string }[])[0]?.filename ?? '');
  const project = join(dir, 'app');
  await run('mkdir', ['-p', project]);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module' }),
  );
  await run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], {
    cwd: project,
    timeout: 600_000,
    maxBuffer: 64 << 20,
  });
  bin = join(project, 'node_modules/.bin/execlayer');
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Packages under node_modules (scoped ones included) with their package.json. */
function installed(root: string): { name: string; pkg: { scripts?: Record<string, string> } }[] {
  const out: { name: string; pkg: { scripts?: Record<string, string> } }[] = [];
  const visit = (nm: string) => {
    if (!existsSync(nm)) return;
    for (const e of readdirSync(nm)) {
      if (e.startsWith('.')) continue;
      if (e.startsWith('@')) {
        for (const s of readdirSync(join(nm, e))) visit1(join(nm, e, s), `${e}/${s}`);
      } else visit1(join(nm, e), e);
    }
  };
  const visit1 = (p: string, name: string) => {
    const f = join(p, 'package.json');
    if (existsSync(f)) out.push({ name, pkg: JSON.parse(readFileSync(f, 'utf8')) });
    visit(join(p, 'node_modules'));
  };
  visit(join(root, 'node_modules'));
  return out;
}

test('the installed package holds runtime dependencies only and runs only the chosen install scripts', () => {
  const pkgs = installed(join(dir, 'app'));
  const names = new Set(pkgs.map((p) => p.name));
  assert.ok(names.has('execlayer'));
  for (const dev of ['tree-sitter-bash', 'typescript', 'tsx', '@modelcontextprotocol/server-filesystem']) {
    assert.equal(names.has(dev), false, `${dev} is a development dependency`);
  }
  const scripted = pkgs
    .filter((p) => ['preinstall', 'install', 'postinstall'].some((s) => p.pkg.scripts?.[s] !== undefined))
    .map((p) => p.name)
    .sort();
  assert.deepEqual(scripted, CHOSEN_INSTALL_SCRIPTS);
  const shipped = join(dir, 'app/node_modules/execlayer');
  assert.equal(existsSync(join(shipped, 'dist/testing')), false, 'test helpers are not shipped');
  assert.equal(
    existsSync(join(shipped, 'dist/limits/contract.js')),
    false,
    'contract suites are not shipped',
  );
  assert.equal(existsSync(join(shipped, 'grammars/tree-sitter-bash.wasm')), true);
  // The console's scripts and styles, where dist/enforce/console/handler.js looks for them.
  for (const f of ['console.js', 'verify.js', 'console.css']) {
    assert.equal(existsSync(join(shipped, 'assets/console', f)), true, f);
  }
  assert.equal(existsSync(join(shipped, 'dist/enforce/console/handler.js')), true);
});

test('the installed command: --help, validate, and the demo on its built-in upstream', async () => {
  const help = await run(bin, ['--help']);
  assert.match(help.stdout, /usage: execlayer/);
  const policy = join(dir, 'app/node_modules/execlayer/examples/demo/policy.yaml');
  await run(bin, ['validate', policy]);
  const demo = await run(bin, ['demo', '--json', '--dir', join(dir, 'demo')], { cwd: '/', timeout: 120_000 });
  const r = JSON.parse(demo.stdout) as { ok: boolean; steps: { got: string }[] };
  assert.equal(r.ok, true, demo.stdout);
  assert.equal(existsSync(join(dir, 'demo/kb/new.md')), false, 'the denied write never reached the upstream');
});

test('the installed SDK decides, and its types check', async () => {
  const app = join(dir, 'app');
  writeFileSync(
    join(app, 'policy.yaml'),
    'version: 1\nagents:\n  bot:\n    rules:\n      - { allow: db.query, when: { sql: { statements: [select], tables: [customers] } } }\n',
  );
  const code = `import { createExecLayer } from 'execlayer';
const layer = await createExecLayer({ policy: './policy.yaml', store: 'memory:' });
const read = await layer.authorize({ agent: 'bot', tool: 'db.query', args: { sql: 'SELECT * FROM customers' } });
const write = await layer.authorize({ agent: 'bot', tool: 'db.query', args: { sql: 'DELETE FROM customers' } });
console.log(JSON.stringify([read.effect, write.effect]));
await layer.close();
`;
  writeFileSync(join(app, 'main.mjs'), code);
  const { stdout } = await run(process.execPath, ['main.mjs'], { cwd: app });
  assert.deepEqual(JSON.parse(stdout), ['allow', 'deny']);
  writeFileSync(join(app, 'main.ts'), code);
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'nodenext',
        target: 'es2022',
        noEmit: true,
        skipLibCheck: false,
        // A Node.js project has @types/node; the package's types name Node's own (Buffer, streams).
        types: ['node'],
        typeRoots: [join(repo, 'node_modules/@types')],
      },
      files: ['main.ts'],
    }),
  );
  await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app });
});

test('the stdio gateway starts as a desktop client starts it: cwd /, only command, args and env', async () => {
  const work = join(dir, 'gw');
  await run('mkdir', ['-p', join(work, 'kb')]);
  writeFileSync(join(work, 'kb/a.md'), 'hello');
  writeFileSync(
    join(work, 'policy.yaml'),
    `version: 1\nagents:\n  desktop:\n    rules:\n      - { allow: files.read_text_file, when: { path: { under: [${work}/kb] } } }\n`,
  );
  const upstream = join(dir, 'app/node_modules/execlayer/dist/cli/demo-upstream.js');
  writeFileSync(
    join(work, 'execlayer.yaml'),
    `policy: ./policy.yaml\nstore: "memory:"\nupstreams:\n  files: { command: ${process.execPath}, args: [${upstream}, ${work}] }\n`,
  );
  const transport = new StdioClientTransport({
    command: bin,
    args: ['mcp', '--config', join(work, 'execlayer.yaml'), '--agent', 'desktop'],
    env: { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` },
    cwd: '/',
    stderr: 'pipe',
  });
  const client = new Client({ name: 'desktop', version: '1.0.0' });
  await client.connect(transport);
  try {
    const tools = (await client.listTools()).tools.map((t) => t.name);
    assert.deepEqual(tools, ['files.read_text_file']);
    const ok = await client.callTool({
      name: 'files.read_text_file',
      arguments: { path: `${work}/kb/a.md` },
    });
    assert.equal(ok.isError ?? false, false);
    const no = await client.callTool({
      name: 'files.write_file',
      arguments: { path: `${work}/kb/b.md`, content: 'x' },
    });
    assert.equal(no.isError, true);
    assert.equal(existsSync(join(work, 'kb/b.md')), false);
  } finally {
    await client.close();
  }
});

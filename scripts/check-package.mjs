#!/usr/bin/env node
// Checks the package a user installs: packs dist/ as it is (build first: `npm run check:package` does),
// then lints the tarball with publint (package.json fields, exports, files; warnings count as errors) and
// checks its types with Are the Types Wrong (every export's declarations resolve under Node 16+ ESM and
// bundlers; the package is ESM only, so CommonJS `require` is not a target). Exits non-zero on any
// problem. No network: attw is told not to fetch @types packages. Usage: node scripts/check-package.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repo = new URL('../', import.meta.url).pathname;
const bin = (name) => join(repo, 'node_modules/.bin', name);

/** Runs a command in the checkout; its output goes to ours. The exit status, or 1 when it did not run. */
function run(command, args) {
  const r = spawnSync(command, args, { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) console.error(`check-package: ${command} did not run: ${r.error.message}`);
  return r.status ?? 1;
}

const dir = mkdtempSync(join(tmpdir(), 'execlayer-check-package-'));
let failed = false;
try {
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: repo,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const filename = pack.status === 0 ? JSON.parse(pack.stdout)[0]?.filename : undefined;
  if (typeof filename === 'string') {
    const tarball = join(dir, filename);
    failed = run(bin('publint'), ['run', tarball, '--strict']) !== 0;
    const attw = [tarball, '--profile', 'esm-only', '--no-definitely-typed', '--no-emoji', '--no-color'];
    failed = run(bin('attw'), attw) !== 0 || failed;
  } else {
    console.error(`check-package: npm pack failed\n${pack.stderr}`);
    failed = true;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (failed) {
  console.error('check-package: the package has problems (above)');
  process.exit(1);
}

#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's own test runner (TypeScript through tsx).
// Node 20's `--test` has no glob support, so the files are listed here.
// Usage: node scripts/run-tests.mjs [--fast] [filter-substring...]
//   --fast  only the unit tests beside the code (src/**/*.test.ts) that need no PostgreSQL, Redis, child
//           process or network: a file is left out when its source names any of SLOW_MARKERS.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What puts a test file outside the fast tier: the service helpers (PostgreSQL, Redis, TCP proxies),
 * child processes, sockets and HTTP. Matching the source keeps the tier true as tests change, with no
 * list to maintain; a test that reaches these only through a helper must import the helper.
 */
const SLOW_MARKERS = [
  'testing/services',
  'testing/net',
  'testing/tcp-proxy',
  'node:child_process',
  'node:net',
  'node:http',
  'node:https',
  'fetch(',
];

function walk(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(p));
    else if (entry.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** True when `file` is a unit test of the fast tier (see SLOW_MARKERS). */
function isFast(file) {
  const text = readFileSync(file, 'utf8');
  return !SLOW_MARKERS.some((m) => text.includes(m));
}

const args = process.argv.slice(2);
const fast = args.includes('--fast');
const filters = args.filter((a) => a !== '--fast');
const files = (fast ? ['src'] : ['src', 'test'])
  .flatMap((d) => walk(d))
  .filter((f) => !fast || isFast(f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);

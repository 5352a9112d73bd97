import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../config/load.js';
import { DEFAULT_MAX_CONNECTIONS, defaultMaxConnections, frontDoorLimits } from './front-door.js';

const LIMITS = (soft: number) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft}                 ${soft}                 files
`;

test('the default connection cap is 1024, or half the open-file limit when that is lower', () => {
  const dir = mkdtempSync(join(tmpdir(), 'front-door-'));
  try {
    const file = join(dir, 'limits');
    writeFileSync(file, LIMITS(256));
    assert.equal(defaultMaxConnections(file), 128);
    writeFileSync(file, LIMITS(1024));
    assert.equal(defaultMaxConnections(file), 512);
    writeFileSync(file, LIMITS(1048576));
    assert.equal(defaultMaxConnections(file), DEFAULT_MAX_CONNECTIONS);
    assert.equal(defaultMaxConnections(join(dir, 'missing')), DEFAULT_MAX_CONNECTIONS);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function problems(http: Record<string, unknown>): string[] {
  try {
    parseConfig(JSON.stringify({ policy: './p.yaml', http }), '/tmp/x.yaml', {});
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

test('http limits: defaults, and contradictions are config errors naming both keys', () => {
  const cfg = parseConfig(JSON.stringify({ policy: './p.yaml' }), '/tmp/x.yaml', {});
  assert.deepEqual(
    {
      maxSessionsPerAgent: cfg.http.maxSessionsPerAgent,
      headersTimeoutMs: cfg.http.headersTimeoutMs,
      requestTimeoutMs: cfg.http.requestTimeoutMs,
      keepAliveTimeoutMs: cfg.http.keepAliveTimeoutMs,
      maxConnections: cfg.http.maxConnections,
    },
    {
      maxSessionsPerAgent: 32,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 65_000,
      maxConnections: undefined,
    },
  );
  assert.equal(frontDoorLimits({ ...cfg.http, maxConnections: 7 }).maxConnections, 7);
  assert.deepEqual(problems({ headersTimeoutMs: 40_000 }), [
    '/http/headersTimeoutMs: `http.headersTimeoutMs` (40000) must not exceed `http.requestTimeoutMs` (30000)',
  ]);
  assert.deepEqual(problems({ maxSessions: 4, maxSessionsPerAgent: 8 }), [
    '/http/maxSessionsPerAgent: `http.maxSessionsPerAgent` (8) must not exceed `http.maxSessions` (4)',
  ]);
  // Unset per-agent cap with a small global one is not an error: the smaller applies.
  assert.deepEqual(problems({ maxSessions: 4 }), []);
  assert.equal(problems({ maxConnections: 0 }).length, 1);
});

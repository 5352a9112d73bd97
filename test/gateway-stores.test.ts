// A gateway configured for replicas: audit trail, approvals and tool pins on PostgreSQL, limit counters and
// the stop switch on Redis — all named in the config file, opened by the same code `execlayer serve` runs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Redis } from 'ioredis';
import { openAuditLog } from '../src/audit/log.js';
import { parseConfig } from '../src/config/load.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { openLayer } from '../src/enforce/mcp/open-layer.js';
import { PostgresToolPinStore } from '../src/enforce/mcp/pins.js';
import { openAgentStateStore } from '../src/state/open.js';
import { REDIS_URL, redisAvailable, tempPostgresDatabase, uniqueName } from '../src/testing/services.js';
import { EVERYTHING, text } from './gateway-helpers.js';

test('a gateway on PostgreSQL and Redis from its config: records, pins, limits and the stop switch are shared', async (t) => {
  const pg = await tempPostgresDatabase(t);
  if (pg === undefined || !(await redisAvailable(t))) return;
  const agent = uniqueName('bot');
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-stores-'));
  const redis = new Redis(REDIS_URL);
  t.after(async () => {
    // Only this test's keys: its agent's limit counters and stop-switch entry.
    const keys = await redis.keys(`execlayer:lim:*${agent}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.hdel('execlayer:suspended', agent);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, 'policy.yaml'),
    `version: 1
agents:
  ${agent}: { roles: [r] }
roles:
  r:
    - id: echo
      allow: everything.echo
      limit: { calls: 2, per: hour }
`,
  );
  const config = parseConfig(
    `policy: policy.yaml
store:
  audit: ${pg}
  limits: ${REDIS_URL}
  state: ${REDIS_URL}
upstreams:
  everything: { command: ${process.execPath}, args: [${EVERYTHING}] }
`,
    join(dir, 'execlayer.yaml'),
    {},
  );
  assert.deepEqual(
    [config.store.approvals, config.store.pins, config.store.limits],
    [pg, pg, REDIS_URL],
    'approvals and pins follow the audit trail',
  );

  const opened = await openLayer(config);
  const gateway = new McpGateway(opened.layer, config, { log: () => {} });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await gateway.connect(b, { agent, transport: 'memory' });
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(a);
  try {
    const call = () => client.callTool({ name: 'everything.echo', arguments: { message: 'hi' } });
    assert.match(text(await call()), /hi/);
    assert.match(text(await call()), /hi/);
    const third = await call();
    assert.equal(third.isError, true);
    assert.match(text(third), /limit/i, 'the Redis counter stopped the third call');

    // Another process (here: another connection) presses the stop switch in Redis.
    const state = await openAgentStateStore(REDIS_URL);
    await state.suspend(agent, 'ops', 'incident');
    const stopped = await call();
    assert.equal(stopped.isError, true);
    assert.match(text(stopped), /suspended/);
    assert.deepEqual((await client.listTools()).tools, [], 'a suspended agent is shown no tool');
    await state.close();

    const pins = new PostgresToolPinStore(pg);
    assert.ok(
      (await pins.list()).some((p) => p.tool === 'everything.echo'),
      'the tool was pinned in PostgreSQL',
    );
    await pins.close();
  } finally {
    await client.close().catch(() => {});
    await gateway.close();
    await opened.close();
  }

  const log = await openAuditLog(pg, { keyPath: join(dir, 'execlayer-audit.key') });
  try {
    const decided = (await log.query({ agent, type: 'decision' })).map(
      (r) => r.event?.type === 'decision' && `${r.event.decision.effect}:${r.event.decision.code}`,
    );
    assert.deepEqual(decided, ['allow:allowed', 'allow:allowed', 'deny:limit_exceeded', 'deny:suspended']);
    assert.equal((await log.verify()).ok, true);
  } finally {
    await log.close();
  }
});

/**
 * Upstream faults: an upstream killed mid-call, one that hangs, one that writes garbage, one that cannot
 * start. Each yields a clean error to the agent, a recorded outcome, and a restart — never an unchecked call.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import {
  connectDirect,
  connectInProcess,
  EVERYTHING,
  FIXTURES,
  makeConfig,
  makeLayer,
  text,
} from './gateway-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gw-faults-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const policy = {
  version: 1,
  agents: { a: { owner: 'o@x.io', purpose: 'p', roles: ['r'] } },
  roles: {
    r: [
      {
        id: 'all',
        allow: ['everything.echo', 'everything.trigger-long-running-operation', 'odd.*', 'broken.*'],
      },
    ],
  },
};

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A gateway in front of odd-server in `hang` mode that records its calls (and cancellations) in a file,
 * listing its tools before the test goes on (a loaded machine starts it slowly).
 */
async function hangingUpstream(name: string, limits?: { callTimeoutMs: number }) {
  const calls = join(dir, `${name}.log`);
  appendFileSync(calls, '');
  const l = await makeLayer(policy);
  const c = await connectInProcess(
    l,
    makeConfig({
      upstreams: {
        odd: {
          command: process.execPath,
          args: [join(FIXTURES, 'odd-server.mjs'), 'hang'],
          env: { CALLS_FILE: calls },
        },
      },
      ...(limits ? { limits } : {}),
    }),
    'a',
  );
  for (let i = 0; i < 20; i++) {
    if ((await c.client.listTools()).tools.some((t) => t.name === 'odd.sleep')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return { l, c, calls };
}

test('an upstream killed mid-call yields a clean error, a failed outcome, and a restart', async () => {
  const l = await makeLayer(policy);
  const c = await connectInProcess(
    l,
    makeConfig({ upstreams: { everything: { command: process.execPath, args: [EVERYTHING] } } }),
    'a',
  );
  try {
    assert.equal(
      text(await c.client.callTool({ name: 'everything.echo', arguments: { message: 'up' } })),
      'Echo: up',
    );
    const up = c.session.upstreams.get('everything')!;
    const pid = up.pid!;
    assert.ok(pid > 0);
    const pending = c.client.callTool({
      name: 'everything.trigger-long-running-operation',
      arguments: { duration: 10, steps: 10 },
    });
    await new Promise((r) => setTimeout(r, 400));
    process.kill(pid, 'SIGKILL');
    const r = await pending;
    assert.equal(r.isError, true);
    assert.match(text(r), /upstream `everything`/);
    const outcome = l.recorder.events.findLast((e) => e.type === 'outcome');
    assert.ok(
      outcome?.type === 'outcome' &&
        outcome.ok === false &&
        outcome.tool === 'everything.trigger-long-running-operation',
    );
    // The gateway restarts it (back-off) and the next call works on a new process.
    const again = await until(async () => {
      const x = await c.client.callTool({ name: 'everything.echo', arguments: { message: 'back' } });
      return x.isError ? undefined : x;
    }, 10_000);
    assert.equal(text(again), 'Echo: back');
    assert.notEqual(up.pid, pid);
  } finally {
    await c.close();
  }
});

test('a hung upstream call ends with a timeout error; the upstream stays usable', async () => {
  const { c } = await hangingUpstream('hang', { callTimeoutMs: 2000 });
  try {
    const t0 = Date.now();
    const r = await c.client.callTool({ name: 'odd.sleep', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /did not answer `tools\/call` within 2000 ms/);
    assert.ok(Date.now() - t0 < 8000);
    assert.equal(
      text(await c.client.callTool({ name: 'odd.ok', arguments: { text: 'still here' } })),
      'ok: still here',
    );
  } finally {
    await c.close();
  }
});

test('an agent that cancels a call cancels it upstream, and the call is answered no more', async () => {
  const { l, c, calls } = await hangingUpstream('cancel');
  try {
    const ac = new AbortController();
    const pending = c.client.callTool({ name: 'odd.sleep', arguments: {} }, undefined, { signal: ac.signal });
    await until(async () => (readFileSync(calls, 'utf8').includes('sleep {}') ? true : undefined), 10_000);
    ac.abort('the user changed their mind');
    await assert.rejects(pending, /changed their mind/);
    // The cancellation reached the upstream's handler.
    await until(
      async () => (readFileSync(calls, 'utf8').includes('cancelled sleep') ? true : undefined),
      10_000,
    );
    // Its outcome is recorded as failed; the session goes on.
    await until(async () => {
      const o = l.recorder.events.findLast((e) => e.type === 'outcome');
      return o?.type === 'outcome' && o.tool === 'odd.sleep' && o.ok === false ? true : undefined;
    }, 10_000);
    assert.equal(
      text(await c.client.callTool({ name: 'odd.ok', arguments: { text: 'after' } })),
      'ok: after',
    );
  } finally {
    await c.close();
  }
});

test("an upstream's JSON-RPC error reaches the agent as the direct call sees it", async () => {
  const server = [join(FIXTURES, 'odd-server.mjs'), 'hang'];
  const l = await makeLayer(policy);
  const c = await connectInProcess(
    l,
    makeConfig({ upstreams: { odd: { command: process.execPath, args: server } } }),
    'a',
  );
  const direct = await connectDirect(process.execPath, server);
  try {
    const viaGateway = await c.client.callTool({ name: 'odd.fail', arguments: {} }).catch((e: unknown) => e);
    const straight = await direct.callTool({ name: 'fail', arguments: {} }).catch((e: unknown) => e);
    assert.ok(viaGateway instanceof McpError && straight instanceof McpError);
    assert.deepEqual(
      { code: viaGateway.code, message: viaGateway.message, data: viaGateway.data },
      { code: straight.code, message: straight.message, data: straight.data },
    );
    assert.equal(viaGateway.code, -32042);
    // The same when a progress token takes the call through the SDK's request handling instead of the direct lane.
    const withProgress = await c.client
      .callTool({ name: 'odd.fail', arguments: {} }, undefined, { onprogress: () => {} })
      .catch((e: unknown) => e);
    assert.ok(withProgress instanceof McpError);
    assert.equal(withProgress.message, straight.message);
    const outcome = l.recorder.events.findLast((e) => e.type === 'outcome');
    assert.ok(outcome?.type === 'outcome' && outcome.tool === 'odd.fail' && outcome.ok === false);
  } finally {
    await direct.close();
    await c.close();
  }
});

test('an upstream that writes garbage to stdout does not break the session', async () => {
  const l = await makeLayer(policy);
  const c = await connectInProcess(
    l,
    makeConfig({
      upstreams: { odd: { command: process.execPath, args: [join(FIXTURES, 'odd-server.mjs'), 'garbage'] } },
    }),
    'a',
  );
  try {
    for (let i = 0; i < 3; i++) {
      assert.equal(
        text(await c.client.callTool({ name: 'odd.ok', arguments: { text: String(i) } })),
        `ok: ${i}`,
      );
    }
  } finally {
    await c.close();
  }
});

test('an upstream that cannot start is reported; the other upstreams keep working', async () => {
  const l = await makeLayer(policy);
  const calls = join(dir, 'ok.log');
  appendFileSync(calls, '');
  const c = await connectInProcess(
    l,
    makeConfig({
      upstreams: {
        broken: { command: join(dir, 'no-such-binary') },
        odd: {
          command: process.execPath,
          args: [join(FIXTURES, 'odd-server.mjs'), 'hang'],
          env: { CALLS_FILE: calls },
        },
      },
    }),
    'a',
  );
  try {
    assert.deepEqual((await c.client.listTools()).tools.map((t) => t.name).sort(), [
      'odd.fail',
      'odd.ok',
      'odd.sleep',
    ]);
    // The broken upstream never listed its tools, so nothing can be forwarded to it; the refusal says why.
    const r = await c.client.callTool({ name: 'broken.anything', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /upstream `broken` is not available \(cannot start: .*ENOENT\); next start in/);
    assert.ok(c.logs.some((x) => /\[broken\] cannot start: .*; retrying in/.test(x)));
    assert.equal(readFileSync(calls, 'utf8'), '');
  } finally {
    await c.close();
  }
});

/**
 * Every method is decided, not only tools/call: resources, templates, prompts and completions carry
 * policy names `<upstream>.<method>`. Also progress pass-through and `ask` (return and block modes).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import {
  connectDirect,
  connectInProcess,
  EVERYTHING,
  type Layer,
  makeConfig,
  makeLayer,
  text,
} from './gateway-helpers.js';

const policy = {
  version: 1,
  agents: {
    full: { owner: 'o@x.io', purpose: 'p', roles: ['docs', 'tools'] },
    none: { owner: 'o@x.io', purpose: 'p', roles: ['tools'] },
  },
  roles: {
    docs: [
      {
        id: 'list',
        allow: [
          'everything.resources/list',
          'everything.resources/templates/list',
          'everything.prompts/list',
        ],
      },
      {
        id: 'read-static',
        allow: 'everything.resources/read',
        when: { cel: "args.uri.startsWith('demo://resource/static/')" },
      },
      { id: 'prompt', allow: 'everything.prompts/get', when: { cel: "args.name == 'simple-prompt'" } },
      { id: 'complete', allow: 'everything.completion/complete' },
    ],
    tools: [
      { id: 'slow', allow: 'everything.trigger-long-running-operation' },
      { id: 'sum-ask', ask: 'everything.get-sum' },
    ],
  },
};

const upstreams = { everything: { command: process.execPath, args: [EVERYTHING] } };
let l: Layer;
let full: Awaited<ReturnType<typeof connectInProcess>>;
let none: Awaited<ReturnType<typeof connectInProcess>>;
let direct: Client;

before(async () => {
  l = await makeLayer(policy);
  full = await connectInProcess(l, makeConfig({ upstreams }), 'full');
  none = await connectInProcess(l, makeConfig({ upstreams }), 'none');
  direct = await connectDirect(process.execPath, [EVERYTHING]);
});

after(async () => {
  await full?.close();
  await none?.close();
  await direct?.close();
});

async function protocolError(p: Promise<unknown>): Promise<McpError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  assert.ok(e instanceof McpError, `expected a protocol error, got ${String(e)}`);
  return e;
}

test('resources: list and read are decided; allowed results equal the direct ones', async () => {
  const listed = (await full.client.listResources()).resources;
  assert.deepEqual(listed, (await direct.listResources()).resources);
  assert.deepEqual((await none.client.listResources()).resources, []);
  const uri = listed.find((r) => r.uri.startsWith('demo://resource/static/'))!.uri;
  assert.deepEqual(await full.client.readResource({ uri }), await direct.readResource({ uri }));
  const denied = await protocolError(full.client.readResource({ uri: 'demo://resource/dynamic/text/1' }));
  assert.equal(denied.code, -32003);
  assert.match(denied.message, /denied by policy/);
  assert.equal((await protocolError(none.client.readResource({ uri }))).code, -32003);
  assert.deepEqual(
    (await full.client.listResourceTemplates()).resourceTemplates,
    (await direct.listResourceTemplates()).resourceTemplates,
  );
});

test('prompts: names are <upstream>.<prompt>; get is decided on name and arguments', async () => {
  const names = (await full.client.listPrompts()).prompts.map((p) => p.name);
  assert.deepEqual(
    names,
    (await direct.listPrompts()).prompts.map((p) => `everything.${p.name}`),
  );
  assert.deepEqual((await none.client.listPrompts()).prompts, []);
  assert.deepEqual(
    await full.client.getPrompt({ name: 'everything.simple-prompt' }),
    await direct.getPrompt({ name: 'simple-prompt' }),
  );
  assert.equal(
    (await protocolError(full.client.getPrompt({ name: 'everything.args-prompt', arguments: { city: 'x' } })))
      .code,
    -32003,
  );
  const ev = l.recorder.events.findLast(
    (e) => e.type === 'decision' && e.action.tool === 'everything.prompts/get',
  );
  assert.ok(ev?.type === 'decision');
  assert.deepEqual(ev.action.args, { name: 'args-prompt', arguments: { city: 'x' } });
});

test('completion/complete is decided and forwarded with the upstream prompt name', async () => {
  const viaGw = await full.client.complete({
    ref: { type: 'ref/prompt', name: 'everything.completable-prompt' },
    argument: { name: 'department', value: 'E' },
  });
  const d = await direct.complete({
    ref: { type: 'ref/prompt', name: 'completable-prompt' },
    argument: { name: 'department', value: 'E' },
  });
  assert.deepEqual(viaGw, d);
  const refused = await protocolError(
    none.client.complete({
      ref: { type: 'ref/prompt', name: 'everything.completable-prompt' },
      argument: { name: 'department', value: 'E' },
    }),
  );
  assert.equal(refused.code, -32003);
});

test('progress notifications of an allowed call reach the agent', async () => {
  const seen: number[] = [];
  const r = await none.client.callTool(
    { name: 'everything.trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: (p) => seen.push(p.progress) },
  );
  assert.notEqual(r.isError, true);
  // The upstream sometimes sends its last progress after the result (a direct client misses it too).
  assert.deepEqual(seen.slice(0, 2), [1, 2]);
});

test('ask in `return` mode: the agent gets the approval id at once; after approval the same call runs', async () => {
  const r = await none.client.callTool({ name: 'everything.get-sum', arguments: { a: 20, b: 22 } });
  assert.equal(r.isError, true);
  const m = /approval pending \(id ([^)]+)\).*execlayer approvals approve/.exec(text(r));
  assert.ok(m, text(r));
  await l.approvals.decide(m[1]!, { approve: true, approver: 'lead@example.com' }, Date.now());
  const ok = await none.client.callTool({ name: 'everything.get-sum', arguments: { a: 20, b: 22 } });
  assert.match(text(ok), /42/);
  // The grant was single-use and bound to those arguments.
  assert.equal(
    (await none.client.callTool({ name: 'everything.get-sum', arguments: { a: 20, b: 22 } })).isError,
    true,
  );
});

test('ask in `block` mode waits (with progress) for the approval, then re-authorizes and forwards', async () => {
  const blocking = await connectInProcess(
    l,
    makeConfig({ upstreams, approvals: { wait: 'block', maxWaitMs: 10_000 } }),
    'none',
  );
  try {
    const progress: string[] = [];
    const pending = blocking.client.callTool(
      { name: 'everything.get-sum', arguments: { a: 1, b: 2 } },
      undefined,
      {
        onprogress: (p) => progress.push(p.message ?? ''),
        timeout: 20_000,
      },
    );
    const id = await (async () => {
      for (let i = 0; i < 100; i++) {
        const p = (await l.approvals.list({ status: 'pending' })).find(
          (a) => a.tool === 'everything.get-sum' && JSON.stringify(a.args) === '{"a":1,"b":2}',
        );
        if (p) return p.id;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no pending approval');
    })();
    await new Promise((r) => setTimeout(r, 600));
    await l.approvals.decide(id, { approve: true, approver: 'lead@example.com' }, Date.now());
    const r = await pending;
    assert.match(text(r), /3/);
    assert.ok(
      progress.some((p) => p.includes(id)),
      `progress names the approval being waited for: ${JSON.stringify(progress)}`,
    );
  } finally {
    await blocking.close();
  }
});

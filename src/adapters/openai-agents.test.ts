import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, run, setTracingDisabled, tool, webSearchTool } from '@openai/agents';
import { assistantMessage, functionCall, modelResponder, ScriptedModel } from '@openai/agents/testing';
import { z } from 'zod';
import { createExecLayer, type ExecLayer } from '../runtime/exec-layer.js';
import type { Decision } from '../types.js';
import { AdapterError, protectTool, withExecLayer } from './openai-agents.js';

setTracingDisabled(true);

const policy = {
  version: 1,
  agents: { 'support-bot': { owner: 'support@acme.com', purpose: 'answer tickets', roles: ['support'] } },
  roles: {
    support: [
      {
        id: 'refunds',
        allow: 'payments.refund',
        when: { args: { amount: { type: 'number', min: 1, max: 100 } } },
      },
      { id: 'no-deletes', deny: 'payments.delete_order', reason: 'orders are never deleted by agents' },
    ],
  },
};

/** Tool outputs the model was sent, by call id, from the input of one recorded model call. */
function outputs(input: unknown): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of Array.isArray(input) ? input : []) {
    if (item?.type !== 'function_call_result') continue;
    const o = item.output;
    out.set(item.callId, typeof o === 'string' ? o : String(o?.text ?? JSON.stringify(o)));
  }
  return out;
}

describe('openai-agents adapter', () => {
  let layer: ExecLayer;
  before(async () => {
    layer = await createExecLayer({ policy, store: 'memory:' });
  });
  after(async () => {
    await layer.close();
  });

  function makeTools() {
    const ran: string[] = [];
    const refund = tool({
      name: 'refund',
      description: 'refund an order',
      parameters: z.object({ amount: z.number() }),
      execute: async ({ amount }) => {
        ran.push(`refund ${amount}`);
        return `refunded ${amount}`;
      },
    });
    const deleteOrder = tool({
      name: 'delete_order',
      description: 'delete an order',
      parameters: z.object({ id: z.string() }),
      execute: async ({ id }) => {
        ran.push(`delete ${id}`);
        return `deleted ${id}`;
      },
    });
    return { ran, refund, deleteOrder };
  }

  it('refuses denied calls without running them, tells the model why, and runs allowed calls', async () => {
    const { ran, refund, deleteOrder } = makeTools();
    const decisions: Decision[] = [];
    let seen = new Map<string, string>();
    const model = new ScriptedModel([
      [
        functionCall('delete_order', { id: 'o-1' }, { callId: 'c1' }),
        functionCall('refund', { amount: 1000 }, { callId: 'c2' }),
        functionCall('refund', { amount: 25 }, { callId: 'c3' }),
      ],
      modelResponder((call) => {
        seen = outputs(call.request.input);
        return [assistantMessage('done')];
      }),
    ]);
    const agent = new Agent({
      name: 'support',
      model,
      tools: withExecLayer(layer, [refund, deleteOrder], {
        agent: 'support-bot',
        prefix: 'payments.',
        onDecision: (d) => decisions.push(d),
      }),
    });
    const result = await run(agent, 'refund please');

    assert.equal(result.finalOutput, 'done');
    assert.deepEqual(ran, ['refund 25'], 'only the allowed call ran');
    assert.match(seen.get('c1') ?? '', /orders are never deleted by agents/);
    assert.match(seen.get('c1') ?? '', /no-deletes/);
    assert.match(seen.get('c2') ?? '', /denied by policy/);
    assert.match(seen.get('c2') ?? '', /amount/);
    assert.equal(seen.get('c3'), 'refunded 25');
    model.assertComplete();

    const verdicts = decisions.map((d) => `${d.effect}:${d.rule ?? '-'}`).sort();
    assert.deepEqual(verdicts, ['allow:refunds', 'deny:-', 'deny:no-deletes']);
  });

  it('keeps the tool definition the model sees and lets onRefused shape the output', async () => {
    const { ran, deleteOrder } = makeTools();
    const wrapped = protectTool(layer, deleteOrder, {
      agent: 'support-bot',
      prefix: 'payments.',
      onRefused: (_message, decision) => `REFUSED:${decision.code}`,
    });
    assert.equal(wrapped.name, deleteOrder.name);
    assert.deepEqual(wrapped.parameters, deleteOrder.parameters);
    assert.equal(wrapped.type, 'function');
    let seen = new Map<string, string>();
    const model = new ScriptedModel([
      [functionCall('delete_order', { id: 'o-2' }, { callId: 'd1' })],
      modelResponder((call) => {
        seen = outputs(call.request.input);
        return [assistantMessage('ok')];
      }),
    ]);
    await run(new Agent({ name: 'support', model, tools: [wrapped] }), 'delete it');
    assert.equal(seen.get('d1'), 'REFUSED:denied_by_rule');
    assert.deepEqual(ran, []);
  });

  it('refuses an unknown agent and a non-function tool it cannot protect', async () => {
    const { ran, refund } = makeTools();
    let seen = new Map<string, string>();
    const model = new ScriptedModel([
      [functionCall('refund', { amount: 5 }, { callId: 'u1' })],
      modelResponder((call) => {
        seen = outputs(call.request.input);
        return [assistantMessage('ok')];
      }),
    ]);
    await run(
      new Agent({
        name: 'x',
        model,
        tools: withExecLayer(layer, [refund], { agent: 'stranger', prefix: 'payments.' }),
      }),
      'go',
    );
    assert.deepEqual(ran, []);
    assert.match(seen.get('u1') ?? '', /denied by policy/);

    assert.throws(
      () => withExecLayer(layer, [webSearchTool()], { agent: 'support-bot' }),
      (e: unknown) => e instanceof AdapterError && e.code === 'unprotectable_tool',
    );
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, type BaseMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import type { ChatResult } from '@langchain/core/outputs';
import { DynamicTool, tool } from '@langchain/core/tools';
import { z } from 'zod';
import { createExecLayer, type ExecLayer } from '../runtime/exec-layer.js';
import type { Decision } from '../types.js';
import {
  AdapterError,
  LangChainAdapterError,
  protectTool,
  ToolCallRefusedError,
  withExecLayer,
} from './langchain.js';

const policy = {
  version: 1,
  agents: { 'support-bot': { owner: 'support@acme.com', purpose: 'answer tickets', roles: ['support'] } },
  roles: {
    support: [
      { id: 'lookup', allow: 'crm.lookup_customer', when: { args: { id: { type: 'string', glob: 'c-*' } } } },
      {
        id: 'no-deletes',
        deny: 'crm.delete_customer',
        reason: 'customer records are never deleted by agents',
      },
    ],
  },
};

/** A chat model that replies from a script and records every message list it was given. */
class ScriptedChatModel extends BaseChatModel {
  readonly seen: BaseMessage[][] = [];
  readonly #script: AIMessage[];
  constructor(script: AIMessage[]) {
    super({});
    this.#script = script;
  }
  _llmType(): string {
    return 'scripted';
  }
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    this.seen.push([...messages]);
    const message = this.#script[this.seen.length - 1] ?? new AIMessage('done');
    return { generations: [{ text: typeof message.content === 'string' ? message.content : '', message }] };
  }
}

type Invokable = { invoke(input: unknown): Promise<unknown> };

/** The usual LangChain agent loop: call the model, run each tool call, feed the ToolMessages back. */
async function agentLoop(model: ScriptedChatModel, tools: readonly { name: string }[]) {
  const messages: BaseMessage[] = [new HumanMessage('help')];
  for (let step = 0; step < 5; step++) {
    const reply = (await model.invoke(messages)) as AIMessage;
    messages.push(reply);
    if (!reply.tool_calls?.length) return messages;
    for (const call of reply.tool_calls) {
      const t = tools.find((x) => x.name === call.name);
      assert.ok(t, `the model called an unknown tool ${call.name}`);
      const out = await (t as unknown as Invokable).invoke({ ...call, type: 'tool_call' });
      assert.ok(out instanceof ToolMessage, 'a tool invoked with a tool call returns a ToolMessage');
      messages.push(out);
    }
  }
  return messages;
}

describe('langchain adapter', () => {
  let layer: ExecLayer;
  before(async () => {
    layer = await createExecLayer({ policy, store: 'memory:' });
  });
  after(async () => {
    await layer.close();
  });

  function makeTools() {
    const ran: string[] = [];
    const lookup = tool(
      async ({ id }) => {
        ran.push(`lookup ${id}`);
        return `customer ${id}: Ada`;
      },
      { name: 'lookup_customer', description: 'look a customer up', schema: z.object({ id: z.string() }) },
    );
    const remove = tool(
      async ({ id }) => {
        ran.push(`delete ${id}`);
        return `deleted ${id}`;
      },
      { name: 'delete_customer', description: 'delete a customer', schema: z.object({ id: z.string() }) },
    );
    return { ran, lookup, remove };
  }

  it('refuses denied calls inside an agent loop without running them and tells the model why', async () => {
    const { ran, lookup, remove } = makeTools();
    const decisions: Decision[] = [];
    const tools = withExecLayer(layer, [lookup, remove], {
      agent: 'support-bot',
      prefix: 'crm.',
      onDecision: (d) => decisions.push(d),
    });
    const model = new ScriptedChatModel([
      new AIMessage({
        content: '',
        tool_calls: [
          { id: 't1', name: 'delete_customer', args: { id: 'c-1' } },
          { id: 't2', name: 'lookup_customer', args: { id: 'admin' } },
          { id: 't3', name: 'lookup_customer', args: { id: 'c-7' } },
        ],
      }),
    ]);
    await agentLoop(model, tools);

    assert.deepEqual(ran, ['lookup c-7'], 'only the allowed call ran');
    const fed = model.seen.at(-1)?.filter((m): m is ToolMessage => m instanceof ToolMessage) ?? [];
    const byId = new Map(fed.map((m) => [m.tool_call_id, m]));
    assert.equal(byId.get('t1')?.status, 'error');
    assert.match(String(byId.get('t1')?.content), /customer records are never deleted by agents/);
    assert.equal(byId.get('t2')?.status, 'error');
    assert.match(String(byId.get('t2')?.content), /`id`/);
    assert.equal(byId.get('t3')?.status, 'success');
    assert.equal(byId.get('t3')?.content, 'customer c-7: Ada');
    assert.deepEqual(
      decisions.map((d) => [d.effect, d.rule]),
      [
        ['deny', 'no-deletes'],
        ['deny', null],
        ['allow', 'lookup'],
      ],
    );
  });

  it('refuses at set-up a tool whose calls it cannot intercept, with the one adapter error', () => {
    const opaque = { name: 'opaque', description: 'no _call to wrap' };
    assert.throws(
      () => protectTool(layer, opaque as never, { agent: 'support-bot' }),
      (e: unknown) =>
        e instanceof AdapterError &&
        e instanceof LangChainAdapterError &&
        e.code === 'unprotectable_tool' &&
        e.tool === 'opaque' &&
        /^tool `opaque` is not a langchain `StructuredTool`/.test(e.message),
    );
  });

  it('keeps the tool the model binds, and throws a typed error on a direct refused invoke', async () => {
    const { ran, lookup, remove } = makeTools();
    const wrapped = protectTool(layer, remove, { agent: 'support-bot', prefix: 'crm.' });
    assert.equal(wrapped.name, 'delete_customer');
    assert.equal(wrapped.description, remove.description);
    assert.equal(wrapped.schema, remove.schema);
    await assert.rejects(
      wrapped.invoke({ id: 'c-1' }),
      (e: unknown) =>
        e instanceof ToolCallRefusedError && e.code === 'denied' && e.decision.rule === 'no-deletes',
    );
    const allowed = protectTool(layer, lookup, { agent: 'support-bot', prefix: 'crm.' });
    assert.equal(await allowed.invoke({ id: 'c-9' }), 'customer c-9: Ada');
    assert.deepEqual(ran, ['lookup c-9']);
  });

  it('authorizes string-input tools as { input } and refuses unknown agents', async () => {
    let ran = 0;
    const echo = new DynamicTool({
      name: 'lookup_customer',
      description: 'string tool',
      func: async (input: string) => {
        ran++;
        return input;
      },
    });
    const denied = protectTool(layer, echo, { agent: 'support-bot', prefix: 'crm.' });
    // `{ input: 'c-1' }` has no `id`, so the lookup rule does not match: default deny.
    await assert.rejects(denied.invoke('c-1'), ToolCallRefusedError);
    const stranger = protectTool(layer, echo, { agent: 'stranger', prefix: 'crm.' });
    await assert.rejects(
      stranger.invoke('c-1'),
      (e: unknown) => e instanceof ToolCallRefusedError && e.decision.code === 'unknown_agent',
    );
    assert.equal(ran, 0);
  });
});

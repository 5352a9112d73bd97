import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LanguageModelV3Prompt } from '@ai-sdk/provider';
import { generateText, jsonSchema, stepCountIs, type ToolSet, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';
import { createExecLayer, type ExecLayer } from '../runtime/exec-layer.js';
import type { Decision } from '../types.js';
import { AdapterError, ToolCallRefusedError, withExecLayer } from './ai-sdk.js';

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
      { id: 'no-writes', deny: 'files.write_file', reason: 'support agents never write files' },
      { id: 'read-kb', allow: 'files.read_file' },
    ],
  },
};

type Prompt = LanguageModelV3Prompt;
const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
};

/** A model that calls the scripted tools one per step, then answers; it records every prompt it saw. */
function scriptedModel(calls: { tool: string; input: unknown }[]) {
  const prompts: Prompt[] = [];
  const model = new MockLanguageModelV3({
    doGenerate: async (options) => {
      prompts.push(options.prompt);
      const next = calls[prompts.length - 1];
      if (!next) {
        return {
          content: [{ type: 'text', text: 'done' }],
          finishReason: { unified: 'stop', raw: undefined },
          usage,
          warnings: [],
        };
      }
      return {
        content: [
          {
            type: 'tool-call',
            toolCallId: `call-${prompts.length}`,
            toolName: next.tool,
            input: JSON.stringify(next.input),
          },
        ],
        finishReason: { unified: 'tool-calls', raw: undefined },
        usage,
        warnings: [],
      };
    },
  });
  return { model, prompts };
}

/** The tool results the model was sent in its last prompt, by tool call id. */
function toolResults(prompt: Prompt | undefined): Map<string, { type: string; value: unknown }> {
  const out = new Map<string, { type: string; value: unknown }>();
  for (const message of prompt ?? []) {
    if (message.role !== 'tool') continue;
    for (const part of message.content) {
      if (part.type === 'tool-result')
        out.set(part.toolCallId, part.output as { type: string; value: unknown });
    }
  }
  return out;
}

describe('ai-sdk adapter', () => {
  let layer: ExecLayer;
  let dir: string;
  before(async () => {
    layer = await createExecLayer({ policy, store: 'memory:' });
    dir = mkdtempSync(join(tmpdir(), 'execlayer-ai-sdk-'));
  });
  after(async () => {
    await layer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function makeTools() {
    const state = {
      refunds: [] as number[],
      written: join(dir, `out-${Math.random().toString(36).slice(2)}.txt`),
    };
    const tools = {
      refund: tool({
        description: 'refund an order',
        inputSchema: z.object({ amount: z.number() }),
        execute: async ({ amount }) => {
          state.refunds.push(amount);
          return { refunded: amount };
        },
      }),
      write_file: tool({
        description: 'write a file',
        inputSchema: z.object({ content: z.string() }),
        execute: async ({ content }) => {
          writeFileSync(state.written, content);
          return 'written';
        },
      }),
    };
    return { state, tools };
  }

  it('refuses a denied call without running it, tells the model why, and runs an allowed call', async () => {
    const { state, tools: raw } = makeTools();
    const decisions: Decision[] = [];
    const tools = {
      ...withExecLayer(
        layer,
        { refund: raw.refund },
        { agent: 'support-bot', prefix: 'payments.', onDecision: (d) => decisions.push(d) },
      ),
      ...withExecLayer(
        layer,
        { write_file: raw.write_file },
        { agent: 'support-bot', prefix: 'files.', onDecision: (d) => decisions.push(d) },
      ),
    };
    const { model, prompts } = scriptedModel([
      { tool: 'write_file', input: { content: 'pwned' } },
      { tool: 'refund', input: { amount: 500 } },
      { tool: 'refund', input: { amount: 40 } },
    ]);
    const result = await generateText({ model, tools, prompt: 'help', stopWhen: stepCountIs(10) });

    assert.equal(result.text, 'done');
    assert.equal(existsSync(state.written), false, 'the denied write must not have run');
    assert.deepEqual(state.refunds, [40], 'only the allowed refund ran');

    const seen = toolResults(prompts.at(-1));
    const denied = seen.get('call-1');
    assert.equal(denied?.type, 'error-text');
    assert.match(String(denied?.value), /support agents never write files/);
    assert.match(String(denied?.value), /no-writes/);
    const overLimit = seen.get('call-2');
    assert.equal(overLimit?.type, 'error-text');
    assert.match(String(overLimit?.value), /amount/);
    assert.deepEqual(seen.get('call-3'), { type: 'json', value: { refunded: 40 } });

    assert.deepEqual(
      decisions.map((d) => [d.effect, d.rule]),
      [
        ['deny', 'no-writes'],
        ['deny', null],
        ['allow', 'refunds'],
      ],
    );
    const errors = result.steps.flatMap((s) => s.content).filter((p) => p.type === 'tool-error');
    assert.equal(errors.length, 2);
    for (const part of errors) {
      assert.ok(part.type === 'tool-error' && part.error instanceof ToolCallRefusedError);
      assert.equal(part.error.code, 'denied');
    }
  });

  it('refuses every call of an agent the policy does not know', async () => {
    const { state, tools: raw } = makeTools();
    const tools = withExecLayer(layer, raw, { agent: 'stranger', prefix: 'payments.' });
    const { model, prompts } = scriptedModel([{ tool: 'refund', input: { amount: 5 } }]);
    await generateText({ model, tools, prompt: 'help', stopWhen: stepCountIs(5) });
    assert.deepEqual(state.refunds, []);
    assert.match(String(toolResults(prompts.at(-1)).get('call-1')?.value), /denied by policy/);
  });

  it('authorizes streaming tools before the generator runs and passes their outputs through', async () => {
    let started = 0;
    const tools = withExecLayer(
      layer,
      {
        read_file: tool({
          inputSchema: jsonSchema<{ path: string }>({
            type: 'object',
            properties: { path: { type: 'string' } },
          }),
          async *execute({ path }) {
            started++;
            yield { status: 'reading', path };
            yield { status: 'done', text: 'kb article' };
          },
        }),
      },
      { agent: 'support-bot', prefix: 'files.' },
    );
    const { model, prompts } = scriptedModel([{ tool: 'read_file', input: { path: '/srv/kb/a.md' } }]);
    await generateText({ model, tools, prompt: 'read', stopWhen: stepCountIs(5) });
    assert.equal(started, 1);
    assert.deepEqual(toolResults(prompts.at(-1)).get('call-1'), {
      type: 'json',
      value: { status: 'done', text: 'kb article' },
    });

    const denied = withExecLayer(
      layer,
      { read_file: tools.read_file },
      { agent: 'stranger', prefix: 'files.' },
    );
    const second = scriptedModel([{ tool: 'read_file', input: { path: '/srv/kb/a.md' } }]);
    await generateText({ model: second.model, tools: denied, prompt: 'read', stopWhen: stepCountIs(5) });
    assert.equal(started, 1, 'the generator must not start for a refused call');
  });

  it('refuses at set-up a tool it cannot stand in front of, unless passed through deliberately', () => {
    const clientSide: ToolSet = {
      confirm: tool({ inputSchema: z.object({ ok: z.boolean() }) }) as ToolSet[string],
    };
    assert.throws(
      () => withExecLayer(layer, clientSide, { agent: 'support-bot' }),
      (e: unknown) => e instanceof AdapterError && e.code === 'unprotectable_tool' && e.tool === 'confirm',
    );
    const passed = withExecLayer(layer, clientSide, { agent: 'support-bot', passThrough: ['confirm'] });
    assert.equal(passed.confirm, clientSide.confirm);
  });
});

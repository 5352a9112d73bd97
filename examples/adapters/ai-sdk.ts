/**
 * The Vercel AI SDK with ExecLayer, no API key needed: a scripted model asks for three tool calls;
 * ExecLayer refuses two (by rule and by argument constraint) and allows one.
 *
 *   npx tsx examples/adapters/ai-sdk.ts
 */
import { fileURLToPath } from 'node:url';
import type { LanguageModelV3CallOptions } from '@ai-sdk/provider';
import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';
import { withExecLayer } from '../../src/adapters/ai-sdk.js';
import { createExecLayer } from '../../src/runtime/exec-layer.js';

// `memory:` keeps this example self-contained; by default the runtime records to sqlite:./execlayer.db.
const layer = await createExecLayer({
  policy: fileURLToPath(new URL('./policy.yaml', import.meta.url)),
  store: 'memory:',
});

// The application's tools, written as usual.
const crm = {
  delete_customer: tool({
    description: 'delete a customer record',
    inputSchema: z.object({ id: z.string() }),
    execute: async ({ id }) => {
      console.log(`  [tool ran] delete_customer ${id}`);
      return `deleted ${id}`;
    },
  }),
};
const payments = {
  refund: tool({
    description: 'refund a customer',
    inputSchema: z.object({ amount: z.number() }),
    execute: async ({ amount }) => {
      console.log(`  [tool ran] refund ${amount}`);
      return `refunded ${amount} EUR`;
    },
  }),
};

// One line per tool set: the agent id comes from the application, never from the model.
const onDecision = (d: { effect: string; rule: string | null }, a: { tool: string; args: unknown }) =>
  console.log(`decision: ${d.effect} ${a.tool} ${JSON.stringify(a.args)} (rule ${d.rule ?? 'none'})`);
const tools = {
  ...withExecLayer(layer, crm, { agent: 'support-bot', prefix: 'crm.', onDecision }),
  ...withExecLayer(layer, payments, { agent: 'support-bot', prefix: 'payments.', onDecision }),
};

// A scripted model: one tool call per step, then a final answer. It prints what it was told.
const script = [
  { toolName: 'delete_customer', input: { id: 'c-42' } },
  { toolName: 'refund', input: { amount: 500 } },
  { toolName: 'refund', input: { amount: 25 } },
];
const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
};
let step = 0;
const model = new MockLanguageModelV3({
  doGenerate: async ({ prompt }: LanguageModelV3CallOptions) => {
    const last = prompt.at(-1);
    if (last?.role === 'tool') {
      for (const part of last.content) {
        if (part.type !== 'tool-result') continue;
        const kind = part.output.type === 'error-text' ? 'DENIED ' : 'ALLOWED';
        console.log(
          `${kind} ${part.toolName}: the model read: ${JSON.stringify('value' in part.output ? part.output.value : part.output)}`,
        );
      }
    }
    const next = script[step++];
    if (!next)
      return {
        content: [{ type: 'text', text: 'done' }],
        finishReason: { unified: 'stop', raw: undefined },
        usage,
        warnings: [],
      };
    return {
      content: [
        {
          type: 'tool-call',
          toolCallId: `call-${step}`,
          toolName: next.toolName,
          input: JSON.stringify(next.input),
        },
      ],
      finishReason: { unified: 'tool-calls', raw: undefined },
      usage,
      warnings: [],
    };
  },
});

const result = await generateText({
  model,
  tools,
  prompt: 'Customer c-42 wants a refund.',
  stopWhen: stepCountIs(10),
});
console.log(`final answer: ${result.text}`);
await layer.close();

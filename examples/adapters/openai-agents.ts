/**
 * The OpenAI Agents SDK with ExecLayer, no API key needed: a scripted model asks for three tool calls;
 * ExecLayer refuses two (by rule and by argument constraint) and allows one.
 *
 *   npx tsx examples/adapters/openai-agents.ts
 */
import { fileURLToPath } from 'node:url';
import { Agent, run, setTracingDisabled, tool } from '@openai/agents';
import { assistantMessage, functionCall, modelResponder, ScriptedModel } from '@openai/agents/testing';
import { z } from 'zod';
import { withExecLayer } from '../../src/adapters/openai-agents.js';
import { createExecLayer } from '../../src/runtime/exec-layer.js';

setTracingDisabled(true);
// `memory:` keeps this example self-contained; by default the runtime records to sqlite:./execlayer.db.
const layer = await createExecLayer({
  policy: fileURLToPath(new URL('./policy.yaml', import.meta.url)),
  store: 'memory:',
});

// The application's tools, written as usual.
const deleteCustomer = tool({
  name: 'delete_customer',
  description: 'delete a customer record',
  parameters: z.object({ id: z.string() }),
  execute: async ({ id }) => {
    console.log(`  [tool ran] delete_customer ${id}`);
    return `deleted ${id}`;
  },
});
const refund = tool({
  name: 'refund',
  description: 'refund a customer',
  parameters: z.object({ amount: z.number() }),
  execute: async ({ amount }) => {
    console.log(`  [tool ran] refund ${amount}`);
    return `refunded ${amount} EUR`;
  },
});

const onDecision = (d: { effect: string; rule: string | null }, a: { tool: string; args: unknown }) =>
  console.log(`decision: ${d.effect} ${a.tool} ${JSON.stringify(a.args)} (rule ${d.rule ?? 'none'})`);

// A scripted model: one tool call per turn, then it prints what the tools told it and answers.
const model = new ScriptedModel([
  [functionCall('delete_customer', { id: 'c-42' }, { callId: 'call-1' })],
  [functionCall('refund', { amount: 500 }, { callId: 'call-2' })],
  [functionCall('refund', { amount: 25 }, { callId: 'call-3' })],
  modelResponder(({ request }) => {
    for (const item of Array.isArray(request.input) ? request.input : []) {
      if (item.type !== 'function_call_result') continue;
      const output =
        typeof item.output === 'string' ? item.output : 'text' in item.output ? item.output.text : '';
      const kind = output.startsWith('denied by policy') ? 'DENIED ' : 'ALLOWED';
      console.log(`${kind} ${item.name}: the model read: ${JSON.stringify(output)}`);
    }
    return [assistantMessage('done')];
  }),
]);

const agent = new Agent({
  name: 'support',
  model,
  // One line: the agent id comes from the application, never from the model.
  tools: [
    ...withExecLayer(layer, [deleteCustomer], { agent: 'support-bot', prefix: 'crm.', onDecision }),
    ...withExecLayer(layer, [refund], { agent: 'support-bot', prefix: 'payments.', onDecision }),
  ],
});
const result = await run(agent, 'Customer c-42 wants a refund.');
console.log(`final answer: ${result.finalOutput}`);
await layer.close();

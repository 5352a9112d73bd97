/**
 * LangChain.js with ExecLayer, no API key needed: a scripted chat model asks for three tool calls in
 * the usual agent loop; ExecLayer refuses two (by rule and by argument constraint) and allows one.
 *
 *   npx tsx examples/adapters/langchain.ts
 */
import { fileURLToPath } from 'node:url';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, type BaseMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import type { ChatResult } from '@langchain/core/outputs';
import { type StructuredToolInterface, tool } from '@langchain/core/tools';
import { z } from 'zod';
import { withExecLayer } from '../../src/adapters/langchain.js';
import { createExecLayer } from '../../src/runtime/exec-layer.js';

// `memory:` keeps this example self-contained; by default the runtime records to sqlite:./execlayer.db.
const layer = await createExecLayer({
  policy: fileURLToPath(new URL('./policy.yaml', import.meta.url)),
  store: 'memory:',
});

// The application's tools, written as usual.
const deleteCustomer = tool(
  async ({ id }) => {
    console.log(`  [tool ran] delete_customer ${id}`);
    return `deleted ${id}`;
  },
  { name: 'delete_customer', description: 'delete a customer record', schema: z.object({ id: z.string() }) },
);
const refund = tool(
  async ({ amount }) => {
    console.log(`  [tool ran] refund ${amount}`);
    return `refunded ${amount} EUR`;
  },
  { name: 'refund', description: 'refund a customer', schema: z.object({ amount: z.number() }) },
);

const onDecision = (d: { effect: string; rule: string | null }, a: { tool: string; args: unknown }) =>
  console.log(`decision: ${d.effect} ${a.tool} ${JSON.stringify(a.args)} (rule ${d.rule ?? 'none'})`);
// One line per tool group: the agent id comes from the application, never from the model.
const tools: StructuredToolInterface[] = [
  ...withExecLayer(layer, [deleteCustomer], { agent: 'support-bot', prefix: 'crm.', onDecision }),
  ...withExecLayer(layer, [refund], { agent: 'support-bot', prefix: 'payments.', onDecision }),
];

/** A chat model that replies from a script (a stand-in for a real provider). */
class ScriptedChatModel extends BaseChatModel {
  #turn = 0;
  readonly #script = [
    new AIMessage({
      content: '',
      tool_calls: [{ id: 'call-1', name: 'delete_customer', args: { id: 'c-42' } }],
    }),
    new AIMessage({ content: '', tool_calls: [{ id: 'call-2', name: 'refund', args: { amount: 500 } }] }),
    new AIMessage({ content: '', tool_calls: [{ id: 'call-3', name: 'refund', args: { amount: 25 } }] }),
  ];
  _llmType(): string {
    return 'scripted';
  }
  async _generate(): Promise<ChatResult> {
    const message = this.#script[this.#turn++] ?? new AIMessage('done');
    return { generations: [{ text: typeof message.content === 'string' ? message.content : '', message }] };
  }
}

// The usual agent loop: call the model, run each tool call, feed the ToolMessages back.
const model = new ScriptedChatModel({});
const messages: BaseMessage[] = [new HumanMessage('Customer c-42 wants a refund.')];
for (;;) {
  const reply = (await model.invoke(messages)) as AIMessage;
  messages.push(reply);
  if (!reply.tool_calls?.length) break;
  for (const call of reply.tool_calls) {
    const t = tools.find((x) => x.name === call.name);
    if (!t) throw new Error(`unknown tool ${call.name}`);
    const out = (await t.invoke({ ...call, type: 'tool_call' })) as ToolMessage;
    const kind = out instanceof ToolMessage && out.status === 'error' ? 'DENIED ' : 'ALLOWED';
    console.log(`${kind} ${call.name}: the model read: ${JSON.stringify(out.content)}`);
    messages.push(out);
  }
}
console.log(`final answer: ${messages.at(-1)?.content}`);
await layer.close();

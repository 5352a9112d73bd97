/**
 * ExecLayer for the OpenAI Agents SDK (`@openai/agents`): wraps function tools so every `invoke` is
 * authorized first, with exactly the decision the gateway would give.
 *
 * @example
 * ```ts
 * import { Agent, run, tool } from '@openai/agents';
 * import { createExecLayer } from 'execlayer';
 * import { withExecLayer } from 'execlayer/adapters/openai-agents';
 *
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const agent = new Agent({
 *   name: 'support',
 *   tools: withExecLayer(layer, [refund, lookupOrder], { agent: 'support-bot', prefix: 'payments.' }),
 * });
 * await run(agent, 'refund order 42');
 * ```
 *
 * A refused call does not run the tool: `invoke` returns the refusal reason as the tool output string
 * (the same channel the SDK's `errorFunction` uses), so the model reads why and the run continues.
 */
import type { FunctionTool, RunContext, Tool } from '@openai/agents';
import type { Decision } from '../types.js';
import {
  AdapterError,
  type AdapterLayer,
  type AdapterOptions,
  authorizeCall,
  runAllowed,
  toAction,
} from './shared.js';

export type { AdapterLayer, AdapterOptions } from './shared.js';

/** Options for {@link withExecLayer} and {@link protectTool}. */
export interface OpenAIAgentsAdapterOptions extends AdapterOptions {
  /**
   * The tool output for a refused call. Default: the refusal message. Tools with an output schema
   * should return a value that fits it.
   */
  onRefused?: (message: string, decision: Decision) => unknown;
  /**
   * Names of non-function tools (hosted, computer, shell, apply-patch) that the application
   * deliberately leaves unprotected. Any other non-function tool is an error.
   */
  passThrough?: string[];
}

export {
  AdapterError,
  /** @deprecated Use {@link AdapterError}. */
  AdapterError as OpenAIAgentsAdapterError,
  type AdapterErrorCode,
} from './shared.js';

// biome-ignore lint/suspicious/noExplicitAny: the SDK's own tool types are generic over any.
type AnyFunctionTool = FunctionTool<any, any, any>;

/**
 * Returns a function tool whose `invoke` authorizes `{ agent, tool: prefix + name, args }` (the call's
 * JSON arguments) before delegating to the original. Everything else about the tool is unchanged.
 */
export function protectTool<T extends AnyFunctionTool>(
  layer: AdapterLayer,
  tool: T,
  opts: OpenAIAgentsAdapterOptions,
): T {
  const invoke = tool.invoke.bind(tool) as AnyFunctionTool['invoke'];
  const protectedInvoke: AnyFunctionTool['invoke'] = async (
    runContext: RunContext<unknown>,
    input,
    details,
  ) => {
    const verdict = await authorizeCall(
      layer,
      toAction(opts, tool.name, parseInput(input)),
      opts,
      'sdk',
      details?.signal,
    );
    if (!verdict.allowed) {
      return (opts.onRefused ? opts.onRefused(verdict.message, verdict.decision) : verdict.message) as string;
    }
    // The same string the decision was made on is forwarded, so the tool parses what was checked.
    return runAllowed(layer, verdict.decision, () => invoke(runContext, input, details));
  };
  // Copy with descriptors so the SDK's symbol-keyed metadata on the tool survives.
  const descriptors = Object.getOwnPropertyDescriptors(tool);
  descriptors.invoke = { value: protectedInvoke, writable: true, enumerable: true, configurable: true };
  return Object.create(Object.getPrototypeOf(tool), descriptors) as T;
}

/**
 * Protects every function tool in `tools` (see {@link protectTool}). Throws
 * {@link AdapterError} for a non-function tool not listed in `passThrough`, because its calls
 * never pass through `invoke`.
 */
export function withExecLayer<T extends Tool<unknown>>(
  layer: AdapterLayer,
  tools: readonly T[],
  opts: OpenAIAgentsAdapterOptions,
): T[] {
  return tools.map((tool) => {
    if (tool.type === 'function') return protectTool(layer, tool as AnyFunctionTool, opts) as T;
    const name = 'name' in tool && typeof tool.name === 'string' ? tool.name : tool.type;
    if (opts.passThrough?.includes(name)) return tool;
    // INVARIANT: fail closed — a tool ExecLayer cannot stand in front of is refused at set-up.
    throw new AdapterError(
      'unprotectable_tool',
      `tool \`${name}\` (type \`${tool.type}\`) is not a function tool, so execlayer cannot authorize its calls; list it in \`passThrough\` to leave it unprotected deliberately`,
      name,
    );
  });
}

function parseInput(input: string): unknown {
  if (input.trim() === '') return {};
  try {
    return JSON.parse(input);
  } catch {
    // Authorized as raw text; the tool itself will reject the malformed JSON if it is allowed.
    return input;
  }
}

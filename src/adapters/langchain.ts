/**
 * ExecLayer for LangChain.js (`@langchain/core`): wraps structured tools so every call is authorized,
 * after schema validation and before the tool's function runs, with exactly the decision the gateway
 * would give.
 *
 * @example
 * ```ts
 * import { tool } from '@langchain/core/tools';
 * import { createExecLayer } from 'execlayer';
 * import { withExecLayer } from 'execlayer/adapters/langchain';
 *
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const tools = withExecLayer(layer, [readFile, writeFile], { agent: 'support-bot', prefix: 'files.' });
 * const model = chatModel.bindTools(tools);   // or createAgent({ model, tools })
 * ```
 *
 * A refused call does not run the tool. Invoked with a tool call (as agents and `ToolNode` do), the
 * tool returns a `ToolMessage` with `status: 'error'` whose content is the refusal reason, so the
 * model reads why and the loop continues. Invoked directly with plain arguments, it throws
 * {@link ToolCallRefusedError}.
 */
import { ToolMessage } from '@langchain/core/messages';
import type { StructuredToolInterface } from '@langchain/core/tools';
import type { Decision } from '../types.js';
import {
  AdapterError,
  type AdapterLayer,
  type AdapterOptions,
  authorizeCall,
  deliverResult,
  recordFailure,
  recordOutcome,
  ToolCallRefusedError,
  toAction,
} from './shared.js';

export type { AdapterLayer, AdapterOptions } from './shared.js';
export { ToolCallRefusedError } from './shared.js';

/** Options for {@link withExecLayer} and {@link protectTool}. */
export type LangChainAdapterOptions = AdapterOptions;

export {
  AdapterError,
  /** @deprecated Use {@link AdapterError}. */
  AdapterError as LangChainAdapterError,
  type AdapterErrorCode,
} from './shared.js';

/**
 * A LangChain tool: a `StructuredTool` (what `tool()` builds, `DynamicStructuredTool`) or a string-input
 * `Tool`/`DynamicTool`. Checked at wrap time.
 */
export type LangChainTool = Pick<StructuredToolInterface, 'name' | 'description'>;

type ToolCallConfig = { toolCall?: { id?: string } } | undefined;
type InnerCall = (arg: unknown, runManager: unknown, config: ToolCallConfig) => unknown;

/**
 * Returns a tool that behaves exactly like `tool` (same name, description, schema, callbacks) except
 * that each call is authorized as `{ agent, tool: prefix + name, args }`, where `args` is the
 * validated input the tool's function would receive.
 */
export function protectTool<T extends LangChainTool>(
  layer: AdapterLayer,
  tool: T,
  opts: LangChainAdapterOptions,
): T {
  const inner = (tool as unknown as { _call?: InnerCall })._call;
  if (typeof inner !== 'function') {
    // INVARIANT: fail closed — only tools whose execution we can intercept are accepted.
    throw new AdapterError(
      'unprotectable_tool',
      `tool \`${tool.name}\` is not a langchain \`StructuredTool\`, so execlayer cannot authorize its calls; build it with \`tool()\` from \`@langchain/core/tools\` or a \`StructuredTool\` subclass`,
      tool.name,
    );
  }
  // Inherit everything from the original; override only the step that runs the tool's function.
  const wrapped = Object.create(tool) as T & { _call: InnerCall };
  wrapped._call = async function (this: unknown, arg: unknown, runManager: unknown, config: ToolCallConfig) {
    const verdict = await authorizeCall(layer, toAction(opts, tool.name, arg), opts, 'sdk');
    if (!verdict.allowed) {
      const toolCallId = config?.toolCall?.id;
      if (toolCallId) {
        return new ToolMessage({
          status: 'error',
          content: verdict.message,
          tool_call_id: toolCallId,
          name: tool.name,
        });
      }
      throw new ToolCallRefusedError(verdict.message, verdict.decision);
    }
    const started = performance.now();
    let result: unknown;
    try {
      result = await inner.call(this, arg, runManager, config);
    } catch (error) {
      await recordFailure(layer, verdict.decision, error, started);
      throw error;
    }
    if (isAsyncGenerator(result)) {
      // The chunks reach the model as they come: the tool's declared label is taken before the first.
      if (layer.deliver) {
        const seen = await layer.deliver(verdict.decision, { resultDigest: '' });
        if (!seen.ok) {
          const error = new Error(seen.reason);
          await recordFailure(layer, verdict.decision, error, started);
          throw error;
        }
      }
      return trackGenerator(layer, verdict.decision, result, started);
    }
    const delivered = await deliverResult(layer, verdict.decision, result, started);
    await recordOutcome(layer, verdict.decision, {
      ok: true,
      result,
      durationMs: performance.now() - started,
    });
    return delivered;
  };
  return wrapped;
}

/** Protects each tool in `tools` (see {@link protectTool}). */
export function withExecLayer<T extends LangChainTool>(
  layer: AdapterLayer,
  tools: readonly T[],
  opts: LangChainAdapterOptions,
): T[] {
  return tools.map((tool) => protectTool(layer, tool, opts));
}

function isAsyncGenerator(value: unknown): value is AsyncGenerator<unknown, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AsyncGenerator).next === 'function' &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

// A streaming tool's work happens while LangChain drains the generator; record the outcome when it ends.
async function* trackGenerator(
  layer: AdapterLayer,
  decision: Decision,
  gen: AsyncGenerator<unknown, unknown>,
  started: number,
): AsyncGenerator<unknown, unknown> {
  try {
    const result = yield* gen;
    await recordOutcome(layer, decision, { ok: true, result, durationMs: performance.now() - started });
    return result;
  } catch (error) {
    await recordFailure(layer, decision, error, started);
    throw error;
  }
}

/**
 * ExecLayer for the Vercel AI SDK (`ai` v6): one call wraps a tool set so every `execute` is authorized
 * first, with exactly the decision the gateway would give.
 *
 * @example
 * ```ts
 * import { generateText, stepCountIs } from 'ai';
 * import { createExecLayer } from 'execlayer';
 * import { withExecLayer } from 'execlayer/adapters/ai-sdk';
 *
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const tools = withExecLayer(layer, { read_file, write_file }, { agent: 'support-bot', prefix: 'files.' });
 * const result = await generateText({ model, tools, prompt, stopWhen: stepCountIs(5) });
 * ```
 *
 * A refused call throws from `execute`; the AI SDK turns that into a `tool-error` part and sends the
 * model an `error-text` tool result whose text is the refusal reason. The run continues and the
 * model can choose another action. The underlying `execute` never runs.
 */
import type { ToolExecutionOptions, ToolSet } from 'ai';
import {
  AdapterError,
  type AdapterLayer,
  type AdapterOptions,
  authorizeCall,
  recordFailure,
  recordOutcome,
  refusalError,
  runAllowed,
  toAction,
} from './shared.js';

export type { AdapterLayer, AdapterOptions } from './shared.js';
export { ToolCallRefusedError } from './shared.js';

/** Options for {@link withExecLayer}. */
export interface AiSdkAdapterOptions extends AdapterOptions {
  /**
   * Names of tools without an `execute` function (client-side or provider-executed tools) that the
   * application deliberately leaves unprotected. Any other tool without `execute` is an error, because
   * ExecLayer could not stand between the model and it.
   */
  passThrough?: string[];
}

export {
  AdapterError,
  /** @deprecated Use {@link AdapterError}. */
  AdapterError as AiSdkAdapterError,
  type AdapterErrorCode,
} from './shared.js';

type AnyExecute = (input: unknown, options: ToolExecutionOptions) => unknown;

/**
 * Returns a copy of `tools` whose `execute` functions authorize `{ agent, tool: prefix + name, args }`
 * before running. Definitions (description, schemas, approval flags) are unchanged, so the model sees
 * the same tools. Throws {@link AdapterError} for a tool without `execute` not listed in
 * `passThrough`.
 */
export function withExecLayer<TOOLS extends ToolSet>(
  layer: AdapterLayer,
  tools: TOOLS,
  opts: AiSdkAdapterOptions,
): TOOLS {
  const wrapped: Record<string, unknown> = {};
  for (const [name, tool] of Object.entries(tools)) {
    const execute = tool.execute as AnyExecute | undefined;
    if (typeof execute !== 'function') {
      if (opts.passThrough?.includes(name)) {
        wrapped[name] = tool;
        continue;
      }
      // INVARIANT: fail closed — a tool ExecLayer cannot stand in front of is refused at set-up.
      throw new AdapterError(
        'unprotectable_tool',
        `tool \`${name}\` has no \`execute\` function, so execlayer cannot authorize its calls; give it an \`execute\`, or list it in \`passThrough\` to leave it unprotected deliberately`,
        name,
      );
    }
    wrapped[name] = { ...tool, execute: protect(layer, opts, name, execute) };
  }
  return wrapped as TOOLS;
}

function protect(
  layer: AdapterLayer,
  opts: AiSdkAdapterOptions,
  name: string,
  execute: AnyExecute,
): AnyExecute {
  if (Object.prototype.toString.call(execute) === '[object AsyncGeneratorFunction]') {
    // Streaming tools must hand the SDK an AsyncIterable synchronously, so authorize inside the generator.
    return async function* (input: unknown, options: ToolExecutionOptions) {
      const verdict = await authorizeCall(
        layer,
        toAction(opts, name, input),
        opts,
        'sdk',
        options.abortSignal,
      );
      if (!verdict.allowed) throw refusalError(verdict);
      const started = performance.now();
      let last: unknown;
      try {
        for await (const output of execute(input, options) as AsyncIterable<unknown>) {
          last = output;
          yield output;
        }
      } catch (error) {
        await recordFailure(layer, verdict.decision, error, started);
        throw error;
      }
      await recordOutcome(layer, verdict.decision, {
        ok: true,
        result: last,
        durationMs: performance.now() - started,
      });
    };
  }
  return async (input: unknown, options: ToolExecutionOptions) => {
    const verdict = await authorizeCall(layer, toAction(opts, name, input), opts, 'sdk', options.abortSignal);
    if (!verdict.allowed) throw refusalError(verdict);
    return runAllowed(layer, verdict.decision, async () => {
      const result = await execute(input, options);
      if (isAsyncIterable(result)) {
        // The SDK uses the last streamed value as the final output; keep that meaning.
        let last: unknown;
        for await (const output of result) last = output;
        return last;
      }
      return result;
    });
  };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

/**
 * The tool catalog: which upstream tools exist under which names, and which of them may serve. The tools
 * of each ready upstream connection are checked once (names, pins, audit events for new and changed
 * definitions) into a `Listing` tied to that connection's generation. A session's catalog merges the
 * listings of its ready connections and withholds names that collide; which entries an agent sees is the
 * policy's (`layer.visible`), asked by the session. Names route to upstreams here too.
 */
import { ErrorCode, McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayConfig } from '../../config/load.js';
import type { GatewayContext } from './context.js';
import { hashToolDefinition } from './pins.js';

/** Upstream tool names the gateway exposes (the SDK's tool-name rule). Anything else is hidden. */
const TOOL_NAME = /^[A-Za-z0-9._-]{1,128}$/;
/** Upstream prompt names the gateway exposes. */
export const PROMPT_NAME = /^[A-Za-z0-9._\-/]{1,128}$/;

/** Why a listed tool serves (`ok`) or is withheld. */
export type PinState = 'ok' | 'changed' | 'invalid_name' | 'ambiguous' | 'pin_error';

/** One listed tool of one upstream connection, as checked. */
export interface ToolEntry {
  /** The name the agent sees (`<upstream>.<tool>`, or the tool's own for the `bare` upstream). */
  exposed: string;
  /** The name the policy decides (`<upstream>.<tool>`). */
  policyName: string;
  upstream: string;
  tool: Tool;
  hash: string;
  state: PinState;
}

/**
 * The argument names a tool's `inputSchema` declares, when it declares a closed set: its `properties`,
 * unless it says other names are welcome (`additionalProperties: true` or a schema, `patternProperties`).
 * The gateway refuses any other argument (INVARIANT: the target receives only what it declared and the
 * policy checked — a server that also reads `Path` or `paths` never gets them unchecked).
 */
export function declaredArgs(tool: Tool): string[] | undefined {
  const schema = tool.inputSchema as {
    properties?: unknown;
    additionalProperties?: unknown;
    patternProperties?: unknown;
  };
  const props = schema.properties;
  if (props === null || typeof props !== 'object' || Array.isArray(props)) return undefined;
  const extra = schema.additionalProperties;
  if (
    extra === true ||
    (extra !== null && typeof extra === 'object') ||
    schema.patternProperties !== undefined
  )
    return undefined;
  return Object.keys(props);
}

/** The checked tools of one ready connection. */
export interface Listing {
  generation: number;
  entries: ToolEntry[];
}

/**
 * Checks the tools of a new connection of `upstream` (names and pins, audit events for new and changed
 * definitions) for `generation`. The connection serves nothing until this has returned.
 */
export async function checkTools(
  ctx: GatewayContext,
  upstream: string,
  tools: Tool[],
  generation: number,
): Promise<Listing> {
  const expose = ctx.config.upstreams[upstream]?.expose ?? 'prefixed';
  const entries: ToolEntry[] = [];
  const seenHere = new Set<string>();
  for (const tool of tools) {
    const policyName = `${upstream}.${tool.name}`;
    const exposed = expose === 'bare' ? tool.name : policyName;
    const hash = hashToolDefinition(tool);
    let state: PinState = 'ok';
    if (!TOOL_NAME.test(tool.name)) state = 'invalid_name';
    else if (seenHere.has(tool.name)) state = 'ambiguous';
    else state = await pinState(ctx, policyName, hash);
    seenHere.add(tool.name);
    entries.push({ exposed, policyName, upstream, tool, hash, state });
  }
  for (const e of entries) {
    if (e.state === 'changed')
      ctx.log(`[${upstream}] ${e.policyName}: tool definition differs from its pin; held back`);
  }
  return { generation, entries };
}

async function pinState(ctx: GatewayContext, policyName: string, hash: string): Promise<PinState> {
  const configured = ctx.config.pins[policyName];
  const recorder = ctx.layer.recorder;
  try {
    if (configured !== undefined) {
      if (configured === hash) return 'ok';
      await recorder.record({
        type: 'tool',
        status: 'changed',
        tool: policyName,
        hash,
        previousHash: configured,
      });
      return 'changed';
    }
    const r = await ctx.pins.check(policyName, hash);
    if (r.status === 'pinned') {
      await recorder.record({ type: 'tool', status: 'pinned', tool: policyName, hash });
      return 'ok';
    }
    if (r.status === 'match') return 'ok';
    if (r.firstSeen) {
      await recorder.record({
        type: 'tool',
        status: 'changed',
        tool: policyName,
        hash,
        previousHash: r.pin.hash,
      });
    }
    return 'changed';
  } catch (err) {
    // INVARIANT: fail closed — a tool whose pin cannot be checked or recorded is withheld.
    ctx.log(`pin check for \`${policyName}\` failed: ${(err as Error).message}`);
    return 'pin_error';
  }
}

/** Re-reads the pin of a held-back tool (an operator may have approved it meanwhile). */
export async function refreshPin(ctx: GatewayContext, e: ToolEntry): Promise<void> {
  if (e.state !== 'changed' || ctx.config.pins[e.policyName] !== undefined) return;
  try {
    const pin = await ctx.pins.get(e.policyName);
    if (pin?.hash === e.hash) e.state = 'ok';
  } catch {
    // stays held back
  }
}

/**
 * Exposed name → tool over `listings` (each the current one of a ready connection). Two tools exposed
 * under one name are both withheld (collision rule).
 */
export function mergeListings(listings: Listing[], log: (line: string) => void): Map<string, ToolEntry> {
  const byName = new Map<string, ToolEntry>();
  const ambiguous = new Set<string>();
  for (const listing of listings) {
    for (const e of listing.entries) {
      if (byName.has(e.exposed)) ambiguous.add(e.exposed);
      else byName.set(e.exposed, e);
    }
  }
  for (const name of ambiguous) {
    const e = byName.get(name);
    if (e) byName.set(name, { ...e, state: 'ambiguous' });
    log(`tool name \`${name}\` is exposed by more than one upstream tool; it is hidden`);
  }
  return byName;
}

/** The upstream and policy name a tool name belongs to (by prefix, else the `bare` upstream). */
export function routeTool(
  config: GatewayConfig,
  exposed: string,
): { upstream: string; policyName: string } | undefined {
  let bare: string | undefined;
  for (const [name, cfg] of Object.entries(config.upstreams)) {
    if (cfg.expose === 'bare') bare = name;
    else if (exposed.startsWith(`${name}.`) && exposed.length > name.length + 1)
      return { upstream: name, policyName: exposed };
  }
  return bare !== undefined ? { upstream: bare, policyName: `${bare}.${exposed}` } : undefined;
}

/** The upstream and upstream-side name of an exposed prompt name; an unknown one is invalid-params. */
export function routePrompt(config: GatewayConfig, exposed: string): { upstream: string; name: string } {
  for (const [name, cfg] of Object.entries(config.upstreams)) {
    if (cfg.expose === 'bare') continue;
    if (exposed.startsWith(`${name}.`)) return { upstream: name, name: exposed.slice(name.length + 1) };
  }
  const bare = Object.entries(config.upstreams).find(([, c]) => c.expose === 'bare');
  if (bare) return { upstream: bare[0], name: exposed };
  throw new McpError(
    ErrorCode.InvalidParams,
    `unknown prompt \`${exposed}\`: prompts are named <upstream>.<prompt>`,
  );
}

/** Why a withheld tool does not serve, for the agent. */
export function pinReason(e: ToolEntry): string {
  switch (e.state) {
    case 'changed':
      return `tool definition changed: \`${e.policyName}\` differs from its pinned definition and is held back; an operator can review and approve it with \`execlayer tools approve ${e.policyName}\``;
    case 'invalid_name':
      return `tool \`${e.policyName}\` has a name the gateway does not expose`;
    case 'ambiguous':
      return `tool name \`${e.exposed}\` is ambiguous (several upstream tools share it); it is withheld`;
    default:
      return `tool \`${e.policyName}\` could not be pin-checked; it is withheld`;
  }
}

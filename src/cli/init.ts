/**
 * `execlayer init`: put the gateway in front of the MCP servers an existing client uses. Reads the
 * client's config (Claude Desktop, Claude Code `.mcp.json`, Cursor, VS Code `.vscode/mcp.json`), writes
 * `execlayer.yaml` with those servers as upstreams (their secrets move here, owner-only), a starter
 * policy in shadow mode naming every tool found by connecting to each server, and the client config
 * rewritten to start the gateway instead (printed, or written with `--write` after a backup).
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { stringify } from 'yaml';
import { messageOf } from '../errors.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer init [--from <client config>] [--dir <dir>] [--agent <id>] [--write] [--force]
                      [--timeout <ms>] [--json]

Puts ExecLayer in front of the MCP servers your client already uses. Reads the client's config —
Claude Desktop (claude_desktop_config.json), Claude Code (.mcp.json), Cursor (~/.cursor/mcp.json) or
VS Code (.vscode/mcp.json) — and writes into <dir>:
  execlayer.yaml   the gateway config: those servers as upstreams, with their env and headers
                   (secrets live here, not in the policy; the file is created owner-only)
  policy.yaml      a starter policy in shadow mode that names every tool found by connecting to each
                   server: every call runs and is recorded with what the policy would have decided
Then it prints the client config rewritten to start the gateway instead, or writes it with --write
(after saving <config>.bak-<time>).

Next: use the agent for a while, then \`execlayer policy suggest --store sqlite:<dir>/execlayer.db\`
turns the recorded calls into a least-privilege policy; review it and set \`mode: enforce\`.

options:
  --from <file>    the client config (default: the first found of ./.mcp.json, ./.vscode/mcp.json,
                   ~/.cursor/mcp.json, Claude Desktop's config)
  --dir <dir>      where to write execlayer.yaml and policy.yaml (default: the current directory)
  --agent <id>     the agent id the gateway gives this client (default desktop)
  --write          write the rewritten client config (after a backup) instead of printing it
  --force          overwrite an existing execlayer.yaml / policy.yaml
  --timeout <ms>   how long to wait for each server to list its tools (default 15000)
  --json           a summary as JSON
  -h, --help       this help

exit codes: 0 done, 1 a server could not be reached (files written; its tools are not named),
            2 usage error, 3 no client config found or files could not be written
`;

/** One server as the client config describes it. */
interface ClientServer {
  name: string;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  url?: string;
  headers?: Record<string, string>;
}

type Format = 'mcpServers' | 'servers';

interface ClientConfig {
  file: string;
  format: Format;
  raw: Record<string, unknown>;
  servers: ClientServer[];
}

/** Where clients keep their config, in the order `init` looks. */
function candidates(cwd: string): string[] {
  const home = homedir();
  return [
    join(cwd, '.mcp.json'),
    join(cwd, '.vscode/mcp.json'),
    join(home, '.cursor/mcp.json'),
    join(home, '.config/Claude/claude_desktop_config.json'),
    join(home, 'Library/Application Support/Claude/claude_desktop_config.json'),
    join(process.env.APPDATA ?? join(home, 'AppData/Roaming'), 'Claude/claude_desktop_config.json'),
  ];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function stringMap(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string'))
    throw new UsageError(`${where} must map names to strings`);
  return v as Record<string, string>;
}

/** Reads a client config: `mcpServers` (Claude, Cursor) or `servers` (VS Code). */
export function readClientConfig(file: string): ClientConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`${file}: not a JSON client config (${(e as Error).message})`);
  }
  if (!isObject(raw)) throw new UsageError(`${file}: not a JSON object`);
  const format: Format | undefined = isObject(raw.mcpServers)
    ? 'mcpServers'
    : isObject(raw.servers)
      ? 'servers'
      : undefined;
  if (format === undefined) throw new UsageError(`${file}: no \`mcpServers\` or \`servers\` map`);
  const servers: ClientServer[] = [];
  for (const [name, s] of Object.entries(raw[format] as Record<string, unknown>)) {
    const where = `${file}: server \`${name}\``;
    if (!isObject(s)) throw new UsageError(`${where} is not an object`);
    const server: ClientServer = { name };
    if (typeof s.command === 'string') {
      server.command = s.command;
      if (s.args !== undefined) {
        if (!Array.isArray(s.args) || !s.args.every((a) => typeof a === 'string'))
          throw new UsageError(`${where}: \`args\` must be a list of strings`);
        server.args = s.args as string[];
      }
      const env = stringMap(s.env, `${where}: \`env\``);
      if (env) server.env = env;
      if (typeof s.cwd === 'string') server.cwd = s.cwd;
    } else if (typeof s.url === 'string') {
      server.url = s.url;
      const headers = stringMap(s.headers, `${where}: \`headers\``);
      if (headers) server.headers = headers;
    } else throw new UsageError(`${where} has neither \`command\` nor \`url\``);
    servers.push(server);
  }
  return { file, format, raw, servers };
}

/** An upstream name the gateway accepts (`[a-z][a-z0-9_-]*`), unique among `taken`. */
export function upstreamName(name: string, taken: ReadonlySet<string>): string {
  let n = name
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, 56);
  if (n === '') n = 'server';
  let unique = n;
  for (let i = 2; taken.has(unique); i++) unique = `${n}-${i}`;
  return unique;
}

/** The gateway config text escapes `$` (it expands `${VAR}`), so values copied from a client keep their meaning. */
const literal = (s: string) => s.replaceAll('$', '$$$$');
const literalMap = (m: Record<string, string>) =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, literal(v)]));

interface Upstream {
  name: string;
  from: ClientServer;
  tools: { name: string; description: string }[];
  error?: string;
}

/** Connects to one server as the client would and lists its tools. */
async function listTools(
  s: ClientServer,
  timeoutMs: number,
): Promise<{ name: string; description: string }[]> {
  const client = new Client({ name: 'execlayer-init', version: '1.0.0' });
  const transport =
    s.command !== undefined
      ? new StdioClientTransport({
          command: s.command,
          args: s.args ?? [],
          ...(s.env ? { env: { ...(process.env as Record<string, string>), ...s.env } } : {}),
          ...(s.cwd ? { cwd: s.cwd } : {}),
          stderr: 'ignore',
        })
      : new StreamableHTTPClientTransport(new URL(s.url as string), {
          requestInit: { headers: s.headers ?? {} },
        });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no tool list within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.connect(transport), deadline]);
    const tools: { name: string; description: string }[] = [];
    let cursor: string | undefined;
    do {
      const page = await Promise.race([client.listTools(cursor ? { cursor } : {}), deadline]);
      for (const t of page.tools) tools.push({ name: t.name, description: t.description ?? '' });
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  } finally {
    clearTimeout(timer);
    await client.close().catch(() => {});
  }
}

function gatewayConfig(agent: string, upstreams: Upstream[]): string {
  const ups: Record<string, unknown> = {};
  for (const u of upstreams) {
    const s = u.from;
    ups[u.name] =
      s.command !== undefined
        ? {
            command: literal(s.command),
            args: (s.args ?? []).map(literal),
            ...(s.env ? { env: literalMap(s.env) } : {}),
            ...(s.cwd ? { cwd: literal(s.cwd) } : {}),
          }
        : { url: literal(s.url as string), ...(s.headers ? { headers: literalMap(s.headers) } : {}) };
  }
  const body = stringify({ policy: './policy.yaml', store: 'sqlite:./execlayer.db', agent, upstreams: ups });
  return `# yaml-language-server: $schema=https://execlayer.dev/schema/execlayer-config.schema.json
# Written by \`execlayer init\`. The upstreams' env and headers (secrets) live here: keep this file
# owner-only and out of version control. \`\${VAR}\` expands from the gateway's environment; \`$$\` is a $.
${body}`;
}

function starterPolicy(agent: string, upstreams: Upstream[], source: string): string {
  const lines = [
    '# yaml-language-server: $schema=https://execlayer.dev/schema/policy.schema.json',
    `# Written by \`execlayer init\` from ${source}. Shadow mode: every call runs and is recorded with what`,
    '# this policy would have decided. After a while, `execlayer policy suggest` writes a least-privilege',
    '# policy from what the agent really did; review it, then set `mode: enforce`.',
    'version: 1',
    'mode: shadow',
    'agents:',
    `  ${JSON.stringify(agent)}:`,
    '    rules:',
  ];
  for (const u of upstreams) {
    if (u.error !== undefined) {
      lines.push(`      # ${u.name}: tools could not be listed (${u.error.replace(/\s+/g, ' ')})`);
      lines.push(
        `      - { id: ${JSON.stringify(`use-${u.name}`)}, allow: ${JSON.stringify(`${u.name}.*`)} }`,
      );
      continue;
    }
    for (const t of u.tools) {
      const tool = `${u.name}.${t.name}`;
      const about = t.description.split('\n')[0]?.slice(0, 100) ?? '';
      if (about) lines.push(`      # ${about.replace(/[^\x20-\x7e]/g, ' ')}`);
      lines.push(`      - { id: ${JSON.stringify(`use-${tool}`)}, allow: ${JSON.stringify(tool)} }`);
    }
  }
  if (upstreams.every((u) => u.error === undefined && u.tools.length === 0)) lines.push('      []');
  return `${lines.join('\n')}\n`;
}

/** The client config with its servers replaced by the gateway (other settings kept). */
function rewritten(c: ClientConfig, configPath: string, agent: string): Record<string, unknown> {
  // The absolute node binary and script: desktop clients start servers from `/` with a bare PATH.
  const script = resolve(process.argv[1] ?? 'execlayer');
  const entry: Record<string, unknown> = {
    command: process.execPath,
    args: [script, 'mcp', '--config', configPath, '--agent', agent],
  };
  if (c.format === 'servers') entry.type = 'stdio';
  return { ...c.raw, [c.format]: { execlayer: entry } };
}

export async function initCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values } = flags(
      argv,
      {
        from: { type: 'string' },
        dir: { type: 'string' },
        agent: { type: 'string' },
        write: { type: 'boolean' },
        force: { type: 'boolean' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      out(HELP);
      return EXIT.ok;
    }
    const agent = values.agent ?? 'desktop';
    if (!/^[A-Za-z0-9_.@:-]{1,128}$/.test(agent))
      throw new UsageError(`--agent \`${agent}\` is not an agent id`);
    const timeoutMs = values.timeout === undefined ? 15_000 : Number(values.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000)
      throw new UsageError('--timeout must be a whole number of milliseconds from 100 to 600000');
    const from = values.from ?? candidates(process.cwd()).find((f) => existsSync(f));
    if (from === undefined) {
      process.stderr.write(
        `error: no MCP client config found (looked at ${candidates(process.cwd()).join(', ')}); name one with --from\n`,
      );
      return EXIT.error;
    }
    const client = readClientConfig(resolve(from));
    const dir = resolve(values.dir ?? '.');
    const configPath = join(dir, 'execlayer.yaml');
    const policyPath = join(dir, 'policy.yaml');
    for (const f of [configPath, policyPath]) {
      if (existsSync(f) && !values.force) throw new UsageError(`${f} exists; use --force to overwrite it`);
    }

    const taken = new Set<string>();
    const upstreams: Upstream[] = [];
    for (const s of client.servers) {
      // A server that already is the gateway is not fronted again.
      if (
        s.args?.includes('mcp') &&
        (s.command?.includes('execlayer') || s.args.some((a) => a.includes('execlayer')))
      )
        continue;
      const name = upstreamName(s.name, taken);
      taken.add(name);
      if (!values.json) process.stderr.write(`connecting to ${s.name} …\n`);
      try {
        upstreams.push({ name, from: s, tools: await listTools(s, timeoutMs) });
      } catch (e) {
        upstreams.push({ name, from: s, tools: [], error: messageOf(e) });
      }
    }

    mkdirSync(dir, { recursive: true });
    // INVARIANT: the file with the upstreams' secrets is owner-only from its first byte.
    writeFileSync(configPath, gatewayConfig(agent, upstreams), { mode: 0o600 });
    chmodSync(configPath, 0o600);
    writeFileSync(policyPath, starterPolicy(agent, upstreams, client.file));
    const next = rewritten(client, configPath, agent);
    let backup: string | undefined;
    if (values.write) {
      backup = `${client.file}.bak-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      copyFileSync(client.file, backup);
      writeFileSync(client.file, `${JSON.stringify(next, null, 2)}\n`);
    }
    const failed = upstreams.filter((u) => u.error !== undefined);
    if (values.json) {
      printJson({
        ok: failed.length === 0,
        client: client.file,
        config: configPath,
        policy: policyPath,
        upstreams: upstreams.map((u) => ({
          name: u.name,
          from: u.from.name,
          tools: u.tools.map((t) => t.name),
          ...(u.error ? { error: u.error } : {}),
        })),
        ...(backup ? { backup, written: client.file } : { clientConfig: next }),
      });
    } else {
      for (const u of upstreams) {
        out(u.error ? `✗ ${u.name}: ${u.error}` : `✓ ${u.name}: ${u.tools.length} tools`);
      }
      out(`\nwrote ${configPath} (owner-only: it holds the servers' env and headers)`);
      out(`wrote ${policyPath} (shadow mode)`);
      if (backup) out(`rewrote ${client.file} to start the gateway (backup: ${backup})`);
      else out(`\nput this in ${client.file} (or run again with --write):\n${JSON.stringify(next, null, 2)}`);
      out(
        `\nnext: use the agent, then run\n  execlayer policy suggest --store sqlite:${join(dir, 'execlayer.db')} --out ${join(dirname(policyPath), 'suggested.yaml')}`,
      );
    }
    return failed.length > 0 ? EXIT.fail : EXIT.ok;
  });
}

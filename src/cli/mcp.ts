/**
 * `execlayer mcp`: the stdio front door of the MCP gateway — a drop-in `mcpServers` entry for Claude
 * Desktop, Claude Code or Cursor. Also exports the helpers the other gateway commands share.
 */
import { ConfigError, type GatewayConfig, loadConfigFile } from '../config/load.js';
import { McpGateway } from '../enforce/mcp/gateway.js';
import { openLayer } from '../enforce/mcp/open-layer.js';
import { type ExecLayer, formatRuntimeEvent, type RuntimeEvent } from '../runtime/exec-layer.js';
import { EXIT, flags, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer mcp [--config execlayer.yaml] [--agent <id>]

Serves MCP over stdio (stdin/stdout). Connects to the upstream MCP servers named in the config and
exposes their tools as <upstream>.<tool>; every list, call, read and prompt is decided by the policy.
Diagnostics go to stderr; stdout carries only the protocol.

options:
  -c, --config <file>   gateway configuration (default ./execlayer.yaml)
  -a, --agent <id>      agent id of this session (overrides \`agent:\` in the config); the id comes from
                        the process that launches the gateway, never from the client
  -h, --help            show this help

The policy file is reloaded when its content changes (atomic replaces and symlink swaps included; only
content unchanged for 250 ms that validates whole is loaded) and on SIGHUP; a broken policy never
replaces the one in force. Each reload is logged with the policy hashes and recorded in the audit trail.

Claude Desktop / Claude Code / Cursor (mcpServers):
  { "mcpServers": { "execlayer": { "command": "npx",
      "args": ["execlayer", "mcp", "--config", "/abs/path/execlayer.yaml", "--agent", "desktop"] } } }

exit codes: 0 stopped cleanly, 1 invalid config or policy, 2 usage error, 3 could not start (store, files)
`;

/** Loads `--config` (default `./execlayer.yaml`); prints problems and returns an exit code on failure. */
export function loadConfigOrReport(path: string | undefined, json = false): GatewayConfig | number {
  try {
    return loadConfigFile(path ?? 'execlayer.yaml');
  } catch (e) {
    if (e instanceof ConfigError) {
      if (json) process.stdout.write(`${JSON.stringify({ error: e.code, problems: e.problems }, null, 2)}\n`);
      for (const p of e.problems)
        process.stderr.write(`${p.file}:${p.line}:${p.column}: error: ${p.message}\n`);
      return e.code === 'config_unreadable' ? EXIT.error : EXIT.fail;
    }
    throw e;
  }
}

/** Prints a policy or store start-up failure; returns the exit code. */
export function reportStartFailure(e: unknown): number {
  const err = e as { code?: string; problems?: unknown[]; message?: string };
  if (err?.code === 'policy_invalid' && Array.isArray(err.problems)) {
    for (const p of err.problems) process.stderr.write(`${String(p)}\n`);
    process.stderr.write('error: the policy is invalid; the gateway did not start\n');
    return EXIT.fail;
  }
  process.stderr.write(`error: cannot start: ${err?.message ?? String(e)}\n`);
  return EXIT.error;
}

/** Writes a runtime event (a policy reload, a failed record) to stderr as one line. */
export function logRuntimeEvent(e: RuntimeEvent): void {
  process.stderr.write(`execlayer: ${formatRuntimeEvent(e)}\n`);
}

/**
 * Reloads the policy on each SIGHUP (the outcome is logged and recorded by the runtime) until the returned
 * function is called. Listening also keeps SIGHUP from ending the process.
 */
export function reloadOnSighup(layer: ExecLayer): () => void {
  const onHup = () => void layer.reload({ trigger: 'signal' });
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

/** Resolves when the process is asked to stop (SIGINT/SIGTERM) or `also` settles. */
export function untilStopped(also?: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    if (also) void also.then(done, done);
  });
}

/** Runs `execlayer mcp`; resolves with the exit code when the client disconnects or on SIGINT/SIGTERM. */
export async function mcpCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values } = flags(
      argv,
      { config: { type: 'string', short: 'c' }, agent: { type: 'string', short: 'a' } },
      false,
    );
    if (values.help) {
      process.stdout.write(HELP);
      return EXIT.ok;
    }
    const config = loadConfigOrReport(values.config);
    if (typeof config === 'number') return config;
    const agent = values.agent ?? config.agent;
    if (!agent) throw new UsageError('no agent id: pass `--agent <id>` or set `agent:` in the config');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/.test(agent))
      throw new UsageError(`invalid agent id \`${agent}\``);

    let opened: Awaited<ReturnType<typeof openLayer>>;
    try {
      opened = await openLayer(config, { watch: true, onEvent: logRuntimeEvent });
    } catch (e) {
      return reportStartFailure(e);
    }
    const gateway = new McpGateway(opened.layer, config);
    const stopReloading = reloadOnSighup(opened.layer);
    try {
      const session = await gateway.serveStdio(process.stdin, process.stdout, agent);
      const closed = new Promise<void>((resolve) => {
        const prev = session.server.onclose;
        session.server.onclose = () => {
          prev?.();
          resolve();
        };
      });
      await untilStopped(closed);
    } finally {
      stopReloading();
      await gateway.close();
      await opened.close();
    }
    return EXIT.ok;
  });
}

/**
 * `execlayer serve`: the Streamable HTTP front door of the MCP gateway at `/mcp`, with the HTTP
 * decision API (AuthZEN and native) and the operator API (approvals, stop switch) mounted on the same
 * server and the same authentication.
 */
import type { GatewayConfig } from '../config/load.js';
import { createAdminApiHandler } from '../enforce/admin/index.js';
import { createAuthenticator } from '../enforce/auth.js';
import { openFileLimit } from '../enforce/front-door.js';
import { createDecisionApiHandler } from '../enforce/http/index.js';
import { McpGateway } from '../enforce/mcp/gateway.js';
import { type GatewayHttpServer, type HttpHandler, startGatewayHttp } from '../enforce/mcp/http.js';
import { type OpenedLayer, openLayer } from '../enforce/mcp/open-layer.js';
import { TlsError } from '../enforce/tls.js';
import type { RuntimeEvent } from '../runtime/exec-layer.js';
import {
  loadConfigOrReport,
  logRuntimeEvent,
  reloadOnSighup,
  reportStartFailure,
  untilStopped,
} from './mcp.js';
import { EXIT, flags, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer serve [--config execlayer.yaml] [--host <addr>] [--port <n>] [--json]

Serves the MCP gateway over Streamable HTTP at /mcp, the decision API (/v1/decide, /v1/outcome,
AuthZEN; described at /openapi.json) and the operator API (/v1/approvals, /v1/agents, /v1/stop,
/v1/resume-all, /v1/policy/reload, /v1/upstreams) on the same port. Each request is authenticated
(bearer API key or JWT, see \`auth:\` in the config) and the agent id comes from the credential; the
operator API also needs the credential role \`approver\` or \`operator\`. Requests whose Host or Origin
is not allowed get 403 (DNS-rebinding defence). Sessions are capped per agent and in all, connections
are capped, and requests must arrive within their deadlines (\`http.*\` in the config, see
docs/gateway.md "Front-door limits").
With \`http.tls: {cert, key}\` it serves HTTPS (HTTP/2 and HTTP/1.1) and re-reads both files when
they change; \`http.publicUrl\` is the URL published in discovery documents (behind a proxy).

options:
  -c, --config <file>   gateway configuration (default ./execlayer.yaml)
      --host <addr>     listen address (default: http.host, 127.0.0.1)
      --port <n>        listen port (default: http.port, 8787; 0 picks a free port)
      --json            print {"url": …} on stdout once listening
  -h, --help            show this help

The policy file is reloaded when its content changes (only content unchanged for 250 ms that validates
whole is loaded), on SIGHUP and on POST /v1/policy/reload; a broken policy never replaces the one in force.

Create an API key with \`execlayer keys new --agent <id>\`; give it roles with \`roles: [approver]\`.

exit codes: 0 stopped cleanly, 1 invalid config or policy, 2 usage error, 3 could not start (port, store,
TLS files)
`;

/** Runs `execlayer serve` until SIGINT/SIGTERM. */
export async function serveCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values } = flags(
      argv,
      {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string' },
        json: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      process.stdout.write(HELP);
      return EXIT.ok;
    }
    let port: number | undefined;
    if (values.port !== undefined) {
      port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new UsageError(`invalid port \`${values.port}\``);
    }
    const config = loadConfigOrReport(values.config, values.json === true);
    if (typeof config === 'number') return config;
    if (config.auth.apiKeys.length === 0 && !config.auth.jwt) {
      process.stderr.write('execlayer: warning: no `auth:` configured — every request will get 401\n');
    }
    const files = openFileLimit();
    const cap = config.http.maxConnections;
    if (files !== undefined && cap !== undefined && cap >= files) {
      process.stderr.write(
        `execlayer: warning: http.maxConnections (${cap}) is not below the open-file limit (${files}): ` +
          'idle sockets can exhaust descriptors before the cap closes any\n',
      );
    }
    let running: RunningServer;
    try {
      running = await startServe(config, {
        watch: true,
        ...(values.host !== undefined ? { host: values.host } : {}),
        ...(port !== undefined ? { port } : {}),
        onEvent: logRuntimeEvent,
        log: (line) => process.stderr.write(`execlayer: ${line}\n`),
      });
    } catch (e) {
      if (e instanceof ServeError && e.code === 'listen_failed') {
        const why = e.cause instanceof TlsError ? e.message : `cannot listen: ${e.message}`;
        process.stderr.write(`error: ${why}\n`);
        return EXIT.error;
      }
      return reportStartFailure(e instanceof ServeError ? e.cause : e);
    }
    const { http } = running;
    // Before announcing the URL: whoever reacts to it may send SIGHUP at once.
    const stopReloading = reloadOnSighup(running.opened.layer);
    process.stderr.write(`execlayer: MCP gateway listening on ${http.url}\n`);
    if (values.json) process.stdout.write(`${JSON.stringify({ url: http.url })}\n`);
    await untilStopped();
    stopReloading();
    await running.close();
    return EXIT.ok;
  });
}

/** Why `startServe` could not start: the runtime and stores (`open_failed`) or the listener. */
export class ServeError extends Error {
  readonly code: 'open_failed' | 'listen_failed';
  constructor(code: ServeError['code'], message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'ServeError';
    this.code = code;
  }
}

/** Options of `startServe`; host and port override `config.http`. */
export interface ServeOptions {
  host?: string;
  port?: number;
  /** Reload the policy file when it changes. */
  watch?: boolean;
  onEvent?: (e: RuntimeEvent) => void;
  /** Operational messages (audit events that could not be recorded). */
  log?: (line: string) => void;
}

/** A running `serve` stack. */
export interface RunningServer {
  http: GatewayHttpServer;
  opened: OpenedLayer;
  gateway: McpGateway;
  /** Stops listening, closes upstream sessions, then the runtime and its stores. */
  close(): Promise<void>;
}

/**
 * Starts what `execlayer serve` runs: the runtime over the configured stores (approval and stop-switch
 * changes recorded to the audit log), the gateway at `/mcp`, the decision API and the operator API, one
 * authenticator per front door. Rejects with `ServeError` when it cannot start.
 */
export async function startServe(config: GatewayConfig, opts: ServeOptions = {}): Promise<RunningServer> {
  let opened: OpenedLayer;
  try {
    opened = await openLayer(config, {
      ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    });
  } catch (e) {
    throw new ServeError('open_failed', (e as Error)?.message ?? String(e), e);
  }
  const { layer } = opened;
  const gateway = new McpGateway(layer, config);
  const log = opts.log ?? (() => {});
  const onRecordError = (e: unknown) => log(`auth event not recorded: ${String(e)}`);
  const authFor = (point: 'mcp' | 'http') =>
    createAuthenticator(config.auth, { recorder: layer.recorder, point, onRecordError });
  const authApi = authFor('http');
  const handlers: HttpHandler[] = [
    // `pdp-client` comes from the credential's roles (API key `roles`, JWT roles claim).
    createDecisionApiHandler(layer, {
      authenticate: authApi,
      ...(config.http.publicUrl !== undefined ? { publicUrl: config.http.publicUrl } : {}),
    }),
    createAdminApiHandler({
      approvals: opened.approvals,
      state: opened.state,
      recorder: layer.recorder,
      authenticate: authApi,
      upstreams: () => gateway.upstreamStatus(),
      reload: (by) => layer.reload({ trigger: 'api', by }),
    }),
  ];
  let http: GatewayHttpServer;
  try {
    http = await startGatewayHttp(gateway, {
      authenticate: authFor('mcp'),
      handlers,
      log,
      ...(opts.host !== undefined ? { host: opts.host } : {}),
      ...(opts.port !== undefined ? { port: opts.port } : {}),
    });
  } catch (e) {
    await gateway.close();
    await opened.close();
    throw new ServeError('listen_failed', (e as Error)?.message ?? String(e), e);
  }
  return {
    http,
    opened,
    gateway,
    close: async () => {
      await http.close();
      await gateway.close();
      await opened.close();
    },
  };
}

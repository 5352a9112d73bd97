/**
 * `execlayer serve`: the Streamable HTTP front door of the MCP gateway at `/mcp`, with the HTTP
 * decision API (AuthZEN and native) and the operator API (approvals, stop switch) mounted on the same
 * server and the same authentication.
 */
import type { GatewayConfig } from '../config/load.js';
import { createAdminApiHandler } from '../enforce/admin/index.js';
import { createAuthenticator } from '../enforce/auth.js';
import { type Console, createConsole, twoPersonApprovals } from '../enforce/console/index.js';
import { openFileLimit } from '../enforce/front-door.js';
import { createDecisionApiHandler } from '../enforce/http/index.js';
import { McpGateway } from '../enforce/mcp/gateway.js';
import { type GatewayHttpServer, type HttpHandler, startGatewayHttp } from '../enforce/mcp/http.js';
import { type OpenedLayer, openLayer } from '../enforce/mcp/open-layer.js';
import { openToolPinStore, type ToolPinStore } from '../enforce/mcp/pins.js';
import { TlsError } from '../enforce/tls.js';
import { createObserveHandler, type ReadyCheck } from '../observe/http.js';
import { createLogger, type Logger } from '../observe/log.js';
import { ExecLayerMetrics } from '../observe/metrics.js';
import { spanForEvent, withTraceContext } from '../observe/tracing.js';
import { WebhookNotifier } from '../observe/webhooks.js';
import { formatRuntimeEvent, type RuntimeEvent } from '../runtime/exec-layer.js';
import { ALL_AGENTS } from '../state/agent-state.js';
import type { Json } from '../types.js';
import {
  loadConfigOrReport,
  logRuntimeEvent,
  reloadOnSighup,
  reportStartFailure,
  untilStopped,
} from './mcp.js';
import { EXIT, flags, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer serve [--config execlayer.yaml] [--host <addr>] [--port <n>] [--json]
                       [--log-decisions] [--log-json] [--no-console] [--no-metrics]

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
      --log-decisions   log one line per decision on stderr (agent, tool, effect, rule, reason; no arguments)
      --log-json        write log lines as JSON objects (time, level, msg, fields)
      --no-console      do not serve the operator console (/console)
      --no-metrics      do not serve /metrics (and keep no metrics)
  -h, --help            show this help

Also served: the operator console at /console (log in with a credential that has the viewer, approver,
operator or admin role; see docs/console.md), /healthz (alive), /readyz (policy loaded, stores reachable, upstreams ready; 503 when not),
/metrics (Prometheus; needs a credential with the viewer, operator or admin role). OpenTelemetry spans are
made for each decision and forwarded call when the process registers an OpenTelemetry SDK; a request's
\`traceparent\` is honoured and passed on to HTTP upstreams. Webhooks: \`notifications:\` in the config.
See docs/observability.md.

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
        'log-decisions': { type: 'boolean' },
        'log-json': { type: 'boolean' },
        'no-console': { type: 'boolean' },
        'no-metrics': { type: 'boolean' },
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
    const logger = createLogger({ json: values['log-json'] === true, write: (l) => process.stderr.write(l) });
    let running: RunningServer;
    try {
      running = await startServe(config, {
        watch: true,
        ...(values.host !== undefined ? { host: values.host } : {}),
        ...(port !== undefined ? { port } : {}),
        onEvent:
          values['log-json'] === true
            ? (e) => logger.log(levelOf(e), formatRuntimeEvent(e))
            : logRuntimeEvent,
        log: (line) => logger.log('warn', line),
        logger,
        logDecisions: values['log-decisions'] === true,
        console: values['no-console'] !== true,
        metrics: values['no-metrics'] !== true,
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
    logger.log('info', `MCP gateway listening on ${http.url}`);
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
  /** Operational messages (audit events that could not be recorded, failed webhooks). */
  log?: (line: string) => void;
  /** Where decision lines go (`logDecisions`). */
  logger?: Logger;
  /** One log line per decision (`--log-decisions`). */
  logDecisions?: boolean;
  /** Serve `/metrics` (default true). */
  metrics?: boolean;
  /** Make OpenTelemetry spans (default true; no-ops unless an SDK is registered). */
  traces?: boolean;
  /** Serve the operator console at `/console` (default true). */
  console?: boolean;
}

/** A running `serve` stack. */
export interface RunningServer {
  http: GatewayHttpServer;
  opened: OpenedLayer;
  gateway: McpGateway;
  /** The metrics `/metrics` serves (absent with `metrics: false`). */
  metrics?: ExecLayerMetrics;
  /** Webhook deliveries (absent without `notifications.webhooks`). */
  notifier?: WebhookNotifier;
  /** The operator console (absent with `console: false`). */
  console?: Console;
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
  const log = opts.log ?? (() => {});
  let pins: ToolPinStore;
  try {
    pins = openToolPinStore(config.store.pins);
  } catch (e) {
    await opened.close();
    throw new ServeError('open_failed', (e as Error)?.message ?? String(e), e);
  }
  const gateway = new McpGateway(layer, config, { pins });
  const unsubscribe: Array<() => void> = [];
  layer.recorder.onListenerError = (e) => log(`event subscriber failed: ${String(e)}`);
  const metrics =
    opts.metrics === false
      ? undefined
      : new ExecLayerMetrics({
          pendingApprovals: () => opened.approvals.list({ status: 'pending', limit: 1000 }),
          upstreams: () => gateway.upstreamStatus(),
          ...(opened.audit ? { audit: auditHead(opened) } : {}),
        });
  if (metrics) unsubscribe.push(layer.subscribe(metrics.observe));
  if (opts.traces !== false) unsubscribe.push(layer.subscribe(spanForEvent));
  if (opts.logDecisions) {
    const logger = opts.logger ?? createLogger({ json: true, write: (l) => process.stderr.write(l) });
    unsubscribe.push(layer.subscribe((e, at) => e.type === 'decision' && logger.decision(e, at)));
  }
  let notifier: WebhookNotifier | undefined;
  if (config.notifications.webhooks.length > 0) {
    notifier = new WebhookNotifier({
      webhooks: config.notifications.webhooks,
      approval: async (id) => approvalDetails(await opened.approvals.get(id)),
      onError: log,
    });
    unsubscribe.push(layer.subscribe(notifier.observe));
  }
  const onRecordError = (e: unknown) => log(`auth event not recorded: ${String(e)}`);
  const authFor = (point: 'mcp' | 'http') =>
    createAuthenticator(config.auth, { recorder: layer.recorder, point, onRecordError });
  const authApi = authFor('http');
  // The console and the operator API decide approvals through the same store, so the two-person rule
  // cannot be skipped by choosing the other path.
  const decideStore = config.approvals.twoPersonRule
    ? twoPersonApprovals(opened.approvals)
    : opened.approvals;
  const operatorConsole =
    opts.console === false
      ? undefined
      : createConsole({
          layer,
          approvals: decideStore,
          state: opened.state,
          audit: opened.audit,
          pins,
          authenticate: authApi,
          upstreams: () => gateway.upstreamStatus(),
          reload: (by) => layer.reload({ trigger: 'api', by }),
          twoPersonRule: config.approvals.twoPersonRule,
        });
  const handlers: HttpHandler[] = [
    createObserveHandler({
      ...(metrics ? { metrics } : {}),
      authenticate: authApi,
      checks: readinessChecks(opened, gateway, pins),
    }),
    // `pdp-client` comes from the credential's roles (API key `roles`, JWT roles claim).
    withTraceContext(
      createDecisionApiHandler(layer, {
        authenticate: authApi,
        ...(config.http.publicUrl !== undefined ? { publicUrl: config.http.publicUrl } : {}),
      }),
    ),
    ...(operatorConsole ? [operatorConsole.handle] : []),
    createAdminApiHandler({
      approvals: decideStore,
      state: opened.state,
      recorder: layer.recorder,
      authenticate: authApi,
      upstreams: () => gateway.upstreamStatus(),
      reload: (by) => layer.reload({ trigger: 'api', by }),
    }),
  ];
  const closeAll = async () => {
    for (const u of unsubscribe) u();
    operatorConsole?.close();
    await gateway.close();
    await pins.close();
    await notifier?.flush();
    await opened.close();
  };
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
    await closeAll();
    throw new ServeError('listen_failed', (e as Error)?.message ?? String(e), e);
  }
  return {
    http,
    opened,
    gateway,
    ...(metrics ? { metrics } : {}),
    ...(notifier ? { notifier } : {}),
    ...(operatorConsole ? { console: operatorConsole } : {}),
    close: async () => {
      await http.close();
      await closeAll();
    },
  };
}

/** The audit log's head and writer queue, for the audit gauges. */
function auditHead(opened: OpenedLayer) {
  return async () => {
    const audit = opened.audit;
    if (!audit) throw new Error('no audit log');
    const head = await audit.store.head();
    return {
      size: head.size,
      checkpointSize: head.checkpointSize,
      checkpointTime: head.checkpointTime,
      queued: audit.stats().queued,
    };
  };
}

/**
 * What `/readyz` checks: the policy is loaded, each store answers, and every upstream connection open now
 * is ready with its tools listed and matching their pins. Details say what failed, never a store's URL.
 */
function readinessChecks(opened: OpenedLayer, gateway: McpGateway, pins: ToolPinStore) {
  const unreachable = (name: string) => () => ({ name, ok: false, detail: 'unreachable' });
  const probe = (name: string, run: () => Promise<unknown>) => ({
    name,
    run: () => run().then(() => ({ name, ok: true }), unreachable(name)),
  });
  return [
    { name: 'policy', run: async () => ({ name: 'policy', ok: opened.layer.policyHash.length > 0 }) },
    probe('audit', async () => (opened.audit ? opened.audit.store.head() : undefined)),
    probe('approvals', () => opened.approvals.get('apr_readyz')),
    probe('state', () => opened.state.isSuspended(ALL_AGENTS)),
    probe('pins', () => pins.get('readyz.probe')),
    {
      name: 'upstreams',
      run: async (): Promise<ReadyCheck[]> =>
        gateway.upstreamStatus().map((u) => {
          const name = `upstream:${u.name}`;
          if (u.state === 'ready') return { name, ok: true };
          if (u.state === 'pin_mismatch')
            return { name, ok: false, detail: `${u.heldBack.length} tool(s) differ from their pins` };
          return { name, ok: false, detail: u.state };
        }),
    },
  ];
}

/** An approval as a webhook shows it (the arguments as the policy lets them be stored). */
function approvalDetails(
  a: Awaited<ReturnType<OpenedLayer['approvals']['get']>>,
): { [k: string]: Json } | undefined {
  if (!a) return undefined;
  const out: { [k: string]: Json } = {
    id: a.id,
    agent: a.agent,
    tool: a.tool,
    args: a.args,
    argsDigest: a.argsDigest,
    rule: a.rule,
    reason: a.reason,
    policy: a.policy,
    createdAt: a.createdAt,
    expiresAt: a.expiresAt,
  };
  if (a.session !== undefined) out.session = a.session;
  if (a.onBehalfOf !== undefined) out.onBehalfOf = a.onBehalfOf;
  return out;
}

function levelOf(e: RuntimeEvent): 'info' | 'warn' | 'error' {
  return e.type === 'policy_loaded' || e.type === 'policy_unchanged'
    ? 'info'
    : e.type === 'record_failed'
      ? 'error'
      : 'warn';
}

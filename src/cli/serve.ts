/**
 * `execlayer serve`: the Streamable HTTP front door of the MCP gateway at `/mcp`, with the HTTP
 * decision API (AuthZEN and native) mounted on the same server and the same authentication.
 */
import { createAuthenticator } from '../enforce/auth.js';
import { createDecisionApiHandler } from '../enforce/http/index.js';
import { McpGateway } from '../enforce/mcp/gateway.js';
import { type HttpHandler, startGatewayHttp } from '../enforce/mcp/http.js';
import { openLayer } from '../enforce/mcp/open-layer.js';
import { loadConfigOrReport, reportStartFailure, untilStopped } from './mcp.js';
import { EXIT, flags, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer serve [--config execlayer.yaml] [--host <addr>] [--port <n>] [--json]

Serves the MCP gateway over Streamable HTTP at /mcp and the decision API on the same port. Each
request is authenticated (bearer API key or JWT, see \`auth:\` in the config) and the agent id comes
from the credential. Requests whose Host or Origin is not allowed get 403 (DNS-rebinding defence).

options:
  -c, --config <file>   gateway configuration (default ./execlayer.yaml)
      --host <addr>     listen address (default: http.host, 127.0.0.1)
      --port <n>        listen port (default: http.port, 8787; 0 picks a free port)
      --json            print {"url": …} on stdout once listening
  -h, --help            show this help

Create an API key with \`execlayer keys new --agent <id>\`.

exit codes: 0 stopped cleanly, 1 invalid config or policy, 2 usage error, 3 could not start (port, store)
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
    let opened: Awaited<ReturnType<typeof openLayer>>;
    try {
      opened = await openLayer(config, {
        watch: true,
        onEvent: (e) => process.stderr.write(`execlayer: ${JSON.stringify(e)}\n`),
      });
    } catch (e) {
      return reportStartFailure(e);
    }
    const { layer } = opened;
    const gateway = new McpGateway(layer, config);
    const onRecordError = (e: unknown) =>
      process.stderr.write(`execlayer: auth event not recorded: ${String(e)}\n`);
    const authMcp = createAuthenticator(config.auth, {
      recorder: layer.recorder,
      point: 'mcp',
      onRecordError,
    });
    const authApi = createAuthenticator(config.auth, {
      recorder: layer.recorder,
      point: 'http',
      onRecordError,
    });
    const handlers: HttpHandler[] = [createDecisionApiHandler(layer, { authenticate: authApi })];
    let http: Awaited<ReturnType<typeof startGatewayHttp>>;
    try {
      http = await startGatewayHttp(gateway, {
        authenticate: authMcp,
        handlers,
        ...(values.host !== undefined ? { host: values.host } : {}),
        ...(port !== undefined ? { port } : {}),
      });
    } catch (e) {
      await gateway.close();
      await opened.close();
      process.stderr.write(`error: cannot listen: ${(e as Error).message}\n`);
      return EXIT.error;
    }
    process.stderr.write(`execlayer: MCP gateway listening on ${http.url}\n`);
    if (values.json) process.stdout.write(`${JSON.stringify({ url: http.url })}\n`);
    await untilStopped();
    await http.close();
    await gateway.close();
    await opened.close();
    return EXIT.ok;
  });
}

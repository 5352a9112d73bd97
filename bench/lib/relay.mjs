/**
 * The floor of any out-of-process MCP gateway written for Node: a relay that copies bytes between the
 * agent and one upstream and does nothing else — no parsing, no decision, no record. bench:gateway runs
 * it beside the gateway so the gateway's cost can be read against what the extra hop alone costs here.
 *
 *   node relay.mjs stdio <command> [args...]       # stdin/stdout <-> the command's stdin/stdout
 *   node relay.mjs http <port> <upstream url>      # every HTTP request on <port> -> the upstream URL
 */
import { spawn } from 'node:child_process';
import { Agent, createServer, request } from 'node:http';

const [mode, ...rest] = process.argv.slice(2);

if (mode === 'stdio') {
  const [command, ...args] = rest;
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  process.stdin.pipe(child.stdin);
  child.stdout.pipe(process.stdout);
  process.stdin.on('end', () => child.kill());
  child.on('exit', (code) => process.exit(code ?? 0));
} else if (mode === 'http') {
  const [port, upstream] = rest;
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  createServer((req, res) => {
    const headers = { ...req.headers, host: target.host };
    const up = request(target, { method: req.method, headers, agent }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  }).listen(Number(port), '127.0.0.1');
} else {
  process.stderr.write('usage: relay.mjs stdio <command> [args...] | relay.mjs http <port> <upstream url>\n');
  process.exit(2);
}

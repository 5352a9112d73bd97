/**
 * The HTTP front door under hostile clients, on loopback, with the official SDK client as the agent and
 * server-everything as the upstream: one agent cannot take every session; idle and slow unauthenticated
 * sockets are closed at the header deadline and, past the connection cap, make room for an agent with a
 * valid credential; deadlines never cut an SSE stream or a long call; loopback Origins are accepted and
 * rebinding Hosts and foreign Origins refused; unauthenticated bodies are refused without being read.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createAuthenticator, hashApiKey, newApiKey } from '../../src/enforce/auth.js';
import { McpGateway } from '../../src/enforce/mcp/gateway.js';
import { type GatewayHttpServer, startGatewayHttp } from '../../src/enforce/mcp/http.js';
import { MemoryToolPinStore } from '../../src/enforce/mcp/pins.js';
import { EVERYTHING, type Layer, makeConfig, makeLayer, REPO, text } from '../gateway-helpers.js';

const keys = { alpha: newApiKey(), beta: newApiKey(), gamma: newApiKey() };
const policy = {
  version: 1,
  agents: Object.fromEntries(
    Object.keys(keys).map((a) => [a, { owner: 'o@x.io', purpose: 'echoes', roles: ['echo'] }]),
  ),
  roles: {
    echo: [{ id: 'echo', allow: ['everything.echo', 'everything.trigger-long-running-operation'] }],
  },
};

interface FrontDoor {
  l: Layer;
  gateway: McpGateway;
  http: GatewayHttpServer;
  port: number;
  close(): Promise<void>;
}

const opened: FrontDoor[] = [];
after(async () => {
  for (const f of opened) await f.close();
});

async function frontDoor(http: Record<string, unknown>, limits: Record<string, unknown> = {}) {
  const l = await makeLayer(policy);
  const config = makeConfig({
    upstreams: { everything: { command: process.execPath, args: [EVERYTHING] } },
    auth: { apiKeys: Object.entries(keys).map(([agent, k]) => ({ sha256: hashApiKey(k), agent })) },
    limits,
    http: { port: 0, ...http },
  });
  const gateway = new McpGateway(l.layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
  const server = await startGatewayHttp(gateway, {
    authenticate: createAuthenticator(config.auth, { recorder: l.layer.recorder, point: 'mcp' }),
  });
  const f: FrontDoor = {
    l,
    gateway,
    http: server,
    port: Number(new URL(server.url).port),
    close: async () => {
      await server.close();
      await gateway.close();
    },
  };
  opened.push(f);
  return f;
}

async function agent(f: FrontDoor, key: string) {
  const client = new Client({ name: 'agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(f.http.url), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return { client, transport };
}

async function echo(client: Client, message: string): Promise<string> {
  const r = await client.callTool({ name: 'everything.echo', arguments: { message } });
  assert.notEqual(r.isError, true, text(r));
  return text(r);
}

/** A raw HTTP exchange (fetch cannot set Host); resolves with the status and body. */
function raw(
  port: number,
  opts: { method?: string; headers?: Record<string, string | number>; body?: string },
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/mcp', method: opts.method ?? 'POST', headers: opts.headers ?? {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

/** A socket that connects and then, depending on `mode`, sends nothing or trickles header lines forever. */
interface Idle {
  socket: Socket;
  openedAt: number;
  closedAt: number | undefined;
  received: string;
}
function idleSocket(port: number, mode: 'silent' | 'trickle'): Idle {
  const socket = tcpConnect(port, '127.0.0.1');
  const idle: Idle = { socket, openedAt: Date.now(), closedAt: undefined, received: '' };
  socket.on('error', () => {});
  socket.on('data', (c: Buffer) => {
    idle.received += c.toString('utf8');
  });
  let timer: NodeJS.Timeout | undefined;
  socket.on('close', () => {
    idle.closedAt = Date.now();
    clearInterval(timer);
  });
  if (mode === 'trickle') {
    socket.once('connect', () => {
      socket.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
      let n = 0;
      timer = setInterval(() => {
        if (!socket.destroyed) socket.write(`x-slow-${n++}: y\r\n`);
      }, 150);
    });
  }
  return idle;
}

/** A raw socket that sends `bytes` and records what comes back and when it closes. */
function exchange(port: number, bytes: string) {
  const socket = tcpConnect(port, '127.0.0.1');
  let got = '';
  let closedAt: number | undefined;
  socket.on('error', () => {});
  socket.on('data', (c: Buffer) => {
    got += c.toString('utf8');
  });
  socket.on('close', () => {
    closedAt = Date.now();
  });
  socket.write(bytes);
  return { socket, received: () => got, closedAt: () => closedAt };
}

/** A keep-alive connection that has authenticated once (its request is refused, the socket kept). */
async function authenticatedSocket(port: number, key: string): Promise<Socket> {
  const x = exchange(
    port,
    `GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${key}\r\nAccept: text/event-stream\r\n\r\n`,
  );
  assert.ok(await waitFor(() => /\r\n\r\n/.test(x.received()), 2000), 'answered');
  assert.match(x.received(), /^HTTP\/1\.1 400/);
  return x.socket;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return cond();
}

describe('session caps', () => {
  test('one agent cannot exhaust the sessions of another; each refusal names its cap', async () => {
    const f = await frontDoor({ maxSessions: 5, maxSessionsPerAgent: 3 });
    const alpha = [await agent(f, keys.alpha), await agent(f, keys.alpha), await agent(f, keys.alpha)];
    // The fourth session of `alpha` is refused with 429 and a message naming the per-agent cap.
    await assert.rejects(agent(f, keys.alpha), (err: Error & { code?: number }) => {
      assert.equal(err.code, 429);
      assert.match(err.message, /http\.maxSessionsPerAgent = 3/);
      return true;
    });
    // Another agent still gets in and works.
    const beta = [await agent(f, keys.beta), await agent(f, keys.beta)];
    assert.equal(await echo(beta[0]!.client, 'still here'), 'Echo: still here');
    // The gateway is now full (3 + 2 = 5): a third agent is refused by the global cap, named as such.
    await assert.rejects(agent(f, keys.gamma), (err: Error & { code?: number }) => {
      assert.equal(err.code, 503);
      assert.match(err.message, /http\.maxSessions = 5/);
      return true;
    });
    assert.equal(f.http.endpoint.sessions.size, 5);
    // Ending a session (DELETE) frees its slot for its own agent.
    await alpha[0]!.transport.terminateSession();
    await alpha[0]!.client.close();
    const again = await agent(f, keys.alpha);
    assert.equal(await echo(again.client, 'back'), 'Echo: back');
    for (const c of [...alpha.slice(1), ...beta, again]) await c.client.close();
  });
});

describe('connections and deadlines', () => {
  test('idle and slow-header sockets are closed at the header deadline', async () => {
    const f = await frontDoor({ headersTimeoutMs: 1000, requestTimeoutMs: 2000, maxConnections: 500 });
    const socks = [
      ...Array.from({ length: 40 }, () => idleSocket(f.port, 'silent')),
      ...Array.from({ length: 40 }, () => idleSocket(f.port, 'trickle')),
    ];
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(
      socks.filter((s) => s.closedAt !== undefined).length,
      0,
      'nothing closed before the deadline',
    );
    assert.ok(
      await waitFor(() => socks.every((s) => s.closedAt !== undefined), 3000),
      `still open after 3.6 s: ${socks.filter((s) => s.closedAt === undefined).length}`,
    );
    const lifetimes = socks.map((s) => (s.closedAt ?? 0) - s.openedAt);
    const longest = Math.max(...lifetimes);
    // Node checks the deadline every 250 ms here (a quarter of it): closed within 1 s + one interval.
    assert.ok(longest < 1000 + 250 + 500, `longest-lived socket: ${longest} ms`);
    assert.ok(Math.min(...lifetimes) >= 900, `shortest-lived socket: ${Math.min(...lifetimes)} ms`);
    for (const s of socks) assert.match(s.received, /^HTTP\/1\.1 408 /);
  });

  test('a flood of idle unauthenticated sockets past the cap does not block an authenticated agent', {
    timeout: 60_000,
  }, async (t) => {
    const cap = 60;
    const f = await frontDoor({ headersTimeoutMs: 5000, requestTimeoutMs: 10_000, maxConnections: cap });
    const socks: Idle[] = [];
    for (let i = 0; i < 200; i++) socks.push(idleSocket(f.port, i % 2 ? 'silent' : 'trickle'));
    // The flood goes on while the agent connects: 10 new sockets every 100 ms, so a connection that
    // has not authenticated within ~0.6 s (60 newer ones) is closed — far longer than a real client needs.
    const flood = setInterval(() => {
      for (let i = 0; i < 10; i++) socks.push(idleSocket(f.port, i % 2 ? 'silent' : 'trickle'));
    }, 100);
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, f.http.connections.stats().open);
    }, 10);
    try {
      await waitFor(() => f.http.connections.stats().evicted > 0, 2000);
      const started = Date.now();
      const a = await agent(f, keys.alpha);
      assert.equal(await echo(a.client, 'through the flood'), 'Echo: through the flood');
      const took = Date.now() - started;
      // The agent's connections are kept once authenticated, however many sockets arrive after them.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await echo(a.client, 'and again'), 'Echo: and again');
      await a.client.close();
      const stats = f.http.connections.stats();
      t.diagnostic(
        `initialize and one call under the flood: ${took} ms; evicted ${stats.evicted}, peak ${peak}`,
      );
      assert.ok(took < 5000, `initialize and one call took ${took} ms under the flood`);
      assert.ok(stats.evicted >= 100, `evicted ${stats.evicted}`);
      assert.ok(peak <= cap, `peak open connections ${peak} (cap ${cap})`);
    } finally {
      clearInterval(flood);
      clearInterval(sampler);
      for (const s of socks) s.socket.destroy();
    }
  });

  test('with every slot held by authenticated clients, a newcomer is refused, not a client evicted', async () => {
    const cap = 6;
    const f = await frontDoor({ maxConnections: cap });
    const a = await agent(f, keys.alpha);
    // Fill the remaining slots with authenticated keep-alive connections.
    const held: Socket[] = [];
    while (f.http.connections.stats().authenticated < cap) {
      held.push(await authenticatedSocket(f.port, keys.beta));
    }
    const refusedBefore = f.http.connections.stats().refused;
    const idle = idleSocket(f.port, 'silent');
    assert.ok(await waitFor(() => idle.closedAt !== undefined, 2000), 'the newcomer was closed');
    assert.equal(f.http.connections.stats().refused, refusedBefore + 1);
    assert.equal(f.http.connections.stats().evicted, 0);
    assert.equal(await echo(a.client, 'kept'), 'Echo: kept');
    await a.client.close();
    for (const s of held) s.destroy();
  });

  test('the deadlines do not cut a long call or an SSE stream; an idle keep-alive connection closes', {
    timeout: 30_000,
  }, async () => {
    const f = await frontDoor({ headersTimeoutMs: 500, requestTimeoutMs: 1000, keepAliveTimeoutMs: 1000 });
    const a = await agent(f, keys.alpha);
    try {
      // A call that runs 2.5 s, past both deadlines, its answer an event stream (progress first).
      const progress: number[] = [];
      const r = await a.client.callTool(
        { name: 'everything.trigger-long-running-operation', arguments: { duration: 2.5, steps: 5 } },
        undefined,
        { onprogress: (p) => progress.push(p.progress), timeout: 20_000 },
      );
      assert.notEqual(r.isError, true, text(r));
      assert.ok(progress.length >= 4, `progress notifications: ${progress.length}`);
    } finally {
      await a.client.close();
    }
    // A standalone SSE stream of a fresh session stays open past both deadlines.
    const init = await raw(f.port, {
      headers: {
        host: `127.0.0.1:${f.port}`,
        authorization: `Bearer ${keys.beta}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: INIT,
    });
    const sid = init.headers['mcp-session-id'];
    assert.equal(typeof sid, 'string');
    const stream = exchange(
      f.port,
      `GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\nAuthorization: Bearer ${keys.beta}\r\n` +
        `Accept: text/event-stream\r\nMcp-Session-Id: ${String(sid)}\r\n\r\n`,
    );
    await new Promise((r) => setTimeout(r, 2500));
    assert.match(stream.received(), /^HTTP\/1\.1 200/);
    assert.match(stream.received(), /content-type: text\/event-stream/i);
    assert.equal(stream.closedAt(), undefined, 'the SSE stream is still open after 2.5 s');
    stream.socket.destroy();
    // A connection idle after its response is closed at the keep-alive deadline.
    const idle = exchange(f.port, `GET /nope HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\n\r\n`);
    assert.ok(await waitFor(() => /\r\n\r\n/.test(idle.received()), 2000));
    const answered = Date.now();
    assert.match(idle.received(), /^HTTP\/1\.1 404/);
    assert.ok(await waitFor(() => idle.closedAt() !== undefined, 3000), 'the idle connection was closed');
    const idleFor = (idle.closedAt() ?? 0) - answered;
    assert.ok(idleFor >= 800 && idleFor < 2500, `closed ${idleFor} ms after its response`);
  });
});

describe('Host and Origin', () => {
  test('loopback origins are accepted; a foreign Origin or a rebinding Host gets 403', async () => {
    const f = await frontDoor({});
    const base = {
      authorization: `Bearer ${keys.alpha}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    for (const host of [`127.0.0.1:${f.port}`, `localhost:${f.port}`, `[::1]:${f.port}`]) {
      // The conformance suite's check: Host and Origin both the server's own loopback name.
      const r = await raw(f.port, { headers: { ...base, host, origin: `http://${host}` }, body: INIT });
      assert.equal(r.status, 200, `${host}: ${r.body}`);
    }
    const evilOrigin = await raw(f.port, {
      headers: { ...base, host: `127.0.0.1:${f.port}`, origin: 'http://evil.com' },
      body: INIT,
    });
    assert.equal(evilOrigin.status, 403);
    assert.match(evilOrigin.body, /origin `http:\/\/evil\.com` is not allowed/);
    // Rebinding: the attacker's page reaches 127.0.0.1 under its own name.
    const evilHost = await raw(f.port, {
      headers: { ...base, host: `evil.com:${f.port}`, origin: `http://evil.com:${f.port}` },
      body: INIT,
    });
    assert.equal(evilHost.status, 403);
    assert.match(evilHost.body, /host `evil\.com:\d+` is not allowed/);
    // Another local port is another origin.
    const otherPort = await raw(f.port, {
      headers: { ...base, host: `127.0.0.1:${f.port}`, origin: `http://127.0.0.1:${f.port + 1}` },
      body: INIT,
    });
    assert.equal(otherPort.status, 403);
    // Refused sessions were never opened.
    assert.equal(f.http.endpoint.sessions.size, 3);
  });
});

describe('unauthenticated bodies', () => {
  test('an oversized body is refused before authentication and before a byte of it is read', async () => {
    const f = await frontDoor({}, { maxMessageBytes: 4096 });
    const before = f.l.recorder.events.length;
    const socket = tcpConnect(f.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (c: Buffer) => {
      answer += c.toString('utf8');
    });
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    // Headers only: the 100 MB body never comes, so an answer proves nothing waited for it.
    socket.write(
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\nContent-Type: application/json\r\n` +
        'Content-Length: 100000000\r\n\r\n',
    );
    await closed;
    assert.match(answer, /^HTTP\/1\.1 413/);
    assert.match(answer, /message exceeds the limit of 4096 bytes/);
    assert.match(answer, /connection: close/i);
    // No auth event: the credential was not even looked at.
    assert.equal(f.l.recorder.events.slice(before).filter((e) => e.type === 'auth').length, 0);
  });

  test('an unauthenticated request gets 401 without its body being read, and the connection closes', async () => {
    const f = await frontDoor({});
    const socket = tcpConnect(f.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (c: Buffer) => {
      answer += c.toString('utf8');
    });
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    // A chunked body that is never finished: the 401 must not wait for it.
    socket.write(
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\nContent-Type: application/json\r\n` +
        `Authorization: Bearer not-a-key\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n${'x'.repeat(1024)}\r\n`,
    );
    const started = Date.now();
    await closed;
    assert.match(answer, /^HTTP\/1\.1 401/);
    assert.match(answer, /invalid api key/);
    assert.ok(Date.now() - started < 2000, 'answered and closed at once');
    assert.equal(f.http.connections.stats().open, 0);
  });
});

describe('the open-file limit', () => {
  test('`execlayer serve` under `ulimit -n 256`: 400 idle sockets do not lock an agent out', {
    timeout: 90_000,
  }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'front-door-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'policy.yaml'), JSON.stringify(policy));
    writeFileSync(
      join(dir, 'execlayer.yaml'),
      JSON.stringify({
        policy: './policy.yaml',
        store: 'memory:',
        upstreams: { everything: { command: process.execPath, args: [EVERYTHING] } },
        auth: { apiKeys: [{ sha256: hashApiKey(keys.alpha), agent: 'alpha' }] },
        http: { port: 0 },
      }),
    );
    // Soft and hard (Node raises its soft limit to the hard one): what a service manager's limit of 1024
    // does, at a size a test can reach.
    const child = spawn(
      'bash',
      [
        '-c',
        'ulimit -n 256 && exec "$0" --import tsx src/cli/main.ts serve --config "$1" --json',
        process.execPath,
        join(dir, 'execlayer.yaml'),
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => {
      child.kill('SIGTERM');
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString('utf8');
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      });
      child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
    });
    const port = Number(new URL(url).port);
    const socks = Array.from({ length: 400 }, (_, i) => idleSocket(port, i % 2 ? 'silent' : 'trickle'));
    t.after(() => {
      for (const s of socks) s.socket.destroy();
    });
    // Let the gateway accept them all (and close the oldest past its cap of 256 / 2 = 128).
    await waitFor(() => socks.filter((s) => s.closedAt !== undefined).length >= 400 - 128, 10_000);
    const started = Date.now();
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${keys.alpha}` } },
      }),
    );
    assert.equal(await echo(client, 'under the limit'), 'Echo: under the limit');
    const took = Date.now() - started;
    await client.close();
    t.diagnostic(`initialize and one call under 400 idle sockets: ${took} ms`);
    assert.ok(took < 10_000, `took ${took} ms`);
    const closedByCap = socks.filter((s) => s.closedAt !== undefined).length;
    assert.ok(closedByCap >= 400 - 128, `closed ${closedByCap} of 400 idle sockets`);
  });
});

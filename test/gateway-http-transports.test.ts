/**
 * The gateway's Streamable HTTP transports, on the wire: the front (the SDK's own server transport behind
 * the gateway's checks) answers on an event stream, progress first and the result last; its refusals are
 * the SDK transport's; the upstream client
 * works against the SDK's server transport in JSON mode and against server-everything's SSE replies, and
 * parses event streams by the WHATWG rules (CRLF, comments, BOM, split chunks, multi-line data).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { type GatewayHttpServer, startGatewayHttp } from '../src/enforce/mcp/http.js';
import { HttpUpstreamTransport } from '../src/enforce/mcp/http-upstream.js';
import { MemoryToolPinStore } from '../src/enforce/mcp/pins.js';
import { EVERYTHING, type Layer, makeConfig, makeLayer, text } from './gateway-helpers.js';

const procs: ChildProcess[] = [];
const servers: Server[] = [];
after(async () => {
  for (const p of procs) p.kill('SIGTERM');
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/mcp`;
}

async function startEverythingHttp(): Promise<string> {
  const probe = await listen(() => {});
  const port = new URL(probe).port;
  const s = servers.pop()!;
  await new Promise((r) => s.close(r));
  const p = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], {
    env: { ...process.env, PORT: port },
    stdio: 'ignore',
  });
  procs.push(p);
  const url = `http://127.0.0.1:${port}/mcp`;
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(url).then(
        () => true,
        () => false,
      )
    )
      return url;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server-everything did not come up');
}

/** Reads an SSE body into its JSON messages. */
function sseMessages(body: string): Array<Record<string, unknown>> {
  return body
    .split('\n\n')
    .map((e) =>
      e
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n'),
    )
    .filter((d) => d !== '')
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

describe('front: the gateway session transport on the wire', () => {
  let l: Layer;
  let gateway: McpGateway;
  let http: GatewayHttpServer;
  let sid = '';
  const base = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(http.url, {
      method: 'POST',
      headers: {
        ...base,
        'mcp-session-id': sid,
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
        ...headers,
      },
      body: JSON.stringify(body),
    });

  before(async () => {
    const upUrl = await startEverythingHttp();
    l = await makeLayer({
      version: 1,
      agents: { a: { owner: 'o@x.io', purpose: 'test', roles: ['all'] } },
      roles: { all: [{ id: 'all', allow: 'everything.*' }] },
    });
    const config = makeConfig({ upstreams: { everything: { url: upUrl } }, http: { port: 0 } });
    gateway = new McpGateway(l.layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
    http = await startGatewayHttp(gateway, {
      authenticate: async () => ({ ok: true, agent: 'a', method: 'api_key' }),
    });
    const init = await fetch(http.url, {
      method: 'POST',
      headers: base,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: LATEST_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: 't', version: '1' },
        },
      }),
    });
    assert.equal(init.status, 200);
    assert.equal(init.headers.get('content-type'), 'text/event-stream');
    sid = init.headers.get('mcp-session-id') ?? '';
    assert.ok(sid);
    const body = sseMessages(await init.text())[0] as { result?: { serverInfo?: { name?: string } } };
    assert.equal(body.result?.serverInfo?.name, 'execlayer-gateway');
    const done = await post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    assert.equal(done.status, 202);
  });

  after(async () => {
    await http.close();
    await gateway.close();
  });

  test('a call is answered on its event stream; with progress, every progress notification comes first', async () => {
    const plain = await post({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'everything.echo', arguments: { message: 'hi' } },
    });
    assert.equal(plain.headers.get('content-type'), 'text/event-stream');
    const r = sseMessages(await plain.text()).at(-1) as { id: number; result: unknown };
    assert.equal(r.id, 2);
    assert.equal(text(r.result), 'Echo: hi');

    const streamed = await post({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: {
        name: 'everything.trigger-long-running-operation',
        arguments: { duration: 0.3, steps: 3 },
        _meta: { progressToken: 'p3' },
      },
    });
    assert.equal(streamed.headers.get('content-type'), 'text/event-stream');
    assert.equal(streamed.headers.get('mcp-session-id'), sid);
    const msgs = sseMessages(await streamed.text());
    const progress = msgs.filter((m) => m.method === 'notifications/progress');
    assert.equal(progress.length, 3);
    for (const p of progress) assert.equal((p.params as { progressToken?: unknown }).progressToken, 'p3');
    const last = msgs[msgs.length - 1]!;
    assert.equal(last.id, 3, 'the result comes last, after every progress notification');
    assert.ok('result' in last);
  });

  test('refusals match the SDK transport: 406, 415, 400 protocol version, 409 second stream, DELETE then 404', async () => {
    const call = { jsonrpc: '2.0', id: 10, method: 'tools/list' };
    const notAcceptable = await post(call, { accept: 'application/json' });
    assert.equal(notAcceptable.status, 406);
    assert.match(
      ((await notAcceptable.json()) as { error: { message: string } }).error.message,
      /Not Acceptable/,
    );
    const media = await post(call, { 'content-type': 'text/plain' });
    assert.equal(media.status, 415);
    const version = await post(call, { 'mcp-protocol-version': '1999-01-01' });
    assert.equal(version.status, 400);
    assert.match(((await version.json()) as { error: { message: string } }).error.message, /1999-01-01/);

    const headers = { accept: 'text/event-stream', 'mcp-session-id': sid };
    const first = await fetch(http.url, { headers });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'text/event-stream');
    const second = await fetch(http.url, { headers });
    assert.equal(second.status, 409);
    await first.body?.cancel();

    const del = await fetch(http.url, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
    assert.equal(del.status, 200);
    const gone = await post(call);
    assert.equal(gone.status, 404);
  });
});

describe('upstream: the gateway HTTP client transport', () => {
  test('talks to the SDK server transport in JSON mode and keeps the session id', async () => {
    const server = new McpServer({ name: 'json-upstream', version: '1' });
    server.registerTool('double', { inputSchema: { n: z.number() } }, async ({ n }) => ({
      content: [{ type: 'text', text: String(n * 2) }],
    }));
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => 'sess-json',
      enableJsonResponse: true,
    });
    await server.connect(transport);
    const seen: Array<string | undefined> = [];
    const url = await listen((req, res) => {
      seen.push(req.headers['mcp-session-id'] as string | undefined);
      void transport.handleRequest(req, res);
    });
    const client = new Client({ name: 'gw', version: '1' });
    const up = new HttpUpstreamTransport(new URL(url), { 'x-extra': 'yes' });
    await client.connect(up);
    assert.equal(up.sessionId, 'sess-json');
    const r = await client.callTool({ name: 'double', arguments: { n: 21 } });
    assert.equal(text(r), '42');
    assert.equal(seen[0], undefined, 'initialize carries no session id');
    assert.ok(
      seen.slice(1).every((s) => s === 'sess-json'),
      'every later request carries it',
    );
    await client.close();
    await server.close();
  });

  test('relays progress from an SSE reply (server-everything)', async () => {
    const url = await startEverythingHttp();
    const client = new Client({ name: 'gw', version: '1' });
    await client.connect(new HttpUpstreamTransport(new URL(url)));
    const steps: number[] = [];
    const r = await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.2, steps: 2 } },
      undefined,
      { onprogress: (p) => steps.push(p.progress) },
    );
    assert.deepEqual(steps, [1, 2]);
    assert.match(text(r), /completed/i);
    await client.close();
  });

  test('parses event streams by the WHATWG rules: CRLF, comments, BOM, split chunks, multi-line data', async () => {
    const url = await listen((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(405).end();
        return;
      }
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString('utf8');
      });
      req.on('end', () => {
        const msg = JSON.parse(body) as { id?: number; method: string };
        if (msg.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        const result =
          msg.method === 'initialize'
            ? {
                protocolVersion: LATEST_PROTOCOL_VERSION,
                capabilities: { tools: {} },
                serverInfo: { name: 'sse-edge', version: '1' },
              }
            : { content: [{ type: 'text', text: 'a\nb "quoted" é' }] };
        const json = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }, null, 1);
        // Multi-line data: each line of the pretty-printed JSON is its own data field.
        const data = json
          .split('\n')
          .map((l) => `data: ${l}`)
          .join('\r\n');
        const whole = `\uFEFF: a comment\r\nevent: message\r\nid: e1\r\n${data}\r\n\r\n`;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 's1' });
        // Split mid-line and between CR and LF.
        const cut = whole.indexOf('\r\n') + 1;
        res.write(whole.slice(0, cut));
        setTimeout(() => {
          res.write(whole.slice(cut, cut + 7));
          setTimeout(() => res.end(whole.slice(cut + 7)), 5);
        }, 5);
      });
    });
    const client = new Client({ name: 'gw', version: '1' });
    const up = new HttpUpstreamTransport(new URL(url));
    await client.connect(up);
    assert.equal(client.getServerVersion()?.name, 'sse-edge');
    const r = await client.callTool({ name: 'x', arguments: {} });
    assert.equal(text(r), 'a\nb "quoted" é');
    await client.close();
  });
});

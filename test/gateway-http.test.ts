/**
 * The Streamable HTTP front door on loopback with the official SDK client: two agents with different
 * policies on one gateway (two API keys), 401s recorded, sessions bound to their agent, DNS-rebinding
 * checks, bad bodies, a sampling round trip through the gateway, and mounted handlers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createAuthenticator, hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { type GatewayHttpServer, startGatewayHttp } from '../src/enforce/mcp/http.js';
import { MemoryToolPinStore } from '../src/enforce/mcp/pins.js';
import {
  connectDirect,
  decisions,
  EVERYTHING,
  type Layer,
  makeConfig,
  makeLayer,
  text,
} from './gateway-helpers.js';

const keyA = newApiKey();
const keyB = newApiKey();
let l: Layer;
let gateway: McpGateway;
let http: GatewayHttpServer;

const policy = {
  version: 1,
  agents: {
    alpha: { owner: 'o@x.io', purpose: 'echoes', roles: ['echo'] },
    beta: { owner: 'o@x.io', purpose: 'adds', roles: ['sum'] },
  },
  roles: {
    echo: [
      { id: 'echo', allow: 'everything.echo', when: { cel: 'size(args.message) <= 64' } },
      {
        id: 'sampling',
        allow: ['everything.trigger-sampling-request', 'everything.trigger-elicitation-request'],
      },
    ],
    sum: [{ id: 'sum', allow: 'everything.get-sum', when: { cel: 'args.a < 1000' } }],
  },
};

/**
 * What alpha may see: its policy's tools. The upstream is shared by every session and its client declares
 * sampling and elicitation, so the upstream lists its sampling and elicitation tools whoever connected
 * first; an agent that lacks the capability gets a refusal when the upstream asks it.
 */
const ALPHA_TOOLS = [
  'everything.echo',
  'everything.trigger-elicitation-request',
  'everything.trigger-sampling-request',
];

before(async () => {
  l = await makeLayer(policy);
  const config = makeConfig({
    upstreams: { everything: { command: process.execPath, args: [EVERYTHING] } },
    auth: {
      apiKeys: [
        { sha256: hashApiKey(keyA), agent: 'alpha' },
        { sha256: hashApiKey(keyB), agent: 'beta' },
      ],
    },
    limits: { maxMessageBytes: 8192 },
    http: { port: 0, allowedOrigins: ['https://app.example.com'] },
  });
  gateway = new McpGateway(l.layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
  const mounted = async (req: { url?: string }, res: { writeHead(s: number): { end(b: string): void } }) => {
    if (req.url !== '/v1/hello') return false;
    res.writeHead(200).end('mounted');
    return true;
  };
  http = await startGatewayHttp(gateway, {
    authenticate: createAuthenticator(config.auth, { recorder: l.layer.recorder, point: 'mcp' }),
    handlers: [mounted as never],
  });
});

after(async () => {
  await http?.close();
  await gateway?.close();
});

async function connect(key: string, capabilities: Record<string, unknown> = {}, setup?: (c: Client) => void) {
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities });
  setup?.(client);
  const transport = new StreamableHTTPClientTransport(new URL(http.url), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return { client, transport };
}

function post(body: string | Buffer, headers: Record<string, string> = {}) {
  return fetch(http.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body,
  });
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

describe('two agents, one gateway', () => {
  test('each agent sees and may call only its own tools', async () => {
    const a = await connect(keyA);
    const b = await connect(keyB);
    try {
      const la = (await a.client.listTools()).tools.map((t) => t.name).sort();
      const lb = (await b.client.listTools()).tools.map((t) => t.name);
      assert.deepEqual(la, ALPHA_TOOLS);
      assert.deepEqual(lb, ['everything.get-sum']);
      const direct = await connectDirect(process.execPath, [EVERYTHING]);
      try {
        assert.deepEqual(
          await a.client.callTool({ name: 'everything.echo', arguments: { message: 'hi' } }),
          await direct.callTool({ name: 'echo', arguments: { message: 'hi' } }),
        );
        assert.deepEqual(
          await b.client.callTool({ name: 'everything.get-sum', arguments: { a: 2, b: 3 } }),
          await direct.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } }),
        );
      } finally {
        await direct.close();
      }
      assert.equal(
        (await a.client.callTool({ name: 'everything.get-sum', arguments: { a: 1, b: 1 } })).isError,
        true,
      );
      assert.equal(
        (await b.client.callTool({ name: 'everything.echo', arguments: { message: 'x' } })).isError,
        true,
      );
      assert.equal(
        (await a.client.callTool({ name: 'everything.echo', arguments: { message: 'x'.repeat(65) } }))
          .isError,
        true,
      );
      const ds = decisions(l.recorder);
      assert.ok(ds.includes('everything.get-sum:deny'));
      const ev = l.recorder.events.findLast(
        (e) =>
          e.type === 'decision' && e.action.tool === 'everything.get-sum' && e.decision.effect === 'allow',
      );
      assert.ok(ev?.type === 'decision' && ev.action.agent === 'beta' && ev.point === 'mcp');
    } finally {
      await a.client.close();
      await b.client.close();
    }
  });

  test('a session id is bound to its agent: replay by another agent gets 404 and is recorded', async () => {
    const a = await connect(keyA);
    try {
      const sid = a.transport.sessionId!;
      assert.ok(sid);
      const before = l.recorder.events.length;
      const r = await post(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }), {
        authorization: `Bearer ${keyB}`,
        'mcp-session-id': sid,
        'mcp-protocol-version': '2025-06-18',
      });
      assert.equal(r.status, 404);
      const rec = l.recorder.events.slice(before).find((e) => e.type === 'auth');
      assert.match(rec?.type === 'auth' ? rec.reason : '', /session id of another agent/);
      // The owner's session is unaffected.
      assert.deepEqual((await a.client.listTools()).tools.map((t) => t.name).sort(), ALPHA_TOOLS);
    } finally {
      await a.client.close();
    }
  });
});

describe('authentication and origin checks', () => {
  test('no key or a wrong key gets 401 and an auth event', async () => {
    const before = l.recorder.events.length;
    assert.equal((await post(INIT)).status, 401);
    const wrong = await post(INIT, { authorization: `Bearer ${keyA}x` });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('www-authenticate'), 'Bearer');
    const auths = l.recorder.events.slice(before).filter((e) => e.type === 'auth');
    assert.deepEqual(
      auths.map((e) => (e.type === 'auth' ? e.reason : '')),
      ['missing bearer token', 'invalid api key'],
    );
  });

  test('a foreign Host or Origin gets 403 (DNS rebinding)', async () => {
    const port = new URL(http.url).port;
    const host = await new Promise<number>((resolve, reject) => {
      // fetch does not let a caller set Host; use node:http.
      import('node:http').then(({ request }) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/mcp',
            method: 'POST',
            headers: { host: 'evil.example:80', authorization: `Bearer ${keyA}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(INIT);
      }, reject);
    });
    assert.equal(host, 403);
    assert.equal(
      (await post(INIT, { authorization: `Bearer ${keyA}`, origin: 'https://evil.example' })).status,
      403,
    );
    const allowed = await post(INIT, { authorization: `Bearer ${keyA}`, origin: 'https://app.example.com' });
    assert.equal(allowed.status, 200);
    await allowed.body?.cancel();
  });
});

describe('bad bodies', () => {
  const auth = { authorization: `Bearer ${keyA}` };
  test('batches, oversized, invalid UTF-8, non-JSON, __proto__ and calls before initialize are refused', async () => {
    const batch = await post(`[${INIT}]`, auth);
    assert.equal(batch.status, 400);
    assert.match(((await batch.json()) as { error: { message: string } }).error.message, /batches/);
    assert.equal(
      (
        await post(
          JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { x: 'y'.repeat(9000) } }),
          auth,
        )
      ).status,
      413,
    );
    const utf = await post(
      Buffer.concat([
        Buffer.from('{"jsonrpc":"2.0","id":1,"method":"initialize","x":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}'),
      ]),
      auth,
    );
    assert.equal(utf.status, 400);
    assert.equal(((await utf.json()) as { error: { code: number } }).error.code, -32700);
    assert.equal((await post('{"jsonrpc":', auth)).status, 400);
    const early = await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }), auth);
    assert.equal(early.status, 400);
    assert.match(((await early.json()) as { error: { message: string } }).error.message, /initialize/);
    const a = await connect(keyA);
    try {
      const proto = await post(
        `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"everything.echo","arguments":{"__proto__":{"message":"x"},"message":"y"}}}`,
        { ...auth, 'mcp-session-id': a.transport.sessionId!, 'mcp-protocol-version': '2025-06-18' },
      );
      assert.equal(proto.status, 400);
      assert.match(((await proto.json()) as { error: { message: string } }).error.message, /__proto__/);
      const unknownSession = await post(JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'tools/list' }), {
        ...auth,
        'mcp-session-id': 'no-such-session',
      });
      assert.equal(unknownSession.status, 404);
    } finally {
      await a.client.close();
    }
  });

  test('other paths go to mounted handlers, then 404', async () => {
    assert.equal(await (await fetch(new URL('/v1/hello', http.url))).text(), 'mounted');
    assert.equal((await fetch(new URL('/nope', http.url))).status, 404);
  });
});

test('sampling and elicitation requests from the upstream reach the calling agent and come back', async () => {
  let sampled: unknown;
  const a = await connect(keyA, { sampling: {}, elicitation: {} }, (c) => {
    c.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      sampled = req.params.messages[0]?.content;
      return {
        role: 'assistant',
        content: { type: 'text', text: 'forty-two' },
        model: 'test-model',
        stopReason: 'endTurn',
      };
    });
    c.setRequestHandler(ElicitRequestSchema, async () => ({
      action: 'accept',
      content: { name: 'Ada', check: true },
    }));
  });
  try {
    const r = await a.client.callTool({
      name: 'everything.trigger-sampling-request',
      arguments: { prompt: 'meaning?', maxTokens: 5 },
    });
    assert.notEqual(r.isError, true, text(r));
    assert.match(JSON.stringify(r.content), /forty-two/);
    assert.match(JSON.stringify(sampled), /meaning\?/);
    const e = await a.client.callTool({ name: 'everything.trigger-elicitation-request', arguments: {} });
    assert.notEqual(e.isError, true, text(e));
    assert.match(JSON.stringify(e.content), /Ada/);
  } finally {
    await a.client.close();
  }
});

/**
 * `execlayer serve` with `http.tls` and `http.publicUrl`: HTTPS over HTTP/1.1 and HTTP/2 on one port (the
 * MCP gateway through the official SDK client, the decision API through both protocols), discovery with
 * the public URL, certificate reload on change (a broken file keeps the working certificate), the
 * front-door deadlines over TLS for both protocols, and clear start failures for bad TLS files.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { type RunningServer, ServeError, startServe } from '../src/cli/serve.js';
import { loadConfigFile } from '../src/config/load.js';
import { hashApiKey } from '../src/enforce/auth.js';
import { MEMORY } from './gateway-helpers.js';
import { makeCert, OPENSSL } from './tls-helpers.js';

const KEY = 'tls-agent-key';
const PDP = 'tls-pdp-key';
const skip = OPENSSL === undefined && 'openssl is not installed';

describe('serve over TLS', { skip }, () => {
  let dir: string;
  let running: RunningServer;
  let base: string;
  let pem: string;
  const logs: string[] = [];

  const writeConfig = (extra: string) =>
    writeFileSync(
      join(dir, 'execlayer.yaml'),
      `policy: ./policy.yaml
store: "memory:"
upstreams:
  memory:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(MEMORY)}]
    env: { MEMORY_FILE_PATH: ${JSON.stringify(join(dir, 'memory.jsonl'))} }
auth:
  apiKeys:
    - { sha256: ${hashApiKey(KEY)}, agent: bot }
    - { sha256: ${hashApiKey(PDP)}, agent: backend, roles: [pdp-client] }
http:
  port: 0
  headersTimeoutMs: 600
  requestTimeoutMs: 1200
  keepAliveTimeoutMs: 800
${extra}`,
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-tls-'));
    writeFileSync(
      join(dir, 'policy.yaml'),
      `version: 1
agents:
  bot: { owner: o@x.io, roles: [reader] }
  backend: { owner: o@x.io }
roles:
  reader:
    - { id: reads, allow: memory.read_graph }
`,
    );
    const first = makeCert(dir, 'first');
    copyFileSync(first.cert, join(dir, 'cert.pem'));
    copyFileSync(first.key, join(dir, 'key.pem'));
    pem = first.pem;
    writeConfig('  tls: { cert: ./cert.pem, key: ./key.pem }\n  publicUrl: https://pdp.example.com/\n');
    running = await startServe(loadConfigFile(join(dir, 'execlayer.yaml')), {
      port: 0,
      log: (l) => logs.push(l),
    });
    base = running.http.url.replace(/\/mcp$/, '');
  });

  after(async () => {
    await running?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** One HTTP/1.1 request over TLS trusting `ca`; resolves with status, body and the peer certificate. */
  function https1(
    path: string,
    init: {
      method?: string;
      headers?: Record<string, string>;
      body?: string;
      ca?: string;
      alpn?: string[];
    } = {},
  ): Promise<{ status: number; body: string; alpn: string | false | null; cert: PeerCertificate }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${base}${path}`,
        {
          method: init.method ?? 'GET',
          headers: init.headers,
          ca: init.ca ?? pem,
          agent: false,
          ...(init.alpn ? { ALPNProtocols: init.alpn } : {}),
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            const socket = res.socket as import('node:tls').TLSSocket;
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(parts).toString('utf8'),
              alpn: socket.alpnProtocol,
              cert: socket.getPeerCertificate(),
            });
          });
        },
      );
      req.on('error', reject);
      req.end(init.body);
    });
  }

  const evaluation = JSON.stringify({
    subject: { type: 'agent', id: 'bot' },
    action: { name: 'memory.read_graph' },
    resource: { type: 'graph', id: 'g' },
  });

  test('the decision API answers over HTTP/1.1 and HTTP/2 on the same TLS port', async () => {
    assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
    const one = await https1('/access/v1/evaluation', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PDP}` },
      body: evaluation,
      alpn: ['http/1.1'],
    });
    assert.equal(one.alpn, 'http/1.1');
    assert.equal(one.status, 200);
    assert.equal(one.body, '{"decision":true}');

    const session = h2connect(base, { ca: pem });
    try {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request({
          ':method': 'POST',
          ':path': '/access/v1/evaluation',
          'content-type': 'application/json',
          authorization: `Bearer ${PDP}`,
        });
        let status = 0;
        let body = '';
        s.on('response', (h) => {
          status = Number(h[':status']);
        });
        s.on('data', (c: Buffer) => {
          body += c.toString('utf8');
        });
        s.on('end', () => resolve({ status, body }));
        s.on('error', reject);
        s.end(evaluation);
      });
      assert.equal(session.alpnProtocol, 'h2');
      assert.deepEqual(reply, { status: 200, body: '{"decision":true}' });
      // A refusal that closes the connection on HTTP/1 (401) is a plain answer on HTTP/2.
      const refused = await new Promise<number>((resolve, reject) => {
        const s = session.request({ ':method': 'POST', ':path': '/access/v1/evaluation' });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.resume();
        s.on('error', reject);
        s.end('{}');
      });
      assert.equal(refused, 401);
    } finally {
      session.close();
    }
  });

  test('discovery publishes the configured public URL', async () => {
    const r = await https1('/.well-known/authzen-configuration');
    assert.equal(r.status, 200);
    const meta = JSON.parse(r.body) as Record<string, string>;
    assert.equal(meta.policy_decision_point, 'https://pdp.example.com');
    assert.equal(meta.access_evaluation_endpoint, 'https://pdp.example.com/access/v1/evaluation');
  });

  test('an MCP agent (official SDK) works through the TLS gateway, and the policy still applies', async () => {
    const dispatcher = new Agent({ connect: { ca: pem } });
    const client = new Client({ name: 'tls-agent', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${KEY}` } },
      fetch: ((url: string | URL, init?: RequestInit) =>
        undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch,
    });
    await client.connect(transport);
    try {
      const tools = await client.listTools();
      assert.deepEqual(
        tools.tools.map((t) => t.name),
        ['memory.read_graph'],
      );
      const ok = await client.callTool({ name: 'memory.read_graph', arguments: {} });
      assert.notEqual(ok.isError, true);
      const denied = await client.callTool({
        name: 'memory.delete_entities',
        arguments: { entityNames: ['x'] },
      });
      assert.equal(denied.isError, true);
    } finally {
      await client.close();
      await dispatcher.close();
    }
  });

  test('a plaintext client on the TLS port gets no answer', async () => {
    const port = Number(new URL(base).port);
    const got = await new Promise<string>((resolve) => {
      const s = netConnect(port, '127.0.0.1', () => s.write('GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n'));
      let data = '';
      s.on('data', (c: Buffer) => {
        data += c.toString('latin1');
      });
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
    });
    assert.ok(!got.includes('openapi'), 'nothing was served in plaintext');
  });

  test('deadlines hold over TLS: a stalled handshake, stalled HTTP/1.1 headers, an idle HTTP/2 session', async () => {
    const port = Number(new URL(base).port);
    const closedWithin = (open: () => { once(e: 'close', f: () => void): unknown }, ms: number) =>
      new Promise<number>((resolve, reject) => {
        const t0 = Date.now();
        const s = open();
        const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
        s.once('close', () => {
          clearTimeout(timer);
          resolve(Date.now() - t0);
        });
      });
    // No handshake at all: cut at the header deadline (600 ms).
    const raw = await closedWithin(() => netConnect(port, '127.0.0.1').on('error', () => {}), 3000);
    assert.ok(raw >= 500, `raw socket closed after ${raw} ms`);
    // Handshake done, headers never finished.
    const slow = await closedWithin(() => {
      const s = tlsConnect({
        port,
        host: '127.0.0.1',
        ca: pem,
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      });
      s.on('secureConnect', () => s.write('POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
      s.on('error', () => {});
      return s;
    }, 4000);
    assert.ok(slow >= 500, `stalled headers closed after ${slow} ms`);
    // An HTTP/2 session that opens no stream: closed after the keep-alive deadline (800 ms).
    const idle = await closedWithin(() => h2connect(base, { ca: pem }).on('error', () => {}), 4000);
    assert.ok(idle >= 700, `idle h2 session closed after ${idle} ms`);
  });

  test('a new certificate is picked up without a restart; a broken one is refused and the old kept', async () => {
    const before = (await https1('/openapi.json')).cert.fingerprint256;
    const second = makeCert(dir, 'second', 'renewed.localhost');
    copyFileSync(second.cert, join(dir, 'cert.pem'));
    copyFileSync(second.key, join(dir, 'key.pem'));
    let after = before;
    for (let i = 0; i < 60 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = (
        await https1('/openapi.json', { ca: second.pem }).catch(() => ({ cert: { fingerprint256: before } }))
      ).cert.fingerprint256;
    }
    assert.notEqual(after, before, 'the renewed certificate is served');
    assert.ok(logs.some((l) => /certificate reloaded/.test(l)));

    // A key that does not belong to the certificate: refused, the renewed pair keeps serving.
    const third = makeCert(dir, 'third');
    copyFileSync(third.key, join(dir, 'key.pem'));
    for (let i = 0; i < 40 && !logs.some((l) => /kept the current certificate/.test(l)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(
      logs.some((l) => /kept the current certificate/.test(l)),
      logs.join('\n'),
    );
    const still = await https1('/openapi.json', { ca: second.pem });
    assert.equal(still.status, 200);
    assert.equal(still.cert.fingerprint256, after);
    pem = second.pem;
  });

  test('missing or mismatched TLS files stop serve from starting, naming the file', async () => {
    writeConfig('  tls: { cert: ./nope.pem, key: ./key.pem }\n');
    await assert.rejects(
      startServe(loadConfigFile(join(dir, 'execlayer.yaml')), { port: 0 }),
      (e: unknown) => {
        assert.ok(e instanceof ServeError);
        assert.match(e.message, /cannot read the TLS certificate file `.*nope\.pem`/);
        return true;
      },
    );
    const a = makeCert(dir, 'a');
    const b = makeCert(dir, 'b');
    writeConfig(`  tls: { cert: ${a.cert}, key: ${b.key} }\n`);
    await assert.rejects(
      startServe(loadConfigFile(join(dir, 'execlayer.yaml')), { port: 0 }),
      /cannot be used together/,
    );
  });
});

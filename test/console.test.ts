/**
 * The operator console in real Chromium (Debian's, driven by playwright-core) against the real `serve`
 * stack: SQLite store in a temp dir, the MCP memory server as the upstream, the official SDK client as the
 * agent over Streamable HTTP. Log in; a denied call shows up live within 1 s, its arguments as text and its
 * inclusion proof checked in the page; an approved call runs exactly once; a suspension refuses the next
 * call; a changed tool definition shows as a diff; a viewer cannot approve; no page or API without a
 * session; CSRF refused; accessibility checked with axe-core.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import type { AuditLog } from '../src/audit/log.js';
import { type RunningServer, startServe } from '../src/cli/serve.js';
import { loadConfigFile } from '../src/config/load.js';
import { hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { CONTENT_SECURITY_POLICY } from '../src/enforce/console/index.js';
import { hashToolDefinition, SqliteToolPinStore } from '../src/enforce/mcp/pins.js';
import { connectDirect, MEMORY, text } from './gateway-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const AGENT = newApiKey(); // support-bot
const VIEWER = newApiKey();
const LEAD = newApiKey(); // approver
const OPS = newApiKey(); // operator
const XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';

const POLICY = `version: 1
agents:
  support-bot:
    owner: support@acme.com
    purpose: keeps notes about customers
    roles: [notes]
roles:
  notes:
    - id: read
      allow: [memory.read_graph, memory.open_nodes]
      limit: { calls: 100, per: hour }
    - id: no-search
      deny: memory.search_nodes
    - id: create-needs-approval
      ask: memory.create_entities
`;

let dir: string;
let memoryFile: string;
let running: RunningServer;
let base: string;
let browser: Browser | undefined;
const shots: string[] = [];

before(async () => {
  if (!existsSync(CHROMIUM)) return;
  dir = mkdtempSync(join(tmpdir(), 'execlayer-console-'));
  memoryFile = join(dir, 'memory.jsonl');
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  const key = (k: string, agent: string, roles?: string[]) =>
    `    - { sha256: ${hashApiKey(k)}, agent: "${agent}"${roles ? `, roles: [${roles.join(', ')}]` : ''} }`;
  writeFileSync(
    join(dir, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
upstreams:
  memory:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(MEMORY)}]
    env: { MEMORY_FILE_PATH: ${JSON.stringify(memoryFile)} }
auth:
  apiKeys:
${[
  key(AGENT, 'support-bot'),
  key(VIEWER, 'watcher@acme.com', ['viewer']),
  key(LEAD, 'lead@acme.com', ['approver']),
  key(OPS, 'ops@acme.com', ['operator']),
].join('\n')}
http: { port: 0 }
`,
  );
  // An earlier pin of `memory.read_graph` with another description: the upstream now serves a changed one.
  const direct = await connectDirect(process.execPath, [MEMORY], { MEMORY_FILE_PATH: memoryFile });
  const real = (await direct.listTools()).tools.find((t) => t.name === 'read_graph');
  await direct.close();
  assert.ok(real);
  const earlier = {
    name: 'read_graph',
    description: 'Read the knowledge graph.',
    inputSchema: real.inputSchema,
  };
  running = await startServe(loadConfigFile(join(dir, 'execlayer.yaml')), { port: 0 });
  // Before any session lists the upstream's tools (the store file exists once serve has opened it).
  const pins = new SqliteToolPinStore(join(dir, 'state', 'execlayer.db'));
  await pins.check('memory.read_graph', hashToolDefinition(earlier));
  await pins.close();
  base = running.http.url.replace(/\/mcp$/, '');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  await running?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function loggedIn(key: string): Promise<{ context: BrowserContext; page: Page }> {
  assert.ok(browser);
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/login$/, 'an anonymous visit is sent to the login form');
  await page.fill('#key', key);
  await Promise.all([page.waitForURL(`${base}/console`), page.click('button[type=submit]')]);
  return { context, page };
}

async function agentClient(): Promise<Client> {
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(running.http.url), {
      requestInit: { headers: { authorization: `Bearer ${AGENT}` } },
    }),
  );
  return client;
}

async function shot(page: Page, name: string): Promise<void> {
  const file = join(tmpdir(), `execlayer-console-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

async function axe(page: Page): Promise<Array<{ id: string; nodes: number }>> {
  const source = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated by the test driver, not injected as a page script: the page's CSP forbids inline scripts.
  await page.evaluate(source);
  return page.evaluate(async () => {
    const w = globalThis as unknown as {
      axe: { run(o: unknown): Promise<{ violations: Array<{ id: string; nodes: unknown[] }> }> };
    };
    const r = await w.axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
    return r.violations.map((v) => ({ id: v.id, nodes: v.nodes.length }));
  });
}

function auditLog(): AuditLog {
  return running.opened.audit as AuditLog;
}

const skip = !existsSync(CHROMIUM) ? `Debian chromium is not installed at ${CHROMIUM}` : false;

describe('console security without a session', { skip }, () => {
  test('no page or API answers without authentication', async () => {
    for (const path of ['/console', '/console/approvals', '/console/agents', '/console/audit']) {
      const r = await fetch(`${base}${path}`, { redirect: 'manual' });
      assert.equal(r.status, 303, path);
      assert.equal(r.headers.get('location'), '/console/login');
    }
    assert.equal((await fetch(`${base}/console/events`)).status, 401);
    assert.equal((await fetch(`${base}/console/api/proof/0`)).status, 401);
    const post = await fetch(`${base}/console/agents/support-bot/suspend`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'reason=x',
    });
    assert.equal(post.status, 401);
    assert.equal((await running.opened.state.isSuspended('support-bot')).suspended, false);
    // A bearer key is not a console session.
    const bearer = await fetch(`${base}/console`, {
      headers: { authorization: `Bearer ${OPS}` },
      redirect: 'manual',
    });
    assert.equal(bearer.status, 303);
  });

  test('pages carry a strict CSP; an agent key without a console role cannot log in', async () => {
    const r = await fetch(`${base}/console/login`);
    assert.equal(r.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-inline|unsafe-eval|\*/);
    assert.ok(browser);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/console/login`);
    await page.fill('#key', AGENT);
    await page.click('button[type=submit]');
    await page.waitForSelector('.error');
    assert.match((await page.textContent('.error')) ?? '', /no console role/);
    const cookies = await context.cookies();
    assert.equal(
      cookies.find((c) => c.name === 'exl_console'),
      undefined,
      'no session cookie',
    );
    await context.close();
  });
});

describe('console in the browser', { skip }, () => {
  test('log in; a denied call appears live within 1 s, as text, with its proof verified in the page', async () => {
    const { context, page } = await loggedIn(OPS);
    const cookie = (await context.cookies()).find((c) => c.name === 'exl_console');
    assert.ok(cookie);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    await page.locator('#live-status', { hasText: /^Live/ }).waitFor();
    const agent = await agentClient();
    try {
      const r = await agent.callTool({ name: 'memory.search_nodes', arguments: { query: XSS } });
      const t0 = Date.now();
      assert.equal(r.isError, true, 'the call is denied');
      const row = page.locator('#decisions tbody tr', { hasText: 'memory.search_nodes' }).first();
      await row.waitFor({ timeout: 1000 });
      const shownWithin = Date.now() - t0;
      assert.ok(shownWithin <= 1000, `shown after ${shownWithin} ms`);
      assert.match((await row.textContent()) ?? '', /deny/);
      await shot(page, 'live');
      await auditLog().flush();
      await Promise.all([page.waitForURL(/\/console\/decisions\//), row.locator('a').click()]);
      assert.equal(
        await page.textContent('#args').then((s) => s?.includes('<script>window.__xss=1</script>')),
        true,
      );
      const xss = await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss);
      assert.equal(xss, undefined, 'the argument was shown as text, never run');
      await page.locator('#proof-status', { hasText: /^Verified in this page/ }).waitFor();
      await shot(page, 'decision');
      assert.deepEqual(await axe(page), [], 'no WCAG A/AA violations on the decision page');
    } finally {
      await agent.close();
      await context.close();
    }
  });

  test('a tampered proof is refused by the page', async () => {
    const { context, page } = await loggedIn(VIEWER);
    try {
      const [rec] = await auditLog().query({ type: 'decision', order: 'desc', limit: 1 });
      assert.ok(rec?.event?.type === 'decision');
      // The server is honest; the test edits the proof on its way to the page.
      await page.route('**/console/api/proof/*', async (route) => {
        const res = await route.fetch();
        const body = await res.json();
        body.proof.record.event.decision.reason = 'allowed, nothing to see';
        await route.fulfill({ response: res, json: body });
      });
      await page.goto(`${base}/console/decisions/${rec.event.decision.id}`);
      await page.locator('#proof-status', { hasText: /content was changed/ }).waitFor();
    } finally {
      await context.close();
    }
  });

  test('approve a pending call in the console: the retry runs exactly once; a viewer cannot approve', async () => {
    const agent = await agentClient();
    const lead = await loggedIn(LEAD);
    const viewer = await loggedIn(VIEWER);
    try {
      const args = { entities: [{ name: 'Ada', entityType: 'person', observations: ['prefers email'] }] };
      const first = await agent.callTool({ name: 'memory.create_entities', arguments: args });
      assert.equal(first.isError, true);
      const id = /approval pending \(id (apr_[0-9a-f]+)\)/.exec(text(first))?.[1];
      assert.ok(id, text(first));
      assert.equal(existsSync(memoryFile) ? readFileSync(memoryFile, 'utf8') : '', '', 'nothing ran yet');

      await viewer.page.goto(`${base}/console/approvals`);
      const card = viewer.page.locator(`article[id="${id}"]`);
      await card.waitFor();
      assert.match((await card.textContent()) ?? '', /Your role cannot decide approvals/);
      assert.equal(await card.locator('button').count(), 0);
      // Even a hand-made form with the viewer's own CSRF token is refused.
      const csrf = await viewer.page.getAttribute('input[name=_csrf]', 'value');
      const forged = await viewer.page.request.post(`${base}/console/approvals/${id}/decide`, {
        form: { _csrf: csrf ?? '', verdict: 'approve', note: 'sneaky' },
        maxRedirects: 0,
      });
      assert.equal(forged.status(), 403);
      assert.equal((await running.opened.approvals.get(id))?.status, 'pending');

      await lead.page.goto(`${base}/console/approvals`);
      const mine = lead.page.locator(`article[id="${id}"]`);
      assert.match((await mine.textContent()) ?? '', /memory\.create_entities/);
      assert.match((await mine.textContent()) ?? '', /prefers email/);
      await mine.locator('input[name=note]').fill('customer asked for it');
      await shot(lead.page, 'approvals');
      assert.deepEqual(await axe(lead.page), [], 'no WCAG A/AA violations on the approvals page');
      await Promise.all([
        lead.page.waitForURL(`${base}/console/approvals`),
        mine.locator('button[value=approve]').click(),
      ]);
      assert.equal((await running.opened.approvals.get(id))?.status, 'granted');
      assert.match((await lead.page.textContent('main')) ?? '', /customer asked for it/);

      const retry = await agent.callTool({ name: 'memory.create_entities', arguments: args });
      assert.notEqual(retry.isError, true, text(retry));
      const again = await agent.callTool({ name: 'memory.create_entities', arguments: args });
      assert.equal(again.isError, true, 'the grant was single use');
      const stored = readFileSync(memoryFile, 'utf8');
      assert.equal(stored.match(/"name":"Ada"/g)?.length, 1, 'the approved call ran exactly once');
    } finally {
      await agent.close();
      await lead.context.close();
      await viewer.context.close();
    }
  });

  test('suspend an agent in the console: its next call is refused; CSRF is refused', async () => {
    const agent = await agentClient();
    const { context, page } = await loggedIn(OPS);
    try {
      assert.notEqual(
        (await agent.callTool({ name: 'memory.open_nodes', arguments: { names: ['Ada'] } })).isError,
        true,
      );
      const noToken = await page.request.post(`${base}/console/agents/support-bot/suspend`, {
        form: { reason: 'no token' },
        maxRedirects: 0,
      });
      assert.equal(noToken.status(), 403, 'a form without the CSRF token is refused');
      const wrong = await page.request.post(`${base}/console/agents/support-bot/suspend`, {
        form: { _csrf: 'x'.repeat(43), reason: 'wrong token' },
        maxRedirects: 0,
      });
      assert.equal(wrong.status(), 403);
      assert.equal((await running.opened.state.isSuspended('support-bot')).suspended, false);

      await page.goto(`${base}/console/agents`);
      await page.fill('#reason-support-bot', 'runaway loop <b>');
      await Promise.all([page.waitForURL(`${base}/console/agents`), page.click('text=Suspend support-bot')]);
      assert.match((await page.textContent('main')) ?? '', /Suspended by ops@acme\.com .*runaway loop <b>/s);
      await shot(page, 'agents');
      assert.deepEqual(await axe(page), [], 'no WCAG A/AA violations on the agents page');
      const refused = await agent.callTool({ name: 'memory.open_nodes', arguments: { names: ['Ada'] } });
      assert.equal(refused.isError, true);
      assert.match(text(refused), /suspended by ops@acme\.com/);
      await Promise.all([page.waitForURL(`${base}/console/agents`), page.click('text=Resume support-bot')]);
      assert.notEqual(
        (await agent.callTool({ name: 'memory.open_nodes', arguments: { names: ['Ada'] } })).isError,
        true,
      );
    } finally {
      await agent.close();
      await context.close();
    }
  });

  test('a changed tool definition shows as a readable diff, and approving it needs the exact new hash', async () => {
    const agent = await agentClient();
    const { context, page } = await loggedIn(OPS);
    try {
      const listed = (await agent.listTools()).tools.map((t) => t.name);
      assert.ok(!listed.includes('memory.read_graph'), 'the changed tool is held back');
      await page.goto(`${base}/console/tools`);
      await Promise.all([
        page.waitForURL(/\/console\/tools\/memory\.read_graph$/),
        page.click('text=memory.read_graph'),
      ]);
      const del = await page.locator('#diff .del').allTextContents();
      const add = await page.locator('#diff .add').allTextContents();
      assert.ok(
        del.some((l) => l.includes('"description": "Read the knowledge graph."')),
        del.join(''),
      );
      assert.ok(
        add.some((l) => l.includes('"description"') && !l.includes('"Read the knowledge graph."')),
        add.join(''),
      );
      await shot(page, 'tool-diff');
      assert.deepEqual(await axe(page), [], 'no WCAG A/AA violations on the tool page');
      const csrf = await page.getAttribute('input[name=_csrf]', 'value');
      const stale = await page.request.post(`${base}/console/tools/memory.read_graph/approve`, {
        form: { _csrf: csrf ?? '', hash: 'f'.repeat(64) },
        maxRedirects: 0,
      });
      assert.equal(stale.status(), 409, 'approving another hash than the one shown is refused');
      await Promise.all([
        page.waitForURL(/\/console\/tools\/memory\.read_graph$/),
        page.click('text=Approve the new definition'),
      ]);
      const events = await auditLog().query({ type: 'tool', tool: 'memory.read_graph' });
      assert.ok(
        events.some(
          (r) => r.event?.type === 'tool' && r.event.status === 'approved' && r.event.by === 'ops@acme.com',
        ),
      );
    } finally {
      await agent.close();
      await context.close();
    }
  });

  test('policy replay shows the impact of a candidate; the audit page names the gap report as not configured', async () => {
    const { context, page } = await loggedIn(OPS);
    try {
      await page.goto(`${base}/console/policy`);
      await page.fill(
        '#candidate',
        POLICY.replace('deny: memory.search_nodes', 'allow: memory.search_nodes'),
      );
      await Promise.all([
        page.waitForURL(`${base}/console/policy/replay`),
        page.click('text=Replay the recorded decisions'),
      ]);
      const result = (await page.textContent('#replay-result')) ?? '';
      // The denied search is allowed by the candidate (replay re-decides by policy alone: calls refused by
      // the stop switch or approved by a grant show as changes too).
      const row = page.locator('#replay-result tr', { hasText: 'memory.search_nodes' });
      assert.equal(await row.count(), 1, result);
      assert.match((await row.textContent()) ?? '', /deny \(no-search\).*allow \(no-search\)/);
      assert.match(result, /Newly allowed: [1-9]/);
      assert.equal(running.opened.layer.engine.policy.agents.size, 1, 'nothing changed');
      await shot(page, 'policy');
      await page.goto(`${base}/console/audit`);
      assert.match((await page.textContent('#gap-report')) ?? '', /not configured/);
      assert.match((await page.textContent('main')) ?? '', /Last signed checkpoint/);
      assert.deepEqual(await axe(page), [], 'no WCAG A/AA violations on the audit page');
      console.log(`screenshots: ${shots.join(' ')}`);
    } finally {
      await context.close();
    }
  });
});

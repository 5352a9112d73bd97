/**
 * `execlayer demo`: the gateway on embedded defaults, end to end. A real MCP filesystem server sits
 * behind the gateway; the official MCP client plays the support agent; the support policy decides;
 * the SQLite audit trail records every decision and is verified at the end.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { openAuditLog } from '../audit/log.js';
import { parseConfig } from '../config/load.js';
import { McpGateway } from '../enforce/mcp/gateway.js';
import { openLayer } from '../enforce/mcp/open-layer.js';
import { EXIT, flags, out, printJson, runCommand } from './util.js';

const HELP = `usage: execlayer demo [--dir <dir>] [--json]

Runs the gateway end to end on embedded defaults: the MCP filesystem server (@modelcontextprotocol/
server-filesystem, or a built-in file server with the same tools when it is not installed) behind the
gateway, the official MCP client as the agent \`support-bot\`, the support policy (examples/demo/
policy.yaml, copied to <dir>/policy.yaml), and a SQLite audit trail that is verified at the end.

options:
  --dir <dir>   working directory for the demo's files, policy and database (default
                /tmp/execlayer-demo); the knowledge base is <dir>/kb
  --json        print the steps as JSON
  -h, --help    show this help

exit codes: 0 every step behaved as the policy says, 1 a step did not, 2 usage error, 3 could not start
`;

interface Step {
  step: string;
  expected: 'allow' | 'deny';
  got: 'allow' | 'deny';
  detail: string;
  ok: boolean;
}

export async function demoCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values } = flags(argv, { dir: { type: 'string' }, json: { type: 'boolean' } }, false);
    if (values.help) {
      out(HELP);
      return EXIT.ok;
    }
    const dir = resolve(values.dir ?? '/tmp/execlayer-demo');
    const here = dirname(fileURLToPath(import.meta.url));
    const upstream = demoUpstream(here);

    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'kb'), { recursive: true });
    writeFileSync(join(dir, 'kb/returns.md'), '# Returns\nCustomers may return items within 30 days.\n');
    writeFileSync(join(dir, 'secrets.txt'), 'payroll: confidential\n');
    // The shipped demo policy names /tmp/execlayer-demo; a copy in the demo directory names that one.
    const template = readFileSync(join(here, '../../examples/demo/policy.yaml'), 'utf8');
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, template.replaceAll('/tmp/execlayer-demo', dir));
    const store = `sqlite:${join(dir, 'execlayer.db')}`;
    const config = parseConfig(
      JSON.stringify({
        policy,
        store,
        agent: 'support-bot',
        upstreams: { files: { command: process.execPath, args: [upstream.script, dir] } },
      }),
      join(dir, 'execlayer.yaml'),
    );

    const log = (line: string) => {
      if (!values.json) out(line);
    };
    log(`ExecLayer demo — gateway in front of ${upstream.name}, working in ${dir}\n`);
    const opened = await openLayer(config);
    const gateway = new McpGateway(opened.layer, config, { log: () => {} });
    const [agentSide, gatewaySide] = InMemoryTransport.createLinkedPair();
    await gateway.connect(gatewaySide, { agent: 'support-bot', transport: 'stdio' });
    const client = new Client({ name: 'support-bot', version: '1.0.0' });
    await client.connect(agentSide);

    const steps: Step[] = [];
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name);
      log(`tools the agent sees (${tools.length}): ${tools.join(', ')}`);
      log('every other tool of the filesystem server is hidden and uncallable\n');

      const call = async (
        step: string,
        expected: 'allow' | 'deny',
        name: string,
        args: Record<string, unknown>,
        after?: () => string,
      ) => {
        const r = await client.callTool({ name, arguments: args });
        const text = ((r.content as { type: string; text?: string }[])[0]?.text ?? '').split('\n')[0] ?? '';
        const got = r.isError ? 'deny' : 'allow';
        const detail = `${text}${after ? ` — ${after()}` : ''}`;
        steps.push({ step, expected, got, detail, ok: got === expected });
        log(`${got === expected ? '✓' : '✗'} ${got.toUpperCase().padEnd(5)} ${step}\n    ${detail}`);
      };
      const kb = join(dir, 'kb');
      await call('read a knowledge-base article', 'allow', 'files.read_text_file', {
        path: join(kb, 'returns.md'),
      });
      await call('read a file outside the knowledge base', 'deny', 'files.read_text_file', {
        path: join(dir, 'secrets.txt'),
      });
      await call('escape the knowledge base with ../', 'deny', 'files.read_text_file', {
        path: `${kb}/../secrets.txt`,
      });
      await call('a sibling directory with the same prefix', 'deny', 'files.read_text_file', {
        path: `${kb}2/x.md`,
      });
      const target = join(kb, 'new.md');
      await call(
        'write a file (the policy denies writes)',
        'deny',
        'files.write_file',
        { path: target, content: 'x' },
        () => (existsSync(target) ? 'the file WAS written' : 'the file was not written'),
      );
      if (existsSync(target)) (steps.at(-1) as Step).ok = false;
      await call('a case trick on a denied tool', 'deny', 'FILES.WRITE_FILE', { path: target, content: 'x' });
    } finally {
      await client.close();
      await gateway.close();
      await opened.close();
    }

    const audit = await openAuditLog(store);
    const report = await audit.verify();
    await audit.close();
    const verified = report.ok && report.size >= steps.length;
    log(
      `\naudit trail: ${report.size} records, hash chain and Merkle tree ${report.ok ? 'verified' : 'FAILED'}, ${report.checkpoints} signed checkpoints`,
    );
    log(`inspect it: execlayer audit tail --store ${store}`);
    const ok = steps.every((s) => s.ok) && verified;
    if (values.json)
      printJson({
        ok,
        steps,
        audit: { records: report.size, verified: report.ok, checkpoints: report.checkpoints },
      });
    else
      log(ok ? '\nevery action was decided as the policy says.' : '\nSOME STEPS DID NOT BEHAVE AS EXPECTED');
    return ok ? EXIT.ok : EXIT.fail;
  });
}

/**
 * The real MCP filesystem server when it is installed (a repository checkout), else the built-in
 * demo upstream that ships with the package.
 */
function demoUpstream(here: string): { script: string; name: string } {
  try {
    const script = createRequire(import.meta.url).resolve(
      '@modelcontextprotocol/server-filesystem/dist/index.js',
    );
    return { script, name: 'the MCP filesystem server (@modelcontextprotocol/server-filesystem)' };
  } catch {
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    return { script: join(here, `demo-upstream.${ext}`), name: "ExecLayer's built-in demo file server" };
  }
}

#!/usr/bin/env node
import { messageOf } from '../errors.js';
/** The `execlayer` command: dispatches to one module per command, loaded only when used. */
import { EXIT } from './util.js';

type Run = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Run> }> = {
  demo: {
    summary: 'run the gateway end to end on embedded defaults and verify the audit trail',
    load: async () => (await import('./demo.js')).demoCommand,
  },
  init: {
    summary: "put the gateway in front of an MCP client's servers (config, shadow policy, client config)",
    load: async () => (await import('./init.js')).initCommand,
  },
  mcp: {
    summary: 'serve the MCP gateway over stdio (for Claude Desktop/Code, Cursor)',
    load: async () => (await import('./mcp.js')).mcpCommand,
  },
  serve: {
    summary: 'serve the gateway (Streamable HTTP /mcp) and the decision API over HTTP',
    load: async () => (await import('./serve.js')).serveCommand,
  },
  validate: {
    summary: 'check a policy file and report problems as file:line:column',
    load: async () => (await import('./validate.js')).validateCommand,
  },
  test: {
    summary: 'run policy test cases (action → expected effect)',
    load: async () => (await import('./test.js')).testCommand,
  },
  check: {
    summary: 'decide one action and explain the decision',
    load: async () => (await import('./check.js')).checkCommand,
  },
  approvals: {
    summary: 'list, show, approve or deny pending approvals',
    load: async () => (await import('./approvals.js')).approvalsCommand,
  },
  agents: {
    summary: 'suspend or resume agents; emergency stop',
    load: async () => (await import('./agents.js')).agentsCommand,
  },
  audit: {
    summary: 'verify, prove, query, export and prune the tamper-evident audit trail',
    load: async () => (await import('./audit.js')).auditCommand,
  },
  policy: {
    summary: 'suggest a least-privilege policy from recorded traffic',
    load: async () => (await import('./policy.js')).policyCommand,
  },
  replay: {
    summary: 're-decide recorded actions under a candidate policy and report what changes',
    load: async () => (await import('./replay.js')).replayCommand,
  },
  declare: {
    summary: 'check, import (A2A, CycloneDX, registers) and migrate agent declarations',
    load: async () => (await import('./declare.js')).declareCommand,
  },
  gap: {
    summary: 'compare declared, permitted and attempted per agent and capability',
    load: async () => (await import('./gap.js')).gapCommand,
  },
  report: {
    summary: 'build or verify the signed evidence bundle for a time window',
    load: async () => (await import('./report.js')).reportCommand,
  },
  tools: {
    summary: 'list pinned upstream tool definitions; approve changed ones',
    load: async () => (await import('./tools.js')).toolsCommand,
  },
  keys: {
    summary: 'create API keys for agents (stored hashed in the config)',
    load: async () => (await import('./keys.js')).keysCommand,
  },
};

const HELP = `usage: execlayer <command> [options]

ExecLayer decides, before each action an AI agent takes, whether this agent may take this action with
these arguments now — default deny, capabilities by policy, every decision recorded.

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}

Run \`execlayer <command> --help\` for a command's options.

exit codes: 0 ok/allow, 1 denied/failed/invalid, 2 usage error, 3 error, 4 ask/not found
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    const { createRequire } = await import('node:module');
    process.stdout.write(
      `${(createRequire(import.meta.url)('../../package.json') as { version: string }).version}\n`,
    );
    return EXIT.ok;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`error: unknown command \`${name}\`\n\n${HELP}`);
    return EXIT.usage;
  }
  return (await cmd.load())(rest);
}

// A reader that stops early (`execlayer audit query | head`) closes the pipe: that ends the output, it is
// not an error worth a stack trace. Any other write error is reported in one line.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
    process.exitCode = EXIT.error;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: ${messageOf(e)}\n`);
    process.exitCode = EXIT.error;
  },
);

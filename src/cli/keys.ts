/** `execlayer keys`: create API keys for the HTTP front doors and hash existing ones. */
import { hashApiKey, newApiKey } from '../enforce/auth.js';
import { EXIT, flags, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer keys new --agent <id> [--json]
       execlayer keys hash [<key>]        (reads the key from stdin when not given)

new    prints a fresh random API key (shown once; store it in the agent's secret store) and the line
       to add under \`auth: apiKeys:\` in execlayer.yaml. Only the sha256 goes into the config.
hash   prints the sha256 of an existing key, the form the config stores.

exit codes: 0 ok, 2 usage error
`;

/** Runs `execlayer keys …`. */
export async function keysCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values, positionals } = flags(argv, {
      agent: { type: 'string', short: 'a' },
      json: { type: 'boolean' },
    });
    const [sub, arg] = positionals;
    if (values.help || sub === undefined) {
      process.stdout.write(HELP);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    if (sub === 'new') {
      const agent = values.agent;
      if (!agent || !/^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/.test(agent)) {
        throw new UsageError('`keys new` needs `--agent <id>` (letters, digits, `_.@:-`)');
      }
      const key = newApiKey();
      const sha256 = hashApiKey(key);
      if (values.json) printJson({ key, sha256, agent });
      else {
        process.stdout.write(`key:    ${key}\n`);
        process.stdout.write(`config: add under auth.apiKeys in execlayer.yaml:\n`);
        process.stdout.write(`  - { sha256: ${sha256}, agent: ${agent} }\n`);
      }
      return EXIT.ok;
    }
    if (sub === 'hash') {
      let key = arg;
      if (key === undefined) {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        key = Buffer.concat(chunks).toString('utf8').trim();
      }
      if (!key) throw new UsageError('no key given');
      const sha256 = hashApiKey(key);
      if (values.json) printJson({ sha256 });
      else process.stdout.write(`${sha256}\n`);
      return EXIT.ok;
    }
    throw new UsageError(`unknown subcommand \`${sub}\`: use \`new\` or \`hash\``);
  });
}

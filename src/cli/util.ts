/** Shared CLI plumbing: flags, exit codes, output. Commands return exit codes; only main.ts exits. */
import { parseArgs } from 'node:util';
import { messageOf } from '../errors.js';

/** Exit codes shared by every command (documented in the README and in `--help`). */
export const EXIT = {
  /** Success; for `check`, the action is allowed. */
  ok: 0,
  /** A negative result: denied, a test case failed, an invalid policy, a failed verification. */
  fail: 1,
  /** The command line was wrong. */
  usage: 2,
  /** Something could not be done: unreadable file, store unavailable, internal error. */
  error: 3,
  /** `check`: the action needs human approval; approvals/agents: not found or not allowed. */
  ask: 4,
  /** `audit verify`: the log is intact but self-signed (no trusted key or fingerprint was given). */
  selfSigned: 5,
} as const;

export class UsageError extends Error {
  readonly code = 'usage';
}

/** Flag definitions, as node:util parseArgs takes them. */
export type Options = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** Parsed flags: string options as strings, boolean options as booleans. */
export interface Parsed<O extends Options> {
  values: { [K in keyof O]?: O[K]['type'] extends 'string' ? string : boolean } & { help?: boolean };
  positionals: string[];
}

/** Parses flags strictly; unknown flags and missing values become UsageError with a clear message. */
export function flags<O extends Options>(argv: string[], options: O, allowPositionals = true): Parsed<O> {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals,
      strict: true,
    });
    return parsed as unknown as Parsed<O>;
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '').toLowerCase());
  }
}

/** Runs a command body, turning UsageError into exit 2 and anything unexpected into exit 3 (no stack). */
export async function runCommand(help: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n\n${help}`);
      return EXIT.usage;
    }
    process.stderr.write(`error: ${messageOf(e)}\n`);
    return EXIT.error;
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/**
 * `execlayer audit …`: verify the audit trail, prove and check single records, read, query, export and prune.
 * Exit codes: 0 ok, 1 verification failed (tampering), 2 usage error, 3 store error, 5 (verify) intact but
 * self-signed: no trusted key was given.
 */

import type { KeyObject } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import type { Checkpoint } from '../audit/checkpoint.js';
import {
  FINGERPRINT_PATTERN,
  keyFingerprint,
  keyIdOf,
  parsePublicKey,
  readSigningKey,
} from '../audit/checkpoint.js';
import { AuditError, isAuditError } from '../audit/errors.js';
import { csvHeader, csvLine, jsonLine } from '../audit/export.js';
import {
  DEFAULT_RETENTION_MS,
  defaultKeyPath,
  defaultStoreUrl,
  openAuditLog,
  openStore,
  parseStoreUrl,
  queryRecords,
} from '../audit/log.js';
import { type AuditRecord, flatten, toAuditRecord } from '../audit/record.js';
import type { AuditStore, RecordQuery } from '../audit/store.js';
import { type VerifyReport, verifyProof, verifyStore } from '../audit/verify.js';
import { messageOf } from '../errors.js';
import { parseDuration } from '../policy/duration.js';
import { EXIT, flags, type Options, UsageError } from './util.js';

const COMMON = `common options:
  --store <url>     sqlite:<file> or postgres://… (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --json            machine-readable output
  -h, --help        this help

exit codes: 0 ok, 1 verification failed, 2 usage error, 3 store error,
            5 (verify) intact but self-signed: checked only against the key the log names itself
`;

const HELP = `usage: execlayer audit <command> [options]

The tamper-evident audit trail: every decision, outcome, approval and policy change, hash-chained, in a
Merkle tree with Ed25519-signed checkpoints.

commands:
  verify                 recompute the chain, every checkpoint root, signature and consistency proof
  proof <seq>            print an inclusion proof for one record (JSON), verifiable offline
  verify-proof <file|->  check an inclusion proof with only the public key
  tail [-n N]            the last records (--follow to keep printing new ones)
  query                  records by agent, tool, effect, rule, type and time
  export                 all (or matching) records as JSON Lines or CSV
  prune                  remove content older than the retention period (default 183d), keeping hashes
  key --public           print the public key that verifies this log's checkpoints

Run \`execlayer audit <command> --help\` for its options.

${COMMON}`;

const SUB_HELP: Record<string, string> = {
  verify: `usage: execlayer audit verify [--store <url>] [--key <public.pem> | --fingerprint <sha256:…> | --config <file>]
                              [--trusted <checkpoint.json>] [--checkpoint-every N] [--progress] [--json]

Recomputes every record hash and chain link, the Merkle root at every checkpoint, every checkpoint
signature and the RFC 6962 consistency proof between consecutive checkpoints, and checks every record's
query columns against its hashed content. Names the first bad sequence number.

The signatures prove something only against a key you trust: pass it with --key, or pin its fingerprint
(--fingerprint, or \`store.keyFingerprint\` in the gateway config with --config). Without one the log is
checked against the key it names itself: whoever can rewrite the whole log can re-sign it with a key
pair of their own, so an intact log is reported SELF-SIGNED and the exit code is 5, not 0.

  --key <file>          the public key (PEM) the log must be signed with (\`execlayer audit key --public\`)
  --fingerprint <fp>    the fingerprint of that key, sha256:<64 hex> (\`execlayer audit key --fingerprint\`)
  --config <file>       the gateway config: its audit store (unless --store) and store.keyFingerprint
  --trusted <file>      a checkpoint held outside the log (JSON {size, root, time, keyId, sig}, or a proof);
                        the log must still contain it. May be repeated.
  --checkpoint-every N  the most records any writer of this log leaves between checkpoints (default 1000,
                        the writers' default); a longer stretch means checkpoints were deleted
  --workers N           ignored (verification runs on one thread); accepted so that older scripts run
  --progress            progress on stderr (default when stderr is a terminal)

${COMMON}`,
  proof: `usage: execlayer audit proof <seq> [--store <url>] [--out <file>]

Prints the inclusion proof of record <seq> against the newest signed checkpoint (signing one first when
the record is not yet covered). Check it anywhere with \`execlayer audit verify-proof\`.

  --out <file>       write the proof there instead of stdout
  --key-file <file>  signing key (default: beside the store)

${COMMON}`,
  'verify-proof': `usage: execlayer audit verify-proof <file|-> --key <public.pem> [--json]

Checks an inclusion proof offline: the record hashes to its hash, the hash is on the audit path to the
checkpoint root, and the checkpoint is signed by the key. Needs no store.

${COMMON}`,
  tail: `usage: execlayer audit tail [-n N] [--follow] [--store <url>] [--json]

  -n, --lines <N>   how many records (default 20)
  -f, --follow      keep printing new records until interrupted

${COMMON}`,
  query: `usage: execlayer audit query [--agent A] [--tool T] [--effect allow|deny|ask] [--rule R] [--type T]
                             [--since 7d|ISO] [--until 7d|ISO] [--limit N] [--store <url>] [--json]

--since/--until take a duration back from now (30m, 12h, 7d) or an ISO 8601 time; --until is exclusive.

${COMMON}`,
  export: `usage: execlayer audit export --format jsonl|csv [--out <file>] [query filters] [--store <url>]

jsonl: one complete record per line (all fields and the hash). csv: the query columns, RFC 4180 quoting;
cells starting with = + - @ are prefixed with ' so spreadsheets do not run them as formulas.
Takes the same filters as \`query\`.

${COMMON}`,
  prune: `usage: execlayer audit prune [--older-than 183d] [--dry-run] [--store <url>] [--json]

Removes the content of records older than the retention period, only up to a signed checkpoint; their
hashes stay, so \`verify\` still passes and still detects tampering. The default, 183 days, is the
six-month minimum the EU AI Act sets for deployers' logs (Art. 26(6)).

${COMMON}`,
  key: `usage: execlayer audit key --public|--fingerprint [--store <url>] [--key-file <file>]

--public prints the public key (PEM) that verifies this log's checkpoints and proofs; --fingerprint
prints its fingerprint (sha256:<hex>) to pin in \`store.keyFingerprint\` or pass to \`audit verify\`.
Give them to auditors. The key comes from the signing key file (default: beside the store).

${COMMON}`,
};

const STORE = { store: { type: 'string' }, json: { type: 'boolean' } } as const satisfies Options;
const FILTERS = {
  agent: { type: 'string' },
  tool: { type: 'string' },
  effect: { type: 'string' },
  rule: { type: 'string' },
  type: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
} as const satisfies Options;

/** `7d` back from now, or an ISO 8601 time; ms since the epoch. */
export function parseTimeFlag(name: string, value: string, now = Date.now()): number {
  const d = parseDuration(value);
  if (d !== undefined) return now - d;
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return t;
  }
  throw new UsageError(`--${name} \`${value}\` is neither a duration (30m, 12h, 7d) nor an iso 8601 time`);
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,15}$/.test(value)) throw new UsageError(`${name} \`${value}\` is not a whole number`);
  return Number(value);
}

function queryFrom(v: Record<string, string | boolean | undefined>): RecordQuery {
  const q: RecordQuery = {};
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  for (const k of ['agent', 'tool', 'rule', 'type'] as const) {
    const s = str(k);
    if (s !== undefined) q[k] = s;
  }
  const effect = str('effect');
  if (effect !== undefined) {
    if (!['allow', 'deny', 'ask'].includes(effect))
      throw new UsageError(`--effect \`${effect}\` is not allow, deny or ask`);
    q.effect = effect;
  }
  const since = str('since');
  if (since !== undefined) q.since = parseTimeFlag('since', since);
  const until = str('until');
  if (until !== undefined) q.until = parseTimeFlag('until', until);
  const limit = str('limit');
  if (limit !== undefined) q.limit = positiveInt('--limit', limit, 0);
  return q;
}

/** Where a command writes: the process's streams, or any writable (tests, embedding). */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const PROCESS_IO: CommandIo = { stdout: process.stdout, stderr: process.stderr };

function humanLine(r: AuditRecord): string {
  const f = flatten(r);
  const parts = [`#${f.seq}`, new Date(f.time).toISOString(), f.type ?? '(pruned)'];
  if (f.status) parts.push(f.status);
  if (f.effect)
    parts.push(f.wouldBe && f.wouldBe !== f.effect ? `${f.effect}(would ${f.wouldBe})` : f.effect);
  if (f.agent) parts.push(f.agent);
  if (f.tool) parts.push(f.tool);
  if (f.type === 'decision') parts.push(`rule=${f.rule ?? '-'}`);
  if (f.reason) parts.push(`— ${f.reason}`);
  return `${parts.join('  ')}\n`;
}

/** What the signatures are checked against, and whether the verifier trusts it independently of the log. */
interface TrustAnchor {
  key: KeyObject;
  fingerprint: string;
  /** `--key <file>`, `--fingerprint`, `<config>: store.keyFingerprint`, or `the log itself`. */
  source: string;
  trust: 'key' | 'fingerprint' | 'self-signed';
  /** Set when the log names a different key than the trusted one: then it fails verification. */
  mismatch?: string;
}

/**
 * The key to verify against. `--key` is used as given. A pinned fingerprint must match the key the log
 * names. Without either the log's own key is used and the result is only "self-signed": a key taken from
 * the log (or from the signing key file beside it) proves nothing against someone who can rewrite both.
 */
async function trustAnchor(
  store: AuditStore,
  keyFlag: string | undefined,
  pinned: { fingerprint: string; source: string } | undefined,
): Promise<TrustAnchor> {
  const recordedPem = await store.publicKey();
  const recorded = recordedPem === null ? null : parsePublicKey(recordedPem);
  if (keyFlag !== undefined) {
    const key = parsePublicKey(readText(keyFlag, 'public key'));
    const anchor: TrustAnchor = { key, fingerprint: keyFingerprint(key), source: keyFlag, trust: 'key' };
    if (recorded === null) {
      anchor.mismatch = `the log names no key at all (it was emptied or re-created), not the trusted key ${anchor.fingerprint} (${keyFlag})`;
    } else if (!recorded.equals(key)) {
      anchor.mismatch = `the log names the key ${keyFingerprint(recorded)}, not the trusted key ${anchor.fingerprint} (${keyFlag})`;
    }
    return anchor;
  }
  if (recorded === null) {
    throw new AuditError('audit_key_error', 'the log has no public key on record: pass --key <public.pem>');
  }
  const fingerprint = keyFingerprint(recorded);
  if (pinned !== undefined) {
    const anchor: TrustAnchor = { key: recorded, fingerprint, source: pinned.source, trust: 'fingerprint' };
    if (fingerprint !== pinned.fingerprint.toLowerCase()) {
      anchor.mismatch = `the log names the key ${fingerprint}, not the pinned ${pinned.fingerprint.toLowerCase()} (${pinned.source})`;
    }
    return anchor;
  }
  return { key: recorded, fingerprint, source: 'the log itself', trust: 'self-signed' };
}

function readText(path: string, what: string): string {
  try {
    return path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} \`${path}\`: ${messageOf(e)}`);
  }
}

function parseTrusted(path: string): Checkpoint {
  let doc: unknown;
  try {
    doc = JSON.parse(readText(path, 'checkpoint'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`\`${path}\` is not json`);
  }
  const cp = ((doc as { checkpoint?: unknown }).checkpoint ?? doc) as Partial<Checkpoint>;
  if (
    typeof cp !== 'object' ||
    cp === null ||
    !Number.isSafeInteger(cp.size) ||
    typeof cp.root !== 'string' ||
    !Number.isSafeInteger(cp.time) ||
    typeof cp.sig !== 'string'
  ) {
    throw new UsageError(`\`${path}\` holds no checkpoint {size, root, time, keyId, sig}`);
  }
  return { size: cp.size!, root: cp.root, time: cp.time!, keyId: String(cp.keyId ?? ''), sig: cp.sig };
}

async function withStore<T>(url: string, fn: (store: AuditStore) => Promise<T>): Promise<T> {
  const store = await openStore(url);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function reportText(r: VerifyReport, anchor: TrustAnchor): string {
  const lines: string[] = [];
  if (r.ok && anchor.trust === 'self-signed') {
    lines.push(
      `SELF-SIGNED: ${r.size} records and ${r.checkpoints} checkpoints are consistent, but only with the key the log names itself (${anchor.fingerprint}); anyone who can rewrite the whole log can re-sign it with a key pair of their own. Pass --key <public.pem> or --fingerprint to verify against a key you trust.`,
    );
  } else if (r.ok) {
    lines.push(
      `ok: ${r.size} records verified (${r.pruned} pruned, hashes kept), ${r.checkpoints} signed checkpoints`,
    );
  } else {
    lines.push(`FAILED: first bad record is seq ${r.firstBadSeq}`);
    for (const p of r.problems) lines.push(`  ${p.code} at seq ${p.seq}: ${p.message}`);
  }
  if (r.ok && r.lastCheckpoint) {
    lines.push(
      `last checkpoint: size ${r.lastCheckpoint.size}, root ${r.lastCheckpoint.root}, signed ${new Date(r.lastCheckpoint.time).toISOString()} (key ${r.lastCheckpoint.keyId})`,
    );
  }
  if (r.ok && r.unsignedTail > 0) {
    lines.push(
      `unsigned tail: ${r.unsignedTail} records after the last checkpoint are chain-checked but not yet signed; removing them together with the head row would not be detectable`,
    );
  }
  const how =
    anchor.trust === 'key'
      ? `trusted public key ${anchor.source}`
      : anchor.trust === 'fingerprint'
        ? `pinned fingerprint (${anchor.source})`
        : 'the log itself (not independent)';
  lines.push(`signing key: ${anchor.fingerprint}, from ${how}`);
  lines.push(`${Math.round(r.rate).toLocaleString('en-US')} records/s`);
  return `${lines.join('\n')}\n`;
}

/** A store that cannot be opened because a table of the log is gone: tampering, reported as a failed verify. */
function missingTablesReport(e: AuditError): VerifyReport | null {
  const missing = e.data.missingTables;
  if (!Array.isArray(missing) || missing.length === 0) return null;
  return {
    ok: false,
    firstBadSeq: 0,
    size: 0,
    pruned: 0,
    checkpoints: 0,
    lastCheckpoint: null,
    unsignedTail: 0,
    problems: [
      {
        code: 'table_missing',
        seq: 0,
        message: `the log's ${missing.map((t) => `\`${String(t)}\``).join(', ')} ${missing.length === 1 ? 'table is' : 'tables are'} gone: ${e.message}`,
      },
    ],
    rate: 0,
    elapsedMs: 0,
  };
}

async function verifyCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      ...STORE,
      key: { type: 'string' },
      fingerprint: { type: 'string' },
      config: { type: 'string', short: 'c' },
      trusted: { type: 'string', multiple: true },
      'checkpoint-every': { type: 'string' },
      workers: { type: 'string' },
      progress: { type: 'boolean' },
    },
    false,
  );
  if (values.help) return help('verify', io);
  if (values.workers !== undefined) {
    positiveInt('--workers', values.workers, 0);
    io.stderr.write('note: --workers is ignored: verification runs on one thread\n');
  }
  const every = values['checkpoint-every'];
  const checkpointEvery = every === undefined ? undefined : positiveInt('--checkpoint-every', every, 0);
  if (checkpointEvery === 0) throw new UsageError('--checkpoint-every must be at least 1');
  if (values.key !== undefined && values.fingerprint !== undefined) {
    throw new UsageError('pass either --key or --fingerprint, not both');
  }
  if (values.fingerprint !== undefined && !FINGERPRINT_PATTERN.test(values.fingerprint)) {
    throw new UsageError(`--fingerprint \`${values.fingerprint}\` is not sha256:<64 hex digits>`);
  }
  let url = values.store;
  let pinned: { fingerprint: string; source: string } | undefined;
  if (values.fingerprint !== undefined) pinned = { fingerprint: values.fingerprint, source: '--fingerprint' };
  if (values.config !== undefined) {
    // Loaded only when asked for: the gateway module is large and verification needs none of it otherwise.
    const { loadConfigOrReport } = await import('./mcp.js');
    const config = loadConfigOrReport(values.config, values.json === true);
    if (typeof config === 'number') return config;
    url ??= config.store.audit;
    const fp = config.store.auditKeyFingerprint;
    if (fp !== undefined && pinned === undefined) {
      pinned = { fingerprint: fp, source: `${config.file}: store.keyFingerprint` };
    }
  }
  url ??= defaultStoreUrl();
  const trustedFlag = (values as unknown as { trusted?: string[] }).trusted ?? [];
  const trusted = trustedFlag.map(parseTrusted);
  let store: AuditStore;
  try {
    store = await openStore(url);
  } catch (e) {
    const report = isAuditError(e) ? missingTablesReport(e) : null;
    if (report === null) throw e;
    if (values.json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else io.stdout.write(`FAILED: ${report.problems[0]!.code}: ${report.problems[0]!.message}\n`);
    return EXIT.fail;
  }
  try {
    const anchor = await trustAnchor(store, values.key, pinned);
    const showProgress = values.progress === true || (io.stderr.isTTY === true && values.json !== true);
    let last = 0;
    const onProgress = (done: number, total: number) => {
      const now = Date.now();
      if (now - last < 200 && done < total) return;
      last = now;
      const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
      io.stderr.write(`\rverifying: ${done}/${total} records (${pct}%)`);
    };
    const report = await verifyStore(store, anchor.key, {
      trusted,
      ...(showProgress ? { onProgress } : {}),
      ...(checkpointEvery === undefined ? {} : { checkpointEvery }),
    });
    if (showProgress) io.stderr.write('\n');
    if (anchor.mismatch !== undefined) {
      // INVARIANT: a log signed with any key but the trusted one never verifies, whatever its signatures say.
      report.problems.unshift({ code: 'key_mismatch', seq: 0, message: anchor.mismatch });
      report.ok = false;
      report.firstBadSeq = 0;
    }
    if (values.json)
      io.stdout.write(
        `${JSON.stringify(
          {
            ...report,
            trust: anchor.trust,
            selfSigned: anchor.trust === 'self-signed',
            keyFingerprint: anchor.fingerprint,
            publicKey: anchor.source,
            independentKey: anchor.trust !== 'self-signed',
          },
          null,
          2,
        )}\n`,
      );
    else io.stdout.write(reportText(report, anchor));
    if (!report.ok) return EXIT.fail;
    return anchor.trust === 'self-signed' ? EXIT.selfSigned : EXIT.ok;
  } finally {
    await store.close();
  }
}

async function proofCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(argv, {
    ...STORE,
    out: { type: 'string' },
    'key-file': { type: 'string' },
  });
  if (values.help) return help('proof', io);
  if (positionals.length !== 1) throw new UsageError('proof takes one sequence number');
  const seq = positiveInt('sequence number', positionals[0], 0);
  const url = values.store ?? defaultStoreUrl();
  const log = await openAuditLog(url, values['key-file'] ? { keyPath: values['key-file'] } : {});
  try {
    const head = await log.store.head();
    if (seq >= head.size)
      throw new UsageError(`record ${seq} does not exist (the log has ${head.size} records)`);
    const proof = await log.proof(seq);
    const text = `${JSON.stringify(proof, null, 2)}\n`;
    if (values.out) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(values.out, text);
      if (!values.json) io.stderr.write(`proof of record ${seq} written to ${values.out}\n`);
    } else {
      io.stdout.write(text);
    }
    return EXIT.ok;
  } finally {
    await log.close();
  }
}

async function verifyProofCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(argv, { json: { type: 'boolean' }, key: { type: 'string' } });
  if (values.help) return help('verify-proof', io);
  if (positionals.length !== 1) throw new UsageError('verify-proof takes one file (or - for stdin)');
  if (values.key === undefined) throw new UsageError('verify-proof needs --key <public.pem>');
  const pem = readText(values.key, 'public key');
  let proof: unknown;
  try {
    proof = JSON.parse(readText(positionals[0]!, 'proof'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`\`${positionals[0]}\` is not json`);
  }
  const result = verifyProof(proof, pem);
  const p = proof as { seq?: unknown; checkpoint?: { size?: unknown } };
  if (values.json) io.stdout.write(`${JSON.stringify(result)}\n`);
  else if (result.ok)
    io.stdout.write(
      `ok: record ${String(p.seq)} is in the log of ${String(p.checkpoint?.size)} records signed by this key\n`,
    );
  else io.stdout.write(`FAILED (${result.code}): ${result.message}\n`);
  return result.ok ? EXIT.ok : EXIT.fail;
}

async function tailCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      ...STORE,
      lines: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f' },
    },
    false,
  );
  if (values.help) return help('tail', io);
  const n = positiveInt('-n', values.lines, 20);
  const url = values.store ?? defaultStoreUrl();
  return withStore(url, async (store) => {
    const print = (rows: AuditRecord[]) => {
      for (const r of rows) io.stdout.write(values.json ? jsonLine(r) : humanLine(r));
    };
    const rows = (await store.query({ order: 'desc', limit: n })).map(toAuditRecord).reverse();
    print(rows);
    if (!values.follow) return EXIT.ok;
    let after = rows.at(-1)?.seq ?? (await store.head()).size - 1;
    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      while (!stop) {
        const more = (await store.query({ afterSeq: after, limit: 1000 })).map(toAuditRecord);
        print(more);
        if (more.length > 0) after = more.at(-1)!.seq;
        else await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
    return EXIT.ok;
  });
}

async function queryCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(argv, { ...STORE, ...FILTERS }, false);
  if (values.help) return help('query', io);
  const q = queryFrom(values);
  const url = values.store ?? defaultStoreUrl();
  return withStore(url, async (store) => {
    const rows = await queryRecords(store, q);
    if (values.json) io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    else for (const r of rows) io.stdout.write(humanLine(r));
    return EXIT.ok;
  });
}

async function exportCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    { ...STORE, ...FILTERS, format: { type: 'string' }, out: { type: 'string' } },
    false,
  );
  if (values.help) return help('export', io);
  const format = values.format;
  if (format !== 'jsonl' && format !== 'csv')
    throw new UsageError('export needs --format jsonl or --format csv');
  const q = queryFrom(values);
  const url = values.store ?? defaultStoreUrl();
  return withStore(url, async (store) => {
    const sink: NodeJS.WritableStream = values.out ? createWriteStream(values.out) : io.stdout;
    const put = (s: string) =>
      new Promise<void>((resolve, reject) => {
        if (sink.write(s)) resolve();
        else {
          sink.once('drain', resolve);
          sink.once('error', reject);
        }
      });
    if (format === 'csv') await put(csvHeader());
    let after = -1;
    let left = q.limit ?? Number.POSITIVE_INFINITY;
    let count = 0;
    while (left > 0) {
      const rows = await queryRecords(store, {
        ...q,
        afterSeq: after,
        limit: Math.min(5000, left),
        order: 'asc',
      });
      if (rows.length === 0) break;
      let chunk = '';
      for (const r of rows) chunk += format === 'csv' ? csvLine(r) : jsonLine(r);
      await put(chunk);
      count += rows.length;
      left -= rows.length;
      after = rows.at(-1)!.seq;
    }
    if (values.out) {
      await new Promise<void>((resolve, reject) => {
        (sink as ReturnType<typeof createWriteStream>).end((e?: Error | null) => (e ? reject(e) : resolve()));
      });
      io.stderr.write(`${count} records written to ${values.out}\n`);
    }
    return EXIT.ok;
  });
}

async function pruneCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      ...STORE,
      'older-than': { type: 'string' },
      'dry-run': { type: 'boolean' },
      'key-file': { type: 'string' },
    },
    false,
  );
  if (values.help) return help('prune', io);
  let olderThanMs = DEFAULT_RETENTION_MS;
  if (values['older-than'] !== undefined) {
    const d = parseDuration(values['older-than']);
    if (d === undefined)
      throw new UsageError(`--older-than \`${values['older-than']}\` is not a duration (e.g. 183d)`);
    olderThanMs = d;
  }
  const url = values.store ?? defaultStoreUrl();
  const log = await openAuditLog(url, values['key-file'] ? { keyPath: values['key-file'] } : {});
  try {
    const r = await log.prune({ olderThanMs, dryRun: values['dry-run'] === true });
    if (values.json) io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else {
      const verb = r.dryRun ? 'would prune' : 'pruned';
      io.stdout.write(
        `${verb} ${r.count} records older than ${new Date(r.cutoff).toISOString()}; content below seq ${r.before} is gone, hashes kept${r.checkpoint ? ` (signed checkpoint at size ${r.checkpoint.size})` : ''}\n`,
      );
    }
    return EXIT.ok;
  } finally {
    await log.close();
  }
}

async function keyCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      ...STORE,
      public: { type: 'boolean' },
      fingerprint: { type: 'boolean' },
      'key-file': { type: 'string' },
    },
    false,
  );
  if (values.help) return help('key', io);
  if (!values.public && !values.fingerprint)
    throw new UsageError('key needs --public or --fingerprint (the private key never leaves its file)');
  const url = values.store ?? defaultStoreUrl();
  parseStoreUrl(url);
  const keyFile = values['key-file'] ?? defaultKeyPath(url);
  let pem: string;
  if (existsSync(keyFile)) pem = readSigningKey(keyFile).publicPem;
  else {
    const recorded = await withStore(url, (s) => s.publicKey());
    if (recorded === null)
      throw new AuditError(
        'audit_key_error',
        `no signing key at \`${keyFile}\` and none on record in the log`,
      );
    pem = recorded;
  }
  const publicKey = parsePublicKey(pem);
  if (values.json)
    io.stdout.write(
      `${JSON.stringify({ publicKey: pem, keyId: keyIdOf(publicKey), fingerprint: keyFingerprint(publicKey) })}\n`,
    );
  else if (values.fingerprint) io.stdout.write(`${keyFingerprint(publicKey)}\n`);
  else io.stdout.write(pem);
  return EXIT.ok;
}

function help(sub: string, io: CommandIo): number {
  io.stdout.write(SUB_HELP[sub] ?? HELP);
  return EXIT.ok;
}

const SUBCOMMANDS: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = {
  verify: verifyCmd,
  proof: proofCmd,
  'verify-proof': verifyProofCmd,
  tail: tailCmd,
  query: queryCmd,
  export: exportCmd,
  prune: pruneCmd,
  key: keyCmd,
};

/** Entry point for `execlayer audit …`; returns the exit code. */
export async function auditCommand(argv: string[], io: CommandIo = PROCESS_IO): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(HELP);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  const run = SUBCOMMANDS[sub];
  if (run === undefined) {
    io.stderr.write(`error: unknown audit command \`${sub}\`\n\n${HELP}`);
    return EXIT.usage;
  }
  try {
    return await run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${SUB_HELP[sub] ?? HELP}`);
      return EXIT.usage;
    }
    if (isAuditError(e)) {
      io.stderr.write(`error: ${e.message}\n`);
      return e.code === 'invalid_store_url' || e.code === 'invalid_request' ? EXIT.usage : EXIT.error;
    }
    io.stderr.write(`error: ${messageOf(e)}\n`);
    return EXIT.error;
  }
}

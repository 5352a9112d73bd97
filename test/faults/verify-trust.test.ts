// `execlayer audit verify` anchored to a key the verifier trusts, and the tampering it must name, on real
// logs written by the runtime (createExecLayer deciding real calls), against SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { checkpointMessage } from '../../src/audit/checkpoint.js';
import { auditCommand } from '../../src/cli/audit.js';
import { createExecLayer } from '../../src/runtime/exec-layer.js';
import { tempPostgresDatabase } from '../../src/testing/services.js';

const POLICY = {
  version: 1,
  agents: { 'report-bot': { owner: 'data@acme.com', roles: ['reporter'] } },
  roles: { reporter: [{ id: 'read-reports', allow: 'reports.read' }] },
};

async function audit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => {
    o += d;
  });
  err.on('data', (d) => {
    e += d;
  });
  const code = await auditCommand(argv, { stdout: out, stderr: err });
  await new Promise((r) => setImmediate(r));
  return { code, out: o, err: e };
}

/** A log as an attacker with write access to its database sees it. */
interface Log {
  url: string;
  dir: string;
  /** The signing key file the runtime made. */
  keyPath: string;
  /** The public key, exported before any tampering: what an auditor was given. */
  trustedPem: string;
  sql(statement: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>;
}

interface Backend {
  name: string;
  /** A fresh location, or null when the backend is unavailable (the test was skipped). */
  make(t: TestContext): Promise<{ url: string; dir: string; keyPath: string; store: unknown } | null>;
  sql(url: string, statement: string, params: unknown[]): Promise<Array<Record<string, unknown>>>;
}

const sqlite: Backend = {
  name: 'sqlite',
  async make(t) {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-trust-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, 'audit.db');
    return { url: `sqlite:${db}`, dir, keyPath: `${db}.key`, store: `sqlite:${db}` };
  },
  async sql(url, statement, params) {
    const db = new Database(url.slice('sqlite:'.length));
    try {
      const st = db.prepare(statement.replace(/\$\d+/g, '?'));
      if (st.reader) return st.all(...params) as Array<Record<string, unknown>>;
      st.run(...params);
      return [];
    } finally {
      db.close();
    }
  },
};

const postgres: Backend = {
  name: 'postgres',
  async make(t) {
    const url = await tempPostgresDatabase(t);
    if (url === undefined) return null;
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-trust-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const keyPath = join(dir, 'audit.key');
    const store = {
      audit: url,
      approvals: 'memory:',
      limits: 'memory:',
      state: 'memory:',
      auditKey: keyPath,
    };
    return { url, dir, keyPath, store };
  },
  async sql(url, statement, params) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(statement, params)).rows as Array<Record<string, unknown>>;
    } finally {
      await c.end();
    }
  },
};

/**
 * `n` decisions by the runtime: every third one denied (a tool no rule allows), the rest allowed. Returns
 * the log and the sequence numbers of the denied decisions.
 */
async function runtimeLog(
  t: TestContext,
  backend: Backend,
  n: number,
): Promise<(Log & { denied: number[] }) | null> {
  const where = await backend.make(t);
  if (where === null) return null;
  const layer = await createExecLayer({ policy: POLICY, store: where.store as never });
  try {
    const decisions = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        layer.authorize({
          agent: 'report-bot',
          tool: i % 3 === 1 ? 'reports.delete' : 'reports.read',
          args: { id: i },
        }),
      ),
    );
    assert.equal(decisions.filter((d) => d.effect === 'deny').length, Math.floor((n + 1) / 3));
  } finally {
    await layer.close();
  }
  const log: Log = {
    url: where.url,
    dir: where.dir,
    keyPath: where.keyPath,
    trustedPem: '',
    sql: (s, p = []) => backend.sql(where.url, s, p),
  };
  const pub = await audit('key', '--public', '--store', log.url, '--key-file', log.keyPath);
  assert.equal(pub.code, 0, pub.err);
  log.trustedPem = pub.out;
  const rows = await log.sql("SELECT seq FROM audit_records WHERE effect = 'deny' ORDER BY seq");
  return { ...log, denied: rows.map((r) => Number(r.seq)) };
}

function trustedKeyFile(log: Log): string {
  const f = join(log.dir, 'trusted.pem');
  writeFileSync(f, log.trustedPem);
  return f;
}

async function fingerprint(log: Log): Promise<string> {
  const r = await audit('key', '--fingerprint', '--store', log.url, '--key-file', log.keyPath);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^sha256:[0-9a-f]{64}\n$/);
  return r.out.trim();
}

for (const backend of [sqlite, postgres]) {
  describe(`audit verify anchored to trust: ${backend.name}`, () => {
    it('a log re-signed with a swapped key pair fails against the trusted key and is never "ok" without one', async (t) => {
      const log = await runtimeLog(t, backend, 30);
      if (log === null) return;
      const key = trustedKeyFile(log);
      const fp = await fingerprint(log);
      const config = join(log.dir, 'execlayer.yaml');
      writeFileSync(
        config,
        `policy: ./policy.yaml\nstore:\n  audit: "${log.url}"\n  keyFingerprint: ${fp}\n`,
      );

      // Intact: verified against the key, the fingerprint and the config's pin.
      assert.equal((await audit('verify', '--store', log.url, '--key', key)).code, 0);
      assert.equal((await audit('verify', '--store', log.url, '--fingerprint', fp)).code, 0);
      let r = await audit('verify', '--config', config, '--json');
      assert.equal(r.code, 0, r.out + r.err);
      assert.equal(JSON.parse(r.out).trust, 'fingerprint');

      // The attacker makes a key pair of their own, re-signs every checkpoint, and swaps the public key on
      // record and (SQLite) the signing key file beside the database.
      const attacker = generateKeyPairSync('ed25519');
      const attackerPem = attacker.publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const { sign } = await import('node:crypto');
      const { keyIdOf } = await import('../../src/audit/checkpoint.js');
      const cps = await log.sql('SELECT size, root, time FROM audit_checkpoints ORDER BY size');
      assert.ok(cps.length > 0);
      for (const cp of cps) {
        const msg = checkpointMessage(Number(cp.size), String(cp.root), Number(cp.time));
        const sig = sign(null, msg, attacker.privateKey).toString('base64');
        await log.sql('UPDATE audit_checkpoints SET sig = $1, key_id = $2 WHERE size = $3', [
          sig,
          keyIdOf(attacker.publicKey),
          Number(cp.size),
        ]);
      }
      await log.sql("UPDATE audit_meta SET value = $1 WHERE key = 'public_key'", [attackerPem]);
      writeFileSync(log.keyPath, attacker.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), {
        mode: 0o600,
      });

      r = await audit('verify', '--store', log.url, '--key', key);
      assert.equal(r.code, 1, r.out);
      assert.match(
        r.out,
        /key_mismatch at seq 0: the log names the key sha256:[0-9a-f]{64}, not the trusted key/,
      );
      assert.match(r.out, /checkpoint_signature_invalid/);
      assert.equal((await audit('verify', '--store', log.url, '--fingerprint', fp)).code, 1);
      r = await audit('verify', '--config', config);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /not the pinned sha256:/);

      // No trusted key: the re-signed log is consistent with itself, and that is all that is said.
      r = await audit('verify', '--store', log.url);
      assert.equal(r.code, 5, r.out);
      assert.match(r.out, /^SELF-SIGNED: \d+ records and \d+ checkpoints are consistent/);
      assert.match(r.out, /from the log itself \(not independent\)/);
      assert.doesNotMatch(r.out, /^ok/m);
      r = await audit('verify', '--store', log.url, '--json');
      assert.equal(r.code, 5);
      const report = JSON.parse(r.out);
      assert.equal(report.independentKey, false);
      assert.equal(report.selfSigned, true);
    });

    it('an edited effect column that hides a denied call from `audit query --effect deny` is named', async (t) => {
      const log = await runtimeLog(t, backend, 30);
      if (log === null) return;
      const key = trustedKeyFile(log);
      const seq = log.denied[4]!;
      const denied = async () =>
        (
          JSON.parse((await audit('query', '--store', log.url, '--effect', 'deny', '--json')).out) as Array<{
            seq: number;
          }>
        ).map((x) => x.seq);
      assert.ok((await denied()).includes(seq));

      await log.sql("UPDATE audit_records SET effect = 'allow' WHERE seq = $1", [seq]);
      assert.ok(!(await denied()).includes(seq), 'the edit hides the denied call from the query');
      let r = await audit('verify', '--store', log.url, '--key', key);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`FAILED: first bad record is seq ${seq}\\n`));
      assert.match(
        r.out,
        new RegExp(`record_index_modified at seq ${seq}: .*effect is \`allow\` but the record says \`deny\``),
      );
      // Without a key it is still tampering (exit 1), not "self-signed".
      assert.equal((await audit('verify', '--store', log.url)).code, 1);

      // The other query columns are covered the same way.
      await log.sql("UPDATE audit_records SET effect = 'deny' WHERE seq = $1", [seq]);
      assert.equal((await audit('verify', '--store', log.url, '--key', key)).code, 0);
      for (const [column, value] of [
        ['tool', 'reports.read'],
        ['agent', 'someone-else'],
        ['type', 'outcome'],
        ['rule', 'read-reports'],
        ['decision_id', 'dec_forged'],
      ] as const) {
        const [before] = await log.sql(`SELECT ${column} AS v FROM audit_records WHERE seq = $1`, [seq]);
        await log.sql(`UPDATE audit_records SET ${column} = $1 WHERE seq = $2`, [value, seq]);
        r = await audit('verify', '--store', log.url, '--key', key, '--json');
        assert.equal(r.code, 1, `${column}: ${r.out}`);
        const p = JSON.parse(r.out).problems[0];
        assert.equal(p.code, 'record_index_modified', column);
        assert.equal(p.seq, seq, column);
        assert.match(p.message, new RegExp(`${column} is \`${value}\``));
        await log.sql(`UPDATE audit_records SET ${column} = $1 WHERE seq = $2`, [before!.v, seq]);
      }
      assert.equal((await audit('verify', '--store', log.url, '--key', key)).code, 0);
    });

    it('deleted checkpoints are tampering and the unsigned range is named', async (t) => {
      // More than two checkpoint intervals (1000 records each) of real decisions.
      const log = await runtimeLog(t, backend, 2500);
      if (log === null) return;
      const size = Number((await log.sql('SELECT size FROM audit_head'))[0]!.size);
      const key = trustedKeyFile(log);
      const sizes = (await log.sql('SELECT size FROM audit_checkpoints ORDER BY size')).map((r) =>
        Number(r.size),
      );
      for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i]! - sizes[i - 1]! <= 1000, String(sizes));
      assert.equal(sizes.at(-1), size, 'closing signed the tail');
      assert.equal((await audit('verify', '--store', log.url, '--key', key)).code, 0);

      // Every checkpoint after `keep` deleted, and the head made to agree: the unsigned tail is longer than
      // any writer leaves.
      const keep = sizes.filter((s) => s <= size - 1000).at(-1)!;
      const kept = await log.sql('SELECT time FROM audit_checkpoints WHERE size = $1', [keep]);
      await log.sql('DELETE FROM audit_checkpoints WHERE size > $1', [keep]);
      await log.sql('UPDATE audit_head SET cp_size = $1, cp_time = $2', [keep, Number(kept[0]!.time)]);
      let r = await audit('verify', '--store', log.url, '--key', key, '--json');
      assert.equal(r.code, 1, r.out);
      let p = JSON.parse(r.out).problems[0];
      assert.equal(p.code, 'checkpoint_missing');
      assert.deepEqual(p.range, [keep, size]);
      r = await audit('verify', '--store', log.url, '--key', key);
      assert.match(
        r.out,
        new RegExp(
          `checkpoint_missing at seq ${keep}: records ${keep}\\.\\.${size - 1} \\(${size - keep}\\) follow the last checkpoint`,
        ),
      );
      // A log whose writers checkpointed less often is verified with their setting.
      r = await audit('verify', '--store', log.url, '--key', key, '--checkpoint-every', '5000');
      assert.equal(r.code, 0, r.out);

      // Checkpoints inside the log deleted: the gap is named.
      const fresh = await runtimeLog(t, backend, 2500);
      assert.ok(fresh);
      const freshSizes = (await fresh.sql('SELECT size FROM audit_checkpoints ORDER BY size')).map((r) =>
        Number(r.size),
      );
      const upTo = freshSizes.find((s) => s > 1000)!;
      await fresh.sql('DELETE FROM audit_checkpoints WHERE size < $1', [upTo]);
      r = await audit('verify', '--store', fresh.url, '--key', trustedKeyFile(fresh), '--json');
      assert.equal(r.code, 1, r.out);
      p = JSON.parse(r.out).problems[0];
      assert.equal(p.code, 'checkpoint_missing');
      assert.deepEqual(p.range, [0, upTo]);

      // Only the newest checkpoint deleted, head left alone: the head names the checkpoint that is gone.
      const third = await runtimeLog(t, backend, 30);
      assert.ok(third);
      const last = Number((await third.sql('SELECT max(size) AS s FROM audit_checkpoints'))[0]!.s);
      await third.sql('DELETE FROM audit_checkpoints WHERE size = $1', [last]);
      r = await audit('verify', '--store', third.url, '--key', trustedKeyFile(third), '--json');
      assert.equal(r.code, 1, r.out);
      p = JSON.parse(r.out).problems[0];
      assert.equal(p.code, 'checkpoint_missing');
      assert.equal(p.range[1], last);
    });

    for (const table of ['audit_records', 'audit_checkpoints', 'audit_head', 'audit_meta']) {
      it(`a dropped ${table} table is tampering (exit 1), not a store error`, async (t) => {
        const log = await runtimeLog(t, backend, 9);
        if (log === null) return;
        await log.sql(`DROP TABLE ${table}`);
        let r = await audit('verify', '--store', log.url, '--key', trustedKeyFile(log));
        assert.equal(r.code, 1, r.out + r.err);
        assert.match(r.out, new RegExp(`^FAILED: table_missing: the log's \`${table}\` table is gone`));
        r = await audit('verify', '--store', log.url, '--json');
        assert.equal(r.code, 1);
        assert.equal(JSON.parse(r.out).problems[0].code, 'table_missing');
        // The runtime refuses it too, and creates nothing in its place.
        await assert.rejects(
          createExecLayer({
            policy: POLICY,
            store: log.url.startsWith('sqlite:')
              ? log.url
              : ({
                  audit: log.url,
                  approvals: 'memory:',
                  limits: 'memory:',
                  state: 'memory:',
                  auditKey: log.keyPath,
                } as never),
          }),
          /has no audit_/,
        );
        const left = await log.sql(
          backend.name === 'sqlite'
            ? `SELECT count(*) AS n FROM sqlite_master WHERE name = '${table}'`
            : `SELECT count(*) AS n FROM pg_tables WHERE tablename = '${table}'`,
        );
        assert.equal(Number(left[0]!.n), 0);
      });
    }

    it('a store that cannot be read is still a store error (exit 3)', async (t) => {
      if (backend.name === 'sqlite') {
        const dir = mkdtempSync(join(tmpdir(), 'execlayer-trust-'));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
        const db = join(dir, 'garbage.db');
        writeFileSync(db, Buffer.alloc(8192, 7));
        const r = await audit('verify', '--store', `sqlite:${db}`);
        assert.equal(r.code, 3, r.out + r.err);
      } else {
        // Nothing listens on port 9 of the loopback address.
        const r = await audit('verify', '--store', 'postgres://postgres@127.0.0.1:9/none');
        assert.equal(r.code, 3, r.out + r.err);
      }
    });
  });
}

describe('audit files are owner-only', () => {
  it('the database, its WAL and shared-memory files and the signing key are 0600 whatever the umask', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-modes-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, 'audit.db');
    // The most permissive umask: without an explicit mode SQLite would create 0644 files.
    const saved = process.umask(0);
    t.after(() => process.umask(saved));
    const layer = await createExecLayer({ policy: POLICY, store: `sqlite:${db}` });
    try {
      const d = await layer.authorize({ agent: 'report-bot', tool: 'reports.read', args: { id: 1 } });
      assert.equal(d.effect, 'allow');
      for (const f of [db, `${db}-wal`, `${db}-shm`, `${db}.key`]) {
        assert.ok(existsSync(f), f);
        assert.equal((statSync(f).mode & 0o777).toString(8), '600', f);
      }
      // And the key file holds a private key, which verify never calls a public key.
      assert.match(readFileSync(`${db}.key`, 'utf8'), /BEGIN PRIVATE KEY/);
    } finally {
      await layer.close();
    }
  });
});

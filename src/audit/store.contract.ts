/**
 * The contract every audit store must meet, run against each backend (test/audit-store-*.test.ts). Hashing,
 * checkpoints and verification are the same code for all backends, so the same tampering must be caught
 * and named identically everywhere.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { jsonDigest } from '../canonical-json.js';
import { parsePublicKey } from './checkpoint.js';
import { isAuditError } from './errors.js';
import { type AuditLog, type AuditLogOptions, openAuditLog } from './log.js';
import { recordHash } from './record.js';
import { decisionEvent, oneOfEach } from './testing.js';
import { proveInclusion, type VerifyReport, verifyProof, verifyStore } from './verify.js';

/** A fresh, empty log location for one test. */
export interface ContractLocation {
  url: string;
  keyPath: string;
  /** Raw SQL with `?` placeholders, straight to the database (the tamperer's view). */
  exec(sql: string, params?: unknown[]): Promise<void>;
  cleanup(): Promise<void>;
}

/** A backend under test: makes a fresh location, or skips `t` and returns null. */
export interface ContractBackend {
  name: string;
  location(t: TestContext): Promise<ContractLocation | null>;
}

/** Register the contract tests for `backend`. */
export function auditStoreContract(backend: ContractBackend): void {
  describe(`audit store contract: ${backend.name}`, () => {
    const withLog = (
      name: string,
      fn: (ctx: { loc: ContractLocation; open: (o?: AuditLogOptions) => Promise<AuditLog> }) => Promise<void>,
    ) =>
      it(name, async (t) => {
        const loc = await backend.location(t);
        if (loc === null) return;
        const opened: AuditLog[] = [];
        const open = async (o: AuditLogOptions = {}) => {
          const log = await openAuditLog(loc.url, {
            keyPath: loc.keyPath,
            checkpointIntervalMs: 60_000,
            ...o,
          });
          opened.push(log);
          return log;
        };
        try {
          await fn({ loc, open });
        } finally {
          for (const l of opened) await l.close().catch(() => undefined);
          await loc.cleanup();
        }
      });

    /** Verify in chunks of 37 records and of the default 1 000; chunk boundaries must not change a finding. */
    const verify = async (log: AuditLog): Promise<VerifyReport> => {
      const key = parsePublicKey(log.publicKeyPem);
      const small = await verifyStore(log.store, key, { chunk: 37 });
      const whole = await verifyStore(log.store, key);
      const { rate: _r1, elapsedMs: _e1, ...a } = small;
      const { rate: _r2, elapsedMs: _e2, ...b } = whole;
      assert.deepEqual(b, a, 'verification in chunks of 37 records reports what one chunk of 1 000 does');
      return small;
    };

    /** Fill a log with `n` decisions and checkpoints every `every`; returns it with a final checkpoint. */
    const filled = async (open: (o?: AuditLogOptions) => Promise<AuditLog>, n: number, every = 10) => {
      const log = await open({ checkpointEvery: every });
      for (let i = 0; i < n; i++) await log.record(decisionEvent(i));
      await log.checkpoint();
      return log;
    };

    withLog('appends get gapless sequence numbers and read back exactly', async ({ open }) => {
      const log = await open();
      const events = oneOfEach();
      const receipts = await Promise.all(events.map((e) => log.append(e)));
      assert.deepEqual(
        receipts.map((r) => r.seq),
        events.map((_, i) => i),
      );
      const back = await log.read(0, 100);
      assert.equal(back.length, events.length);
      for (let i = 0; i < events.length; i++) {
        assert.deepEqual(back[i]!.event, events[i]);
        assert.equal(back[i]!.type, events[i]!.type);
        assert.equal(back[i]!.hash, receipts[i]!.hash);
        assert.ok(i === 0 || back[i]!.time >= back[i - 1]!.time);
      }
      const head = await log.store.head();
      assert.equal(head.size, events.length);
      assert.equal(head.hash.toString('hex'), receipts.at(-1)!.hash);
    });

    withLog('query filters by agent, tool, effect, rule, type and time', async ({ open }) => {
      let clock = 1_000_000;
      const log = await open({ now: () => clock });
      await log.record(decisionEvent(0, { agent: 'a1', tool: 'db.query', effect: 'allow', rule: 'r-read' }));
      clock += 1000;
      await log.record(
        decisionEvent(1, { agent: 'a2', tool: 'files.write_file', effect: 'deny', rule: null }),
      );
      clock += 1000;
      await log.record(decisionEvent(2, { agent: 'a1', tool: 'email.send', effect: 'ask', rule: 'r-ask' }));
      await log.record({ type: 'agent', status: 'suspended', agent: 'a1', by: 'ops' });
      const seqs = async (q: Parameters<AuditLog['query']>[0]) => (await log.query(q)).map((r) => r.seq);
      assert.deepEqual(await seqs({ agent: 'a1' }), [0, 2, 3]);
      assert.deepEqual(await seqs({ tool: 'files.write_file' }), [1]);
      assert.deepEqual(await seqs({ effect: 'deny' }), [1]);
      assert.deepEqual(await seqs({ rule: 'r-ask' }), [2]);
      assert.deepEqual(await seqs({ type: 'agent' }), [3]);
      assert.deepEqual(await seqs({ since: 1_001_000 }), [1, 2, 3]);
      assert.deepEqual(await seqs({ since: 1_001_000, until: 1_002_000 }), [1]);
      assert.deepEqual(await seqs({ agent: 'a1', limit: 1, order: 'desc' }), [3]);
      assert.deepEqual(await seqs({ decisionId: decisionEvent(2).decision.id }), [2]);
      assert.deepEqual(
        (await log.tail(2)).map((r) => r.seq),
        [2, 3],
      );
    });

    withLog('concurrent writers on one store build one gapless chain', async ({ open }) => {
      const a = await open({ checkpointEvery: 50 });
      const b = await open({ checkpointEvery: 50 });
      const jobs: Promise<{ seq: number }>[] = [];
      for (let i = 0; i < 300; i++) {
        jobs.push(a.append(decisionEvent(i, { agent: 'writer-a' })));
        jobs.push(b.append(decisionEvent(i, { agent: 'writer-b' })));
      }
      const seqs = (await Promise.all(jobs)).map((r) => r.seq).sort((x, y) => x - y);
      assert.deepEqual(
        seqs,
        Array.from({ length: 600 }, (_, i) => i),
      );
      await a.checkpoint();
      const report = await verify(a);
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(report.size, 600);
      assert.equal((await a.query({ agent: 'writer-b' })).length, 300);
    });

    withLog('checkpoints are signed every N records and on close; verify passes', async ({ open, loc }) => {
      const log = await open({ checkpointEvery: 25 });
      for (let i = 0; i < 110; i++) await log.record(decisionEvent(i));
      const cps = await log.store.checkpoints();
      assert.deepEqual(
        cps.map((c) => c.size),
        [1, 26, 51, 76, 101],
      );
      await log.close();
      const again = await open();
      const all = await again.store.checkpoints();
      assert.equal(all.at(-1)!.size, 110, 'close signs the tail');
      const report = await verify(again);
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(report.checkpoints, 6);
      assert.equal(report.unsignedTail, 0);
      void loc;
    });

    withLog('names that need escaping verify, and an edit of one is found', async ({ open, loc }) => {
      const log = await open();
      const odd = { agent: 'bot-ü', tool: 'files.write "x"\\y\n\u0001', rule: 'r\u007f' };
      for (const e of [...oneOfEach(), decisionEvent(1, odd), decisionEvent(2, { args: { tool: 'x' } })]) {
        await log.record(e);
      }
      assert.equal((await verify(log)).ok, true);
      await loc.exec('UPDATE audit_records SET tool = ? WHERE seq = ?', ['files.write "x"\\y', 7]);
      const r = await verify(log);
      assert.equal(r.problems[0]!.code, 'record_index_modified');
      assert.equal(r.problems[0]!.seq, 7);
    });

    withLog(
      'a batch longer than checkpointEvery is checkpointed at every interval',
      async ({ open, loc }) => {
        const log = await open({ checkpointEvery: 25 });
        // One tick's worth of records: they reach the writer together and go into one transaction.
        await Promise.all(Array.from({ length: 120 }, (_, i) => log.record(decisionEvent(i))));
        const sizes = (await log.store.checkpoints()).map((c) => c.size);
        assert.ok(sizes.length >= 4, String(sizes));
        sizes.reduce((prev, size) => {
          assert.ok(size - prev <= 25, `gap ${prev}..${size} in ${sizes}`);
          return size;
        }, 0);
        assert.equal((await verify(log)).ok, true);
        // Deleting the checkpoints of a stretch is found and the stretch named...
        const [, second, third] = sizes;
        await loc.exec('DELETE FROM audit_checkpoints WHERE size = ?', [second]);
        let r = await verifyStore(log.store, parsePublicKey(log.publicKeyPem), { checkpointEvery: 25 });
        assert.equal(r.problems[0]!.code, 'checkpoint_missing');
        assert.deepEqual(r.problems[0]!.range, [sizes[0], third]);
        // ...except in a log from before writers signed inside batches (no marker): whole batches could
        // lie between two checkpoints there, so only the tail is bounded.
        await loc.exec('DELETE FROM audit_meta WHERE key = ?', ['checkpoint_gaps_bounded_from']);
        r = await verifyStore(log.store, parsePublicKey(log.publicKeyPem), { checkpointEvery: 25 });
        assert.equal(r.ok, true, JSON.stringify(r.problems));
      },
    );

    withLog('inclusion proofs verify offline and fail when anything is changed', async ({ open }) => {
      const log = await filled(open, 57, 8);
      for (const seq of [0, 1, 31, 56]) {
        const proof = JSON.parse(JSON.stringify(await proveInclusion(log.store, seq)));
        assert.deepEqual(verifyProof(proof, log.publicKeyPem), { ok: true });
        const changed = structuredClone(proof);
        changed.record.event.action.args.i = 999;
        assert.equal(verifyProof(changed, log.publicKeyPem).ok, false);
        const moved = structuredClone(proof);
        moved.seq = moved.record.seq = seq === 0 ? 1 : seq - 1;
        assert.equal(verifyProof(moved, log.publicKeyPem).ok, false);
        const resigned = structuredClone(proof);
        resigned.checkpoint.size += 1;
        assert.equal(verifyProof(resigned, log.publicKeyPem).ok, false);
        // Numbers no record can hold are a malformed proof, not an exception.
        for (const field of ['time', 'seq'] as const) {
          const negative = structuredClone(proof);
          negative.record[field] = -1;
          if (field === 'seq') negative.seq = -1;
          const r = verifyProof(negative, log.publicKeyPem);
          assert.equal(r.ok, false);
          assert.equal(!r.ok && r.code, 'malformed_proof');
        }
      }
      const other = parsePublicKey(log.publicKeyPem);
      assert.equal(other.asymmetricKeyType, 'ed25519');
      const { generateKeyPairSync } = await import('node:crypto');
      const stranger = generateKeyPairSync('ed25519')
        .publicKey.export({ type: 'spki', format: 'pem' })
        .toString();
      const proof = await proveInclusion(log.store, 3);
      assert.equal(verifyProof(proof, stranger).ok, false);
    });

    withLog('a modified record is named by its sequence number', async ({ open, loc }) => {
      const log = await filled(open, 40);
      await loc.exec(
        `UPDATE audit_records SET event = replace(event, '"i":17', '"i":18') WHERE seq = ?`,
        [17],
      );
      const r = await verify(log);
      assert.equal(r.ok, false);
      assert.equal(r.firstBadSeq, 17);
      assert.equal(r.problems[0]!.code, 'record_modified');
    });

    withLog('a rewritten format version or time is named by its sequence number', async ({ open, loc }) => {
      const log = await filled(open, 40);
      await loc.exec('UPDATE audit_records SET v = ? WHERE seq = ?', [7, 4]);
      await loc.exec('UPDATE audit_records SET time = ? WHERE seq = ?', [-5, 9]);
      const r = await verify(log);
      assert.equal(r.firstBadSeq, 4);
      // The stored hashes are untouched, so the signed roots still match: the records themselves are named.
      assert.deepEqual(
        r.problems.map((p) => [p.code, p.seq]),
        [
          ['record_version_unknown', 4],
          ['record_modified', 9],
        ],
      );
    });

    withLog('a deleted record is named by its sequence number', async ({ open, loc }) => {
      const log = await filled(open, 40);
      await loc.exec('DELETE FROM audit_records WHERE seq = ?', [23]);
      const r = await verify(log);
      assert.equal(r.firstBadSeq, 23);
      assert.equal(r.problems[0]!.code, 'record_missing');
    });

    withLog('reordered records are named at the first moved one', async ({ open, loc }) => {
      const log = await filled(open, 40);
      const [a, b] = await log.store.read(12, 2);
      await loc.exec('UPDATE audit_records SET event = ? WHERE seq = ?', [b!.event, 12]);
      await loc.exec('UPDATE audit_records SET event = ? WHERE seq = ?', [a!.event, 13]);
      const r = await verify(log);
      assert.equal(r.firstBadSeq, 12);
      assert.equal(r.problems[0]!.code, 'record_modified');
    });

    withLog('an inserted record is named at its position', async ({ open, loc }) => {
      const log = await filled(open, 40);
      const [orig] = await log.store.read(30, 1);
      await loc.exec('UPDATE audit_records SET seq = -seq - 1 WHERE seq >= ?', [30]);
      await loc.exec('UPDATE audit_records SET seq = -seq WHERE seq < 0');
      const forged = orig!.event!.replace('"i":30', '"i":-1');
      await loc.exec('INSERT INTO audit_records (seq, v, time, hash, event) VALUES (?, ?, ?, ?, ?)', [
        30,
        1,
        orig!.time,
        orig!.hash,
        forged,
      ]);
      const r = await verify(log);
      assert.equal(r.firstBadSeq, 30);
      assert.equal(r.problems[0]!.code, 'record_modified');
    });

    withLog(
      'a record rewritten with a recomputed hash is caught by the signed checkpoint',
      async ({ open, loc }) => {
        const log = await filled(open, 40);
        const [prev, row] = await log.store.read(14, 2);
        const event = row!.event!.replace('"effect":"allow"', '"effect":"deny"');
        const hash = recordHash(row!.v, prev!.hash, 15, row!.time, event);
        // The query column too, or the edit would show there first (`record_index_modified` at 15).
        await loc.exec("UPDATE audit_records SET event = ?, hash = ?, effect = 'deny' WHERE seq = ?", [
          event,
          hash,
          15,
        ]);
        const r = await verify(log);
        assert.equal(r.ok, false);
        // The chain breaks at 16 (its link names the old hash of 15); the signed root over 11..20 fails.
        assert.equal(r.problems[0]!.code, 'record_modified');
        assert.equal(r.problems[0]!.seq, 16);
        const mismatch = r.problems.find((p) => p.code === 'checkpoint_root_mismatch');
        assert.ok(mismatch?.range, JSON.stringify(r.problems));
        assert.ok(mismatch.range[0] <= 15 && 15 < mismatch.range[1]);
      },
    );

    withLog('truncation below the last signed checkpoint is detected', async ({ open, loc }) => {
      const log = await filled(open, 40);
      const [last] = await log.store.read(24, 1);
      await loc.exec('DELETE FROM audit_records WHERE seq >= ?', [25]);
      await loc.exec('UPDATE audit_head SET size = ?, hash = ? WHERE id = 1', [25, last!.hash]);
      const r = await verify(log);
      assert.equal(r.problems[0]!.code, 'log_truncated');
      assert.equal(r.firstBadSeq, 25);
    });

    withLog('a cut unsigned tail is detected from the head row', async ({ open, loc }) => {
      const log = await open({ checkpointEvery: 10 });
      for (let i = 0; i < 35; i++) await log.record(decisionEvent(i));
      // 31 is the last checkpoint; 31..34 are the unsigned tail.
      assert.equal((await log.store.checkpoints()).at(-1)!.size, 31);
      await loc.exec('DELETE FROM audit_records WHERE seq >= ?', [33]);
      const r = await verify(log);
      assert.equal(r.problems[0]!.code, 'log_truncated');
      assert.equal(r.firstBadSeq, 33);
    });

    withLog(
      'a checkpoint row or head frontier rewritten out of shape fails verification',
      async ({ open, loc }) => {
        const log = await filled(open, 30);
        // A checkpoint moved to a size no checkpoint has is not silently dropped.
        await loc.exec('UPDATE audit_checkpoints SET size = ? WHERE size = ?', [-1, 11]);
        let r = await verify(log);
        assert.equal(r.ok, false);
        assert.equal(r.problems[0]!.code, 'checkpoint_signature_invalid');
        assert.match(r.problems[0]!.message, /size -1/);
        await loc.exec('UPDATE audit_checkpoints SET size = ? WHERE size = ?', [11, -1]);
        assert.equal((await verify(log)).ok, true);
        // A head frontier of the right length that does not match the records would make the next append
        // sign a wrong root.
        const head = await log.store.head();
        await loc.exec('UPDATE audit_head SET frontier = ? WHERE id = 1', [
          Buffer.alloc(head.frontier.length, 7),
        ]);
        r = await verify(log);
        assert.deepEqual([r.ok, r.problems[0]?.code, r.firstBadSeq], [false, 'head_mismatch', 30]);
      },
    );

    withLog(
      'a forged checkpoint signature or a wrong public key fails verification',
      async ({ open, loc }) => {
        const log = await filled(open, 30);
        const { generateKeyPairSync } = await import('node:crypto');
        const stranger = generateKeyPairSync('ed25519').publicKey;
        const wrongKey = await verifyStore(log.store, stranger);
        assert.equal(wrongKey.ok, false);
        assert.equal(wrongKey.problems[0]!.code, 'checkpoint_signature_invalid');
        await loc.exec('UPDATE audit_checkpoints SET time = time + 1 WHERE size = ?', [21]);
        const r = await verify(log);
        assert.equal(r.problems[0]!.code, 'checkpoint_signature_invalid');
        assert.deepEqual(r.problems[0]!.range, [11, 21]);
      },
    );

    withLog(
      'prune removes old content below a checkpoint and the log still verifies',
      async ({ open, loc }) => {
        let clock = 10_000_000;
        const log = await open({ checkpointEvery: 10, now: () => clock });
        for (let i = 0; i < 45; i++) {
          await log.record(decisionEvent(i));
          clock += 1000;
        }
        await log.checkpoint();
        // Records 0..26 are older than the cutoff; the checkpoint at or below 27 is 21.
        const cutoffAge = clock - (10_000_000 + 27 * 1000);
        const dry = await log.prune({ olderThanMs: cutoffAge, dryRun: true });
        assert.deepEqual([dry.before, dry.count], [21, 21]);
        assert.equal((await log.read(0, 1))[0]!.event !== null, true, 'dry run changes nothing');
        const done = await log.prune({ olderThanMs: cutoffAge });
        assert.deepEqual([done.before, done.count], [21, 21]);
        const rows = await log.read(0, 45);
        assert.ok(rows.slice(0, 21).every((r) => r.event === null));
        assert.ok(rows.slice(21).every((r) => r.event !== null));
        assert.equal((await log.query({})).length, 24);
        let r = await verify(log);
        assert.equal(r.ok, true, JSON.stringify(r.problems));
        assert.equal(r.pruned, 21);
        await assert.rejects(proveInclusion(log.store, 3), (e) => isAuditError(e, 'invalid_request'));
        // Tampering in what remains is still named.
        await loc.exec(
          `UPDATE audit_records SET event = replace(event, '"i":30', '"i":31') WHERE seq = ?`,
          [30],
        );
        r = await verify(log);
        assert.equal(r.firstBadSeq, 30);
        // A kept hash of a pruned record is covered by the signed roots.
        await loc.exec(
          `UPDATE audit_records SET event = replace(event, '"i":31', '"i":30') WHERE seq = ?`,
          [30],
        );
        assert.equal((await verify(log)).ok, true);
        const [other] = await log.store.read(40, 1);
        await loc.exec('UPDATE audit_records SET hash = ? WHERE seq = ?', [other!.hash, 5]);
        r = await verify(log);
        assert.equal(r.ok, false);
        assert.equal(r.problems[0]!.code, 'checkpoint_root_mismatch');
        assert.deepEqual(r.problems[0]!.range, [1, 11]);
      },
    );

    withLog('a failed transaction leaves no trace and the log goes on', async ({ open }) => {
      const log = await open();
      await log.record(decisionEvent(0));
      await assert.rejects(
        log.store.append(() => {
          throw new Error('sealer failed');
        }),
      );
      const bad = { ...decisionEvent(1), latencyUs: Number.NaN };
      const [r1, r2] = await Promise.allSettled([log.record(bad), log.append(decisionEvent(2))]);
      assert.equal(r1.status, 'rejected');
      assert.ok(r1.status === 'rejected' && isAuditError(r1.reason, 'invalid_event'));
      assert.ok(r2.status === 'fulfilled' && r2.value.seq === 1);
      await log.checkpoint();
      assert.equal((await verify(log)).ok, true);
    });

    withLog('a log refuses a signing key other than its own', async ({ loc, open }) => {
      const log = await open();
      await log.record(decisionEvent(0));
      await log.close();
      await assert.rejects(openAuditLog(loc.url, { keyPath: `${loc.keyPath}.other` }), (e) =>
        isAuditError(e, 'audit_key_error'),
      );
    });

    withLog('argsDigest in recorded events is the canonical digest', async ({ open }) => {
      const log = await open();
      const e = decisionEvent(7, { args: { b: 1, a: [true, null, 'x'] } });
      await log.record(e);
      const [back] = await log.read(0, 1);
      assert.equal(
        back!.event?.type === 'decision' && back!.event.action.argsDigest,
        jsonDigest({ a: [true, null, 'x'], b: 1 }),
      );
    });
  });
}

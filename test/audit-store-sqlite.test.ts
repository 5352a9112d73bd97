import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { auditStoreContract } from '../src/audit/store.contract.js';

auditStoreContract({
  name: 'sqlite',
  async location() {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-audit-'));
    const path = join(dir, 'audit.db');
    return {
      url: `sqlite:${path}`,
      keyPath: join(dir, 'audit.db.key'),
      async exec(sql, params = []) {
        const db = new Database(path);
        try {
          db.prepare(sql).run(...params);
        } finally {
          db.close();
        }
      },
      async cleanup() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});

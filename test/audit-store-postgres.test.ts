import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { auditStoreContract } from '../src/audit/store.contract.js';
import { PG_ADMIN_URL, pgAvailable, uniqueName } from '../src/testing/services.js';

auditStoreContract({
  name: 'postgres',
  async location(t) {
    if (!(await pgAvailable(t))) return null;
    const name = uniqueName('execlayer_test');
    const admin = new pg.Client(PG_ADMIN_URL);
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(PG_ADMIN_URL);
    u.pathname = `/${name}`;
    const url = u.toString();
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-audit-pg-'));
    return {
      url,
      keyPath: join(dir, 'audit.key'),
      async exec(sql, params = []) {
        let n = 0;
        const c = new pg.Client(url);
        await c.connect();
        try {
          await c.query(
            sql.replace(/\?/g, () => `$${++n}`),
            params,
          );
        } finally {
          await c.end();
        }
      },
      async cleanup() {
        rmSync(dir, { recursive: true, force: true });
        const a = new pg.Client(PG_ADMIN_URL);
        await a.connect();
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await a.end();
      },
    };
  },
});

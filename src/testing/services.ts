/**
 * Test helpers for the scale-out backends. A developer without PostgreSQL or Redis gets a clear skip;
 * under `CI=true` an unreachable server fails the test instead.
 */
import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.EXECLAYER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.EXECLAYER_TEST_REDIS ?? 'redis://127.0.0.1:6379';

/** A short random suffix for database names and key prefixes, so parallel tests never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(u.port || defaultPort), u.hostname.replace(/^\[|\]$/g, ''), () => done(true));
  });
}

interface Skippable {
  skip(message?: string): void;
}

async function requireService(t: Skippable, name: string, url: string, port: number): Promise<boolean> {
  if (await reachable(url, port)) return true;
  if (process.env.CI === 'true') {
    throw new Error(`${name} at ${url} is unreachable; CI requires it (.ci/run starts it)`);
  }
  t.skip(`${name} not reachable at ${url}: start it to run this test (see README, "Backends")`);
  return false;
}

/** True when PostgreSQL is reachable; otherwise skips `t` (or throws under CI=true). */
export function pgAvailable(t: Skippable): Promise<boolean> {
  return requireService(t, 'PostgreSQL', PG_ADMIN_URL, 5432);
}

/** True when Redis is reachable; otherwise skips `t` (or throws under CI=true). */
export function redisAvailable(t: Skippable): Promise<boolean> {
  return requireService(t, 'Redis', REDIS_URL, 6379);
}

interface TestContextLike extends Skippable {
  after(fn: () => Promise<void> | void): void;
}

/**
 * Creates a throw-away PostgreSQL database and returns its URL; drops it when the test ends.
 * Undefined when PostgreSQL is unreachable and the test was skipped.
 */
export async function tempPostgresDatabase(t: TestContextLike): Promise<string | undefined> {
  if (!(await pgAvailable(t))) return undefined;
  const name = uniqueName('execlayer_test');
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  t.after(async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  return url.toString();
}

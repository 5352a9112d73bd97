import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { AuditEvent } from '../types.js';
import { createAuthenticator, hashApiKey, newApiKey } from './auth.js';

function req(authorization?: string): IncomingMessage {
  return {
    headers: authorization === undefined ? {} : { authorization },
    socket: { remoteAddress: '127.0.0.1' },
  } as unknown as IncomingMessage;
}

test('api keys map to their agent; only the hash is configured; rejections are recorded', async () => {
  const k1 = newApiKey();
  const k2 = newApiKey();
  assert.match(k1, /^exl_[A-Za-z0-9_-]{43}$/);
  const events: AuditEvent[] = [];
  const auth = createAuthenticator(
    {
      apiKeys: [
        { sha256: hashApiKey(k1), agent: 'a1' },
        { sha256: hashApiKey(k2), agent: 'a2', principal: 'p@x' },
      ],
    },
    { recorder: { record: async (e) => void events.push(e) }, point: 'mcp' },
  );
  assert.deepEqual(await auth(req(`Bearer ${k1}`)), { ok: true, agent: 'a1', method: 'api_key' });
  assert.deepEqual(await auth(req(`bearer ${k2}`)), {
    ok: true,
    agent: 'a2',
    method: 'api_key',
    principal: 'p@x',
  });
  const bad = await auth(req(`Bearer ${k1}x`));
  assert.deepEqual(bad, { ok: false, status: 401, reason: 'invalid api key' });
  assert.equal((await auth(req())).ok, false);
  assert.equal((await auth(req(`Basic ${k1}`))).ok, false);
  assert.equal((await auth(req(`Bearer ${'x'.repeat(9000)}`))).ok, false);
  assert.equal(events.length, 4);
  assert.deepEqual(events[0], {
    type: 'auth',
    status: 'rejected',
    point: 'mcp',
    reason: 'invalid api key',
    remote: '127.0.0.1',
  });
});

test('JWTs are verified against a JWKS file: issuer, audience, signature, agent claim', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
  try {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const other = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
    const auth = createAuthenticator({
      apiKeys: [],
      jwt: {
        jwks: join(dir, 'jwks.json'),
        issuer: 'https://idp',
        audience: 'execlayer',
        agentClaim: 'sub',
        principalClaim: 'act',
      },
    });
    const sign = (
      claims: Record<string, unknown>,
      key = privateKey,
      iss = 'https://idp',
      aud = 'execlayer',
    ) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(iss)
        .setAudience(aud)
        .setExpirationTime('5m')
        .sign(key);
    assert.deepEqual(await auth(req(`Bearer ${await sign({ sub: 'support-bot', act: 'alice' })}`)), {
      ok: true,
      agent: 'support-bot',
      method: 'jwt',
      principal: 'alice',
    });
    const wrongIss = await auth(req(`Bearer ${await sign({ sub: 'x' }, privateKey, 'https://evil')}`));
    assert.equal(wrongIss.ok, false);
    assert.equal(
      (await auth(req(`Bearer ${await sign({ sub: 'x' }, privateKey, 'https://idp', 'other')}`))).ok,
      false,
    );
    assert.equal((await auth(req(`Bearer ${await sign({ sub: 'x' }, other.privateKey)}`))).ok, false);
    const badClaim = await auth(req(`Bearer ${await sign({ sub: 'bad agent id!' })}`));
    assert.match(badClaim.ok ? '' : badClaim.reason, /not a valid agent id/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

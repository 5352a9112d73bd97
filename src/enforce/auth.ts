/**
 * Identity from the channel for HTTP front doors (MCP gateway and decision API): bearer API keys
 * (stored as sha256, compared in constant time) and JWTs verified against a JWKS, each mapped to an
 * agent id. Nothing a client sends in a message body can name its agent.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createLocalJWKSet, createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { type AuthConfig, CREDENTIAL_ROLES, type CredentialRole } from '../config/load.js';
import { sha256, sha256Hex } from '../sha256.js';
import type { EnforcementPoint, Recorder } from '../types.js';
import { markAuthenticated } from './front-door.js';

export type { CredentialRole } from '../config/load.js';

/**
 * What an authenticator says about a request. `roles` is present only when the credential carries at
 * least one (API key `roles`, or the JWT's roles claim); a key an agent uses normally has none.
 */
export type AuthResult =
  | {
      ok: true;
      agent: string;
      principal?: string;
      roles?: readonly CredentialRole[];
      method: 'api_key' | 'jwt';
    }
  | { ok: false; status: 401; reason: string };

/** Authenticates one HTTP request from its headers. Never rejects. */
export type Authenticator = (req: IncomingMessage) => Promise<AuthResult>;

export interface AuthenticatorOptions {
  /** When given, every rejection is recorded as an `auth` event (fail-soft: recording errors are logged). */
  recorder?: Recorder;
  point?: EnforcementPoint;
  onRecordError?: (err: unknown) => void;
}

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/;
const MAX_TOKEN = 8192;

/** sha256 (hex) of an API key, the form stored in the configuration. */
export function hashApiKey(key: string): string {
  return sha256Hex(key);
}

/** A fresh random API key (`exl_` + 32 random bytes, base64url). */
export function newApiKey(): string {
  return `exl_${randomBytes(32).toString('base64url')}`;
}

/** Builds the authenticator for `auth` in the gateway configuration. */
export function createAuthenticator(auth: AuthConfig, opts: AuthenticatorOptions = {}): Authenticator {
  const keys = auth.apiKeys.map((k) => ({
    digest: Buffer.from(k.sha256, 'hex'),
    agent: k.agent,
    principal: k.principal,
    roles: k.roles && k.roles.length > 0 ? Object.freeze([...k.roles]) : undefined,
  }));
  let jwks: Promise<JWTVerifyGetKey> | undefined;
  const jwt = auth.jwt;
  const getJwks = (): Promise<JWTVerifyGetKey> => {
    if (!jwt) throw new Error('jwt is not configured');
    if (!jwks) {
      jwks = /^https?:\/\//.test(jwt.jwks)
        ? Promise.resolve(createRemoteJWKSet(new URL(jwt.jwks)))
        : readFile(jwt.jwks, 'utf8').then((t) => createLocalJWKSet(JSON.parse(t)));
      jwks.catch(() => {
        jwks = undefined;
      });
    }
    return jwks;
  };

  const reject = async (req: IncomingMessage, reason: string): Promise<AuthResult> => {
    if (opts.recorder) {
      try {
        await opts.recorder.record({
          type: 'auth',
          status: 'rejected',
          point: opts.point ?? 'mcp',
          reason,
          ...(req.socket?.remoteAddress ? { remote: req.socket.remoteAddress } : {}),
        });
      } catch (err) {
        opts.onRecordError?.(err);
      }
    }
    return { ok: false, status: 401, reason };
  };

  const check = async (req: IncomingMessage): Promise<AuthResult> => {
    try {
      const header = req.headers.authorization;
      if (typeof header !== 'string' || header === '') return await reject(req, 'missing bearer token');
      const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
      if (!m?.[1]) return await reject(req, 'authorization header is not `Bearer <token>`');
      const token = m[1];
      if (token.length > MAX_TOKEN) return await reject(req, 'bearer token is too long');

      if (jwt && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
        try {
          const { payload } = await jwtVerify(token, await getJwks(), {
            issuer: jwt.issuer,
            audience: jwt.audience,
            ...(jwt.algorithms ? { algorithms: jwt.algorithms } : {}),
          });
          const agent = payload[jwt.agentClaim];
          if (typeof agent !== 'string' || !AGENT_ID.test(agent)) {
            return await reject(req, `token claim \`${jwt.agentClaim}\` is not a valid agent id`);
          }
          const principal = jwt.principalClaim ? payload[jwt.principalClaim] : undefined;
          const roles = rolesFromClaim(payload[jwt.rolesClaim ?? 'roles']);
          return {
            ok: true,
            agent,
            method: 'jwt',
            ...(typeof principal === 'string' ? { principal } : {}),
            ...(roles.length > 0 ? { roles } : {}),
          };
        } catch (err) {
          return await reject(
            req,
            `invalid token: ${((err as Error).message ?? 'verification failed').toLowerCase()}`,
          );
        }
      }

      const digest = sha256(token);
      // Compare against every key so the time taken does not reveal which (or whether one) matched.
      let found: (typeof keys)[number] | undefined;
      for (const k of keys) {
        if (timingSafeEqual(k.digest, digest) && !found) found = k;
      }
      if (!found) return await reject(req, 'invalid api key');
      return {
        ok: true,
        agent: found.agent,
        method: 'api_key',
        ...(found.principal !== undefined ? { principal: found.principal } : {}),
        ...(found.roles !== undefined ? { roles: found.roles } : {}),
      };
    } catch (err) {
      // INVARIANT: fail closed — an error while authenticating authenticates nobody.
      return reject(req, `authentication failed: ${(err as Error).message}`);
    }
  };
  return async (req) => {
    const result = await check(req);
    // The connection cap keeps authenticated connections when it must close one (front-door.ts).
    if (result.ok) markAuthenticated(req.socket);
    return result;
  };
}

/**
 * The credential roles named by a JWT claim: an array of strings or one space-separated string (the
 * OAuth `scope` form). Names that are not ExecLayer roles are ignored, and anything else grants nothing.
 */
export function rolesFromClaim(claim: unknown): readonly CredentialRole[] {
  let names: unknown[];
  if (typeof claim === 'string') names = claim.split(' ');
  else if (Array.isArray(claim)) names = claim;
  else return [];
  return CREDENTIAL_ROLES.filter((r) => names.includes(r));
}

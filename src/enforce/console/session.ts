/**
 * Console sessions: a login with an API key (or JWT) from the gateway's identity config gives a random
 * session id in an HttpOnly, SameSite=Strict cookie (Secure when the connection is TLS), and a CSRF token
 * every state-changing request must echo. Sessions live in this process's memory, expire after 12 hours
 * or 1 hour idle, and end at logout.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CredentialRole } from '../auth.js';

/** What a console user may do. `view` is every page; the others are state changes. */
export type ConsoleRight = 'view' | 'approve' | 'operate';

/** The credential roles that grant each right. */
const GRANTS: Record<ConsoleRight, readonly CredentialRole[]> = {
  view: ['viewer', 'approver', 'operator', 'admin'],
  approve: ['approver', 'admin'],
  operate: ['operator', 'admin'],
};

/** Whether `roles` grant `right`. */
export function may(roles: readonly CredentialRole[], right: ConsoleRight): boolean {
  return roles.some((r) => GRANTS[right].includes(r));
}

export interface ConsoleSession {
  id: string;
  /** The credential's agent id: who acts in every change made through this session. */
  user: string;
  roles: readonly CredentialRole[];
  csrf: string;
  createdAt: number;
  lastSeen: number;
}

export const SESSION_COOKIE = 'exl_console';
export const LOGIN_COOKIE = 'exl_console_login';
const MAX_AGE_MS = 12 * 3_600_000;
const IDLE_MS = 3_600_000;
const MAX_SESSIONS = 10_000;

/** The sessions of one console. */
export class SessionStore {
  readonly #sessions = new Map<string, ConsoleSession>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Starts a session; the oldest is dropped past the cap. */
  create(user: string, roles: readonly CredentialRole[]): ConsoleSession {
    if (this.#sessions.size >= MAX_SESSIONS) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest !== undefined) this.#sessions.delete(oldest);
    }
    const now = this.#now();
    const s: ConsoleSession = { id: token(), user, roles, csrf: token(), createdAt: now, lastSeen: now };
    this.#sessions.set(s.id, s);
    return s;
  }

  /** The live session the request's cookie names, or undefined (expired sessions are removed). */
  get(req: IncomingMessage): ConsoleSession | undefined {
    const id = cookie(req, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const s = this.#sessions.get(id);
    if (!s) return undefined;
    const now = this.#now();
    if (now - s.createdAt > MAX_AGE_MS || now - s.lastSeen > IDLE_MS) {
      this.#sessions.delete(id);
      return undefined;
    }
    s.lastSeen = now;
    return s;
  }

  /** Whether session `id` is still live (not ended, not expired), without counting as activity. */
  alive(id: string): boolean {
    const s = this.#sessions.get(id);
    if (!s) return false;
    const now = this.#now();
    return now - s.createdAt <= MAX_AGE_MS && now - s.lastSeen <= IDLE_MS;
  }

  end(id: string): void {
    this.#sessions.delete(id);
  }
}

/** 32 random bytes, base64url. */
export function token(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison of two tokens. */
export function sameToken(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** One cookie's value from the request, or undefined. */
export function cookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to `/console`, Secure on TLS connections. */
export function setCookie(req: IncomingMessage, name: string, value: string, maxAgeS: number): string {
  const secure = (req.socket as TLSSocket).encrypted === true ? '; Secure' : '';
  return `${name}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure}`;
}

/** Adds `Set-Cookie` values to a response about to be written. */
export function addCookies(res: ServerResponse, values: string[]): void {
  res.setHeader('set-cookie', values);
}

/**
 * Reads a request body once: content type, size cap, UTF-8 check, one JSON parse, and a walk that refuses
 * prototype keys and excessive nesting. Everything downstream works on the value returned here.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { type Problem, pointerJoin, problem } from './problem.js';

/** Keys that could reach an object's prototype chain when merged; refused anywhere in a body. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Deepest nesting accepted in a request body (objects and arrays). */
export const MAX_BODY_DEPTH = 64;

export type BodyResult =
  | { ok: true; value: unknown }
  | { ok: false; problem: Problem; closeConnection?: boolean };

/** True iff the content type is JSON in UTF-8 (`application/json`, optionally with `charset=utf-8`). */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  // Fast path for the exact value nearly every client sends.
  if (header === 'application/json') return true;
  const parts = header.split(';');
  const type = parts[0]?.trim().toLowerCase();
  if (type !== 'application/json') return false;
  for (let i = 1; i < parts.length; i++) {
    const [k, v] = (parts[i] ?? '').split('=');
    if (k?.trim().toLowerCase() === 'charset') {
      const cs = v?.trim().toLowerCase().replace(/^"|"$/g, '');
      if (cs !== 'utf-8' && cs !== 'utf8') return false;
    }
  }
  return true;
}

/** Reads, decodes and parses the JSON body of `req`, refusing anything over `maxBytes`. */
export function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<BodyResult> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    return Promise.resolve(tooLarge(maxBytes));
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        done = true;
        req.off('data', onData);
        req.pause();
        resolve(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (done) return;
      done = true;
      const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      resolve(parseJsonBuffer(buf));
    });
    req.once('error', () => {
      if (done) return;
      done = true;
      resolve({ ok: false, problem: problem(400, 'invalid_request', 'the request body could not be read') });
    });
  });
}

function tooLarge(maxBytes: number): BodyResult {
  return {
    ok: false,
    closeConnection: true,
    problem: problem(413, 'payload_too_large', `request body exceeds the limit of ${maxBytes} bytes`),
  };
}

/** Decodes `buf` as strict UTF-8 and parses it as JSON, then checks keys and depth. */
export function parseJsonBuffer(buf: Buffer): BodyResult {
  if (buf.length === 0) {
    return {
      ok: false,
      problem: problem(400, 'invalid_json', 'the request body is empty; send a JSON object'),
    };
  }
  if (!isUtf8(buf)) {
    return { ok: false, problem: problem(400, 'invalid_encoding', 'the request body is not valid UTF-8') };
  }
  let value: unknown;
  try {
    value = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    const msg = err instanceof Error ? err.message : 'parse error';
    return {
      ok: false,
      problem: problem(400, 'invalid_json', `the request body is not valid JSON: ${lowerFirst(msg)}`),
    };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return {
      ok: false,
      problem: problem(400, 'invalid_request', 'the request body must be a JSON object', ''),
    };
  }
  const bad = checkKeys(value, '', 0);
  if (bad !== undefined) return { ok: false, problem: bad };
  return { ok: true, value };
}

function checkKeys(v: unknown, pointer: string, depth: number): Problem | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  if (depth >= MAX_BODY_DEPTH) {
    return problem(
      400,
      'invalid_request',
      `the request body nests deeper than ${MAX_BODY_DEPTH} levels`,
      pointer,
    );
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = checkKeys(v[i], '', depth + 1);
      if (p !== undefined) return withPrefix(p, pointerJoin(pointer, i));
    }
    return undefined;
  }
  for (const key in v) {
    if (FORBIDDEN_KEYS.has(key)) {
      return problem(400, 'invalid_request', `key \`${key}\` is not allowed`, pointerJoin(pointer, key));
    }
    const p = checkKeys((v as Record<string, unknown>)[key], '', depth + 1);
    if (p !== undefined) return withPrefix(p, pointerJoin(pointer, key));
  }
  return undefined;
}

// Pointers are built on the way out so the common (valid) path allocates no strings.
function withPrefix(p: Problem, prefix: string): Problem {
  return p.pointer === undefined ? p : { ...p, pointer: prefix + p.pointer };
}

function lowerFirst(s: string): string {
  return s.length > 0 ? s[0]!.toLowerCase() + s.slice(1) : s;
}

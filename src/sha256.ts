/**
 * One-shot SHA-256: `crypto.hash` (Node >= 20.12; about 2.5x faster than a `Hash` object on the short inputs
 * hashed per decision) with a streaming fallback for older runtimes. Strings are hashed as UTF-8.
 */
import * as crypto from 'node:crypto';

const oneShot = typeof crypto.hash === 'function';

/** SHA-256 of `data`. */
export const sha256: (data: string | Uint8Array) => Buffer = oneShot
  ? (data) => crypto.hash('sha256', data, 'buffer')
  : (data) => crypto.createHash('sha256').update(data).digest();

/** SHA-256 of `data`, lowercase hex. */
export const sha256Hex: (data: string | Uint8Array) => string = oneShot
  ? (data) => crypto.hash('sha256', data, 'hex')
  : (data) => crypto.createHash('sha256').update(data).digest('hex');

/**
 * Messages between the audit log (main thread) and its writer thread, and errors across the thread
 * boundary (an `AuditError` travels as its code, message and data).
 */
import type { KeyObject } from 'node:crypto';
import { messageOf } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';
import { AuditError, type AuditErrorCode, isAuditError } from './errors.js';
import type { StoreLocation } from './log.js';
import type { PostgresStoreOptions } from './postgres-store.js';
import type { SqliteStoreOptions } from './sqlite-store.js';

/** What the writer thread needs to open the store and sign (its `workerData`). */
export interface WriterInit {
  /** SQLite paths are absolute: the writer must open the file the log was opened on. */
  location: StoreLocation;
  sqlite: SqliteStoreOptions;
  postgres: PostgresStoreOptions;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicPem: string;
  keyId: string;
  every: number;
  intervalMs: number;
  maxBatch: number;
}

/** Main → writer: events recorded in one tick (canonical JSON and six index columns per event). */
export interface BatchMessage {
  t: 'batch';
  id: number;
  time: number;
  /** Sign a checkpoint in the transaction that carries this batch. */
  force: boolean;
  texts: string[];
  cols: Array<string | null>;
}

/** Main → writer: close the store and exit. */
export interface CloseMessage {
  t: 'close';
}

export type ToWriter = BatchMessage | CloseMessage;

/** Writer → main: one committed, durable transaction carrying the batches `ids`. */
export interface DoneMessage {
  t: 'done';
  ids: number[];
  /** Per batch: seq of its first record and the time its records got. */
  seqs: number[];
  times: number[];
  /** The record hashes, 32 bytes each, in seq order over all batches. */
  hashes: Uint8Array;
  /** Records not yet under a checkpoint after this commit. */
  unsigned: number;
  /** The checkpoint signed in this transaction, or (for a forced batch) the newest one. */
  checkpoint: Checkpoint | null;
}

/** Writer → main: the transaction carrying `ids` failed; nothing of it was written. */
export interface FailMessage {
  t: 'fail';
  ids: number[];
  error: WireError;
}

/** Writer → main: the store could not be opened; the writer exits. */
export interface FatalMessage {
  t: 'fatal';
  error: WireError;
}

/** Writer → main: the store is open; batches are being taken. */
export interface ReadyMessage {
  t: 'ready';
}

/** Writer → main: the store is closed; the writer exits. */
export interface ClosedMessage {
  t: 'closed';
}

export type FromWriter = ReadyMessage | DoneMessage | FailMessage | FatalMessage | ClosedMessage;

/** An error as it crosses the thread boundary. */
export interface WireError {
  code: AuditErrorCode;
  message: string;
  data: Record<string, unknown>;
  cause: string | null;
}

/** Flatten any thrown value for `postMessage`; anything but an `AuditError` becomes `audit_unavailable`. */
export function toWire(e: unknown, fallback: string): WireError {
  if (isAuditError(e)) {
    return {
      code: e.code,
      message: e.message,
      data: cloneable(e.data),
      cause: e.cause === undefined ? null : messageOf(e.cause),
    };
  }
  return {
    code: 'audit_unavailable',
    message: `${fallback}: ${messageOf(e)}`,
    data: {},
    cause: messageOf(e),
  };
}

function cloneable(data: Record<string, unknown>): Record<string, unknown> {
  try {
    return structuredClone(data);
  } catch {
    return JSON.parse(JSON.stringify(data)) as Record<string, unknown>;
  }
}

/** Rebuild the `AuditError` on this side. */
export function fromWire(w: WireError): AuditError {
  return new AuditError(w.code, w.message, {
    data: w.data,
    ...(w.cause === null ? {} : { cause: new Error(w.cause) }),
  });
}

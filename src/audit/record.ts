/**
 * The audit record format (version 1) and its hash chain. A record is the canonical JSON of one
 * `AuditEvent` plus the fields the store assigns (`seq`, `time`); its hash covers the previous record's hash,
 * so any change, removal, insertion or reordering breaks the chain from that point on.
 *
 *   hash(r) = SHA-256( u8 v || prevHash[32] || u64be seq || u64be time || canonicalJson(event) )
 *
 * The fixed-width prefix makes the encoding unambiguous; the genesis `prevHash` is 32 zero bytes.
 */
import { sha256 } from '../sha256.js';
import type { AuditEvent, Effect, EnforcementPoint, Json, Mode } from '../types.js';

/** The record format version written today. */
export const RECORD_VERSION = 1;

/** `prevHash` of record 0. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/**
 * Query columns derived from the event when it is sealed. They are an index, not evidence: the hash covers
 * the event, query results are re-checked against the event (`matchesQuery`), and verification checks every
 * row's columns against its event (verifier.ts), so an edit that hides a record from a query is found.
 */
export interface IndexColumns {
  /** Null only on a pruned row. */
  type: string | null;
  agent: string | null;
  tool: string | null;
  effect: string | null;
  rule: string | null;
  decisionId: string | null;
}

/** The query columns of a pruned row: all NULL. */
export const PRUNED_COLUMNS: Readonly<IndexColumns> = Object.freeze({
  type: null,
  agent: null,
  tool: null,
  effect: null,
  rule: null,
  decisionId: null,
});

/** What a store keeps per record. `event` is the canonical JSON text, or null once pruned. */
export interface StoredRecord {
  seq: number;
  v: number;
  time: number;
  hash: Buffer;
  event: string | null;
  /**
   * The row's query columns: set on rows being written, and returned by `read` (verification checks them
   * against the event; a row read without them counts as edited).
   */
  index?: IndexColumns;
}

/** The query columns of an event. */
export function indexColumns(e: AuditEvent): IndexColumns {
  switch (e.type) {
    case 'decision':
      return {
        type: e.type,
        agent: e.action.agent,
        tool: e.action.tool,
        effect: e.decision.effect,
        rule: e.decision.rule,
        decisionId: e.decision.id,
      };
    case 'outcome':
    case 'approval':
      return {
        type: e.type,
        agent: e.agent,
        tool: e.tool,
        effect: null,
        rule: null,
        decisionId: e.decisionId ?? null,
      };
    case 'agent':
      return { type: e.type, agent: e.agent, tool: null, effect: null, rule: null, decisionId: null };
    case 'tool':
      return { type: e.type, agent: null, tool: e.tool, effect: null, rule: null, decisionId: null };
    default:
      return { type: e.type, agent: null, tool: null, effect: null, rule: null, decisionId: null };
  }
}

/** Filters a query applies to a record's event; `since`/`until` are ms since the epoch (until exclusive). */
export interface RecordFilter {
  agent?: string;
  tool?: string;
  effect?: string;
  rule?: string;
  type?: string;
  decisionId?: string;
  since?: number;
  until?: number;
}

/** Does the record's own (hashed) event match `q`? Guards query results against edited index columns. */
export function matchesQuery(r: AuditRecord, q: RecordFilter): boolean {
  if (r.event === null) return false;
  if (q.since !== undefined && r.time < q.since) return false;
  if (q.until !== undefined && r.time >= q.until) return false;
  const c = indexColumns(r.event);
  return (
    (q.type === undefined || c.type === q.type) &&
    (q.agent === undefined || c.agent === q.agent) &&
    (q.tool === undefined || c.tool === q.tool) &&
    (q.effect === undefined || c.effect === q.effect) &&
    (q.rule === undefined || c.rule === q.rule) &&
    (q.decisionId === undefined || c.decisionId === q.decisionId)
  );
}

/** A record as the library hands it out. `event` is null for a pruned record (only its hash is kept). */
export interface AuditRecord {
  v: number;
  seq: number;
  /** Milliseconds since the epoch, assigned when the record was sealed; never decreases along the log. */
  time: number;
  type: AuditEvent['type'] | null;
  /** Record hash, lowercase hex. */
  hash: string;
  event: AuditEvent | null;
}

/** The fixed-width prefix of a record's hashed bytes: version, previous hash, seq, time. */
const HEADER = 1 + 32 + 8 + 8;

/** The chain hash of one record (see the module comment for the exact bytes). */
export function recordHash(
  v: number,
  prev: Uint8Array,
  seq: number,
  time: number,
  eventJson: string,
): Buffer {
  if (prev.length !== 32) throw new RangeError(`a previous record hash has 32 bytes, not ${prev.length}`);
  const bytes = Buffer.allocUnsafe(HEADER + Buffer.byteLength(eventJson, 'utf8'));
  bytes.writeUInt8(v, 0);
  bytes.set(prev, 1);
  writeU64(bytes, 33, seq);
  writeU64(bytes, 41, time);
  bytes.write(eventJson, HEADER, 'utf8');
  return sha256(bytes);
}

/** A number a record's seq or time can hold (an unsigned 64-bit field, within JavaScript's safe range). */
export function isU64(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

function writeU64(buf: Buffer, offset: number, value: number): void {
  if (!isU64(value)) throw new RangeError(`${value} is not a u64 this log can hold`);
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset);
  buf.writeUInt32BE(value % 0x1_0000_0000, offset + 4);
}

/** Turn a stored row into the public shape. Throws `SyntaxError` if the stored JSON is damaged. */
export function toAuditRecord(row: StoredRecord): AuditRecord {
  const event = row.event === null ? null : (JSON.parse(row.event) as AuditEvent);
  return {
    v: row.v,
    seq: row.seq,
    time: row.time,
    type: event?.type ?? null,
    hash: row.hash.toString('hex'),
    event,
  };
}

/**
 * One record flattened to the query columns (for CSV, tables and filters). Fields that do not apply to the
 * event type are null.
 */
export interface FlatRecord {
  v: number;
  seq: number;
  time: number;
  type: string | null;
  status: string | null;
  decisionId: string | null;
  agent: string | null;
  session: string | null;
  onBehalfOf: string | null;
  delegation: string[] | null;
  point: EnforcementPoint | null;
  tool: string | null;
  args: Json | null;
  argsDigest: string | null;
  facts: { [name: string]: Json } | null;
  effect: Effect | null;
  wouldBe: Effect | null;
  rule: string | null;
  code: string | null;
  reason: string | null;
  policy: string | null;
  mode: Mode | null;
  latencyUs: number | null;
  hash: string;
}

/** Flatten a record to the query columns. */
export function flatten(r: AuditRecord): FlatRecord {
  const flat: FlatRecord = {
    v: r.v,
    seq: r.seq,
    time: r.time,
    type: r.type,
    status: null,
    decisionId: null,
    agent: null,
    session: null,
    onBehalfOf: null,
    delegation: null,
    point: null,
    tool: null,
    args: null,
    argsDigest: null,
    facts: null,
    effect: null,
    wouldBe: null,
    rule: null,
    code: null,
    reason: null,
    policy: null,
    mode: null,
    latencyUs: null,
    hash: r.hash,
  };
  const e = r.event;
  if (e === null) return flat;
  switch (e.type) {
    case 'decision': {
      const d = e.decision;
      const a = e.action;
      Object.assign(flat, {
        decisionId: d.id,
        agent: a.agent,
        session: a.session ?? null,
        onBehalfOf: a.onBehalfOf ?? null,
        delegation: a.delegation ?? null,
        point: e.point,
        tool: a.tool,
        args: a.args,
        argsDigest: a.argsDigest,
        facts: d.facts ?? null,
        effect: d.effect,
        wouldBe: d.wouldBe ?? null,
        rule: d.rule,
        code: d.code,
        reason: d.reason,
        policy: d.policy,
        mode: d.mode,
        latencyUs: e.latencyUs,
      });
      break;
    }
    case 'outcome':
      Object.assign(flat, {
        decisionId: e.decisionId,
        agent: e.agent,
        tool: e.tool,
        status: e.ok ? 'ok' : 'error',
        reason: e.error ?? null,
      });
      break;
    case 'approval':
      Object.assign(flat, {
        decisionId: e.decisionId ?? null,
        agent: e.agent,
        tool: e.tool,
        argsDigest: e.argsDigest,
        status: e.status,
        reason: e.note ?? null,
      });
      break;
    case 'policy':
      Object.assign(flat, {
        status: e.status,
        policy: e.policy ?? null,
        reason: e.problems?.join('; ') ?? null,
      });
      break;
    case 'agent':
      Object.assign(flat, { agent: e.agent, status: e.status, reason: e.reason ?? null });
      break;
    case 'tool':
      Object.assign(flat, { tool: e.tool, status: e.status });
      break;
    case 'auth':
      Object.assign(flat, { point: e.point, status: e.status, reason: e.reason });
      break;
    case 'store':
      Object.assign(flat, { status: e.status, reason: e.reason });
      break;
  }
  return flat;
}

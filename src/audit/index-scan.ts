/**
 * Checking a record's query columns (type, agent, tool, effect, rule, decision id) against its hashed event
 * without parsing the event: `audit query` filters on those columns, so an edited column could hide a denied
 * call from `audit query --effect deny`; verification compares every row's columns with its event.
 *
 * JSON.parse per record would cost more than hashing it (about 1.9 µs against 1.1 µs for a 600-byte
 * decision). This scanner walks the canonical JSON bytes once instead, descending only into `action` and
 * `decision`, and reads the few values `indexColumns` (record.ts) takes. It is only trusted on bytes whose
 * chain hash matched — text `canonicalJson` wrote — and anything it does not expect counts as a mismatch.
 *
 * Columns travel as one byte string per chunk, six entries per row: `-` for NULL, else `<bytes>:<UTF-8>`
 * (a length prefix, so no value can run into the next).
 */
import type { IndexColumns } from './record.js';

/** Value slots the scanner fills: start and end (exclusive) of the raw JSON token, -1 when absent. */
const TYPE = 0;
const AGENT = 1;
const TOOL = 2;
const DECISION_ID = 3;
const ACTION_AGENT = 4;
const ACTION_TOOL = 5;
const DECISION_EFFECT = 6;
const DECISION_RULE = 7;
const DECISION_ID_NESTED = 8;
const SLOTS = 9;

const at = new Int32Array(2 * SLOTS);
const escaped = new Uint8Array(SLOTS);
let sawEscape = false;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** End (exclusive) of the string starting at `j` (a quote), or -1. Sets `sawEscape`. */
function skipString(b: Uint8Array, j: number, end: number): number {
  sawEscape = false;
  j++;
  while (j < end) {
    const c = b[j]!;
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) {
      sawEscape = true;
      j += 2;
    } else j++;
  }
  return -1;
}

/** End (exclusive) of the value starting at `j`, or -1. */
function skipValue(b: Uint8Array, j: number, end: number): number {
  const c = b[j];
  if (c === QUOTE) return skipString(b, j, end);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (j < end) {
      const d = b[j]!;
      if (d === QUOTE) {
        j = skipString(b, j, end);
        if (j < 0) return -1;
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    return -1;
  }
  // A number or literal runs to the next delimiter.
  while (j < end) {
    const d = b[j]!;
    if (d === 0x2c || d === 0x7d || d === 0x5d) return j;
    j++;
  }
  return -1;
}

/** Is b[s..e) the ASCII key `k`? */
function keyIs(b: Uint8Array, s: number, e: number, k: string): boolean {
  if (e - s !== k.length) return false;
  for (let i = 0; i < k.length; i++) if (b[s + i] !== k.charCodeAt(i)) return false;
  return true;
}

/** Which slot key b[s..e) fills at `level` (0 top, 1 action, 2 decision); -1 for none. */
function slotOf(b: Uint8Array, s: number, e: number, level: number): number {
  if (level === 0) {
    if (keyIs(b, s, e, 'type')) return TYPE;
    if (keyIs(b, s, e, 'agent')) return AGENT;
    if (keyIs(b, s, e, 'tool')) return TOOL;
    if (keyIs(b, s, e, 'decisionId')) return DECISION_ID;
    return -1;
  }
  if (level === 1) {
    if (keyIs(b, s, e, 'agent')) return ACTION_AGENT;
    if (keyIs(b, s, e, 'tool')) return ACTION_TOOL;
    return -1;
  }
  if (keyIs(b, s, e, 'effect')) return DECISION_EFFECT;
  if (keyIs(b, s, e, 'rule')) return DECISION_RULE;
  if (keyIs(b, s, e, 'id')) return DECISION_ID_NESTED;
  return -1;
}

/** Walk the object at `j`, recording slot values; end (exclusive) or -1 when it is not what we expect. */
function walk(b: Uint8Array, j: number, end: number, level: number): number {
  if (b[j] !== 0x7b) return -1;
  j++;
  if (b[j] === 0x7d) return j + 1;
  while (j < end) {
    if (b[j] !== QUOTE) return -1;
    const ks = j + 1;
    const ke = skipString(b, j, end) - 1;
    if (ke < 0) return -1;
    j = ke + 1;
    if (b[j] !== 0x3a) return -1;
    j++;
    if (level === 0 && b[j] === 0x7b && keyIs(b, ks, ke, 'action')) j = walk(b, j, end, 1);
    else if (level === 0 && b[j] === 0x7b && keyIs(b, ks, ke, 'decision')) j = walk(b, j, end, 2);
    else {
      const slot = slotOf(b, ks, ke, level);
      const vs = j;
      j = skipValue(b, j, end);
      if (slot >= 0 && j >= 0) {
        at[2 * slot] = vs;
        at[2 * slot + 1] = j;
        escaped[slot] = sawEscape ? 1 : 0;
      }
    }
    if (j < 0 || j >= end) return -1;
    const c = b[j];
    if (c === 0x7d) return j + 1;
    if (c !== 0x2c) return -1;
    j++;
  }
  return -1;
}

/** Where the next entry of the columns string starts (-1 once it was found malformed). */
let cpos = 0;
/** The entry `nextEntry` read: its value's start and byte length (-1 for NULL). */
let entryStart = 0;
let entryLength = -1;

/** Read the next column entry; false (and `cpos` -1) when the columns string is malformed. */
function nextEntry(cols: Uint8Array): boolean {
  const p = cpos;
  if (p < 0 || p >= cols.length) {
    cpos = -1;
    return false;
  }
  if (cols[p] === 0x2d) {
    cpos = p + 1;
    entryLength = -1;
    return true;
  }
  let n = 0;
  let q = p;
  while (q < cols.length && q - p < 10 && cols[q]! >= 0x30 && cols[q]! <= 0x39)
    n = n * 10 + (cols[q++]! - 0x30);
  if (q === p || cols[q] !== 0x3a || q + 1 + n > cols.length) {
    cpos = -1;
    return false;
  }
  entryStart = q + 1;
  entryLength = n;
  cpos = entryStart + n;
  return true;
}

/** Does the next column entry hold what slot `slot` of the scanned event `ev` holds (-1: NULL)? */
function matchEntry(cols: Uint8Array, slot: number, ev: Uint8Array): boolean {
  if (!nextEntry(cols)) return false;
  const s = slot < 0 ? -1 : at[2 * slot]!;
  if (s < 0) return entryLength < 0; // absent in the event: NULL
  let vs = s;
  let ve = at[2 * slot + 1]!;
  if (ve - vs === 4 && keyIs(ev, vs, ve, 'null')) return entryLength < 0;
  // INVARIANT: fail closed — a number, object or literal where only a string belongs is a mismatch.
  if (ev[vs] !== QUOTE || entryLength < 0) return false;
  const n = entryLength;
  const cs = entryStart;
  if (escaped[slot] === 1) {
    // Rare (a quote, backslash or control character in a name): decode the JSON string, compare its UTF-8.
    let value: Buffer;
    try {
      value = Buffer.from(JSON.parse(Buffer.from(ev.subarray(vs, ve)).toString('utf8')) as string, 'utf8');
    } catch {
      return false;
    }
    if (value.length !== n) return false;
    for (let i = 0; i < n; i++) if (value[i] !== cols[cs + i]) return false;
    return true;
  }
  vs++;
  ve--;
  if (ve - vs !== n) return false;
  for (let i = 0; i < n; i++) if (ev[vs + i] !== cols[cs + i]) return false;
  return true;
}

/** Start reading a chunk's columns string from its beginning. */
export function resetColumns(): void {
  cpos = 0;
}

/**
 * Check the next row's six column entries against its event bytes `ev[s..e)` (null: a pruned row, whose
 * columns must all be NULL). Returns 1 when they match, 0 when they do not.
 */
export function checkColumns(cols: Uint8Array, ev: Uint8Array | null, s: number, e: number): 0 | 1 {
  at.fill(-1);
  let ok = true;
  let slots: readonly number[] = NONE;
  if (ev !== null) {
    if (walk(ev, s, e, 0) !== e) ok = false;
    else slots = slotsFor(ev);
  }
  const src = ev ?? cols;
  for (let k = 0; k < 6; k++) if (!matchEntry(cols, slots[k]!, src)) ok = false;
  return ok ? 1 : 0;
}

/** Skip the next row's six entries unchecked (a row whose content did not pass its hash check). */
export function skipColumns(cols: Uint8Array): void {
  for (let k = 0; k < 6; k++) nextEntry(cols);
}

const NONE = [-1, -1, -1, -1, -1, -1] as const;
const DECISION = [TYPE, ACTION_AGENT, ACTION_TOOL, DECISION_EFFECT, DECISION_RULE, DECISION_ID_NESTED];
const CALL = [TYPE, AGENT, TOOL, -1, -1, DECISION_ID];
const AGENT_EVENT = [TYPE, AGENT, -1, -1, -1, -1];
const TOOL_EVENT = [TYPE, -1, TOOL, -1, -1, -1];
const OTHER = [TYPE, -1, -1, -1, -1, -1];

/** The slots `indexColumns` takes for the scanned event's type (record.ts; keep the two in step). */
function slotsFor(ev: Uint8Array): readonly number[] {
  const s = at[2 * TYPE]!;
  const e = at[2 * TYPE + 1]!;
  if (s < 0 || escaped[TYPE] === 1) return OTHER;
  if (keyIs(ev, s, e, '"decision"')) return DECISION;
  if (keyIs(ev, s, e, '"outcome"') || keyIs(ev, s, e, '"approval"')) return CALL;
  if (keyIs(ev, s, e, '"agent"')) return AGENT_EVENT;
  if (keyIs(ev, s, e, '"tool"')) return TOOL_EVENT;
  return OTHER;
}

/** The columns string of rows (what a store without `readPacked` returns), as the SQLite query builds it. */
export function encodeColumns(rows: ReadonlyArray<{ index?: IndexColumns }>): Uint8Array {
  const parts: Buffer[] = [];
  const put = (v: string | null | undefined) => {
    if (v === null || v === undefined) parts.push(DASH);
    else {
      const bytes = Buffer.from(v, 'utf8');
      parts.push(Buffer.from(`${bytes.length}:`, 'latin1'), bytes);
    }
  };
  for (const r of rows) {
    const c = r.index;
    put(c?.type);
    put(c?.agent);
    put(c?.tool);
    put(c?.effect);
    put(c?.rule);
    put(c?.decisionId);
  }
  const all = Buffer.concat(parts);
  return new Uint8Array(all.buffer, all.byteOffset, all.length).slice();
}

const DASH = Buffer.from('-', 'latin1');

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
 * Columns travel as one byte string per chunk: per row the JSON array of its six columns (SQLite's
 * `json_array`), compared token by token with the event's (decoded only when either side has an escape).
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
/** The entry `nextEntry` read: its raw JSON token (-1 start for NULL) and whether it holds an escape. */
let entryStart = -1;
let entryEnd = -1;
let entryEscaped = false;

/**
 * Read entry `k` (0..5) of the current row's JSON array; false (and `cpos` -1) when the columns string is
 * malformed. Entry 0 opens the array, entry 5 closes it.
 */
function nextEntry(cols: Uint8Array, k: number): boolean {
  let p = cpos;
  if (p < 0 || p >= cols.length || cols[p] !== (k === 0 ? 0x5b : 0x2c)) {
    cpos = -1;
    return false;
  }
  p++;
  if (cols[p] === QUOTE) {
    const e = skipString(cols, p, cols.length);
    if (e < 0) {
      cpos = -1;
      return false;
    }
    entryStart = p;
    entryEnd = e;
    entryEscaped = sawEscape;
  } else if (p + 4 <= cols.length && keyIs(cols, p, p + 4, 'null')) {
    entryStart = -1;
    entryEnd = p + 4;
  } else {
    cpos = -1;
    return false;
  }
  p = entryEnd;
  if (k === 5) {
    if (cols[p] !== 0x5d) {
      cpos = -1;
      return false;
    }
    p++;
  }
  cpos = p;
  return true;
}

/** The string a JSON string token holds, or null when it is not one. */
function decode(b: Uint8Array, s: number, e: number): string | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(b.buffer, b.byteOffset + s, e - s).toString('utf8'));
    return typeof v === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** Does entry `k` of the columns hold what slot `slot` of the scanned event `ev` holds (-1: NULL)? */
function matchEntry(cols: Uint8Array, k: number, slot: number, ev: Uint8Array): boolean {
  if (!nextEntry(cols, k)) return false;
  const vs = slot < 0 ? -1 : at[2 * slot]!;
  if (vs < 0) return entryStart < 0; // absent in the event: NULL
  const ve = at[2 * slot + 1]!;
  if (ve - vs === 4 && keyIs(ev, vs, ve, 'null')) return entryStart < 0;
  // INVARIANT: fail closed — a number, object or literal where only a string belongs is a mismatch.
  if (ev[vs] !== QUOTE || entryStart < 0) return false;
  if (!entryEscaped && escaped[slot] === 0) {
    // Both plain: the same string is the same bytes.
    const n = ve - vs;
    if (entryEnd - entryStart !== n) return false;
    for (let i = 0; i < n; i++) if (ev[vs + i] !== cols[entryStart + i]) return false;
    return true;
  }
  // Rare (a quote, backslash or control character in a name): the two sides may escape differently.
  const a = decode(ev, vs, ve);
  return a !== null && a === decode(cols, entryStart, entryEnd);
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
  for (let k = 0; k < 6; k++) if (!matchEntry(cols, k, slots[k]!, src)) ok = false;
  return ok ? 1 : 0;
}

/** Skip the next row's six entries unchecked (a row of a format version this verifier does not know). */
export function skipColumns(cols: Uint8Array): void {
  for (let k = 0; k < 6; k++) nextEntry(cols, k);
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

/** The columns string of rows read through `AuditStore.read`, as the SQLite query builds it. */
export function encodeColumns(rows: ReadonlyArray<{ index?: IndexColumns }>): Uint8Array {
  let text = '';
  for (const r of rows) {
    const c = r.index;
    text += JSON.stringify([
      c?.type ?? null,
      c?.agent ?? null,
      c?.tool ?? null,
      c?.effect ?? null,
      c?.rule ?? null,
      c?.decisionId ?? null,
    ]);
  }
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

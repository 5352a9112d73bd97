/**
 * Sealing: turn canonical event texts into chained, Merkle-hashed rows from the head a store read under its
 * write lock, and sign a checkpoint when one is due. Pure apart from the signature; runs in the writer
 * thread (writer-worker.ts), inside the store's transaction.
 */
import { type Checkpoint, type SigningKey, signCheckpoint } from './checkpoint.js';
import { Frontier, leafHash } from './merkle.js';
import { type IndexColumns, RECORD_VERSION, recordHash, type StoredRecord } from './record.js';
import type { ChainHead, SealedBatch } from './store.js';

/**
 * When to sign: at every `every` records — inside a large batch too, so no two consecutive checkpoints are
 * ever more than `every` records apart and the unsigned tail is always shorter than `every` (verification
 * relies on it: a longer gap means checkpoints were deleted) — and once the oldest unsigned record is
 * `intervalMs` old.
 */
export interface CheckpointPolicy {
  every: number;
  intervalMs: number;
}

/** Events handed off together: one time for all of them (ms, from the process that recorded them). */
export interface SealGroup {
  time: number;
  /** Canonical JSON of each event. */
  texts: string[];
  /** Index columns, six per event: type, agent, tool, effect, rule, decision id. */
  cols: Array<string | null>;
}

/** A sealed batch and where each group landed. */
export interface Sealed extends SealedBatch {
  /** Per group: seq of its first record and the time its records got. */
  placed: Array<{ seq: number; time: number }>;
}

/**
 * Seal `groups` onto `head`. Times never go backwards along the log: a group recorded before the head's time
 * (a clock step, another process) takes the head's time. `force` signs a checkpoint whenever records are
 * unsigned. A batch longer than `policy.every` gets a checkpoint at each `every` records.
 */
export function sealGroups(
  head: ChainHead,
  groups: readonly SealGroup[],
  force: boolean,
  key: SigningKey,
  policy: CheckpointPolicy,
): Sealed {
  let n = 0;
  for (const g of groups) n += g.texts.length;
  const frontier = Frontier.from(head.size, head.frontier);
  const rows: StoredRecord[] = new Array(n);
  const placed: Array<{ seq: number; time: number }> = new Array(groups.length);
  let prev = head.hash;
  let seq = head.size;
  let time = head.time;
  let k = 0;
  const every = Math.max(1, policy.every);
  const checkpoints: Checkpoint[] = [];
  let cpSize = head.checkpointSize;
  let cpTime = head.checkpointTime;
  for (let gi = 0; gi < groups.length; gi++) {
    const g = groups[gi]!;
    time = Math.max(time, g.time);
    placed[gi] = { seq, time };
    const { texts, cols } = g;
    for (let i = 0; i < texts.length; i++) {
      const event = texts[i]!;
      const hash = recordHash(RECORD_VERSION, prev, seq, time, event);
      frontier.append(leafHash(hash));
      const c = i * 6;
      const index: IndexColumns = {
        type: cols[c] as string,
        agent: cols[c + 1] ?? null,
        tool: cols[c + 2] ?? null,
        effect: cols[c + 3] ?? null,
        rule: cols[c + 4] ?? null,
        decisionId: cols[c + 5] ?? null,
      };
      rows[k++] = { seq, v: RECORD_VERSION, time, hash, event, index };
      prev = hash;
      seq++;
      // INVARIANT: no more than `every` records between two checkpoints, however large the batch.
      if (seq - cpSize >= every) {
        checkpoints.push(signCheckpoint(key, seq, frontier.root(), time));
        cpSize = seq;
        cpTime = time;
      }
    }
  }
  const size = seq;
  const due = size > cpSize && (force || time - cpTime >= policy.intervalMs);
  if (due) {
    checkpoints.push(signCheckpoint(key, size, frontier.root(), time));
    cpSize = size;
    cpTime = time;
  }
  return {
    rows,
    checkpoints,
    placed,
    head: {
      size,
      hash: prev,
      time,
      frontier: n > 0 ? frontier.serialize() : head.frontier,
      checkpointSize: cpSize,
      checkpointTime: cpTime,
      prunedBefore: head.prunedBefore,
    },
  };
}

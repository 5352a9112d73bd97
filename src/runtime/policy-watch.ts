/**
 * Follows a policy by its path, never by its inode, and hands over only content that stayed the same for
 * a settle interval: one file, or every file of a bundle at once.
 *
 * Why polling: an inotify watch (`fs.watch`) follows the inode it was given. An atomic replace (`mv`,
 * `sed -i`, most editors) gives the path a new inode, and every later change goes unseen; a Kubernetes
 * ConfigMap update swaps a `..data` symlink, which changes no watched file at all; a watch on the
 * directory sees renames in that directory only, not a symlink target elsewhere, and is lost when the
 * directory itself is replaced or remounted. Opening the path on every poll resolves symlinks afresh and
 * sees each of these, on every file system. A poll opens and reads one small file (the policy is at most
 * 4 MiB, a typical one a few KiB): tens of microseconds, ten times a second.
 *
 * Why a settle interval: a file written in place in several chunks is briefly half-written, and a
 * truncated policy can be valid and more permissive than both its old and new versions. Content is a
 * candidate only once two reads `settleMs` apart or more saw exactly the same bytes, and exactly those
 * bytes are then checked and loaded. A writer that pauses longer than `settleMs` mid-file can still expose
 * a prefix; the whole-file validation is the last line, and writing a new file and renaming it over the
 * old one (what the kubelet's ConfigMap updates, `sed -i` and most editors do) is the way to be sure.
 *
 * Bundles: a poll does not read every file of a bundle (hundreds of files, megabytes) ten times a second.
 * It stats every file the last read depended on and lists every directory it listed (a new or removed
 * file shows there); a write changes a file's ctime, which no writer can set back. Once that fingerprint
 * stayed the same for `settleMs`, the whole bundle is read, and the read counts only if the fingerprint
 * after it is still the same: no file changed while it was read. So a change of two files is handed over
 * as one, once both settled; a writer that pauses longer than `settleMs` between files exposes the state
 * in between, which must validate whole too — swap a directory or a symlink to be sure (as a ConfigMap
 * update does).
 */
import {
  fingerprint,
  type PolicyRead,
  PolicyReadError,
  readPolicy,
  readPolicyFileBytes,
} from '../policy/bundle-read.js';
import { sha256Hex } from '../sha256.js';

/** Timing of a policy watch. Changes apply within about `pollMs + settleMs` (+ load time) of the last write. */
export interface PolicyWatchTiming {
  /** How often the path is read, in ms. Default 100. */
  pollMs?: number;
  /** How long content must stay byte-for-byte unchanged before it is loaded, in ms. Default 250. */
  settleMs?: number;
}

export const DEFAULT_POLL_MS = 100;
export const DEFAULT_SETTLE_MS = 250;

/** What one read of a policy file found: its bytes, or why there were none. */
export type PolicySnapshot =
  | { ok: true; bytes: Buffer; digest: string }
  | { ok: false; error: unknown; digest: string };

/**
 * Reads the file the path names now (following symlinks), through one open descriptor so its size check
 * and its bytes are of the same file. `digest` identifies the content (or the failure) for comparisons.
 */
export async function readSnapshot(path: string): Promise<PolicySnapshot> {
  try {
    const bytes = await readPolicyFileBytes(path);
    return { ok: true, bytes, digest: sha256Hex(bytes) };
  } catch (error) {
    const code = error instanceof PolicyReadError ? error.code : 'error';
    return { ok: false, error, digest: `error:${code}` };
  }
}

/** What a policy read looks at: whether the detached signature `<path>.sig` is part of it. */
export interface PolicyReadOptions {
  signature?: boolean;
}

/**
 * A cheap identity of what `read` depended on, taken now. A single file is read and hashed (as cheap as a
 * stat for a file of a few KiB, and it sees an in-place write that keeps size and mtime); a bundle's files
 * are stat'ed and its directories listed (see `fingerprint`).
 */
export async function probe(read: Pick<PolicyRead, 'kind' | 'deps'>): Promise<string> {
  if (read.kind !== 'file') return `bundle:${await fingerprint(read)}`;
  const [file, ...rest] = read.deps.files;
  const content = file === undefined ? 'none' : (await readSnapshot(file)).digest;
  return `file:${content}:${await fingerprint({ deps: { files: rest, dirs: read.deps.dirs } })}`;
}

/**
 * True when `read` is of the state `settled` identified: the probe after the read is the same, so no file
 * changed while it was read (and a single file's bytes are exactly the ones probed).
 */
async function consistent(read: PolicyRead, settled: string): Promise<boolean> {
  if ((await probe(read)) !== settled) return false;
  const file = read.files[0];
  return read.kind !== 'file' || file === undefined || settled.startsWith(`file:${sha256Hex(file.bytes)}:`);
}

/**
 * Reads the policy at `path` once it stayed unchanged for `settleMs`: two probes at least `settleMs` apart
 * agree, then a whole read that nothing changed during. Gives up after `timeoutMs` with the last read and
 * `settled: false`.
 */
export async function readSettled(
  path: string,
  timing: PolicyWatchTiming & PolicyReadOptions & { timeoutMs: number },
): Promise<{ read: PolicyRead; settled: boolean }> {
  const settle = timing.settleMs ?? DEFAULT_SETTLE_MS;
  const deadline = Date.now() + timing.timeoutMs;
  const opts = { signature: timing.signature === true };
  let read = await readPolicy(path, opts);
  let first = await probe(read);
  let since = Date.now();
  for (;;) {
    const wait = Math.max(0, Math.min(settle - (Date.now() - since), deadline - Date.now()));
    await new Promise((r) => setTimeout(r, wait));
    const next = await probe(read);
    if (next === first && Date.now() - since >= settle) {
      const whole = await readPolicy(path, opts);
      if (await consistent(whole, next)) return { read: whole, settled: true };
      read = whole;
      first = await probe(whole);
      since = Date.now();
    } else if (next !== first) {
      first = next;
      since = Date.now();
    }
    if (Date.now() >= deadline) return { read: await readPolicy(path, opts), settled: false };
  }
}

/** What a watch keeps of a read: its kind and what it depended on. */
function watched(read: PolicyRead): Pick<PolicyRead, 'kind' | 'deps'> {
  return { kind: read.kind, deps: read.deps };
}

/**
 * Polls a policy path and calls `onSettled` once for each content (or read failure) that stayed unchanged
 * for the settle interval and differs from the last one handed over (or marked with `handled`).
 */
export class PolicyWatcher {
  readonly #path: string;
  readonly #pollMs: number;
  readonly #settleMs: number;
  readonly #opts: PolicyReadOptions;
  readonly #onSettled: (read: PolicyRead) => Promise<void>;
  /**
   * What probes are taken against: the files and directories the last read depended on (only those: the
   * read's bytes and parses are not kept alive by the watch).
   */
  #last: Pick<PolicyRead, 'kind' | 'deps'>;
  /** The content last handed over or handled: what is in force, or was last rejected. */
  #handled: string;
  /** The probe whose content was last read whole, so a settled state is read once, not every poll. */
  #handledProbe: string | undefined;
  /** The probe seen last, and since when it has not changed. */
  #seen: { probe: string; since: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  /** Starts from `first`, the read whose content is in force: only a change from it is handed over. */
  constructor(
    path: string,
    timing: PolicyWatchTiming & PolicyReadOptions,
    onSettled: (read: PolicyRead) => Promise<void>,
    first: PolicyRead,
  ) {
    this.#path = path;
    this.#pollMs = Math.max(10, timing.pollMs ?? DEFAULT_POLL_MS);
    this.#settleMs = Math.max(0, timing.settleMs ?? DEFAULT_SETTLE_MS);
    this.#opts = { signature: timing.signature === true };
    this.#onSettled = onSettled;
    this.#last = watched(first);
    this.#handled = first.digest;
    this.#schedule();
  }

  /** Notes that this read was dealt with elsewhere (a forced reload), so it is not handed over again. */
  handled(read: PolicyRead): void {
    this.#handled = read.digest;
    this.#last = watched(read);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#poll(), this.#pollMs);
    // The watch alone does not keep the process alive.
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    try {
      const p = await probe(this.#last);
      const now = Date.now();
      if (this.#seen?.probe !== p) {
        this.#seen = { probe: p, since: now };
        return;
      }
      // INVARIANT: nothing half-loaded — only content unchanged across the settle interval is handed over,
      // and for a bundle only a read that no file changed during.
      if (now - this.#seen.since < this.#settleMs || p === this.#handledProbe) return;
      const read = await readPolicy(this.#path, this.#opts);
      const same = await consistent(read, p);
      this.#last = watched(read);
      if (!same) {
        // What the probe watches changed (a file changed, or the set of files did): settle again.
        this.#seen = undefined;
        return;
      }
      this.#handledProbe = p;
      if (read.digest === this.#handled) return;
      this.#handled = read.digest;
      await this.#onSettled(read);
    } catch {
      // `onSettled` reports its own failures; a failed poll is retried at the next one.
    } finally {
      this.#schedule();
    }
  }
}

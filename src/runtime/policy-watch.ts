/**
 * Follows a policy file by its path, never by its inode, and hands over only content that stayed the
 * same for a settle interval.
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
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { MAX_POLICY_BYTES } from '../policy/source.js';
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

/** What one read of the policy path found: its bytes, or why there were none. */
export type PolicySnapshot =
  | { ok: true; bytes: Buffer; digest: string }
  | { ok: false; error: unknown; digest: string };

/**
 * Reads the file the path names now (following symlinks), through one open descriptor so its size check
 * and its bytes are of the same file. `digest` identifies the content (or the failure) for comparisons.
 */
export async function readSnapshot(path: string): Promise<PolicySnapshot> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    // Non-blocking, so a FIFO put at the path cannot hold a thread forever; it is then refused below.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not_a_file' });
    // Oversized content is not read into memory; its size and times identify it.
    if (st.size > MAX_POLICY_BYTES) {
      const error = new Error(`policy is larger than ${MAX_POLICY_BYTES} bytes`);
      return { ok: false, error, digest: `too_large:${st.size}:${st.mtimeMs}:${st.ino}` };
    }
    const bytes = await fh.readFile();
    return { ok: true, bytes, digest: sha256Hex(bytes) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, error, digest: `error:${code}` };
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Reads `path` until two reads at least `settleMs` apart see the same content, and returns that read.
 * Gives up after `timeoutMs` with the last read and `settled: false`.
 */
export async function readSettled(
  path: string,
  timing: PolicyWatchTiming & { timeoutMs: number },
): Promise<{ snapshot: PolicySnapshot; settled: boolean }> {
  const settle = timing.settleMs ?? DEFAULT_SETTLE_MS;
  const deadline = Date.now() + timing.timeoutMs;
  let first = await readSnapshot(path);
  let since = Date.now();
  for (;;) {
    const wait = Math.max(0, Math.min(settle - (Date.now() - since), deadline - Date.now()));
    await new Promise((r) => setTimeout(r, wait));
    const next = await readSnapshot(path);
    if (next.digest === first.digest && Date.now() - since >= settle)
      return { snapshot: next, settled: true };
    if (next.digest !== first.digest) {
      first = next;
      since = Date.now();
    }
    if (Date.now() >= deadline) return { snapshot: next, settled: false };
  }
}

/**
 * Polls a policy path and calls `onSettled` once for each content (or read failure) that stayed unchanged
 * for the settle interval and differs from the last one handed over (or marked with `handled`).
 */
export class PolicyWatcher {
  readonly #path: string;
  readonly #pollMs: number;
  readonly #settleMs: number;
  readonly #onSettled: (snapshot: PolicySnapshot) => Promise<void>;
  /** The content last handed over or handled: what is in force, or was last rejected. */
  #handled: string | undefined;
  /** The content seen last, and since when it has not changed. */
  #seen: { digest: string; since: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    path: string,
    timing: PolicyWatchTiming,
    onSettled: (snapshot: PolicySnapshot) => Promise<void>,
    handled?: string,
  ) {
    this.#path = path;
    this.#pollMs = Math.max(10, timing.pollMs ?? DEFAULT_POLL_MS);
    this.#settleMs = Math.max(0, timing.settleMs ?? DEFAULT_SETTLE_MS);
    this.#onSettled = onSettled;
    this.#handled = handled;
    this.#schedule();
  }

  /** Notes that this content was dealt with elsewhere (a forced reload), so it is not handed over again. */
  handled(digest: string): void {
    this.#handled = digest;
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
      const snap = await readSnapshot(this.#path);
      const now = Date.now();
      if (this.#seen?.digest !== snap.digest) {
        this.#seen = { digest: snap.digest, since: now };
        return;
      }
      // INVARIANT: nothing half-loaded — only content unchanged across the settle interval is handed over.
      if (now - this.#seen.since < this.#settleMs || snap.digest === this.#handled) return;
      this.#handled = snap.digest;
      await this.#onSettled(snap);
    } catch {
      // `onSettled` reports its own failures; a failed poll is retried at the next one.
    } finally {
      this.#schedule();
    }
  }
}

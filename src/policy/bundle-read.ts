/**
 * Reads a policy from disk as one consistent set of files: a single file, a file bundle (a root file whose
 * `include:` names more files), or a directory bundle (every `*.yaml`, `*.yml` and `*.json` under a
 * directory). Reading is separate from loading so a reload can check that nothing changed while it read
 * (see `fingerprint`) and then validate exactly the bytes it saw.
 *
 * Limits: at most MAX_BUNDLE_FILES files and MAX_BUNDLE_BYTES bytes in all, each file at most
 * MAX_POLICY_BYTES, directories at most MAX_DIR_DEPTH deep, includes at most MAX_INCLUDE_DEPTH deep.
 * Names starting with `.` are skipped (editor swap files, a ConfigMap's `..data` directories).
 */
import { constants, type Stats } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { sha256Hex } from '../sha256.js';
import { compileGlob, globMatch } from './glob.js';
import type { Problem } from './problems.js';
import { MAX_POLICY_BYTES, type PolicySource, parsePolicyText } from './source.js';

/** Most files in one bundle. */
export const MAX_BUNDLE_FILES = 2000;
/** Most bytes in one bundle, all files together. */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
/** Deepest directory nesting walked in a directory bundle. */
export const MAX_DIR_DEPTH = 8;
/** Deepest chain of includes (the root includes a file that includes a file …). */
export const MAX_INCLUDE_DEPTH = 8;
/** File names of a directory bundle's root, tried in this order. */
export const BUNDLE_ROOT_NAMES = ['bundle.yaml', 'bundle.yml', 'bundle.json'] as const;
/** Top-level keys that make a policy file the root (or a member) of a bundle. */
export const BUNDLE_KEYS = ['include', 'team', 'owns', 'base'] as const;

const POLICY_EXT = /\.(ya?ml|json)$/;

/** One file of a policy as read: its name relative to the bundle's directory (POSIX), and its bytes. */
export interface PolicyFile {
  name: string;
  path: string;
  bytes: Buffer;
  /** Its parse, when reading needed it already (to find includes); the loader reuses it. */
  source?: PolicySource;
}

/** Everything a policy path named at one moment. */
export interface PolicyRead {
  /** The path as given. */
  path: string;
  /** `file`: one policy file, loaded exactly as ever; `include`: a file bundle; `directory`. */
  kind: 'file' | 'include' | 'directory';
  /** The directory file names are relative to. */
  dir: string;
  /** The files; the first is the root (the file given, or a directory's `bundle.yaml`). */
  files: PolicyFile[];
  /** Problems finding the files (a missing include, a cycle, a limit); non-empty means the read is unusable. */
  problems: Problem[];
  /** The detached signature `<path>.sig`, when asked for: its bytes, or undefined when there is none. */
  signature?: { path: string; bytes: Buffer | undefined };
  /** What the read depended on: files read (or looked for) and directories listed. */
  deps: { files: string[]; dirs: string[] };
  /** Identifies this content (names and bytes of every file, and the signature). */
  digest: string;
}

/** Where a policy's detached signature lives: `<policy>.sig` (a directory's beside it, not inside). */
export function signaturePath(policyPath: string): string {
  return `${policyPath.replace(/[/\\]+$/, '')}.sig`;
}

/** Why a file read failed, as a code the problem messages use. */
export class PolicyReadError extends Error {
  constructor(
    readonly code: 'not_found' | 'not_a_file' | 'too_large' | 'unreadable',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PolicyReadError';
  }
}

/**
 * Reads the regular file a path names now (following symlinks) through one descriptor, so the size check
 * and the bytes are of the same file. Non-blocking: a FIFO at the path is refused instead of hanging.
 * Oversized files are refused unread. Throws PolicyReadError.
 */
export async function readPolicyFileBytes(path: string, maxBytes = MAX_POLICY_BYTES): Promise<Buffer> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) throw new PolicyReadError('not_a_file', `\`${path}\` is not a regular file`);
    if (st.size > maxBytes) throw new PolicyReadError('too_large', `policy is larger than ${maxBytes} bytes`);
    const bytes = await fh.readFile();
    if (bytes.length > maxBytes)
      throw new PolicyReadError('too_large', `policy is larger than ${maxBytes} bytes`);
    return bytes;
  } catch (e) {
    if (e instanceof PolicyReadError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new PolicyReadError('not_found', `\`${path}\` does not exist`, { cause: e });
    throw new PolicyReadError('unreadable', `cannot read \`${path}\`: ${(e as Error).message}`, { cause: e });
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Reads the policy a path names: a directory bundle, a file bundle, or one file. Never throws; what could
 * not be read is in `problems`. With `signature`, `<path>.sig` is read too (absent is not a problem here:
 * the loader decides).
 */
export async function readPolicy(path: string, opts: { signature?: boolean } = {}): Promise<PolicyRead> {
  const reader = new Reader(path);
  let kind: PolicyRead['kind'] = 'file';
  let dir = dirname(path);
  let st: Stats | undefined;
  try {
    st = await stat(path);
  } catch {
    // Reported below, by the read of the file itself.
  }
  if (st?.isDirectory()) {
    kind = 'directory';
    dir = path;
    await reader.directory(path);
  } else {
    const root = await reader.file(path, posix.basename(path.replace(/\\/g, '/')), undefined);
    if (root && isBundleFile(root)) {
      kind = 'include';
      await reader.includes(root, [root.name]);
    }
  }
  const read: PolicyRead = {
    path,
    kind,
    dir,
    files: reader.files,
    problems: reader.problems,
    deps: { files: reader.depFiles, dirs: reader.depDirs },
    digest: '',
  };
  if (opts.signature) {
    const sigPath = signaturePath(path);
    let bytes: Buffer | undefined;
    try {
      bytes = await readPolicyFileBytes(sigPath, 64 * 1024);
    } catch (e) {
      if (!(e instanceof PolicyReadError && e.code === 'not_found')) {
        read.problems.push(problemAt(sigPath, 'signature_unreadable', (e as Error).message));
      }
    }
    read.signature = { path: sigPath, bytes };
    read.deps.files.push(sigPath);
  }
  read.digest = digestOf(read);
  return read;
}

/** Identifies a read's content: the kind, each file's name and bytes, the signature and any problems. */
function digestOf(read: PolicyRead): string {
  const parts: string[] = [read.kind];
  for (const f of read.files) parts.push(`${f.name}\u0000${sha256Hex(f.bytes)}`);
  if (read.signature) parts.push(`sig\u0000${read.signature.bytes ? sha256Hex(read.signature.bytes) : '-'}`);
  for (const p of read.problems) parts.push(`problem\u0000${p.file}:${p.code}:${p.message}`);
  return sha256Hex(parts.join('\n'));
}

/**
 * A cheap identity of what a read depended on: the size, times and inode of every file it read (or
 * looked for) and the entries of every directory it listed. Two equal fingerprints around a read mean no
 * file changed while it was read; a change of content changes ctime, which no writer can set back.
 */
export async function fingerprint(read: Pick<PolicyRead, 'deps'>): Promise<string> {
  // Concurrently: a bundle of hundreds of files would otherwise wait for one stat after another.
  const files = read.deps.files.map(async (f) => {
    try {
      const s = await stat(f, { bigint: true });
      return `f ${f} ${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    } catch (e) {
      return `f ${f} ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
    }
  });
  const dirs = read.deps.dirs.map(async (d) => {
    try {
      return `d ${d} ${(await readdir(d)).sort().join('/')}`;
    } catch (e) {
      return `d ${d} ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
    }
  });
  return sha256Hex((await Promise.all([...files, ...dirs])).join('\n'));
}

/** True when a parsed file declares bundle keys (`include`, `team`, `owns`, `base`) at the top level. */
export function isBundleFile(file: PolicyFile): boolean {
  const data = file.source?.data;
  return (
    data !== null &&
    typeof data === 'object' &&
    !Array.isArray(data) &&
    BUNDLE_KEYS.some((k) => Object.hasOwn(data, k))
  );
}

/** A problem with a whole file (or directory), at its first line. */
function problemAt(file: string, code: string, message: string): Problem {
  return { severity: 'error', code, message, file, line: 1, column: 1, path: '' };
}

/** One read in progress: the files found so far, the problems, and what was looked at. */
class Reader {
  readonly files: PolicyFile[] = [];
  readonly problems: Problem[] = [];
  readonly depFiles: string[] = [];
  readonly depDirs: string[] = [];
  readonly #byName = new Map<string, PolicyFile>();
  #bytes = 0;
  readonly #base: string;

  constructor(path: string) {
    this.#base = dirname(path);
  }

  /** Reads one file into the set; `name` is its name relative to the bundle directory. */
  async file(path: string, name: string, from: { file: string; at: Problem } | undefined) {
    this.depFiles.push(path);
    if (this.files.length >= MAX_BUNDLE_FILES) {
      this.#fail(from, path, 'too_many_files', `a policy bundle holds at most ${MAX_BUNDLE_FILES} files`);
      return undefined;
    }
    let bytes: Buffer;
    try {
      bytes = await readPolicyFileBytes(path);
    } catch (e) {
      const code = e instanceof PolicyReadError ? e.code : 'unreadable';
      const message =
        code === 'not_found'
          ? from
            ? `included file \`${name}\` does not exist`
            : `policy file \`${path}\` does not exist`
          : code === 'too_large'
            ? `policy file \`${name}\` is larger than ${MAX_POLICY_BYTES} bytes`
            : (e as Error).message;
      this.#fail(from, path, from && code === 'not_found' ? 'include_not_found' : code, message);
      return undefined;
    }
    this.#bytes += bytes.length;
    if (this.#bytes > MAX_BUNDLE_BYTES) {
      this.#fail(from, path, 'too_large', `a policy bundle holds at most ${MAX_BUNDLE_BYTES} bytes in all`);
      return undefined;
    }
    const file: PolicyFile = { name, path, bytes };
    // Parsed once here (includes and `base:` are read from it); the loader reuses the parse and reports
    // what did not parse, with its place.
    let text: string | undefined;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      // The loader reports invalid UTF-8.
    }
    if (text !== undefined) {
      const parsed = parsePolicyText(text, path);
      if (parsed.ok) file.source = parsed.source;
    }
    this.files.push(file);
    this.#byName.set(name, file);
    return file;
  }

  /** Follows a file's `include:` (and, for the root, `base:`) entries, depth first, in order. */
  async includes(file: PolicyFile, stack: string[]): Promise<void> {
    const data = file.source?.data as Record<string, unknown> | undefined;
    if (!data) return;
    const lists: ['include' | 'base', unknown][] = [['include', data.include]];
    if (stack.length === 1) lists.push(['base', data.base]);
    for (const [key, list] of lists) {
      if (!Array.isArray(list)) continue;
      for (const [i, entry] of list.entries()) {
        if (typeof entry !== 'string') continue; // the schema reports it
        const at = this.#at(file, [key, i]);
        const targets = await this.#resolve(file, entry, at, key === 'include');
        for (const name of targets) {
          if (stack.includes(name)) {
            this.problems.push({
              ...at,
              code: 'include_cycle',
              message: `include cycle: ${[...stack, name].map((n) => `\`${n}\``).join(' → ')}`,
              hint: 'a file may not include itself or a file that includes it',
            });
            continue;
          }
          // A file named twice (directly, or by two files) is read once.
          if (this.#byName.has(name)) continue;
          if (stack.length >= MAX_INCLUDE_DEPTH) {
            this.problems.push({
              ...at,
              code: 'include_too_deep',
              message: `includes nest deeper than ${MAX_INCLUDE_DEPTH} files`,
            });
            continue;
          }
          const child = await this.file(join(this.#base, ...name.split('/')), name, { file: file.name, at });
          if (child) await this.includes(child, [...stack, name]);
        }
      }
    }
  }

  /**
   * The bundle names an include entry stands for. Entries are relative to the including file, stay inside
   * the root's directory, and may use `*` in their last segment only (`teams/*.yaml`).
   */
  async #resolve(file: PolicyFile, entry: string, at: Problem, isInclude: boolean): Promise<string[]> {
    const bad = (message: string, hint?: string) => {
      this.problems.push({ ...at, code: 'bad_include', message, ...(hint ? { hint } : {}) });
      return [];
    };
    if (entry.includes('\\') || entry.startsWith('/') || /^[A-Za-z]:/.test(entry))
      return bad(`\`${entry}\` is not a relative path with \`/\` separators`);
    const joined = posix.normalize(posix.join(posix.dirname(file.name), entry));
    if (joined === '..' || joined.startsWith('../') || joined === '.')
      return bad(
        `\`${entry}\` points outside the bundle's directory`,
        'a bundle includes files at or below its root file',
      );
    const segs = joined.split('/');
    const last = segs.pop() as string;
    if (segs.some((s) => s.includes('*')) || /[?[\]{}]/.test(joined))
      return bad(`\`${entry}\` is not a simple pattern`, 'only `*` in the last segment, e.g. `teams/*.yaml`');
    if (!last.includes('*')) {
      if (!POLICY_EXT.test(last)) return bad(`\`${entry}\` is not a .yaml, .yml or .json file`);
      return [joined];
    }
    const dir = join(this.#base, ...segs);
    this.depDirs.push(dir);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      names = [];
    }
    const glob = compileGlob(last);
    const prefix = segs.length > 0 ? `${segs.join('/')}/` : '';
    const matched = names
      .filter((n) => !n.startsWith('.') && POLICY_EXT.test(n) && globMatch(glob, n))
      .map((n) => `${prefix}${n}`)
      // A glob does not match the file it is written in (`*.yaml` beside the root).
      .filter((n) => n !== file.name)
      .sort(byName);
    if (matched.length === 0) {
      this.problems.push({
        ...at,
        code: 'include_not_found',
        message: `\`${entry}\` matches no file`,
        hint: isInclude ? 'remove the entry, or add the files it names' : 'list the base files of the bundle',
      });
    }
    return matched;
  }

  /** Every policy file under a directory, sorted by name; its `bundle.yaml` is the root. */
  async directory(root: string): Promise<void> {
    const names: string[] = [];
    // Directories by device and inode: a symlink back up the tree is walked once, not 8 levels deep over
    // and over (a few such links would make the walk exponential).
    const visited = new Set<string>();
    const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
      try {
        const st = await stat(dir);
        const id = `${st.dev}:${st.ino}`;
        if (visited.has(id)) {
          this.problems.push(
            problemAt(dir, 'directory_cycle', `\`${dir}\` is a directory already in the bundle`),
          );
          return;
        }
        visited.add(id);
      } catch {
        // Reported by the listing below.
      }
      this.depDirs.push(dir);
      let entries: string[];
      try {
        entries = await readdir(dir);
      } catch (e) {
        this.problems.push(problemAt(dir, 'unreadable', `cannot list \`${dir}\`: ${(e as Error).message}`));
        return;
      }
      for (const entry of entries.sort(byName)) {
        if (entry.startsWith('.')) continue;
        const path = join(dir, entry);
        const name = rel ? `${rel}/${entry}` : entry;
        let st: Stats;
        try {
          st = await stat(path);
        } catch {
          continue; // a dangling symlink is no policy file
        }
        if (st.isDirectory()) {
          if (depth >= MAX_DIR_DEPTH) {
            this.problems.push(
              problemAt(path, 'too_deep', `directories nest deeper than ${MAX_DIR_DEPTH} levels`),
            );
            continue;
          }
          await walk(path, name, depth + 1);
        } else if (POLICY_EXT.test(entry)) names.push(name);
      }
    };
    await walk(root, '', 0);
    const rootName = BUNDLE_ROOT_NAMES.find((n) => names.includes(n));
    if (rootName === undefined) {
      this.problems.push({
        ...problemAt(root, 'no_bundle_root', `policy directory \`${root}\` has no \`bundle.yaml\``),
        hint: 'a directory bundle starts from its bundle.yaml: `version: 1`, the base team and bundle settings',
      });
      return;
    }
    names.sort(byName);
    const ordered = [rootName, ...names.filter((n) => n !== rootName)];
    for (const name of ordered) await this.file(join(root, ...name.split('/')), name, undefined);
  }

  #at(file: PolicyFile, path: (string | number)[]): Problem {
    const pos = file.source?.locate(path) ?? { line: 1, column: 1 };
    return {
      severity: 'error',
      code: '',
      message: '',
      file: file.path,
      line: pos.line,
      column: pos.column,
      path: `/${path.join('/')}`,
    };
  }

  #fail(from: { file: string; at: Problem } | undefined, path: string, code: string, message: string) {
    this.problems.push(from ? { ...from.at, code, message } : problemAt(path, code, message));
  }
}

/** Names in code-unit order: the same on every machine and locale. */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

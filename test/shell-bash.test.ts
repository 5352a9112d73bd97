// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are shell source, where `${x}` is literal text
// The shell corpus against real bash. Every case test/corpus/shell.yaml allows runs in
// `bash --noprofile --norc -c` under strace, inside a fresh temporary directory laid out with the files
// the policies allow (/srv/kb, moved into the directory) and some they do not (/srv/kb/private,
// /srv/other). The trace shows the case touched only paths its policy allows and ran only programs it
// lists. A few denied cases run the same way to show they really are attacks, and random requoted
// words show the facts' arguments are the argv bash passes.
//
// Method: `strace -f -y -xx -e trace=%file` records every file system call of bash and its children,
// with the directory of each relative name. Calls bash itself makes at start-up (the same for every
// command, found by tracing `:`), the dynamic loader's and locale files, and PATH look-ups of the programs
// the facts name are not the command's doing and are set aside; everything else must be allowed.
// Without strace (a Debian package) or ptrace the test is skipped with the reason.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { compile } from '../src/engine/compile.js';
import { isUnder } from '../src/facts/path.js';
import { initShell, parseShell } from '../src/facts/shell.js';
import { loadPolicyObject } from '../src/policy/load.js';
import { type CorpusGroup, caseArgs, groupPolicy, readCorpus } from '../src/testing/corpus.js';

const BASH = '/usr/bin/bash';
const STRACE = '/usr/bin/strace';
const ENV_PATH = '/usr/bin:/bin';

function usable(): string | null {
  if (spawnSync(BASH, ['-c', 'true']).status !== 0) return `${BASH} is not runnable`;
  const s = spawnSync(STRACE, ['-qq', '-o', '/dev/null', BASH, '-c', 'true']);
  if (s.error !== undefined || s.status !== 0)
    return `strace cannot trace here (${s.error?.message ?? s.stderr})`;
  return null;
}
const skip = usable();

let root = '';
let kb = '';
before(async () => {
  await initShell();
  root = mkdtempSync(join(tmpdir(), 'shell-bash-'));
  kb = join(root, 'srv/kb');
  for (const d of ['srv/kb/sub', 'srv/kb/private', 'srv/other', 'home'])
    mkdirSync(join(root, d), { recursive: true });
  const files: Record<string, string> = {
    'srv/kb/a.md': 'TODO one\nline two\n',
    'srv/kb/b.txt': 'b\na\n',
    'srv/kb/my file.txt': 'spaced\n',
    'srv/kb/sub/c.txt': 'TODO sub\n',
    'srv/kb/private/key': 'SECRET\n',
    'srv/other/x': 'other\n',
  };
  for (const [f, body] of Object.entries(files)) writeFileSync(join(root, f), body);
});
after(() => {
  if (root !== '') rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// Tracing

interface Touch {
  pid: string;
  syscall: string;
  path: string;
}

/** Decodes strace's `-xx` hex text (`\x2f\x65`) as UTF-8. */
function unhex(s: string): string {
  return Buffer.from(s.replace(/\\x/g, ''), 'hex').toString('utf8');
}

/** Splits a syscall's argument text at top-level commas. */
function splitArgs(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = '';
  for (const ch of text) {
    if (quoted) {
      if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if ('([{<'.includes(ch)) depth++;
    else if (')]}>'.includes(ch)) {
      if (depth === 0) break; // the syscall's closing parenthesis
      depth--;
    } else if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out;
}

const STRING = /^"((?:\\x[0-9a-f]{2})*)"$/;
const DIRFD = /^(?:AT_FDCWD|\d+)<((?:\\x[0-9a-f]{2})*)>$/;

/** Every path a traced call named, resolved against the directory strace printed for it. */
function touches(log: string, cwd: string): Touch[] {
  const out: Touch[] = [];
  for (const line of log.split('\n')) {
    const m = /^(\d+) +(\w+)\((.*)$/.exec(line);
    if (m === null) continue; // signals, exits, `<... resumed>` halves (the names were in the first half)
    const [, pid, syscall, rest] = m as unknown as [string, string, string, string];
    if (syscall === 'getcwd') continue; // its string is output
    const args = splitArgs(rest.replace(/ <unfinished \.\.\.>$/, ''));
    const names = syscall === 'execve' ? args.slice(0, 1) : args;
    names.forEach((a, i) => {
      const s = STRING.exec(a);
      if (s === null) return;
      const prev = i > 0 ? DIRFD.exec(args[i - 1] as string) : null;
      // readlink(path, buf): only strings first or right after a directory descriptor are names.
      if (i > 0 && prev === null && !['rename', 'link', 'symlink'].includes(syscall)) return;
      const name = unhex(s[1] as string);
      const base = prev !== null ? unhex(prev[1] as string) : cwd;
      out.push({ pid, syscall, path: name === '' ? '' : posix.resolve(base, name) });
    });
  }
  return out;
}

interface Run {
  status: number | null;
  stdout: string;
  touched: Touch[];
  /** Programs bash executed (full paths), in order. */
  executed: string[];
}

function traced(command: string, path = ENV_PATH): { status: number | null; stdout: string; log: string } {
  const log = join(root, `trace-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const r = spawnSync(
      STRACE,
      [
        '-f',
        '-qq',
        '-y',
        '-xx',
        '-e',
        'trace=%file',
        '-o',
        log,
        BASH,
        '--noprofile',
        '--norc',
        '-c',
        command,
      ],
      {
        cwd: kb,
        env: { PATH: path, HOME: join(root, 'home'), LANG: 'C' },
        timeout: 15_000,
        encoding: 'utf8',
      },
    );
    return { status: r.status, stdout: r.stdout, log: readFileSync(log, 'utf8') };
  } finally {
    rmSync(log, { force: true });
  }
}

let startup: Touch[] | null = null;

/** Runs `command` traced, without the calls bash makes at start-up whatever the command. */
function run(command: string): Run {
  if (startup === null) {
    const base = traced(':');
    const t = touches(base.log, kb);
    const top = t[0]?.pid;
    startup = t.filter((x) => x.pid === top);
  }
  const r = traced(command);
  const all = touches(r.log, kb);
  const top = all[0]?.pid;
  // Drop the top process's leading calls that match the start-up sequence.
  let k = 0;
  const rest: Touch[] = [];
  for (const x of all) {
    const s = startup[k];
    if (x.pid === top && s !== undefined && k >= 0 && s.syscall === x.syscall && s.path === x.path) {
      k++;
      continue;
    }
    if (x.pid === top) k = -1; // the sequence ended; later calls are the command's
    rest.push(x);
  }
  const executed = rest.filter((x) => x.syscall === 'execve').map((x) => x.path);
  return { status: r.status, stdout: r.stdout, touched: rest, executed };
}

/** Files every program needs to start, whatever its arguments: not the command's choice. */
const SYSTEM = [
  '/etc/ld.so.cache',
  '/etc/ld.so.preload',
  '/lib',
  '/lib64',
  '/usr/lib',
  '/usr/lib64',
  '/usr/share/locale',
  '/etc/locale.alias',
  '/proc/filesystems',
  '/proc/self',
  '/sys/fs/selinux',
  '/selinux',
  '/etc/selinux',
  '/dev/tty',
];

/** What a run touched that its policy does not allow (an empty list is a pass). */
function violations(r: Run, programs: readonly string[], allowed: (p: string) => boolean): string[] {
  const bad: string[] = [];
  const lookups = new Set(programs.flatMap((p) => ENV_PATH.split(':').map((d) => `${d}/${p}`)));
  for (const t of r.touched) {
    if (t.path === '') continue; // a call on an open descriptor (fstat): the open was checked
    if (SYSTEM.some((s) => isUnder(t.path, s))) continue;
    if (/^\/proc\/\d+\//.test(t.path)) continue;
    if (lookups.has(t.path) && t.syscall !== 'openat') continue; // PATH search and exec of a named program
    if (!allowed(t.path)) bad.push(`${t.syscall} ${t.path}`);
  }
  for (const e of r.executed) {
    if (!lookups.has(e)) bad.push(`executed ${e}`);
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------------
// The corpus, moved into the temporary directory

/** Replaces `/srv` in every string of a policy fragment (the corpus's paths) with the temporary copy. */
function moved(v: unknown): unknown {
  if (typeof v === 'string') return v.replaceAll('/srv/', `${root}/srv/`).replace(/^\/srv$/, `${root}/srv`);
  if (Array.isArray(v)) return v.map(moved);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, moved(x)]));
  }
  return v;
}

interface ShellWhen {
  programs?: string[];
  allow_wrappers?: string[];
  paths?: { under?: string[]; not_under?: string[] };
}

function allowedBy(when: ShellWhen): (p: string) => boolean {
  const under = when.paths?.under ?? [kb];
  const notUnder = when.paths?.not_under ?? [];
  return (p) => under.some((d) => isUnder(p, d)) && !notUnder.some((d) => isUnder(p, d));
}

const file = readCorpus('shell')[0];

describe('shell corpus in real bash', { skip: skip ?? false }, () => {
  test('the corpus file is there and allows cases', () => {
    assert.ok(file !== undefined);
    const allowedCases = file.groups.flatMap((g) => g.cases.filter((c) => c.expect === 'allow'));
    assert.ok(allowedCases.length >= 40, `${allowedCases.length} allowed cases`);
  });

  for (const group of file?.groups ?? []) {
    if (group.target !== undefined || !group.cases.some((c) => c.expect === 'allow')) continue;
    test(`allowed cases of ${JSON.stringify(group.name)} touch only what the policy allows`, () => {
      const g = moved(group) as CorpusGroup;
      const when = (g.when as { shell: ShellWhen }).shell;
      const loaded = loadPolicyObject(groupPolicy(g), group.name);
      assert.ok(loaded.ok, JSON.stringify(loaded));
      const engine = compile(loaded.policy);
      const wrong: string[] = [];
      let ran = 0;
      for (const c of g.cases) {
        if (c.expect !== 'allow') continue;
        const args = caseArgs(file as NonNullable<typeof file>, c);
        // The moved case must still be allowed: it is the one that runs.
        const d = engine.decide({ agent: 'corpus', tool: 't.call', args });
        if (d.effect !== 'allow') {
          wrong.push(`${JSON.stringify(c.value)}: moved into ${root}, ${d.effect}: ${d.reason}`);
          continue;
        }
        const command = args.command as string;
        const facts = parseShell(command);
        assert.ok(facts.ok);
        const programs = when.programs ?? facts.value.programs;
        const r = run(command);
        ran++;
        const bad = violations(r, programs, allowedBy(when));
        if (bad.length > 0) wrong.push(`${JSON.stringify(command)} touched ${bad.join(', ')}`);
        // Every program bash ran is one the facts named (what an allowed wrapper runs is, by
        // definition, not checked; `violations` still holds it to the policy's programs).
        const wrapped = facts.value.programs.some((p) => when.allow_wrappers?.includes(p));
        for (const e of wrapped ? [] : r.executed) {
          const name = posix.basename(e);
          if (!facts.value.programs.includes(name))
            wrong.push(`${JSON.stringify(command)} ran ${e}, not in the facts`);
        }
      }
      assert.ok(ran > 0);
      assert.deepEqual(wrong, []);
    });
  }

  test('the harness sees what a command touches: an allowed read is traced', () => {
    const r = run('cat a.md');
    assert.equal(r.stdout, 'TODO one\nline two\n');
    assert.ok(r.touched.some((t) => t.syscall === 'openat' && t.path === join(kb, 'a.md')));
    assert.deepEqual(r.executed, ['/usr/bin/cat']);
  });
});

describe('denied shell cases really are attacks in bash', { skip: skip ?? false }, () => {
  const inside = (p: string) => isUnder(p, kb) && !isUnder(p, join(kb, 'private'));
  const attacks: { command: string; programs: string[]; shows: (r: Run) => boolean; what: string }[] = [
    {
      command: "c'a'\\t /etc/hostname",
      programs: ['cat'],
      shows: (r) => r.executed.includes('/usr/bin/cat') && r.touched.some((t) => t.path === '/etc/hostname'),
      what: 'tree-sitter splits the word; bash runs cat on /etc/hostname',
    },
    {
      command: "cat priv'a'\\te/key",
      programs: ['cat'],
      shows: (r) => r.stdout === 'SECRET\n',
      what: 'bash reads private/key, which the parser would have read as `priva` and `te/key`',
    },
    {
      command: 'cat${IFS}/etc/hostname',
      programs: ['cat'],
      shows: (r) => r.touched.some((t) => t.path === '/etc/hostname'),
      what: '`${IFS}` splits into `cat /etc/hostname`',
    },
    {
      command: 'grep -f/etc/hostname x a.md',
      programs: ['grep'],
      shows: (r) => r.touched.some((t) => t.syscall === 'openat' && t.path === '/etc/hostname'),
      what: 'an attached option value is a file grep opens',
    },
    {
      command: 'dd if=/etc/hostname of=out.txt',
      programs: ['dd'],
      shows: (r) => r.touched.some((t) => t.syscall === 'openat' && t.path === '/etc/hostname'),
      what: '`if=` names a file dd opens',
    },
    {
      command: "printf -v 'a[$(cat /etc/hostname)]' y",
      programs: ['printf'],
      shows: (r) => r.executed.includes('/usr/bin/cat'),
      what: 'bash runs the substitution inside a `printf -v` subscript',
    },
    {
      command: 'cat <<EOF\n$(cat /etc/hostname)\nEOF\n',
      programs: ['cat'],
      shows: (r) => r.touched.some((t) => t.path === '/etc/hostname'),
      what: 'an unquoted here-document runs its substitutions',
    },
  ];
  for (const a of attacks) {
    test(`${JSON.stringify(a.command)}: ${a.what}`, () => {
      const r = run(a.command);
      assert.ok(a.shows(r), JSON.stringify({ stdout: r.stdout, executed: r.executed }));
      // The harness that passes the allowed cases flags this run.
      assert.notDeepEqual(violations(r, a.programs, inside), []);
    });
  }
});

/** A directory holding `argv`, a program that prints each argument NUL-terminated. */
function argvStub(): string {
  const stubs = join(root, 'stubs');
  mkdirSync(stubs, { recursive: true });
  // One NUL-terminated line per argument (`printf` alone would print one empty line for none).
  writeFileSync(join(stubs, 'argv'), '#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done\n', {
    mode: 0o755,
  });
  return stubs;
}

describe('shell facts give the argv bash passes', { skip: skip ?? false }, () => {
  test('random words, requoted as bash unquotes them', () => {
    const stubs = argvStub();
    // Mostly plain characters, so that most lines are literal and get compared.
    const char = fc.oneof(
      { arbitrary: fc.constantFrom(...'ab/.-=:,@#x9é'), weight: 5 },
      { arbitrary: fc.constantFrom(...'~*?[]{}$!"\' \t\\'), weight: 1 },
    );
    const piece = fc.tuple(fc.array(char, { minLength: 1, maxLength: 4 }), fc.nat(3)).map(([cs, q]) => {
      const t = cs.join('');
      if (q === 1 && !t.includes("'")) return `'${t}'`;
      if (q === 2) return `"${t.replace(/["\\$`]/g, '\\$&')}"`;
      return t;
    });
    const word = fc.array(piece, { minLength: 1, maxLength: 3 }).map((p) => p.join(''));
    let compared = 0;
    fc.assert(
      fc.property(fc.array(word, { minLength: 1, maxLength: 4 }), (words) => {
        const line = `argv ${words.join(' ')}`;
        const f = parseShell(line);
        if (!f.ok || f.value.dynamicArgs || f.value.commands.length !== 1) return;
        const cmd = f.value.commands[0];
        if (cmd?.program !== 'argv' || f.value.redirects.length > 0 || f.value.background) return;
        const r = spawnSync(BASH, ['--noprofile', '--norc', '-c', line], {
          cwd: kb,
          env: { PATH: stubs },
          encoding: 'utf8',
          timeout: 5000,
        });
        const argv = r.stdout === '' ? [] : r.stdout.slice(0, -1).split('\0');
        compared++;
        assert.deepEqual(cmd.args, argv, JSON.stringify(line));
      }),
      { numRuns: 400 },
    );
    // Means something only if many lines were compared, not all refused.
    assert.ok(compared > 150, `only ${compared} lines compared`);
  });

  test('a requoted program word is the program bash runs', () => {
    const stubs = argvStub();
    const quoting = fc.array(fc.nat(5), { minLength: 4, maxLength: 4 });
    let compared = 0;
    fc.assert(
      fc.property(quoting, fc.constantFrom('', ' x', "\t'y z'"), (qs, rest) => {
        const word = [...'argv']
          .map((ch, i) => {
            switch (qs[i] ?? 0) {
              case 1:
                return `'${ch}'`;
              case 2:
                return `"${ch}"`;
              case 3:
                return `\\${ch}`;
              case 4:
                return `${ch}''`;
              case 5:
                return `${ch}""`;
              default:
                return ch;
            }
          })
          .join('');
        const line = `${word}${rest}`;
        const f = parseShell(line);
        if (!f.ok) return;
        const r = spawnSync(BASH, ['--noprofile', '--norc', '-c', line], {
          cwd: kb,
          env: { PATH: stubs },
          timeout: 5000,
        });
        compared++;
        assert.equal(r.status, 0, `bash did not run the stub for ${JSON.stringify(line)}`);
        assert.deepEqual(f.value.programs, ['argv'], JSON.stringify(line));
      }),
      { numRuns: 150 },
    );
    assert.ok(compared > 50, `only ${compared} lines compared`);
  });
});

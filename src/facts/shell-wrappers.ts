/**
 * Programs that run their arguments (or part of them) as a command or as code. A `shell` condition
 * checks the program word bash runs; when that program is a wrapper, what really runs is hidden in its
 * arguments (`env rm`, `sh -c 'rm'`, `find -exec rm`, `awk 'BEGIN{system("rm")}'`), so a wrapper is
 * refused unless the policy names it in `allow_wrappers`.
 *
 * Bash builtins are on the list when they evaluate an argument as arithmetic or as a variable name:
 * bash expands `$(...)` inside an array subscript there, so `printf -v 'a[$(rm x)]' y`,
 * `read 'a[$(rm x)]'`, `test -v 'a[$(rm x)]'` and `declare -i x='a[$(rm x)]'` run `rm`.
 */

/** Wrappers and interpreters, by the name bash looks up (the part after the last `/`). */
const WRAPPERS: ReadonlySet<string> = new Set([
  // bash builtins and keywords that run a command, a string or a file
  '.',
  'source',
  'eval',
  'exec',
  'command',
  'builtin',
  'enable',
  'trap',
  'bind',
  'complete',
  'compgen',
  'fc',
  'coproc',
  'time',
  'hash',
  'alias',
  // bash builtins that evaluate subscripts or arithmetic in their arguments (see above)
  'let',
  'declare',
  'typeset',
  'local',
  'export',
  'readonly',
  'printf',
  'read',
  'mapfile',
  'readarray',
  'test',
  '[',
  'unset',
  'wait',
  // programs whose job is to run another program
  'env',
  'nice',
  'ionice',
  'timeout',
  'xargs',
  'parallel',
  'sudo',
  'doas',
  'su',
  'runuser',
  'pkexec',
  'sg',
  'newgrp',
  'nohup',
  'stdbuf',
  'chroot',
  'setsid',
  'setpriv',
  'unshare',
  'nsenter',
  'taskset',
  'chrt',
  'flock',
  'watch',
  'script',
  'strace',
  'ltrace',
  'gdb',
  'valgrind',
  'systemd-run',
  'ssh',
  'busybox',
  'toybox',
  // programs with a built-in way to run commands from their arguments
  'find', // -exec, -execdir, -ok
  'awk', // system(), pipes to and from commands
  'gawk',
  'mawk',
  'nawk',
  'sed', // GNU sed's `e` command and `s///e`
  'expect',
]);

/** Shells and language interpreters, with an optional version suffix (`python3.11`, `bash5`). */
const INTERPRETER =
  /^(?:(?:a|ba|da|z|k|mk|pdk|c|tc|y|fi|rba)?sh|perl|python|pypy|ruby|irb|node|nodejs|deno|bun|php|lua|luajit|tclsh|wish|julia|rscript|osascript|pwsh|powershell)[0-9.]*$/i;

/**
 * Programs that are not wrappers but can run commands or open files through their own options or
 * scripts, which neither `programs` nor `paths` see (`git -c core.pager=…`, `tar --to-command=…`,
 * `less` and `vim` with `!cmd`, `make` recipes). Listing one gets a validation warning.
 */
const RUNS_COMMANDS_VIA_OPTIONS: ReadonlySet<string> = new Set([
  'git',
  'tar',
  'rsync',
  'scp',
  'zip',
  'less',
  'more',
  'man',
  'vi',
  'vim',
  'nvim',
  'ex',
  'ed',
  'emacs',
  'make',
  'docker',
  'kubectl',
  'npm',
  'npx',
  'pip',
  'dd',
]);

/** The name bash looks a program up by: the part after the last `/`. */
function base(program: string): string {
  const i = program.lastIndexOf('/');
  return i < 0 ? program : program.slice(i + 1);
}

/** Does `program` (as bash would run it, `/usr/bin/env` included) run its arguments as a command? */
export function isWrapper(program: string): boolean {
  const b = base(program);
  return WRAPPERS.has(b) || INTERPRETER.test(b);
}

/** Can `program` run commands or open files through its own options (see RUNS_COMMANDS_VIA_OPTIONS)? */
export function runsCommandsViaOptions(program: string): boolean {
  return RUNS_COMMANDS_VIA_OPTIONS.has(base(program));
}

/** Programs that change the shell's working directory, which relative path checks assume is fixed. */
export function changesDirectory(program: string): boolean {
  return program === 'cd' || program === 'pushd' || program === 'popd';
}

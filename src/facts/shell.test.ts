// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are shell source, where `${x}` is literal text
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { loadPolicyObject } from '../policy/load.js';
import type { Json } from '../types.js';
import { shellCanonicaliser as c, initShell } from './shell.js';
import { harness } from './testing.js';

before(async () => {
  await initShell();
});

const { cond, facts, refused, allowed, why } = harness(c);

const lsCat = { programs: ['ls', 'cat'] };

describe('shell facts', () => {
  test('a simple command', () => {
    assert.deepEqual(c.toJson(facts("ls -la '/srv/my docs'")), {
      commands: [{ program: 'ls', args: ['-la', '/srv/my docs'] }],
      programs: ['ls'],
      pipes: false,
      redirects: [],
      redirectTargets: [],
      heredocs: [],
      substitution: false,
      chaining: false,
      background: false,
      dynamicProgram: false,
      dynamicArgs: false,
      assignments: [],
      assignedValues: [],
      subshell: false,
      arithmetic: false,
      tests: [],
      functions: [],
    });
  });

  test('`;`, `&&`, `||` and newlines are chaining; every program is reported', () => {
    for (const s of ['ls; rm -rf /', 'ls && rm -rf /', 'ls || rm -rf /', 'ls\nrm -rf /', 'ls;rm -rf /']) {
      const f = facts(s);
      assert.equal(f.chaining, true, s);
      assert.deepEqual(f.programs, ['ls', 'rm'], s);
    }
    assert.equal(facts('ls;').chaining, true);
  });

  test('pipes, including `|&`', () => {
    const f = facts('cat x | sh');
    assert.equal(f.pipes, true);
    assert.equal(f.chaining, false);
    assert.deepEqual(f.programs, ['cat', 'sh']);
    assert.equal(facts('cat x |& sh').pipes, true);
  });

  test('command substitution in every position is found, with its programs', () => {
    for (const [s, inner] of [
      ['ls $(rm -rf /)', 'rm'],
      ['ls `rm -rf /`', 'rm'],
      ['ls "$(rm -rf /)"', 'rm'],
      ['ls "a`rm`b"', 'rm'],
      ['ls > "$(rm)"', 'rm'],
      ['ls ${x:-$(rm)}', 'rm'],
      ['ls $(( $(rm) ))', 'rm'],
      ['x=$(rm)', 'rm'],
      ['"$(rm)"', 'rm'],
    ] as const) {
      const f = facts(s);
      assert.equal(f.substitution, true, s);
      assert.ok(f.programs.includes(inner), `${s}: ${f.programs}`);
    }
  });

  test('process substitution', () => {
    const f = facts('diff <(cat /etc/shadow) >(tee /tmp/x)');
    assert.equal(f.substitution, true);
    assert.deepEqual(f.programs, ['diff', 'cat', 'tee']);
  });

  test('redirects, heredocs and herestrings', () => {
    assert.deepEqual(facts('cat > out').redirects, ['> out']);
    assert.deepEqual(facts('cat >> out 2>&1 < in').redirects, ['>> out', '2>&1', '< in']);
    assert.deepEqual(facts('cat >> out 2>&1 < in').redirectTargets, ['out', 'in']);
    assert.deepEqual(facts("cat >&2 <&- &> 'a b' >& c 2>&1-").redirectTargets, ['a b', 'c']);
    assert.deepEqual(facts('cat > 1').redirectTargets, ['1'], '`> 1` is a file named 1');
    assert.equal(facts('cat > $f').dynamicArgs, true);
    const h = facts('cat <<EOF\nhello $(id)\nEOF\n');
    assert.deepEqual(h.redirects, []);
    assert.deepEqual(h.heredocs, ['<<EOF']);
    assert.equal(h.substitution, true);
    assert.ok(h.programs.includes('id'));
    const q = facts("cat <<'EOF'\nhello $(id)\nEOF\n");
    assert.equal(q.substitution, false, 'a quoted heredoc delimiter makes the body literal');
    assert.deepEqual(q.programs, ['cat']);
    assert.deepEqual(facts('cat <<< hi').redirects, ['<<< hi']);
  });

  test('a substitution the parser kept as literal text is refused, not missed', () => {
    refused('cat <<-EOF\n\t$(id)\n\tEOF\n', /did not read as a substitution/);
  });

  test('quoting follows bash rules for the program word', () => {
    assert.deepEqual(facts("'l''s' x").programs, ['ls']);
    assert.deepEqual(facts('"l"s').programs, ['ls']);
    assert.deepEqual(facts('l\\s').programs, ['ls']);
    assert.equal(facts("$'ls' x").dynamicProgram, true, "`$'...'` is decoded by bash: never a literal");
    assert.equal(facts('$"ls" x').dynamicProgram, true, '`$"..."` is translated by the locale');
    assert.equal(facts('"l!s"').dynamicProgram, true, '`!` is history expansion in an interactive shell');
    assert.deepEqual(facts('"ls" -la').commands, [{ program: 'ls', args: ['-la'] }]);
  });

  test('a program word that is not a literal is dynamic', () => {
    for (const s of [
      '$X a',
      '${X} a',
      '"$X" a',
      'l$X',
      '$(echo ls)',
      '/bin/l?',
      '/bin/l*',
      '{ls,-la}x',
      "$'\\x6c\\x73'",
      '~/bin/x',
      'a~',
      'l!s',
      '$((1))',
      '{a..b}',
    ]) {
      const r = c.facts(s);
      if (!r.ok) continue; // a parse error is also a refusal
      assert.equal(r.value.dynamicProgram, true, s);
    }
  });

  test('$IFS tricks are expansions, never literal separators', () => {
    const f = facts('cat${IFS}/etc/passwd');
    assert.equal(f.dynamicProgram, true);
    const g = facts('cat $IFS/etc/passwd');
    assert.equal(g.dynamicArgs, true);
    assert.deepEqual(g.programs, ['cat']);
  });

  test('`&` is background (and, followed by another command, chaining)', () => {
    const f = facts('sleep 100 &');
    assert.equal(f.background, true);
    assert.equal(f.chaining, false);
    const g = facts('rm -rf / & ls');
    assert.equal(g.background, true);
    assert.equal(g.chaining, true);
    assert.equal(facts('ls &> /dev/null').background, false);
  });

  test('wrappers that run other programs are reported as the program', () => {
    assert.deepEqual(facts('eval "rm -rf /"').programs, ['eval']);
    assert.deepEqual(facts("sh -c 'rm -rf /'").programs, ['sh']);
    assert.deepEqual(facts("bash -c 'rm'").programs, ['bash']);
    assert.deepEqual(facts('env rm').programs, ['env']);
    assert.deepEqual(facts('xargs rm').programs, ['xargs']);
    assert.deepEqual(facts('sudo rm').programs, ['sudo']);
    assert.deepEqual(facts('exec rm').programs, ['exec']);
  });

  test('assignments, declarations and tests', () => {
    assert.deepEqual(facts('LD_PRELOAD=/tmp/x.so ls').assignments, ['LD_PRELOAD']);
    assert.deepEqual(facts('PATH=/tmp ls').programs, ['ls']);
    const e = facts('export PATH=/tmp');
    assert.deepEqual(e.programs, ['export']);
    assert.deepEqual(e.assignments, ['PATH']);
    assert.deepEqual(facts('[ -f x ]').programs, ['[']);
    assert.deepEqual(facts('[ -f x ]').tests, ['[']);
    assert.deepEqual(facts('[[ -f x ]]').programs, [], '`[[` is a keyword, not a program');
    assert.deepEqual(facts('[[ -f x ]]').tests, ['[[']);
    assert.deepEqual(facts("FOO='/etc/x' GIT_DIR=a ls").assignedValues, ['/etc/x', 'a']);
    assert.equal(facts('FOO=$x ls').dynamicArgs, true);
  });

  test('commands inside subshells, groups, loops and functions count', () => {
    assert.deepEqual(facts('(rm -rf /)').programs, ['rm']);
    assert.ok(facts('{ rm -rf /; }').programs.includes('rm'));
    const w = facts('while true; do rm x; done');
    assert.equal(w.chaining, true);
    assert.ok(w.programs.includes('rm'));
    assert.ok(facts('if true; then rm x; fi').programs.includes('rm'));
    assert.ok(facts('ls() { rm -rf /; }').programs.includes('rm'));
    assert.ok(facts('! rm x').programs.includes('rm'));
  });

  test('refuses what tree-sitter and bash could read differently', () => {
    refused('ls "', /does not parse/);
    refused('ls `', /does not parse/);
    refused('ls &&', /does not parse/);
    refused('echo \\$(id)', /does not parse/);
    refused('ls\rrm', /carriage return/);
    refused('ls\u0000; rm', /NUL/);
    refused('echo a\\\nb', /line continuation/);
    refused("cat /srv/kb/priv'a'\\te/key", /split in two where bash reads one/);
    refused('l"s"\\of', /split in two/);
    refused('cat \\\t/etc/passwd', /escaped space or tab/);
    refused('cat "a"\\ b', /escaped space or tab/);
    refused('ls \\ x', /escaped space or tab/);
    assert.deepEqual(facts('ls a\\ b').commands, [{ program: 'ls', args: ['a b'] }]);
    assert.deepEqual(facts("ls 'a\\ b' # \\ x").commands, [{ program: 'ls', args: ['a\\ b'] }]);
    refused('coproc rm -rf /', /reserved word `coproc`/);
    refused('time { rm -rf /; }', /reserved word `time`/);
    refused('time rm -rf /', /reserved word `time`/);
    assert.deepEqual(facts("'time' ls").programs, ['time']);
    refused('', /empty/);
    refused('  \n ', /empty/);
    refused('# just a comment', /holds no command/);
    refused(['ls'], /must be a string, got an array/);
    refused(7, /got a number/);
  });

  test('comments are not commands', () => {
    assert.deepEqual(facts('ls # ; rm -rf /').programs, ['ls']);
    assert.equal(facts('ls # ; rm -rf /').chaining, false);
    assert.deepEqual(facts('ls a#b').commands, [{ program: 'ls', args: ['a#b'] }]);
  });
});

describe('shell conditions', () => {
  test('programs match the program word exactly', () => {
    assert.ok(allowed(lsCat, 'ls -la'));
    assert.match(why(lsCat, '/bin/ls'), /program `\/bin\/ls` not allowed; allowed: ls, cat/);
    assert.match(why(lsCat, 'rm -rf /'), /program `rm`/);
    assert.ok(allowed(lsCat, "'l''s'"));
  });

  test('a dynamic program always fails a `programs` condition', () => {
    assert.match(why(lsCat, '$X'), /expansion, glob or escape/);
    assert.match(why(lsCat, 'l$X'), /expansion/);
    assert.match(why({}, '$X'), /expansion/, 'the program word is checked even without `programs`');
  });

  test('every structural feature is refused unless allowed', () => {
    assert.match(why(lsCat, 'ls; cat x'), /several statements/);
    assert.match(why(lsCat, 'ls && cat x'), /several statements/);
    assert.match(why(lsCat, 'ls\ncat x'), /several statements/);
    assert.ok(allowed({ ...lsCat, allow_chaining: true }, 'ls; cat x'));
    assert.match(why(lsCat, 'cat x | cat'), /pipe/);
    assert.ok(allowed({ ...lsCat, allow_pipes: true }, 'cat x | cat'));
    assert.match(why(lsCat, 'ls $(cat x)'), /substitution/);
    assert.ok(allowed({ programs: ['ls', 'rm'], allow_substitution: true }, 'ls $(rm x)'));
    assert.match(why(lsCat, 'cat x > y'), /redirects/);
    assert.match(why(lsCat, 'cat <<EOF\nx\nEOF\n'), /here-document/);
    assert.match(why({ ...lsCat, allow_redirects: true }, 'cat <<EOF\nx\nEOF\n'), /here-document/);
    assert.ok(allowed({ ...lsCat, allow_heredocs: true }, 'cat <<EOF\nx\nEOF\n'));
    assert.ok(allowed({ ...lsCat, allow_redirects: true }, 'cat x > y'));
    assert.match(why(lsCat, 'ls &'), /background/);
    assert.ok(allowed({ ...lsCat, allow_background: true }, 'ls &'));
    assert.match(why(lsCat, 'LD_PRELOAD=/tmp/x.so ls'), /assigns variables \(`LD_PRELOAD`\)/);
    assert.ok(allowed({ ...lsCat, allow_assignments: true }, 'LD_PRELOAD=/tmp/x.so ls'));
  });

  test('allowing substitution still checks the programs inside it', () => {
    assert.match(why({ ...lsCat, allow_substitution: true }, 'ls $(rm -rf /)'), /program `rm`/);
    assert.match(why({ ...lsCat, allow_substitution: true }, 'ls `rm -rf /`'), /program `rm`/);
    assert.match(
      why({ ...lsCat, allow_heredocs: true, allow_substitution: true }, 'cat <<EOF\n$(rm)\nEOF\n'),
      /program `rm`/,
    );
  });

  test('compile validates fields', () => {
    const r = c.compile({
      programs: ['ls', '', 'a b', 3],
      allow_pipes: 'yes',
      allow_everything: true,
      args: ['cmd'],
    });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.deepEqual(r.errors.map((e) => e.field).sort(), [
      'allow_everything',
      'allow_pipes',
      'programs[1]',
      'programs[2]',
      'programs[3]',
    ]);
  });
});

describe('shell wrappers', () => {
  test('a wrapper is refused as a program, with or without `programs`', () => {
    for (const s of [
      'env cat /srv/kb/a',
      '/usr/bin/env cat x',
      './bash -c x',
      "sh -c 'cat x'",
      'xargs cat',
      'find . -exec cat {} +',
      'awk \'BEGIN{system("id")}\'',
      'python3.11 -c x',
      'sudo ls',
      'nice ls',
      'timeout 1 ls',
      'command ls',
      'builtin echo',
      'exec ls',
      'eval ls',
      'source x',
      '. x',
      "printf -v 'a[$(id)]' x",
      "test -v 'a[$(id)]'",
      '[ -f x ]',
      'nohup ls',
      'stdbuf -o0 ls',
      'setsid ls',
      'chroot / ls',
      'doas ls',
      'su -c ls',
    ]) {
      assert.match(why({}, s), /runs its arguments as a command or code/, s);
    }
    assert.ok(allowed({ allow_wrappers: ['env'] }, 'env cat x'));
  });

  test('listing a wrapper in `programs` needs `allow_wrappers` too', () => {
    const r = c.compile({ programs: ['ls', 'bash', '/usr/bin/env', 'python3'] });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.deepEqual(
      r.errors.map((e) => e.field),
      ['programs[1]', 'programs[2]', 'programs[3]'],
    );
    assert.match(r.errors[0]?.message ?? '', /`bash` runs its arguments.*allow_wrappers/);
    const ok = cond({ programs: ['ls', 'env'], allow_wrappers: ['env'] });
    assert.ok(c.match(ok, facts('env ls')).ok);
    const bad = c.compile({ programs: ['ls'], allow_wrappers: ['ls', 'env'] });
    assert.equal(bad.ok, false);
    if (!bad.ok) {
      assert.match(bad.errors[0]?.message ?? '', /`ls` is not a wrapper/);
      assert.match(bad.errors[1]?.message ?? '', /`env` is not in `programs`/);
    }
  });
});

describe('shell structure flags', () => {
  const cases: [string, string, RegExp][] = [
    ['(ls)', 'allow_subshells', /subshell/],
    ['(( 1 + 1 ))', 'allow_arithmetic', /arithmetic/],
    ['[[ -f x ]]', 'allow_tests', /`\[\[ \.\.\. \]\]` test/],
    ['f() (ls)', 'allow_functions', /defines functions \(`f`\)/],
    ['ls <<EOF\nx\nEOF\n', 'allow_heredocs', /here-document/],
  ];
  for (const [src, flag, reason] of cases) {
    test(`${JSON.stringify(src)} needs ${flag}`, () => {
      const base = { programs: ['ls'], allow_subshells: flag !== 'allow_subshells' };
      assert.match(why(base, src), reason);
      assert.ok(allowed({ ...base, [flag]: true }, src));
    });
  }

  test('`select` is a loop: it needs allow_chaining', () => {
    assert.match(why({ programs: ['ls'] }, 'select x in a; do ls; done'), /several statements/);
  });

  test('characters bash and tree-sitter could split differently are refused', () => {
    refused('cat\u00a0/etc/passwd', /non-ASCII space/);
    refused('cat\u200b /etc/passwd', /invisible formatting/);
    refused('ls\u2028rm', /non-ASCII space/);
    refused('ls \u3000x', /non-ASCII space/);
    refused('ls \ufeffx', /invisible/);
    refused('ls \ud800', /surrogate/);
    refused('ls \u0085x', /non-ASCII/);
    assert.deepEqual(facts('ls café').commands, [{ program: 'ls', args: ['café'] }]);
  });
});

describe('shell paths', () => {
  const kb = { programs: ['cat', 'ls', 'grep', 'head', 'dd', 'curl', 'cd'], paths: { under: ['/srv/kb'] } };
  const kbCwd = { ...kb, paths: { under: ['/srv/kb'], not_under: ['/srv/kb/private'], cwd: '/srv/kb' } };

  test('absolute operands are checked with the path rules', () => {
    assert.ok(allowed(kb, 'cat /srv/kb/a.md /srv/kb/sub/b'));
    assert.match(
      why(kb, 'cat /srv/kb/a /etc/passwd'),
      /`\/etc\/passwd` may name a file: path `\/etc\/passwd` is outside/,
    );
    assert.match(why(kb, 'cat /srv/kb2/x'), /outside/);
    assert.match(why(kb, 'cat /srv/kb/../../etc/passwd'), /`\.\.`/);
    assert.match(why(kb, "cat '/srv/kb/%2e%2e/x'"), /percent/);
    assert.match(why(kb, "cat '~/x'"), /starts with `~`/);
    assert.ok(allowed(kb, "cat '/srv/kb/my file'"));
  });

  test('relative names need `cwd`, and are resolved against it', () => {
    assert.match(why(kb, 'cat a.md'), /relative path and the policy sets no `paths.cwd`/);
    assert.match(
      why(kb, 'ls -a /srv/kb'),
      /`a` may name a file.*relative/,
      'a short option may carry a file name',
    );
    assert.ok(allowed(kbCwd, 'cat a.md sub/b ./c'));
    assert.ok(allowed(kbCwd, 'ls -a .'));
    assert.ok(allowed(kbCwd, 'head -n 20 a.md'));
    assert.match(why(kbCwd, 'cat private/key'), /inside `\/srv\/kb\/private`/);
    assert.match(why(kbCwd, 'cat sub/../../etc/passwd'), /`\.\.`/);
    assert.match(why(kbCwd, 'cat ..'), /`\.\.`/);
  });

  test('option values, key=value, host:path, lists and @file are checked', () => {
    for (const s of [
      'grep --file=/etc/passwd x /srv/kb',
      'grep -f/etc/passwd x /srv/kb',
      'grep -rf/etc/passwd x /srv/kb',
      'dd if=/etc/shadow of=/srv/kb/x',
      'curl -d @/etc/passwd x',
      'curl --data=@/etc/passwd x',
      'cat x:/etc/passwd',
      'cat a,/etc/passwd',
      'cat -- -x/../../../etc/passwd',
      'cat file:///etc/passwd',
    ]) {
      assert.equal(allowed(kbCwd, s), false, s);
    }
    assert.ok(allowed(kbCwd, 'grep --color=auto -rn TODO sub'));
    assert.ok(allowed(kbCwd, 'cat -'), '`-` is standard input, not a file');
    assert.match(why(kbCwd, `cat -${'x'.repeat(300)}`), /too long/);
  });

  test('every word must be literal when paths is set', () => {
    for (const s of [
      'cat $HOME/x',
      'cat /srv/kb/*',
      'cat ~/x',
      'cat /srv/kb/{a,b}',
      "cat $'/srv/kb/x'",
      'cat "$x"',
    ]) {
      assert.match(why(kbCwd, s), /bash would expand/, s);
    }
    assert.ok(allowed(kbCwd, "cat '/srv/kb/*'"), 'a quoted `*` is a file name');
  });

  test('redirection targets and assigned values are paths', () => {
    const r = { ...kbCwd, allow_redirects: true, allow_assignments: true };
    assert.ok(allowed(r, 'cat a > b 2>&1'));
    assert.match(why(r, 'cat a > /etc/cron.d/x'), /`\/etc\/cron.d\/x`/);
    assert.match(why(r, 'cat < /etc/shadow'), /outside/);
    assert.match(why(r, 'cat a >& /tmp/x'), /`\/tmp\/x`/);
    assert.match(why(r, 'cat a > $f'), /bash would expand/);
    assert.match(why(r, 'GIT_DIR=/etc cat a'), /`\/etc`/);
    assert.match(why(r, 'PATH=/srv/kb:/tmp cat a'), /`\/srv\/kb:\/tmp` may name a file/);
    assert.match(why(r, 'PATH=/srv/kb:/tmp:/srv/kb cat a'), /may name a file/);
    assert.match(why(r, 'X=a:/etc/passwd cat a'), /`\/etc\/passwd` may name a file/);
    assert.ok(
      allowed({ ...r, allow_heredocs: true }, "cat <<'EOF'\n/etc/passwd\nEOF\n"),
      'a here-document body is data',
    );
  });

  test('changing directory is refused when relative names are resolved against `cwd`', () => {
    assert.match(why({ ...kbCwd, allow_chaining: true }, 'cd sub && cat private/k'), /changes directory/);
    assert.ok(allowed({ ...kb, allow_chaining: true }, 'cd /srv/kb/sub && cat /srv/kb/a'));
  });

  test('compile checks the paths map', () => {
    const errs = (x: unknown) => {
      const r = c.compile(x);
      return r.ok ? [] : r.errors.map((e) => `${e.field}: ${e.message}`);
    };
    assert.match(errs({ paths: [] }).join(), /paths: `paths` must be a map/);
    assert.match(
      errs({ paths: { under: ['/srv/kb/'] } }).join(),
      /paths.under\[0\]: write the normalised path/,
    );
    assert.match(errs({ paths: { under: ['/srv'], bogus: 1 } }).join(), /paths.bogus: unknown path field/);
    assert.match(errs({ paths: { under: ['/srv'], arg: 'x' } }).join(), /paths.arg: unknown paths field/);
    assert.match(
      errs({ paths: { under: ['/srv'], cwd: 'srv' } }).join(),
      /paths.cwd: path `srv` is not absolute/,
    );
    assert.match(errs({ paths: { under: ['/srv'], cwd: 3 } }).join(), /paths.cwd: `cwd` must be a string/);
    assert.match(
      errs({ paths: { under: ['/srv/kb'], cwd: '/srv' } }).join(),
      /paths.cwd: `cwd` must satisfy/,
    );
    assert.match(
      errs({ paths: { under: ['/srv'], not_under: ['/srv/p'], cwd: '/srv/p/x' } }).join(),
      /paths.cwd: .*excluded/,
    );
    assert.match(
      errs({ paths: { under: ['/srv'] }, allow_tests: true }).join(),
      /allow_tests: .*not checked/,
    );
  });
});

describe('shell warnings', () => {
  test('the loader shows them for allow rules, not for deny rules', () => {
    const doc = (effect: string) => ({
      version: 1,
      agents: { a: { rules: [{ id: 'r', [effect]: 't.run', when: { shell: { programs: ['git'] } } }] } },
    });
    const allow = loadPolicyObject(doc('allow'), 'p.yaml');
    assert.ok(allow.ok);
    assert.deepEqual(
      allow.warnings.map((w) => w.code),
      ['shell_program_runs_commands'],
    );
    const deny = loadPolicyObject(doc('deny'), 'p.yaml');
    assert.ok(deny.ok);
    assert.ok(!deny.warnings.some((w) => w.code.startsWith('shell_')));
    const bad = loadPolicyObject(
      {
        version: 1,
        agents: { a: { rules: [{ id: 'r', allow: 't.run', when: { shell: { programs: ['bash'] } } }] } },
      },
      'p.yaml',
    );
    assert.equal(bad.ok, false, 'a wrapper in `programs` without `allow_wrappers` does not load');
  });

  const codes = (x: unknown) => (c.warnings?.(cond(x)) ?? []).map((w) => w.code);
  test('dangerous defaults are named', () => {
    assert.deepEqual(codes({}), ['shell_any_program']);
    assert.deepEqual(codes({ programs: ['ls'] }), []);
    assert.deepEqual(codes({ programs: ['ls', 'env'], allow_wrappers: ['env'] }), ['shell_wrapper_allowed']);
    assert.deepEqual(codes({ programs: ['git', 'tar'] }), [
      'shell_program_runs_commands',
      'shell_program_runs_commands',
    ]);
    assert.deepEqual(codes({ programs: ['ls'], allow_assignments: true }), ['shell_assignments']);
  });
});

/** Renders one word so bash removes the quoting again: each character plain, escaped or quoted. */
function requote(word: string, picks: number[]): string {
  let out = '';
  for (let i = 0; i < word.length; i++) {
    const ch = word[i] as string;
    switch ((picks[i] ?? 0) % 5) {
      case 1:
        out += `\\${ch}`;
        break;
      case 2:
        out += `'${ch}'`;
        break;
      case 3:
        out += `"${ch}"`;
        break;
      case 4:
        out += `${ch}''`;
        break;
      default:
        out += ch;
    }
  }
  return out;
}

describe('shell mutation properties', () => {
  const policy = cond({
    programs: ['cat', 'ls', 'grep'],
    paths: { under: ['/srv/kb'], not_under: ['/srv/kb/private'], cwd: '/srv/kb' },
  });
  const denied: string[][] = [
    ['cat', '/etc/passwd'],
    ['rm', '-rf', '/srv/kb'],
    ['cat', '/srv/kb/private/key'],
    ['cat', 'private/key'],
    ['cat', '/srv/kb/../../etc/shadow'],
    ['env', 'cat', '/srv/kb/a'],
    ['sh', '-c', 'cat'],
    ['grep', '--file=/etc/passwd', 'x'],
    ['grep', '-f/etc/passwd', 'x'],
    ['cat', 'x:/etc/passwd'],
    ['xargs', 'cat'],
    ['/bin/cat', '/srv/kb/a'],
  ];

  test('quoting bash removes, and tabs between words, never turn a denial into an allow', () => {
    const arb = fc.record({
      cmd: fc.constantFrom(...denied),
      picks: fc.array(fc.nat(20), { minLength: 64, maxLength: 64 }),
      seps: fc.array(fc.constantFrom(' ', '\t', '  ', ' \t '), { minLength: 8, maxLength: 8 }),
      comment: fc.boolean(),
    });
    fc.assert(
      fc.property(arb, ({ cmd, picks, seps, comment }) => {
        let off = 0;
        const words = cmd.map((w) => {
          const r = requote(w, picks.slice(off));
          off += w.length;
          return r;
        });
        const line =
          words.map((w, i) => (i === 0 ? w : `${seps[i % seps.length]}${w}`)).join('') +
          (comment ? ' # ok' : '');
        const r = c.facts(line);
        if (!r.ok) return; // refused outright is a denial too
        assert.deepEqual(
          r.value.commands[0],
          { program: cmd[0], args: cmd.slice(1) },
          `${JSON.stringify(line)} was not read as bash reads it`,
        );
        assert.equal(c.match(policy, r.value).ok, false, JSON.stringify(line));
      }),
      { numRuns: 2000 },
    );
  });

  test('inserting any expansion into a checked word is refused', () => {
    const arb = fc.record({
      cmd: fc.constantFrom(['cat', '/srv/kb/a'], ['ls', '/srv/kb'], ['grep', 'x', '/srv/kb/a']),
      word: fc.nat(2),
      at: fc.nat(20),
      ins: fc.constantFrom(
        '$x',
        '${IFS}',
        '*',
        '?',
        '[a]',
        '{a,b}',
        '~',
        "$'\\x2f'",
        '$"x"',
        '$((1))',
        '!x',
        '$IFS',
      ),
    });
    fc.assert(
      fc.property(arb, ({ cmd, word, at, ins }) => {
        const ws: string[] = [...cmd];
        const i = Math.min(word, ws.length - 1);
        const w = ws[i] as string;
        const p = Math.min(at, w.length);
        ws[i] = w.slice(0, p) + ins + w.slice(p);
        const line = ws.join(' ');
        const r = c.facts(line);
        if (!r.ok) return;
        assert.equal(c.match(policy, r.value).ok, false, JSON.stringify(line));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('shell properties', () => {
  test('facts never throws on arbitrary strings and JSON', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => void c.facts(s)));
    fc.assert(fc.property(fc.jsonValue(), (v) => void c.facts(v as Json)));
  });

  test('a forbidden program hidden anywhere in a generated command line is found or the line is refused', () => {
    const piece = fc.constantFrom('ls', 'ls -la', "'ls'", 'cat x', 'echo "a b"', '$X', 'a=1');
    const join = fc.constantFrom('; ', ' && ', ' || ', ' | ', '\n', ' & ');
    const hide = fc.constantFrom(
      (r: string) => r,
      (r: string) => `echo $(${r})`,
      (r: string) => `echo \`${r}\``,
      (r: string) => `echo "$(${r})"`,
      (r: string) => `cat <(${r})`,
      (r: string) => `(${r})`,
      (r: string) => `{ ${r}; }`,
      (r: string) => `echo \${x:-$(${r})}`,
      (r: string) => `cat <<EOF\n$(${r})\nEOF\n`,
      (r: string) => `if ${r}; then ls; fi`,
    );
    const cnd = cond({
      programs: ['ls', 'cat', 'echo'],
      allow_pipes: true,
      allow_chaining: true,
      allow_substitution: true,
      allow_redirects: true,
      allow_background: true,
      allow_assignments: true,
      allow_heredocs: true,
      allow_subshells: true,
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(piece, join), { maxLength: 4 }), hide, fc.nat(4), (parts, h, at) => {
        const pieces = parts.map(([p, j]) => `${p}${j}`);
        const pos = Math.min(at, pieces.length);
        pieces.splice(pos, 0, `${h('rm -rf /')}; `);
        const line = `${pieces.join('')}ls`;
        const r = c.facts(line);
        if (!r.ok) return;
        assert.ok(r.value.programs.includes('rm'), `${JSON.stringify(line)} -> ${r.value.programs}`);
        assert.equal(c.match(cnd, r.value).ok, false);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('shell against bash itself', () => {
  test('every program bash actually runs is named in the facts', (t) => {
    const which = spawnSync('sh', ['-c', 'command -v bash'], { encoding: 'utf8' });
    const bash = which.stdout.trim();
    if (which.status !== 0 || bash === '') {
      t.skip('bash is not installed');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'facts-shell-'));
    try {
      const log = join(dir, 'log');
      const names = ['aa', 'bb', 'cc', 'rm'];
      for (const n of names) {
        writeFileSync(join(dir, n), `#!/bin/sh\necho ${n} >> '${log}'\n`, { mode: 0o755 });
      }
      const word = fc.constantFrom(...names, "'a''a'", '"b"b', 'c\\c', 'x', '-l', '"$(rm)"');
      const simple = fc.array(word, { minLength: 1, maxLength: 3 }).map((ws) => ws.join(' '));
      const wrap = fc.constantFrom(
        (s: string) => s,
        (s: string) => `aa $(${s})`,
        (s: string) => `aa \`${s}\``,
        (s: string) => `(${s})`,
        (s: string) => `{ ${s}; }`,
        (s: string) => `aa <(${s})`,
        (s: string) => `if ${s}; then bb; fi`,
        (s: string) => `cat <<EOF\n$(${s})\nEOF\n`,
        (s: string) => `aa "\${x:-$(${s})}"`,
      );
      const join_ = fc.constantFrom('; ', ' && ', ' || ', ' | ', '\n', ' & ');
      const line = fc
        .array(fc.tuple(wrap, simple, join_), { minLength: 1, maxLength: 3 })
        .map((parts) => parts.map(([w, s, j], i) => `${w(s)}${i < parts.length - 1 ? j : ''}`).join(''));
      let executed = 0;
      fc.assert(
        fc.property(line, (src) => {
          const r = c.facts(src);
          if (!r.ok) return;
          writeFileSync(log, '');
          spawnSync(bash, ['--norc', '--noprofile', '-c', `${src}\nwait`], {
            env: { PATH: dir },
            cwd: dir,
            timeout: 5000,
          });
          const ran = new Set(
            readFileSync(log, 'utf8')
              .split('\n')
              .filter((x) => x !== ''),
          );
          executed += ran.size;
          for (const p of ran)
            assert.ok(
              r.value.programs.includes(p),
              `${JSON.stringify(src)} ran ${p}; facts: ${r.value.programs}`,
            );
        }),
        { numRuns: 150 },
      );
      // The comparison means something only if bash really ran the stubs.
      assert.ok(executed > 50, `only ${executed} programs ran`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are shell source, where `${x}` is literal text
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
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
      substitution: false,
      chaining: false,
      background: false,
      dynamicProgram: false,
      dynamicArgs: false,
      assignments: [],
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
    const h = facts('cat <<EOF\nhello $(id)\nEOF\n');
    assert.deepEqual(h.redirects, ['<<EOF']);
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
    assert.deepEqual(facts("$'ls' x").programs, ['ls']);
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
    assert.deepEqual(facts('[[ -f x ]]').programs, ['[[']);
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
    assert.ok(allowed({}, '$X'));
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
    assert.match(why(lsCat, 'cat <<EOF\nx\nEOF\n'), /redirects/);
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
      why({ ...lsCat, allow_redirects: true, allow_substitution: true }, 'cat <<EOF\n$(rm)\nEOF\n'),
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

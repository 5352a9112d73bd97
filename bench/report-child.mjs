// One measurement of `npm run bench:report`, in a process of its own and from the built package (dist/),
// as users run the commands: prints {ms, maxRssMb, detail} as the last line. Usage: <mode> <dir>
//   floor-read  read every record of the window, parse the decisions (what the gap report cannot skip)
//   gap         `execlayer gap … --json` (in this process, output discarded)
//   floor-copy  read every record of the window and write it to disk as JSON Lines
//   bundle      `execlayer report … --out <dir>`
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';

const dist = new URL('../dist/', import.meta.url);
const load = (p) => import(new URL(p, dist).href);
const [mode, dir] = process.argv.slice(2);
const window = JSON.parse(readFileSync(join(dir, 'window.json'), 'utf8'));
const store = `sqlite:${join(dir, 'audit.db')}`;
let detail = '';
let printed = '';
const sink = () =>
  new Writable({
    write(chunk, _enc, cb) {
      printed += chunk;
      cb();
    },
  });
const iso = (t) => new Date(t).toISOString();
const t0 = process.hrtime.bigint();
if (mode === 'floor-read' || mode === 'floor-copy') {
  const { openStore } = await load('audit/log.js');
  const { readWindow } = await load('governance/records.js');
  const s = await openStore(store, { sqlite: { mmapBytes: 0 } });
  let n = 0;
  if (mode === 'floor-read') {
    for await (const r of readWindow(s, window.from, window.to, { decisionsOnly: true })) if (r.event) n++;
    detail = `${n} decisions parsed`;
  } else {
    const out = createWriteStream(join(dir, 'copy.jsonl'));
    let buf = '';
    for await (const r of readWindow(s, window.from, window.to)) {
      buf += `${JSON.stringify(r)}\n`;
      if (++n % 10_000 === 0) {
        if (!out.write(buf)) await new Promise((res) => out.once('drain', () => res()));
        buf = '';
      }
    }
    out.write(buf);
    await new Promise((res) => out.end(() => res()));
    rmSync(join(dir, 'copy.jsonl'));
    detail = `${n} records copied`;
  }
  await s.close();
} else if (mode === 'gap') {
  const { gapCommand } = await load('cli/gap.js');
  const args = ['--policy', join(dir, 'policy.yaml'), '--declarations', join(dir, 'declarations.yaml')];
  const code = await gapCommand(
    [...args, '--store', store, '--since', iso(window.from), '--until', iso(window.to), '--json'],
    {
      stdout: sink(),
      stderr: process.stderr,
    },
  );
  if (code !== 0) throw new Error(`gap exited ${code}`);
  const g = JSON.parse(printed);
  detail = `${g.records.decisions} decisions, ${g.rows.length} rows (${g.totals.over_permitted} over-permitted, ${g.totals.undeclared_attempt} undeclared)`;
} else {
  const { reportCommand } = await load('cli/report.js');
  const out = join(dir, `bundle-${process.pid}`);
  const code = await reportCommand(
    [
      ...['--from', iso(window.from), '--to', iso(window.to), '--policy', join(dir, 'policy.yaml')],
      ...['--declarations', join(dir, 'declarations.yaml'), '--store', store, '--out', out, '--json'],
    ],
    { stdout: sink(), stderr: process.stderr },
  );
  if (code !== 0) throw new Error(`report exited ${code}`);
  const r = JSON.parse(printed);
  detail = `${r.records} records, ${r.proofs} proofs, ${r.files} files`;
  rmSync(out, { recursive: true, force: true });
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
process.stdout.write(`${JSON.stringify({ ms, maxRssMb: process.resourceUsage().maxRSS / 1024, detail })}\n`);

/**
 * Start the audit trail's writer thread (`writer-worker`) from compiled JavaScript
 * (dist/) or from TypeScript source run through tsx. A TypeScript worker entry cannot be loaded by plain
 * Node: under tsx the worker first registers tsx's require hook in its own thread, then loads the entry.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** Start worker `name` (a file beside this one, without extension). */
export function spawnWorker(name: string, options: WorkerOptions = {}): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, here), options);
  // Loader hooks registered in the parent do not reach a worker's entry module, and `--import tsx` in
  // execArgv is not applied to it either. tsx's require hook starts in a few ms where its ESM loader needs a
  // hooks thread of its own (hundreds of ms), so worker entries avoid top-level await and load as CommonJS.
  const tsx = createRequire(here).resolve('tsx/cjs/api');
  const entry = fileURLToPath(new URL(`./${name}.ts`, here));
  // Written to run whether the eval'd code is taken as CommonJS or, under `--input-type=module`, as ESM.
  const code = `import('node:module').then((m) => { const r = m.createRequire(${JSON.stringify(entry)}); r(${JSON.stringify(tsx)}).register(); r(${JSON.stringify(entry)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * Batch timing with `process.hrtime.bigint()`. Operations that take well under a microsecond cannot be
 * timed one by one (the clock read costs about as much), so each sample times a batch of operations and
 * reports the mean per operation. Percentiles over such samples describe batch means: they hide tail
 * latency shorter than a batch, which `sampleSingle` measures instead.
 */

/**
 * Runs `n` operations starting at operation number `from` and returns a value that depends on their
 * results (so the work cannot be optimised away, and so callers can check it).
 */
export type BatchFn = (from: number, n: number) => number;

export interface SampleOptions {
  /** Operations per sample. */
  batch: number;
  /** Stop taking samples after this much wall time (milliseconds)... */
  budgetMs: number;
  /** ...or after this many samples, whichever comes first. */
  maxSamples?: number;
  /** Take at least this many samples even if the budget is spent (default 1). */
  minSamples?: number;
  /** Operation number to start at (default 0); consecutive calls can continue where the last stopped. */
  start?: number;
  /** Called after each sample, outside the timed region, with the batch's result (for checks). */
  check?: (from: number, n: number, result: number) => void;
}

export interface Samples {
  /** Microseconds per operation, one entry per batch. */
  perOpUs: number[];
  /** Operations run. */
  ops: number;
  /** Operation number after the last one run. */
  next: number;
}

let sink = 0;

/** Times batches of `fn` until the budget or sample cap is reached. */
export function sampleBatches(fn: BatchFn, opts: SampleOptions): Samples {
  const batch = Math.max(1, Math.floor(opts.batch));
  const maxSamples = opts.maxSamples ?? Number.POSITIVE_INFINITY;
  const minSamples = opts.minSamples ?? 1;
  const deadline = process.hrtime.bigint() + BigInt(Math.round(opts.budgetMs * 1e6));
  const perOpUs: number[] = [];
  let from = opts.start ?? 0;
  while (perOpUs.length < maxSamples && (perOpUs.length < minSamples || process.hrtime.bigint() < deadline)) {
    const t0 = process.hrtime.bigint();
    const r = fn(from, batch);
    const t1 = process.hrtime.bigint();
    perOpUs.push(Number(t1 - t0) / 1e3 / batch);
    sink ^= r;
    opts.check?.(from, batch, r);
    from += batch;
  }
  return { perOpUs, ops: perOpUs.length * batch, next: from };
}

/** Runs `fn` untimed for about `ms` milliseconds (JIT warm-up) and returns its mean cost per operation. */
export function warmUp(fn: BatchFn, ms: number, step = 16): { perOpUs: number; ops: number; next: number } {
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(ms * 1e6));
  let from = 0;
  let now = t0;
  do {
    sink ^= fn(from, step);
    from += step;
    now = process.hrtime.bigint();
  } while (now < deadline);
  return { perOpUs: Number(now - t0) / 1e3 / from, ops: from, next: from };
}

/**
 * Batch size so that one sample lasts about `targetUs` microseconds, between 1 and `max`: doubles the
 * batch until one batch takes at least `targetUs` (or reaches `max`), then scales to the target. Run it
 * after `warmUp`, so the estimate reflects optimised code.
 */
export function chooseBatch(
  fn: BatchFn,
  targetUs = 1000,
  max = 1000,
  start = 0,
): { batch: number; next: number } {
  let n = 1;
  let from = start;
  for (;;) {
    // Fastest of three, so one preempted batch on a busy machine does not shrink the batch size.
    let us = Number.POSITIVE_INFINITY;
    for (let r = 0; r < 3; r++) {
      const t0 = process.hrtime.bigint();
      sink ^= fn(from, n);
      us = Math.min(us, Number(process.hrtime.bigint() - t0) / 1e3);
      from += n;
    }
    if (us >= targetUs || n >= max)
      return { batch: Math.max(1, Math.min(max, Math.round((targetUs * n) / us))), next: from };
    n = Math.min(max, n * 2);
  }
}

/**
 * Times `count` single operations one by one. Each sample includes one clock read's overhead (see
 * `clockOverheadUs`); use it for tail latency (p99, p99.9), not for sub-microsecond medians.
 */
export function sampleSingle(fn: BatchFn, count: number, start = 0): number[] {
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const r = fn(start + i, 1);
    const t1 = process.hrtime.bigint();
    sink ^= r;
    out[i] = Number(t1 - t0) / 1e3;
  }
  return out;
}

/** Median cost of an empty timed region, in microseconds: what `sampleSingle` adds to every sample. */
export function clockOverheadUs(count = 20_000): number {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const t1 = process.hrtime.bigint();
    out.push(Number(t1 - t0) / 1e3);
  }
  out.sort((a, b) => a - b);
  return out[out.length >> 1] as number;
}

/** Keeps results observable so the optimiser cannot drop the measured work. */
export function consume(): number {
  return sink;
}

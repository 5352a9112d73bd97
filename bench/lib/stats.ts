/**
 * Order statistics for benchmarks: percentiles of one run's samples and the median across runs, so a
 * single noisy run on a shared machine does not decide the reported number.
 */

/** Summary of one run: sample count and percentiles, in the samples' unit. */
export interface RunStats {
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** The median over several runs of each run's p50 and p99, plus the total sample count. */
export interface MedianOfRuns {
  runs: number;
  /** Samples over all runs. */
  n: number;
  p50: number;
  p99: number;
  /** Lowest and highest per-run p50, to show the spread between runs. */
  p50Min: number;
  p50Max: number;
}

/**
 * The `p`-th percentile (0..100) of ascending `sorted`, by linear interpolation between closest ranks.
 * Throws on an empty array: a percentile of nothing is a bug in the caller.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty sample');
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile \`${p}\` is outside 0..100`);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** The median of `values` (need not be sorted). */
export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((x, y) => x - y),
    50,
  );
}

/** p50, p99, min, max and mean of one run's samples. */
export function summarize(samples: readonly number[]): RunStats {
  const sorted = [...samples].sort((x, y) => x - y);
  let sum = 0;
  for (const s of sorted) sum += s;
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0] as number,
    max: sorted[sorted.length - 1] as number,
    mean: sum / sorted.length,
  };
}

/** Median across runs of each run's p50 and p99. */
export function medianOfRuns(runs: readonly RunStats[]): MedianOfRuns {
  if (runs.length === 0) throw new RangeError('median of zero runs');
  const p50s = runs.map((r) => r.p50);
  return {
    runs: runs.length,
    n: runs.reduce((t, r) => t + r.n, 0),
    p50: median(p50s),
    p99: median(runs.map((r) => r.p99)),
    p50Min: Math.min(...p50s),
    p50Max: Math.max(...p50s),
  };
}

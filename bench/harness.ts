/**
 * The only file that knows about benchmark.js: everything else asks `measure()` for a median.
 * Swapping to tinybench or mitata later touches this file alone.
 *
 * benchmark.js runs the function in cycles long enough for the timer to be accurate (a fast
 * case runs many times per cycle, a slow one once), keeps one sample (seconds per call, averaged
 * over its cycle) per cycle, and stops when it has `minSamples` samples and `maxTime` has passed.
 * We report the median of those samples and their spread.
 *
 * Callers pre-allocate inputs and outputs and make the function consume its result (write into
 * a caller-owned buffer, or fold a value into `sink`), so nothing can be optimised away. No setup
 * or teardown is given to benchmark.js, so it calls our closure rather than decompiling it.
 */
import BenchmarkModule from 'benchmark';
import lodash from 'lodash';
import platform from 'platform';

// benchmark.js finds lodash and platform with a run-time require(); in the bundled bench
// (dist/bench.mjs, `npx simd-attention bench`) that resolves from the installed package, where
// neither is installed, and every case failed. Handed over here, they are bundled with it.
const Benchmark = BenchmarkModule.runInContext({ _: lodash, platform }) as typeof BenchmarkModule;
type Benchmark = BenchmarkModule;

export interface MeasureOptions {
  /** stop sampling after about this many seconds (once minSamples are taken); default 1 */
  maxTime?: number;
  /** at least this many samples; default 5 */
  minSamples?: number;
  /** calls made (and not timed) before sampling; default 1 */
  warmup?: number;
  /** shortest cycle (seconds) benchmark.js accepts as a sample; default its own (~0.05 s) */
  minTime?: number;
}

export interface Measurement {
  /** median seconds per call */
  median: number;
  /** first and third quartile, fastest and slowest sample, in seconds per call */
  q1: number;
  q3: number;
  min: number;
  max: number;
  /** relative margin of error at 95% (benchmark.js rme, percent) */
  rme: number;
  /** number of samples */
  samples: number;
  /** calls per sample (benchmark.js cycle count) */
  callsPerSample: number;
  /** total calls timed */
  calls: number;
  /** the samples themselves (seconds per call), in the order taken */
  sampleSeconds: number[];
}

/** Keeps results alive so the optimiser cannot drop the work that produced them. */
export let sink = 0;
export function consume(x: ArrayLike<number> | number | undefined | null): void {
  if (x == null) return;
  if (typeof x === 'number') sink += x;
  else if (x.length > 0) sink += x[0] + x[x.length - 1];
}

function quantile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = (sorted.length - 1) * p;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

export function summarise(samples: number[], rme = NaN, callsPerSample = 1): Measurement {
  const s = [...samples].sort((a, b) => a - b);
  return {
    median: quantile(s, 0.5),
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    min: s[0],
    max: s[s.length - 1],
    rme,
    samples: s.length,
    callsPerSample,
    calls: s.length * callsPerSample,
    sampleSeconds: [...samples],
  };
}

/**
 * Times `fn` (synchronous, or returning a promise) and returns the median seconds per call.
 * Rejects with the function's own error if it throws.
 */
export async function measure(name: string, fn: () => unknown, opts: MeasureOptions = {}): Promise<Measurement> {
  const warmup = opts.warmup ?? 1;
  // at least one untimed call: it also tells whether fn is asynchronous
  let isAsync = false;
  for (let i = 0; i < Math.max(1, warmup); i++) {
    const r = fn();
    if (r && typeof (r as Promise<unknown>).then === 'function') {
      isAsync = true;
      await r;
    }
  }

  const common = {
    maxTime: opts.maxTime ?? 1,
    minSamples: opts.minSamples ?? 5,
    ...(opts.minTime !== undefined ? { minTime: opts.minTime } : {}),
    // no setup/teardown: benchmark.js then calls our closure instead of decompiling it
  };
  let bench: Benchmark;
  if (isAsync) {
    bench = new Benchmark(name, {
      ...common,
      defer: true,
      fn(deferred: { resolve(): void; benchmark: Benchmark }) {
        (fn() as Promise<unknown>).then(
          () => deferred.resolve(),
          (e: unknown) => {
            (deferred.benchmark as unknown as { error: unknown }).error = e;
            deferred.benchmark.abort();
            deferred.resolve();
          },
        );
      },
    });
  } else {
    bench = new Benchmark(name, fn as () => void, common);
  }

  await new Promise<void>((resolve) => {
    bench.on('complete', () => resolve());
    bench.on('abort', () => resolve());
    bench.on('error', () => resolve());
    bench.run({ async: true });
  });
  const err = (bench as unknown as { error?: unknown }).error;
  if (err) throw err instanceof Error ? err : new Error(String(err));
  const sample = bench.stats.sample;
  if (!sample || sample.length === 0) throw new Error(`${name}: benchmark.js took no samples`);
  return summarise(sample, bench.stats.rme, bench.count);
}

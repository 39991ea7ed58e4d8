/**
 * Figures paired with a probe of the machine, for native: a series of timed calls, each
 * followed straight away by one run of the probe, and the median of the per-pair ratios.
 * On this shared VM the limits swing from run to run: the FMA probe's best 1 ms found the clock
 * anywhere from about 3.5 to 3.9 GHz (226-249 GFLOP/s on one thread), and a 128 MiB read is
 * served partly by the large L3, more in some runs than others. A probe run once at the start of
 * the bench then says as much about the machine's state at that moment as about the kernel;
 * paired, the call and its probe see the same clock, the same cache state and the same load from
 * other processes. (The one-off probes are still reported.)
 *
 * The same holds for a speed-up against a peer: timed in rounds of their own, each side's median
 * comes from different minutes of the machine (on the 2-core AMD VM, enc512's ratio against
 * onnxruntime-node moved between 1.09× and 1.45× from one block of calls to the next), so
 * pairedRatio alternates one call of ours with one call of the peer (on one thread: see run.ts).
 */
import type { CaseResult } from './types.js';

/** seconds of one timed read of the arrays (the native read probe) */
export type ReadRegions = (arrays: ArrayBufferView[], threads: number) => number;
/** GFLOP/s of the native FMA probe run for `millis` ms (its best 1 ms) */
export type FmaPeak = (threads: number, millis: number) => number;

async function timeCall(run: () => unknown): Promise<number> {
  const t0 = performance.now();
  const r = run();
  if (r && typeof (r as Promise<unknown>).then === 'function') await r;
  return (performance.now() - t0) / 1e3;
}

function median(x: number[]): number {
  const s = [...x].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** `pairs` pairs after one warm-up pair, each the call then `probe` (which returns its own measure) */
async function alternate(run: () => unknown, probe: () => number, pairs: number): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  for (let i = -1; i < pairs; i++) {
    const call = await timeCall(run);
    const p = probe();
    if (i >= 0) out.push([call, p]);
  }
  return out;
}

/**
 * Decoding: each call, then a plain read of the very K and V it read (the native read probe's
 * readers at the call's thread count). Fraction: median of read time / call time.
 */
export async function pairedRead(
  run: () => unknown,
  arrays: ArrayBufferView[],
  threads: number,
  readRegions: ReadRegions,
  pairs = 21,
): Promise<NonNullable<CaseResult['pairedRead']>> {
  const bytes = arrays.reduce((n, a) => n + a.byteLength, 0);
  const p = await alternate(run, () => readRegions(arrays, threads), pairs);
  return {
    pairs,
    gbs: bytes / median(p.map(([c]) => c)) / 1e9,
    readGBs: bytes / median(p.map(([, r]) => r)) / 1e9,
    fraction: median(p.map(([c, r]) => r / c)),
  };
}

/**
 * Compute-bound shapes: each call, then `probeMillis` of the FMA probe at the call's thread
 * count. `usefulFlops`: the work that has to be done (a causal shape's visible part). Fraction:
 * median of (usefulFlops / call time) / probe.
 */
export async function pairedPeak(
  run: () => unknown,
  usefulFlops: number,
  threads: number,
  fmaPeak: FmaPeak,
  pairs = 21,
  probeMillis = 20,
): Promise<NonNullable<CaseResult['pairedPeak']>> {
  const p = await alternate(run, () => fmaPeak(threads, probeMillis), pairs);
  return {
    pairs,
    gflops: usefulFlops / median(p.map(([c]) => c)) / 1e9,
    peakGflops: median(p.map(([, g]) => g)),
    fraction: median(p.map(([c, g]) => usefulFlops / c / 1e9 / g)),
  };
}

/**
 * A speed-up against a peer: `pairs` pairs after one warm-up pair, one call of ours and one of the
 * peer's, the order swapped from pair to pair (so neither side always runs on the caches the
 * other left). Ratio: median over the pairs of peer time / our time.
 */
export async function pairedRatio(
  ours: () => unknown,
  peer: () => unknown,
  pairs = 11,
): Promise<{ pairs: number; oursSeconds: number; peerSeconds: number; ratio: number }> {
  const p: Array<[number, number]> = [];
  for (let i = -1; i < pairs; i++) {
    let a: number, b: number;
    if (i % 2 === 0) {
      a = await timeCall(ours);
      b = await timeCall(peer);
    } else {
      b = await timeCall(peer);
      a = await timeCall(ours);
    }
    if (i >= 0) p.push([a, b]);
  }
  return {
    pairs,
    oursSeconds: median(p.map(([a]) => a)),
    peerSeconds: median(p.map(([, b]) => b)),
    ratio: median(p.map(([a, b]) => b / a)),
  };
}

/**
 * Decoding's bandwidth figure, paired: one timed call, then one timed plain read of the very
 * K and V it read (the native read probe's readers, at the call's thread count), alternated.
 * Both see the same cache state and the same load from other processes, which on this shared
 * VM with a large L3 swing the best-of-30 probe over a separate buffer between runs (its figure
 * is still reported); the fraction is the median of the per-pair ratios read time / call time.
 */
import type { CaseResult } from './types.js';

export type ReadRegions = (arrays: ArrayBufferView[], threads: number) => number;

export async function pairedRead(
  run: () => unknown,
  arrays: ArrayBufferView[],
  threads: number,
  readRegions: ReadRegions,
  pairs = 21,
): Promise<NonNullable<CaseResult['pairedRead']>> {
  const bytes = arrays.reduce((n, a) => n + a.byteLength, 0);
  const call = async () => {
    const t0 = performance.now();
    const r = run();
    if (r && typeof (r as Promise<unknown>).then === 'function') await r;
    return (performance.now() - t0) / 1e3;
  };
  const callS: number[] = [];
  const readS: number[] = [];
  const ratio: number[] = [];
  for (let i = -1; i < pairs; i++) {
    const c = await call();
    const r = readRegions(arrays, threads);
    if (i < 0) continue; // the first pair warms up
    callS.push(c);
    readS.push(r);
    ratio.push(r / c);
  }
  const med = (x: number[]) => {
    const s = [...x].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  return { pairs, gbs: bytes / med(callS) / 1e9, readGBs: bytes / med(readS) / 1e9, fraction: med(ratio) };
}

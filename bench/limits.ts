/**
 * The machine's limits, measured in the same run as the kernels:
 * - FP32 FMA peak, one thread and all cores, and the memory read bandwidth: the native addon's
 *   probes (src/backends/native.ts nativeProbes());
 * - the WASM runtime's f32x4 mul+add peak (plain SIMD128) and relaxed-madd peak: the
 *   AssemblyScript probes in bench/probes/, compiled here with asc into .tmp/bench/ (the relaxed
 *   one runs in a child process with --experimental-wasm-relaxed-simd on Node 20).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH_DIR, BUNDLED, NODE_MODULES, PREBUILT_PROBES, TMP_DIR } from './paths.js';
import { runChild } from './child.js';
import { relaxedSimdNeedsFlag } from './ours.js';
import type { FmaPeak, ReadRegions } from './paired.js';
import type { LimitResult } from './types.js';

const PROBES = {
  wasmSimd: { src: 'peak.ts', out: 'peak-simd.wasm', fns: ['acc8', 'acc12'], enable: ['simd'] },
  wasmRelaxed: { src: 'peak.ts', out: 'peak-relaxed.wasm', fns: ['acc8', 'acc12'], enable: ['simd', 'relaxed-simd'] },
} as const;

/**
 * Compiles one probe with asc. It runs in the probes folder so that the package's own
 * asconfig.json (which imports memory, for the kernels) does not apply to the probes.
 */
function ascCompile(which: keyof typeof PROBES, out: string): void {
  const asc = path.join(NODE_MODULES, 'assemblyscript', 'bin', 'asc.js');
  if (!fs.existsSync(asc)) throw new Error(`AssemblyScript compiler not found at ${asc}`);
  const src = path.join(BENCH_DIR, 'probes', PROBES[which].src);
  const args = [asc, src, '-O3', '--runtime', 'stub', '--noAssert', ...PROBES[which].enable.flatMap((f) => ['--enable', f]), '-o', out];
  execFileSync(process.execPath, args, { cwd: path.dirname(src), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** flops per loop iteration per accumulator: 4 lanes × 2 (mul + add, or one fused multiply-add) */
const FLOPS_PER_ACC = 8;

/** Compiles every probe into `dir` (the bundled bench ships them precompiled). */
export function buildProbes(dir: string): void {
  fs.mkdirSync(path.resolve(dir), { recursive: true });
  for (const which of Object.keys(PROBES) as (keyof typeof PROBES)[]) ascCompile(which, path.resolve(dir, PROBES[which].out));
}

/** Compiles a probe with asc unless the .wasm is newer than its source; returns the .wasm path. */
export function compileProbe(which: keyof typeof PROBES): string {
  const p = PROBES[which];
  if (BUNDLED) return path.join(PREBUILT_PROBES, p.out);
  const src = path.join(BENCH_DIR, 'probes', p.src);
  const out = path.join(TMP_DIR, p.out);
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(src).mtimeMs) return out;
  fs.mkdirSync(TMP_DIR, { recursive: true });
  ascCompile(which, path.resolve(out));
  return out;
}

/** Runs a compiled probe in this process; GFLOP/s is the best over accumulator counts and repeats. */
export async function wasmPeakInProcess(which: keyof typeof PROBES, millis: number): Promise<LimitResult> {
  const label = which === 'wasmSimd' ? 'WASM f32x4 mul+add peak (1 thread)' : 'WASM relaxed_madd peak (1 thread)';
  const res: LimitResult = { key: which, label, unit: 'GFLOP/s', status: 'skipped' };
  let file: string;
  try {
    file = compileProbe(which);
  } catch (e) {
    return { ...res, status: 'failed', reason: `probe did not compile: ${(e as Error).message.split('\n')[0]}` };
  }
  const bytes = fs.readFileSync(file);
  if (!WebAssembly.validate(bytes)) {
    return { ...res, reason: `this runtime does not validate the ${which === 'wasmRelaxed' ? 'relaxed-SIMD' : 'SIMD128'} probe` };
  }
  const { instance } = await WebAssembly.instantiate(bytes, { env: { abort() {} } });
  const fns = PROBES[which].fns;
  let best = 0;
  let bestFn = '';
  for (const name of fns) {
    const fn = instance.exports[name] as (iters: number, mul: number, add: number) => number;
    const acc = Number(name.replace(/\D+/g, ''));
    // calibrate so that one call lasts ~millis/10
    let iters = 100_000;
    for (;;) {
      const t0 = performance.now();
      fn(iters, 0.999, 0.001);
      const dt = performance.now() - t0;
      if (dt > millis / 10 || iters > 1e9) break;
      iters *= 4;
    }
    const reps = 10; // a peak: the best of several, so a preempted repeat does not lower it
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn(iters, 0.999, 0.001);
      const s = (performance.now() - t0) / 1e3;
      const g = (iters * acc * FLOPS_PER_ACC) / s / 1e9;
      if (g > best) {
        best = g;
        bestFn = `${name}: ${acc} independent f32x4 accumulators`;
      }
    }
  }
  return { ...res, status: 'ok', value: best, detail: bestFn };
}

export interface LimitOptions {
  threads: number;
  /** duration of each FMA probe (ms) */
  millis: number;
  /** bandwidth probe buffer (bytes): the K+V size of the decoding shape, for a like-for-like fraction */
  bandwidthBytes: number;
  /** a second, larger buffer (bytes) reported for information (beyond the last-level cache) */
  bigBandwidthBytes?: number;
  onProgress?: (line: string) => void;
}

async function nativeProbes(): Promise<{
  fmaPeakGflops(t: number, ms: number): number;
  readBandwidthGBs(b: number, t: number): number;
  readRegionsSeconds(a: ArrayBufferView[], t: number): number;
}> {
  const mod = await import('../src/backends/native.js');
  return mod.nativeProbes();
}

/** The native probes that paired.ts runs after each call, or undefined without the addon. */
export async function nativePairProbes(): Promise<{ readRegions: ReadRegions; fmaPeak: FmaPeak } | undefined> {
  try {
    const p = await nativeProbes();
    return { readRegions: (arrays, threads) => p.readRegionsSeconds(arrays, threads), fmaPeak: (threads, millis) => p.fmaPeakGflops(threads, millis) };
  } catch {
    return undefined;
  }
}

export async function measureLimits(o: LimitOptions): Promise<LimitResult[]> {
  const out: LimitResult[] = [];
  const say = o.onProgress ?? (() => {});
  const T = o.threads;
  type Probe = Omit<LimitResult, 'status' | 'value'> & { run: (p: Awaited<ReturnType<typeof nativeProbes>>) => number };
  const native: Probe[] = [
    { key: 'fma1', label: 'FMA peak, 1 thread (native probe)', unit: 'GFLOP/s', run: (p) => p.fmaPeakGflops(1, o.millis) },
    { key: 'bw1', label: 'memory read bandwidth, 1 thread', unit: 'GB/s', run: (p) => p.readBandwidthGBs(o.bandwidthBytes, 1) },
  ];
  if (T > 1) {
    native.splice(1, 0, { key: 'fmaAll', label: `FMA peak, ${T} threads (native probe)`, unit: 'GFLOP/s', run: (p) => p.fmaPeakGflops(T, o.millis) });
    native.push({ key: 'bwAll', label: `memory read bandwidth, ${T} threads`, unit: 'GB/s', run: (p) => p.readBandwidthGBs(o.bandwidthBytes, T) });
  }
  if (o.bigBandwidthBytes) {
    const big = o.bigBandwidthBytes;
    const mib = `${(big / 2 ** 20).toFixed(0)} MiB`;
    native.push({ key: 'bwBig1', label: `memory read bandwidth over ${mib}, 1 thread (information)`, unit: 'GB/s', run: (p) => p.readBandwidthGBs(big, 1) });
    if (T > 1) {
      native.push({ key: 'bwBigAll', label: `memory read bandwidth over ${mib}, ${T} threads (information)`, unit: 'GB/s', run: (p) => p.readBandwidthGBs(big, T) });
    }
  }
  let probes: Awaited<ReturnType<typeof nativeProbes>> | undefined;
  let reason = '';
  try {
    probes = await nativeProbes();
  } catch (e) {
    reason = `native addon unavailable: ${(e as Error).message.split('\n')[0]}`;
  }
  for (const n of native) {
    const { run, ...meta } = n;
    if (!probes) {
      out.push({ ...meta, status: 'skipped', reason });
      continue;
    }
    try {
      const v = Math.max(run(probes), run(probes)); // best of two: a peak, not a typical value
      out.push({ ...meta, status: 'ok', value: v, detail: n.key === 'bw1' || n.key === 'bwAll' ? `${(o.bandwidthBytes / 2 ** 20).toFixed(0)} MiB buffer (the K+V size of the decoding shape)` : undefined });
    } catch (e) {
      out.push({ ...meta, status: 'failed', reason: (e as Error).message.split('\n')[0] });
    }
    say(`  limit ${meta.label}: ${out[out.length - 1].value?.toFixed(1) ?? out[out.length - 1].reason}`);
  }

  out.push(await wasmPeakInProcess('wasmSimd', o.millis));
  say(`  limit ${out[out.length - 1].label}: ${out[out.length - 1].value?.toFixed(1) ?? out[out.length - 1].reason}`);
  let relaxed: LimitResult;
  if (relaxedSimdNeedsFlag()) {
    try {
      compileProbe('wasmRelaxed'); // compile here so a compile error is reported once
      const r = await runChild({ mode: 'probe', probe: 'wasmRelaxed', millis: o.millis }, ['--experimental-wasm-relaxed-simd']);
      relaxed = (r.objects[0] as LimitResult) ?? {
        key: 'wasmRelaxed',
        label: 'WASM relaxed_madd peak (1 thread)',
        unit: 'GFLOP/s',
        status: 'failed',
        reason: `child exited ${r.code}: ${r.stderr.trim().split('\n').pop()}`,
      };
      if (relaxed.status === 'ok') relaxed.detail = `${relaxed.detail}; node --experimental-wasm-relaxed-simd`;
    } catch (e) {
      relaxed = { key: 'wasmRelaxed', label: 'WASM relaxed_madd peak (1 thread)', unit: 'GFLOP/s', status: 'failed', reason: (e as Error).message.split('\n')[0] };
    }
  } else {
    relaxed = await wasmPeakInProcess('wasmRelaxed', o.millis);
  }
  out.push(relaxed);
  say(`  limit ${relaxed.label}: ${relaxed.value?.toFixed(1) ?? relaxed.reason}`);
  return out;
}

/**
 * Measures the runners on one shape: prepare each, check its first output against the reference
 * (a wrong one is not timed), then time them in interleaved rounds — every runner a slice of its
 * sampling time per round — so that a change in machine load (other processes on a shared box)
 * falls on all of them alike and the ratios stay fair. Each figure is the median over all its
 * samples from all rounds.
 */
import os from 'node:os';
import { compare, expectedFor } from './check.js';
import { measure, summarise } from './harness.js';
import { pairedPeak, pairedRatio, pairedRead, type FmaPeak, type ReadRegions } from './paired.js';
import { usefulFraction } from './report.js';
import { flops, isBandwidthBound, kvBytes, makeInputs, type Shape } from './shapes.js';
import { Skip, type CaseResult, type Prepared, type Runner } from './types.js';

export interface CaseOptions {
  /** seconds of sampling per case in all (benchmark.js maxTime, split over the rounds) */
  maxTime: number;
  minSamples: number;
  /** shortest benchmark.js cycle (seconds); smoke tests lower it */
  minTime?: number;
  /** interleaved rounds (default 1) */
  rounds?: number;
  /** called once per finished case, in runner order, and per round */
  onProgress?: (line: string) => void;
  /** the native read probe: decode shapes then pair native calls with reads of the same K and V */
  readRegions?: ReadRegions;
  /** the native FMA probe: other shapes then pair native calls with it */
  fmaPeak?: FmaPeak;
  /** alternate single-threaded native calls with each single-threaded onnxruntime-node runner's (default off) */
  pairPeers?: boolean;
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300);
}

interface Live {
  runner: Runner;
  prepared: Prepared;
  result: CaseResult;
  /** seconds of the first (checked) call */
  first: number;
  samples: number[];
  calls: number;
  rme: number[];
}

async function prepareAndCheck(runner: Runner, shape: Shape): Promise<{ live?: Live; result: CaseResult }> {
  const base: CaseResult = {
    shape: shape.name,
    runner: runner.id,
    label: runner.label,
    family: runner.family,
    kind: runner.kind,
    threads: runner.threads,
    status: 'skipped',
  };
  const why = runner.skipReason?.(shape);
  if (why) return { result: { ...base, reason: why } };
  const inputs = makeInputs(shape);
  let prepared: Prepared;
  try {
    prepared = await runner.prepare(shape, inputs);
  } catch (e) {
    return { result: { ...base, status: e instanceof Skip ? 'skipped' : 'failed', reason: firstLine(e) } };
  }
  const result: CaseResult = { ...base, note: prepared.note };
  try {
    const t0 = performance.now();
    await prepared.run();
    const first = (performance.now() - t0) / 1e3;
    const out = await prepared.output();
    result.check = compare(shape, expectedFor(shape, inputs), out);
    if (!result.check.ok) {
      await dispose(prepared);
      return {
        result: { ...result, status: 'wrong', reason: `max abs error ${result.check.maxAbsErr} > ${result.check.tolerance} vs ${result.check.against}` },
      };
    }
    return { live: { runner, prepared, result, first, samples: [], calls: 0, rme: [] }, result };
  } catch (e) {
    await dispose(prepared);
    return { result: { ...result, status: e instanceof Skip ? 'skipped' : 'failed', reason: firstLine(e) } };
  }
}

async function dispose(p: Prepared): Promise<void> {
  try {
    await p.dispose?.();
  } catch {
    /* ignore */
  }
}

/** Runs every runner on the shape; results come back in runner order. */
export async function runShape(runners: Runner[], shape: Shape, o: CaseOptions): Promise<CaseResult[]> {
  const rounds = Math.max(1, o.rounds ?? 1);
  const checked: Array<{ live?: Live; result: CaseResult }> = [];
  for (const r of runners) checked.push(await prepareAndCheck(r, shape));
  const live = checked.map((c) => c.live).filter((l): l is Live => !!l);
  if (live.length) {
    const wrong = checked.filter((c) => c.result.status === 'wrong').map((c) => c.result.label);
    o.onProgress?.(
      `    ${shape.name}: ${live.length} checked against the reference${wrong.length ? `, WRONG: ${wrong.join(', ')}` : ''}; timing${rounds > 1 ? ` in ${rounds} interleaved rounds` : ''}`,
    );
  }

  for (let round = 0; round < rounds; round++) {
    for (const l of live) {
      if (l.result.status === 'failed') continue;
      // a slow case (one call longer than half its sampling time) takes fewer samples, and its
      // first call (the checked one) serves as the warm-up, so the grid fits in its time budget
      const slow = l.first > o.maxTime / 2;
      const perRound = slow ? Math.max(1, Math.ceil(3 / rounds)) : Math.max(1, Math.ceil(o.minSamples / rounds));
      try {
        const m = await measure(`${l.runner.label} ${shape.name}`, () => l.prepared.run(), {
          maxTime: o.maxTime / rounds,
          minSamples: Math.min(perRound, o.minSamples),
          minTime: o.minTime,
          warmup: slow || round > 0 ? 0 : 1,
        });
        l.samples.push(...m.sampleSeconds);
        l.calls += m.calls;
        if (Number.isFinite(m.rme)) l.rme.push(m.rme);
      } catch (e) {
        l.result.status = 'failed';
        l.result.reason = firstLine(e);
      }
    }
    if (rounds > 1 && live.length) o.onProgress?.(`    ${shape.name}: round ${round + 1}/${rounds} done`);
  }

  // native figures paired with the probe of their limit (paired.ts)
  for (const l of live) {
    if (l.result.status === 'failed' || l.runner.family !== 'native') continue;
    const run = () => l.prepared.run();
    try {
      if (isBandwidthBound(shape)) {
        if (o.readRegions && l.prepared.reads) l.result.pairedRead = await pairedRead(run, l.prepared.reads, l.runner.threads, o.readRegions);
      } else if (o.fmaPeak) {
        l.result.pairedPeak = await pairedPeak(run, flops(shape) * usefulFraction(shape), l.runner.threads, o.fmaPeak);
      }
    } catch (e) {
      l.result.note = [l.result.note, `paired probe failed: ${firstLine(e)}`].filter(Boolean).join('; ');
    }
  }

  // native speed-ups against onnxruntime-node, calls alternated (paired.ts). One thread only:
  // onnxruntime's intra-op threads spin for a while after each call, and with calls alternated
  // they would hold the cores the next call of ours needs (on 2 cores, mha768 ×2 took twice as
  // long right after an onnxruntime call).
  if (o.pairPeers) {
    const ok = (l: Live) => l.result.status !== 'failed';
    for (const l of live.filter((x) => ok(x) && x.runner.family === 'native' && x.runner.threads === 1)) {
      for (const peer of live.filter((x) => ok(x) && x.runner.family === 'ort-node' && x.runner.threads === l.runner.threads)) {
        try {
          const r = await pairedRatio(() => l.prepared.run(), () => peer.prepared.run());
          (l.result.pairedPeers ??= []).push({ peer: peer.runner.id, ...r });
        } catch (e) {
          l.result.note = [l.result.note, `paired with ${peer.runner.id}: failed: ${firstLine(e)}`].filter(Boolean).join('; ');
        }
      }
    }
  }

  for (const l of live) {
    await dispose(l.prepared);
    if (l.result.status === 'failed') continue;
    const m = summarise(l.samples);
    const r = l.result;
    r.status = 'ok';
    r.median = m.median;
    r.q1 = m.q1;
    r.q3 = m.q3;
    r.min = m.min;
    r.max = m.max;
    r.rme = l.rme.length ? Math.max(...l.rme) : undefined;
    r.samples = m.samples;
    r.calls = l.calls;
    r.gflops = flops(shape) / m.median / 1e9;
    if (isBandwidthBound(shape)) r.gbs = kvBytes(shape) / m.median / 1e9;
    r.load = +os.loadavg()[0].toFixed(2);
  }
  return checked.map((c) => c.result);
}

/** One runner on one shape (child processes, tests). */
export async function runCase(runner: Runner, shape: Shape, o: CaseOptions): Promise<CaseResult> {
  return (await runShape([runner], shape, o))[0];
}

/** Measures one runner on one shape: prepare, check once against the reference, then time. */
import { compare, expectedFor } from './check.js';
import { measure } from './harness.js';
import { flops, isBandwidthBound, kvBytes, makeInputs, type Shape } from './shapes.js';
import { Skip, type CaseResult, type Runner } from './types.js';

export interface CaseOptions {
  /** seconds of sampling per case (benchmark.js maxTime) */
  maxTime: number;
  minSamples: number;
  /** shortest benchmark.js cycle (seconds); smoke tests lower it */
  minTime?: number;
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300);
}

export async function runCase(runner: Runner, shape: Shape, o: CaseOptions): Promise<CaseResult> {
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
  if (why) return { ...base, reason: why };

  const inputs = makeInputs(shape);
  let prepared;
  try {
    prepared = await runner.prepare(shape, inputs);
  } catch (e) {
    return { ...base, status: e instanceof Skip ? 'skipped' : 'failed', reason: firstLine(e) };
  }
  try {
    const result: CaseResult = { ...base, note: prepared.note };
    // one call, then the check: a wrong answer is reported and not timed
    const tFirst = performance.now();
    await prepared.run();
    const first = (performance.now() - tFirst) / 1e3;
    const out = await prepared.output();
    result.check = compare(shape, expectedFor(shape, inputs), out);
    if (!result.check.ok) {
      return { ...result, status: 'wrong', reason: `max abs error ${result.check.maxAbsErr} > ${result.check.tolerance} vs ${result.check.against}` };
    }
    // a slow case (one call longer than half the sampling time) takes 3 samples, and its first
    // call (above) serves as the warm-up, so the whole grid fits in its time budget
    const slow = first > o.maxTime / 2;
    const m = await measure(`${runner.label} ${shape.name}`, () => prepared.run(), {
      maxTime: o.maxTime,
      minSamples: slow ? Math.min(3, o.minSamples) : o.minSamples,
      minTime: o.minTime,
      warmup: slow ? 0 : 1,
    });
    result.status = 'ok';
    result.median = m.median;
    result.q1 = m.q1;
    result.q3 = m.q3;
    result.min = m.min;
    result.max = m.max;
    result.rme = m.rme;
    result.samples = m.samples;
    result.calls = m.calls;
    result.gflops = flops(shape) / m.median / 1e9;
    if (isBandwidthBound(shape)) result.gbs = kvBytes(shape) / m.median / 1e9;
    return result;
  } catch (e) {
    return { ...base, status: e instanceof Skip ? 'skipped' : 'failed', reason: firstLine(e) };
  } finally {
    try {
      await prepared.dispose?.();
    } catch {
      /* ignore */
    }
  }
}

/**
 * Peak resident memory per backend on one shape (long2k by default), each in a fresh child
 * process so its maxRSS is that backend's alone: the baseline is maxRSS after loading the backend
 * and preparing the inputs, the peak is maxRSS after one call; their difference is what the call
 * itself needed. A flash-style kernel needs O(S·D) scratch; a graph that materialises the scores
 * needs B·H·S² floats (128 MiB on long2k) and more for the softmax copy.
 */
import { runChild } from './child.js';
import { findRunner } from './runners.js';
import { findShapes, makeInputs } from './shapes.js';
import { Skip, type MemoryResult, type Runner } from './types.js';

const MiB = 1024 * 1024;

function maxRssMiB(): number {
  // resourceUsage().maxRSS is in kilobytes
  return (process.resourceUsage().maxRSS * 1024) / MiB;
}

export async function memoryInProcess(runnerId: string, shapeName: string, threads: number): Promise<MemoryResult> {
  const runner = findRunner(runnerId, { threads, jsMaxFlops: Infinity }); // the parent decided it runs
  const [shape] = findShapes([shapeName]);
  const base: MemoryResult = { runner: runner.id, label: runner.label, shape: shape.name, status: 'skipped' };
  if (shape.kind === 'attention') base.scoresMiB = (shape.batch * shape.heads * shape.seqQ * shape.seqK * 4) / MiB;
  try {
    const prepared = await runner.prepare(shape, makeInputs(shape));
    const before = maxRssMiB();
    await prepared.run();
    const after = maxRssMiB();
    await prepared.dispose?.();
    return { ...base, status: 'ok', baselineMiB: before, peakMiB: after, deltaMiB: after - before };
  } catch (e) {
    return { ...base, status: e instanceof Skip ? 'skipped' : 'failed', reason: (e as Error).message.split('\n')[0] };
  }
}

export async function measureMemory(runners: Runner[], shapeName: string, threads: number, say: (l: string) => void): Promise<MemoryResult[]> {
  const out: MemoryResult[] = [];
  for (const r of runners) {
    const res = await runChild({ mode: 'memory', runner: r.id, shape: shapeName, threads }, r.childFlags ?? []);
    const m = (res.objects[0] as MemoryResult | undefined) ?? {
      runner: r.id,
      label: r.label,
      shape: shapeName,
      status: 'failed' as const,
      reason: `child exited ${res.code}: ${res.stderr.trim().split('\n').pop() ?? ''}`,
    };
    out.push(m);
    say(
      m.status === 'ok'
        ? `  memory ${r.label.padEnd(22)} peak ${m.peakMiB!.toFixed(0)} MiB, call added ${m.deltaMiB!.toFixed(1)} MiB`
        : `  memory ${r.label.padEnd(22)} ${m.status}: ${m.reason}`,
    );
  }
  return out;
}

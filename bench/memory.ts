/**
 * Peak resident memory per backend on one shape (long2k by default), each in a fresh child
 * process: the baseline is the resident set after loading the backend and preparing the inputs,
 * the peak is the highest resident set during one call; their difference is what the call itself
 * needed. A flash-style kernel needs O(S·D) scratch; a graph that materialises the scores
 * needs B·H·S² floats (128 MiB on long2k) and more for the softmax copy.
 */
import fs from 'node:fs';
import { runChild } from './child.js';
import { findRunner } from './runners.js';
import { findShapes, makeInputs } from './shapes.js';
import { Skip, type MemoryResult, type Runner } from './types.js';

const MiB = 1024 * 1024;

function procStatusKiB(field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Peak-RSS bookkeeping. On Linux, getrusage's ru_maxrss (process.resourceUsage().maxRSS) survives
 * exec, so a child forked from the (large) bench process starts with the parent's high-water
 * mark and cannot show a smaller peak. We use the kernel's per-process VmHWM instead and reset it
 * right before the call (writing 5 to /proc/self/clear_refs), so the peak is the call's own.
 * Elsewhere we fall back to maxRSS.
 */
function startPeak(): { baselineMiB: number; method: string } {
  if (procStatusKiB('VmRSS') !== undefined) {
    try {
      // the reset first, then the baseline: the high-water mark never falls below a resident
      // set read after its reset, while one read before it could be above it (a GC thread
      // returning pages in between made the peak come out below the baseline)
      fs.writeFileSync('/proc/self/clear_refs', '5');
      const rss = procStatusKiB('VmRSS')!;
      return { baselineMiB: rss / 1024, method: 'VmRSS before, VmHWM after (peak reset by /proc/self/clear_refs)' };
    } catch {
      const hwm = procStatusKiB('VmHWM');
      if (hwm !== undefined) return { baselineMiB: hwm / 1024, method: 'VmHWM before and after' };
    }
  }
  return { baselineMiB: (process.resourceUsage().maxRSS * 1024) / MiB, method: 'process.resourceUsage().maxRSS before and after' };
}

function peakMiB(): number {
  const hwm = procStatusKiB('VmHWM');
  return hwm !== undefined ? hwm / 1024 : (process.resourceUsage().maxRSS * 1024) / MiB;
}

export async function memoryInProcess(runnerId: string, shapeName: string, threads: number): Promise<MemoryResult> {
  const runner = findRunner(runnerId, { threads, jsMaxFlops: Infinity }); // the parent decided it runs
  const [shape] = findShapes([shapeName]);
  const base: MemoryResult = { runner: runner.id, label: runner.label, shape: shape.name, status: 'skipped' };
  if (shape.kind === 'attention') base.scoresMiB = (shape.batch * shape.heads * shape.seqQ * shape.seqK * 4) / MiB;
  try {
    const prepared = await runner.prepare(shape, makeInputs(shape));
    const { baselineMiB, method } = startPeak();
    await prepared.run();
    const after = peakMiB();
    await prepared.dispose?.();
    return { ...base, status: 'ok', baselineMiB, peakMiB: after, deltaMiB: Math.max(0, after - baselineMiB), method };
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

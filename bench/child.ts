/**
 * Runs part of the bench in a separate Node process: cases that need other V8 flags (relaxed
 * SIMD on Node 20), the relaxed-SIMD peak probe, and the peak-memory runs (a fresh process per
 * backend so maxRSS is that backend's alone). Results come back as lines `@@json {...}` on
 * stdout; anything else the child prints is relayed as progress.
 *
 *   node [flags] --import tsx bench/child.ts '<json payload>'
 */
import { spawn } from 'node:child_process';
import { CHILD_ARGS, ROOT } from './paths.js';

export type ChildPayload =
  | { mode: 'cases'; runner: string; shapes: string[]; threads: number; jsMaxFlops?: number; maxTime: number; minSamples: number; minTime?: number }
  | { mode: 'memory'; runner: string; shape: string; threads: number }
  | { mode: 'probe'; probe: 'wasmRelaxed' | 'wasmSimd'; millis: number };

export const CHILD_TAG = '@@json ';

export function emit(obj: unknown): void {
  process.stdout.write(CHILD_TAG + JSON.stringify(obj) + '\n');
}

/** Starts the child, relays its progress lines through `onLine`, resolves with its @@json objects. */
export function runChild(
  payload: ChildPayload,
  flags: string[] = [],
  onLine: (line: string) => void = () => {},
  timeoutMs = 10 * 60_000,
): Promise<{ objects: unknown[]; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...flags, ...CHILD_ARGS, JSON.stringify(payload)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIMD_ATTENTION_BENCH_CHILD: '1' },
    });
    const objects: unknown[] = [];
    let buf = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith(CHILD_TAG)) objects.push(JSON.parse(line.slice(CHILD_TAG.length)));
        else if (line.trim()) onLine(line);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ objects, code, stderr });
    });
  });
}

async function main(): Promise<void> {
  const payload = JSON.parse(process.argv[2]) as ChildPayload;
  if (payload.mode === 'cases') {
    const { findRunner } = await import('./runners.js');
    const { runShape } = await import('./run.js');
    const { findShapes } = await import('./shapes.js');
    const runner = findRunner(payload.runner, { threads: payload.threads, jsMaxFlops: payload.jsMaxFlops });
    for (const shape of findShapes(payload.shapes)) {
      const [res] = await runShape([{ ...runner, childFlags: undefined }], shape, {
        maxTime: payload.maxTime,
        minSamples: payload.minSamples,
        minTime: payload.minTime,
      });
      emit(res);
    }
  } else if (payload.mode === 'memory') {
    const { memoryInProcess } = await import('./memory.js');
    emit(await memoryInProcess(payload.runner, payload.shape, payload.threads));
  } else {
    const { wasmPeakInProcess } = await import('./limits.js');
    emit(await wasmPeakInProcess(payload.probe, payload.millis));
  }
}

if (process.env.SIMD_ATTENTION_BENCH_CHILD === '1' && process.argv[2]?.startsWith('{')) {
  main().then(
    () => process.exit(0),
    (e: Error) => {
      process.stderr.write(`${e.stack ?? e}\n`);
      process.exit(1);
    },
  );
}

/** Every backend and peer the bench knows, in table order. */
import { usableCores } from '../src/backends/usable-cores.js';
import { ourRunners } from './ours.js';
import { ortNodeRunner, ortWebRunner } from './peers/ort.js';
import { tfjsRunner } from './peers/tfjs.js';
import type { Runner } from './types.js';

export const FAMILIES = ['native', 'wasm', 'js', 'ort-node', 'ort-web', 'tfjs'] as const;

/** the "all cores" count: the native backend's own default (CPU affinity, capped by a cgroup quota) */
export function defaultThreads(): number {
  return usableCores();
}

export interface RunnerOptions {
  /** "all cores" thread count for native and onnxruntime-node */
  threads: number;
  jsMaxFlops?: number;
}

export function allRunners(o: RunnerOptions): Runner[] {
  const list: Runner[] = [...ourRunners({ threads: o.threads, jsMaxFlops: o.jsMaxFlops })];
  list.push(ortNodeRunner('mha', 1, false), ortNodeRunner('graph', 1, false));
  if (o.threads > 1) list.push(ortNodeRunner('mha', o.threads, true), ortNodeRunner('graph', o.threads, true));
  list.push(ortWebRunner('mha'), ortWebRunner('graph'), tfjsRunner());
  return list;
}

export function findRunner(id: string, o: RunnerOptions): Runner {
  const r = allRunners(o).find((x) => x.id === id);
  if (!r) throw new RangeError(`unknown runner ${id}`);
  return r;
}

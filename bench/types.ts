/** Shared types of the bench: what a runner is, and what a measured case reports. */
import type { Inputs, Shape } from './shapes.js';

/** Which measured limit a runner's figure is compared with (decode shapes use bandwidth instead). */
export type LimitKey = 'fma1' | 'fmaAll' | 'wasmSimd' | 'wasmRelaxed' | 'none';

/** A backend or peer made ready for one shape: inputs converted and loaded, outputs allocated. */
export interface Prepared {
  /** one timed call (sync, or returning a promise); it consumes its result */
  run(): unknown;
  /**
   * The output of the last run in the canonical layout: [B, Hq, Sq, D] (bhsd) for attention,
   * [B, S, E] for the multi-head block. Called once, outside the timing.
   */
  output(): Float32Array | Promise<Float32Array>;
  /** a note printed with the result (e.g. "kv heads repeated to 32 before the call") */
  note?: string;
  /**
   * The arrays one run() streams from memory in place (zero-copy: native K and V): on decode
   * shapes the bench times a plain read of them after each of a series of calls (paired.ts).
   */
  reads?: ArrayBufferView[];
  dispose?(): void | Promise<void>;
}

export class Skip extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Skip';
  }
}

export interface Runner {
  /** stable id used by --backends filtering and child processes, e.g. 'native-1', 'ort-node-mha-all' */
  id: string;
  /** short label for tables and the chart, e.g. 'native ×1' */
  label: string;
  /** the --backends name that selects it: native, wasm, js, ort-node, ort-web, tfjs */
  family: string;
  kind: 'ours' | 'peer';
  threads: number;
  limit: LimitKey;
  /** run in a child process with these node flags (e.g. relaxed SIMD on Node 20) */
  childFlags?: string[];
  /** a reason this runner does not run the shape (too slow, op not applicable), or null */
  skipReason?(shape: Shape): string | null;
  /** throws Skip (absent, unsupported) or any error (failed) */
  prepare(shape: Shape, inputs: Inputs): Promise<Prepared>;
}

export interface CheckResult {
  /** max |peer - expected| over the checked elements */
  maxAbsErr: number;
  tolerance: number;
  ok: boolean;
  /** what the output was compared with */
  against: string;
}

export type CaseStatus = 'ok' | 'skipped' | 'failed' | 'wrong';

export interface CaseResult {
  shape: string;
  runner: string;
  label: string;
  family: string;
  kind: 'ours' | 'peer';
  threads: number;
  status: CaseStatus;
  reason?: string;
  note?: string;
  /** seconds per call */
  median?: number;
  q1?: number;
  q3?: number;
  min?: number;
  max?: number;
  rme?: number;
  samples?: number;
  calls?: number;
  gflops?: number;
  /** GB/s of K and V read (decode shapes) */
  gbs?: number;
  /** the limit this figure is compared with and the fraction reached */
  limit?: { name: string; value: number; unit: string; fraction: number };
  /** decode shapes, zero-copy backends: calls alternated with a plain read of the same K and V (paired.ts) */
  pairedRead?: {
    pairs: number;
    /** K+V GB/s of the calls (median over the pairs) */
    gbs: number;
    /** GB/s of the reads (median over the pairs) */
    readGBs: number;
    /** median over the pairs of read time / call time */
    fraction: number;
  };
  /** compute-bound shapes, native: calls alternated with the FMA probe (paired.ts) */
  pairedPeak?: {
    pairs: number;
    /** GFLOP/s of the calls, counting the work that has to be done (median over the pairs) */
    gflops: number;
    /** the probe's GFLOP/s (median over the pairs) */
    peakGflops: number;
    /** median over the pairs of call GFLOP/s / probe GFLOP/s */
    fraction: number;
  };
  /**
   * native: speed-ups against each onnxruntime-node runner at the same thread count, its calls
   * alternated with ours (paired.ts): medians over the pairs
   */
  pairedPeers?: Array<{ peer: string; pairs: number; oursSeconds: number; peerSeconds: number; ratio: number }>;
  check?: CheckResult;
  /** 1-minute load average when the case finished (other processes competing for the cores) */
  load?: number;
}

export interface LimitResult {
  key: string;
  label: string;
  unit: 'GFLOP/s' | 'GB/s';
  value?: number;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  detail?: string;
}

export interface MemoryResult {
  runner: string;
  label: string;
  shape: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  /** resident set after loading and preparing inputs, before the call (MiB) */
  baselineMiB?: number;
  /** peak resident set during the call (MiB) */
  peakMiB?: number;
  /** peak - baseline (MiB): what the call itself added */
  deltaMiB?: number;
  /** the S² score matrix this shape would take if materialised (MiB), for comparison */
  scoresMiB?: number;
  /** how baseline and peak were read */
  method?: string;
}

export interface TargetResult {
  issue: number;
  what: string;
  target: string;
  measured?: string;
  met?: boolean;
  reason?: string;
}

export interface BenchReport {
  schema: 1;
  date: string;
  command: string;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  notes: string[];
  limits: LimitResult[];
  shapes: Array<{ name: string; description: string; flops: number; kvBytes: number; causal: boolean }>;
  results: CaseResult[];
  memory: MemoryResult[];
  targets: TargetResult[];
  durationSeconds: number;
}

/**
 * The native backend: the C++ SIMD kernels of native/ reached through Node-API.
 *
 * Loader order (CONVENTIONS.md): SIMD_ATTENTION_NATIVE_PATH (when set, the only place tried)
 * → prebuilds/<platform>-<arch>/*.node → build/Release → build/Debug, relative to the package
 * root (found by walking up from this module to the package.json named "simd-attention").
 * A build/ binary newer than every prebuilt one moves to the front: it was compiled on this
 * machine after the prebuilt ones arrived (`npm run build:native`, an install with
 * SIMD_ATTENTION_BUILD_FROM_SOURCE, a rebuild after `npm pack` left prebuilds/ in a checkout),
 * and loading the older prebuilt binary instead would silently run stale code.
 * Every failure is collected, and one actionable reason is thrown when nothing loads.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import type {
  AttentionArgs,
  Backend,
  MatmulArgs,
  MultiHeadForwardArgs,
  MultiHeadKernel,
  MultiHeadParams,
  SoftmaxArgs,
} from '../backend.js';
import { findPackageRoot, moduleDir } from '../package-root.js';
import { elfTruncation } from './elf-extent.js';
import { PACKED_CONVENTION, packAttention, packForward, packMatmul } from './native-pack.js';
import { usableCores } from './usable-cores.js';

/** The raw multi-head object of the addon (native/binding.cc). */
export interface NativeMultiHead {
  /** packed arguments (native-pack.ts): header, x, kv, out, cache k, cache v, mask data, keyLengths */
  forward(...packed: unknown[]): void;
  forwardAsync(...packed: unknown[]): Promise<void>;
  dispose(): void;
}

/** The raw engine object of the addon: one ISA, one persistent thread pool. */
export interface NativeEngine {
  /** the ISA and the pool's threads it was created with */
  readonly isa: string;
  readonly threads: number;
  /** packed arguments (native-pack.ts): header, q, k, v, out, weights, mask data, keyLengths */
  attention(...packed: unknown[]): void;
  attentionAsync(...packed: unknown[]): Promise<void>;
  /** packed arguments (native-pack.ts): header, a, b, out, bias */
  matmul(...packed: unknown[]): void;
  softmax(args: SoftmaxArgs): void;
  createMultiHead(params: MultiHeadParams): NativeMultiHead;
  close(): void;
}

/** The raw exports of simd_attention.node. */
export interface NativeBinding {
  readonly version: string;
  /** each packed call's "header slot names;argument names" (native-pack.ts PACKED_CONVENTION) */
  readonly convention?: Record<string, string>;
  /** ISAs this CPU and OS can run, best first */
  isas(): string[];
  /** the ISA SIMD_ATTENTION_ISA-free dispatch would pick */
  bestIsa(): string;
  /** cores: how many the process can keep busy (the pool spins only within them); absent: its CPU affinity */
  createEngine(isa: string, threads: number, cores?: number): NativeEngine;
  fmaPeakGflops(threads: number, millis: number): number;
  readBandwidthGBs(bytes: number, threads: number): number;
  readRegionsSeconds(arrays: ArrayBufferView[], threads: number): number;
}

export interface NativeProbes {
  /** FP32 FMA throughput (GFLOP/s, 2 flops per lane per FMA) with the best ISA */
  fmaPeakGflops(threads: number, millis: number): number;
  /** sustained read bandwidth over a buffer of `bytes` bytes (GB/s, 1e9 bytes) */
  readBandwidthGBs(bytes: number, threads: number): number;
  /** seconds of one read of the arrays' bytes, in the cache state the caller left them (the bench pairs it with a decoding call) */
  readRegionsSeconds(arrays: ArrayBufferView[], threads: number): number;
}

interface Loaded {
  binding?: NativeBinding;
  file?: string;
  source?: string;
  reason?: string;
}

let cached: Loaded | undefined;

function nodeRequire(): NodeRequire {
  try {
    if (import.meta.url) return createRequire(import.meta.url);
  } catch {
    /* fall through */
  }
  return createRequire(path.join(moduleDir(), 'index.js'));
}

function mtimeMs(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** The binaries the loader tries, in order (exported for the loader's tests). */
export function nativeCandidates(root: string | undefined, tried: string[] = []): Array<{ file: string; source: string }> {
  const env = process.env.SIMD_ATTENTION_NATIVE_PATH;
  if (env) return [{ file: path.resolve(env), source: 'SIMD_ATTENTION_NATIVE_PATH' }];
  if (!root) {
    tried.push(`package root: no package.json named "simd-attention" above ${moduleDir()}`);
    return [];
  }
  const pre = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let preFiles: string[] = [];
  try {
    preFiles = fs.readdirSync(pre).filter((f) => f.endsWith('.node'));
  } catch {
    tried.push(`${pre}: no such folder (no prebuilt binary for ${process.platform}-${process.arch})`);
  }
  if (preFiles.length === 0 && fs.existsSync(pre)) tried.push(`${pre}: holds no .node file`);
  preFiles.sort((a, b) => Number(b.includes('napi')) - Number(a.includes('napi')));
  const prebuilt = preFiles.map((f) => ({ file: path.join(pre, f), source: 'prebuild' }));
  const local = [
    { file: path.join(root, 'build', 'Release', 'simd_attention.node'), source: 'build/Release' },
    { file: path.join(root, 'build', 'Debug', 'simd_attention.node'), source: 'build/Debug' },
  ];
  const newestPrebuilt = Math.max(-1, ...prebuilt.map((c) => mtimeMs(c.file)));
  const fresh = newestPrebuilt < 0 ? [] : local.filter((c) => mtimeMs(c.file) > newestPrebuilt);
  return [...fresh, ...prebuilt, ...local.filter((c) => !fresh.includes(c))];
}

/** the first call whose packed convention the binary does not share with native-pack.ts, or '' */
function conventionMismatch(convention: unknown): string {
  const c = (typeof convention === 'object' && convention !== null ? convention : {}) as Record<string, unknown>;
  for (const [call, want] of Object.entries(PACKED_CONVENTION)) if (c[call] !== want) return call;
  return '';
}

function loadBinding(): Loaded {
  if (cached) return cached;
  const tried: string[] = [];
  const root = findPackageRoot();
  const req = nodeRequire();
  for (const c of nativeCandidates(root, tried)) {
    if (!fs.existsSync(c.file)) {
      tried.push(`${c.file} (${c.source}): not found`);
      continue;
    }
    const cut = elfTruncation(c.file);
    if (cut) {
      tried.push(`${c.file} (${c.source}): ${cut}`);
      continue;
    }
    try {
      const b = req(c.file) as NativeBinding;
      if (typeof b?.createEngine !== 'function') throw new Error('not a simd-attention addon (no createEngine export)');
      const mismatch = conventionMismatch(b.convention);
      if (mismatch) {
        throw new Error(
          `built for another version of simd-attention (addon ${String(b.version)}): its ${mismatch} call takes its ` +
            'arguments in another order than this package passes them; rebuild it with `npm run build:native`',
        );
      }
      cached = { binding: b, file: c.file, source: c.source };
      return cached;
    } catch (e) {
      tried.push(`${c.file} (${c.source}): ${(e as Error).message.split('\n')[0]}`);
    }
  }
  cached = {
    reason:
      `native addon not available; tried: ${tried.join('; ')}. ` +
      'Possible solutions: build it from source with `npm run build:native` ' +
      '(needs python3, make and a C++17 compiler; or approve this package\'s install script), ' +
      'install a release that ships prebuilds/ for this platform, ' +
      'or use the wasm backend (SIMD_ATTENTION_BACKEND=wasm).',
  };
  return cached;
}

/** ISAs this CPU can run, best first (e.g. ['avx512', 'avx2', 'scalar']); [] when the addon cannot load. */
export function nativeIsas(): string[] {
  const l = loadBinding();
  if (!l.binding) return [];
  try {
    return l.binding.isas();
  } catch {
    return [];
  }
}

/** The FMA-peak and bandwidth probes of the addon; throws the loader's reason when it cannot load. */
export function nativeProbes(): NativeProbes {
  const l = loadBinding();
  if (!l.binding) throw new Error(l.reason);
  const b = l.binding;
  return {
    fmaPeakGflops: (threads, millis) => b.fmaPeakGflops(threads, millis),
    readBandwidthGBs: (bytes, threads) => b.readBandwidthGBs(bytes, threads),
    readRegionsSeconds: (arrays, threads) => b.readRegionsSeconds(arrays, threads),
  };
}

/**
 * Loads the native backend. `isa` defaults to SIMD_ATTENTION_ISA, else the best this CPU runs.
 * Throws an Error with an actionable message when the addon cannot load or the ISA is unsupported.
 */
export function loadNativeBackend(opts: { threads?: number; isa?: string } = {}): Backend {
  const l = loadBinding();
  if (!l.binding) throw new Error(l.reason);
  const binding = l.binding;
  const requested = opts.isa ?? (process.env.SIMD_ATTENTION_ISA || undefined);
  const supported = binding.isas();
  let isa: string;
  if (requested !== undefined) {
    const r = requested.toLowerCase();
    if (!supported.includes(r)) {
      throw new Error(
        `native ISA "${requested}" is not supported here: this CPU/OS runs ${JSON.stringify(supported)} ` +
          `(from ${l.file}). Unset SIMD_ATTENTION_ISA or choose one of those.`,
      );
    }
    isa = r;
  } else {
    isa = binding.bestIsa();
  }
  const cores = usableCores();
  const threads = Math.max(1, Math.floor(opts.threads ?? cores));
  const engine = binding.createEngine(isa, threads, cores);
  let closed = false;

  const backend: Backend = {
    name: 'native',
    isa,
    threads,
    details: () => ({
      binary: l.file ?? '',
      binarySource: l.source ?? '',
      addonVersion: binding.version,
      isasAvailable: supported.join(','),
    }),
    attention: (args: AttentionArgs) => engine.attention(...packAttention(args)),
    attentionAsync: (args: AttentionArgs) => {
      try {
        return engine.attentionAsync(...packAttention(args));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    matmul: (args: MatmulArgs) => engine.matmul(...packMatmul(args)),
    softmax: (args: SoftmaxArgs) => engine.softmax(args),
    createMultiHead(params: MultiHeadParams): MultiHeadKernel {
      const mh = engine.createMultiHead(params);
      return {
        forward: (a) => mh.forward(...packForward(a)),
        forwardAsync: (a) => {
          try {
            return mh.forwardAsync(...packForward(a));
          } catch (e) {
            return Promise.reject(e);
          }
        },
        dispose: () => mh.dispose(),
      };
    },
    close() {
      if (!closed) {
        closed = true;
        engine.close();
      }
    },
  };
  return backend;
}

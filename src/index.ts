/**
 * simd-attention, Node entry: native (C++ SIMD through Node-API) → wasm (AssemblyScript SIMD)
 * → js (the TypeScript reference), chosen at load() with the reason for any fallback kept in
 * info().fallbackReason.
 */
import type { Backend } from './backend.js';
import { createJsBackend } from './backends/js.js';
import { loadNativeBackend } from './backends/native.js';
import { loadWasmBackend, loadWasmBackendSync, type WasmBuild, type WasmSource } from './backends/wasm.js';
import { choose, chooseSync, requestedBackend, type BackendRequest } from './choose.js';
import { attnRangeError, attnTypeError, describe } from './errors.js';
import type { Attention } from './facade.js';
import { checkOptions } from './validate.js';

export { tensor, MAX_ELEMENTS, type Tensor } from './tensor.js';
export { Attention, type AttentionOptions, type AttentionResult, type MultiHeadAttentionParams } from './facade.js';
export { MultiHeadAttention, KvCache, type MultiHeadForwardOptions } from './multihead.js';
export type { BackendInfo, BackendName } from './backend.js';
export type { AttentionError, AttentionErrorCode } from './errors.js';
export type { WasmBuild, WasmSource } from './backends/wasm.js';
export { VERSION as version } from './version.js';

export interface LoadOptions {
  /** 'auto' (default; SIMD_ATTENTION_BACKEND replaces it when set) | 'native' | 'wasm' | 'js' */
  backend?: BackendRequest;
  /** native worker threads (default: the machine's cores) */
  threads?: number;
  /** the WASM module to use (bytes, URL or compiled module) and/or which build */
  wasm?: WasmSource | { source?: WasmSource; build?: WasmBuild };
}

interface Resolved {
  request: BackendRequest;
  threads?: number;
  wasmSource?: WasmSource;
  wasmBuild?: WasmBuild;
}

function isWasmSource(x: unknown): x is WasmSource {
  return (
    typeof x === 'string' ||
    x instanceof URL ||
    x instanceof ArrayBuffer ||
    ArrayBuffer.isView(x) ||
    (typeof WebAssembly !== 'undefined' && x instanceof WebAssembly.Module)
  );
}

function resolveLoad(fn: string, options: unknown): Resolved {
  const opts = checkOptions(fn, options, ['backend', 'threads', 'wasm']);
  const threads = opts.threads;
  if (threads !== undefined) {
    if (typeof threads !== 'number' || !Number.isInteger(threads)) throw attnTypeError('ERR_ATTN_TYPE', `${fn}: threads must be an integer, got ${describe(threads)}`);
    if (threads < 1 || threads > 1024) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: threads must be in [1, 1024], got ${threads}`);
  }
  const wasm = opts.wasm;
  let wasmSource: WasmSource | undefined;
  let wasmBuild: WasmBuild | undefined;
  if (isWasmSource(wasm)) wasmSource = wasm;
  else if (wasm !== undefined) {
    const w = checkOptions(`${fn}: wasm`, wasm, ['source', 'build']);
    if (w.source !== undefined && !isWasmSource(w.source)) {
      throw attnTypeError('ERR_ATTN_TYPE', `${fn}: wasm.source must be bytes, a URL or a WebAssembly.Module, got ${describe(w.source)}`);
    }
    if (w.build !== undefined && w.build !== 'simd128' && w.build !== 'relaxed-simd') {
      throw attnRangeError('ERR_ATTN_VALUE', `${fn}: wasm.build must be "simd128" or "relaxed-simd", got ${describe(w.build)}`);
    }
    wasmSource = w.source as WasmSource | undefined;
    wasmBuild = w.build as WasmBuild | undefined;
  }
  const env = typeof process !== 'undefined' ? process.env.SIMD_ATTENTION_BACKEND : undefined;
  return { request: requestedBackend(opts.backend, env), threads: threads as number | undefined, wasmSource, wasmBuild };
}

/** Loads the fastest backend available here (or the one asked for). */
export async function load(options?: LoadOptions): Promise<Attention> {
  const r = resolveLoad('load', options);
  return choose(r.request, [
    { name: 'native', load: (): Backend => loadNativeBackend({ threads: r.threads }) },
    { name: 'wasm', load: () => loadWasmBackend({ build: r.wasmBuild, source: r.wasmSource }) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

/** load() without a promise: native, or WASM compiled synchronously from the package's files. */
export function loadSync(options?: LoadOptions): Attention {
  const r = resolveLoad('loadSync', options);
  if (r.wasmSource !== undefined) {
    throw attnTypeError('ERR_ATTN_OPTION', 'loadSync: a wasm source can only be used with load() (compiling it may be asynchronous)');
  }
  return chooseSync(r.request, [
    { name: 'native', load: () => loadNativeBackend({ threads: r.threads }) },
    { name: 'wasm', load: () => loadWasmBackendSync({ build: r.wasmBuild }) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

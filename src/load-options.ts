/** The options of load() / loadSync(), checked the same way by the Node and browser entries. */
import type { WasmBuild, WasmSource } from './backends/wasm-instance.js';
import { requestedBackend, type BackendRequest } from './choose.js';
import { attnRangeError, attnTypeError, describe } from './errors.js';
import { isArrayBuffer, isWasmModule } from './typed-arrays.js';
import { checkOptions, isPlainObject } from './validate.js';

/** The wasm options of the Node entry (it runs attentionAsync in a worker of its own). */
export interface WasmLoadOptions {
  /** the module: bytes, a URL to fetch, or a compiled WebAssembly.Module (default: the package's own file) */
  source?: WasmSource;
  /** which build when no source is given (default: the best this runtime validates) */
  build?: WasmBuild;
}

/** The wasm options of the browser entry, exported there as WasmLoadOptions. */
export interface BrowserWasmLoadOptions extends WasmLoadOptions {
  /** the worker script for attentionAsync (default: ./wasm-worker.mjs next to it); false computes on the calling thread */
  worker?: URL | string | false;
}

export interface LoadOptions {
  /** 'auto' (default; SIMD_ATTENTION_BACKEND replaces it in Node) | 'native' | 'wasm' | 'js' */
  backend?: BackendRequest;
  /**
   * native worker threads (default: the cores this process may use: its CPU affinity, capped by a
   * cgroup CPU quota such as docker --cpus or a Kubernetes CPU limit); the wasm and js backends use one
   */
  threads?: number;
  /** the WASM module to use (bytes, URL or compiled module), or options for it */
  wasm?: WasmSource | WasmLoadOptions;
}

/** The options of the browser entry's load() / loadSync(), exported there as LoadOptions. */
export interface BrowserLoadOptions extends Omit<LoadOptions, 'wasm'> {
  /** the WASM module to use (bytes, URL or compiled module), or options for it */
  wasm?: WasmSource | BrowserWasmLoadOptions;
}

export interface ResolvedLoad {
  request: BackendRequest;
  threads?: number;
  source?: WasmSource;
  build?: WasmBuild;
  worker?: URL | string | false;
}

function isWasmSource(x: unknown): x is WasmSource {
  return (
    typeof x === 'string' ||
    x instanceof URL ||
    isArrayBuffer(x) ||
    ArrayBuffer.isView(x) ||
    isWasmModule(x)
  );
}

/** `envBackend` is SIMD_ATTENTION_BACKEND where the entry has an environment (Node). */
export function resolveLoad(fn: string, options: unknown, envBackend: string | undefined, allowWorker: boolean): ResolvedLoad {
  const opts = checkOptions(fn, options, ['backend', 'threads', 'wasm']);
  const threads = opts.threads;
  if (threads !== undefined) {
    if (typeof threads !== 'number' || !Number.isInteger(threads)) throw attnTypeError('ERR_ATTN_TYPE', `${fn}: threads must be an integer, got ${describe(threads)}`);
    if (threads < 1 || threads > 1024) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: threads must be in [1, 1024], got ${threads}`);
  }
  const r: ResolvedLoad = { request: requestedBackend(opts.backend, envBackend), threads: threads as number | undefined };
  const wasm = opts.wasm;
  if (isWasmSource(wasm)) r.source = wasm;
  else if (wasm !== undefined) {
    if (typeof wasm !== 'object' || wasm === null || !isPlainObject(wasm)) {
      // neither a module source nor an options object: refused here, not read as options that
      // set nothing (which loaded the package's own module in place of the caller's)
      throw attnTypeError(
        'ERR_ATTN_TYPE',
        `${fn}: wasm must be bytes (an ArrayBuffer or a typed array), a URL, a path, a WebAssembly.Module or { source, build${allowWorker ? ', worker' : ''} }, got ${describe(wasm)}`,
      );
    }
    const w = checkOptions(`${fn}: wasm`, wasm, allowWorker ? ['source', 'build', 'worker'] : ['source', 'build']);
    if (w.source !== undefined && !isWasmSource(w.source)) {
      throw attnTypeError('ERR_ATTN_TYPE', `${fn}: wasm.source must be bytes, a URL or a WebAssembly.Module, got ${describe(w.source)}`);
    }
    if (w.build !== undefined && w.build !== 'simd128' && w.build !== 'relaxed-simd') {
      throw attnRangeError('ERR_ATTN_VALUE', `${fn}: wasm.build must be "simd128" or "relaxed-simd", got ${describe(w.build)}`);
    }
    if (w.worker !== undefined && w.worker !== false && typeof w.worker !== 'string' && !(w.worker instanceof URL)) {
      throw attnTypeError('ERR_ATTN_TYPE', `${fn}: wasm.worker must be a URL, a string or false, got ${describe(w.worker)}`);
    }
    r.source = w.source as WasmSource | undefined;
    r.build = w.build as WasmBuild | undefined;
    r.worker = w.worker as URL | string | false | undefined;
  }
  return r;
}

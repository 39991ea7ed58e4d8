/**
 * simd-attention, browser entry (the `browser` export condition; dist/browser.mjs): the same
 * public API as the Node entry, served by the WebAssembly SIMD kernels (wasm) or the TypeScript
 * reference (js). No Node modules are imported here.
 *
 * The module is fetched from `./wasm/attention-{relaxed,simd}.wasm` next to this file
 * (`new URL(..., import.meta.url)`, which bundlers understand), picking relaxed SIMD where the
 * browser validates it; or pass your own: `load({ wasm: bytes | URL | WebAssembly.Module })`.
 * attentionAsync / forwardAsync run in a module Web Worker (`./wasm-worker.mjs`).
 */
import type { Backend } from './backend.js';
import { createJsBackend } from './backends/js.js';
import { createWasmBackend, type WasmBackend } from './backends/wasm-core.js';
import {
  instantiate,
  instantiateSync,
  instantiateUrl,
  probeWasmBuilds,
  sharedMemoryWorks,
  type WasmBuild,
  type WasmInstance,
} from './backends/wasm-instance.js';
import { createWorkerRunner, type WorkerLike } from './backends/wasm-runner.js';
import { choose, chooseSync } from './choose.js';
import { attnError } from './errors.js';
import type { Attention } from './facade.js';
import { resolveLoad as resolveOptions, type BrowserLoadOptions as LoadOptions, type ResolvedLoad as Resolved } from './load-options.js';

export * from './public.js';
// the browser entry's own option types, under the names the Node entry uses for its
// own (only this entry takes wasm.worker)
export type { BrowserLoadOptions as LoadOptions, BrowserWasmLoadOptions as WasmLoadOptions } from './load-options.js';

function resolveLoad(fn: string, options: unknown): Resolved {
  const r = resolveOptions(fn, options, undefined, true);
  if (r.request === 'native') {
    // the same code as the Node entry gives for a backend that cannot load here
    throw attnError('ERR_ATTN_BACKEND_UNAVAILABLE', `${fn}: backend "native" is not available in the browser entry (use "auto", "wasm" or "js")`);
  }
  return r;
}

/** Builds this browser validates, best first. */
export function wasmBuilds(): WasmBuild[] {
  return probeWasmBuilds();
}

function pickBuild(requested: WasmBuild | undefined): WasmBuild {
  const available = probeWasmBuilds();
  if (requested) {
    if (!available.includes(requested)) throw new Error(`wasm: this browser does not support ${requested === 'relaxed-simd' ? 'relaxed SIMD' : 'WebAssembly SIMD'}`);
    return requested;
  }
  if (available.length === 0) throw new Error('wasm: this browser does not support WebAssembly SIMD');
  return available[0];
}

/**
 * new Worker(url) for a module worker, and what frees what starting it took. A script of another
 * origin (this package from a CDN) is refused as a worker (SecurityError), but may be imported: a
 * same-origin blob that imports it serves instead (the module reaches the worker by message, so
 * nothing is fetched relative to it).
 */
function startWorker(url: URL | string): { w: Worker; release: () => void } {
  try {
    return { w: new Worker(url, { type: 'module' }), release: () => {} };
  } catch (err) {
    if ((err as Error)?.name !== 'SecurityError' || typeof Blob !== 'function' || typeof URL.createObjectURL !== 'function') throw err;
    const href = new URL(String(url), typeof location !== 'undefined' ? location.href : import.meta.url).href;
    const blob = URL.createObjectURL(new Blob([`import ${JSON.stringify(href)};\n`], { type: 'text/javascript' }));
    const w = new Worker(blob, { type: 'module' });
    // the blob is read when the worker starts: freed once it has answered or failed, or when it
    // is terminated before either (revoking twice is harmless)
    const release = () => URL.revokeObjectURL(blob);
    w.addEventListener('message', release, { once: true });
    w.addEventListener('error', release, { once: true });
    return { w, release };
  }
}

/** A module Web Worker for attentionAsync, or undefined where workers are unavailable. */
function browserRunner(inst: WasmInstance, worker: URL | string | false | undefined) {
  return () => {
    if (worker === false || typeof Worker !== 'function') return undefined;
    const url = worker ?? new URL('./wasm-worker.mjs', import.meta.url);
    const { w, release } = startWorker(url);
    const like: WorkerLike = {
      post: (msg, transfer) => w.postMessage(msg, transfer ?? []),
      onMessage: (cb) => w.addEventListener('message', (e) => cb((e as MessageEvent).data)),
      onError: (cb) => {
        w.addEventListener('error', (e) => cb(new Error((e as ErrorEvent).message || `could not start the worker ${String(url)}`)));
        w.addEventListener('messageerror', () => cb(new Error('a message to the worker could not be deserialised')));
      },
      terminate: () => {
        w.terminate();
        release();
      },
    };
    return createWorkerRunner(like, inst.module, inst.shared, inst.shared ? inst.heap.memory : undefined);
  };
}

function backendFor(inst: WasmInstance, origin: string, r: Resolved): WasmBackend {
  return createWasmBackend(inst, { runner: browserRunner(inst, r.worker), origin });
}

/**
 * The module next to this file. Literal `new URL('./…', import.meta.url)` expressions, so that
 * bundlers see and copy each file. The shared-memory variant (where the browser allows shared
 * memory) keeps alloc() tensors valid when the memory grows.
 */
function defaultUrl(build: WasmBuild, shared: boolean): URL {
  if (build === 'relaxed-simd') {
    return shared ? new URL('./wasm/attention-relaxed-shared.wasm', import.meta.url) : new URL('./wasm/attention-relaxed.wasm', import.meta.url);
  }
  return shared ? new URL('./wasm/attention-simd-shared.wasm', import.meta.url) : new URL('./wasm/attention-simd.wasm', import.meta.url);
}

async function loadWasm(r: Resolved): Promise<Backend> {
  const src = r.source;
  if (src === undefined) {
    const build = pickBuild(r.build);
    if (sharedMemoryWorks()) {
      const url = defaultUrl(build, true);
      try {
        return backendFor(await instantiateUrl(url), url.href, r);
      } catch {
        // e.g. the shared memory could not be reserved: the plain build below
      }
    }
    const url = defaultUrl(build, false);
    return backendFor(await instantiateUrl(url), url.href, r);
  }
  // bytes or a compiled module, of any realm (load-options has checked it is one of those)
  if (typeof src !== 'string' && !(src instanceof URL)) {
    return backendFor(await instantiate(src as Uint8Array | ArrayBuffer | WebAssembly.Module), 'caller-provided', r);
  }
  const url = src instanceof URL ? src : new URL(src, typeof location !== 'undefined' ? location.href : import.meta.url);
  return backendFor(await instantiateUrl(url), url.href, r);
}

function loadWasmSync(r: Resolved): Backend {
  const src = r.source;
  if (src === undefined || typeof src === 'string' || src instanceof URL) {
    throw new Error('wasm: loadSync() in a browser needs the module as bytes or a WebAssembly.Module (fetching is asynchronous); use load()');
  }
  return backendFor(instantiateSync(src as Uint8Array | ArrayBuffer | WebAssembly.Module), 'caller-provided', r);
}

/** Loads the wasm backend (or js where WebAssembly SIMD is unavailable, with the reason in info().fallbackReason). */
export async function load(options?: LoadOptions): Promise<Attention> {
  const r = resolveLoad('load', options);
  return choose(r.request, [
    { name: 'wasm', load: () => loadWasm(r) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

/**
 * load() without a promise: needs `wasm` as bytes or a compiled module (browsers refuse to
 * compile large modules synchronously on the main thread; a worker may), else falls back to js.
 */
export function loadSync(options?: LoadOptions): Attention {
  const r = resolveLoad('loadSync', options);
  return chooseSync(r.request, [
    { name: 'wasm', load: () => loadWasmSync(r) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

/**
 * simd-attention, Node entry: native (C++ SIMD through Node-API) → wasm (AssemblyScript SIMD)
 * → js (the TypeScript reference), chosen at load() with the reason for any fallback kept in
 * info().fallbackReason.
 */
import type { Backend } from './backend.js';
import { createJsBackend } from './backends/js.js';
import { loadNativeBackend } from './backends/native.js';
import { loadWasmBackend, loadWasmBackendSync } from './backends/wasm.js';
import { choose, chooseSync } from './choose.js';
import { attnTypeError } from './errors.js';
import type { Attention } from './facade.js';
import { resolveLoad, type LoadOptions } from './load-options.js';

export * from './public.js';
export type { LoadOptions, WasmLoadOptions } from './load-options.js';

const env = () => (typeof process !== 'undefined' ? process.env.SIMD_ATTENTION_BACKEND : undefined);

/** Loads the fastest backend available here (or the one asked for). */
export async function load(options?: LoadOptions): Promise<Attention> {
  const r = resolveLoad('load', options, env(), false);
  return choose(r.request, [
    { name: 'native', load: (): Backend => loadNativeBackend({ threads: r.threads }) },
    { name: 'wasm', load: () => loadWasmBackend({ build: r.build, source: r.source }) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

/** load() without a promise: native, or WASM compiled synchronously from the package's files. */
export function loadSync(options?: LoadOptions): Attention {
  const r = resolveLoad('loadSync', options, env(), false);
  if (r.source !== undefined) {
    throw attnTypeError('ERR_ATTN_OPTION', 'loadSync: a wasm source can only be used with load() (compiling it may be asynchronous)');
  }
  return chooseSync(r.request, [
    { name: 'native', load: () => loadNativeBackend({ threads: r.threads }) },
    { name: 'wasm', load: () => loadWasmBackendSync({ build: r.build }) },
    { name: 'js', load: () => createJsBackend() },
  ]);
}

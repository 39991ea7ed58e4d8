/**
 * Every backend variant this machine can run: js always, native under each instruction set
 * the CPU has, wasm in each build the runtime validates. The parity harness runs them all.
 */
import type { Backend } from '../../src/backend.js';
import { createJsBackend } from '../../src/backends/js.js';
import { loadNativeBackend, nativeIsas } from '../../src/backends/native.js';
import { loadWasmBackendSync, wasmBuilds } from '../../src/backends/wasm.js';
import { Attention } from '../../src/facade.js';

export interface Variant {
  label: string;
  create(): Backend;
}

export function variants(): Variant[] {
  const list: Variant[] = [{ label: 'js', create: () => createJsBackend() }];
  for (const isa of nativeIsas()) {
    list.push({ label: `native/${isa}`, create: () => loadNativeBackend({ isa, threads: 2 }) });
  }
  for (const build of wasmBuilds()) list.push({ label: `wasm/${build}`, create: () => loadWasmBackendSync({ build }) });
  // K and V copied in one kv head at a time (wasm-staged.ts), which large inputs take: forced here
  // for every size, on one build (the staging is the same JavaScript for both)
  if (wasmBuilds().includes('simd128')) list.push({ label: 'wasm/simd128 staged', create: () => loadWasmBackendSync({ build: 'simd128', stageKvFromBytes: 0 }) });
  return list;
}

/** The public facade over one variant, as a user would see it. */
export function facadeOf(v: Variant): Attention {
  return new Attention(v.create());
}

/** Why native or wasm is missing, printed once so a skipped backend is never silent. */
export function reportMissing(): void {
  const labels = variants().map((v) => v.label);
  if (!labels.some((l) => l.startsWith('native/'))) {
    try {
      loadNativeBackend({});
    } catch (err) {
      console.warn(`    [parity] native backend not tested: ${(err as Error).message}`);
    }
  }
  if (!labels.some((l) => l.startsWith('wasm/'))) console.warn('    [parity] wasm backend not tested: no build validates here');
}

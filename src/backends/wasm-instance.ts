/**
 * Loading the AssemblyScript kernels (assembly/): which builds this engine validates, and their
 * instantiation from bytes, a compiled module or a URL, on a memory of its own or a shared one.
 * Nothing here imports Node modules: the Node loader (wasm.ts), the browser entry (browser.ts)
 * and the worker (wasm-worker.ts) all build on it.
 */
import { isWasmModule } from '../typed-arrays.js';
import { MAX_PAGES, WasmHeap } from './wasm-heap.js';
import type { WasmMemory, WasmModule } from './wasm-types.js';

/** 'relaxed-simd' uses f32x4.relaxed_madd (fused multiply-add); 'simd128' runs wherever WebAssembly SIMD does. */
export type WasmBuild = 'relaxed-simd' | 'simd128';
/** Where the module comes from: a URL (or URL string) to fetch, its bytes, or a compiled module. */
export type WasmSource = URL | string | ArrayBuffer | Uint8Array | CompiledModule;
/**
 * A compiled module. `source?: never` gives the type a property, so that an options object with
 * a misspelt key is refused (WebAssembly.Module is an empty interface, which any object matches).
 */
export type CompiledModule = WasmModule & { readonly source?: never };

/** File name of each build inside <package>/dist/wasm/ (importing a plain memory). */
export const WASM_FILES: Record<WasmBuild, string> = {
  'relaxed-simd': 'attention-relaxed.wasm',
  simd128: 'attention-simd.wasm',
};

/** The same builds importing a shared memory (used where the runtime gives one: views survive growth). */
export const WASM_SHARED_FILES: Record<WasmBuild, string> = {
  'relaxed-simd': 'attention-relaxed-shared.wasm',
  simd128: 'attention-simd-shared.wasm',
};

/** The raw exports of assembly/index.ts (byte pointers into `memory`, element strides). */
export interface WasmExports {
  memory: WasmMemory;
  _initialize?: () => void;
  heapBase(): number;
  isRelaxed(): number;
  attentionScratchBytes(seqK: number, headDim: number, headDimV: number): number;
  attention(
    out: number, q: number, k: number, v: number, mask: number, keyLengths: number, weights: number, scratch: number,
    B: number, Hq: number, Hkv: number, Sq: number, Sk: number, D: number, Dv: number,
    qsb: number, qsh: number, qss: number,
    ksb: number, ksh: number, kss: number,
    vsb: number, vsh: number, vss: number,
    osb: number, osh: number, oss: number,
    msb: number, msh: number, msq: number, msk: number,
    maskKind: number, causal: number, scale: number,
  ): void;
  matmulScratchBytes(n: number, k: number, packAll: number): number;
  matmulPackedBytes(n: number, k: number): number;
  matmulPrepack(dst: number, b: number, bias: number, n: number, k: number, transB: number): void;
  matmulPacked(out: number, a: number, packed: number, m: number, n: number, k: number, tmp: number): void;
  matmul(
    out: number, a: number, b: number, bias: number,
    batch: number, m: number, n: number, k: number,
    strideA: number, strideB: number, transB: number, scratch: number,
  ): void;
  softmax(out: number, x: number, rows: number, cols: number, scale: number): void;
  exp2Array(out: number, x: number, n: number): void;
}

// ---------------------------------------------------------------------------------------------
// Feature probes

/** A module with one function returning f32x4.relaxed_madd of three constants. */
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // code section, one body of 59 bytes, no locals
  0xfd, 0x0c, ...new Array<number>(16).fill(0),
  0xfd, 0x0c, ...new Array<number>(16).fill(0),
  0xfd, 0x0c, ...new Array<number>(16).fill(0),
  0xfd, 0x85, 0x02, // f32x4.relaxed_madd (0xfd 0x105)
  0x0b,
]);

/** The same module returning a plain v128.const (SIMD128). */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x16, 0x01, 0x14, 0x00,
  0xfd, 0x0c, ...new Array<number>(16).fill(0),
  0x0b,
]);

function validates(bytes: Uint8Array): boolean {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

/** Builds this runtime validates, best first (by probe modules; no files read). */
export function probeWasmBuilds(): WasmBuild[] {
  const builds: WasmBuild[] = [];
  if (validates(RELAXED_PROBE)) builds.push('relaxed-simd');
  if (validates(SIMD_PROBE)) builds.push('simd128');
  return builds;
}

export interface WasmInstance {
  exports: WasmExports;
  heap: WasmHeap;
  build: WasmBuild;
  module: WasmModule;
  /** the memory is shared: alloc() views stay valid when it grows */
  shared: boolean;
}

function importsFor(memory: WebAssembly.Memory): WebAssembly.Imports {
  return {
    env: {
      memory,
      abort: () => {
        throw new Error('wasm: abort');
      },
    },
  };
}

export interface InstantiateOptions {
  /** maximum memory in 64 KiB pages (default and most: 65536, i.e. 4 GiB) */
  maxPages?: number;
  /** the module imports a shared memory (the *-shared.wasm builds) */
  shared?: boolean;
}

function newMemory(o: InstantiateOptions): WebAssembly.Memory {
  const maximum = Math.min(MAX_PAGES, Math.max(32, o.maxPages ?? MAX_PAGES));
  if (o.shared !== true) return new WebAssembly.Memory({ initial: 32, maximum });
  // a shared memory reserves its maximum up front: where 4 GiB of address space is refused
  // (32-bit or constrained browsers), settle for less
  for (let max = maximum; ; max = Math.max(32, max >> 2)) {
    try {
      const m = new WebAssembly.Memory({ initial: 32, maximum: max, shared: true } as WebAssembly.MemoryDescriptor);
      memoryMax.set(m, max);
      return m;
    } catch (err) {
      if (max <= 32) throw err;
    }
  }
}

/**
 * Whether this runtime gives shared WebAssembly memory (Node does; browsers may require cross-
 * origin isolation). A shared memory keeps earlier views valid when it grows, which is what
 * alloc() tensors need; the *-shared.wasm builds import one.
 */
export function sharedMemoryWorks(): boolean {
  try {
    const m = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true } as WebAssembly.MemoryDescriptor);
    return m.buffer.constructor.name === 'SharedArrayBuffer';
  } catch {
    return false;
  }
}

function buildOf(exports: WasmExports): WasmBuild {
  return exports.isRelaxed() ? 'relaxed-simd' : 'simd128';
}

function finishInstance(module: WebAssembly.Module, instance: WebAssembly.Instance, memory: WebAssembly.Memory, o: InstantiateOptions): WasmInstance {
  const exports = instance.exports as unknown as WasmExports;
  exports._initialize?.();
  // the memory's real maximum (a shared one may have settled for less)
  const maxPages = Math.min(MAX_PAGES, Math.max(32, o.maxPages ?? MAX_PAGES), maxPagesOf(memory) ?? MAX_PAGES);
  return { exports, heap: new WasmHeap(memory, exports.heapBase(), maxPages), build: buildOf(exports), module, shared: o.shared === true };
}

const memoryMax = new WeakMap<WebAssembly.Memory, number>();

/** the maximum a memory was made with (undefined when unknown) */
function maxPagesOf(memory: WebAssembly.Memory): number | undefined {
  return memoryMax.get(memory);
}

/** a module importing a shared memory refuses a plain one (and the reverse) with a LinkError */
function isSharedMismatch(err: unknown): boolean {
  return typeof WebAssembly.LinkError === 'function' && err instanceof WebAssembly.LinkError && /shared/i.test((err as Error).message);
}

/**
 * Compiles and instantiates synchronously (Node; in browsers only off the main thread or for
 * small modules). `shared` unset: whichever memory the module imports.
 */
export function instantiateSync(source: Uint8Array | ArrayBuffer | WasmModule, o: InstantiateOptions = {}): WasmInstance {
  const module = isWasmModule(source) ? source : new WebAssembly.Module(source as BufferSource);
  const attempt = (shared: boolean) => {
    const opts = { ...o, shared };
    const memory = newMemory(opts);
    return finishInstance(module, new WebAssembly.Instance(module, importsFor(memory)), memory, opts);
  };
  try {
    return attempt(o.shared === true);
  } catch (err) {
    if (o.shared !== undefined || !isSharedMismatch(err)) throw err;
    return attempt(true);
  }
}

export async function instantiate(source: Uint8Array | ArrayBuffer | WasmModule, o: InstantiateOptions = {}): Promise<WasmInstance> {
  const module = isWasmModule(source) ? source : await WebAssembly.compile(source as BufferSource);
  const attempt = async (shared: boolean) => {
    const opts = { ...o, shared };
    const memory = newMemory(opts);
    return finishInstance(module, await WebAssembly.instantiate(module, importsFor(memory)), memory, opts);
  };
  try {
    return await attempt(o.shared === true);
  } catch (err) {
    if (o.shared !== undefined || !isSharedMismatch(err)) throw err;
    return attempt(true);
  }
}

/**
 * Instantiates `module` on an existing memory (a worker sharing the caller's shared memory).
 * The instance only runs kernel calls planned elsewhere: it must not allocate, since the
 * heap belongs to the thread that made the memory.
 */
export function instantiateOnMemory(module: WasmModule, memory: WasmMemory): WasmExports {
  const exports = new WebAssembly.Instance(module, importsFor(memory)).exports as unknown as WasmExports;
  exports._initialize?.();
  return exports;
}

/** Fetches (streaming compile where the server sends application/wasm) and instantiates. */
export async function instantiateUrl(url: URL | string): Promise<WasmInstance> {
  if (typeof fetch !== 'function') throw new Error(`wasm: cannot fetch ${String(url)}: fetch() is not available here`);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`wasm: fetching ${String(url)} failed: HTTP ${res.status}`);
  let module: WebAssembly.Module;
  if (typeof WebAssembly.compileStreaming === 'function' && /application\/wasm/.test(res.headers.get('content-type') ?? '')) {
    module = await WebAssembly.compileStreaming(res);
  } else {
    module = await WebAssembly.compile(await res.arrayBuffer());
  }
  return instantiate(module);
}


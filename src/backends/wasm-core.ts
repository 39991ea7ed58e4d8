/**
 * The wasm backend, environment-neutral: instantiates the AssemblyScript kernels (assembly/)
 * from bytes or a compiled module, owns the linear memory (a small first-fit heap above the
 * module's static data, grown on demand and reused between calls), and implements Backend on
 * top of the raw exports. Nothing here imports Node modules: the Node loader (wasm.ts) and the
 * browser entry (browser.ts) both build on it, and so does the worker (wasm-worker.ts).
 */
import type { AttentionArgs, Backend, KvCacheState, MatmulArgs, MultiHeadKernel, MultiHeadParams, SoftmaxArgs } from '../backend.js';
import { attachedNow, attnError, copyResult } from '../errors.js';
import { isFloat32Array, isInt32Array, isWasmModule } from '../typed-arrays.js';
import { WasmMhaCore, appendRows, recordRows, type MhaCall, type MhaResult } from './wasm-multihead.js';
import { STAGE_KV_FROM_BYTES, canStage, runAttentionStaged } from './wasm-staged.js';
import type { WorkerMhaCall, WorkerRunner } from './wasm-runner.js';

/** 'relaxed-simd' uses f32x4.relaxed_madd (fused multiply-add); 'simd128' runs wherever WebAssembly SIMD does. */
export type WasmBuild = 'relaxed-simd' | 'simd128';
/** Where the module comes from: a URL (or URL string) to fetch, its bytes, or a compiled module. */
export type WasmSource = URL | string | ArrayBuffer | Uint8Array | WebAssembly.Module;

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
  memory: WebAssembly.Memory;
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

// ---------------------------------------------------------------------------------------------
// Memory

const PAGE = 65536;
/** wasm32 addresses: 4 GiB of linear memory at most */
const MAX_PAGES = 65536;
const ALIGN = 64;

/** the bytes a block of `bytes` takes: a whole number of ALIGN, at least one */
function blockBytes(bytes: number): number {
  return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
}

function allocError(bytes: number, why: string): Error {
  return attnError('ERR_ATTN_ALLOC', `wasm: could not allocate ${bytes} bytes of WebAssembly memory: ${why}`);
}

/**
 * A first-fit heap over the linear memory above the module's static data. Blocks are 64-byte
 * aligned; freed blocks coalesce. The memory grows (never shrinks) when no block fits.
 */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  readonly base: number;
  /** free blocks [offset, size], sorted by offset */
  #free: Array<[number, number]> = [];
  #sizes = new Map<number, number>();
  #end: number;
  #buffer: ArrayBuffer | undefined;
  /** every buffer object this memory has handed out (a shared memory gives a new one after each grow) */
  #known = new WeakSet<ArrayBufferLike>();
  #f32: Float32Array | undefined;
  #u8: Uint8Array | undefined;
  #i32: Int32Array | undefined;
  /** how many times the memory grew (each grow detaches views over the previous buffer) */
  grows = 0;
  /** bytes copied into the memory for calls (inputs that were not already inside it) */
  copiedIn = 0;
  readonly maxBytes: number;

  constructor(memory: WebAssembly.Memory, heapBase: number, maxPages = MAX_PAGES) {
    this.memory = memory;
    this.maxBytes = maxPages * PAGE;
    this.base = Math.ceil(heapBase / ALIGN) * ALIGN;
    this.#end = memory.buffer.byteLength;
    if (this.#end > this.base) this.#free.push([this.base, this.#end - this.base]);
  }

  /** bytes of linear memory now */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** bytes handed out and not freed */
  get inUse(): number {
    let n = 0;
    for (const s of this.#sizes.values()) n += s;
    return n;
  }

  #refresh(): void {
    const buf = this.memory.buffer;
    if (buf !== this.#buffer) {
      this.#known.add(buf);
      this.#buffer = buf as ArrayBuffer;
      this.#f32 = new Float32Array(buf);
      this.#u8 = new Uint8Array(buf);
      this.#i32 = new Int32Array(buf);
    }
  }

  get f32(): Float32Array {
    this.#refresh();
    return this.#f32!;
  }
  get u8(): Uint8Array {
    this.#refresh();
    return this.#u8!;
  }
  get i32(): Int32Array {
    this.#refresh();
    return this.#i32!;
  }

  /**
   * true when `view` lies inside this memory: over its current buffer, or (shared memory) over
   * a buffer it had before growing, which stays valid at its old length.
   */
  owns(view: ArrayBufferView): boolean {
    this.#refresh();
    return view.byteLength > 0 && this.#known.has(view.buffer);
  }

  /** whether the memory is shared (views survive growing) */
  get shared(): boolean {
    return typeof SharedArrayBuffer !== 'undefined' ? this.memory.buffer instanceof SharedArrayBuffer : this.memory.buffer.constructor.name === 'SharedArrayBuffer';
  }

  /** Reserves `bytes` (rounded up to 64) and returns the byte offset; throws ERR_ATTN_ALLOC. */
  alloc(bytes: number): number {
    if (!Number.isFinite(bytes) || bytes < 0) throw allocError(bytes, 'invalid size');
    const size = blockBytes(bytes);
    if (size > this.maxBytes - this.base) {
      throw allocError(bytes, `more than the ${this.maxBytes - this.base} bytes this WebAssembly memory can address (4 GiB at most in wasm32)`);
    }
    for (let i = 0; i < this.#free.length; i++) {
      const [off, len] = this.#free[i];
      if (len >= size) {
        if (len === size) this.#free.splice(i, 1);
        else this.#free[i] = [off + size, len - size];
        this.#sizes.set(off, size);
        return off;
      }
    }
    // grow: extend the last free block if it ends at the memory's end
    const last = this.#free[this.#free.length - 1];
    const tail = last && last[0] + last[1] === this.#end ? last[1] : 0;
    const need = size - tail;
    const have = this.#end / PAGE;
    // grow by at least 1/8 of the current size so that many small grows do not happen
    const maxPages = this.maxBytes / PAGE;
    let pages = Math.max(Math.ceil(need / PAGE), Math.ceil(have / 8));
    if (have + pages > maxPages) pages = Math.ceil(need / PAGE);
    if (have + pages > maxPages) {
      throw allocError(bytes, `the memory would exceed its maximum of ${this.maxBytes} bytes (${this.#end} bytes now, ${this.inUse} in use)`);
    }
    try {
      this.memory.grow(pages);
    } catch (err) {
      throw allocError(bytes, `the runtime refused to grow the memory by ${pages * PAGE} bytes (${(err as Error).message})`);
    }
    this.grows++;
    const oldEnd = this.#end;
    this.#end = this.memory.buffer.byteLength;
    if (tail > 0) last![1] += this.#end - oldEnd;
    else this.#free.push([oldEnd, this.#end - oldEnd]);
    return this.alloc(bytes);
  }

  /** largest free block, in bytes */
  get largestFree(): number {
    let m = 0;
    for (const [, len] of this.#free) m = Math.max(m, len);
    return m;
  }

  /**
   * Makes sure a block of `bytes` is free, growing now (with as much again of slack) if not;
   * never throws: without headroom later calls simply grow when they must.
   */
  reserve(bytes: number): void {
    if (this.largestFree >= bytes) return;
    try {
      this.free(this.alloc(2 * bytes));
    } catch {
      try {
        this.free(this.alloc(bytes));
      } catch {
        // no room: nothing reserved
      }
    }
  }

  free(off: number): void {
    const size = this.#sizes.get(off);
    if (size === undefined) return;
    this.#sizes.delete(off);
    let lo = 0;
    let hi = this.#free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#free[mid][0] < off) lo = mid + 1;
      else hi = mid;
    }
    this.#free.splice(lo, 0, [off, size]);
    // coalesce with the next and the previous block
    if (lo + 1 < this.#free.length && off + size === this.#free[lo + 1][0]) {
      this.#free[lo][1] += this.#free[lo + 1][1];
      this.#free.splice(lo + 1, 1);
    }
    if (lo > 0 && this.#free[lo - 1][0] + this.#free[lo - 1][1] === off) {
      this.#free[lo - 1][1] += this.#free[lo][1];
      this.#free.splice(lo, 1);
    }
  }
}

type Typed = Float32Array | Uint8Array | Int32Array;

/**
 * The memory of one call: inputs already inside WASM memory are used in place (their offsets
 * are read before anything can grow the memory), the others are copied into temporary blocks;
 * outputs outside WASM memory are computed in temporary blocks and copied back.
 */
export class CallFrame {
  readonly #heap: WasmHeap;
  readonly #temps: number[] = [];
  readonly #copyIn: Array<[number, Typed]> = [];
  readonly #copyOut: Array<[number, Float32Array, number, string]> = [];
  readonly #pending: Array<{ bytes: number; assign: (off: number) => void }> = [];

  constructor(heap: WasmHeap) {
    this.#heap = heap;
  }

  /** an input array: its pointer (available after commit()) */
  input(view: Typed | undefined, set: (ptr: number) => void): void {
    if (!view) return set(0);
    if (this.#heap.owns(view)) return set(view.byteOffset);
    this.#pending.push({
      bytes: view.byteLength,
      assign: (off) => {
        this.#copyIn.push([off, view]);
        set(off);
      },
    });
  }

  /** an output array (`name` for the error if its buffer is detached before finish()) */
  output(view: Float32Array | undefined, set: (ptr: number) => void, name: string): void {
    if (!view) return set(0);
    if (this.#heap.owns(view)) return set(view.byteOffset);
    this.#pending.push({
      bytes: view.byteLength,
      assign: (off) => {
        this.#copyOut.push([off, view, view.length, name]);
        set(off);
      },
    });
  }

  scratch(bytes: number, set: (ptr: number) => void): void {
    this.#pending.push({ bytes, assign: set });
  }

  /**
   * Allocates the temporary blocks and copies the inputs in. The blocks are carved from one
   * allocation (each 64-byte aligned), and the copies go through the heap's cached views: a
   * small call spent more time in per-block allocs and frees and in the views made for each
   * copy than in its kernel.
   */
  commit(): void {
    if (this.#pending.length > 0) {
      let total = 0;
      for (const p of this.#pending) {
        // a size that is not a count of bytes (once: a 32-bit size read back as negative) is refused, not rounded up to a block
        if (!(p.bytes >= 0 && Number.isFinite(p.bytes))) throw allocError(p.bytes, 'invalid size');
        total += blockBytes(p.bytes);
      }
      const base = this.#heap.alloc(total);
      this.#temps.push(base);
      let off = base;
      for (const p of this.#pending) {
        p.assign(off);
        off += blockBytes(p.bytes);
      }
    }
    for (const [off, view] of this.#copyIn) {
      this.#heap.copiedIn += view.byteLength;
      if (isFloat32Array(view)) this.#heap.f32.set(view, off >>> 2);
      else if (isInt32Array(view)) this.#heap.i32.set(view, off >>> 2);
      else this.#heap.u8.set(view, off);
    }
  }

  /** copies outputs back (after the kernel ran; an async call's may have been detached meanwhile) */
  finish(): void {
    const f32 = this.#heap.f32;
    for (const [off, view, length, name] of this.#copyOut) copyResult(view, f32.subarray(off >>> 2, (off >>> 2) + length), name);
  }

  release(): void {
    for (const off of this.#temps) this.#heap.free(off);
    this.#temps.length = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Instantiation

export interface WasmInstance {
  exports: WasmExports;
  heap: WasmHeap;
  build: WasmBuild;
  module: WebAssembly.Module;
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
export function instantiateSync(source: Uint8Array | ArrayBuffer | WebAssembly.Module, o: InstantiateOptions = {}): WasmInstance {
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

export async function instantiate(source: Uint8Array | ArrayBuffer | WebAssembly.Module, o: InstantiateOptions = {}): Promise<WasmInstance> {
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
export function instantiateOnMemory(module: WebAssembly.Module, memory: WebAssembly.Memory): WasmExports {
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

// ---------------------------------------------------------------------------------------------
// The Backend

/** How attentionAsync gets off the calling thread (see WorkerRunner in wasm-runner.ts for the rest). */
export interface AsyncRunner {
  /** false once the worker failed: calls then compute on the calling thread */
  readonly alive?: boolean;
  attention(args: AttentionArgs): Promise<void>;
  close(): void;
}

export interface WasmBackend extends Backend {
  readonly name: 'wasm';
  /** the instance (memory, exports): for tests and for the worker */
  readonly instance: WasmInstance;
  alloc(length: number): Float32Array;
}

const MASK_KIND = { additive: 1, boolean: 2 } as const;

/** free space kept after an alloc() (at most; at least the tensor's own size, from 4 MiB) */
const ALLOC_HEADROOM = 64 * 1024 * 1024;

/** frees an alloc()ed block once its view is garbage collected */
const finalizer =
  typeof FinalizationRegistry === 'function'
    ? new FinalizationRegistry<{ heap: WasmHeap; off: number }>(({ heap, off }) => heap.free(off))
    : undefined;

/**
 * One call of a kernel export with its (numeric) arguments: a plan of these is plain data, so a
 * worker sharing the memory can run it (wasm-worker.ts, exec mode).
 */
export type KernelCall = [name: 'attention' | 'matmulPacked', ...args: number[]];

/** Runs a plan of kernel calls against an instance's exports. */
export function execCalls(exports: WasmExports, calls: readonly KernelCall[]): void {
  for (const [name, ...args] of calls) (exports[name] as (...a: number[]) => void)(...args);
}

/** A prepared call: its memory is reserved and inputs copied in; run `calls`, then `complete()` (or `abort()`). */
export interface PreparedCall<R = void> {
  calls: KernelCall[];
  /** copies the outputs back and frees the call's memory */
  complete(): R;
  /** frees the call's memory without reading outputs */
  abort(): void;
}

/**
 * Reserves one attention call's memory and copies its inputs in (those already in WASM memory
 * are used in place). `stage.k` / `stage.v`: instead of K or V, a block of one kv head's rows,
 * which the caller fills (wasm-staged.ts).
 */
export function attentionFrame(
  inst: WasmInstance,
  a: AttentionArgs,
  stage: { k: boolean; v: boolean } = { k: false, v: false },
): { frame: CallFrame; ptrs: AttentionPointers } {
  const f = new CallFrame(inst.heap);
  const ptrs: AttentionPointers = { out: 0, q: 0, k: 0, v: 0, mask: 0, keyLengths: 0, weights: 0, scratch: 0 };
  f.input(a.q, (p) => (ptrs.q = p));
  if (stage.k) f.scratch(a.seqK * a.headDim * 4, (p) => (ptrs.k = p));
  else f.input(a.k, (p) => (ptrs.k = p));
  if (stage.v) f.scratch(a.seqK * a.headDimV * 4, (p) => (ptrs.v = p));
  else f.input(a.v, (p) => (ptrs.v = p));
  f.input(a.mask?.data, (p) => (ptrs.mask = p));
  f.input(a.keyLengths, (p) => (ptrs.keyLengths = p));
  f.output(a.out, (p) => (ptrs.out = p), 'args.out');
  f.output(a.weights, (p) => (ptrs.weights = p), 'args.weights');
  f.scratch(inst.exports.attentionScratchBytes(a.seqK, a.headDim, a.headDimV), (p) => (ptrs.scratch = p));
  f.commit();
  return { frame: f, ptrs };
}

/** Reserves memory for one attention call, copies its inputs in, and plans the kernel call. */
export function prepareAttention(inst: WasmInstance, a: AttentionArgs): PreparedCall {
  const { frame: f, ptrs } = attentionFrame(inst, a);
  return {
    calls: [attentionCall(ptrs, a)],
    complete() {
      try {
        f.finish();
      } finally {
        f.release();
      }
    },
    abort: () => f.release(),
  };
}

/**
 * Runs one attention call on an instance, here: K and V from outside WASM memory one head at a
 * time from `stageFromBytes` of them (wasm-staged.ts), else everything copied in at once.
 */
export function runAttention(inst: WasmInstance, a: AttentionArgs, stageFromBytes = STAGE_KV_FROM_BYTES): void {
  if (canStage(inst, a, stageFromBytes)) return runAttentionStaged(inst, a);
  const call = prepareAttention(inst, a);
  try {
    execCalls(inst.exports, call.calls);
  } catch (err) {
    call.abort();
    throw err;
  }
  call.complete();
}

/** Byte pointers of one attention call's arrays (0: absent). */
export interface AttentionPointers {
  out: number;
  q: number;
  k: number;
  v: number;
  mask: number;
  keyLengths: number;
  weights: number;
  /** attentionScratchBytes(seqK, headDim, headDimV) bytes */
  scratch: number;
}

/** The kernel call for arrays already in WASM memory; sizes and strides from `a` (its arrays are not read). */
export function attentionCall(p: AttentionPointers, a: Omit<AttentionArgs, 'q' | 'k' | 'v' | 'out'>): KernelCall {
  const m = a.mask;
  return [
    'attention',
    p.out, p.q, p.k, p.v, p.mask, p.keyLengths, p.weights, p.scratch,
    a.batch, a.numHeads, a.numKvHeads, a.seqQ, a.seqK, a.headDim, a.headDimV,
    a.qStrides.b, a.qStrides.h, a.qStrides.s,
    a.kStrides.b, a.kStrides.h, a.kStrides.s,
    a.vStrides.b, a.vStrides.h, a.vStrides.s,
    a.oStrides.b, a.oStrides.h, a.oStrides.s,
    m ? m.strideB : 0, m ? m.strideH : 0, m ? m.strideQ : 0, m ? m.strideK : 0,
    m ? MASK_KIND[m.kind] : 0, a.causal ? 1 : 0, a.scale,
  ];
}

export function runMatmul(inst: WasmInstance, a: MatmulArgs): void {
  const { exports: x, heap } = inst;
  const f = new CallFrame(heap);
  let pa = 0, pb = 0, bias = 0, out = 0, scratch = 0;
  f.input(a.a, (p) => (pa = p));
  f.input(a.b, (p) => (pb = p));
  f.input(a.bias, (p) => (bias = p));
  f.output(a.out, (p) => (out = p), 'args.out');
  f.scratch(x.matmulScratchBytes(a.n, a.k, a.strideB === 0 && a.batch > 1 ? 1 : 0), (p) => (scratch = p));
  f.commit();
  try {
    x.matmul(out, pa, pb, bias, a.batch, a.m, a.n, a.k, a.strideA, a.strideB, a.transposeB ? 1 : 0, scratch);
    f.finish();
  } finally {
    f.release();
  }
}

export function runSoftmax(inst: WasmInstance, a: SoftmaxArgs): void {
  const { exports: x, heap } = inst;
  const f = new CallFrame(heap);
  let px = 0, out = 0;
  f.input(a.x, (p) => (px = p));
  f.output(a.out, (p) => (out = p), 'args.out');
  f.commit();
  try {
    x.softmax(out, px, a.rows, a.cols, a.scale);
    f.finish();
  } finally {
    f.release();
  }
}

export interface WasmBackendOptions {
  /** runs attentionAsync / forwardAsync off the calling thread; without it they compute here */
  runner?: () => WorkerRunner | undefined;
  /** where the module came from, for info().details */
  origin?: string;
  /** K+V bytes from which attention copies them in one head at a time (tests set 0 to force it) */
  stageKvFromBytes?: number;
}

/** Wraps an instance as the wasm Backend. */
export function createWasmBackend(inst: WasmInstance, opts: WasmBackendOptions = {}): WasmBackend {
  let runner: WorkerRunner | undefined;
  let runnerTried = false;
  let closed = false;
  const check = () => {
    if (closed) throw attnError('ERR_ATTN_DISPOSED', 'wasm: the backend has been closed');
  };
  /** the worker, started on first use; undefined where there is none (or it failed) */
  const worker = (): WorkerRunner | undefined => {
    if (!runnerTried) {
      runnerTried = true;
      try {
        runner = opts.runner?.();
      } catch {
        runner = undefined;
      }
    }
    return runner && runner.alive ? runner : undefined;
  };
  const isWorkerFailure = (err: unknown) => (err as { workerFailed?: boolean }).workerFailed === true;
  const backend: WasmBackend = {
    name: 'wasm',
    isa: inst.build,
    threads: 1,
    instance: inst,
    details: () => ({
      build: inst.build,
      memory: inst.shared ? 'shared' : 'not shared (a grow detaches alloc() tensors)',
      memoryBytes: String(inst.heap.byteLength),
      module: opts.origin ?? 'bytes',
      async: runner && runner.alive ? 'worker' : runnerTried ? 'calling thread' : 'worker (not started)',
      ...(runner && runner.alive ? { worker: runner.mode === 'exec' ? 'shares the memory' : 'copies inputs and outputs' } : {}),
    }),
    attention(args) {
      check();
      runAttention(inst, args, opts.stageKvFromBytes);
    },
    async attentionAsync(args) {
      check();
      const stillAttached = attachedNow([
        ['args.q', args.q], ['args.k', args.k], ['args.v', args.v], ['args.out', args.out], ['args.weights', args.weights],
        ['mask.data', args.mask?.data], ['args.keyLengths', args.keyLengths],
      ]); // prettier-ignore
      const w = worker();
      if (w && w.mode === 'exec') return execAsync(inst, w, prepareAttention(inst, args), isWorkerFailure);
      if (w) {
        try {
          return await w.attention(args);
        } catch (err) {
          // the worker could not start or died: compute here instead (errors of the call itself propagate)
          if (!isWorkerFailure(err)) throw err;
        }
      }
      await Promise.resolve();
      check();
      stillAttached();
      runAttention(inst, args, opts.stageKvFromBytes);
    },
    matmul(args) {
      check();
      runMatmul(inst, args);
    },
    softmax(args) {
      check();
      runSoftmax(inst, args);
    },
    createMultiHead(p) {
      check();
      return createMultiHead(inst, p, worker, isWorkerFailure);
    },
    alloc(length) {
      check();
      const heap = inst.heap;
      const off = heap.alloc(length * 4);
      // Keep headroom, so that calls on alloc()ed tensors (and further alloc()s) find their
      // memory without growing it: with a plain (unshared) memory a grow detaches every view
      // over the old buffer, these tensors included.
      if (!inst.shared) heap.reserve(Math.min(ALLOC_HEADROOM, Math.max(length * 4 * 4, 16 * 1024 * 1024)));
      const view = new Float32Array(heap.f32.buffer, off, length);
      view.fill(0);
      finalizer?.register(view, { heap, off });
      return view;
    },
    close() {
      closed = true;
      runner?.close();
      runner = undefined;
    },
  };
  return backend;
}

/**
 * Runs a prepared call in an exec-mode worker (which shares the memory: nothing is copied), or
 * here if the worker has failed; then completes it.
 */
async function execAsync<R>(inst: WasmInstance, w: WorkerRunner, call: PreparedCall<R>, isWorkerFailure: (err: unknown) => boolean): Promise<R> {
  try {
    await w.exec(call.calls);
  } catch (err) {
    if (!isWorkerFailure(err)) {
      call.abort();
      throw err;
    }
    try {
      execCalls(inst.exports, call.calls);
    } catch (e) {
      call.abort();
      throw e;
    }
  }
  return call.complete();
}

/**
 * The multi-head block: packed weights in this memory. forwardAsync runs the planned calls in
 * an exec-mode worker, or (copy mode) in a twin the worker builds from the weights.
 */
function createMultiHead(
  inst: WasmInstance,
  p: MultiHeadParams,
  worker: () => WorkerRunner | undefined,
  isWorkerFailure: (err: unknown) => boolean,
): MultiHeadKernel {
  // nothing below holds `p`: the caller's weight arrays are read once, here
  const core = new WasmMhaCore(inst, p);
  const KV = p.kvDim;
  const cacheIds = new WeakMap<KvCacheState, number>();
  let nextCache = 1;
  let remote: { runner: WorkerRunner; id: number } | undefined;
  /** rows of each cache the worker's mirror holds, and for which epoch of the cache */
  const workerSynced = new Map<number, { epoch: number; rows: number }>();
  let disposed = false;
  /** calls accepted before a dispose() finish with the weights they started with */
  let inFlight = 0;
  // A cache's mirrors (here and in a copy-mode worker) live as long as the cache: one cache per
  // request must not keep every request's mirror until dispose().
  const caches =
    typeof FinalizationRegistry === 'function'
      ? new FinalizationRegistry<number>((id) => {
          workerSynced.delete(id);
          if (disposed) return;
          core.freeCache(id);
          if (remote) remote.runner.mhaFreeCache(remote.id, id);
        })
      : undefined;
  const live = () => {
    if (disposed) throw attnError('ERR_ATTN_DISPOSED', 'wasm: the multi-head block was disposed');
  };
  const idOf = (s: KvCacheState) => {
    let id = cacheIds.get(s);
    if (id === undefined) {
      id = nextCache++;
      cacheIds.set(s, id);
      caches?.register(s, id);
    }
    return id;
  };
  const toCall = (a: Parameters<MultiHeadKernel['forward']>[0]): MhaCall => ({
    x: a.x,
    kv: a.kv === a.x ? undefined : a.kv,
    batch: a.batch,
    seqQ: a.seqQ,
    seqKv: a.seqKv,
    causal: a.causal,
    mask: a.mask,
    keyLengths: a.keyLengths,
    out: a.out,
    cache: a.cache && {
      id: idOf(a.cache),
      maxLength: a.cache.maxLength,
      length: a.cache.length,
      epoch: a.cache.epoch,
      rows: (from, to) => recordRows(a.cache!.k, a.cache!.v, a.batch, a.cache!.maxLength, KV, from, to),
    },
  });
  const record = (a: Parameters<MultiHeadKernel['forward']>[0], r: MhaResult) => {
    if (a.cache && r.kNew && r.vNew) appendRows(a.cache.k, a.cache.v, a.batch, a.cache.maxLength, KV, a.cache.length, r.kNew, r.vNew);
  };
  const here = (a: Parameters<MultiHeadKernel['forward']>[0]) => record(a, core.forward(toCall(a)));
  /** the copy-mode worker's twin, built from the weights as packed here */
  const twin = (w: WorkerRunner) => {
    if (!remote || remote.runner !== w) {
      remote = { runner: w, id: w.mhaCreate(core.packed()) };
      workerSynced.clear();
    }
    return remote.id;
  };
  const inWorker = async (w: WorkerRunner, a: Parameters<MultiHeadKernel['forward']>[0]) => {
    const id = twin(w);
    const { cache, out, ...rest } = toCall(a);
    const wc: WorkerMhaCall = { ...rest, outLength: out.length };
    if (a.cache && cache) {
      const known = workerSynced.get(cache.id);
      const from = known && known.epoch === cache.epoch ? Math.min(known.rows, a.cache.length) : 0;
      const rows = recordRows(a.cache.k, a.cache.v, a.batch, a.cache.maxLength, KV, from, a.cache.length);
      wc.cache = { id: cache.id, maxLength: cache.maxLength, length: cache.length, epoch: cache.epoch, from, k: rows.k, v: rows.v };
    }
    const r = await w.mhaForward(id, wc);
    copyResult(a.out, r.out, 'args.out');
    record(a, r);
    if (a.cache && cache) workerSynced.set(cache.id, { epoch: cache.epoch, rows: a.cache.length + a.seqQ });
  };
  return {
    forward(a) {
      live();
      here(a);
    },
    async forwardAsync(a) {
      live();
      const stillAttached = attachedNow([
        ['args.x', a.x], ['args.kv', a.kv], ['args.out', a.out], ['mask.data', a.mask?.data], ['args.keyLengths', a.keyLengths],
        ['cache.k', a.cache?.k], ['cache.v', a.cache?.v],
      ]); // prettier-ignore
      const w = worker();
      inFlight++;
      try {
        if (w && w.mode === 'exec') {
          record(a, await execAsync(inst, w, core.prepare(toCall(a)), isWorkerFailure));
          return;
        }
        if (w) {
          try {
            await inWorker(w, a);
            return;
          } catch (err) {
            if (!isWorkerFailure(err)) throw err;
          }
        }
        await Promise.resolve();
        stillAttached();
        here(a);
      } finally {
        // the packed weights are freed only once no accepted call can still read them
        if (--inFlight === 0 && disposed) core.dispose();
      }
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      if (inFlight === 0) core.dispose();
      // posted after every forward already sent, so the worker runs those first
      if (remote) remote.runner.mhaDispose(remote.id);
    },
  };
}


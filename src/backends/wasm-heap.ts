/**
 * The wasm backend's linear memory: a first-fit heap above the module's static data (grown on
 * demand, reused between calls) and the frame of one call, which copies inputs in and outputs
 * back where they do not already live inside that memory.
 */
import { attnError, attnRangeError, copyResult } from '../errors.js';
import { isFloat32Array, isInt32Array, viewBuffer, viewByteLength, viewByteOffset, viewLength } from '../typed-arrays.js';
import type { WasmMemory } from './wasm-types.js';

const PAGE = 65536;
/** wasm32 addresses: 4 GiB of linear memory at most */
export const MAX_PAGES = 65536;
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
  readonly memory: WasmMemory;
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

  constructor(memory: WasmMemory, heapBase: number, maxPages = MAX_PAGES) {
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
    return viewByteLength(view) > 0 && this.#known.has(viewBuffer(view));
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
  readonly #copyIn: Array<[number, Typed, number]> = [];
  readonly #copyOut: Array<[number, Float32Array, number, string]> = [];
  /** outputs used in place (alloc() views): a grow of a memory that is not shared detaches them */
  readonly #ownedOut: Array<[Float32Array, string]> = [];
  readonly #pending: Array<{ bytes: number; assign: (off: number) => void }> = [];

  constructor(heap: WasmHeap) {
    this.#heap = heap;
  }

  /** an input array: its pointer (available after commit()) */
  input(view: Typed | undefined, set: (ptr: number) => void): void {
    if (!view) return set(0);
    if (this.#heap.owns(view)) return set(viewByteOffset(view));
    const bytes = viewByteLength(view);
    this.#pending.push({
      bytes,
      assign: (off) => {
        this.#copyIn.push([off, view, bytes]);
        set(off);
      },
    });
  }

  /** an output array (`name` for the error if its buffer is detached before finish()) */
  output(view: Float32Array | undefined, set: (ptr: number) => void, name: string): void {
    if (!view) return set(0);
    if (this.#heap.owns(view)) {
      this.#ownedOut.push([view, name]);
      return set(viewByteOffset(view));
    }
    this.#pending.push({
      bytes: viewByteLength(view),
      assign: (off) => {
        this.#copyOut.push([off, view, viewLength(view), name]);
        set(off);
      },
    });
  }

  scratch(bytes: number, set: (ptr: number) => void): void {
    this.#pending.push({ bytes, assign: set });
  }

  /**
   * Allocates the temporary blocks and copies the inputs in; on a failure the frame's blocks are
   * released.
   */
  commit(): void {
    try {
      this.#allocate();
      // An alloc() output used in place loses its result if the memory grew (not shared: the
      // grow detached it; the kernel would write where the caller can no longer look).
      for (const [view, name] of this.#ownedOut) {
        if (viewByteLength(view) === 0) {
          throw attnRangeError('ERR_ATTN_SIZE', `wasm: ${name} is an alloc() tensor, and this call grew the WebAssembly memory, which is not shared, so the grow detached it and its result would be lost; nothing was computed. Pass the call's other arrays as alloc() tensors too (nothing is copied in then); a shared memory, where the runtime allows one, has no such limit`);
        }
      }
      for (const [off, view, bytes] of this.#copyIn) {
        // the block holds the bytes the view had when it was added: never copy more into it
        if (viewByteLength(view) !== bytes) throw attnRangeError('ERR_ATTN_SIZE', 'wasm: an input array changed size while the call was being prepared');
        this.#heap.copiedIn += bytes;
        if (isFloat32Array(view)) this.#heap.f32.set(view, off >>> 2);
        else if (isInt32Array(view)) this.#heap.i32.set(view, off >>> 2);
        else this.#heap.u8.set(view, off);
      }
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /**
   * Allocates the temporary blocks. They are carved from one allocation (each 64-byte aligned),
   * and the copies go through the heap's cached views: a small call spent more time in per-block
   * allocs and frees and in the views made for each copy than in its kernel.
   */
  #allocate(): void {
    if (this.#pending.length === 0) return;
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


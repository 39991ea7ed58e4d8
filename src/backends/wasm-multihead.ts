/**
 * The multi-head block on the wasm backend (environment-neutral; used on the calling thread and
 * inside the worker). Weights are packed once into WASM memory in the kernels' panel layout
 * (Wq; Wk and Wv fused into one [2·kvDim, E] projection; Wo) with their biases, so a forward
 * is three packed matmuls and one attention call with no repacking and no JS math.
 *
 * A KV cache is mirrored in WASM memory as [B, maxLength, 2·kvDim] rows (k then v), which the
 * attention kernel reads through strides; the K/V projection of new tokens is written straight
 * into the mirror. The facade's cache arrays stay the record: each forward returns the new
 * rows for them, and a mirror catches up from them (rows it has not seen, e.g. computed by the
 * other thread) before it is used. A reset cache (its epoch changed) is caught up from row 0:
 * the rows at the same positions may now hold another sequence's keys and values.
 */
import type { AttentionArgs, MultiHeadParams, ResolvedMask } from '../backend.js';
import { attentionCall, execCalls, type KernelCall, type PreparedCall } from './wasm-core.js';
import { CallFrame } from './wasm-heap.js';
import type { WasmInstance } from './wasm-instance.js';

/** The weights part of MultiHeadParams. */
export type MhaWeights = Omit<MultiHeadParams, 'threads'>;

/** A block's sizes. */
export type MhaDims = Pick<MultiHeadParams, 'embedDim' | 'numHeads' | 'numKvHeads' | 'headDim' | 'kvDim'>;

/**
 * A block's weights as packed in WASM memory (the panels hold no addresses, so the bytes can
 * be copied to any 16-aligned block): what a worker's twin is built from, so that it computes
 * with the weights as they were packed, not with whatever the caller's arrays hold later.
 */
export interface PackedMha {
  dims: MhaDims;
  wq: Uint8Array;
  wkv: Uint8Array;
  wo: Uint8Array;
}

/** One forward, independent of where the cache's earlier rows live. */
export interface MhaCall {
  x: Float32Array;
  /** key/value source; undefined: x itself */
  kv?: Float32Array;
  batch: number;
  seqQ: number;
  seqKv: number;
  causal: boolean;
  mask?: ResolvedMask;
  keyLengths?: Int32Array;
  out: Float32Array;
  cache?: {
    id: number;
    maxLength: number;
    /** positions filled before this call */
    length: number;
    /** KvCacheState.epoch: changes when the cache is reset */
    epoch: number;
    /**
     * rows [0, known) the caller knows a mirror to hold (a worker's twin: those it was sent
     * before); undefined: every row the mirror has caught up
     */
    known?: number;
    /** rows [from, to) of every batch, [B, to - from, kvDim] each */
    rows(from: number, to: number): { k: Float32Array; v: Float32Array };
  };
}

export interface MhaResult {
  /** with a cache: the new rows [B, seqQ, kvDim] to append to the record */
  kNew?: Float32Array;
  vNew?: Float32Array;
}

interface Mirror {
  off: number;
  batch: number;
  maxLength: number;
  /** rows [0, synced) are current, for the cache's epoch `epoch` */
  synced: number;
  epoch: number;
  bytes: number;
  /** planned calls that read or write it (it is not evicted while any is pending) */
  pins: number;
  /** when it was last used (this core's call count) */
  used: number;
}

/**
 * Bytes of cache mirrors a block keeps on the calling thread before it frees the least recently
 * used ones (a freed mirror is rebuilt from the cache's record when its cache comes back). A
 * garbage-collected cache's mirror is freed too, but only when the event loop turns: a loop of
 * single-use caches on one thread would otherwise fill the memory first.
 */
export const MIRROR_BUDGET_BYTES = 256 * 2 ** 20;

export class WasmMhaCore {
  readonly #inst: WasmInstance;
  readonly #p: MhaDims;
  #wq = 0;
  #wkv = 0;
  #wo = 0;
  readonly #mirrors = new Map<number, Mirror>();
  readonly #evicts: boolean;
  #mirrorBytes = 0;
  #calls = 0;
  #disposed = false;

  /**
   * Packs the weights, or copies a block packed elsewhere (packed()). evictMirrors false: mirrors
   * are freed only by freeCache() (a worker's twin, whose caller tracks which rows it holds).
   */
  constructor(inst: WasmInstance, src: MhaWeights | PackedMha, evictMirrors = true) {
    this.#inst = inst;
    this.#evicts = evictMirrors;
    const p: MhaDims = 'dims' in src ? src.dims : src;
    this.#p = { embedDim: p.embedDim, numHeads: p.numHeads, numKvHeads: p.numKvHeads, headDim: p.headDim, kvDim: p.kvDim };
    try {
      if ('dims' in src) {
        this.#wq = this.#copyIn(src.wq);
        this.#wkv = this.#copyIn(src.wkv);
        this.#wo = this.#copyIn(src.wo);
      } else {
        this.#packWeights(src);
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  #packWeights(p: MhaWeights): void {
    const E = p.embedDim;
    const KV = p.kvDim;
    const wkv = new Float32Array(2 * KV * E);
    wkv.set(p.wk, 0);
    wkv.set(p.wv, KV * E);
    let bkv: Float32Array | undefined;
    if (p.bk || p.bv) {
      bkv = new Float32Array(2 * KV);
      if (p.bk) bkv.set(p.bk, 0);
      if (p.bv) bkv.set(p.bv, KV);
    }
    this.#wq = this.#pack(p.wq, p.bq, E, E);
    this.#wkv = this.#pack(wkv, bkv, 2 * KV, E);
    this.#wo = this.#pack(p.wo, p.bo, E, E);
  }

  #copyIn(bytes: Uint8Array): number {
    const heap = this.#inst.heap;
    const dst = heap.alloc(bytes.byteLength);
    heap.u8.set(bytes, dst);
    return dst;
  }

  /** copies of the packed weights (see PackedMha) */
  packed(): PackedMha {
    if (this.#disposed) throw new Error('wasm: multi-head block used after dispose');
    const { exports: x, heap } = this.#inst;
    const E = this.#p.embedDim;
    const KV = this.#p.kvDim;
    const bytes = (off: number, n: number, k: number) => heap.u8.slice(off, off + x.matmulPackedBytes(n, k));
    return { dims: { ...this.#p }, wq: bytes(this.#wq, E, E), wkv: bytes(this.#wkv, 2 * KV, E), wo: bytes(this.#wo, E, E) };
  }

  /** packs an nn.Linear weight [n, k] (+ bias [n]) into a persistent block */
  #pack(w: Float32Array, bias: Float32Array | undefined, n: number, k: number): number {
    const { exports: x, heap } = this.#inst;
    const dst = heap.alloc(x.matmulPackedBytes(n, k));
    const f = new CallFrame(heap);
    let pw = 0;
    let pb = 0;
    f.input(w, (p) => (pw = p));
    f.input(bias, (p) => (pb = p));
    try {
      f.commit();
    } catch (err) {
      heap.free(dst);
      throw err;
    }
    try {
      x.matmulPrepack(dst, pw, pb, n, k, 1);
    } finally {
      f.release();
    }
    return dst;
  }

  #mirror(c: NonNullable<MhaCall['cache']>, batch: number): Mirror {
    let m = this.#mirrors.get(c.id);
    if (!m) {
      const bytes = batch * c.maxLength * 2 * this.#p.kvDim * 4;
      if (this.#evicts) this.#evict(bytes);
      m = { off: this.#inst.heap.alloc(bytes), batch, maxLength: c.maxLength, synced: 0, epoch: c.epoch, bytes, pins: 0, used: 0 };
      this.#mirrors.set(c.id, m);
      this.#mirrorBytes += bytes;
    }
    m.used = ++this.#calls;
    if (m.epoch !== c.epoch) {
      // the cache was reset: every row may have been rewritten since (by the other thread)
      m.synced = 0;
      m.epoch = c.epoch;
    }
    m.synced = Math.min(m.synced, c.length, c.known ?? c.length);
    if (m.synced < c.length) {
      // catch up from the record: rows written by the other thread
      const KV = this.#p.kvDim;
      const n = c.length - m.synced;
      const { k, v } = c.rows(m.synced, c.length);
      const f32 = this.#inst.heap.f32;
      for (let b = 0; b < batch; b++) {
        for (let r = 0; r < n; r++) {
          const dst = (m.off >>> 2) + (b * m.maxLength + m.synced + r) * 2 * KV;
          const src = (b * n + r) * KV;
          f32.set(k.subarray(src, src + KV), dst);
          f32.set(v.subarray(src, src + KV), dst + KV);
        }
      }
      m.synced = c.length;
    }
    return m;
  }

  /** frees least recently used mirrors no pending call holds until `bytes` more fit the budget */
  #evict(bytes: number): void {
    while (this.#mirrorBytes + bytes > MIRROR_BUDGET_BYTES) {
      let lru: [number, Mirror] | undefined;
      for (const e of this.#mirrors) if (e[1].pins === 0 && (!lru || e[1].used < lru[1].used)) lru = e;
      if (!lru) return;
      this.freeCache(lru[0]);
    }
  }

  freeCache(id: number): void {
    const m = this.#mirrors.get(id);
    if (m && m.pins === 0) {
      this.#inst.heap.free(m.off);
      this.#mirrors.delete(id);
      this.#mirrorBytes -= m.bytes;
    }
  }

  /** One forward, here. */
  forward(c: MhaCall): MhaResult {
    const call = this.prepare(c);
    try {
      execCalls(this.#inst.exports, call.calls);
    } catch (err) {
      call.abort();
      throw err;
    }
    return call.complete();
  }

  /**
   * Reserves the memory of one forward, copies its inputs in (and catches the cache mirror up),
   * and plans its kernel calls, which may run on this thread or in a worker sharing the memory.
   */
  prepare(c: MhaCall): PreparedCall<MhaResult> {
    if (this.#disposed) throw new Error('wasm: multi-head block used after dispose');
    const { exports: x, heap } = this.#inst;
    const p = this.#p;
    const E = p.embedDim;
    const KV = p.kvDim;
    const hd = p.headDim;
    const B = c.batch;
    const Sq = c.seqQ;
    const Skv = c.seqKv;
    const len = c.cache ? c.cache.length : 0;
    const seqK = len + Skv;

    // The caller's arrays first: an alloc() view's offset is taken while it is attached, since
    // a mirror allocated for a cache's first use may grow (without a shared memory: detach) it.
    const f = new CallFrame(heap);
    let px = 0, pkv = 0, mask = 0, kl = 0, out = 0, q = 0, kvBuf = 0, ctx = 0, scratch = 0, tmp = 0;
    f.input(c.x, (ptr) => (px = ptr));
    if (c.kv && c.kv !== c.x) f.input(c.kv, (ptr) => (pkv = ptr));
    f.input(c.mask?.data, (ptr) => (mask = ptr));
    f.input(c.keyLengths, (ptr) => (kl = ptr));
    f.output(c.out, (ptr) => (out = ptr), 'args.out');
    const mirror = c.cache ? this.#mirror(c.cache, B) : undefined;
    f.scratch(B * Sq * E * 4, (ptr) => (q = ptr));
    if (!mirror) f.scratch(B * Skv * 2 * KV * 4, (ptr) => (kvBuf = ptr));
    f.scratch(B * Sq * E * 4, (ptr) => (ctx = ptr));
    f.scratch(x.attentionScratchBytes(seqK, hd, hd), (ptr) => (scratch = ptr));
    f.scratch(128, (ptr) => (tmp = ptr));
    f.commit();
    if (pkv === 0) pkv = px;

    const calls: KernelCall[] = [];
    // Q = x Wqᵀ + bq
    calls.push(['matmulPacked', q, px, this.#wq, B * Sq, E, E, tmp]);
    // [K | V] = kv [Wk; Wv]ᵀ + [bk; bv], into the cache mirror when there is one
    let kvBase: number;
    let rowsPerBatch: number;
    if (mirror) {
      for (let b = 0; b < B; b++) {
        calls.push(['matmulPacked', mirror.off + (b * mirror.maxLength + len) * 2 * KV * 4, pkv + b * Skv * E * 4, this.#wkv, Skv, 2 * KV, E, tmp]);
      }
      kvBase = mirror.off;
      rowsPerBatch = mirror.maxLength;
    } else {
      calls.push(['matmulPacked', kvBuf, pkv, this.#wkv, B * Skv, 2 * KV, E, tmp]);
      kvBase = kvBuf;
      rowsPerBatch = Skv;
    }
    const qStrides = { b: Sq * E, h: hd, s: E };
    const kvStrides = { b: rowsPerBatch * 2 * KV, h: hd, s: 2 * KV };
    calls.push(
      attentionCall(
        { out: ctx, q, k: kvBase, v: kvBase + KV * 4, mask, keyLengths: kl, weights: 0, scratch },
        {
          batch: B,
          numHeads: p.numHeads,
          numKvHeads: p.numKvHeads,
          seqQ: Sq,
          seqK,
          headDim: hd,
          headDimV: hd,
          qStrides,
          kStrides: kvStrides,
          vStrides: kvStrides,
          oStrides: qStrides,
          scale: 1 / Math.sqrt(hd),
          causal: c.causal,
          mask: c.mask,
          keyLengths: c.keyLengths,
        },
      ),
    );
    // y = ctx Woᵀ + bo
    calls.push(['matmulPacked', out, ctx, this.#wo, B * Sq, E, E, tmp]);

    if (mirror) mirror.pins++;
    return {
      calls,
      abort: () => {
        f.release();
        if (mirror) mirror.pins--;
      },
      complete: (): MhaResult => {
        try {
          f.finish();
        } finally {
          f.release();
          if (mirror) mirror.pins--;
        }
        if (!mirror) return {};
        mirror.synced = len + Skv;
        // the new rows, for the facade's cache record
        const kNew = new Float32Array(B * Skv * KV);
        const vNew = new Float32Array(B * Skv * KV);
        const f32 = heap.f32;
        for (let b = 0; b < B; b++) {
          for (let r = 0; r < Skv; r++) {
            const src = (mirror.off >>> 2) + (b * mirror.maxLength + len + r) * 2 * KV;
            kNew.set(f32.subarray(src, src + KV), (b * Skv + r) * KV);
            vNew.set(f32.subarray(src + KV, src + 2 * KV), (b * Skv + r) * KV);
          }
        }
        return { kNew, vNew };
      },
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const heap = this.#inst.heap;
    for (const ptr of [this.#wq, this.#wkv, this.#wo]) if (ptr) heap.free(ptr);
    for (const m of this.#mirrors.values()) heap.free(m.off);
    this.#mirrors.clear();
  }
}

/** Rows [from, to) of a facade cache record ([B, maxLength, kvDim]) as [B, to - from, kvDim]. */
export function recordRows(k: Float32Array, v: Float32Array, batch: number, maxLength: number, kvDim: number, from: number, to: number) {
  const n = to - from;
  const ko = new Float32Array(batch * n * kvDim);
  const vo = new Float32Array(batch * n * kvDim);
  for (let b = 0; b < batch; b++) {
    const s = (b * maxLength + from) * kvDim;
    ko.set(k.subarray(s, s + n * kvDim), b * n * kvDim);
    vo.set(v.subarray(s, s + n * kvDim), b * n * kvDim);
  }
  return { k: ko, v: vo };
}

/** Appends new rows [B, n, kvDim] at `length` in a facade cache record. */
export function appendRows(k: Float32Array, v: Float32Array, batch: number, maxLength: number, kvDim: number, length: number, kNew: Float32Array, vNew: Float32Array): void {
  const n = kNew.length / (batch * kvDim);
  for (let b = 0; b < batch; b++) {
    const d = (b * maxLength + length) * kvDim;
    k.set(kNew.subarray(b * n * kvDim, (b + 1) * n * kvDim), d);
    v.set(vNew.subarray(b * n * kvDim, (b + 1) * n * kvDim), d);
  }
}

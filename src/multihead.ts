/**
 * The public multi-head attention object: validates forward() arguments, owns KV caches and
 * the disposed state, and drives a backend MultiHeadKernel.
 */
import type { Backend, KvCacheState, MultiHeadForwardArgs, MultiHeadKernel, MultiHeadParams } from './backend.js';
import { attnError, attnRangeError, attnTypeError, describe } from './errors.js';
import { checkNotInFlight, holdInFlight } from './in-flight.js';
import { composeMultiHead } from './multihead-composed.js';
import { numel, type Tensor } from './tensor.js';
import { sameView, type NamedArrays } from './typed-arrays.js';
import { checkFixedLength, checkOptions, checkPositiveInt, checkStillSized, checkTensor, outputArray, resolveKeyLengths, resolveMask, sized } from './validate.js';

export interface MultiHeadForwardOptions {
  causal?: boolean;
  keyLengths?: Int32Array | number[];
  mask?: Tensor<Float32Array> | Tensor<Uint8Array>;
  /** cross-attention: keys/values come from this [B, Skv, E] input instead of x */
  key?: Tensor;
  /** must be the same tensor as `key` (one source feeds both projections) */
  value?: Tensor;
  cache?: KvCache;
  out?: Float32Array;
}

const FORWARD_OPTIONS = ['causal', 'keyLengths', 'mask', 'key', 'value', 'cache', 'out'] as const;

/** What a KvCache is, out of the caller's reach: the room check and the kernels read this. */
interface CacheRecord {
  readonly state: KvCacheState;
  readonly owner: MultiHeadAttention;
  readonly batch: number;
  busy: boolean;
}

// Kept apart from the object the caller holds, so that an own property shadowing `length`, a
// Proxy around a cache or a write to its fields cannot make the room check pass on a full cache
// (the kernels then wrote past the cache's storage on wasm).
const records = new WeakMap<object, CacheRecord>();

/** only createCache() makes caches: it has checked the sizes the constructor takes */
const fromCreateCache = Symbol('createCache');

function recordOf(cache: KvCache, what: string): CacheRecord {
  const r = records.get(cache);
  if (!r) throw attnTypeError('ERR_ATTN_TYPE', `KvCache.${what}: not a cache made by createCache()`);
  return r;
}

/** A KV cache for token-by-token decoding; positions fill up from 0 to maxLength. */
export class KvCache {
  /** @internal */
  constructor(token: typeof fromCreateCache, owner: MultiHeadAttention, batch: number, maxLength: number, kvDim: number) {
    if (token !== fromCreateCache) throw attnTypeError('ERR_ATTN_TYPE', 'KvCache: make caches with multiHeadAttention(...).createCache({ batch, maxLength })');
    const n = numel([batch, maxLength, kvDim], 'createCache: cache');
    const state = { k: new Float32Array(n), v: new Float32Array(n), maxLength, length: 0, epoch: 0 };
    records.set(this, { state, owner, batch, busy: false });
  }
  get batch(): number {
    return recordOf(this, 'batch').batch;
  }
  /** positions filled so far */
  get length(): number {
    return recordOf(this, 'length').state.length;
  }
  get maxLength(): number {
    return recordOf(this, 'maxLength').state.maxLength;
  }
  /** forget every position (the storage is kept) */
  reset(): void {
    const r = recordOf(this, 'reset');
    if (r.busy) throw attnRangeError('ERR_ATTN_VALUE', 'KvCache.reset: the cache is in use by a pending forwardAsync (or a forward still running)');
    r.state.length = 0;
    r.state.epoch++;
  }
}

/** @internal the storage behind a cache (for tests: what a worker catches up from) */
export function cacheState(cache: KvCache): KvCacheState | undefined {
  return records.get(cache)?.state;
}

export class MultiHeadAttention {
  readonly embedDim: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  #kernel: MultiHeadKernel | undefined;
  /** only the sizes are kept: the backends copy or pack the weights, so the caller's arrays are not held */
  readonly #kvDim: number;
  /** why #kernel is gone (dispose(), or the instance it was made from was closed) */
  #ended = '';

  /** @internal */
  constructor(backend: Backend, params: MultiHeadParams) {
    this.#kvDim = params.kvDim;
    this.embedDim = params.embedDim;
    this.numHeads = params.numHeads;
    this.numKvHeads = params.numKvHeads;
    this.#kernel = backend.createMultiHead ? backend.createMultiHead(params) : composeMultiHead(backend, params);
  }

  #live(fn: string): MultiHeadKernel {
    if (!this.#kernel) throw attnError('ERR_ATTN_DISPOSED', `${fn}: ${this.#ended}`);
    return this.#kernel;
  }

  /** A KV cache holding up to maxLength positions of `batch` sequences. */
  createCache(options: { batch: number; maxLength: number }): KvCache {
    const fn = 'createCache';
    this.#live(fn);
    const opts = checkOptions(fn, options, ['batch', 'maxLength']);
    const batch = checkPositiveInt(fn, 'batch', opts.batch);
    const maxLength = checkPositiveInt(fn, 'maxLength', opts.maxLength);
    return new KvCache(fromCreateCache, this, batch, maxLength, this.#kvDim);
  }

  #resolve(fn: string, x: unknown, options: unknown): { args: MultiHeadForwardArgs; outShape: number[]; cache?: CacheRecord } {
    const opts = checkOptions(fn, options, FORWARD_OPTIONS);
    const E = this.embedDim;
    const xt = checkTensor(`${fn}: x`, x, 3);
    const [B, Sq, Ex] = xt.shape;
    if (Ex !== E) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: x must be [B, S, ${E}] (embedDim ${E}), got [${xt.shape}]`);
    let kvData = xt.data;
    let Skv = Sq;
    if (opts.key !== undefined || opts.value !== undefined) {
      if (opts.key === undefined || opts.value === undefined) {
        throw attnTypeError('ERR_ATTN_OPTION', `${fn}: cross-attention needs both key and value (the same [B, Skv, ${E}] tensor)`);
      }
      const kt = checkTensor(`${fn}: key`, opts.key, 3);
      const vt = checkTensor(`${fn}: value`, opts.value, 3);
      if (!sameView(kt.data, vt.data) || kt.shape.join() !== vt.shape.join()) {
        throw attnRangeError('ERR_ATTN_VALUE', `${fn}: key and value must be the same tensor (the source both projections read)`);
      }
      if (kt.shape[0] !== B || kt.shape[2] !== E) {
        throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: key must be [${B}, Skv, ${E}] to match x [${xt.shape}], got [${kt.shape}]`);
      }
      // x itself as key and value is self-attention (one input feeds Q, K and V: the backends fuse it)
      if (!sameView(kt.data, xt.data)) kvData = kt.data;
      Skv = kt.shape[1];
    }
    let cache: CacheRecord | undefined;
    let seqK = Skv;
    if (opts.cache !== undefined) {
      cache = typeof opts.cache === 'object' && opts.cache !== null ? records.get(opts.cache) : undefined;
      if (!cache || cache.owner !== this) {
        throw attnTypeError('ERR_ATTN_TYPE', `${fn}: cache must come from this object's createCache(), got ${describe(opts.cache)}`);
      }
      if (opts.key !== undefined) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: a cache cannot be combined with cross-attention key/value`);
      if (cache.busy) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: the cache is in use by a pending forwardAsync (or a forward still running)`);
      if (cache.batch !== B) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: cache was created for batch ${cache.batch}, x has batch ${B}`);
      const { length, maxLength } = cache.state;
      if (length + Sq > maxLength) {
        throw attnRangeError('ERR_ATTN_SIZE', `${fn}: cache holds ${length} of ${maxLength} positions; ${Sq} more do not fit`);
      }
      seqK = length + Sq;
    }
    const cacheLength = cache?.state.length;
    const causal = opts.causal === undefined ? false : opts.causal;
    if (typeof causal !== 'boolean') throw attnTypeError('ERR_ATTN_TYPE', `${fn}: causal must be a boolean, got ${describe(causal)}`);
    const outShape = [B, Sq, E];
    const mask = opts.mask === undefined ? undefined : resolveMask(fn, opts.mask, B, this.numHeads, Sq, seqK);
    const maskSize = sized('mask', mask?.data);
    const keyLengths = opts.keyLengths === undefined ? undefined : resolveKeyLengths(fn, opts.keyLengths, B, seqK);
    const args: MultiHeadForwardArgs = {
      x: xt.data,
      kv: kvData,
      batch: B,
      seqQ: Sq,
      seqKv: Skv,
      causal,
      mask,
      keyLengths,
      cache: cache?.state,
      out: outputArray(fn, opts.out, numel(outShape, `${fn}: output`), [xt.data, kvData, mask?.data, keyLengths]),
    };
    // (what the caller's objects could change after their checks: see checkStillSized)
    checkStillSized(fn, [['x', xt.data, B * Sq * E], ['key', kvData, B * Skv * E], maskSize, sized('keyLengths', keyLengths), sized('out', args.out)]);
    if (cache && (cache.state.length !== cacheLength || cache.busy)) {
      throw attnRangeError('ERR_ATTN_VALUE', `${fn}: the cache was used by another call while this one was being checked (it held ${cacheLength} positions, now ${cache.state.length})`);
    }
    return { args, outShape, cache };
  }

  /** y = concat_h(attention(x·Wqᵀ + bq, kv·Wkᵀ + bk, kv·Wvᵀ + bv))·Woᵀ + bo, x [B, S, E] -> [B, S, E] */
  forward(x: Tensor, options?: MultiHeadForwardOptions): Tensor {
    this.#live('forward');
    const { args, outShape, cache } = this.#resolve('forward', x, options);
    const kernel = this.#live('forward'); // (a getter read while resolving may have disposed it)
    checkNotInFlight('forward', forwardReads(args), [['out', args.out]]);
    // busy while the kernel runs, as for forwardAsync: nothing may append to the cache meanwhile
    if (cache) cache.busy = true;
    try {
      kernel.forward(args);
      if (cache) cache.state.length += args.seqQ;
    } finally {
      if (cache) cache.busy = false;
    }
    return { data: args.out, shape: outShape };
  }

  /** forward() computed off the calling thread where the backend can; as for attentionAsync, keep the arrays' buffers attached until it settles. */
  async forwardAsync(x: Tensor, options?: MultiHeadForwardOptions): Promise<Tensor> {
    this.#live('forwardAsync');
    const { args, outShape, cache } = this.#resolve('forwardAsync', x, options);
    const kernel = this.#live('forwardAsync');
    checkFixedLength('forwardAsync', [['x', args.x], ['key', args.kv], ['out', args.out], ['mask', args.mask?.data], ['keyLengths', args.keyLengths]]);
    const release = holdInFlight('forwardAsync', forwardReads(args), [['out', args.out]], [x, options]);
    if (cache) cache.busy = true;
    try {
      await kernel.forwardAsync(args);
      if (cache) cache.state.length += args.seqQ;
    } finally {
      if (cache) cache.busy = false;
      release();
    }
    return { data: args.out, shape: outShape };
  }

  /** Frees the packed weights; every later call throws ERR_ATTN_DISPOSED. Calling it twice is harmless. */
  dispose(): void {
    this.#end('this multi-head attention was disposed');
  }

  /** @internal Attention.close(): ends the block as dispose() does, saying why */
  ownerClosed(): void {
    this.#end('the instance this multi-head attention was made from was closed');
  }

  #end(why: string): void {
    if (!this.#kernel) return;
    this.#kernel.dispose();
    this.#kernel = undefined;
    this.#ended = why;
  }
}

function forwardReads(args: MultiHeadForwardArgs): NamedArrays {
  return [['x', args.x], ['key', args.kv], ['mask', args.mask?.data], ['keyLengths', args.keyLengths]];
}

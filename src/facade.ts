/**
 * The public Attention object, the same for every backend and every entry (Node, browser):
 * it validates (validate.ts), allocates outputs, and hands resolved arguments to the backend.
 */
import type { AttentionArgs, Backend, BackendInfo, BackendName } from './backend.js';
import { attachedNow, attnError } from './errors.js';
import { checkNotInFlight, holdInFlight } from './in-flight.js';
import { MultiHeadAttention } from './multihead.js';
import { checkShape, numel, type Tensor } from './tensor.js';
import type { NamedArrays } from './typed-arrays.js';
import { checkFixedLength, resolveAttention, resolveMatmul, resolveMultiHeadParams, resolveSoftmax, type Layout } from './validate.js';
import { VERSION } from './version.js';

export interface AttentionOptions {
  /** defaults to 1/sqrt(D) */
  scale?: number;
  /** bottom-right aligned: query i sees key j iff j <= i + (Sk - Sq) */
  causal?: boolean;
  /** additive Float32Array or boolean Uint8Array (1 attend, 0 hide), broadcastable to [B, Hq, Sq, Sk] */
  mask?: Tensor<Float32Array> | Tensor<Uint8Array>;
  /** per batch: keys at positions >= keyLengths[b] are hidden */
  keyLengths?: Int32Array | number[];
  /** 'bhsd' (default, [B, H, S, D]) or 'bshd' ([B, S, H, D]) for q, k, v and the output */
  layout?: Layout;
  /** also return the softmax weights P [B, Hq, Sq, Sk] (materialises the score matrix) */
  returnWeights?: boolean;
  /** write the output into this Float32Array instead of allocating */
  out?: Float32Array;
}

export interface AttentionResult {
  output: Tensor;
  weights?: Tensor;
}

export interface MultiHeadAttentionParams {
  embedDim: number;
  numHeads: number;
  /** grouped-query attention: numHeads must be a multiple of it (defaults to numHeads) */
  numKvHeads?: number;
  /** nn.Linear weights [out, in]: wq [E, E], wk and wv [numKvHeads·E/numHeads, E], wo [E, E] */
  wq: Float32Array | Tensor;
  wk: Float32Array | Tensor;
  wv: Float32Array | Tensor;
  wo: Float32Array | Tensor;
  bq?: Float32Array | Tensor;
  bk?: Float32Array | Tensor;
  bv?: Float32Array | Tensor;
  bo?: Float32Array | Tensor;
}

export class Attention {
  readonly #backend: Backend;
  readonly #fallbackReason: string | undefined;
  #closed = false;
  /** the multi-head blocks made from this instance, disposed by close() (their native pool reference, their wasm memory) */
  readonly #blocks = new Set<WeakRef<MultiHeadAttention>>();

  /** @internal */
  constructor(backend: Backend, fallbackReason?: string) {
    this.#backend = backend;
    this.#fallbackReason = fallbackReason;
  }

  #live(fn: string): Backend {
    if (this.#closed) throw attnError('ERR_ATTN_DISPOSED', `${fn}: this instance was closed`);
    return this.#backend;
  }

  /**
   * Ends what the backend keeps running and frees what it holds: the wasm backend's worker (a
   * page keeps one per instance that has made an async call, until it closes), the native
   * thread pool. Calls still pending finish or reject with ERR_ATTN_DISPOSED (wasm in a worker);
   * later calls, on this instance and on the multi-head objects made from it, throw
   * ERR_ATTN_DISPOSED. Calling it twice is harmless.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ref of this.#blocks) ref.deref()?.ownerClosed();
    this.#blocks.clear();
    this.#backend.close?.();
  }

  /** 'native' | 'wasm' | 'js' */
  get backend(): BackendName {
    return this.#backend.name;
  }

  info(): BackendInfo {
    const info: BackendInfo = { backend: this.#backend.name, isa: this.#backend.isa, threads: this.#backend.threads, version: VERSION };
    if (this.#fallbackReason) info.fallbackReason = this.#fallbackReason;
    const details = this.#backend.details();
    if (Object.keys(details).length > 0) info.details = details;
    return info;
  }

  /** softmax(scale·Q·Kᵀ + mask)·V over every (batch, head). */
  attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): AttentionResult {
    this.#live('attention');
    const { args, outShape } = resolveAttention('attention', q, k, v, options);
    const backend = this.#live('attention'); // (a getter read while resolving may have closed it)
    checkNotInFlight('attention', attentionReads(args), attentionWrites(args));
    backend.attention(args);
    return result(args.out, outShape, args.weights, [args.batch, args.numHeads, args.seqQ, args.seqK]);
  }

  /**
   * attention() computed off the calling thread where the backend can (native, wasm). The native
   * backend reads and writes the arrays in place until the promise settles (wasm: its alloc()
   * tensors; plain arrays are copied at the call): keep their buffers attached and their values
   * unchanged meanwhile. One transferred away during the call makes the promise reject with
   * ERR_ATTN_SIZE naming it (the memory it took along was still written; freed meanwhile, the
   * behaviour is undefined); a buffer already detached when the call starts is refused with
   * ERR_ATTN_SIZE.
   */
  async attentionAsync(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<AttentionResult> {
    this.#live('attentionAsync');
    const { args, outShape } = resolveAttention('attentionAsync', q, k, v, options);
    const backend = this.#live('attentionAsync');
    checkFixedLength('attentionAsync', [['q', args.q], ['k', args.k], ['v', args.v], ['out', args.out], ['mask', args.mask?.data], ['keyLengths', args.keyLengths]]);
    const writes = attentionWrites(args);
    const outputsAttached = attachedNow(writes);
    const release = holdInFlight('attentionAsync', attentionReads(args), writes, [q, k, v, options]);
    try {
      await backend.attentionAsync(args);
    } finally {
      release();
    }
    outputsAttached();
    return result(args.out, outShape, args.weights, [args.batch, args.numHeads, args.seqQ, args.seqK]);
  }

  /** [.., M, K] x [.., K, N] (or [.., N, K] with transposeB), the leading (batch) dims broadcast as in NumPy's matmul. */
  matmul(a: Tensor, b: Tensor, options?: { transposeB?: boolean; out?: Float32Array }): Tensor {
    this.#live('matmul');
    const r = resolveMatmul('matmul', a, b, options);
    const backend = this.#live('matmul');
    const { calls, out, outShape } = r;
    checkNotInFlight('matmul', [['a', r.a], ['b', r.b]], [['out', out]]);
    for (const args of calls) backend.matmul(args);
    return { data: out, shape: outShape };
  }

  /** softmax(scale·x) over the last axis, max subtracted first. */
  softmax(x: Tensor, options?: { scale?: number; out?: Float32Array }): Tensor {
    this.#live('softmax');
    const { args, outShape } = resolveSoftmax('softmax', x, options);
    const backend = this.#live('softmax');
    checkNotInFlight('softmax', [['x', args.x]], [['out', args.out]]);
    backend.softmax(args);
    return { data: args.out, shape: outShape };
  }

  multiHeadAttention(params: MultiHeadAttentionParams): MultiHeadAttention {
    this.#live('multiHeadAttention');
    const resolved = resolveMultiHeadParams('multiHeadAttention', params);
    const backend = this.#live('multiHeadAttention');
    // the backend copies or packs the weights now
    const { wq, wk, wv, wo, bq, bk, bv, bo } = resolved;
    checkNotInFlight('multiHeadAttention', Object.entries({ wq, wk, wv, wo, bq, bk, bv, bo }), []);
    const block = new MultiHeadAttention(backend, resolved);
    if (this.#blocks.size >= 64) for (const ref of this.#blocks) if (!ref.deref()) this.#blocks.delete(ref);
    this.#blocks.add(new WeakRef(block));
    return block;
  }

  /**
   * A zero-filled tensor in the memory the backend computes in (WASM linear memory on the wasm
   * backend), so inputs written into it are used without a copy. Elsewhere a plain Float32Array.
   * The WASM block is freed when the returned data array is garbage-collected (a subarray of it
   * does not keep the block): keep that array for as long as its memory is used.
   */
  alloc(shape: readonly number[]): Tensor {
    const backend = this.#live('alloc');
    const dims = checkShape(shape, 'alloc');
    const n = numel(dims, 'alloc');
    return { data: backend.alloc ? backend.alloc(n) : new Float32Array(n), shape: dims };
  }
}

function attentionReads(args: AttentionArgs): NamedArrays {
  return [['q', args.q], ['k', args.k], ['v', args.v], ['mask', args.mask?.data], ['keyLengths', args.keyLengths]];
}

function attentionWrites(args: AttentionArgs): NamedArrays {
  return [['out', args.out], ['weights', args.weights]];
}

function result(out: Float32Array, outShape: number[], weights: Float32Array | undefined, weightsShape: number[]): AttentionResult {
  const res: AttentionResult = { output: { data: out, shape: outShape } };
  if (weights) res.weights = { data: weights, shape: weightsShape };
  return res;
}

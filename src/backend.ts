/**
 * The one interface every backend (native, wasm, js) implements.
 *
 * The facade (index.ts) validates every argument once (validate.ts), resolves layouts and
 * broadcasting into explicit element strides, allocates outputs, and only then calls a
 * backend. A backend therefore receives plain, already-checked numbers and typed arrays; it
 * writes its results into the arrays it is given and returns nothing. The native side
 * checks sizes again anyway (last line of defence against out-of-bounds writes).
 */

export type BackendName = 'native' | 'wasm' | 'js';

/** Element strides of a [B, H, S, D] tensor whose last axis is contiguous. */
export interface Strides3 {
  /** stride between batches */
  b: number;
  /** stride between heads */
  h: number;
  /** stride between sequence positions (rows) */
  s: number;
}

/**
 * A mask resolved to strides over [B, Hq, Sq, Sk]: a broadcast axis has stride 0.
 * Additive masks are added to the scaled scores; boolean masks hide where the byte is 0.
 */
export interface ResolvedMask {
  kind: 'additive' | 'boolean';
  data: Float32Array | Uint8Array;
  strideB: number;
  strideH: number;
  strideQ: number;
  strideK: number;
}

export interface AttentionArgs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  batch: number;
  numHeads: number; // Hq
  numKvHeads: number; // Hkv; Hq % Hkv === 0, query head h reads kv head floor(h / (Hq / Hkv))
  seqQ: number;
  seqK: number;
  headDim: number; // D (Q and K)
  headDimV: number; // Dv (V and output)
  qStrides: Strides3;
  kStrides: Strides3;
  vStrides: Strides3;
  oStrides: Strides3;
  scale: number;
  /** bottom-right aligned: query i sees key j iff j <= i + (seqK - seqQ) */
  causal: boolean;
  mask?: ResolvedMask;
  /** Int32Array [batch]: keys at positions >= keyLengths[b] are hidden; values already checked to lie in [0, seqK] */
  keyLengths?: Int32Array;
  /** output, laid out by oStrides */
  out: Float32Array;
  /** when set, the softmax weights P [B, Hq, Sq, Sk] (contiguous) are written here */
  weights?: Float32Array;
  /** worker threads to use (native only; others ignore it) */
  threads?: number;
}

/** C[batch] = A[batch] · B[batch] (or · B[batch]ᵀ) + bias, every matrix row-major and contiguous. */
export interface MatmulArgs {
  a: Float32Array;
  b: Float32Array;
  out: Float32Array;
  /** number of output matrices */
  batch: number;
  m: number;
  n: number;
  k: number;
  /** element offset between consecutive A matrices (0 when A is broadcast) */
  strideA: number;
  /** element offset between consecutive B matrices (0 when B is broadcast) */
  strideB: number;
  /** when true, B is stored [n, k] (as nn.Linear weights are) */
  transposeB: boolean;
  /** optional [n] added to every output row */
  bias?: Float32Array;
  threads?: number;
}

/** out[r, :] = softmax(scale * x[r, :]) for every row, max subtracted first. */
export interface SoftmaxArgs {
  x: Float32Array;
  out: Float32Array;
  rows: number;
  cols: number;
  scale: number;
  threads?: number;
}

export interface BackendInfo {
  backend: BackendName;
  /** instruction set in use: e.g. 'avx512', 'avx2', 'scalar', 'neon', 'simd128', 'relaxed-simd', 'js' */
  isa: string;
  threads: number;
  version: string;
  fallbackReason?: string;
  /** anything else worth reporting (the binary loaded, where it came from) */
  details?: Record<string, string>;
}

export interface Backend {
  readonly name: BackendName;
  readonly isa: string;
  readonly threads: number;
  /** extra fields merged into info() */
  details(): Record<string, string>;
  attention(args: AttentionArgs): void;
  /** same result as attention(), computed off the calling thread where the backend can */
  attentionAsync(args: AttentionArgs): Promise<void>;
  matmul(args: MatmulArgs): void;
  softmax(args: SoftmaxArgs): void;
  /**
   * Optional: a backend that packs multi-head weights its own way. When absent, the facade
   * composes the block from matmul (projections with bias) and attention.
   */
  createMultiHead?(params: MultiHeadParams): MultiHeadKernel;
  /**
   * Optional: a Float32Array of `length` elements living where the backend computes (WASM
   * linear memory), so inputs built in it are used without a copy. The facade falls back to a
   * plain Float32Array when absent.
   */
  alloc?(length: number): Float32Array;
  /** releases what the backend holds (thread pool, worker); the backend is unusable after */
  close?(): void;
}

/** Weights in the PyTorch nn.Linear convention ([out, in]), already validated. */
export interface MultiHeadParams {
  embedDim: number; // E
  numHeads: number; // Hq
  numKvHeads: number; // Hkv
  headDim: number; // E / Hq
  kvDim: number; // Hkv * headDim
  wq: Float32Array; // [E, E]
  wk: Float32Array; // [kvDim, E]
  wv: Float32Array; // [kvDim, E]
  wo: Float32Array; // [E, E]
  bq?: Float32Array;
  bk?: Float32Array;
  bv?: Float32Array;
  bo?: Float32Array;
  threads?: number;
}

/**
 * The state of a KV cache: keys and values laid out [batch, maxLength, numKvHeads, headDim]
 * (bshd), `length` positions filled. The forward call appends the new keys/values at
 * `length` and the facade advances `length` after it returns.
 */
export interface KvCacheState {
  k: Float32Array;
  v: Float32Array;
  maxLength: number;
  length: number;
  /** bumped by reset(): rows a backend copied before it may have been rewritten since */
  epoch: number;
}

export interface MultiHeadForwardArgs {
  x: Float32Array; // [B, Sq, E]
  /** key/value source [B, Skv, E]; same array as x for self-attention */
  kv: Float32Array;
  batch: number;
  seqQ: number;
  seqKv: number; // rows of kv (new rows, when a cache is used)
  causal: boolean;
  mask?: ResolvedMask;
  keyLengths?: Int32Array;
  cache?: KvCacheState;
  out: Float32Array; // [B, Sq, E]
}

export interface MultiHeadKernel {
  forward(args: MultiHeadForwardArgs): void;
  forwardAsync(args: MultiHeadForwardArgs): Promise<void>;
  dispose(): void;
}

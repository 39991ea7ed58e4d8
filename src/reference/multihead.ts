/**
 * Reference multi-head attention block with PyTorch nn.Linear weights ([out, in]):
 *   y = concat_h(attention(x·Wqᵀ + bq, kv·Wkᵀ + bk, kv·Wvᵀ + bv)) · Woᵀ + bo
 * The projections land directly in the bshd layout ([B, S, H, Dh] is [B, S, E] viewed per
 * head), so no transposes are needed. A KV cache keeps projected keys and values of
 * earlier calls so that decoding token by token equals one causal pass.
 */
import type { Tensor } from '../tensor.js';
import { attention } from './attention.js';
import { matmul } from './matmul.js';

export interface ReferenceMultiHeadParams {
  embedDim: number;
  numHeads: number;
  numKvHeads?: number;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  bq?: Float32Array;
  bk?: Float32Array;
  bv?: Float32Array;
  bo?: Float32Array;
}

/** Projected keys and values of earlier positions: [batch, maxLength, numKvHeads·headDim]. */
export interface ReferenceKvCache {
  batch: number;
  maxLength: number;
  length: number;
  k: Float32Array;
  v: Float32Array;
}

export interface ReferenceMultiHeadOptions {
  causal?: boolean;
  mask?: Tensor<Float32Array> | Tensor<Uint8Array>;
  keyLengths?: ArrayLike<number>;
  key?: Tensor;
  value?: Tensor;
  cache?: ReferenceKvCache;
}

function kvDim(p: ReferenceMultiHeadParams): number {
  return (p.numKvHeads ?? p.numHeads) * (p.embedDim / p.numHeads);
}

export function createReferenceCache(p: ReferenceMultiHeadParams, batch: number, maxLength: number): ReferenceKvCache {
  const n = batch * maxLength * kvDim(p);
  return { batch, maxLength, length: 0, k: new Float32Array(n), v: new Float32Array(n) };
}

function linear(x: Tensor, w: Float32Array, outDim: number, bias?: Float32Array): Tensor {
  const inDim = x.shape[x.shape.length - 1];
  return matmul(x, { data: w, shape: [outDim, inDim] }, { transposeB: true, bias });
}

/** Appends new rows [B, S, kvDim] at cache.length and returns the filled prefix [B, length + S, kvDim]. */
function appendToCache(store: Float32Array, cache: ReferenceKvCache, rows: Tensor, dim: number): Tensor {
  const [B, S] = rows.shape;
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const src = (b * S + s) * dim;
      store.set(rows.data.subarray(src, src + dim), (b * cache.maxLength + cache.length + s) * dim);
    }
  }
  const total = cache.length + S;
  const out = new Float32Array(B * total * dim);
  for (let b = 0; b < B; b++) {
    out.set(store.subarray(b * cache.maxLength * dim, (b * cache.maxLength + total) * dim), b * total * dim);
  }
  return { data: out, shape: [B, total, dim] };
}

export function multiHeadAttention(x: Tensor, p: ReferenceMultiHeadParams, options: ReferenceMultiHeadOptions = {}): Tensor {
  const E = p.embedDim;
  const Hq = p.numHeads;
  const Hkv = p.numKvHeads ?? Hq;
  const Dh = E / Hq;
  const KV = kvDim(p);
  const [B, Sq] = x.shape;
  const source = options.key ?? x;
  const valueSource = options.value ?? source;

  const q = linear(x, p.wq, E, p.bq);
  let k = linear(source, p.wk, KV, p.bk);
  let v = linear(valueSource, p.wv, KV, p.bv);
  if (options.cache) {
    const cache = options.cache;
    k = appendToCache(cache.k, cache, k, KV);
    v = appendToCache(cache.v, cache, v, KV);
    cache.length += Sq;
  }
  const Sk = k.shape[1];
  const ctx = attention(
    { data: q.data, shape: [B, Sq, Hq, Dh] },
    { data: k.data, shape: [B, Sk, Hkv, Dh] },
    { data: v.data, shape: [B, Sk, Hkv, Dh] },
    { layout: 'bshd', causal: options.causal, mask: options.mask, keyLengths: options.keyLengths },
  ).output;
  return linear({ data: ctx.data, shape: [B, Sq, E] }, p.wo, E, p.bo);
}

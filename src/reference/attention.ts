/**
 * Reference scaled dot-product attention, exactly as the README (Using it) states it, in float64:
 *
 *   S = scale·Q·Kᵀ (+ additive mask), hidden keys at -Infinity
 *   P = softmax(S) over keys (a row with nothing visible gives zeros)
 *   O = P·V
 *
 * Each index is computed from the shapes directly (no strides), so that it stays an
 * independent check of the stride arithmetic the kernels are driven by.
 */
import type { Tensor } from '../tensor.js';
import { isUint8Array } from '../typed-arrays.js';
import { softmaxRow } from './softmax.js';

export type Layout = 'bhsd' | 'bshd';

export interface ReferenceAttentionOptions {
  scale?: number;
  causal?: boolean;
  /** additive float32 or boolean uint8 (1 attend, 0 hide), broadcastable to [B, Hq, Sq, Sk] */
  mask?: Tensor<Float32Array> | Tensor<Uint8Array>;
  keyLengths?: ArrayLike<number>;
  layout?: Layout;
  returnWeights?: boolean;
}

export interface ReferenceAttentionResult {
  output: Tensor;
  weights?: Tensor;
}

/** [B, H, S, D] sizes of a tensor given in either layout. */
export function dims(t: Tensor, layout: Layout): { b: number; h: number; s: number; d: number } {
  const [b, x, y, d] = t.shape;
  return layout === 'bhsd' ? { b, h: x, s: y, d } : { b, h: y, s: x, d };
}

/** Flat offset of element (b, h, s, 0) of a [B, H, S, D] tensor stored in `layout`. */
export function rowOffset(layout: Layout, H: number, S: number, D: number, b: number, h: number, s: number): number {
  return layout === 'bhsd' ? ((b * H + h) * S + s) * D : ((b * S + s) * H + h) * D;
}

/** Mask value at (b, h, i, j) of a mask broadcast right-aligned to [B, Hq, Sq, Sk]. */
function maskAt(mask: Tensor<Float32Array> | Tensor<Uint8Array>, idx: [number, number, number, number]): number {
  const shape = mask.shape;
  let flat = 0;
  for (let a = 0; a < shape.length; a++) {
    const i = idx[4 - shape.length + a];
    flat = flat * shape[a] + (shape[a] === 1 ? 0 : i);
  }
  return mask.data[flat];
}

export function attention(q: Tensor, k: Tensor, v: Tensor, options: ReferenceAttentionOptions = {}): ReferenceAttentionResult {
  const layout = options.layout ?? 'bhsd';
  const Q = dims(q, layout);
  const K = dims(k, layout);
  const V = dims(v, layout);
  const B = Q.b;
  const Hq = Q.h;
  const Hkv = K.h;
  const Sq = Q.s;
  const Sk = K.s;
  const D = Q.d;
  const Dv = V.d;
  const group = Hq / Hkv;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const mask = options.mask;
  const isBoolean = mask !== undefined && isUint8Array(mask.data);

  const outShape = layout === 'bhsd' ? [B, Hq, Sq, Dv] : [B, Sq, Hq, Dv];
  const out = new Float32Array(B * Hq * Sq * Dv);
  const weights = options.returnWeights ? new Float32Array(B * Hq * Sq * Sk) : undefined;
  const row = new Float64Array(Sk);
  const hiddenKey = new Uint8Array(Sk);

  for (let b = 0; b < B; b++) {
    const keyLength = options.keyLengths ? options.keyLengths[b] : Sk;
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Sq; i++) {
        const qo = rowOffset(layout, Hq, Sq, D, b, h, i);
        for (let j = 0; j < Sk; j++) {
          let hidden = j >= keyLength || (options.causal === true && j > i + (Sk - Sq));
          let extra = 0;
          if (mask) {
            const m = maskAt(mask, [b, h, i, j]);
            if (isBoolean) hidden ||= m === 0;
            else extra = m;
          }
          hiddenKey[j] = hidden ? 1 : 0;
          if (hidden) {
            row[j] = -Infinity;
            continue;
          }
          const ko = rowOffset(layout, Hkv, Sk, D, b, hk, j);
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q.data[qo + d] * k.data[ko + d];
          row[j] = scale * dot + extra;
        }
        softmaxRow(row);
        if (weights) {
          const wo = ((b * Hq + h) * Sq + i) * Sk;
          for (let j = 0; j < Sk; j++) weights[wo + j] = row[j];
        }
        const oo = rowOffset(layout, Hq, Sq, Dv, b, h, i);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Sk; j++) {
            // A hidden key is not attended at all, so its value is never read.
            if (hiddenKey[j]) continue;
            acc += row[j] * v.data[rowOffset(layout, Hkv, Sk, Dv, b, hk, j) + d];
          }
          out[oo + d] = acc;
        }
      }
    }
  }
  return {
    output: { data: out, shape: outShape },
    weights: weights ? { data: weights, shape: [B, Hq, Sq, Sk] } : undefined,
  };
}

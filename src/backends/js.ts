/**
 * The js backend: serves every op from the TypeScript reference. It is the last fallback and
 * runs anywhere; it is slow (plain loops, float64) and computes on the calling thread.
 */
import type { AttentionArgs, Backend, MatmulArgs, ResolvedMask, SoftmaxArgs, Strides3 } from '../backend.js';
import * as reference from '../reference/index.js';
import type { Tensor } from '../tensor.js';
import { setInto } from '../typed-arrays.js';

/** Copies a strided [B, H, S, D] tensor into a contiguous bhsd one. */
function gather(data: Float32Array, st: Strides3, B: number, H: number, S: number, D: number): Tensor {
  const out = new Float32Array(B * H * S * D);
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++, o += D) {
        const from = b * st.b + h * st.h + s * st.s;
        out.set(data.subarray(from, from + D), o);
      }
  return { data: out, shape: [B, H, S, D] };
}

/** Writes a contiguous bhsd tensor into a strided destination. */
function scatter(src: Float32Array, dst: Float32Array, st: Strides3, B: number, H: number, S: number, D: number): void {
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++, o += D) setInto(dst, src.subarray(o, o + D), b * st.b + h * st.h + s * st.s);
}

/** A resolved mask is a contiguous tensor whose broadcast axes have size 1: rebuild that shape. */
function maskTensor(m: ResolvedMask, a: AttentionArgs): Tensor<Float32Array> | Tensor<Uint8Array> {
  const shape = [m.strideB ? a.batch : 1, m.strideH ? a.numHeads : 1, m.strideQ ? a.seqQ : 1, m.strideK ? a.seqK : 1];
  return { data: m.data, shape } as Tensor<Float32Array> | Tensor<Uint8Array>;
}

export function attentionJs(a: AttentionArgs): void {
  const result = reference.attention(
    gather(a.q, a.qStrides, a.batch, a.numHeads, a.seqQ, a.headDim),
    gather(a.k, a.kStrides, a.batch, a.numKvHeads, a.seqK, a.headDim),
    gather(a.v, a.vStrides, a.batch, a.numKvHeads, a.seqK, a.headDimV),
    {
      scale: a.scale,
      causal: a.causal,
      mask: a.mask ? maskTensor(a.mask, a) : undefined,
      keyLengths: a.keyLengths,
      returnWeights: a.weights !== undefined,
    },
  );
  scatter(result.output.data, a.out, a.oStrides, a.batch, a.numHeads, a.seqQ, a.headDimV);
  if (a.weights && result.weights) a.weights.set(result.weights.data);
}

export function matmulJs(a: MatmulArgs): void {
  const aShape = a.strideA === 0 ? [a.m, a.k] : [a.batch, a.m, a.k];
  const bMat = a.transposeB ? [a.n, a.k] : [a.k, a.n];
  const bShape = a.strideB === 0 ? bMat : [a.batch, ...bMat];
  const result = reference.matmul({ data: a.a, shape: aShape }, { data: a.b, shape: bShape }, { transposeB: a.transposeB, bias: a.bias });
  setInto(a.out, result.data);
}

export function softmaxJs(a: SoftmaxArgs): void {
  setInto(a.out, reference.softmax({ data: a.x, shape: [a.rows, a.cols] }, { scale: a.scale }).data);
}

export function createJsBackend(): Backend {
  return {
    name: 'js',
    isa: 'js',
    threads: 1,
    details: () => ({}),
    attention: attentionJs,
    attentionAsync: async (args) => attentionJs(args),
    matmul: matmulJs,
    softmax: softmaxJs,
  };
}

/**
 * The multi-head block composed from a backend's own kernels, for backends without a
 * specialised implementation: projections are matmuls with transposeB (nn.Linear weights
 * [out, in]) and a fused bias, and attention runs in the bshd layout, which is exactly how
 * the projections lay out [B, S, E] per head — no transposes, no math in JS.
 */
import type { AttentionArgs, Backend, MultiHeadForwardArgs, MultiHeadKernel, MultiHeadParams } from './backend.js';
import { attachedNow } from './errors.js';

export function composeMultiHead(backend: Backend, params: MultiHeadParams): MultiHeadKernel {
  // copied once, as the packing backends do: later changes to the caller's arrays (or their
  // buffers being transferred away) do not reach the block
  const p: MultiHeadParams = {
    ...params,
    wq: params.wq.slice(),
    wk: params.wk.slice(),
    wv: params.wv.slice(),
    wo: params.wo.slice(),
    bq: params.bq?.slice(),
    bk: params.bk?.slice(),
    bv: params.bv?.slice(),
    bo: params.bo?.slice(),
  };
  const linear = (x: Float32Array, rows: number, w: Float32Array, outDim: number, bias?: Float32Array, out?: Float32Array) => {
    const result = out ?? new Float32Array(rows * outDim);
    backend.matmul({ a: x, b: w, out: result, batch: 1, m: rows, n: outDim, k: p.embedDim, strideA: 0, strideB: 0, transposeB: true, bias });
    return result;
  };

  /** Projects q, k, v (appending k, v to the cache) and describes the attention call. */
  const prepare = (a: MultiHeadForwardArgs): { attn: AttentionArgs; finish: () => void } => {
    const { batch: B, seqQ: Sq, seqKv: Skv } = a;
    const E = p.embedDim;
    const KV = p.kvDim;
    const q = linear(a.x, B * Sq, p.wq, E, p.bq);
    const kNew = linear(a.kv, B * Skv, p.wk, KV, p.bk);
    const vNew = linear(a.kv, B * Skv, p.wv, KV, p.bv);
    let k = kNew;
    let v = vNew;
    let seqK = Skv;
    let kvRows = Skv;
    if (a.cache) {
      const c = a.cache;
      for (let b = 0; b < B; b++) {
        const dst = (b * c.maxLength + c.length) * KV;
        c.k.set(kNew.subarray(b * Skv * KV, (b + 1) * Skv * KV), dst);
        c.v.set(vNew.subarray(b * Skv * KV, (b + 1) * Skv * KV), dst);
      }
      k = c.k;
      v = c.v;
      seqK = c.length + Skv;
      kvRows = c.maxLength;
    }
    const ctx = new Float32Array(B * Sq * E);
    const qStrides = { b: Sq * E, h: p.headDim, s: E };
    const kvStrides = { b: kvRows * KV, h: p.headDim, s: KV };
    const attn: AttentionArgs = {
      q,
      k,
      v,
      batch: B,
      numHeads: p.numHeads,
      numKvHeads: p.numKvHeads,
      seqQ: Sq,
      seqK,
      headDim: p.headDim,
      headDimV: p.headDim,
      qStrides,
      kStrides: kvStrides,
      vStrides: kvStrides,
      oStrides: qStrides,
      scale: 1 / Math.sqrt(p.headDim),
      causal: a.causal,
      mask: a.mask,
      keyLengths: a.keyLengths,
      out: ctx,
      threads: p.threads,
    };
    return { attn, finish: () => void linear(ctx, B * Sq, p.wo, E, p.bo, a.out) };
  };

  return {
    forward(a) {
      const { attn, finish } = prepare(a);
      backend.attention(attn);
      finish();
    },
    async forwardAsync(a) {
      const { attn, finish } = prepare(a);
      const outAttached = attachedNow([['out', a.out]]);
      await backend.attentionAsync(attn);
      outAttached();  // refused as on every backend, rather than a TypeError from writing into it
      finish();
    },
    dispose() {},
  };
}

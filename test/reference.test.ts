/**
 * The reference against cases worked out by hand, and against properties attention must
 * have. If these fail, every parity result is meaningless.
 */
import assert from 'node:assert/strict';
import * as ref from '../src/reference/index.js';
import type { Tensor } from '../src/tensor.js';
import { assertClose } from './helpers/compare.js';
import { randomTensor, rng } from './helpers/random.js';

const t = (data: number[], shape: number[]): Tensor => ({ data: Float32Array.from(data), shape });
const E = Math.E;

/** Reorders a [B, H, S, D] tensor to [B, S, H, D]. */
function toBshd(x: Tensor): Tensor {
  const [B, H, S, D] = x.shape;
  const out = new Float32Array(x.data.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[((b * S + s) * H + h) * D + d] = x.data[((b * H + h) * S + s) * D + d];
  return { data: out, shape: [B, S, H, D] };
}

describe('reference: hand-worked cases', () => {
  it('matmul 2x2 and with transposed B', () => {
    const a = t([1, 2, 3, 4], [2, 2]);
    assert.deepEqual([...ref.matmul(a, t([5, 6, 7, 8], [2, 2])).data], [19, 22, 43, 50]);
    assert.deepEqual([...ref.matmul(a, t([5, 7, 6, 8], [2, 2]), { transposeB: true }).data], [19, 22, 43, 50]);
  });

  it('matmul broadcasts batch dims and adds the bias', () => {
    const a = t([1, 0, 0, 1, 2, 0, 0, 2], [2, 2, 2]);
    const b = t([1, 2, 3, 4], [2, 2]);
    const c = ref.matmul(a, b, { bias: Float32Array.from([10, 20]) });
    assert.deepEqual(c.shape, [2, 2, 2]);
    assert.deepEqual([...c.data], [11, 22, 13, 24, 12, 24, 16, 28]);
  });

  it('softmax of [1, 2, 3], with and without scale', () => {
    const s = E + E ** 2 + E ** 3;
    assertClose(ref.softmax(t([1, 2, 3], [1, 3])).data, [E / s, E ** 2 / s, E ** 3 / s], 'softmax', 1e-7, 1e-6);
    assertClose(ref.softmax(t([2, 4, 6], [3]), { scale: 0.5 }).data, [E / s, E ** 2 / s, E ** 3 / s], 'scaled', 1e-7, 1e-6);
  });

  it('softmax subtracts the max: huge inputs do not overflow', () => {
    assertClose(ref.softmax(t([1000, 1000], [2])).data, [0.5, 0.5], 'softmax');
  });

  it('one query, two keys, D = 1, scale 1', () => {
    const r = ref.attention(t([1], [1, 1, 1, 1]), t([1, 0], [1, 1, 2, 1]), t([2, 4], [1, 1, 2, 1]), { scale: 1, returnWeights: true });
    const p0 = E / (E + 1);
    assertClose(r.weights!.data, [p0, 1 - p0], 'weights', 1e-7, 1e-6);
    assertClose(r.output.data, [2 * p0 + 4 * (1 - p0)], 'output', 1e-6, 1e-6);
  });

  it('default scale is 1/sqrt(D)', () => {
    // q·k0 = 2, q·k1 = 0, D = 4: scores 1 and 0.
    const q = t([1, 1, 0, 0], [1, 1, 1, 4]);
    const k = t([1, 1, 0, 0, 0, 0, 1, 1], [1, 1, 2, 4]);
    const v = t([1, 0], [1, 1, 2, 1]);
    assertClose(ref.attention(q, k, v).output.data, [E / (E + 1)], 'output', 1e-6, 1e-6);
  });

  it('causal Sq = Sk: the first query sees only the first key', () => {
    const r = ref.attention(t([1, 1], [1, 1, 2, 1]), t([3, -1], [1, 1, 2, 1]), t([5, 7], [1, 1, 2, 1]), { causal: true, returnWeights: true });
    assert.equal(r.output.data[0], 5);
    assert.deepEqual([...r.weights!.data.slice(0, 2)], [1, 0]);
  });

  it('causal is bottom-right aligned: one new query sees the whole past; Sq > Sk hides the first rows', () => {
    const k = t([0, 0, 0], [1, 1, 3, 1]);
    const v = t([1, 2, 3], [1, 1, 3, 1]);
    assertClose(ref.attention(t([1], [1, 1, 1, 1]), k, v, { causal: true }).output.data, [2], 'decode');
    // Sq = 4, Sk = 3: query i sees j <= i - 1, so query 0 sees nothing and outputs 0.
    const r = ref.attention(t([1, 1, 1, 1], [1, 1, 4, 1]), k, v, { causal: true, returnWeights: true });
    assertClose(r.output.data, [0, 1, 1.5, 2], 'Sq > Sk');
    assert.deepEqual([...r.weights!.data.slice(0, 3)], [0, 0, 0]);
  });

  it('a fully hidden row gives zeros, not NaN (boolean mask, additive -Infinity, keyLengths 0)', () => {
    const q = t([1, 2], [1, 1, 1, 2]);
    const k = t([1, 1, 2, 2], [1, 1, 2, 2]);
    const v = t([3, 4], [1, 1, 2, 1]);
    const hide = { data: new Uint8Array([0, 0]), shape: [1, 2] };
    assert.deepEqual([...ref.attention(q, k, v, { mask: hide }).output.data], [0]);
    const minusInf = { data: Float32Array.from([-Infinity, -Infinity]), shape: [1, 2] };
    assert.deepEqual([...ref.attention(q, k, v, { mask: minusInf }).output.data], [0]);
    assert.deepEqual([...ref.attention(q, k, v, { keyLengths: [0] }).output.data], [0]);
  });

  it('NaN propagates to the rows it touches and nowhere else', () => {
    const q = t([NaN, 1], [1, 1, 2, 1]);
    const k = t([1, 2], [1, 1, 2, 1]);
    const v = t([1, 2], [1, 1, 2, 1]);
    const out = ref.attention(q, k, v).output.data;
    assert.ok(Number.isNaN(out[0]));
    assert.ok(Number.isFinite(out[1]));
    const vNaN = ref.attention(t([1, 1], [1, 1, 2, 1]), k, t([NaN, 2], [1, 1, 2, 1])).output.data;
    assert.ok(Number.isNaN(vNaN[0]) && Number.isNaN(vNaN[1]));
  });

  it('additive mask shifts scores', () => {
    // equal scores, mask +ln(3) on key 1: weights 1/4, 3/4
    const r = ref.attention(t([0], [1, 1, 1, 1]), t([0, 0], [1, 1, 2, 1]), t([0, 4], [1, 1, 2, 1]), {
      mask: { data: Float32Array.from([0, Math.log(3)]), shape: [1, 2] },
    });
    assertClose(r.output.data, [3], 'output', 1e-6, 1e-6);
  });
});

describe('reference: properties', () => {
  const rand = rng(7);
  const [B, H, Sq, Sk, D] = [2, 3, 5, 7, 6];
  const q = randomTensor(rand, [B, H, Sq, D]);
  const k = randomTensor(rand, [B, H, Sk, D]);
  const v = randomTensor(rand, [B, H, Sk, 4]);

  it('weight rows sum to 1 and output has shape [B, Hq, Sq, Dv]', () => {
    const r = ref.attention(q, k, v, { returnWeights: true });
    assert.deepEqual(r.output.shape, [B, H, Sq, 4]);
    for (let row = 0; row < B * H * Sq; row++) {
      let sum = 0;
      for (let j = 0; j < Sk; j++) sum += r.weights!.data[row * Sk + j];
      assert.ok(Math.abs(sum - 1) < 1e-6, `row ${row} sums to ${sum}`);
    }
  });

  it('permuting keys and values together leaves the output unchanged', () => {
    const perm = [3, 0, 6, 1, 5, 2, 4];
    const permute = (x: Tensor): Tensor => {
      const [b0, h0, s0, d0] = x.shape;
      const out = new Float32Array(x.data.length);
      for (let bh = 0; bh < b0 * h0; bh++)
        for (let j = 0; j < s0; j++) out.set(x.data.subarray((bh * s0 + perm[j]) * d0, (bh * s0 + perm[j] + 1) * d0), (bh * s0 + j) * d0);
      return { data: out, shape: x.shape };
    };
    assertClose(ref.attention(q, permute(k), permute(v)).output.data, ref.attention(q, k, v).output.data, 'permuted', 1e-6, 1e-6);
  });

  it('causal equals the explicit bottom-right triangular mask (Sq != Sk)', () => {
    const tri = new Uint8Array(Sq * Sk);
    for (let i = 0; i < Sq; i++) for (let j = 0; j < Sk; j++) tri[i * Sk + j] = j <= i + Sk - Sq ? 1 : 0;
    const a = ref.attention(q, k, v, { causal: true }).output.data;
    const b = ref.attention(q, k, v, { mask: { data: tri, shape: [Sq, Sk] } }).output.data;
    assert.deepEqual([...a], [...b]);
  });

  it('GQA equals repeating the kv heads', () => {
    const qg = randomTensor(rand, [B, 6, Sq, D]);
    const kg = randomTensor(rand, [B, 2, Sk, D]);
    const vg = randomTensor(rand, [B, 2, Sk, D]);
    const repeat = (x: Tensor): Tensor => {
      const out = new Float32Array(x.data.length * 3);
      const per = Sk * D;
      for (let b = 0; b < B; b++) for (let h = 0; h < 6; h++) out.set(x.data.subarray((b * 2 + Math.floor(h / 3)) * per, (b * 2 + Math.floor(h / 3) + 1) * per), (b * 6 + h) * per);
      return { data: out, shape: [B, 6, Sk, D] };
    };
    assert.deepEqual([...ref.attention(qg, kg, vg).output.data], [...ref.attention(qg, repeat(kg), repeat(vg)).output.data]);
  });

  it('bshd equals transposed bhsd', () => {
    const a = ref.attention(q, k, v, { causal: true }).output;
    const b = ref.attention(toBshd(q), toBshd(k), toBshd(v), { causal: true, layout: 'bshd' }).output;
    assert.deepEqual(b.shape, [B, Sq, H, 4]);
    assert.deepEqual([...b.data], [...toBshd(a).data]);
  });

  it('keyLengths equals the boolean padding mask', () => {
    const lengths = [4, 7];
    const mask = new Uint8Array(B * Sk);
    for (let b = 0; b < B; b++) for (let j = 0; j < Sk; j++) mask[b * Sk + j] = j < lengths[b] ? 1 : 0;
    const a = ref.attention(q, k, v, { keyLengths: lengths }).output.data;
    const m = ref.attention(q, k, v, { mask: { data: mask, shape: [B, 1, 1, Sk] } }).output.data;
    assert.deepEqual([...a], [...m]);
  });

  it('a boolean mask equals an additive 0 / -Infinity mask', () => {
    const bool = new Uint8Array(Sq * Sk).map((_, i) => (i % 3 === 0 ? 0 : 1));
    const add = Float32Array.from(bool, (x) => (x ? 0 : -Infinity));
    assert.deepEqual(
      [...ref.attention(q, k, v, { mask: { data: bool, shape: [Sq, Sk] } }).output.data],
      [...ref.attention(q, k, v, { mask: { data: add, shape: [Sq, Sk] } }).output.data],
    );
  });
});

describe('reference: multi-head block', () => {
  const rand = rng(11);
  const [E, Hq, Hkv, S] = [8, 4, 2, 5];
  const Dh = E / Hq;
  const w = (rows: number) => randomTensor(rand, [rows, E]).data;
  const params = { embedDim: E, numHeads: Hq, numKvHeads: Hkv, wq: w(E), wk: w(Hkv * Dh), wv: w(Hkv * Dh), wo: w(E), bq: w(1), bk: w(1).subarray(0, Hkv * Dh), bv: w(1).subarray(0, Hkv * Dh), bo: w(1) };
  const x = randomTensor(rand, [2, S, E]);

  it('equals its manual composition: projections, per-head attention, concat, output projection', () => {
    const linear = (inp: Tensor, wt: Float32Array, rows: number, bias: Float32Array) => ref.matmul(inp, { data: wt, shape: [rows, E] }, { transposeB: true, bias });
    const toHeads = (y: Tensor, H: number): Tensor => {
      const out = new Float32Array(y.data.length);
      for (let b = 0; b < 2; b++) for (let s = 0; s < S; s++) for (let h = 0; h < H; h++) for (let d = 0; d < Dh; d++) out[((b * H + h) * S + s) * Dh + d] = y.data[(b * S + s) * H * Dh + h * Dh + d];
      return { data: out, shape: [2, H, S, Dh] };
    };
    const q = toHeads(linear(x, params.wq, E, params.bq), Hq);
    const k = toHeads(linear(x, params.wk, Hkv * Dh, params.bk), Hkv);
    const v = toHeads(linear(x, params.wv, Hkv * Dh, params.bv), Hkv);
    const ctx = ref.attention(q, k, v, { causal: true }).output;
    const concat = new Float32Array(2 * S * E);
    for (let b = 0; b < 2; b++) for (let h = 0; h < Hq; h++) for (let s = 0; s < S; s++) for (let d = 0; d < Dh; d++) concat[(b * S + s) * E + h * Dh + d] = ctx.data[((b * Hq + h) * S + s) * Dh + d];
    const expected = linear({ data: concat, shape: [2, S, E] }, params.wo, E, params.bo);
    assertClose(ref.multiHeadAttention(x, params, { causal: true }).data, expected.data, 'mha', 1e-6, 1e-6);
  });

  it('KV-cache decoding token by token equals one causal pass', () => {
    const full = ref.multiHeadAttention(x, params, { causal: true });
    const cache = ref.createReferenceCache(params, 2, S + 2);
    const step = new Float32Array(2 * S * E);
    // a 2-token prompt, then one token at a time
    const slice = (from: number, to: number): Tensor => {
      const out = new Float32Array(2 * (to - from) * E);
      for (let b = 0; b < 2; b++) out.set(x.data.subarray((b * S + from) * E, (b * S + to) * E), b * (to - from) * E);
      return { data: out, shape: [2, to - from, E] };
    };
    const put = (y: Tensor, from: number, to: number) => {
      for (let b = 0; b < 2; b++) step.set(y.data.subarray(b * (to - from) * E, (b + 1) * (to - from) * E), (b * S + from) * E);
    };
    put(ref.multiHeadAttention(slice(0, 2), params, { causal: true, cache }), 0, 2);
    for (let s = 2; s < S; s++) put(ref.multiHeadAttention(slice(s, s + 1), params, { causal: true, cache }), s, s + 1);
    assert.equal(cache.length, S);
    assertClose(step, full.data, 'decode', 1e-6, 1e-6);
  });
});

/**
 * Long rows keep float32 accuracy: attention over 131075 keys (and softmax over a million
 * columns) on every backend variant, against float64.
 *
 * The kernels used to fold each term into one running sum per output element, so every term of
 * a long row was rounded at the size of the whole sum: the relative error grew with the row.
 * Now the weighted values and the weights' sum are formed in pieces of at most 256 keys, each
 * summed from zero, and the pieces' sums are added, so the error grows with piece + Sk / piece
 * terms instead of Sk. Every path is reached: decoding with and without the key split (the
 * split is off with weights and with 64 or more (batch, kv head) tasks), several rows sharing the
 * keys, the blocked path with and without weights, and its rows beside a NaN value they do not
 * see (taken out of the micro-kernel and summed apart).
 *
 * Tolerance 6e-6 relative: values in [0, 1) and random scores make the roundings a random walk.
 * With pieces the worst element of these inputs measured 1e-7 to 1.5e-6 decoding and 1.3e-6 to
 * 3e-6 on the blocked paths (a dot product of D = 8 and the exponential add ~1e-7 each); one
 * running sum measured 1.4e-5 to 2.5e-5 on the same inputs, and softmax over 1e6 columns 4.6e-5
 * (now 7e-7).
 */
import assert from 'node:assert/strict';
import { tensor } from '../src/tensor.js';
import { facadeOf, variants } from './helpers/backends.js';
import { rng } from './helpers/random.js';

const SK = 131075; // 2^17 + 3: not a multiple of any block or vector width
const TOLERANCE = 6e-6;

/** out[i][c] in float64: rows of q against the first visible(i) keys ([SK, D] k and v) */
function expected(q: Float32Array, k: Float32Array, v: Float32Array, D: number, rows: number, visible: (i: number) => number): Float64Array {
  const out = new Float64Array(rows * D);
  const scale = 1 / Math.sqrt(D);
  const s = new Float64Array(SK);
  for (let i = 0; i < rows; i++) {
    const n = visible(i);
    let max = -Infinity;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
      s[j] = dot * scale;
      if (s[j] > max) max = s[j];
    }
    let l = 0;
    for (let j = 0; j < n; j++) l += (s[j] = Math.exp(s[j] - max));
    for (let c = 0; c < D; c++) {
      let o = 0;
      for (let j = 0; j < n; j++) o += s[j] * v[j * D + c];
      out[i * D + c] = o / l;
    }
  }
  return out;
}

function worstRelative(got: ArrayLike<number>, want: ArrayLike<number>, count = want.length): number {
  let worst = 0;
  for (let i = 0; i < count; i++) {
    const e = Math.abs(got[i] - want[i]) / Math.abs(want[i]);
    worst = e > worst || Number.isNaN(e) ? e : worst;
  }
  return worst;
}

describe(`long rows: attention over ${SK} keys and softmax over 1e6 columns stay within ${TOLERANCE} relative of float64`, function () {
  this.timeout(120000);
  const rand = rng(20261130);
  const D = 8;
  const k = new Float32Array(SK * D).map(() => rand() * 2 - 1);
  const v = new Float32Array(SK * D).map(() => rand()); // positive: outputs far from zero
  const q = new Float32Array(20 * D).map(() => rand() * 2 - 1);
  // Hq 4 / Hkv 1, one query: four rows that share the keys
  const grouped = q.subarray(0, 4 * D);
  // 20 queries, causal against the cache: row i sees SK - 19 + i keys (the blocked path)
  const causalWant = expected(q, k, v, D, 20, (i) => SK - 19 + i);
  const groupedWant = expected(grouped, k, v, D, 4, () => SK);
  const oneWant = expected(q, k, v, D, 1, () => SK);
  const K = tensor(k, [1, 1, SK, D]);
  const V = tensor(v, [1, 1, SK, D]);
  // the same keys with the last value NaN: only the causal block's last row sees it
  const vNaN = v.slice();
  vNaN.fill(NaN, (SK - 1) * D, SK * D);
  // 64 kv heads of one value column: 64 (batch, kv head) tasks, so decoding without the key split
  const manyQ = new Float32Array(64).map(() => rand() * 8 - 4);
  const manyK = new Float32Array(64 * SK).map(() => rand() * 2 - 1);
  const manyV = new Float32Array(64 * SK).map(() => rand());
  const manyWant = Float64Array.from({ length: 64 }, (_, h) =>
    expected(manyQ.subarray(h, h + 1), manyK.subarray(h * SK, (h + 1) * SK), manyV.subarray(h * SK, (h + 1) * SK), 1, 1, () => SK)[0],
  );
  // softmax over a million columns
  const COLS = 1_000_000;
  const x = new Float32Array(COLS).map(() => rand() * 2 - 1);
  let xmax = -Infinity;
  for (const e of x) xmax = Math.max(xmax, e);
  let xsum = 0;
  for (const e of x) xsum += Math.exp(e - xmax);
  const softmaxWant = Float64Array.from(x, (e) => Math.exp(e - xmax) / xsum);

  for (const variant of variants()) {
    it(variant.label, () => {
      const attn = facadeOf(variant);
      try {
        const errors: Record<string, number> = {};
        for (const returnWeights of [false, true]) {
          const tag = returnWeights ? ' with weights' : '';
          errors[`one${tag}`] = worstRelative(attn.attention(tensor(q.slice(0, D), [1, 1, 1, D]), K, V, { returnWeights }).output.data, oneWant);
          errors[`grouped${tag}`] = worstRelative(attn.attention(tensor(grouped.slice(), [1, 4, 1, D]), K, V, { returnWeights }).output.data, groupedWant);
          errors[`blocked${tag}`] = worstRelative(attn.attention(tensor(q.slice(), [1, 1, 20, D]), K, V, { causal: true, returnWeights }).output.data, causalWant);
        }
        const besideNaN = attn.attention(tensor(q.slice(), [1, 1, 20, D]), K, tensor(vNaN, [1, 1, SK, D]), { causal: true }).output.data;
        errors['blocked beside a NaN value'] = worstRelative(besideNaN, causalWant, 19 * D);
        assert.ok(besideNaN.subarray(19 * D).every(Number.isNaN), 'the row that sees the NaN value is NaN');
        const many = attn.attention(tensor(manyQ.slice(), [1, 64, 1, 1]), tensor(manyK, [1, 64, SK, 1]), tensor(manyV, [1, 64, SK, 1])).output.data;
        errors['64 kv heads'] = worstRelative(many, manyWant);
        errors.softmax = worstRelative(attn.softmax(tensor(x, [1, COLS])).data, softmaxWant);
        for (const [path, err] of Object.entries(errors)) {
          assert.ok(err <= TOLERANCE, `${variant.label} ${path}: worst relative error ${err.toExponential(2)} (all: ${JSON.stringify(errors)})`);
        }
      } finally {
        attn.close();
      }
    });
  }
});

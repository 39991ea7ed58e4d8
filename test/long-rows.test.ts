/**
 * Long rows keep float32 accuracy: O = P·V summed over 131075 keys, on every backend variant.
 *
 * The kernels used to fold each product into one running sum per output element, so every
 * product of a long row was rounded at the size of the whole sum: the relative error grew with
 * the row (native's blocked path and wasm's decoding and blocked paths). Now each block of keys (native 128, wasm 64 or 256) is summed from zero and
 * the block sums are added, so a product is rounded at its block's size and the row's error
 * grows with block + Sk / block terms instead of Sk.
 *
 * Tolerance 6e-6 relative: values in [0, 1) and random scores make the roundings a random walk.
 * With blocks the worst element of these inputs measured 2e-7 to 7e-7 decoding and 2.1e-6 to
 * 2.7e-6 on the blocked paths (a dot product of D = 8 and the exponential add ~1e-7 each); the
 * single running sum measured 1.4e-5 to 2e-5 on the same inputs.
 */
import assert from 'node:assert/strict';
import { tensor } from '../src/tensor.js';
import { facadeOf, variants } from './helpers/backends.js';
import { rng } from './helpers/random.js';

const SK = 131075; // 2^17 + 3: not a multiple of any block or vector width
const D = 8;

/** out[i][c] in float64 for the float32 inputs given */
function expected(q: Float32Array, k: Float32Array, v: Float32Array, rows: number, visible: (i: number) => number): Float64Array {
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

function worstRelative(got: Float32Array, want: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.abs(want[i]));
  return worst;
}

describe('long rows: P·V over 131075 keys stays within 6e-6 relative of float64', function () {
  this.timeout(120000);
  const rand = rng(20261130);
  const k = new Float32Array(SK * D).map(() => rand() * 2 - 1);
  const v = new Float32Array(SK * D).map(() => rand()); // positive: outputs far from zero
  const q = new Float32Array(20 * D).map(() => rand() * 2 - 1);
  // Hq 4 / Hkv 1, one query: four rows that share the keys (wasm's decodeRows; native's split keys)
  const grouped = q.subarray(0, 4 * D);
  // 20 queries, causal against the cache: each row sees Sk - 19 + i keys (blocked paths)
  const causalWant = expected(q, k, v, 20, (i) => SK - 19 + i);
  const groupedWant = expected(grouped, k, v, 4, () => SK);
  const oneWant = expected(q, k, v, 1, () => SK);
  const K = tensor(k, [1, 1, SK, D]);
  const V = tensor(v, [1, 1, SK, D]);

  for (const variant of variants()) {
    it(variant.label, () => {
      const attn = facadeOf(variant);
      try {
        const one = attn.attention(tensor(q.slice(0, D), [1, 1, 1, D]), K, V).output.data;
        const grp = attn.attention(tensor(grouped.slice(), [1, 4, 1, D]), K, V).output.data;
        const blk = attn.attention(tensor(q.slice(), [1, 1, 20, D]), K, V, { causal: true }).output.data;
        const errors = { one: worstRelative(one, oneWant), grouped: worstRelative(grp, groupedWant), blocked: worstRelative(blk, causalWant) };
        for (const [path, err] of Object.entries(errors)) assert.ok(err <= 6e-6, `${variant.label} ${path}: worst relative error ${err.toExponential(2)} (all: ${JSON.stringify(errors)})`);
      } finally {
        attn.close();
      }
    });
  }
});

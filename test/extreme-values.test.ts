/**
 * Finite values at the edge of float32's range, as real models feed them: Hugging Face masks
 * hidden keys by adding torch.finfo(float32).min (-3.4028e38), not -Infinity. The kernels work
 * in base-2 units (scores times log2 e), where such a value once overflowed to -Infinity: a row
 * hidden by it alone came out as zeros, where the reference (and float32 PyTorch) gives equal
 * weights, its output the mean of V. The same held for softmax() of a row of such values.
 * Every backend must match the reference here, across several key blocks (a first block hidden
 * entirely, later ones not) and on the decoding path with its key split.
 */
import { tensor, type Tensor } from '../src/index.js';
import * as ref from '../src/reference/index.js';
import { assertClose } from './helpers/compare.js';
import { facadeOf, variants } from './helpers/backends.js';
import { seededTensor } from './helpers/random.js';

const MIN = -3.4028234663852886e38; // torch.finfo(torch.float32).min

/** per query row: every key hidden, the first 200 hidden, the last 100, every third, none */
function hfMask(Sq: number, Sk: number): Tensor {
  const m = new Float32Array(Sq * Sk);
  for (let i = 0; i < Sq; i++)
    for (let j = 0; j < Sk; j++) {
      const kind = i % 5;
      const hide = kind === 0 || (kind === 1 && j < 200) || (kind === 2 && j >= Sk - 100) || (kind === 3 && j % 3 === 0);
      m[i * Sk + j] = hide ? MIN : 0;
    }
  return tensor(m, [Sq, Sk]);
}

for (const variant of variants()) {
  describe(`extreme values: ${variant.label}`, () => {
    it('attention with a finfo.min mask matches the reference (flash path, several key blocks)', () => {
      const attn = facadeOf(variant);
      const [B, H, Sq, Sk, D] = [1, 2, 10, 300, 8];
      const q = seededTensor([B, H, Sq, D], 41);
      const k = seededTensor([B, H, Sk, D], 42);
      const v = seededTensor([B, H, Sk, D], 43);
      const mask = hfMask(Sq, Sk);
      for (const causal of [false, true]) {
        const want = ref.attention(q, k, v, { mask, causal, returnWeights: true });
        const got = attn.attention(q, k, v, { mask, causal, returnWeights: true });
        assertClose(got.output.data, want.output.data, `${variant.label} output causal=${causal}`);
        assertClose(got.weights!.data, want.weights!.data, `${variant.label} weights causal=${causal}`);
        assertClose(attn.attention(q, k, v, { mask, causal }).output.data, want.output.data, `${variant.label} flash causal=${causal}`);
      }
    });

    it('attention with a finfo.min mask matches the reference (decoding, keys split in chunks)', () => {
      const attn = facadeOf(variant);
      const [B, H, Sk, D] = [1, 4, 3000, 8];
      const k = seededTensor([B, H, Sk, D], 45);
      const v = seededTensor([B, H, Sk, D], 46);
      for (let kind = 0; kind < 5; kind++) {
        const q = seededTensor([B, H, 1, D], 47 + kind);
        const row = hfMask(5, Sk).data.subarray(kind * Sk, (kind + 1) * Sk);
        const mask = tensor(Float32Array.from(row), [1, Sk]);
        assertClose(attn.attention(q, k, v, { mask }).output.data, ref.attention(q, k, v, { mask }).output.data, `${variant.label} decode mask kind ${kind}`);
      }
    });

    it('q·k past float32 range with scale·q·k moderate: every path scales Q first (decoding multiplied the sums and got NaN)', () => {
      const attn = facadeOf(variant);
      const [Sk, D, scale] = [300, 2, 1e-38];
      const k = seededTensor([1, 1, Sk, D], 48);
      k.data.forEach((x, i) => (k.data[i] = x * 1e20));
      const v = seededTensor([1, 1, Sk, 4], 49);
      for (const Sq of [1, 3, 4, 7, 8, 16]) {
        const q = tensor(new Float32Array(Sq * D).fill(1e20), [1, 1, Sq, D]); // scores up to ~1e2
        assertClose(attn.attention(q, k, v, { scale }).output.data, ref.attention(q, k, v, { scale }).output.data, `${variant.label} Sq ${Sq}`);
      }
    });

    it('softmax of rows near ±FLT_MAX matches the reference, for any scale', () => {
      const attn = facadeOf(variant);
      const rows = [
        [MIN, MIN, MIN, MIN, MIN],
        [3e38, 3e38, 1, -1, 0],
        [-3e38, 3e38, 0, 2e38, -2e38],
        [MIN, 1, 2, MIN, 3],
        [-Infinity, MIN, MIN, -Infinity, MIN],
      ];
      const x = tensor(Float32Array.from(rows.flat()), [rows.length, 5]);
      for (const scale of [1, -1, 0.5, 2, 0]) {
        assertClose(attn.softmax(x, { scale }).data, ref.softmax(x, { scale }).data, `${variant.label} softmax scale ${scale}`);
      }
    });
  });
}

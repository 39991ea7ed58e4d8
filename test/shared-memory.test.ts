/**
 * Views of a SharedArrayBuffer (as threads that share their tensors hold them) are Float32Arrays
 * like any other: every backend takes them as inputs, masks, weights and `out`, sync and async,
 * and gives the same bits as for plain arrays holding the same values. (The native binding once
 * refused them with a bare "Invalid argument": it reached the data through the view's
 * ArrayBuffer, which a SharedArrayBuffer is not.)
 */
import assert from 'node:assert/strict';
import { tensor, type Tensor } from '../src/index.js';
import { facadeOf, variants } from './helpers/backends.js';
import { sameBits } from './helpers/compare.js';
import { seededTensor } from './helpers/random.js';


/** a copy of `a` in a SharedArrayBuffer, one element in (so the view has a byte offset) */
function shared<A extends Float32Array | Uint8Array>(a: A): A {
  const Ctor = a.constructor as { new (b: SharedArrayBuffer, offset: number, length: number): A; BYTES_PER_ELEMENT: number };
  const bytes = Ctor.BYTES_PER_ELEMENT;
  const view = new Ctor(new SharedArrayBuffer((a.length + 1) * bytes), bytes, a.length);
  view.set(a);
  return view;
}

const plainOf = (t: Tensor): Tensor => tensor(Float32Array.from(t.data as Float32Array), t.shape);
const sharedOf = (t: Tensor): Tensor => tensor(shared(t.data as Float32Array), t.shape);

for (const variant of variants()) {
  describe(`shared memory: ${variant.label}`, () => {
    const [B, H, Hkv, Sq, Sk, D] = [2, 4, 2, 7, 11, 8];
    const q = seededTensor([B, H, Sq, D], 1);
    const k = seededTensor([B, Hkv, Sk, D], 2);
    const v = seededTensor([B, Hkv, Sk, D], 3);
    const maskBytes = Uint8Array.from({ length: Sq * Sk }, (_, i) => (i % 3 === 0 ? 0 : 1));

    it('attention, sync and async, with a boolean mask and keyLengths', async () => {
      const attn = facadeOf(variant);
      const want = attn.attention(plainOf(q), plainOf(k), plainOf(v), { mask: tensor(Uint8Array.from(maskBytes), [Sq, Sk]), keyLengths: Int32Array.from([11, 6]) }).output;
      const mask = tensor(shared(maskBytes), [Sq, Sk]);
      const out = shared(new Float32Array(want.data.length));
      attn.attention(sharedOf(q), sharedOf(k), sharedOf(v), { mask, keyLengths: Int32Array.from([11, 6]), out });
      assert.ok(sameBits(out, want.data as Float32Array), 'sync');
      const outAsync = shared(new Float32Array(want.data.length));
      await attn.attentionAsync(sharedOf(q), sharedOf(k), sharedOf(v), { mask, keyLengths: Int32Array.from([11, 6]), out: outAsync });
      assert.ok(sameBits(outAsync, want.data as Float32Array), 'async');
    });

    it('matmul and softmax', () => {
      const attn = facadeOf(variant);
      const a = seededTensor([3, 5, 9], 4);
      const b = seededTensor([3, 9, 6], 5);
      const want = attn.matmul(plainOf(a), plainOf(b)).data as Float32Array;
      const out = shared(new Float32Array(want.length));
      attn.matmul(sharedOf(a), sharedOf(b), { out });
      assert.ok(sameBits(out, want), 'matmul');
      const wantS = attn.softmax(plainOf(a), { scale: 0.5 }).data as Float32Array;
      const outS = shared(new Float32Array(wantS.length));
      attn.softmax(sharedOf(a), { scale: 0.5, out: outS });
      assert.ok(sameBits(outS, wantS), 'softmax');
    });

    it('multi-head weights, input and output, sync and async', async () => {
      const attn = facadeOf(variant);
      const E = 16;
      const w = [6, 7, 8, 9].map((s) => seededTensor([E, E], s).data as Float32Array);
      const bias = seededTensor([E], 10).data as Float32Array;
      const x = seededTensor([2, 5, E], 11);
      const plain = attn.multiHeadAttention({ embedDim: E, numHeads: 4, wq: w[0], wk: w[1], wv: w[2], wo: w[3], bq: bias });
      const want = plain.forward(plainOf(x), { causal: true }).data as Float32Array;
      plain.dispose();
      const mha = attn.multiHeadAttention({ embedDim: E, numHeads: 4, wq: shared(w[0]), wk: shared(w[1]), wv: shared(w[2]), wo: shared(w[3]), bq: shared(bias) });
      const out = shared(new Float32Array(want.length));
      mha.forward(sharedOf(x), { causal: true, out });
      assert.ok(sameBits(out, want), 'forward');
      const outAsync = shared(new Float32Array(want.length));
      await mha.forwardAsync(sharedOf(x), { causal: true, out: outAsync });
      assert.ok(sameBits(outAsync, want), 'forwardAsync');
      mha.dispose();
    });
  });
}

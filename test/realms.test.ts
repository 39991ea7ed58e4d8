/**
 * Typed arrays made in another realm (a `vm` context here; a test runner's sandbox or an iframe
 * in practice) are accepted on every backend and mean what they mean in this one: the same bits
 * as same-valued arrays of this realm, a boolean mask read as boolean, not additive. Objects that
 * only claim to be typed arrays are still refused. (The checks were `instanceof`, false for
 * another realm's Float32Array.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { wasmPath } from '../src/backends/wasm.js';
import { load, loadSync, tensor, type Tensor } from '../src/index.js';
import { facadeOf, variants } from './helpers/backends.js';
import { sameBits } from './helpers/compare.js';
import { seededTensor } from './helpers/random.js';

const realm = vm.createContext({});
const Foreign = {
  Float32Array: vm.runInContext('Float32Array', realm) as typeof Float32Array,
  Uint8Array: vm.runInContext('Uint8Array', realm) as typeof Uint8Array,
  Int32Array: vm.runInContext('Int32Array', realm) as typeof Int32Array,
  Float64Array: vm.runInContext('Float64Array', realm) as typeof Float64Array,
};
const foreign = (a: Float32Array) => Foreign.Float32Array.from(a);
const foreignTensor = (t: Tensor): Tensor => tensor(foreign(t.data as Float32Array), t.shape);

describe('realms: the vm context really is another realm', () => {
  it('its arrays fail instanceof here', () => {
    assert.equal(new Foreign.Float32Array(1) instanceof Float32Array, false);
  });
});

describe('realms: load({ wasm }) takes a module source from another realm', () => {
  const bytes = readFileSync(wasmPath('simd128'));
  const foreignBuffer = (): ArrayBuffer => {
    const buf = vm.runInContext(`new ArrayBuffer(${bytes.length})`, realm) as ArrayBuffer;
    new Uint8Array(buf).set(bytes);
    return buf;
  };
  const ForeignModule = vm.runInContext('WebAssembly.Module', realm) as typeof WebAssembly.Module;
  const [B, H, S, D] = [1, 2, 7, 8];
  const q = seededTensor([B, H, S, D], 32);
  const expected = () => loadSync({ backend: 'js' }).attention(q, q, q).output.data as Float32Array;

  it('an ArrayBuffer and a compiled WebAssembly.Module, as the source or as wasm.source', async () => {
    assert.equal(foreignBuffer() instanceof ArrayBuffer, false);
    const module = new ForeignModule(new Uint8Array(bytes));
    assert.equal(module instanceof WebAssembly.Module, false);
    const want = expected();
    for (const source of [foreignBuffer(), module]) {
      for (const wasm of [source, { source }]) {
        {
          const attn = await load({ backend: 'wasm', wasm });
          assert.equal(attn.info().backend, 'wasm');
          assert.equal(attn.info().details?.module, 'caller-provided');
          const got = attn.attention(q, q, q).output.data as Float32Array;
          // the same kernel as the package's own simd128 build; the js reference within float32 rounding
          for (let i = 0; i < want.length; ++i) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `element ${i}: ${got[i]} against ${want[i]}`);
        }
      }
    }
  });

  it('still refuses what is neither bytes nor a module', async () => {
    const fake = { byteLength: bytes.length, [Symbol.toStringTag]: 'ArrayBuffer' };
    await assert.rejects(load({ backend: 'wasm', wasm: fake as never }), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_OPTION' || e.code === 'ERR_ATTN_TYPE');
  });
});

for (const variant of variants()) {
  describe(`realms: ${variant.label}`, () => {
    const [B, H, Sq, Sk, D] = [2, 3, 5, 9, 8];
    const q = seededTensor([B, H, Sq, D], 21);
    const k = seededTensor([B, H, Sk, D], 22);
    const v = seededTensor([B, H, Sk, D], 23);
    const hide = Uint8Array.from({ length: Sq * Sk }, (_, i) => (i % 4 === 1 ? 0 : 1));

    it('attention: inputs, boolean mask, keyLengths and out from another realm', async () => {
      const attn = facadeOf(variant);
      const opts = { mask: tensor(hide, [Sq, Sk]), keyLengths: Int32Array.from([9, 4]) };
      const want = attn.attention(q, k, v, opts).output.data as Float32Array;
      const fopts = { mask: tensor(Foreign.Uint8Array.from(hide), [Sq, Sk]), keyLengths: Foreign.Int32Array.from([9, 4]) };
      const out = new Foreign.Float32Array(want.length);
      attn.attention(foreignTensor(q), foreignTensor(k), foreignTensor(v), { ...fopts, out });
      assert.ok(sameBits(out, want), 'sync');
      const outAsync = new Foreign.Float32Array(want.length);
      await attn.attentionAsync(foreignTensor(q), foreignTensor(k), foreignTensor(v), { ...fopts, out: outAsync });
      assert.ok(sameBits(outAsync, want), 'async');
    });

    it('matmul, softmax and multi-head weights from another realm', () => {
      const attn = facadeOf(variant);
      const a = seededTensor([4, 6], 24);
      const b = seededTensor([6, 5], 25);
      assert.ok(sameBits(attn.matmul(foreignTensor(a), foreignTensor(b)).data as Float32Array, attn.matmul(a, b).data as Float32Array));
      assert.ok(sameBits(attn.softmax(foreignTensor(a)).data as Float32Array, attn.softmax(a).data as Float32Array));
      const E = 8;
      const w = [26, 27, 28, 29].map((s) => seededTensor([E, E], s).data as Float32Array);
      const x = seededTensor([1, 3, E], 30);
      const own = attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w[0], wk: w[1], wv: w[2], wo: w[3] });
      const other = attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: foreign(w[0]), wk: foreign(w[1]), wv: foreign(w[2]), wo: foreign(w[3]) });
      assert.ok(sameBits(other.forward(foreignTensor(x)).data as Float32Array, own.forward(x).data as Float32Array));
      own.dispose();
      other.dispose();
    });

    it('still refuses look-alikes and other element types', () => {
      const attn = facadeOf(variant);
      const fake = { length: 16, [Symbol.toStringTag]: 'Float32Array' };
      const refused = (fn: () => unknown) =>
        assert.throws(fn, (e: Error & { code?: string }) => e instanceof TypeError && e.code === 'ERR_ATTN_TYPE');
      refused(() => tensor(fake as never, [16]));
      refused(() => attn.attention({ data: fake, shape: [1, 1, 2, 8] } as never, q, q));
      refused(() => attn.attention({ data: new Foreign.Float64Array(16), shape: [1, 1, 2, 8] } as never, q, q));
      refused(() => attn.softmax(seededTensor([2, 8], 31), { out: new Foreign.Float64Array(16) as never }));
    });
  });
}

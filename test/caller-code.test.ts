/**
 * Validation runs the caller's code: option getters, a tensor's `data` and `shape` getters, a
 * typed-array subclass's accessors and methods. None of it may make the library use something
 * other than what it checked: each case here is refused with a clear error, or computes what it
 * checked. Every backend variant runs every case. (Before the checks these tests need, the wasm
 * backend wrote past its temporary blocks in these cases; what is asserted here is the refusal
 * that now comes first, not the memory: a block allocated before a call lies below the call's
 * own, out of reach of a write past their end.)
 */
import assert from 'node:assert/strict';
import type { Attention } from '../src/facade.js';
import { tensor, type Tensor } from '../src/tensor.js';
import { facadeOf, variants } from './helpers/backends.js';

type Rab = ArrayBuffer & { resize(n: number): void };
const resizable = (bytes: number): Rab => new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Rab)(bytes, { maxByteLength: bytes });

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (e: Error & { code?: string }) => {
    assert.equal(e.code, code, String(e));
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** a tensor whose `data` getter runs `sideEffect` the first time it is read */
function withDataGetter(t: Tensor, sideEffect: () => void): Tensor {
  let done = false;
  return {
    shape: t.shape,
    get data() {
      if (!done) {
        done = true;
        sideEffect();
      }
      return t.data;
    },
  };
}

/** The embedding size of smallBlock(). */
const E = 16;
/** A square weight of the small block: fixed, non-zero values (what they compute is not checked here). */
const weight = () => new Float32Array(E * E).map((_, i) => ((i % 7) - 3) * 0.01);
/** A small multi-head block (embedDim E, 2 heads) for the cache and dispose cases. */
const smallBlock = (attn: Attention) => attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: weight(), wk: weight(), wv: weight(), wo: weight() });

for (const variant of variants()) {
  describe(`caller code during validation: ${variant.label}`, () => {
    let attn: Attention;
    before(() => {
      attn = facadeOf(variant);
    });

    it('an option getter that shrinks out: the size check sees what the kernel would', () => {
      const rab = resizable(4 * 64 * 64);
      const out = new Float32Array(rab);
      const x = tensor(new Float32Array(64 * 64).fill(1), [64, 64]);
      expectCode(() => attn.softmax(x, { out, get scale() { rab.resize(16); return 1; } }), 'ERR_ATTN_SIZE', /out must have exactly 4096 elements, got 4/);
    });

    it('a tensor getter that shrinks an array checked before it: ERR_ATTN_SIZE naming it', () => {
      const rab = resizable(4 * 2 * 8 * 16);
      const q = tensor(new Float32Array(rab), [1, 2, 8, 16]);
      const kv = tensor(new Float32Array(2 * 8 * 16).fill(0.5), [1, 2, 8, 16]);
      expectCode(() => attn.attention(q, withDataGetter(kv, () => rab.resize(0)), kv), 'ERR_ATTN_SIZE', /q changed from 256 to 0 elements/);
      const a = tensor(new Float32Array(resizable(4 * 6 * 5)), [6, 5]);
      const b = tensor(new Float32Array(5 * 3), [5, 3]);
      expectCode(() => attn.matmul(a, withDataGetter(b, () => (a.data.buffer as Rab).resize(4))), 'ERR_ATTN_SIZE', /a changed from 30 to 0 elements/);
    });

    it("a tensor's data is read once: a getter answering another array later is never asked again", () => {
      let reads = 0;
      const ident = tensor(new Float32Array([1, 0, 0, 1]), [2, 2]);
      const a = { shape: [2, 2], get data() { return reads++ === 0 ? new Float32Array([1, 2, 3, 4]) : new Float32Array(1 << 16); } };
      assert.deepEqual(Array.from(attn.matmul(a, ident).data), [1, 2, 3, 4]);
      assert.equal(reads, 1);
    });

    it('keyLengths changed by an option getter: checked after it, so the value used is the value checked', () => {
      const q = tensor(new Float32Array(2 * 2 * 4 * 8).fill(0.1), [2, 2, 4, 8]);
      const kv = tensor(new Float32Array(2 * 2 * 2048 * 8).fill(0.1), [2, 2, 2048, 8]); // K + V 256 KiB each
      const keyLengths = new Int32Array([2048, 7]);
      const opts = { keyLengths, get out() { keyLengths[0] = 1e6; return undefined; } };
      expectCode(() => attn.attention(q, kv, kv, opts), 'ERR_ATTN_VALUE', /keyLengths\[0\] must be in \[0, 2048\], got 1000000/);
    });

    it('a typed-array subclass whose length and byteLength lie: its real size is the one checked', () => {
      class Lying extends Float32Array {
        override get length() { return 4; }
        override get byteLength() { return 16; }
      }
      const x = new Lying(1 << 14).fill(1);
      expectCode(() => attn.softmax({ data: x, shape: [1, 4] }), 'ERR_ATTN_SIZE', /data has 16384 elements but shape \[1, 4\] needs 4/);
      const out = new Lying(1 << 14);
      expectCode(() => attn.softmax(tensor(new Float32Array(4), [1, 4]), { out }), 'ERR_ATTN_SIZE', /out must have exactly 4 elements, got 16384/);
      // and one whose subarray() returns something else is never asked for one
      class Sly extends Float32Array {
        override subarray(): Float32Array<ArrayBuffer> { return new Float32Array(1 << 16); }
      }
      const a = tensor(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2]);
      const i2 = tensor(new Float32Array([1, 0, 0, 1]), [2, 2]);
      const sly = new Sly(8);
      attn.matmul(a, i2, { out: sly });
      assert.deepEqual(Array.from(sly), [1, 2, 3, 4, 5, 6, 7, 8]);
    });

    it('a cache whose length is shadowed, or a Proxy around one, cannot pass the room check', () => {
      const mha = smallBlock(attn);
      try {
        const cache = mha.createCache({ batch: 1, maxLength: 2 });
        const x = tensor(new Float32Array(2 * E).fill(0.1), [1, 2, E]);
        mha.forward(x, { cache });
        Object.defineProperty(cache, 'length', { value: 0 });
        expectCode(() => mha.forward(x, { cache }), 'ERR_ATTN_SIZE', /cache holds 2 of 2 positions/);
        const proxy = new Proxy(cache, {});
        expectCode(() => mha.forward(x, { cache: proxy }), 'ERR_ATTN_TYPE', /cache must come from this object's createCache\(\)/);
      } finally {
        mha.dispose();
      }
    });

    it('options defined as non-enumerable own properties are read as before', () => {
      const q = tensor(new Float32Array([1, 0, 0, 1]), [1, 1, 2, 2]);
      const out = new Float32Array(4);
      const opts = {};
      Object.defineProperty(opts, 'causal', { value: true });
      Object.defineProperty(opts, 'out', { get: () => out });
      const r = attn.attention(q, q, q, opts);
      assert.equal(r.output.data, out);
      assert.deepEqual(Array.from(out.subarray(0, 2)), [1, 0]); // row 0 sees key 0 only
    });

    it("an out whose own set() calls forward on the same cache: never run (results are written through the built-in set)", () => {
      const mha = smallBlock(attn);
      try {
        const cache = mha.createCache({ batch: 1, maxLength: 4 });
        const tok = (v: number) => tensor(new Float32Array(E).fill(v), [1, 1, E]);
        mha.forward(tok(0.1), { cache });
        let calls = 0;
        class Out extends Float32Array {
          override set(src: ArrayLike<number>, offset?: number): void {
            calls++;
            mha.forward(tok(0.2), { cache });
            super.set(src, offset);
          }
        }
        mha.forward(tok(0.3), { cache, out: new Out(E) });
        assert.equal(calls, 0);
        assert.equal(cache.length, 2);
      } finally {
        mha.dispose();
      }
    });

    it('close() or dispose() from a getter: the call refuses instead of computing on what was closed', () => {
      const own = facadeOf(variant);
      const q = tensor(new Float32Array(8).fill(0.1), [1, 1, 2, 4]);
      expectCode(() => own.attention(q, q, q, { get causal() { own.close(); return false; } }), 'ERR_ATTN_DISPOSED');
      const other = facadeOf(variant);
      expectCode(() => other.multiHeadAttention({ embedDim: E, numHeads: 2, wq: weight(), wk: weight(), wv: weight(), get wo() { other.close(); return weight(); } }), 'ERR_ATTN_DISPOSED');
      const mha = smallBlock(attn);
      const x = tensor(new Float32Array(E), [1, 1, E]);
      expectCode(() => mha.forward(x, { get causal() { mha.dispose(); return false; } }), 'ERR_ATTN_DISPOSED');
    });

    it('KvCache is made by createCache() only; a shape that shortens itself is read once', () => {
      const mha = smallBlock(attn);
      const Ctor = mha.createCache({ batch: 1, maxLength: 2 }).constructor as new (...a: unknown[]) => unknown;
      expectCode(() => new Ctor(mha, 1, 1.5, E), 'ERR_ATTN_TYPE', /createCache/);
      mha.dispose();
      const shape = [2, 3];
      Object.defineProperty(shape, 0, { get() { shape.length = 1; return 2; } });
      expectCode(() => attn.alloc(shape), 'ERR_ATTN_TYPE', /shape\[1\] must be an integer, got undefined/);
    });

    it('a forward nested in a getter cannot overfill the cache checked for room', () => {
      const mha = smallBlock(attn);
      try {
        const cache = mha.createCache({ batch: 1, maxLength: 4 });
        const x = (s: number) => tensor(new Float32Array(s * E).fill(0.1), [1, s, E]);
        mha.forward(x(3), { cache });
        // an option getter runs before the room is checked: the nested call takes the last position
        expectCode(() => mha.forward(x(1), { cache, get causal() { mha.forward(x(1), { cache }); return false; } }), 'ERR_ATTN_SIZE', /cache holds 4 of 4 positions/);
        cache.reset();
        mha.forward(x(3), { cache });
        // a tensor getter runs after it: the call sees that the cache moved and refuses
        const mask = withDataGetter(tensor(new Float32Array(4), [1, 4]), () => mha.forward(x(1), { cache }));
        expectCode(() => mha.forward(x(1), { cache, mask }), 'ERR_ATTN_VALUE', /cache was used by another call while this one was being checked \(it held 3 positions, now 4\)/);
        assert.equal(cache.length, 4);
      } finally {
        mha.dispose();
      }
    });
  });
}

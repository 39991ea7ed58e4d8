/**
 * Every bad input gets the documented error class and a stable code, on every backend, and
 * never crashes or writes anything. The native binding's own re-checks are tested in
 * native.test.ts by calling it directly, past the shared validation.
 */
import assert from 'node:assert/strict';
import { tensor } from '../src/index.js';
import type { Attention } from '../src/facade.js';
import * as ref from '../src/reference/index.js';
import { facadeOf, variants } from './helpers/backends.js';
import { withThrowingCodeSetter } from './helpers/code-setter.js';
import { assertClose } from './helpers/compare.js';

type Ctor = typeof TypeError | typeof RangeError | typeof Error;

function expectError(fn: () => unknown, ctor: Ctor, code: string, messagePart?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ctor, `expected ${ctor.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    if (messagePart) assert.match((err as Error).message, messagePart);
    return true;
  });
}

const f = (shape: number[], fill = 0.5) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape);

describe('errors: tensor()', () => {
  it('refuses bad data and shapes', () => {
    expectError(() => tensor('x' as never, [1]), TypeError, 'ERR_ATTN_TYPE', /data must be/);
    expectError(() => tensor(new Float32Array(3), [2, 2]), RangeError, 'ERR_ATTN_SIZE', /3 elements but shape \[2, 2\] needs 4/);
    expectError(() => tensor(new Float32Array(0), [0]), RangeError, 'ERR_ATTN_SHAPE', /must be >= 1/);
    expectError(() => tensor(new Float32Array(2), [2.5]), TypeError, 'ERR_ATTN_TYPE', /integer/);
    expectError(() => tensor(new Float32Array(2), 2 as never), TypeError, 'ERR_ATTN_TYPE', /shape must be an array/);
    // a hole in a shape is no dimension (it once slipped past the check and came out as "needs NaN")
    expectError(() => tensor(new Float32Array(2), [2, , 1] as never), TypeError, 'ERR_ATTN_TYPE', /shape\[1\] must be an integer, got undefined/);
  });

  it('refuses element counts that overflow, before allocating', () => {
    expectError(() => tensor(new Float32Array(1), [65536, 65536, 2]), RangeError, 'ERR_ATTN_SIZE', /more than/);
  });
});

describe('errors: the code property', () => {
  it('is defined without calling a setter that script put on Error.prototype', () =>
    withThrowingCodeSetter(() => {
      expectError(() => tensor('x' as never, [1]), TypeError, 'ERR_ATTN_TYPE', /data must be/);
      expectError(() => tensor(new Float32Array(3), [2, 2]), RangeError, 'ERR_ATTN_SIZE');
    }));
});

describe('errors: tensor() from a number[]', () => {
  it('refuses entries that are not numbers (Float32Array.from would make null 0, true 1 and a string or a hole NaN)', () => {
    expectError(() => tensor([1, 'x'] as never, [2]), TypeError, 'ERR_ATTN_TYPE', /data\[1\] must be a number, got "x"$/);
    expectError(() => tensor([1, null] as never, [2]), TypeError, 'ERR_ATTN_TYPE', /data\[1\] must be a number, got null$/);
    expectError(() => tensor([true, 1] as never, [2]), TypeError, 'ERR_ATTN_TYPE', /data\[0\] must be a number, got true$/);
    expectError(() => tensor(new Array(2) as never, [2]), TypeError, 'ERR_ATTN_TYPE', /data\[0\] must be a number, got undefined$/);
    expectError(() => tensor([1, 2n] as never, [2]), TypeError, 'ERR_ATTN_TYPE', /got 2n$/);
    // NaN and the infinities are numbers: data, kept as they are
    assert.deepEqual(Array.from(tensor([NaN, -Infinity, 0.1], [3]).data), [NaN, -Infinity, Math.fround(0.1)]);
  });
});

for (const variant of variants()) {
  describe(`errors: ${variant.label}`, () => {
    let attn: Attention;
    before(() => {
      attn = facadeOf(variant);
    });
    const q = f([1, 2, 3, 4]);
    const k = f([1, 2, 5, 4]);
    const v = f([1, 2, 5, 6]);

    it('attention: wrong types', () => {
      expectError(() => attn.attention(null as never, k, v), TypeError, 'ERR_ATTN_TYPE', /attention: q: expected a tensor/);
      expectError(() => attn.attention({ data: new Float64Array(24), shape: [1, 2, 3, 4] } as never, k, v), TypeError, 'ERR_ATTN_TYPE', /q.data: expected a Float32Array, got Float64Array/);
      expectError(() => attn.attention(q, k, v, { causal: 1 as never }), TypeError, 'ERR_ATTN_TYPE', /causal must be a boolean/);
      expectError(() => attn.attention(q, k, v, { scale: '1' as never }), TypeError, 'ERR_ATTN_TYPE', /scale must be a number/);
      expectError(() => attn.attention(q, k, v, { casual: true } as never), TypeError, 'ERR_ATTN_OPTION', /unknown option "casual"/);
      // objects that are not plain have no own keys: read as options they would set nothing
      expectError(() => attn.attention(q, k, v, Promise.resolve({ causal: true }) as never), TypeError, 'ERR_ATTN_OPTION', /plain object, got Promise \(a promise: is an `await` missing\?\)/);
      expectError(() => attn.attention(q, k, v, new Map([['causal', true]]) as never), TypeError, 'ERR_ATTN_OPTION', /plain object, got Map$/);
      expectError(() => attn.softmax(q, new Date() as never), TypeError, 'ERR_ATTN_OPTION', /plain object, got Date/);
      attn.attention(q, k, v, Object.assign(Object.create(null), { causal: true }));  // a null-prototype object is plain
      expectError(() => attn.attention(q, k, v, { out: [] as never }), TypeError, 'ERR_ATTN_TYPE', /out must be a Float32Array/);
      expectError(() => attn.attention(q, k, v, { keyLengths: new Float32Array(1) as never }), TypeError, 'ERR_ATTN_TYPE', /keyLengths/);
      expectError(() => attn.attention(q, k, v, { mask: { data: new Int8Array(15), shape: [3, 5] } as never }), TypeError, 'ERR_ATTN_TYPE', /Uint8Array/);
    });

    it('attention: wrong shapes and values', () => {
      expectError(() => attn.attention(f([2, 3, 4]), k, v), RangeError, 'ERR_ATTN_SHAPE', /q: expected rank 4/);
      expectError(() => attn.attention(q, f([2, 2, 5, 4]), v), RangeError, 'ERR_ATTN_SHAPE', /same batch size/);
      expectError(() => attn.attention(q, f([1, 2, 5, 3]), v), RangeError, 'ERR_ATTN_SHAPE', /same head dim/);
      expectError(() => attn.attention(q, k, f([1, 2, 4, 6])), RangeError, 'ERR_ATTN_SHAPE', /same sequence length/);
      expectError(() => attn.attention(f([1, 3, 3, 4]), k, v), RangeError, 'ERR_ATTN_SHAPE', /multiple of key\/value heads/);
      expectError(() => attn.attention(q, f([1, 1, 5, 4]), v), RangeError, 'ERR_ATTN_SHAPE', /same number of heads/);
      expectError(() => attn.attention({ data: new Float32Array(5), shape: [1, 2, 3, 4] }, k, v), RangeError, 'ERR_ATTN_SIZE', /5 elements/);
      expectError(() => attn.attention(q, k, v, { layout: 'bsdh' as never }), RangeError, 'ERR_ATTN_VALUE', /layout/);
      // a layout that is no string is a wrong type (it was ERR_ATTN_VALUE, as an unknown name is)
      expectError(() => attn.attention(q, k, v, { layout: 1 as never }), TypeError, 'ERR_ATTN_TYPE', /layout/);
      expectError(() => attn.attention(q, k, v, { layout: null as never }), TypeError, 'ERR_ATTN_TYPE', /layout/);
      expectError(() => attn.attention(q, k, v, { scale: Infinity }), RangeError, 'ERR_ATTN_VALUE', /finite/);
      expectError(() => attn.attention(q, k, v, { mask: f([3, 4]) }), RangeError, 'ERR_ATTN_SHAPE', /does not broadcast/);
      expectError(() => attn.attention(q, k, v, { mask: f([2, 1, 3, 5]) }), RangeError, 'ERR_ATTN_SHAPE', /does not broadcast/);
      expectError(() => attn.attention(q, k, v, { keyLengths: [6] }), RangeError, 'ERR_ATTN_VALUE', /keyLengths\[0\] must be in \[0, 5\]/);
      expectError(() => attn.attention(q, k, v, { keyLengths: [1, 2] }), RangeError, 'ERR_ATTN_SIZE', /1 entries/);
      expectError(() => attn.attention(q, k, v, { out: new Float32Array(5) }), RangeError, 'ERR_ATTN_SIZE', /exactly 36 elements/);
      expectError(() => attn.attention(q, k, v, { out: q.data.subarray(0, 36) as Float32Array }), RangeError, 'ERR_ATTN_SIZE');
      const shared = new Float32Array(100);
      const qs = tensor(shared.subarray(0, 24), [1, 2, 3, 4]);
      expectError(() => attn.attention(qs, k, v, { out: shared.subarray(20, 56) }), RangeError, 'ERR_ATTN_VALUE', /share memory/);
    });

    it('attention: edges found in review (values checked as given, every array out may alias, short messages)', async () => {
      // keyLengths are range-checked before conversion: 2 ** 32 + 1 would wrap to 1 in an Int32Array
      expectError(() => attn.attention(q, k, v, { keyLengths: [2 ** 32 + 1] }), RangeError, 'ERR_ATTN_VALUE', /keyLengths\[0\] must be in \[0, 5\], got 4294967297$/);
      expectError(() => attn.attention(q, k, v, { keyLengths: [-(2 ** 32) + 1] }), RangeError, 'ERR_ATTN_VALUE', /got -4294967295$/);
      expectError(() => attn.attention(q, k, v, { keyLengths: [2 ** 31] }), RangeError, 'ERR_ATTN_VALUE', /got 2147483648$/);
      // a scale finite as a double but not as a float32, which the kernels compute in
      expectError(() => attn.attention(q, k, v, { scale: 1e39 }), RangeError, 'ERR_ATTN_VALUE', /float32/);
      expectError(() => attn.softmax(f([2, 3]), { scale: -1e39 }), RangeError, 'ERR_ATTN_VALUE', /float32/);
      // a scale finite as a float32 whose product with log2(e) is not: the kernels' base-2
      // scores would all be NaN; the largest accepted one still computes
      expectError(() => attn.attention(q, k, v, { scale: 3e38 }), RangeError, 'ERR_ATTN_VALUE', /at most 2\.35865743\d*e\+38 in magnitude.*got 3e\+38$/);
      expectError(() => attn.softmax(f([2, 3]), { scale: -2.3587e38 }), RangeError, 'ERR_ATTN_VALUE', /log2\(e\)/);
      const tiny = tensor(new Float32Array([1e-38, 2e-38, 0, 0]), [2, 2]);
      assertClose(attn.softmax(tiny, { scale: 2.3586574359122396e38 }).data, ref.softmax(tiny, { scale: 2.3586574359122396e38 }).data, 'softmax at the largest scale');
      // keyLengths: a hole is refused like an explicit undefined, and each entry is read once,
      // so the value checked is the value used (a Proxy answering 3, then 1000)
      expectError(() => attn.attention(q, k, v, { keyLengths: new Array(1) as never }), TypeError, 'ERR_ATTN_TYPE', /keyLengths\[0\] is undefined/);
      let reads = 0;
      const shifty = new Proxy([3], { get: (t, key, r) => (key === '0' ? (reads++ === 0 ? 3 : 1000) : Reflect.get(t, key, r)) });
      assertClose(attn.attention(q, k, v, { keyLengths: shifty }).output.data, attn.attention(q, k, v, { keyLengths: [3] }).output.data, 'keyLengths read once');
      assert.equal(reads, 1);
      // out sharing memory with the mask or keyLengths (read while out is written)
      const buf = new ArrayBuffer(4 * 64);
      const additive = { data: new Float32Array(buf, 0, 15), shape: [3, 5] };
      expectError(() => attn.attention(q, k, v, { mask: additive, out: new Float32Array(buf, 4 * 10, 36) }), RangeError, 'ERR_ATTN_VALUE', /share memory/);
      const boolean = { data: new Uint8Array(buf, 0, 15), shape: [3, 5] };
      expectError(() => attn.attention(q, k, v, { mask: boolean, out: new Float32Array(buf, 0, 36) }), RangeError, 'ERR_ATTN_VALUE', /share memory/);
      expectError(() => attn.attention(q, k, v, { keyLengths: new Int32Array(buf, 4 * 40, 1), out: new Float32Array(buf, 4 * 8, 36) }), RangeError, 'ERR_ATTN_VALUE', /share memory/);
      // a plain number[] as data (a common slip) is named in a few items, not printed whole;
      // an array holding itself does not recurse without end
      const big = Array.from({ length: 100000 }, (_, i) => i);
      expectError(() => attn.attention({ data: big, shape: [1, 2, 3, 4] } as never, k, v), TypeError, 'ERR_ATTN_TYPE', /, 7, \.\.\. \(100000 items\)\]$/);
      const loop: unknown[] = [1];
      loop.push(loop);
      expectError(() => attn.attention(q, k, v, { keyLengths: loop as never }), TypeError, 'ERR_ATTN_TYPE', /keyLengths/);
      // an async call's arrays are used after it returns: none may be on a resizable buffer
      const resizable36 = () => new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(4 * 36, { maxByteLength: 4 * 36 });
      const rab = resizable36();
      const rq = tensor(new Float32Array(rab, 0, 24), [1, 2, 3, 4]);
      await assert.rejects(attn.attentionAsync(rq, k, v), (e: Error & { code?: string }) => e instanceof TypeError && e.code === 'ERR_ATTN_TYPE' && /q is on a resizable ArrayBuffer/.test(e.message));
      await assert.rejects(attn.attentionAsync(q, k, v, { out: new Float32Array(rab) }), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_TYPE' && /out is on a resizable/.test(e.message));
      attn.attention(rq, k, v); // a sync call has nothing running when it returns
      // an own `resizable` property does not hide what the buffer is
      const spoofed = resizable36();
      Object.defineProperty(spoofed, 'resizable', { value: false });
      await assert.rejects(attn.attentionAsync(tensor(new Float32Array(spoofed, 0, 24), [1, 2, 3, 4]), k, v), { code: 'ERR_ATTN_TYPE' });
    });

    it('attention: returnWeights refuses an overflowing weights size before allocating', () => {
      const big = { data: new Float32Array(1 * 1 * 50000 * 1), shape: [1, 1, 50000, 1] };
      expectError(() => attn.attention(big, big, big, { returnWeights: true }), RangeError, 'ERR_ATTN_SIZE', /weights/);
    });

    it('attentionAsync rejects with the same errors (no unhandled throw)', async () => {
      await assert.rejects(attn.attentionAsync(q, k, f([1, 2, 4, 6])), (err: Error & { code?: string }) => err instanceof RangeError && err.code === 'ERR_ATTN_SHAPE');
    });

    it('refuses arrays whose buffer was detached (transferred away) before the call', async () => {
      const detached = (n: number) => {
        const a = new Float32Array(n).fill(0.5);
        structuredClone(a.buffer, { transfer: [a.buffer] });
        return a;
      };
      expectError(() => attn.attention({ data: detached(24), shape: [1, 2, 3, 4] }, k, v), RangeError, 'ERR_ATTN_SIZE', /q: data has 0 elements/);
      expectError(() => attn.attention(q, k, v, { out: detached(36) }), RangeError, 'ERR_ATTN_SIZE', /out must have exactly 36 elements, got 0/);
      await assert.rejects(attn.attentionAsync(q, k, v, { out: detached(36) }), (err: Error & { code?: string }) => err instanceof RangeError && err.code === 'ERR_ATTN_SIZE');
      expectError(() => attn.softmax(f([2, 3]), { out: detached(6) }), RangeError, 'ERR_ATTN_SIZE');
    });

    it('an out array transferred away while an async call is pending rejects with ERR_ATTN_SIZE naming it (attentionAsync, forwardAsync)', async () => {
      const isDetached = (err: Error & { code?: string }) => err instanceof RangeError && err.code === 'ERR_ATTN_SIZE' && /out/.test(err.message) && /detached/.test(err.message);
      const out = new Float32Array(36);
      const pending = attn.attentionAsync(q, k, v, { out });
      // the clones own the moved memory: kept referenced until the calls settle, so that what a
      // kernel still writes lands in live memory
      const moved = structuredClone(out.buffer, { transfer: [out.buffer] });
      await assert.rejects(pending, isDetached);
      const E = 8;
      const w = (n: number) => new Float32Array(n).fill(0.1);
      const mha = attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(64), wk: w(64), wv: w(64), wo: w(64) });
      const y = new Float32Array(3 * E);
      const forward = mha.forwardAsync(f([1, 3, E]), { out: y });
      const movedY = structuredClone(y.buffer, { transfer: [y.buffer] });
      await assert.rejects(forward, isDetached);
      assert.ok(moved.byteLength > 0 && movedY.byteLength > 0);
      mha.dispose();
    });

    it('matmul and softmax', () => {
      expectError(() => attn.matmul(f([2, 3]), f([4, 5])), RangeError, 'ERR_ATTN_SHAPE', /inner dims differ/);
      expectError(() => attn.matmul(f([2, 3]), f([5, 4]), { transposeB: true }), RangeError, 'ERR_ATTN_SHAPE', /inner dims differ/);
      expectError(() => attn.matmul(f([2, 2, 3]), f([3, 3, 4])), RangeError, 'ERR_ATTN_SHAPE', /batch dims/);
      expectError(() => attn.matmul(f([3]), f([3, 4])), RangeError, 'ERR_ATTN_SHAPE', /rank 2 to 8/);
      expectError(() => attn.matmul(f([2, 3]), f([3, 4]), { transposeB: 'yes' as never }), TypeError, 'ERR_ATTN_TYPE');
      expectError(() => attn.softmax(f([2, 3]), { scale: NaN }), RangeError, 'ERR_ATTN_VALUE', /finite/);
      expectError(() => attn.softmax(f([2, 3]), { out: new Float32Array(5) }), RangeError, 'ERR_ATTN_SIZE');
      expectError(() => attn.softmax({ data: [1, 2], shape: [2] } as never), TypeError, 'ERR_ATTN_TYPE');
    });

    it('close(): a pending call settles, then every call (multi-head objects included) throws ERR_ATTN_DISPOSED', async () => {
      const own = facadeOf(variant);
      const E = 8;
      const w = (n: number) => new Float32Array(n).fill(0.1);
      const mha = own.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(64), wk: w(64), wv: w(64), wo: w(64) });
      const x = f([1, 3, E]);
      mha.forward(x);
      const pending = own.attentionAsync(q, k, v).then(
        (r) => r.output.data.length,
        (e: Error & { code?: string }) => e.code,
      );
      own.close();
      own.close();
      // finished with its result, or (wasm, whose worker close() ends) refused as disposed
      const settled = await pending;
      assert.ok(settled === 36 || settled === 'ERR_ATTN_DISPOSED', String(settled));
      expectError(() => own.attention(q, k, v), Error, 'ERR_ATTN_DISPOSED', /^attention: this instance was closed/);
      await assert.rejects(own.attentionAsync(q, k, v), { code: 'ERR_ATTN_DISPOSED' });
      expectError(() => own.matmul(f([2, 3]), f([3, 2])), Error, 'ERR_ATTN_DISPOSED');
      expectError(() => own.softmax(f([2, 3])), Error, 'ERR_ATTN_DISPOSED');
      expectError(() => own.alloc([2]), Error, 'ERR_ATTN_DISPOSED');
      expectError(() => own.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(64), wk: w(64), wv: w(64), wo: w(64) }), Error, 'ERR_ATTN_DISPOSED');
      expectError(() => mha.forward(x), Error, 'ERR_ATTN_DISPOSED', /was made from was closed/);
      await assert.rejects(mha.forwardAsync(x), { code: 'ERR_ATTN_DISPOSED' });
      mha.dispose();
      assert.equal(own.info().backend, variant.label.split('/')[0]);
    });

    it('multiHeadAttention: parameters, forward arguments, cache limits, dispose', async () => {
      const E = 8;
      const w = (n: number) => new Float32Array(n).fill(0.1);
      const good = { embedDim: E, numHeads: 2, wq: w(64), wk: w(64), wv: w(64), wo: w(64) };
      expectError(() => attn.multiHeadAttention(undefined as never), TypeError, 'ERR_ATTN_TYPE');
      expectError(() => attn.multiHeadAttention({ ...good, numHeads: 3 }), RangeError, 'ERR_ATTN_VALUE', /multiple of numHeads/);
      expectError(() => attn.multiHeadAttention({ ...good, numKvHeads: 3 }), RangeError, 'ERR_ATTN_VALUE', /multiple of numKvHeads/);
      expectError(() => attn.multiHeadAttention({ ...good, wk: w(32) }), RangeError, 'ERR_ATTN_SIZE', /wk must have 64/);
      expectError(() => attn.multiHeadAttention({ ...good, wq: tensor(w(64), [4, 16]) }), RangeError, 'ERR_ATTN_SHAPE', /wq must have shape \[8, 8\]/);
      expectError(() => attn.multiHeadAttention({ ...good, bo: w(3) }), RangeError, 'ERR_ATTN_SIZE', /bo/);
      expectError(() => attn.multiHeadAttention({ ...good, wv: [1] as never }), TypeError, 'ERR_ATTN_TYPE');
      expectError(() => attn.multiHeadAttention({ ...good, embedDim: 0 }), RangeError, 'ERR_ATTN_VALUE');
      expectError(() => attn.multiHeadAttention({ ...good, extra: 1 } as never), TypeError, 'ERR_ATTN_OPTION', /unknown option "extra"/);

      const mha = attn.multiHeadAttention(good);
      const x = f([1, 3, E]);
      expectError(() => mha.forward(f([1, 3, 7])), RangeError, 'ERR_ATTN_SHAPE', /embedDim 8/);
      expectError(() => mha.forward(x, { key: x }), TypeError, 'ERR_ATTN_OPTION', /both key and value/);
      expectError(() => mha.forward(x, { key: x, value: f([1, 3, E]) }), RangeError, 'ERR_ATTN_VALUE', /same tensor/);
      expectError(() => mha.forward(x, { key: f([2, 3, E]), value: undefined as never }), TypeError, 'ERR_ATTN_OPTION');
      const mbuf = new ArrayBuffer(4 * 32);
      expectError(() => mha.forward(x, { mask: { data: new Float32Array(mbuf, 0, 9), shape: [3, 3] }, out: new Float32Array(mbuf, 0, 24) }), RangeError, 'ERR_ATTN_VALUE', /share memory/);
      const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(4 * 24, { maxByteLength: 4 * 24 });
      await assert.rejects(mha.forwardAsync(x, { out: new Float32Array(rab) }), (e: Error & { code?: string }) => e instanceof TypeError && e.code === 'ERR_ATTN_TYPE' && /out is on a resizable/.test(e.message));
      const cache = mha.createCache({ batch: 1, maxLength: 4 });
      mha.forward(x, { cache, causal: true });
      expectError(() => mha.forward(f([1, 2, E]), { cache }), RangeError, 'ERR_ATTN_SIZE', /3 of 4 positions; 2 more do not fit/);
      assert.equal(cache.length, 3, 'a refused call leaves the cache as it was');
      expectError(() => mha.forward(f([2, 1, E]), { cache }), RangeError, 'ERR_ATTN_SHAPE', /batch 1/);
      expectError(() => mha.forward(x, { cache: {} as never }), TypeError, 'ERR_ATTN_TYPE', /createCache/);
      const other = attn.multiHeadAttention(good);
      expectError(() => mha.forward(x, { cache: other.createCache({ batch: 1, maxLength: 4 }) }), TypeError, 'ERR_ATTN_TYPE');
      expectError(() => mha.createCache({ batch: 1, maxLength: 0 }), RangeError, 'ERR_ATTN_VALUE');
      expectError(() => mha.createCache({ batch: 1 << 20, maxLength: 1 << 20 }), RangeError, 'ERR_ATTN_SIZE');
      const pending = mha.forwardAsync(f([1, 1, E]), { cache });
      expectError(() => mha.forward(f([1, 1, E]), { cache }), RangeError, 'ERR_ATTN_VALUE', /pending/);
      await pending;
      assert.equal(cache.length, 4);
      mha.dispose();
      mha.dispose();
      expectError(() => mha.forward(x), Error, 'ERR_ATTN_DISPOSED');
      await assert.rejects(mha.forwardAsync(x), (err: Error & { code?: string }) => err.code === 'ERR_ATTN_DISPOSED');
      expectError(() => mha.createCache({ batch: 1, maxLength: 2 }), Error, 'ERR_ATTN_DISPOSED');
      other.dispose();
    });
  });
}

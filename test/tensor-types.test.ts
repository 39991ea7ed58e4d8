/**
 * tensor()'s declared types say what it does: `npm test` type-checks this file (tsc --noEmit)
 * before mocha runs it, so each @ts-expect-error below fails the run if the types accept the call,
 * and each typed binding fails it if the types give the wrong tensor.
 */
import assert from 'node:assert/strict';
import { tensor, type Tensor } from '../src/index.js';

describe('tensor(): the types match what it accepts and returns', () => {
  it('a Uint8Array (boolean mask) gives a Tensor<Uint8Array>, a Float32Array or number[] a Tensor<Float32Array>', () => {
    const mask: Tensor<Uint8Array> = tensor(new Uint8Array([1, 0, 1, 1]), [2, 2]);
    const data: Uint8Array = mask.data;
    assert.ok(data instanceof Uint8Array);
    const f: Tensor<Float32Array> = tensor(new Float32Array(4), [4]);
    const n: Tensor<Float32Array> = tensor([1, 2, 3, 4], [2, 2]);
    const either: Float32Array | Uint8Array = Math.random() < 2 ? new Float32Array(2) : new Uint8Array(2);
    const u: Tensor<Float32Array | Uint8Array> = tensor(either, [2]);
    const anyData: Float32Array | Uint8Array | number[] = Math.random() < 2 ? [1, 2] : new Uint8Array(2);
    const a: Tensor<Float32Array | Uint8Array> = tensor(anyData, [2]);
    assert.ok(a.data instanceof Float32Array);
    assert.ok(f.data instanceof Float32Array && n.data instanceof Float32Array && u.data instanceof Float32Array);
  });

  it('the arrays it refuses at run time do not type-check either', () => {
    // @ts-expect-error a Float64Array is refused (ERR_ATTN_TYPE)
    assert.throws(() => tensor(new Float64Array(4), [4]), { code: 'ERR_ATTN_TYPE' });
    // @ts-expect-error an Int32Array is refused
    assert.throws(() => tensor(new Int32Array(4), [4]), { code: 'ERR_ATTN_TYPE' });
    // @ts-expect-error an array-like object that is not an array is refused
    assert.throws(() => tensor({ length: 2, 0: 1, 1: 2 }, [2]), { code: 'ERR_ATTN_TYPE' });
  });
});

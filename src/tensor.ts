/**
 * Tensors (a typed array plus a row-major shape), their construction and the shape arithmetic
 * every layer shares.
 */
import { attnRangeError, attnTypeError, describe } from './errors.js';
import { isFloat32Array, isUint8Array } from './typed-arrays.js';

export interface Tensor<T extends Float32Array | Uint8Array = Float32Array> {
  data: T;
  shape: readonly number[];
}

/** Largest element count accepted for any tensor (8 GiB of float32); larger sizes are refused before allocating. */
export const MAX_ELEMENTS = 2 ** 31 - 1;

/** Product of dims, refusing counts above MAX_ELEMENTS so nothing is ever allocated at an overflowed size. */
export function numel(shape: readonly number[], what = 'tensor'): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > MAX_ELEMENTS) {
      throw attnRangeError(
        'ERR_ATTN_SIZE',
        `${what}: shape [${shape.join(', ')}] has more than ${MAX_ELEMENTS} elements (the most one tensor may hold)`,
      );
    }
  }
  return n;
}

export function checkShape(shape: unknown, what: string): number[] {
  if (!Array.isArray(shape)) {
    throw attnTypeError('ERR_ATTN_TYPE', `${what}: shape must be an array of positive integers, got ${describe(shape)}`);
  }
  // a plain loop: tensor() freezes its shapes, and forEach and slice on a frozen array take V8's
  // slow path (~1.4 us against ~0.1 us per shape, several shapes per call)
  const rank = shape.length; // (read once: a getter at an index could shorten the array)
  const dims = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d)) {
      throw attnTypeError('ERR_ATTN_TYPE', `${what}: shape[${i}] must be an integer, got ${describe(d)}`);
    }
    if (d < 1) {
      throw attnRangeError('ERR_ATTN_SHAPE', `${what}: shape[${i}] must be >= 1, got ${d} (empty tensors are not supported)`);
    }
    dims[i] = d;
  }
  return dims;
}

/**
 * A number[] as float32. Each entry must be a number (NaN and the infinities included, as data):
 * Float32Array.from would turn null into 0, true into 1, a string or a hole into NaN, silently.
 */
function numbersToFloat32(data: unknown[]): Float32Array {
  const n = data.length;
  const arr = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = data[i];
    if (typeof x !== 'number') throw attnTypeError('ERR_ATTN_TYPE', `tensor: data[${i}] must be a number, got ${describe(x)}`);
    arr[i] = x;
  }
  return arr;
}

/**
 * Wraps data and a shape as a Tensor, checking that they agree. Plain number arrays are
 * copied into a Float32Array; typed arrays are used as they are (no copy).
 */
export function tensor<T extends Float32Array | Uint8Array>(data: T, shape: readonly number[]): Tensor<T>;
export function tensor(data: Float32Array | readonly number[], shape: readonly number[]): Tensor<Float32Array>;
export function tensor(data: Float32Array | Uint8Array | readonly number[], shape: readonly number[]): Tensor<Float32Array | Uint8Array>;
export function tensor(data: unknown, shape: readonly number[]): Tensor<Float32Array | Uint8Array> {
  const dims = checkShape(shape, 'tensor');
  const n = numel(dims, 'tensor');
  let arr: Float32Array | Uint8Array;
  if (isFloat32Array(data) || isUint8Array(data)) arr = data;
  else if (Array.isArray(data)) arr = numbersToFloat32(data);
  else {
    throw attnTypeError('ERR_ATTN_TYPE', `tensor: data must be a Float32Array, a Uint8Array (boolean mask) or a number[], got ${describe(data)}`);
  }
  if (arr.length !== n) {
    throw attnRangeError('ERR_ATTN_SIZE', `tensor: data has ${arr.length} elements but shape [${dims.join(', ')}] needs ${n}`);
  }
  return { data: arr, shape: Object.freeze(dims) };
}

/** Row-major strides of a contiguous tensor of this shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/**
 * Typed-array checks that hold for arrays from any realm: a `vm` context, a test runner's
 * sandbox, an iframe. `instanceof Float32Array` is false for another realm's Float32Array
 * (its constructor is a different object), which refused such arrays with "expected a
 * Float32Array, got Float32Array" and would have read a boolean mask of another realm as an
 * additive one. The %TypedArray%.prototype[@@toStringTag] getter reads the array's internal
 * type, whatever its realm, and cannot be spoofed by an object's own Symbol.toStringTag.
 */
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (name: PropertyKey) => Object.getOwnPropertyDescriptor(typedArrayProto, name)!.get as (this: unknown) => unknown;
const typedArrayTag = intrinsic(Symbol.toStringTag) as (this: unknown) => string | undefined;

// A typed array's length, byte length, offset and buffer read through %TypedArray%.prototype's
// own getters: a subclass may redefine `length` or `byteLength`, and sizes read through those
// would let it pass validation with one size and hand a copy or a kernel another.
const lengthGetter = intrinsic('length');
const byteLengthGetter = intrinsic('byteLength');
const byteOffsetGetter = intrinsic('byteOffset');
const bufferGetter = intrinsic('buffer');

const setMethod = (typedArrayProto as { set: (this: unknown, src: ArrayLike<number>, offset?: number) => void }).set;

/**
 * dst.set(src, offset) through %TypedArray%.prototype.set: `dst` may be the caller's `out`, and
 * a subclass's own set() would run the caller's code while a kernel's results are being written
 * (it could call the library again on the same KV cache mid-call).
 */
export function setInto(dst: Float32Array, src: Float32Array, offset = 0): void {
  setMethod.call(dst, src, offset);
}

/** the element count of a typed array (0 once its buffer is detached) */
export const viewLength = (v: ArrayBufferView): number => lengthGetter.call(v) as number;
/** the bytes a typed array spans (0 once its buffer is detached) */
export const viewByteLength = (v: ArrayBufferView): number => byteLengthGetter.call(v) as number;
export const viewByteOffset = (v: ArrayBufferView): number => byteOffsetGetter.call(v) as number;
export const viewBuffer = (v: ArrayBufferView): ArrayBufferLike => bufferGetter.call(v) as ArrayBufferLike;

/** 'Float32Array', 'Uint8Array', ... for a typed array of any realm; undefined otherwise */
export function typedArrayKind(x: unknown): string | undefined {
  return ArrayBuffer.isView(x) ? typedArrayTag.call(x) : undefined;
}

/** arrays a call reads or writes, each under the argument's name (absent ones left out later) */
export type NamedArrays = ReadonlyArray<readonly [string, ArrayBufferView | undefined | null]>;

/**
 * A plain view of this realm over the same memory as `x` (a typed array of the kind its tag
 * says): no copy, and none of a subclass's methods or an own property of `x` comes along, so
 * nothing of the caller's runs when the library later reads, slices or copies it.
 */
export function plainView<T extends Float32Array | Uint8Array | Int32Array>(x: T): T {
  const kind = typedArrayTag.call(x);
  const ctor = kind === 'Float32Array' ? Float32Array : kind === 'Int32Array' ? Int32Array : Uint8Array;
  const length = viewLength(x);
  // (no view can be made over a detached buffer: an empty array says as much to the size checks)
  return (length === 0 ? new ctor(0) : new ctor(viewBuffer(x) as ArrayBuffer, viewByteOffset(x), length)) as T;
}

/** the same memory: one buffer, offset and length */
export function sameView(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return viewBuffer(a) === viewBuffer(b) && viewByteOffset(a) === viewByteOffset(b) && viewByteLength(a) === viewByteLength(b);
}

export const isFloat32Array = (x: unknown): x is Float32Array => typedArrayKind(x) === 'Float32Array';
export const isUint8Array = (x: unknown): x is Uint8Array => typedArrayKind(x) === 'Uint8Array';
export const isInt32Array = (x: unknown): x is Int32Array => typedArrayKind(x) === 'Int32Array';

// The same question for an ArrayBuffer and a WebAssembly.Module, which `load({ wasm })` takes:
// ArrayBuffer.prototype's byteLength getter and WebAssembly.Module.exports check the internal
// slot (and throw for anything else, a SharedArrayBuffer included), whatever the realm.
const arrayBufferByteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength')!.get as (this: unknown) => number;

export function isArrayBuffer(x: unknown): x is ArrayBuffer {
  if (typeof x !== 'object' || x === null) return false;
  try {
    arrayBufferByteLength.call(x);
    return true;
  } catch {
    return false;
  }
}

// (a boolean, not a type guard: WebAssembly.Module is an empty interface, so a guard on it would
// narrow a URL or a string away as well)
export function isWasmModule(x: unknown): boolean {
  if (typeof x !== 'object' || x === null || typeof WebAssembly === 'undefined') return false;
  if (x instanceof WebAssembly.Module) return true;
  try {
    WebAssembly.Module.exports(x as WebAssembly.Module);
    return true;
  } catch {
    return false;
  }
}

/**
 * Errors with stable codes. Wrong types raise TypeError, wrong shapes / sizes / values raise
 * RangeError; both carry `code` so callers can branch without parsing messages.
 */
import { setInto, viewByteLength, viewLength, type NamedArrays } from './typed-arrays.js';

export type AttentionErrorCode =
  | 'ERR_ATTN_TYPE' // an argument has the wrong JS type
  | 'ERR_ATTN_SHAPE' // shapes do not agree or a shape is malformed
  | 'ERR_ATTN_SIZE' // data length does not match the shape, or a size would overflow
  | 'ERR_ATTN_VALUE' // a value is out of its allowed range
  | 'ERR_ATTN_OPTION' // an unknown or malformed option
  | 'ERR_ATTN_BACKEND_UNAVAILABLE' // the requested backend cannot be loaded here
  | 'ERR_ATTN_DISPOSED' // a disposed object was used
  | 'ERR_ATTN_ALLOC' // memory could not be allocated
  | 'ERR_ATTN_NATIVE'; // the native kernel reported a failure

export interface AttentionError extends Error {
  code: AttentionErrorCode;
}

export function attnTypeError(code: AttentionErrorCode, message: string): TypeError & AttentionError {
  return withCode(new TypeError(message), code);
}

export function attnRangeError(code: AttentionErrorCode, message: string): RangeError & AttentionError {
  return withCode(new RangeError(message), code);
}

export function attnError(code: AttentionErrorCode, message: string): Error & AttentionError {
  return withCode(new Error(message), code);
}

// `code` as the own property `err.code = code` makes, defined so that a setter some script put on
// Error.prototype is not called (one that throws would leave a pending call unsettled)
function withCode<E extends Error>(err: E, code: AttentionErrorCode): E & AttentionError {
  return Object.defineProperty(err, 'code', { value: code, writable: true, enumerable: true, configurable: true }) as E & AttentionError;
}

/**
 * The results of an async call went to arrays whose buffer was transferred away (postMessage,
 * structuredClone with `transfer`) while the call ran: refused, naming the array, rather than
 * reported as done.
 */
export function detachedDuringCall(name: string): RangeError & AttentionError {
  return attnRangeError(
    'ERR_ATTN_SIZE',
    `${name}: its buffer was detached (transferred) during the async call; keep the buffers of an async call attached until its promise settles`,
  );
}

/**
 * The arrays of a call and their byte lengths now; the returned check throws detachedDuringCall
 * for one whose buffer has been detached since. A call computed after an await copies its arrays
 * in only then (wasm: a detached one would copy in nothing, and the kernel would read, and for
 * the output write, the heap past its empty block); the facade checks an async call's outputs
 * after it, so that every backend refuses results sent to a buffer transferred away meanwhile.
 */
export function attachedNow(named: NamedArrays): () => void {
  const kept: Array<readonly [string, ArrayBufferView, number]> = [];
  for (const [name, view] of named) if (view) kept.push([name, view, viewByteLength(view)]);
  return () => {
    for (const [name, view, bytes] of kept) if (viewByteLength(view) !== bytes) throw detachedDuringCall(name);
  };
}

/** dst.set(src), or detachedDuringCall(name) when dst's buffer has been detached since the call began */
export function copyResult(dst: Float32Array, src: Float32Array, name: string): void {
  if (viewLength(dst) !== viewLength(src)) throw detachedDuringCall(name);
  setInto(dst, src);
}

/** A short, readable description of a given value for error messages. */
export function describe(value: unknown, depth = 0): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) {
    // a few items, not the whole array (a 100k-element number[] passed as data), and no
    // endless recursion into an array that contains itself
    if (depth >= 2) return `Array(${value.length})`;
    const head = value.slice(0, 8).map((v) => describe(v, depth + 1));
    return value.length > 8 ? `[${head.join(', ')}, ... (${value.length} items)]` : `[${head.join(', ')}]`;
  }
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name}(${(value as unknown as { length?: number }).length ?? value.byteLength})`;
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return String(value);
}

/**
 * The arrays that async calls still pending read and write. A kernel off the JS thread reads its
 * inputs and writes its outputs in place until its promise settles, so another call that wrote
 * into any of them, or read one of its outputs, would mix old and new values, and two calls
 * sharing an `out` would leave whichever finished last: silent wrong answers. Such a call is
 * refused with ERR_ATTN_VALUE instead, naming the array and the pending call. Reads that
 * overlap reads are fine. Only calls made through this library are seen (not the caller's own
 * writes), only within one JS realm (another thread sharing a SharedArrayBuffer is not), and
 * memory is compared through its buffer object: two SharedArrayBuffer objects over the same
 * memory look unrelated.
 */
import { attnRangeError } from './errors.js';
import { viewByteLength, type NamedArrays } from './typed-arrays.js';
import { overlaps } from './validate.js';

interface Claim {
  fn: string;
  reads: Array<readonly [string, ArrayBufferView]>;
  writes: Array<readonly [string, ArrayBufferView]>;
  /** held, never read: see holdInFlight */
  keep?: unknown;
}

// One set per JS realm, kept on globalThis, so that the ESM and CommonJS copies of this module
// (both loaded in one program) see each other's calls; a module-local one where globalThis
// cannot take it (frozen, or the key holding something else).
const pending: Set<Claim> = sharedRegistry(Symbol.for('simd-attention.in-flight.v1'));

function sharedRegistry(key: symbol): Set<Claim> {
  const global = globalThis as Record<symbol, unknown>;
  try {
    if (global[key] === undefined) Object.defineProperty(global, key, { value: new Set<Claim>(), configurable: true });
  } catch {
    // not extensible
  }
  return global[key] instanceof Set ? (global[key] as Set<Claim>) : new Set<Claim>();
}

function present(named: NamedArrays): Array<readonly [string, ArrayBufferView]> {
  const kept: Array<readonly [string, ArrayBufferView]> = [];
  for (const [name, view] of named) if (view && viewByteLength(view) > 0) kept.push([name, view]);
  return kept;
}

function conflict(fn: string, reads: Claim['reads'], writes: Claim['writes']): void {
  for (const other of pending) {
    for (const [name, view] of writes) {
      for (const [otherName, otherView] of [...other.reads, ...other.writes]) {
        if (overlaps(view, otherView)) throw busy(fn, name, 'writes into', other, otherName);
      }
    }
    for (const [name, view] of reads) {
      for (const [otherName, otherView] of other.writes) {
        if (overlaps(view, otherView)) throw busy(fn, name, 'reads', other, otherName);
      }
    }
  }
}

function busy(fn: string, name: string, verb: string, other: Claim, otherName: string) {
  return attnRangeError(
    'ERR_ATTN_VALUE',
    `${fn}: ${name} ${verb} the memory of ${otherName} of a pending ${other.fn}, which uses it in place until its promise settles; await that call first or use another array`,
  );
}

/** Throws ERR_ATTN_VALUE when a call reading `reads` and writing `writes` now would disturb a pending async call. */
export function checkNotInFlight(fn: string, reads: NamedArrays, writes: NamedArrays): void {
  if (pending.size === 0) return;
  conflict(fn, present(reads), present(writes));
}

/**
 * checkNotInFlight, then holds the arrays for an async call until the returned release runs
 * (when its promise settles, either way). `keep`: the caller's own objects (tensors, options),
 * held as long: the call uses plain views of their arrays, and a wasm alloc() block is freed
 * when the caller's array is collected, so that array must outlive the call even if the caller
 * drops it.
 */
export function holdInFlight(fn: string, reads: NamedArrays, writes: NamedArrays, keep?: unknown): () => void {
  const claim: Claim = { fn, reads: present(reads), writes: present(writes), keep };
  conflict(fn, claim.reads, claim.writes);
  pending.add(claim);
  return () => void pending.delete(claim);
}

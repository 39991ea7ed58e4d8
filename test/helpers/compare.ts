/**
 * Closeness of a float32 result to the float64 reference.
 *
 * Why 1e-4 + 1e-4·|ref| suffices and is not loose: test inputs are uniform in [-1, 1) with
 * head dims up to ~160. A float32 dot product of length D has a rounding error below
 * D·2^-24·Σ|q_d·k_d| ≈ 1e-5 after the 1/sqrt(D) scale; a vectorised exp adds ≤ ~1e-6 relative;
 * softmax turns a score error δ into weight errors summing to ≤ 2δ, and the output (a convex
 * combination of values in [-1, 1)) inherits that bound. So kernels land within a few 1e-5 of
 * the reference, while any real bug (a wrong index, a missed mask, a wrong scale) moves
 * outputs by 1e-2 or more.
 */
import assert from 'node:assert/strict';

export const ATOL = 1e-4;
export const RTOL = 1e-4;

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

/** Asserts elementwise closeness; NaN must match NaN (propagation is part of the contract). */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, atol = ATOL, rtol = RTOL): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) || Number.isNaN(a)) {
      assert.ok(Number.isNaN(a) && Number.isNaN(e), `${what}[${i}]: got ${a}, expected ${e}`);
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${atol} + ${rtol}·|expected|); max diff ${maxAbsDiff(actual, expected)}`);
    }
  }
}

/** true when a and b hold the same float32 bit patterns (results that must be bit-identical) */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** What the two fuzz tests (native-fuzz, api-fuzz) share: seeded draws and the error they accept. */
import assert from 'node:assert/strict';
import { randomInt, rng } from './random.js';

/** SIMD_ATTENTION_FUZZ_LOG=1: the fuzz tests print each case before it runs, and their counts */
export const fuzzLog = process.env.SIMD_ATTENTION_FUZZ_LOG === '1';

/** Seeded draws: every case reproduces from its seed. */
export class Draws {
  readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  int(lo: number, hi: number): number {
    return randomInt(this.r, lo, hi);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)];
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
}

/** The code of an error a fuzzed call may throw: an Error with an ERR_ATTN_* code; anything else fails. */
export function attnErrorCode(e: unknown, what: string): string {
  assert.ok(e instanceof Error, `${what}: threw a non-Error ${String(e)}`);
  const code = (e as { code?: unknown }).code;
  assert.ok(typeof code === 'string' && /^ERR_ATTN_[A-Z]+$/.test(code), `${what}: ${e.constructor.name} without an ERR_ATTN_* code: ${e.message}`);
  return code;
}

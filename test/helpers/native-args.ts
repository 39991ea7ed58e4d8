/** Arguments straight to a backend (no facade), for the native tests: seeded, contiguous. */
import type { AttentionArgs, MultiHeadParams } from '../../src/backend.js';
import { randomTensor, rng } from './random.js';

/** n floats uniform in [-1, 1) from the seed */
export function rand(n: number, seed: number): Float32Array {
  return randomTensor(rng(seed), [n]).data;
}

/** Contiguous bhsd attention arguments, straight to the backend (no facade). */
export function attnArgs(
  B: number,
  Hq: number,
  Hkv: number,
  Sq: number,
  Sk: number,
  D: number,
  extra: Partial<AttentionArgs> = {},
  seed = 1,
): AttentionArgs {
  return {
    q: rand(B * Hq * Sq * D, seed),
    k: rand(B * Hkv * Sk * D, seed + 1),
    v: rand(B * Hkv * Sk * D, seed + 2),
    batch: B,
    numHeads: Hq,
    numKvHeads: Hkv,
    seqQ: Sq,
    seqK: Sk,
    headDim: D,
    headDimV: D,
    qStrides: { b: Hq * Sq * D, h: Sq * D, s: D },
    kStrides: { b: Hkv * Sk * D, h: Sk * D, s: D },
    vStrides: { b: Hkv * Sk * D, h: Sk * D, s: D },
    oStrides: { b: Hq * Sq * D, h: Sq * D, s: D },
    scale: 1 / Math.sqrt(D),
    causal: false,
    out: new Float32Array(B * Hq * Sq * D),
    ...extra,
  };
}

export function mhParams(E: number, H: number, Hkv: number, seed: number): MultiHeadParams {
  const Dh = E / H;
  const kv = Hkv * Dh;
  return {
    embedDim: E,
    numHeads: H,
    numKvHeads: Hkv,
    headDim: Dh,
    kvDim: kv,
    wq: rand(E * E, seed).map((x) => x * 0.1),
    wk: rand(kv * E, seed + 1).map((x) => x * 0.1),
    wv: rand(kv * E, seed + 2).map((x) => x * 0.1),
    wo: rand(E * E, seed + 3).map((x) => x * 0.1),
    bq: rand(E, seed + 4),
    bo: rand(E, seed + 5),
  };
}

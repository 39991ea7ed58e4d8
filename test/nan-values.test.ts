/**
 * NaN in a value row, for every backend variant (js, native per ISA, wasm per build, shared
 * memory or not). The reference multiplies every visible key's weight by its value, so a
 * visible key whose weight underflows to exactly 0 in float32 (a score 200 below the row max)
 * still turns the output NaN (0 * NaN); a hidden key (causal, boolean mask, keyLengths) is never
 * read, so its NaN stays out. Kernels that skip zero weights pass the second rule and fail the first.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createWasmBackend } from '../src/backends/wasm-core.js';
import { instantiateSync } from '../src/backends/wasm-instance.js';
import { wasmBuilds, wasmPath } from '../src/backends/wasm.js';
import { Attention, type AttentionOptions } from '../src/facade.js';
import * as ref from '../src/reference/index.js';
import type { Tensor } from '../src/tensor.js';
import { facadeOf, variants, type Variant } from './helpers/backends.js';
import { assertClose } from './helpers/compare.js';
import { randomTensor, rng } from './helpers/random.js';

interface Case {
  name: string;
  /** [B, Hq, Hkv, Sq, Sk, D, Dv] */
  dims: number[];
  /** the key with the far-below score and the NaN value row (in every kv head) */
  key: number;
  opts?: AttentionOptions;
  /** whether query row i sees the key (its output row is then NaN, else finite) */
  sees: (i: number) => boolean;
}

const all = () => true;
const none = () => false;

/** A [Sq, Sk] boolean mask hiding column `key`, or an additive one pushing it `by` lower. */
function maskColumn(Sq: number, Sk: number, key: number, by?: number): Tensor<Uint8Array> | Tensor<Float32Array> {
  if (by === undefined) {
    const data = new Uint8Array(Sq * Sk).fill(1);
    for (let i = 0; i < Sq; i++) data[i * Sk + key] = 0;
    return { data, shape: [Sq, Sk] };
  }
  const data = new Float32Array(Sq * Sk);
  for (let i = 0; i < Sq; i++) data[i * Sk + key] = by;
  return { data, shape: [Sq, Sk] };
}

/** A [Sq, Sk] additive mask with value(i, j) at row i, column j. */
function additive(Sq: number, Sk: number, value: (i: number, j: number) => number): Tensor<Float32Array> {
  const data = new Float32Array(Sq * Sk);
  for (let i = 0; i < Sq; i++) for (let j = 0; j < Sk; j++) data[i * Sk + j] = value(i, j);
  return { data, shape: [Sq, Sk] };
}

// Sq >= 4 runs the wasm flash path, Sq < 4 its decode path; Dv 5 and 37 cover the packed-V
// and column-tail code; Sk 70 spans two key tiles.
const CASES: Case[] = [
  { name: 'flash: visible', dims: [1, 2, 2, 70, 70, 8, 8], key: 5, sees: all },
  { name: 'flash: visible, GQA, weights, Dv 5', dims: [1, 4, 2, 20, 70, 8, 5], key: 66, opts: { returnWeights: true }, sees: all },
  { name: 'flash: causal hides it from rows < 40 only', dims: [1, 2, 1, 70, 70, 8, 8], key: 40, opts: { causal: true }, sees: (i) => i >= 40 },
  { name: 'flash: causal, weights', dims: [1, 1, 1, 33, 33, 16, 16], key: 9, opts: { causal: true, returnWeights: true }, sees: (i) => i >= 9 },
  { name: 'flash: additive mask pushes it 200 lower', dims: [1, 2, 2, 12, 20, 8, 8], key: 3, opts: { mask: maskColumn(12, 20, 3, -200) }, sees: all },
  { name: 'flash: boolean mask hides it', dims: [1, 2, 2, 70, 70, 8, 8], key: 5, opts: { mask: maskColumn(70, 70, 5) }, sees: none },
  { name: 'flash: keyLengths hide it', dims: [1, 2, 2, 16, 70, 8, 8], key: 65, opts: { keyLengths: [60] }, sees: none },
  // An additive -Infinity gives a key weight 0 without hiding it: a row whose every key has it
  // is all zero weights (softmax of nothing finite), and 0 * NaN still reaches its output.
  {
    name: 'flash: additive -Infinity on every key of rows < 6',
    dims: [1, 2, 2, 12, 20, 8, 8],
    key: 3,
    opts: { mask: additive(12, 20, (i, j) => (i < 6 ? -Infinity : j === 3 ? -200 : 0)) },
    sees: all,
  },
  // 2100 keys split the decode row into chunks of 512 natively: the first chunk is all -Infinity
  { name: 'decode, split: additive -Infinity on the NaN key\'s chunk', dims: [1, 2, 1, 1, 2100, 8, 8], key: 5, opts: { mask: additive(1, 2100, (_, j) => (j < 512 ? -Infinity : 0)) }, sees: all },
  { name: 'decode, split: additive -Infinity on every key', dims: [1, 2, 1, 1, 2100, 8, 8], key: 700, opts: { mask: additive(1, 2100, () => -Infinity) }, sees: all },
  { name: 'decode: additive -Infinity on every key', dims: [1, 2, 2, 2, 40, 8, 8], key: 7, opts: { mask: additive(2, 40, () => -Infinity) }, sees: all },
  { name: 'decode: visible, Dv 37', dims: [1, 2, 1, 1, 100, 8, 37], key: 37, sees: all },
  { name: 'decode: causal hides it from row 0, weights', dims: [1, 2, 2, 3, 50, 8, 8], key: 48, opts: { causal: true, returnWeights: true }, sees: (i) => i >= 1 },
  { name: 'decode: boolean mask hides it', dims: [1, 2, 2, 1, 100, 8, 37], key: 37, opts: { mask: maskColumn(1, 100, 37) }, sees: none },
  { name: 'decode: keyLengths hide it', dims: [1, 2, 2, 2, 100, 8, 8], key: 90, opts: { keyLengths: [80] }, sees: none },
];

/** q·k is small for every key but `key`, whose scaled score is about 200 lower (exp underflows). */
function inputs(c: Case): { q: Tensor; k: Tensor; v: Tensor } {
  const [B, Hq, Hkv, Sq, Sk, D, Dv] = c.dims;
  const rand = rng(11 + c.key);
  const q = randomTensor(rand, [B, Hq, Sq, D]);
  const k = randomTensor(rand, [B, Hkv, Sk, D]);
  const v = randomTensor(rand, [B, Hkv, Sk, Dv]);
  for (let r = 0; r < B * Hq * Sq; r++) q.data[r * D] = 1;
  // the default scale is 1/sqrt(D); an additive mask case gets its -200 from the mask instead
  const far = c.opts?.mask?.data instanceof Float32Array ? 0 : -200 * Math.sqrt(D);
  for (let r = 0; r < B * Hkv * Sk; r++) k.data[r * D] = r % Sk === c.key ? far : 0;
  for (let bh = 0; bh < B * Hkv; bh++) v.data.fill(NaN, (bh * Sk + c.key) * Dv, (bh * Sk + c.key + 1) * Dv);
  return { q, k, v };
}

/** Asserts output row by row: all NaN where query i sees the key, all finite elsewhere. */
function assertRows(out: Float32Array, c: Case, what: string): void {
  const [, , , Sq, , , Dv] = c.dims;
  for (let r = 0; r < out.length / Dv; r++) {
    const row = out.subarray(r * Dv, (r + 1) * Dv);
    const i = r % Sq;
    if (c.sees(i)) assert.ok(row.every(Number.isNaN), `${what}: row ${r} (query ${i}) sees key ${c.key}, so it must be NaN; got ${row.slice(0, 4)}...`);
    else assert.ok(row.every(Number.isFinite), `${what}: key ${c.key} is hidden from row ${r} (query ${i}), so it must be finite; got ${row.slice(0, 4)}...`);
  }
}

/** wasm from the files without shared memory too (Node loads the shared-memory ones). */
function unsharedWasm(): Variant[] {
  return wasmBuilds().map((build) => ({
    label: `wasm/${build}/unshared`,
    create: () => createWasmBackend(instantiateSync(readFileSync(wasmPath(build, false)), { shared: false })),
  }));
}

describe('NaN values: visible keys of zero weight propagate, hidden keys never do', () => {
  it('the reference itself (the premise of the cases below)', () => {
    for (const c of CASES) {
      const { q, k, v } = inputs(c);
      assertRows(ref.attention(q, k, v, c.opts).output.data, c, `reference ${c.name}`);
    }
  });

  for (const variant of [...variants(), ...unsharedWasm()]) {
    it(variant.label, () => {
      const attn: Attention = facadeOf(variant);
      for (const c of CASES) {
        const { q, k, v } = inputs(c);
        const got = attn.attention(q, k, v, c.opts);
        const want = ref.attention(q, k, v, c.opts);
        assertRows(got.output.data, c, `${variant.label} ${c.name}`);
        assertClose(got.output.data, want.output.data, `${variant.label} ${c.name} output`);
        if (c.opts?.returnWeights) assertClose(got.weights!.data, want.weights!.data, `${variant.label} ${c.name} weights`);
      }
    });
  }
});

// The reference never reads the mask at a key the causal rule hides, so what the mask holds there
// (NaN, +Infinity) must not reach the row. Sq 70 runs the flash paths over a diagonal tile (two
// query blocks natively), Sk > Sq the bottom-right offset, Sq 3 the decode paths.
describe('an additive mask is not read at keys the causal rule hides', () => {
  const cases: Array<{ name: string; dims: number[]; weights?: boolean }> = [
    { name: 'flash, GQA', dims: [1, 4, 2, 70, 70, 8, 8] },
    { name: 'flash, Sk > Sq, weights', dims: [1, 2, 2, 20, 70, 8, 5], weights: true },
    { name: 'decode', dims: [1, 2, 1, 3, 50, 8, 8] },
  ];
  const maskValues = [NaN, Infinity];
  const inputsOf = (dims: number[], hidden: number) => {
    const [B, Hq, Hkv, Sq, Sk, D, Dv] = dims;
    const rand = rng(29 + Sk);
    const mask = additive(Sq, Sk, (i, j) => (j > i + Sk - Sq ? hidden : rand() - 0.5));
    return { q: randomTensor(rand, [B, Hq, Sq, D]), k: randomTensor(rand, [B, Hkv, Sk, D]), v: randomTensor(rand, [B, Hkv, Sk, Dv]), mask };
  };

  for (const variant of variants()) {
    it(variant.label, () => {
      const attn: Attention = facadeOf(variant);
      for (const c of cases)
        for (const hidden of maskValues) {
          const { q, k, v, mask } = inputsOf(c.dims, hidden);
          const opts: AttentionOptions = { causal: true, mask, returnWeights: c.weights };
          const got = attn.attention(q, k, v, opts);
          const want = ref.attention(q, k, v, opts);
          const what = `${variant.label} ${c.name}, mask ${hidden} at hidden keys`;
          assert.ok(want.output.data.every(Number.isFinite), `reference ${what}: finite (the premise)`);
          assertClose(got.output.data, want.output.data, `${what}: output`);
          if (c.weights) assertClose(got.weights!.data, want.weights!.data, `${what}: weights`);
        }
    });
  }
});

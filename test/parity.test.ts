/**
 * The parity harness: every backend variant this machine runs (js; native under each ISA;
 * wasm in each build) against the reference, over a seeded grid of shapes that includes 1,
 * primes, sizes that are not multiples of 4/8/16, Sq != Sk, GQA and every option.
 * Tolerance: see helpers/compare.ts for why 1e-4 + 1e-4·|ref| is right for float32 kernels.
 *
 * SIMD_ATTENTION_REQUIRE=native,wasm,browser (set by CI) turns a missing backend into a failure
 * instead of a printed skip.
 */
import assert from 'node:assert/strict';
import type { AttentionOptions } from '../src/facade.js';
import * as ref from '../src/reference/index.js';
import type { Tensor } from '../src/tensor.js';
import { facadeOf, reportMissing, variants } from './helpers/backends.js';
import { assertClose, sameBits } from './helpers/compare.js';
import { randomInt, randomTensor, rng } from './helpers/random.js';

interface Case {
  name: string;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  opts: AttentionOptions;
}

type MaskKind = 'none' | 'bool2' | 'add2' | 'boolB1' | 'addBH' | 'padRow';

function makeMask(rand: () => number, kind: MaskKind, B: number, Hq: number, Sq: number, Sk: number): AttentionOptions['mask'] {
  const shapeOf: Record<Exclude<MaskKind, 'none'>, number[]> = {
    bool2: [Sq, Sk],
    add2: [Sq, Sk],
    boolB1: [B, 1, Sq, Sk],
    addBH: [B, Hq, Sq, Sk],
    padRow: [B, 1, 1, Sk],
  };
  if (kind === 'none') return undefined;
  const shape = shapeOf[kind];
  const n = shape.reduce((a, b) => a * b, 1);
  if (kind.startsWith('bool') || kind === 'padRow') {
    // mostly visible, with the occasional fully hidden row to exercise the zero-output rule
    const data = new Uint8Array(n).map(() => (rand() < 0.7 ? 1 : 0));
    if (kind === 'bool2' && Sq > 2) data.fill(0, Sk, 2 * Sk);
    return { data, shape };
  }
  const data = new Float32Array(n).map(() => (rand() < 0.15 ? -Infinity : rand() * 4 - 2));
  return { data, shape };
}

function layoutShape(layout: 'bhsd' | 'bshd', B: number, H: number, S: number, D: number): number[] {
  return layout === 'bhsd' ? [B, H, S, D] : [B, S, H, D];
}

function randomCase(rand: () => number, i: number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const B = pick([1, 1, 2, 3]);
  const Hkv = pick([1, 2, 3]);
  const Hq = Hkv * pick([1, 1, 2, 4]);
  const Sq = pick([1, 2, 3, 5, 7, 13, 16, 17, 31, 33, 64, 65, 100]);
  const Sk = rand() < 0.4 ? Sq : pick([1, 2, 5, 8, 13, 17, 32, 47, 64, 97, 129, 200]);
  const D = pick([1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 48, 64, 65, 80, 128]);
  const Dv = rand() < 0.25 ? pick([1, 3, 8, 17, 64]) : D;
  const layout = rand() < 0.3 ? 'bshd' : 'bhsd';
  const maskKind = pick<MaskKind>(['none', 'none', 'bool2', 'add2', 'boolB1', 'addBH', 'padRow']);
  const opts: AttentionOptions = { layout };
  if (rand() < 0.4) opts.causal = true;
  opts.mask = makeMask(rand, maskKind, B, Hq, Sq, Sk);
  if (rand() < 0.25) opts.keyLengths = Int32Array.from({ length: B }, () => randomInt(rand, 0, Sk));
  if (rand() < 0.25) opts.scale = rand() * 0.5;
  if (rand() < 0.3) opts.returnWeights = true;
  if (rand() < 0.2) opts.out = new Float32Array(B * Hq * Sq * Dv).fill(NaN);
  const name = `#${i} B${B} Hq${Hq} Hkv${Hkv} Sq${Sq} Sk${Sk} D${D} Dv${Dv} ${layout} mask=${maskKind}${opts.causal ? ' causal' : ''}${opts.keyLengths ? ` keyLengths=[${opts.keyLengths}]` : ''}${opts.returnWeights ? ' weights' : ''}${opts.out ? ' out' : ''}`;
  return {
    name,
    q: randomTensor(rand, layoutShape(layout, B, Hq, Sq, D)),
    k: randomTensor(rand, layoutShape(layout, B, Hkv, Sk, D)),
    v: randomTensor(rand, layoutShape(layout, B, Hkv, Sk, Dv)),
    opts,
  };
}

function fixedCase(rand: () => number, name: string, dims: number[], opts: AttentionOptions = {}): Case {
  const [B, Hq, Hkv, Sq, Sk, D, Dv] = dims;
  return { name, q: randomTensor(rand, [B, Hq, Sq, D]), k: randomTensor(rand, [B, Hkv, Sk, D]), v: randomTensor(rand, [B, Hkv, Sk, Dv]), opts };
}

function buildCases(): Case[] {
  const rand = rng(20261125);
  const cases: Case[] = [];
  for (let i = 0; i < 60; i++) cases.push(randomCase(rand, i));
  // Shapes that cross tile boundaries several times, causal skipping and the decode split.
  cases.push(fixedCase(rand, 'tiles: B1 H2 S300 D64 causal', [1, 2, 2, 300, 300, 64, 64], { causal: true }));
  cases.push(fixedCase(rand, 'tiles: Sq 129 < Sk 383 causal D 96', [1, 2, 1, 129, 383, 96, 96], { causal: true }));
  cases.push(fixedCase(rand, 'decode: Sq 1 Sk 1500 D128 GQA 8/2', [1, 8, 2, 1, 1500, 128, 128]));
  cases.push(fixedCase(rand, 'decode: Sq 1 Sk 777 keyLengths', [2, 4, 4, 1, 777, 64, 64], { keyLengths: [777, 300] }));
  // Decoding takes the query rows of a kv head (group x Sq) a few at a time: rows that see
  // different numbers of keys (causal), per-row masks, the key split and a short last batch.
  cases.push(
    fixedCase(rand, 'decode: GQA 8/2 Sq 5 Sk 2100 (split) causal additive mask Dv 48', [1, 8, 2, 5, 2100, 64, 48], {
      causal: true,
      mask: makeMask(rand, 'add2', 1, 8, 5, 2100),
    }),
  );
  cases.push(
    fixedCase(rand, 'decode: GQA 9/3 Sq 3 Sk 600 causal additive mask keyLengths weights Dv 37', [2, 9, 3, 3, 600, 40, 37], {
      causal: true,
      mask: makeMask(rand, 'addBH', 2, 9, 3, 600),
      keyLengths: [600, 411],
      returnWeights: true,
    }),
  );
  cases.push(
    fixedCase(rand, 'decode: GQA 6/2 Sq 3 boolean mask keyLengths weights', [2, 6, 2, 3, 300, 32, 32], {
      mask: makeMask(rand, 'boolB1', 2, 6, 3, 300),
      keyLengths: [300, 123],
      returnWeights: true,
    }),
  );
  cases.push(fixedCase(rand, 'weights: S 150 causal', [1, 3, 3, 150, 150, 32, 32], { causal: true, returnWeights: true }));
  cases.push(fixedCase(rand, 'Sq > Sk causal: first rows fully hidden', [1, 2, 2, 40, 9, 16, 16], { causal: true, returnWeights: true }));
  cases.push(fixedCase(rand, 'large scores (scale 8): online softmax rescaling', [1, 2, 2, 70, 90, 32, 32], { scale: 8 }));
  const nanCase = fixedCase(rand, 'NaN in a query row and in a visible value', [1, 2, 2, 9, 11, 8, 8], { causal: true });
  nanCase.q.data[3 * 8 + 2] = NaN; // head 0, query 3: that row becomes NaN
  nanCase.v.data[(11 + 4) * 8 + 1] = NaN; // head 1, key 4, dim 1: rows that see key 4 get NaN in dim 1
  cases.push(nanCase);
  return cases;
}

const cases = buildCases();
const expected = new Map<Case, ref.ReferenceAttentionResult>();
function referenceOf(c: Case): ref.ReferenceAttentionResult {
  let r = expected.get(c);
  if (!r) {
    const { out: _out, ...rest } = c.opts;
    r = ref.attention(c.q, c.k, c.v, rest);
    expected.set(c, r);
  }
  return r;
}

const all = variants();
const required = (process.env.SIMD_ATTENTION_REQUIRE ?? '').split(',').filter(Boolean);

describe('parity: every backend against the reference', () => {
  before(() => reportMissing());

  it('runs every required backend', () => {
    for (const name of required.filter((r) => ['native', 'wasm', 'js'].includes(r))) {
      assert.ok(all.some((v) => v.label.startsWith(`${name}/`) || v.label === name), `required backend ${name} is not available (SIMD_ATTENTION_REQUIRE)`);
    }
  });

  for (const variant of all) {
    describe(variant.label, () => {
      const attn = facadeOf(variant);

      it(`attention over ${cases.length} shapes and option sets`, () => {
        for (const c of cases) {
          const r = attn.attention(c.q, c.k, c.v, c.opts);
          const e = referenceOf(c);
          assert.deepEqual(r.output.shape, e.output.shape, c.name);
          if (c.opts.out) assert.equal(r.output.data, c.opts.out, `${c.name}: out is used`);
          assertClose(r.output.data, e.output.data, `${variant.label} ${c.name} output`);
          if (c.opts.returnWeights) assertClose(r.weights!.data, e.weights!.data, `${variant.label} ${c.name} weights`);
          else assert.equal(r.weights, undefined);
        }
      });

      it('a mask of one dim [Sk] broadcasts like the same mask repeated over the queries', () => {
        const rand = rng(97);
        const [B, H, Sq, Sk, D] = [2, 3, 5, 11, 8];
        const q = randomTensor(rand, [B, H, Sq, D]);
        const k = randomTensor(rand, [B, H, Sk, D]);
        const v = randomTensor(rand, [B, H, Sk, D]);
        const keep = new Uint8Array(Sk).map(() => (rand() < 0.7 ? 1 : 0));
        const bias = Float32Array.from({ length: Sk }, () => rand() - 0.5);
        const rows = <T extends Uint8Array | Float32Array>(m: T): T => {
          const full = new (m.constructor as new (n: number) => T)(Sq * Sk);
          for (let i = 0; i < Sq; i++) full.set(m, i * Sk);
          return full;
        };
        for (const mask of [{ data: keep, shape: [Sk] }, { data: bias, shape: [Sk] }] as Array<Tensor<Uint8Array> | Tensor<Float32Array>>) {
          const got = attn.attention(q, k, v, { mask }).output.data;
          const want = attn.attention(q, k, v, { mask: { data: rows(mask.data), shape: [Sq, Sk] } as never }).output.data;
          assert.deepEqual(Array.from(got), Array.from(want), `${variant.label} [Sk] ${mask.data.constructor.name} mask`);
          assertClose(got, ref.attention(q, k, v, { mask }).output.data, `${variant.label} [Sk] mask against the reference`);
        }
      });

      it('keys padded with a large finite mask (-1e4, -1e9) or scoring far below the rest, over whole first key blocks', () => {
        // The first blocks' max is then far below the real scores; a kernel that sums later blocks'
        // scores onto a start of -max lost their low bits (errors up to the whole output, found in review).
        const rand = rng(96);
        const [B, H, Sq, Sk, D, pad] = [1, 2, 20, 300, 64, 140];
        const q = randomTensor(rand, [B, H, Sq, D]);
        const k = randomTensor(rand, [B, H, Sk, D]);
        const v = randomTensor(rand, [B, H, Sk, D]);
        for (const fill of [-1e4, -65504, -1e9]) {
          const mask = { data: new Float32Array(Sk).map((_, j) => (j < pad ? fill : 0)), shape: [Sk] };
          const got = attn.attention(q, k, v, { mask }).output.data;
          assertClose(got, ref.attention(q, k, v, { mask }).output.data, `${variant.label} first ${pad} keys masked with ${fill}`);
        }
        // no mask: the first keys' scores themselves far below (q >= 0, those keys' rows very negative)
        const qp = { data: q.data.map(Math.abs), shape: q.shape };
        for (const low of [-1e2, -1e4]) {
          const kl = { data: k.data.slice(), shape: k.shape };
          for (let h = 0; h < H; h++) for (let j = 0; j < pad; j++) kl.data.fill(low, (h * Sk + j) * D, (h * Sk + j + 1) * D);
          assertClose(attn.attention(qp, kl, v).output.data, ref.attention(qp, kl, v).output.data, `${variant.label} first ${pad} keys scoring ~${low * D}`);
        }
      });

      it('attentionAsync equals attention', async () => {
        for (const c of cases.slice(0, 12)) {
          const { out: _out, ...opts } = c.opts;
          const r = await attn.attentionAsync(c.q, c.k, c.v, opts);
          assertClose(r.output.data, referenceOf(c).output.data, `${variant.label} async ${c.name}`);
        }
      });

      it('matmul over awkward shapes, transposed and batched', () => {
        const rand = rng(99);
        const dims = [1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 100, 129];
        for (let i = 0; i < 40; i++) {
          const pick = () => dims[Math.floor(rand() * dims.length)];
          const [m, n, k] = [pick(), pick(), pick()];
          const transposeB = rand() < 0.5;
          const lead = rand() < 0.3 ? [3] : [];
          const bLead = rand() < 0.5 ? lead : [];
          const a = randomTensor(rand, [...lead, m, k]);
          const b = randomTensor(rand, [...bLead, ...(transposeB ? [n, k] : [k, n])]);
          const got = attn.matmul(a, b, { transposeB });
          const want = ref.matmul(a, b, { transposeB });
          assert.deepEqual(got.shape, want.shape);
          // k terms of magnitude <= 1: the float32 accumulation error grows with k
          assertClose(got.data, want.data, `${variant.label} matmul ${m}x${k}x${n} t=${transposeB} lead=${lead}/${bLead}`, 1e-5 * k, 1e-5);
        }
      });

      it('matmul batch dims broadcast as in NumPy (each side 1 or equal per dim, right-aligned), also where one call cannot cover them', () => {
        const rand = rng(98);
        const pairs: Array<[number[], number[]]> = [
          [[2, 3], [3]], // b repeats along a's first dim: one call per index of it
          [[1, 4], [3, 1]], // both sides broadcast: a's rows meet every b
          [[2, 1, 3], [1, 4, 1]],
          [[1, 1, 1], [1, 4]], // all-1 dims on a with b batched
          [[2, 2], [1, 2]],
          [[3, 1, 2], [2]],
          [[5], [1]],
        ];
        for (const [aLead, bLead] of pairs) {
          for (const transposeB of [false, true]) {
            const [m, k, n] = [3, 17, 5];
            const a = randomTensor(rand, [...aLead, m, k]);
            const b = randomTensor(rand, [...bLead, ...(transposeB ? [n, k] : [k, n])]);
            const got = attn.matmul(a, b, { transposeB });
            const want = ref.matmul(a, b, { transposeB });
            assert.deepEqual(got.shape, want.shape, `[${aLead}] x [${bLead}]`);
            assertClose(got.data, want.data, `${variant.label} matmul [${aLead}] x [${bLead}] t=${transposeB}`, 1e-5 * k, 1e-5);
          }
        }
      });

      it('matmul with one B for a batch of A: the batch as one taller matrix gives each product bit for bit', () => {
        // the facade hands such a product to the backend as one [batch·M, K] matrix
        const rand = rng(7);
        for (const [batch, m, k, n, transposeB] of [[5, 3, 70, 40, false], [8, 1, 300, 33, true], [3, 40, 17, 130, false]] as const) {
          const a = randomTensor(rand, [batch, m, k]);
          const b = randomTensor(rand, transposeB ? [n, k] : [k, n]);
          const got = attn.matmul(a, b, { transposeB });
          for (let i = 0; i < batch; i++) {
            const one = attn.matmul({ data: a.data.slice(i * m * k, (i + 1) * m * k), shape: [m, k] }, b, { transposeB });
            assert.ok(sameBits(got.data.subarray(i * m * n, (i + 1) * m * n), one.data), `${variant.label} matrix ${i} of ${batch}x${m}x${k}x${n}`);
          }
        }
      });

      it('matmul bias (the projection path of the multi-head block)', () => {
        const rand = rng(5);
        const backend = variant.create();
        for (const [m, n, k] of [[1, 1, 1], [7, 13, 17], [33, 65, 31], [64, 48, 128]]) {
          const a = randomTensor(rand, [m, k]);
          const w = randomTensor(rand, [n, k]);
          const bias = randomTensor(rand, [n]).data;
          const out = new Float32Array(m * n);
          backend.matmul({ a: a.data, b: w.data, out, batch: 1, m, n, k, strideA: 0, strideB: 0, transposeB: true, bias });
          assertClose(out, ref.matmul(a, w, { transposeB: true, bias }).data, `${variant.label} bias ${m}x${k}x${n}`, 1e-5 * k, 1e-5);
        }
        backend.close?.();
      });

      it('softmax rows, with scale, -Infinity entries, fully hidden rows and NaN', () => {
        const rand = rng(3);
        for (const cols of [1, 2, 3, 4, 7, 8, 15, 16, 17, 33, 64, 100, 1000]) {
          const x = randomTensor(rand, [5, cols]);
          x.data[cols] = -Infinity; // row 1 has a hidden entry
          x.data.fill(-Infinity, 2 * cols, 3 * cols); // row 2 fully hidden: zeros
          x.data[3 * cols] = NaN; // row 3 NaN
          const scale = rand() * 3;
          assertClose(attn.softmax(x, { scale }).data, ref.softmax(x, { scale }).data, `${variant.label} softmax cols=${cols}`);
        }
      });

      it('multi-head block: GQA, biases, causal, cross-attention, masks', () => {
        const rand = rng(17);
        // the last three have heads a whole number of matmul panels wide (Dh 64, 32, 128): native
        // then projects Q, K and V head by head (multihead.cc, head_major)
        const shapes = [[8, 2, 2, 1, 1, 1], [12, 3, 1, 2, 7, 7], [32, 4, 2, 1, 17, 9], [48, 6, 3, 2, 33, 33], [64, 4, 4, 1, 70, 70], [128, 2, 2, 2, 37, 37], [192, 6, 2, 1, 40, 23], [256, 2, 1, 1, 21, 21]];
        for (const [E, Hq, Hkv, B, S, Skv] of shapes) {
          const Dh = E / Hq;
          const w = (rows: number, cols = E) => randomTensor(rand, cols === 1 ? [rows] : [rows, cols]).data;
          const params = { embedDim: E, numHeads: Hq, numKvHeads: Hkv, wq: w(E), wk: w(Hkv * Dh), wv: w(Hkv * Dh), wo: w(E), bq: w(E, 1), bk: w(Hkv * Dh, 1), bv: w(Hkv * Dh, 1), bo: w(E, 1) };
          const mha = attn.multiHeadAttention(params);
          const x = randomTensor(rand, [B, S, E]);
          const tolerance = 1e-4 * E; // projections add E-term float32 sums on top of attention
          assertClose(mha.forward(x, { causal: true }).data, ref.multiHeadAttention(x, params, { causal: true }).data, `${variant.label} mha E${E} causal`, tolerance);
          const kv = randomTensor(rand, [B, Skv, E]);
          const mask = { data: new Uint8Array(S * Skv).map(() => (rand() < 0.8 ? 1 : 0)), shape: [S, Skv] };
          const lengths = Array.from({ length: B }, () => randomInt(rand, 0, Skv));
          assertClose(
            mha.forward(x, { key: kv, value: kv, mask, keyLengths: lengths }).data,
            ref.multiHeadAttention(x, params, { key: kv, value: kv, mask, keyLengths: lengths }).data,
            `${variant.label} mha E${E} cross`,
            tolerance,
          );
          mha.dispose();
        }
      });

      it('multi-head block: the weights are read once, at creation (changed or transferred arrays later change nothing)', async () => {
        const rand = rng(29);
        const E = 24;
        const w = (rows: number) => randomTensor(rand, [rows, E]).data;
        const params = { embedDim: E, numHeads: 3, wq: w(E), wk: w(E), wv: w(E), wo: w(E), bo: w(1) };
        const asBuilt = { ...params, wq: params.wq.slice(), wk: params.wk.slice(), bo: params.bo.slice() };
        const mha = attn.multiHeadAttention(params);
        params.wq.fill(2);
        params.bo.fill(-3);
        structuredClone(params.wk.buffer, { transfer: [params.wk.buffer] });
        const x = randomTensor(rand, [1, 5, E]);
        const want = ref.multiHeadAttention(x, asBuilt, { causal: true }).data;
        assertClose(mha.forward(x, { causal: true }).data, want, `${variant.label} mha forward after the weights changed`, 1e-4 * E);
        assertClose((await mha.forwardAsync(x, { causal: true })).data, want, `${variant.label} mha forwardAsync after the weights changed`, 1e-4 * E);
        mha.dispose();
      });

      it('multi-head KV cache: a prompt then token-by-token decoding equals one causal pass', async () => {
        const rand = rng(23);
        const [E, Hq, Hkv, B, S] = [32, 4, 2, 2, 9];
        const Dh = E / Hq;
        const w = (rows: number) => randomTensor(rand, [rows, E]).data;
        const params = { embedDim: E, numHeads: Hq, numKvHeads: Hkv, wq: w(E), wk: w(Hkv * Dh), wv: w(Hkv * Dh), wo: w(E) };
        const mha = attn.multiHeadAttention(params);
        const x = randomTensor(rand, [B, S, E]);
        const full = ref.multiHeadAttention(x, params, { causal: true }).data;
        const rows = (from: number, to: number): Tensor => {
          const out = new Float32Array(B * (to - from) * E);
          for (let b = 0; b < B; b++) out.set(x.data.subarray((b * S + from) * E, (b * S + to) * E), b * (to - from) * E);
          return { data: out, shape: [B, to - from, E] };
        };
        const cache = mha.createCache({ batch: B, maxLength: S });
        const got = new Float32Array(B * S * E);
        const put = (y: Tensor, from: number, to: number) => {
          for (let b = 0; b < B; b++) got.set(y.data.subarray(b * (to - from) * E, (b + 1) * (to - from) * E), (b * S + from) * E);
        };
        put(mha.forward(rows(0, 3), { causal: true, cache }), 0, 3);
        for (let s = 3; s < S; s++) {
          const step = s % 2 === 0 ? mha.forward(rows(s, s + 1), { causal: true, cache }) : await mha.forwardAsync(rows(s, s + 1), { causal: true, cache });
          put(step, s, s + 1);
        }
        assert.equal(cache.length, S);
        assertClose(got, full, `${variant.label} kv cache decode`, 1e-4 * E);
        mha.dispose();
      });
    });
  }
});

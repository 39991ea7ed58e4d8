/**
 * The public API under random calls, some valid and some not: shapes that do or do not match,
 * both layouts, every option with a right or a wrong value, unknown options, arrays of the wrong
 * type or length; the multi-head block with right or wrong weights, self- and cross-attention,
 * masks, keyLengths and a KV cache (a prompt, then a token that may not fit). The js backend's
 * outcome is the yardstick; every other backend must agree with it call by call: the same
 * ERR_ATTN_* code when refused, outputs within the parity tolerance when run. Nothing else may
 * escape (no error without a code, no crash). Fixed seeds; the cases are built once and replayed
 * on every backend.
 */
import assert from 'node:assert/strict';
import { tensor, type Tensor } from '../src/index.js';
import type { Attention } from '../src/facade.js';
import { facadeOf, variants } from './helpers/backends.js';
import { assertClose } from './helpers/compare.js';
import { attnErrorCode, Draws, fuzzLog } from './helpers/fuzz.js';
import { randomTensor } from './helpers/random.js';

type Outcome = { code: string } | { outputs: Float32Array[] };
type Call = (a: Attention) => Float32Array[];

const WEIRD: unknown[] = [NaN, Infinity, -1, 0, 2 ** 40, '2', null, {}, [1], true];

class Gen extends Draws {
  data(n: number): Float32Array {
    return randomTensor(this.r, [n]).data;
  }
  /** a tensor of this shape, or (with probability p) one that is wrong in one way */
  tensorOrBroken(shape: number[], p: number): Tensor {
    const n = shape.reduce((x, y) => x * y, 1);
    if (!this.chance(p)) return tensor(this.data(n), shape);
    const s = [...shape];
    switch (this.int(0, 4)) {
      case 0: // one dimension off by one (the data follows it)
        s[this.int(0, s.length - 1)] += this.pick([-1, 1]);
        return s.every((d) => d >= 1) ? tensor(this.data(s.reduce((x, y) => x * y, 1)), s) : { data: this.data(n), shape: s };
      case 1: // a rank too many or too few
        return this.chance(0.5) ? tensor(this.data(n), [1, ...s]) : tensor(this.data(n), s.slice(1).length ? [s[0] * s[1], ...s.slice(2)] : [n]);
      case 2: // data of the wrong length
        return { data: this.data(n + this.pick([-1, 1, 5])), shape: s };
      case 3: // data of the wrong type
        return { data: this.pick([new Float64Array(n), new Int32Array(n), Array.from({ length: n }, () => 0.5)]) as never, shape: s };
      default: // not a tensor
        return this.pick([null, undefined, new Float32Array(n), { shape: s }]) as never;
    }
  }
}

/** outputs as plain copies, so a later call cannot change them */
const copies = (...xs: Array<Float32Array | undefined>) => xs.filter((x): x is Float32Array => !!x).map((x) => Float32Array.from(x));

function attentionCase(g: Gen): { what: string; call: Call } {
  const Hkv = g.int(1, 2);
  const [B, Hq, Sq, Sk, D, Dv] = [g.int(1, 2), Hkv * g.int(1, 2), g.int(1, 7), g.int(1, 9), g.int(1, 9), g.int(1, 9)];
  const bshd = g.chance(0.3);
  const shape = (H: number, S: number, d: number) => (bshd ? [B, S, H, d] : [B, H, S, d]);
  const bad = g.chance(0.5) ? 0.3 : 0;
  const q = g.tensorOrBroken(shape(Hq, Sq, D), bad);
  const k = g.tensorOrBroken(shape(Hkv, Sk, D), bad);
  const v = g.tensorOrBroken(shape(Hkv, Sk, Dv), bad);
  const opts: Record<string, unknown> = {};
  if (bshd) opts.layout = 'bshd';
  if (g.chance(0.3)) opts.scale = g.chance(0.7) ? g.r() * 2 : g.pick(WEIRD);
  if (g.chance(0.4)) opts.causal = g.chance(0.8) ? g.chance(0.5) : g.pick(WEIRD);
  if (g.chance(0.3)) {
    const mshape = g.pick([[Sq, Sk], [B, 1, Sq, Sk], [1, Hq, 1, Sk], [B, Hq, Sq, Sk], [Sk], [Sq + 1, Sk], [2, 3, Sq, Sk]]);
    const n = mshape.reduce((x, y) => x * y, 1);
    const boolean = g.chance(0.4);
    const data = boolean ? Uint8Array.from({ length: n }, () => (g.chance(0.8) ? 1 : 0)) : Float32Array.from({ length: n }, () => (g.chance(0.1) ? -Infinity : g.r() - 0.5));
    opts.mask = g.chance(0.9) ? { data, shape: mshape } : g.pick(WEIRD);
  }
  if (g.chance(0.3)) opts.keyLengths = g.chance(0.8) ? Int32Array.from({ length: g.chance(0.9) ? B : B + 1 }, () => g.int(g.chance(0.9) ? 0 : -1, Sk + (g.chance(0.9) ? 0 : 1))) : g.pick(WEIRD);
  if (g.chance(0.3)) opts.returnWeights = g.chance(0.9) ? true : g.pick(WEIRD);
  const outLen = B * Hq * Sq * Dv + (g.chance(0.8) ? 0 : g.pick([-1, 1]));
  const useOut = g.chance(0.3);
  if (g.chance(0.05)) opts[g.pick(['casual', 'threads', 'Scale'])] = 1;
  const what = `attention q ${JSON.stringify(q?.shape)} k ${JSON.stringify(k?.shape)} v ${JSON.stringify(v?.shape)} opts ${JSON.stringify(Object.keys(opts))}`;
  return {
    what,
    call: (a) => {
      const o = useOut ? { ...opts, out: new Float32Array(outLen) } : opts;
      const r = a.attention(q, k, v, o as never);
      return copies(r.output.data, r.weights?.data);
    },
  };
}

function matmulCase(g: Gen): { what: string; call: Call } {
  const [M, K, N] = [g.int(1, 9), g.int(1, 9), g.int(1, 9)];
  const lead = g.pick([[], [2], [1, 3], [2, 1]]);
  const tb = g.chance(0.5);
  const bad = g.chance(0.5) ? 0.4 : 0;
  const a = g.tensorOrBroken([...lead, M, K], bad);
  const b = g.tensorOrBroken(tb ? [N, K] : [...(g.chance(0.5) ? lead : []), K, N], bad);
  const opts: Record<string, unknown> = {};
  if (tb || g.chance(0.2)) opts.transposeB = g.chance(0.9) ? tb : g.pick(WEIRD);
  return { what: `matmul a ${JSON.stringify(a?.shape)} b ${JSON.stringify(b?.shape)} ${JSON.stringify(opts)}`, call: (x) => copies(x.matmul(a, b, opts as never).data) };
}

function softmaxCase(g: Gen): { what: string; call: Call } {
  const shape = g.pick([[g.int(1, 40)], [g.int(1, 5), g.int(1, 40)], [2, g.int(1, 3), g.int(1, 9)]]);
  const x = g.tensorOrBroken(shape, g.chance(0.3) ? 0.5 : 0);
  const opts: Record<string, unknown> = g.chance(0.4) ? { scale: g.chance(0.7) ? g.r() * 4 - 2 : g.pick(WEIRD) } : {};
  return { what: `softmax ${JSON.stringify(x?.shape)} ${JSON.stringify(opts)}`, call: (a) => copies(a.softmax(x, opts as never).data) };
}

function multiHeadCase(g: Gen): { what: string; call: Call } {
  const Hkv = g.int(1, 2);
  const [H, Dh, B, S] = [Hkv * g.int(1, 2), g.int(1, 4), g.int(1, 2), g.int(1, 5)];
  const E = H * Dh;
  const kv = Hkv * Dh;
  const bad = g.chance(0.4) ? 0.25 : 0;
  const w = (rows: number) => (g.chance(bad) ? g.pick([g.data(rows * E - 1), new Float64Array(rows * E)]) : g.data(rows * E).map((x) => x * 0.3));
  const params: Record<string, unknown> = { embedDim: E, numHeads: H, wq: w(E), wk: w(kv), wv: w(kv), wo: w(E) };
  if (Hkv !== H || g.chance(0.2)) params.numKvHeads = g.chance(0.9) ? Hkv : g.pick([3, 0, NaN]);
  if (g.chance(0.3)) params.bq = g.data(E);
  if (g.chance(0.3)) params.bo = g.data(g.chance(0.9) ? E : E + 1);
  const x = g.tensorOrBroken([B, S, E], bad);
  const opts: Record<string, unknown> = {};
  if (g.chance(0.4)) opts.causal = g.chance(0.9) ? g.chance(0.5) : g.pick(WEIRD);
  const mode = g.pick(['self', 'cross', 'cache']);
  let Skv = S;
  if (mode === 'cross') {
    Skv = g.int(1, 6);
    const mem = g.tensorOrBroken([B, Skv, E], bad);
    opts.key = mem;
    opts.value = g.chance(0.9) ? mem : g.tensorOrBroken([B, Skv, E], 0);
  }
  if (mode !== 'cache' && g.chance(0.3)) opts.keyLengths = Int32Array.from({ length: B }, () => g.int(0, Skv + (g.chance(0.9) ? 0 : 1)));
  if (mode !== 'cache' && g.chance(0.2)) {
    const mshape = g.pick([[S, Skv], [B, 1, 1, Skv], [S + 1, Skv]]);
    opts.mask = { data: Uint8Array.from({ length: mshape.reduce((p, q) => p * q, 1) }, () => (g.chance(0.8) ? 1 : 0)), shape: mshape };
  }
  const maxLength = S + g.int(0, 2);
  const token = g.tensorOrBroken([B, 1, E], bad / 2);
  return {
    what: `multiHead E ${E} H ${H}/${Hkv} x ${JSON.stringify(x?.shape)} ${mode} opts ${JSON.stringify(Object.keys(opts))}`,
    call: (a) => {
      const m = a.multiHeadAttention(params as never);
      try {
        if (mode !== 'cache') return copies(m.forward(x, opts as never).data);
        const cache = m.createCache({ batch: B, maxLength });
        const first = m.forward(x, { ...opts, cache } as never).data;
        const next = m.forward(token, { ...opts, cache } as never).data; // refused when the cache is full
        return copies(first, next);
      } finally {
        m.dispose();
      }
    },
  };
}

function outcome(a: Attention, call: Call, what: string): Outcome {
  try {
    return { outputs: call(a) };
  } catch (e) {
    return { code: attnErrorCode(e, what) };
  }
}

describe('public API: random calls, valid and not, agree with the js backend on every backend (fixed seeds)', function () {
  this.timeout(120_000);
  const all = variants();
  const js = all.find((v) => v.label === 'js')!;
  const cases = [
    ...Array.from({ length: 400 }, (_, i) => attentionCase(new Gen(1000 + i))),
    ...Array.from({ length: 150 }, (_, i) => matmulCase(new Gen(5000 + i))),
    ...Array.from({ length: 150 }, (_, i) => softmaxCase(new Gen(9000 + i))),
    ...Array.from({ length: 150 }, (_, i) => multiHeadCase(new Gen(13000 + i))),
  ];
  let expected: Outcome[] = [];

  before(() => {
    const ref = facadeOf(js);
    expected = cases.map((c, i) => outcome(ref, c.call, `js case ${i} (${c.what})`));
  });

  it('the js backend runs some and refuses some, with several codes', () => {
    const ran = expected.filter((o) => 'outputs' in o).length;
    const codes = new Set(expected.flatMap((o) => ('code' in o ? [o.code] : [])));
    if (fuzzLog) console.log(`${ran} ran; codes ${[...codes]}; with two outputs ${expected.filter((o) => 'outputs' in o && o.outputs.length === 2).length}`);
    assert.ok(ran > cases.length / 4 && ran < (cases.length * 3) / 4, `${ran} of ${cases.length} ran`);
    for (const c of ['ERR_ATTN_TYPE', 'ERR_ATTN_SHAPE', 'ERR_ATTN_SIZE', 'ERR_ATTN_VALUE']) assert.ok(codes.has(c), `no ${c}: ${[...codes]}`);
  });

  for (const v of all.filter((x) => x !== js)) {
    it(`${v.label}: the same outcome for every call`, () => {
      const a = facadeOf(v);
      cases.forEach((c, i) => {
        const what = `${v.label} case ${i} (${c.what})`;
        const got = outcome(a, c.call, what);
        const want = expected[i];
        if ('code' in want) {
          assert.deepEqual(got, want, `${what}: js refused it with ${want.code}`);
          return;
        }
        assert.ok('outputs' in got, `${what}: js ran it, this refused it with ${(got as { code: string }).code}`);
        assert.equal(got.outputs.length, want.outputs.length, what);
        got.outputs.forEach((out, j) => assertClose(out, want.outputs[j], `${what} output ${j}`));
      });
    });
  }
});

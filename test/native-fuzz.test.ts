/**
 * The native binding under corrupted arguments: valid calls, each with one to three of its
 * fields replaced by something wrong (a wrong type, a size or stride off by a little or by 2^53,
 * NaN, a negative, a missing array, a mask or keyLengths that do not fit), straight to the
 * backend, past the facade's checks. Every call must either run or throw an Error whose code is
 * ERR_ATTN_*; a crash ends the process. Under .ci/native-sanitize.sh the same calls run on the
 * AddressSanitizer build, so an accepted call that reads or writes out of bounds fails there.
 *
 * The seed is fixed; SIMD_ATTENTION_FUZZ_LOG=1 prints each case before it runs (to find the one
 * a crash came from).
 */
import assert from 'node:assert/strict';
import type { Backend } from '../src/backend.js';
import { loadNativeBackend, nativeIsas } from '../src/backends/native.js';
import { attnArgs, mhParams, rand } from './helpers/native-args.js';
import { attnErrorCode, Draws, fuzzLog as log } from './helpers/fuzz.js';

type Obj = Record<string, unknown>;

const CASES = 4000;

/** values no size, count or stride may take, and a few near-misses */
const WEIRD: unknown[] = [-1, -7, 2 ** 31, 2 ** 31 - 1, 2 ** 32 + 1, 2 ** 53, -(2 ** 53), 2 ** 62, NaN, Infinity, -Infinity, 0.5, 1e300, '3', null, undefined, {}, true, [2]];

class Fuzzer extends Draws {
  /** a count or stride nudged by a little, zeroed, or made absurd */
  number(x: number): unknown {
    const c = this.int(0, 3);
    if (c === 0) return x + this.pick([-2, -1, 1, 2]);
    if (c === 1) return 0;
    return this.pick(WEIRD);
  }
  /** an array one or a few elements short or long, empty, of another type, offset, or absent */
  array(a: ArrayBufferView & { length: number }): unknown {
    const n = a.length;
    switch (this.int(0, 6)) {
      case 0:
        return new Float32Array(Math.max(0, n - this.int(1, 3)));
      case 1:
        return new Float32Array(n + this.int(1, 3));
      case 2:
        return new Float32Array(0);
      case 3:
        return this.pick([new Float64Array(n), new Int32Array(n), new Uint8Array(n), Array.from({ length: n }, () => 0)]);
      case 4:
        // a view that starts inside a larger buffer but is short by one
        return new Float32Array(new ArrayBuffer(4 * (n + 8)), 4 * this.int(1, 8), Math.max(0, n - 1));
      case 5:
        return new DataView(new ArrayBuffer(4 * n));
      default:
        return this.pick([null, undefined, 'x', {}]);
    }
  }
  /** a copy of `o` with `field` corrupted according to what it holds */
  corrupt(o: Obj, field: string): void {
    const v = o[field];
    if (ArrayBuffer.isView(v)) o[field] = this.array(v as ArrayBufferView & { length: number });
    else if (typeof v === 'number') o[field] = this.number(v);
    else if (typeof v === 'boolean') o[field] = this.pick([1, 'yes', null, undefined]);
    else if (v && typeof v === 'object') {
      const inner = { ...(v as Obj) };
      const keys = Object.keys(inner);
      if (keys.length === 0 || this.int(0, 4) === 0) o[field] = this.pick([null, 5, 'x', []]);
      else {
        this.corrupt(inner, this.pick(keys));
        o[field] = inner;
      }
    } else o[field] = this.pick([0, new Float32Array(3), {}, 'x']);
  }
}

/** how many calls threw each code */
const codes = new Map<string, number>();

/** runs `call`; true when it ran, false when it threw an ERR_ATTN_* Error; anything else fails */
function runsOrRefuses(call: () => unknown, what: string): boolean {
  try {
    call();
    return true;
  } catch (e) {
    const code = attnErrorCode(e, what);
    codes.set(code, (codes.get(code) ?? 0) + 1);
    return false;
  }
}

function describeCase(o: Obj): string {
  return JSON.stringify(o, (_k, v) => (ArrayBuffer.isView(v) ? `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? (v as DataView).byteLength})` : v === undefined ? 'undefined' : v));
}

describe('native binding: corrupted arguments run or throw ERR_ATTN_*, never crash (fixed seed)', function () {
  this.timeout(120_000);
  let b: Backend;

  before(function () {
    if (nativeIsas().length === 0) {
      if ((process.env.SIMD_ATTENTION_REQUIRE ?? '').includes('native')) throw new Error('native required but the addon does not load');
      console.warn('    [native-fuzz] skipped: the native addon does not load');
      this.skip();
    }
    b = loadNativeBackend({ threads: 2 });
  });

  after(() => b?.close?.());

  it(`attention: ${CASES} corrupted calls`, () => {
    codes.clear();
    const f = new Fuzzer(20261129);
    const fields = [
      'q', 'k', 'v', 'out', 'weights', 'batch', 'numHeads', 'numKvHeads', 'seqQ', 'seqK', 'headDim', 'headDimV',
      'qStrides', 'kStrides', 'vStrides', 'oStrides', 'scale', 'causal', 'mask', 'keyLengths', 'threads',
    ];
    let ran = 0;
    for (let i = 0; i < CASES; i++) {
      const Hkv = f.int(1, 2);
      const [B, Hq, Sq, Sk, D] = [f.int(1, 2), Hkv * f.int(1, 2), f.int(1, 9), f.int(1, 9), f.int(1, 17)];
      const a = attnArgs(B, Hq, Hkv, Sq, Sk, D, {}, i) as unknown as Obj;
      // valid extras first, so that their own checks are reached too
      if (f.int(0, 2) === 0) a.causal = true;
      if (f.int(0, 2) === 0) a.weights = new Float32Array(B * Hq * Sq * Sk);
      if (f.int(0, 2) === 0) a.keyLengths = Int32Array.from({ length: B }, () => f.int(0, Sk));
      if (f.int(0, 2) === 0) {
        const boolean = f.int(0, 1) === 0;
        a.mask = { kind: boolean ? 'boolean' : 'additive', data: boolean ? new Uint8Array(Sq * Sk).fill(1) : new Float32Array(Sq * Sk), strideB: 0, strideH: 0, strideQ: Sk, strideK: 1 };
      }
      const nbad = f.int(1, 3);
      for (let j = 0; j < nbad; j++) f.corrupt(a, f.pick(fields));
      if (log) console.log(`attention #${i}: ${describeCase(a)}`);
      if (runsOrRefuses(() => b.attention(a as never), `attention case ${i}`)) ran++;
    }
    // both outcomes happen: the corruptions are not all refused (some are harmless: a longer
    // array, a smaller keyLengths) and not all accepted; and they reach every kind of check
    assert.ok(ran > CASES / 20 && ran < CASES / 2, `${ran} of ${CASES} ran`);
    if (log) console.log(`attention: ${ran} ran; codes: ${JSON.stringify([...codes])}`);
    for (const c of ['ERR_ATTN_TYPE', 'ERR_ATTN_SIZE', 'ERR_ATTN_VALUE', 'ERR_ATTN_SHAPE']) assert.ok((codes.get(c) ?? 0) > 10, `${c}: ${JSON.stringify([...codes])}`);
  });

  it(`matmul and softmax: ${CASES} corrupted calls each`, () => {
    const f = new Fuzzer(7);
    let ran = 0;
    for (let i = 0; i < CASES; i++) {
      const [batch, m, n, k] = [f.int(1, 3), f.int(1, 9), f.int(1, 20), f.int(1, 20)];
      const shared = f.int(0, 1) === 0;
      const mm: Obj = {
        a: rand(batch * m * k, i), b: rand((shared ? 1 : batch) * k * n, i + 1), out: new Float32Array(batch * m * n),
        batch, m, n, k, strideA: m * k, strideB: shared ? 0 : k * n, transposeB: f.int(0, 1) === 0,
        ...(f.int(0, 1) === 0 ? { bias: rand(n, i + 2) } : {}),
      };
      const nbad = f.int(1, 2);
      for (let j = 0; j < nbad; j++) f.corrupt(mm, f.pick(['a', 'b', 'out', 'bias', 'batch', 'm', 'n', 'k', 'strideA', 'strideB', 'transposeB', 'threads']));
      if (log) console.log(`matmul #${i}: ${describeCase(mm)}`);
      if (runsOrRefuses(() => b.matmul(mm as never), `matmul case ${i}`)) ran++;

      const [rows, cols] = [f.int(1, 9), f.int(1, 40)];
      const sm: Obj = { x: rand(rows * cols, i + 3), out: new Float32Array(rows * cols), rows, cols, scale: 1 };
      f.corrupt(sm, f.pick(['x', 'out', 'rows', 'cols', 'scale', 'threads']));
      if (log) console.log(`softmax #${i}: ${describeCase(sm)}`);
      if (runsOrRefuses(() => b.softmax(sm as never), `softmax case ${i}`)) ran++;
    }
    assert.ok(ran > CASES / 10 && ran < CASES, `${ran} of ${2 * CASES} ran`);
  });

  it('multi-head block: corrupted weights, forward arguments and KV caches', () => {
    const f = new Fuzzer(11);
    const E = 16;
    let ran = 0;
    const good = b.createMultiHead!(mhParams(E, 4, 2, 3));
    try {
      for (let i = 0; i < 300; i++) {
        const p = mhParams(E, 4, 2, i) as unknown as Obj;
        f.corrupt(p, f.pick(['embedDim', 'numHeads', 'numKvHeads', 'headDim', 'kvDim', 'wq', 'wk', 'wv', 'wo', 'bq', 'bo', 'threads']));
        if (log) console.log(`createMultiHead #${i}: ${describeCase(p)}`);
        runsOrRefuses(() => b.createMultiHead!(p as never).dispose(), `createMultiHead case ${i}`);

        const [B, Sq] = [f.int(1, 2), f.int(1, 5)];
        const x = rand(B * Sq * E, i + 9);
        const fw: Obj = { x, kv: x, batch: B, seqQ: Sq, seqKv: Sq, causal: f.int(0, 1) === 0, out: new Float32Array(B * Sq * E) };
        if (f.int(0, 1) === 0) {
          const maxLength = Sq + f.int(0, 3);
          fw.cache = { k: new Float32Array(B * maxLength * 8), v: new Float32Array(B * maxLength * 8), maxLength, length: f.int(0, maxLength - Sq) };
        }
        if (f.int(0, 2) === 0) fw.keyLengths = Int32Array.from({ length: B }, () => f.int(0, Sq));
        const nbad = f.int(1, 2);
        for (let j = 0; j < nbad; j++) f.corrupt(fw, f.pick(['x', 'kv', 'batch', 'seqQ', 'seqKv', 'causal', 'out', 'cache', 'keyLengths', 'mask']));
        if (log) console.log(`forward #${i}: ${describeCase(fw)}`);
        if (runsOrRefuses(() => good.forward(fw as never), `forward case ${i}`)) ran++;
      }
    } finally {
      good.dispose();
    }
    assert.ok(ran > 5, `${ran} forward calls ran`);
    if (log) console.log(`codes: ${JSON.stringify([...codes])}`);
  });
});

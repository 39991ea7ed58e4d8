/**
 * The check that keeps a fast wrong answer from winning: every backend's and peer's output is
 * compared once per shape with the TypeScript reference (src/reference, float64).
 *
 * The reference is slow, so for attention shapes it runs on a subset of heads of the full
 * shape: heads are independent, so the reference on query head h (with its kv head) is exactly
 * that head's slice of the full output. We check query heads 0, 1 and the last: with grouped
 * queries, head 1 is the first whose kv head differs between the grouped mapping (h / group, the
 * one every backend must use) and the interleaved one (h % Hkv), which heads 0 and H-1 cannot tell
 * apart. The multi-head block mixes heads through its projections, so it is
 * checked whole. Expected slices are cached under .tmp/bench/expected so child processes
 * (relaxed-SIMD wasm, memory runs) reuse them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import * as reference from '../src/reference/index.js';
import type { AttentionInputs, Inputs, MhaInputs, Shape } from './shapes.js';
import type { CheckResult } from './types.js';
import { TMP_DIR } from './paths.js';

export interface Expected {
  shape: string;
  /** query heads checked (attention); empty for the multi-head block (checked whole) */
  heads: number[];
  /** per checked head [B, 1, Sq, D] concatenated in the order of `heads`; whole output for mha */
  data: Float32Array;
  against: string;
}

export function checkedHeads(s: Shape): number[] {
  if (s.kind !== 'attention') return [];
  return [...new Set([0, Math.min(1, s.heads - 1), s.heads - 1])];
}

function sliceHead(x: Float32Array, b: number, h: number, hCount: number, rows: number, d: number): Float32Array {
  const head = rows * d;
  const out = new Float32Array(b * head);
  for (let bi = 0; bi < b; bi++) out.set(x.subarray((bi * hCount + h) * head, (bi * hCount + h + 1) * head), bi * head);
  return out;
}

function computeExpected(s: Shape, inputs: Inputs): Expected {
  if (s.kind === 'attention') {
    const a = inputs as AttentionInputs;
    const heads = checkedHeads(s);
    const group = s.heads / s.kvHeads;
    const per = s.batch * s.seqQ * s.headDim;
    const data = new Float32Array(heads.length * per);
    heads.forEach((h, i) => {
      const kvh = Math.floor(h / group);
      const q = sliceHead(a.q, s.batch, h, s.heads, s.seqQ, s.headDim);
      const k = sliceHead(a.k, s.batch, kvh, s.kvHeads, s.seqK, s.headDim);
      const v = sliceHead(a.v, s.batch, kvh, s.kvHeads, s.seqK, s.headDim);
      const r = reference.attention(
        { data: q, shape: [s.batch, 1, s.seqQ, s.headDim] },
        { data: k, shape: [s.batch, 1, s.seqK, s.headDim] },
        { data: v, shape: [s.batch, 1, s.seqK, s.headDim] },
        { causal: s.causal, scale: a.scale },
      );
      data.set(r.output.data, i * per);
    });
    return { shape: s.name, heads, data, against: `reference (float64) on query heads ${heads.join(' and ')}` };
  }
  const m = inputs as MhaInputs;
  const y = reference.multiHeadAttention(
    { data: m.x, shape: [s.batch, s.seq, s.embedDim] },
    { embedDim: s.embedDim, numHeads: s.numHeads, wq: m.wq, wk: m.wk, wv: m.wv, wo: m.wo, bq: m.bq, bk: m.bk, bv: m.bv, bo: m.bo },
  );
  return { shape: s.name, heads: [], data: y.data, against: 'reference (float64), whole output' };
}

const memo = new Map<string, Expected>();

/** Reference output for the checked part of the shape, computed once (cached in memory and on disk). */
export function expectedFor(s: Shape, inputs: Inputs): Expected {
  // the key covers the shape, the heads checked and a fingerprint of the inputs, so a change to
  // any of them recomputes
  const probe = inputs.kind === 'attention' ? [inputs.q, inputs.k, inputs.v] : [inputs.x, inputs.wq, inputs.wo];
  const h = createHash('sha1').update(JSON.stringify(s)).update(JSON.stringify(checkedHeads(s))).update('v2');
  for (const a of probe) h.update(new Uint8Array(a.buffer, a.byteOffset, Math.min(a.byteLength, 256)));
  const key = h.digest('hex').slice(0, 12);
  const hit = memo.get(key);
  if (hit) return hit;
  const dir = path.join(TMP_DIR, 'expected');
  const file = path.join(dir, `${s.name}-${key}.bin`);
  const meta = file + '.json';
  let e: Expected | undefined;
  try {
    const m = JSON.parse(fs.readFileSync(meta, 'utf8')) as Omit<Expected, 'data'>;
    const buf = fs.readFileSync(file);
    e = { ...m, data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)) };
  } catch {
    e = computeExpected(s, inputs);
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(file, new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength));
      fs.writeFileSync(meta, JSON.stringify({ shape: e.shape, heads: e.heads, against: e.against }));
    } catch {
      /* a cache that cannot be written only costs time */
    }
  }
  memo.set(key, e);
  return e;
}

/**
 * Compares an output in canonical layout with the expected slices. Tolerance: 1e-3 of the largest
 * expected magnitude (at least 1e-6). Outputs are averages of values, as small as ~0.03 when a
 * row spreads its weight over thousands of keys, so an absolute bound would be loose there; the
 * kernels and peers agree with the float64 reference to ~4e-7 absolute (about 1e-5 of those
 * outputs), while a wrong scale, mask or head mapping, or dropping 16 of 4096 keys, is off by
 * more.
 */
export function toleranceFor(expected: Expected): number {
  let big = 0;
  for (const x of expected.data) big = Math.max(big, Math.abs(x));
  return Math.max(1e-6, 1e-3 * big);
}

export function compare(s: Shape, expected: Expected, actual: Float32Array, tolerance = toleranceFor(expected)): CheckResult {
  let maxAbsErr = 0;
  let nonFinite = false;
  const upd = (a: number, b: number) => {
    const d = Math.abs(a - b);
    if (!(d <= maxAbsErr)) {
      if (Number.isNaN(d)) nonFinite = true;
      else maxAbsErr = d;
    }
  };
  if (s.kind === 'attention') {
    const per = s.batch * s.seqQ * s.headDim;
    const expectedLen = s.batch * s.heads * s.seqQ * s.headDim;
    if (actual.length !== expectedLen) {
      return { maxAbsErr: Infinity, tolerance, ok: false, against: `${expected.against} (output has ${actual.length} elements, expected ${expectedLen})` };
    }
    expected.heads.forEach((h, i) => {
      const got = sliceHead(actual, s.batch, h, s.heads, s.seqQ, s.headDim);
      for (let j = 0; j < per; j++) upd(got[j], expected.data[i * per + j]);
    });
  } else {
    if (actual.length !== expected.data.length) {
      return { maxAbsErr: Infinity, tolerance, ok: false, against: `${expected.against} (output has ${actual.length} elements, expected ${expected.data.length})` };
    }
    for (let j = 0; j < actual.length; j++) upd(actual[j], expected.data[j]);
  }
  if (nonFinite) maxAbsErr = NaN;
  return { maxAbsErr, tolerance, ok: maxAbsErr <= tolerance, against: expected.against };
}

// Attention for a few query rows (decoding: Sq < 4). decodeRow takes one row; decodeRows takes
// up to four rows of one kv head that see the same keys (grouped-query attention: the query
// heads of a group), reading K and V once for all of them.
//
// The 4-row tiles of attention.ts would be mostly padding here, and packing K would read K
// twice; instead the scores come straight from K's rows (four keys at a time, the four dot
// products reduced together), the row's softmax is computed over the whole row in scratch,
// and O = P * V streams V in blocks of 32 columns. Every visible key is multiplied, zero
// weights included (a weight that underflows to 0 still turns a NaN value into NaN, as in the
// reference); a hidden key's value is never read.
//
// The native direct path streams K and V side by side under an online softmax (one key row of
// block b, one value row of block b - 1), which doubled its read rate. Here the same order
// measured 0.65x this file's order on decode4k (AMD Zen 3, Node 20): the scores pass alone is
// compute-bound in V8's code (~5 GB/s from memory, ~10 GB/s from L2), so the extra O loads and
// stores of the streaming P.V cost more than the read order saves. (pvRow's keys go in blocks of
// PV_KEYS for accuracy, not speed: with V in L2 across its column passes they measured the same.)

import { fmadd, exp2x4, exp2s, hsum, hpmax, LOG2E, toLog2s } from './simd/math';

/** the four dot products q . k0..k3 over D (D4 = D rounded down to 4), as one vector */
// @ts-ignore: decorator
@inline function dot4(q: usize, k0: usize, k1: usize, k2: usize, k3: usize, D: i32): v128 {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const D4 = D & ~3;
  for (let d = 0; d < D4; d += 4) {
    const o = (<usize>d) * 4;
    const qv = v128.load(q + o);
    a0 = fmadd(qv, v128.load(k0 + o), a0);
    a1 = fmadd(qv, v128.load(k1 + o), a1);
    a2 = fmadd(qv, v128.load(k2 + o), a2);
    a3 = fmadd(qv, v128.load(k3 + o), a3);
  }
  // transpose-and-add: lane i of the result is the sum of a_i's lanes
  const t01 = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 2, 6), i32x4.shuffle(a0, a1, 1, 5, 3, 7));
  const t23 = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 2, 6), i32x4.shuffle(a2, a3, 1, 5, 3, 7));
  let s = f32x4.add(i32x4.shuffle(t01, t23, 0, 1, 4, 5), i32x4.shuffle(t01, t23, 2, 3, 6, 7));
  if (D4 < D) {
    let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0;
    for (let d = D4; d < D; d++) {
      const o = (<usize>d) * 4;
      const x = load<f32>(q + o);
      s0 += x * load<f32>(k0 + o);
      s1 += x * load<f32>(k1 + o);
      s2 += x * load<f32>(k2 + o);
      s3 += x * load<f32>(k3 + o);
    }
    s = f32x4.add(s, f32x4(s0, s1, s2, s3));
  }
  return s;
}

// @ts-ignore: decorator
@inline function dot1(q: usize, k0: usize, D: i32): f32 {
  let a = f32x4.splat(0);
  const D4 = D & ~3;
  for (let d = 0; d < D4; d += 4) a = fmadd(v128.load(q + (<usize>d) * 4), v128.load(k0 + (<usize>d) * 4), a);
  let s = hsum(a);
  for (let d = D4; d < D; d++) s += load<f32>(q + (<usize>d) * 4) * load<f32>(k0 + (<usize>d) * 4);
  return s;
}

/**
 * The rest of a row after its scores srow[0..lim) (base 2; lanes up to lim rounded to 4 hold
 * -Infinity): the additive mask, the softmax in place (srow becomes exp2(s - max)), the weights
 * row when w != 0. Returns 1 / l, or 0 when l == 0.
 */
// @ts-ignore: decorator
@inline function finishRow(w: usize, srow: usize, Sk: i32, lim: i32, mask: usize, maskKind: i32, mr: usize, msk: usize): f32 {
  let j = 0;
  if (maskKind == 1) {
    for (j = 0; j < lim; j++) {
      const p = srow + (<usize>j) * 4;
      store<f32>(p, load<f32>(p) + toLog2s(load<f32>(mask + (mr + (<usize>j) * msk) * 4)));
    }
  }
  // softmax over the row (pmax may drop a NaN; exp2 then carries it into the sum)
  const lim4 = (lim + 3) & ~3;
  let l: f32 = 0;
  let inv: f32 = 0;
  if (lim > 0) {
    let mv = v128.load(srow);
    for (j = 4; j < lim4; j += 4) mv = f32x4.pmax(mv, v128.load(srow + (<usize>j) * 4));
    const m = hpmax(mv);
    const vmu = f32x4.splat(m == -Infinity ? 0 : m);
    // summed in blocks of PV_KEYS keys, as pvRow sums the values
    let total = f32x4.splat(0);
    for (let j0 = 0; j0 < lim4; j0 += PV_KEYS) {
      const j1 = min<i32>(lim4, j0 + PV_KEYS);
      let sv = f32x4.splat(0);
      for (j = j0; j < j1; j += 4) {
        const p = srow + (<usize>j) * 4;
        const e = exp2x4(f32x4.sub(v128.load(p), vmu));
        v128.store(p, e);
        sv = f32x4.add(sv, e);
      }
      total = f32x4.add(total, sv);
    }
    l = hsum(total);
    inv = l == 0 ? 0 : 1 / l;
  }
  if (w != 0) {
    const vi = f32x4.splat(inv);
    for (j = 0; j + 4 <= lim; j += 4) v128.store(w + (<usize>j) * 4, f32x4.mul(v128.load(srow + (<usize>j) * 4), vi));
    for (; j < lim; j++) store<f32>(w + (<usize>j) * 4, load<f32>(srow + (<usize>j) * 4) * inv);
    // hidden keys: 0, or NaN in a NaN row (the reference's softmax fills such a row)
    const fill: f32 = l != l ? NaN : 0;
    for (j = lim; j < Sk; j++) store<f32>(w + (<usize>j) * 4, fill);
  }
  return inv;
}

/**
 * One query row: out[0..Dv) (and the weights row, when w != 0) for the keys [0, lim).
 * qrow: the query row already times scale·log2(e). srow: scratch of at least ((Sk + 3) & ~3)
 * floats. Returns nothing; writes out and w.
 */
export function decodeRow(
  out: usize, w: usize, srow: usize, qrow: usize, kbase: usize, kss: usize, vbase: usize, vss: usize,
  Sk: i32, D: i32, Dv: i32, lim: i32,
  mask: usize, maskKind: i32, mr: usize, msk: usize
): void {
  const ldk = kss * 4;
  // ---- scores, in base 2
  let j = 0;
  for (; j + 4 <= lim; j += 4) {
    const k0 = kbase + (<usize>j) * ldk;
    v128.store(srow + (<usize>j) * 4, dot4(qrow, k0, k0 + ldk, k0 + 2 * ldk, k0 + 3 * ldk, D));
  }
  for (; j < lim; j++) store<f32>(srow + (<usize>j) * 4, dot1(qrow, kbase + (<usize>j) * ldk, D));
  const lim4 = (lim + 3) & ~3;
  for (j = lim; j < lim4; j++) store<f32>(srow + (<usize>j) * 4, -Infinity);
  // ---- boolean mask (keys past lim are hidden too, but never visited)
  let anyHidden = false;
  if (maskKind == 2) {
    for (j = 0; j < lim; j++) {
      if (load<u8>(mask + mr + (<usize>j) * msk) == 0) {
        store<f32>(srow + (<usize>j) * 4, -Infinity);
        anyHidden = true;
      }
    }
  }
  const inv = finishRow(w, srow, Sk, lim, mask, maskKind, mr, msk);
  // ---- O = P * V / l; the test for hidden keys only where the mask hid some
  if (anyHidden) pvRow(out, srow, vbase, vss * 4, Dv, lim, inv, mask, mr, msk, true);
  else pvRow(out, srow, vbase, vss * 4, Dv, lim, inv, mask, mr, msk, false);
}

/** 8 floats at o: a block's two sums, stored (the first block) or added to the earlier blocks' */
// @ts-ignore: decorator
@inline function addBlock(o: usize, a: v128, b: v128, first: bool): void {
  v128.store(o, first ? a : f32x4.add(v128.load(o), a));
  v128.store(o, first ? b : f32x4.add(v128.load(o, 16), b), 16);
}

/**
 * out[0..Dv) = inv * sum over keys j < lim of p[j] * V[j], 32 columns at a time, then 4, then 1.
 * With skipHidden, keys the boolean mask hides are left out (their value is never read).
 * Always called with a constant skipHidden, so the other loops carry no test.
 * The keys go in blocks of PV_KEYS whose sums start at zero and are then added to the row's: one
 * running sum over a long row rounded every product at the size of the whole sum (a relative
 * error growing with the row: 1.4e-5 at 131k keys, test/long-rows), where now only a block's
 * products and the row's block sums are.
 */
// @ts-ignore: decorator
@inline function pvRow(
  out: usize, srow: usize, vbase: usize, ldv: usize, Dv: i32, lim: i32, inv: f32,
  mask: usize, mr: usize, msk: usize, skipHidden: bool
): void {
  const vi = f32x4.splat(inv);
  const zero = f32x4.splat(0);
  let d0 = 0;
  for (; d0 + 32 <= Dv; d0 += 32) {
    const dst = out + (<usize>d0) * 4;
    // at least one block, so that a row with no visible key still writes its (zero) sums
    let j0 = 0;
    do {
      const j1 = min<i32>(lim, j0 + PV_KEYS);
      let o0 = zero, o1 = zero, o2 = zero, o3 = zero, o4 = zero, o5 = zero, o6 = zero, o7 = zero;
      let vr = vbase + (<usize>j0) * ldv + (<usize>d0) * 4;
      for (let j = j0; j < j1; j++, vr += ldv) {
        if (skipHidden && load<u8>(mask + mr + (<usize>j) * msk) == 0) continue;
        const p = f32x4.splat(load<f32>(srow + (<usize>j) * 4));
        o0 = fmadd(p, v128.load(vr), o0);
        o1 = fmadd(p, v128.load(vr, 16), o1);
        o2 = fmadd(p, v128.load(vr, 32), o2);
        o3 = fmadd(p, v128.load(vr, 48), o3);
        o4 = fmadd(p, v128.load(vr, 64), o4);
        o5 = fmadd(p, v128.load(vr, 80), o5);
        o6 = fmadd(p, v128.load(vr, 96), o6);
        o7 = fmadd(p, v128.load(vr, 112), o7);
      }
      const first = j0 == 0;
      addBlock(dst, o0, o1, first);
      addBlock(dst + 32, o2, o3, first);
      addBlock(dst + 64, o4, o5, first);
      addBlock(dst + 96, o6, o7, first);
      j0 = j1;
    } while (j0 < lim);
    for (let x: usize = 0; x < 128; x += 16) v128.store(dst + x, f32x4.mul(v128.load(dst + x), vi));
  }
  for (; d0 + 4 <= Dv; d0 += 4) {
    let sum = zero;
    for (let j0 = 0; j0 < lim; j0 += PV_KEYS) {
      const j1 = min<i32>(lim, j0 + PV_KEYS);
      let o0 = zero;
      let vr = vbase + (<usize>j0) * ldv + (<usize>d0) * 4;
      for (let j = j0; j < j1; j++, vr += ldv) {
        if (skipHidden && load<u8>(mask + mr + (<usize>j) * msk) == 0) continue;
        o0 = fmadd(f32x4.splat(load<f32>(srow + (<usize>j) * 4)), v128.load(vr), o0);
      }
      sum = f32x4.add(sum, o0);
    }
    v128.store(out + (<usize>d0) * 4, f32x4.mul(sum, vi));
  }
  for (; d0 < Dv; d0++) {
    let sum: f32 = 0;
    for (let j0 = 0; j0 < lim; j0 += PV_KEYS) {
      const j1 = min<i32>(lim, j0 + PV_KEYS);
      let o: f32 = 0;
      let vr = vbase + (<usize>j0) * ldv + (<usize>d0) * 4;
      for (let j = j0; j < j1; j++, vr += ldv) {
        if (skipHidden && load<u8>(mask + mr + (<usize>j) * msk) == 0) continue;
        o += load<f32>(srow + (<usize>j) * 4) * load<f32>(vr);
      }
      sum += o;
    }
    store<f32>(out + (<usize>d0) * 4, sum * inv);
  }
}

/** keys per block of pvRow and pvRows (pvRows: their V rows stay in cache across the column blocks) */
// @ts-ignore: decorator
@inline const PV_KEYS: i32 = 256;

/** byte offsets of one entry (ROW_BYTES) of the row table decodeRows reads and writes */
// @ts-ignore: decorator
@inline export const ROW_OUT: usize = 0;
// @ts-ignore: decorator
@inline export const ROW_W: usize = 4;
// @ts-ignore: decorator
@inline export const ROW_Q: usize = 8;
// @ts-ignore: decorator
@inline export const ROW_MASK: usize = 12;
// @ts-ignore: decorator
@inline const ROW_INV: usize = 16;
// @ts-ignore: decorator
@inline export const ROW_BYTES: usize = 32;

/**
 * nr (2 to 4) query rows of one kv head that see the same keys [0, lim) and no boolean mask
 * (grouped-query decoding: the query heads of a group). K's rows are read once for all of them,
 * four keys at a time, and V's once per block of PV_KEYS keys, so the rows share the memory
 * traffic that decodeRow would repeat per row. rows: nr entries of ROW_BYTES (output row,
 * weights row or 0, query row times scale·log2(e), mask row offset); srow0: nr scratch rows of sk4 floats each,
 * 16-byte aligned, sk4 >= lim rounded up to 4.
 */
export function decodeRows(
  nr: i32, rows: usize, srow0: usize, sk4: i32, kbase: usize, kss: usize, vbase: usize, vss: usize,
  Sk: i32, D: i32, Dv: i32, lim: i32, mask: usize, maskKind: i32, msk: usize
): void {
  const ldk = kss * 4;
  const rs = (<usize>sk4) * 4;
  // ---- scores, in base 2: four keys against every row while they are in cache
  let j = 0;
  for (; j + 4 <= lim; j += 4) {
    const k0 = kbase + (<usize>j) * ldk;
    for (let r = 0; r < nr; r++) {
      const q = load<usize>(rows + (<usize>r) * ROW_BYTES + ROW_Q);
      v128.store(srow0 + (<usize>r) * rs + (<usize>j) * 4, dot4(q, k0, k0 + ldk, k0 + 2 * ldk, k0 + 3 * ldk, D));
    }
  }
  for (; j < lim; j++) {
    const k0 = kbase + (<usize>j) * ldk;
    for (let r = 0; r < nr; r++) {
      const q = load<usize>(rows + (<usize>r) * ROW_BYTES + ROW_Q);
      store<f32>(srow0 + (<usize>r) * rs + (<usize>j) * 4, dot1(q, k0, D));
    }
  }
  const lim4 = (lim + 3) & ~3;
  for (let r = 0; r < nr; r++) {
    const e = rows + (<usize>r) * ROW_BYTES;
    const srow = srow0 + (<usize>r) * rs;
    for (j = lim; j < lim4; j++) store<f32>(srow + (<usize>j) * 4, -Infinity);
    store<f32>(e + ROW_INV, finishRow(load<usize>(e + ROW_W), srow, Sk, lim, mask, maskKind, load<usize>(e + ROW_MASK), msk));
  }
  pvRows(nr, rows, srow0, rs, vbase, vss * 4, Dv, lim);
}

/**
 * out_r[0..Dv) = inv_r * sum over keys j < lim of p_r[j] * V[j] for the nr rows of decodeRows,
 * 8 columns x 4 rows of accumulators at a time over blocks of PV_KEYS keys. Each block's sums
 * start at zero and are added to the output rows, which hold the earlier blocks' (see pvRow).
 * Rows past nr repeat row 0 and are not stored.
 */
// @ts-ignore: decorator
@inline function pvRows(nr: i32, rows: usize, srow0: usize, rs: usize, vbase: usize, ldv: usize, Dv: i32, lim: i32): void {
  const o0 = load<usize>(rows + ROW_OUT);
  const o1 = nr > 1 ? load<usize>(rows + ROW_BYTES + ROW_OUT) : 0;
  const o2 = nr > 2 ? load<usize>(rows + 2 * ROW_BYTES + ROW_OUT) : 0;
  const o3 = nr > 3 ? load<usize>(rows + 3 * ROW_BYTES + ROW_OUT) : 0;
  const p0 = srow0;
  const p1 = nr > 1 ? srow0 + rs : srow0;
  const p2 = nr > 2 ? srow0 + 2 * rs : srow0;
  const p3 = nr > 3 ? srow0 + 3 * rs : srow0;
  const zero = f32x4.splat(0);
  for (let j0 = 0; j0 < lim; j0 += PV_KEYS) {
    const j1 = min<i32>(lim, j0 + PV_KEYS);
    const first = j0 == 0;
    let d0 = 0;
    for (; d0 + 8 <= Dv; d0 += 8) {
      const co = (<usize>d0) * 4;
      let a0 = zero, b0 = zero, a1 = zero, b1 = zero, a2 = zero, b2 = zero, a3 = zero, b3 = zero;
      let vr = vbase + (<usize>j0) * ldv + co;
      for (let j = j0; j < j1; j++, vr += ldv) {
        const x = v128.load(vr), y = v128.load(vr, 16);
        const jo = (<usize>j) * 4;
        let p = f32x4.splat(load<f32>(p0 + jo));
        a0 = fmadd(p, x, a0);
        b0 = fmadd(p, y, b0);
        p = f32x4.splat(load<f32>(p1 + jo));
        a1 = fmadd(p, x, a1);
        b1 = fmadd(p, y, b1);
        p = f32x4.splat(load<f32>(p2 + jo));
        a2 = fmadd(p, x, a2);
        b2 = fmadd(p, y, b2);
        p = f32x4.splat(load<f32>(p3 + jo));
        a3 = fmadd(p, x, a3);
        b3 = fmadd(p, y, b3);
      }
      addBlock(o0 + co, a0, b0, first);
      if (nr > 1) addBlock(o1 + co, a1, b1, first);
      if (nr > 2) addBlock(o2 + co, a2, b2, first);
      if (nr > 3) addBlock(o3 + co, a3, b3, first);
    }
    // the last columns (fewer than 8) one at a time per row
    for (; d0 < Dv; d0++) {
      for (let r = 0; r < nr; r++) {
        const o = load<usize>(rows + (<usize>r) * ROW_BYTES + ROW_OUT) + (<usize>d0) * 4;
        const pr = srow0 + (<usize>r) * rs;
        let acc: f32 = 0;
        let vr = vbase + (<usize>j0) * ldv + (<usize>d0) * 4;
        for (let j = j0; j < j1; j++, vr += ldv) acc += load<f32>(pr + (<usize>j) * 4) * load<f32>(vr);
        store<f32>(o, first ? acc : load<f32>(o) + acc);
      }
    }
  }
  // normalise (l == 0 gives inv 0: zeros, or NaN from a NaN value read with weight 0)
  for (let r = 0; r < nr; r++) {
    const e = rows + (<usize>r) * ROW_BYTES;
    const o = load<usize>(e + ROW_OUT);
    const inv = load<f32>(e + ROW_INV);
    if (lim == 0) {
      for (let d = 0; d < Dv; d++) store<f32>(o + (<usize>d) * 4, 0);
      continue;
    }
    const vi = f32x4.splat(inv);
    let d = 0;
    for (; d + 4 <= Dv; d += 4) v128.store(o + (<usize>d) * 4, f32x4.mul(v128.load(o + (<usize>d) * 4), vi));
    for (; d < Dv; d++) store<f32>(o + (<usize>d) * 4, load<f32>(o + (<usize>d) * 4) * inv);
  }
}

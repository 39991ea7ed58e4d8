// Scaled dot-product attention, flash style.
//
// For every (batch, kv head) K is packed once into panels of 8 keys (panel[d][8]) and V is
// used in place (or packed with zero padding when Dv is not a multiple of 8). For every query
// head of the group and every block of BR query rows, the kernel streams over tiles of BC
// keys: S = Q_blk * K_tileᵀ through the 4x8 register-blocked micro-kernel (Q pre-scaled by
// scale * log2 e, so scores are in base 2 and the softmax calls exp2), then scale, mask,
// causal limit and keyLengths are applied, the online softmax updates the running row max m
// and sum l (rescaling the output accumulator when the max grows), and O += P * V_tile through
// the same micro-kernel. Tiles wholly past the causal diagonal / key length are never visited.
//
// When weights are requested the normalised P is needed, so a first sweep computes the final
// m and l of every row and a second recomputes S, writes P = exp2(S - m) / l and accumulates O.
//
// Pointer ABI: output first; byte pointers (0 = absent); element strides (0 = broadcast, for the
// mask); maskKind 0 none, 1 additive float32 (added to the scaled scores), 2 boolean uint8 (0
// hides); keyLens an int32 per batch; weights, when given, the contiguous [B, Hq, Sq, Sk] P;
// `scratch` is attentionScratchBytes(...) bytes provided by the caller. No allocation.
// Fewer than 4 query rows (decoding) go to attention-decode.ts instead.

import { kernel4x8 } from './simd/gemm';
import { packRows8 } from './simd/pack';
import { decodeRow, decodeRows, ROW_BYTES, ROW_MASK, ROW_OUT, ROW_Q, ROW_W } from './attention-decode';
import { exp2x4, exp2s, hsum, hpmax, LOG2E, toLog2s, toLog2x4 } from './simd/math';

/** query rows per block (multiple of 4, the micro-kernel's rows) */
// @ts-ignore: decorator
@inline const BR: i32 = 32;
/** keys per tile (multiple of 8) */
// @ts-ignore: decorator
@inline const BC: i32 = 64;


/** bytes of scratch attention() needs */
export function attentionScratchBytes(seqK: i32, headDim: i32, headDimV: i32): f64 {
  // in f64, exact: a 32-bit size wraps from 4 GiB on (and JS would read 2 GiB and up as negative),
  // which once handed the kernel a 64-byte block for gigabytes of packed K and V
  const sk8 = Math.ceil(<f64>seqK / 8) * 8;
  const dv8 = Math.ceil(<f64>headDimV / 8) * 8;
  const D = <f64>headDim;
  return 4 * (sk8 * D + sk8 * dv8 + <f64>BR * D + <f64>BR * <f64>BC + <f64>BR * dv8 + 3 * <f64>BR) + 256;
}

// @ts-ignore: decorator
@inline function align16(p: usize): usize {
  return (p + 15) & ~(<usize>15);
}

/** S[r][0..tw8) for r < rows4 = Qb[r] . K[j0 + c], then limits and mask applied to rows < rows */
// @ts-ignore: decorator
@inline function scoreTile(
  S: usize, Qb: usize, Kp: usize, D: i32, j0: i32, tw: i32, rows: i32, rows4: i32, lim: usize,
  mask: usize, maskKind: i32, mrow0: usize, msq: usize, msk: usize
): i32 {
  const tw8 = (tw + 7) & ~7;
  const lda = (<usize>D) * 4;
  for (let r = 0; r < rows4; r += 4) {
    const a = Qb + (<usize>r) * lda;
    const crow = S + (<usize>r) * (<usize>BC) * 4;
    for (let c = 0; c < tw8; c += 8) {
      const panel = Kp + (<usize>((j0 + c) >> 3)) * (<usize>D) * 32;
      kernel4x8(a, lda, panel, 32, D, crow + (<usize>c) * 4, (<usize>BC) * 4, 0, false);
    }
  }
  const ninf = f32x4.splat(-Infinity);
  for (let r = 0; r < rows; r++) {
    const srow = S + (<usize>r) * (<usize>BC) * 4;
    let jv = load<i32>(lim + (<usize>r) * 4) - j0; // visible columns [0, jv)
    if (jv < 0) jv = 0;
    if (jv > tw8) jv = tw8;
    let c = jv;
    for (; c < tw8 && (c & 3) != 0; c++) store<f32>(srow + (<usize>c) * 4, -Infinity);
    for (; c < tw8; c += 4) v128.store(srow + (<usize>c) * 4, ninf);
    if (maskKind != 0 && jv > 0) {
      const mr = mrow0 + (<usize>r) * msq;
      if (maskKind == 1) {
        if (msk == 1) {
          const mp = mask + (mr + <usize>j0) * 4;
          c = 0;
          for (; c + 4 <= jv; c += 4) {
            const p = srow + (<usize>c) * 4;
            v128.store(p, f32x4.add(v128.load(p), toLog2x4(v128.load(mp + (<usize>c) * 4))));
          }
          for (; c < jv; c++) {
            const p = srow + (<usize>c) * 4;
            store<f32>(p, load<f32>(p) + toLog2s(load<f32>(mp + (<usize>c) * 4)));
          }
        } else {
          for (c = 0; c < jv; c++) {
            const p = srow + (<usize>c) * 4;
            store<f32>(p, load<f32>(p) + toLog2s(load<f32>(mask + (mr + (<usize>(j0 + c)) * msk) * 4)));
          }
        }
      } else {
        for (c = 0; c < jv; c++) {
          if (load<u8>(mask + mr + (<usize>(j0 + c)) * msk) == 0) store<f32>(srow + (<usize>c) * 4, -Infinity);
        }
      }
    }
  }
  return tw8;
}

/** true when rows [0, n) x [0, cols) (cols a multiple of 4) hold a NaN or an Infinity */
function hasNonFinite(base: usize, ld: usize, n: i32, cols: i32): bool {
  let acc = f32x4.splat(0);
  for (let j = 0; j < n; j++) {
    const row = base + (<usize>j) * ld;
    for (let d = 0; d < cols; d += 4) {
      const x = v128.load(row + (<usize>d) * 4);
      acc = f32x4.add(acc, f32x4.sub(x, x)); // x - x is 0, or NaN for NaN and +-Infinity
    }
  }
  return hsum(acc) != 0;
}

/**
 * O[rows4][dv8] += P[rows4][tw] * V_tile[tw][dv8] through the micro-kernel, which multiplies every
 * key: a visible key whose weight underflowed to 0 still turns a NaN value into NaN, as in the
 * reference. With skipHidden (V holds a NaN or an Infinity and some keys are hidden) it goes row
 * by row instead, leaving out the keys hidden from each row (past its limit in LIM, or hidden by
 * the boolean mask): a hidden key's value is never read.
 */
// @ts-ignore: decorator
@inline function pvTile(
  S: usize, O: usize, ldo: usize, vt: usize, ldv: usize, j0: i32, tw: i32, rows: i32, rows4: i32, dv8: i32,
  skipHidden: bool, lim: usize, mask: usize, maskKind: i32, mrow0: usize, msq: usize, msk: usize
): void {
  if (!skipHidden) {
    for (let r = 0; r < rows4; r += 4) {
      const prow = S + (<usize>r) * (<usize>BC) * 4;
      const orow = O + (<usize>r) * ldo;
      for (let d0 = 0; d0 < dv8; d0 += 8) {
        kernel4x8(prow, (<usize>BC) * 4, vt + (<usize>d0) * 4, ldv, tw, orow + (<usize>d0) * 4, ldo, 0, true);
      }
    }
  } else {
    // each row's keys of the tile summed from zero, then added to O (as the micro-kernel does)
    for (let r = 0; r < rows; r++) {
      const prow = S + (<usize>r) * (<usize>BC) * 4;
      const orow = O + (<usize>r) * ldo;
      const mr = mrow0 + (<usize>r) * msq;
      const jv = min<i32>(load<i32>(lim + (<usize>r) * 4) - j0, tw); // this row's keys [0, jv)
      for (let d = 0; d < dv8; d += 4) {
        let acc = f32x4.splat(0);
        let vr = vt + (<usize>d) * 4;
        for (let j = 0; j < jv; j++, vr += ldv) {
          if (maskKind == 2 && load<u8>(mask + mr + (<usize>(j0 + j)) * msk) == 0) continue;
          acc = f32x4.add(acc, f32x4.mul(f32x4.splat(load<f32>(prow + (<usize>j) * 4)), v128.load(vr)));
        }
        const o = orow + (<usize>d) * 4;
        v128.store(o, f32x4.add(v128.load(o), acc));
      }
    }
  }
}

/** batch b's key length: keyLengths[b] clamped to [0, Sk], or Sk without keyLengths */
// @ts-ignore: decorator
@inline function keyLength(keyLens: usize, b: i32, Sk: i32): i32 {
  const kl = keyLens != 0 ? load<i32>(keyLens + (<usize>b) * 4) : Sk;
  return kl > Sk ? Sk : kl < 0 ? 0 : kl;
}

/** keys [0, limit) query row i sees: the key length kl, then the causal diagonal */
// @ts-ignore: decorator
@inline function rowKeyLimit(kl: i32, causal: i32, i: i32, off: i32): i32 {
  let lim = kl;
  if (causal != 0) lim = min<i32>(lim, i + off + 1);
  return lim < 0 ? 0 : lim;
}

// @ts-ignore: decorator
@inline function rowMax(srow: usize, tw8: i32): f32 {
  // pmax (one maxps) may drop a NaN score; the NaN still reaches the row sum through exp2,
  // which makes the row's output and weights NaN as the reference's are
  let mv = v128.load(srow);
  for (let c = 4; c < tw8; c += 4) mv = f32x4.pmax(mv, v128.load(srow + (<usize>c) * 4));
  return hpmax(mv);
}

export function attention(
  out: usize, q: usize, k: usize, v: usize, mask: usize, keyLens: usize, weights: usize, scratch: usize,
  B: i32, Hq: i32, Hkv: i32, Sq: i32, Sk: i32, D: i32, Dv: i32,
  qsb: usize, qsh: usize, qss: usize,
  ksb: usize, ksh: usize, kss: usize,
  vsb: usize, vsh: usize, vss: usize,
  osb: usize, osh: usize, oss: usize,
  msb: usize, msh: usize, msq: usize, msk: usize,
  maskKind: i32, causal: i32, scale: f32
): void {
  const sk8 = (Sk + 7) & ~7;
  const dv8 = (Dv + 7) & ~7;
  const group = Hq / Hkv;
  const off = Sk - Sq;
  const s2 = scale * LOG2E;
  const packV = (Dv & 7) != 0;

  // scratch layout
  const Kp = align16(scratch);
  const Vp = align16(Kp + (<usize>sk8) * (<usize>D) * 4);
  const Qb = align16(Vp + (packV ? (<usize>sk8) * (<usize>dv8) * 4 : 0));
  const S = align16(Qb + (<usize>BR) * (<usize>D) * 4);
  const O = align16(S + (<usize>BR) * (<usize>BC) * 4);
  const M = align16(O + (<usize>BR) * (<usize>dv8) * 4);
  const L = M + (<usize>BR) * 4;
  const LIM = L + (<usize>BR) * 4;
  const ldo = (<usize>dv8) * 4;
  const zero = f32x4.splat(0);

  if (Sq < 4) {
    // ---- decoding: a few query rows straight against K and V (attention-decode.ts). The rows
    // of one kv head (its group's query heads x Sq) that see the same keys, with no boolean
    // mask, go up to four at a time through decodeRows, which reads K and V once for them all;
    // the others one at a time through decodeRow.
    // scratch: four score rows of sk4 floats, the row table, then four query rows times
    // scale·log2(e) (attentionScratchBytes counts sk8 * dv8 >= 8 * sk8 floats for V alone and
    // sk8 * D >= 8 * D for K, so all fit). The query is scaled before its dot products, as the
    // blocked path packs it: scaling the sums after would overflow where q·k passes float32's
    // range but scale·q·k does not.
    const nrows = group * Sq;
    const sk4 = (Sk + 3) & ~3;
    const srows = align16(scratch);
    const table = align16(srows + 4 * (<usize>sk4) * 4);
    const qrows = align16(table + 4 * ROW_BYTES);
    for (let b = 0; b < B; b++) {
      const kl = keyLength(keyLens, b, Sk);
      for (let hk = 0; hk < Hkv; hk++) {
        const kbase = k + ((<usize>b) * ksb + (<usize>hk) * ksh) * 4;
        const vbase = v + ((<usize>b) * vsb + (<usize>hk) * vsh) * 4;
        // rows in query order, the group's heads inside: a query's rows see the same keys
        let r = 0;
        while (r < nrows) {
          // the longest run from r (at most 4) with one key limit, when no boolean mask
          const lim0 = rowKeyLimit(kl, causal, r / group, off);
          let nr = 1;
          if (maskKind != 2) {
            while (nr < 4 && r + nr < nrows && rowKeyLimit(kl, causal, (r + nr) / group, off) == lim0) nr++;
          }
          for (let x = 0; x < nr; x++) {
            const h = hk * group + (r + x) % group, i = (r + x) / group;
            const e = table + (<usize>x) * ROW_BYTES;
            store<usize>(e + ROW_OUT, out + ((<usize>b) * osb + (<usize>h) * osh + (<usize>i) * oss) * 4);
            store<usize>(e + ROW_W, weights != 0 ? weights + (((<usize>b) * (<usize>Hq) + <usize>h) * (<usize>Sq) + <usize>i) * (<usize>Sk) * 4 : 0);
            const qsrc = q + ((<usize>b) * qsb + (<usize>h) * qsh + (<usize>i) * qss) * 4;
            const qdst = qrows + (<usize>x) * (<usize>D) * 4;
            for (let d = 0; d < D; d++) store<f32>(qdst + (<usize>d) * 4, load<f32>(qsrc + (<usize>d) * 4) * s2);
            store<usize>(e + ROW_Q, qdst);
            store<usize>(e + ROW_MASK, (<usize>b) * msb + (<usize>h) * msh + (<usize>i) * msq);
          }
          if (nr > 1) {
            decodeRows(nr, table, srows, sk4, kbase, kss, vbase, vss, Sk, D, Dv, lim0, mask, maskKind, msk);
          } else {
            decodeRow(
              load<usize>(table + ROW_OUT), load<usize>(table + ROW_W), srows, load<usize>(table + ROW_Q),
              kbase, kss, vbase, vss, Sk, D, Dv, lim0, mask, maskKind, load<usize>(table + ROW_MASK), msk,
            );
          }
          r += nr;
        }
      }
    }
    return;
  }

  for (let b = 0; b < B; b++) {
    const kl = keyLength(keyLens, b, Sk);
    for (let hk = 0; hk < Hkv; hk++) {
      // ---- pack K [kl rounded up to 8 keys] into panels, zero beyond Sk
      const kbase = k + ((<usize>b) * ksb + (<usize>hk) * ksh) * 4;
      const kpack = min<i32>(sk8, (kl + 7) & ~7);
      packRows8(Kp, kbase, kss * 4, Sk, kpack, D);
      // ---- V in place, or packed with Dv padded to 8
      const vbase0 = v + ((<usize>b) * vsb + (<usize>hk) * vsh) * 4;
      let vbase = vbase0;
      let ldv = vss * 4;
      if (packV) {
        for (let j = 0; j < kl; j++) {
          const src = vbase0 + (<usize>j) * vss * 4;
          const dst = Vp + (<usize>j) * (<usize>dv8) * 4;
          for (let d = 0; d < dv8; d++) store<f32>(dst + (<usize>d) * 4, d < Dv ? load<f32>(src + (<usize>d) * 4) : 0);
        }
        vbase = Vp;
        ldv = (<usize>dv8) * 4;
      }
      // a NaN / Infinity in V must not leak through a hidden key's zero weight (0 * NaN); only
      // causal limits and a boolean mask hide keys inside the tiles (past kl none are visited)
      const skipHidden = (causal != 0 || maskKind == 2) && hasNonFinite(vbase, ldv, kl, dv8);

      for (let g = 0; g < group; g++) {
        const h = hk * group + g;
        const qbase = q + ((<usize>b) * qsb + (<usize>h) * qsh) * 4;
        const obase = out + ((<usize>b) * osb + (<usize>h) * osh) * 4;
        const mbase = (<usize>b) * msb + (<usize>h) * msh;
        for (let i0 = 0; i0 < Sq; i0 += BR) {
          const rows = min<i32>(BR, Sq - i0);
          const rows4 = (rows + 3) & ~3;
          // Q block, pre-scaled into base 2
          for (let r = 0; r < rows4; r++) {
            const dst = Qb + (<usize>r) * (<usize>D) * 4;
            if (r < rows) {
              const src = qbase + (<usize>(i0 + r)) * qss * 4;
              const vs2 = f32x4.splat(s2);
              let d = 0;
              for (; d + 4 <= D; d += 4) v128.store(dst + (<usize>d) * 4, f32x4.mul(v128.load(src + (<usize>d) * 4), vs2));
              for (; d < D; d++) store<f32>(dst + (<usize>d) * 4, load<f32>(src + (<usize>d) * 4) * s2);
            } else {
              for (let d = 0; d < D; d++) store<f32>(dst + (<usize>d) * 4, 0);
            }
          }
          // per-row visible key limits; the block's last key
          let kEnd = 0;
          for (let r = 0; r < rows; r++) {
            const lim = rowKeyLimit(kl, causal, i0 + r, off);
            store<i32>(LIM + (<usize>r) * 4, lim);
            if (lim > kEnd) kEnd = lim;
            store<f32>(M + (<usize>r) * 4, -Infinity);
            store<f32>(L + (<usize>r) * 4, 0);
          }
          for (let x: usize = 0; x < (<usize>rows4) * ldo; x += 16) v128.store(O + x, zero);
          const mrow0 = mbase + (<usize>i0) * msq;

          if (weights == 0) {
            // ---- single sweep, online softmax
            for (let j0 = 0; j0 < kEnd; j0 += BC) {
              const tw = min<i32>(BC, kEnd - j0);
              const tw8 = scoreTile(S, Qb, Kp, D, j0, tw, rows, rows4, LIM, mask, maskKind, mrow0, msq, msk);
              for (let r = 0; r < rows; r++) {
                const srow = S + (<usize>r) * (<usize>BC) * 4;
                const mold = load<f32>(M + (<usize>r) * 4);
                const mnew = max<f32>(mold, rowMax(srow, tw8));
                const mu: f32 = mnew == -Infinity ? 0 : mnew;
                const vmu = f32x4.splat(mu);
                let sv = zero;
                for (let c = 0; c < tw8; c += 4) {
                  const p = srow + (<usize>c) * 4;
                  const e = exp2x4(f32x4.sub(v128.load(p), vmu));
                  v128.store(p, e);
                  sv = f32x4.add(sv, e);
                }
                const alpha = exp2s(mold - mu);
                store<f32>(L + (<usize>r) * 4, load<f32>(L + (<usize>r) * 4) * alpha + hsum(sv));
                store<f32>(M + (<usize>r) * 4, mnew);
                if (alpha != 1) {
                  const va = f32x4.splat(alpha);
                  const orow = O + (<usize>r) * ldo;
                  for (let d = 0; d < dv8; d += 4) {
                    v128.store(orow + (<usize>d) * 4, f32x4.mul(v128.load(orow + (<usize>d) * 4), va));
                  }
                }
              }
              for (let r = rows; r < rows4; r++) {
                const srow = S + (<usize>r) * (<usize>BC) * 4;
                for (let c = 0; c < tw8; c += 4) v128.store(srow + (<usize>c) * 4, zero);
              }
              pvTile(S, O, ldo, vbase + (<usize>j0) * ldv, ldv, j0, tw, rows, rows4, dv8, skipHidden, LIM, mask, maskKind, mrow0, msq, msk);
            }
            // normalise and write
            for (let r = 0; r < rows; r++) {
              const l = load<f32>(L + (<usize>r) * 4);
              const inv: f32 = l == 0 ? 0 : 1 / l;
              const vi = f32x4.splat(inv);
              const orow = O + (<usize>r) * ldo;
              const dst = obase + (<usize>(i0 + r)) * oss * 4;
              let d = 0;
              for (; d + 4 <= Dv; d += 4) v128.store(dst + (<usize>d) * 4, f32x4.mul(v128.load(orow + (<usize>d) * 4), vi));
              for (; d < Dv; d++) store<f32>(dst + (<usize>d) * 4, load<f32>(orow + (<usize>d) * 4) * inv);
            }
          } else {
            // ---- sweep 1: final row max and sum
            for (let j0 = 0; j0 < kEnd; j0 += BC) {
              const tw = min<i32>(BC, kEnd - j0);
              const tw8 = scoreTile(S, Qb, Kp, D, j0, tw, rows, rows4, LIM, mask, maskKind, mrow0, msq, msk);
              for (let r = 0; r < rows; r++) {
                const srow = S + (<usize>r) * (<usize>BC) * 4;
                const mold = load<f32>(M + (<usize>r) * 4);
                const mnew = max<f32>(mold, rowMax(srow, tw8));
                const mu: f32 = mnew == -Infinity ? 0 : mnew;
                const vmu = f32x4.splat(mu);
                let sv = zero;
                for (let c = 0; c < tw8; c += 4) {
                  sv = f32x4.add(sv, exp2x4(f32x4.sub(v128.load(srow + (<usize>c) * 4), vmu)));
                }
                const alpha = exp2s(mold - mu);
                store<f32>(L + (<usize>r) * 4, load<f32>(L + (<usize>r) * 4) * alpha + hsum(sv));
                store<f32>(M + (<usize>r) * 4, mnew);
              }
            }
            // ---- sweep 2: P = exp2(S - m) / l, written out and multiplied into V
            for (let j0 = 0; j0 < kEnd; j0 += BC) {
              const tw = min<i32>(BC, kEnd - j0);
              const tw8 = scoreTile(S, Qb, Kp, D, j0, tw, rows, rows4, LIM, mask, maskKind, mrow0, msq, msk);
              for (let r = 0; r < rows; r++) {
                const srow = S + (<usize>r) * (<usize>BC) * 4;
                const m = load<f32>(M + (<usize>r) * 4);
                const l = load<f32>(L + (<usize>r) * 4);
                const vmu = f32x4.splat(m == -Infinity ? 0 : m);
                const inv: f32 = l == 0 ? 0 : 1 / l;
                const vi = f32x4.splat(inv);
                for (let c = 0; c < tw8; c += 4) {
                  const p = srow + (<usize>c) * 4;
                  v128.store(p, f32x4.mul(exp2x4(f32x4.sub(v128.load(p), vmu)), vi));
                }
                const wrow = weights + ((((<usize>b) * (<usize>Hq) + <usize>h) * (<usize>Sq) + <usize>(i0 + r)) * (<usize>Sk) + <usize>j0) * 4;
                memory.copy(wrow, srow, (<usize>tw) * 4);
              }
              for (let r = rows; r < rows4; r++) {
                const srow = S + (<usize>r) * (<usize>BC) * 4;
                for (let c = 0; c < tw8; c += 4) v128.store(srow + (<usize>c) * 4, zero);
              }
              pvTile(S, O, ldo, vbase + (<usize>j0) * ldv, ldv, j0, tw, rows, rows4, dv8, skipHidden, LIM, mask, maskKind, mrow0, msq, msk);
            }
            for (let r = 0; r < rows; r++) {
              // weights past the block's last visible key are zero (NaN in a NaN row, as the
              // reference's softmax fills a row holding a NaN score)
              if (kEnd < Sk) {
                const wrow = weights + ((((<usize>b) * (<usize>Hq) + <usize>h) * (<usize>Sq) + <usize>(i0 + r)) * (<usize>Sk) + <usize>kEnd) * 4;
                const l = load<f32>(L + (<usize>r) * 4);
                if (l != l) {
                  for (let j = 0; j < Sk - kEnd; j++) store<f32>(wrow + (<usize>j) * 4, NaN);
                } else {
                  memory.fill(wrow, 0, (<usize>(Sk - kEnd)) * 4);
                }
              }
              const orow = O + (<usize>r) * ldo;
              const dst = obase + (<usize>(i0 + r)) * oss * 4;
              memory.copy(dst, orow, (<usize>Dv) * 4);
            }
          }
        }
      }
    }
  }
}

// Batched matmul: C[bi] = A[bi] (m x k) * B[bi] (k x n, or n x k when transB) + bias (n).
// Pointer ABI: output first, byte pointers, element strides; `scratch` is caller-provided
// memory of matmulScratchBytes(n, k, packAll) bytes. Nothing is allocated here.

import { kernel4x8, kernel1x8, kernel1x32 } from './simd/gemm';
import { fmadd } from './simd/math';
import { packRows8 } from './simd/pack';

/**
 * bytes of scratch matmul() needs for these n, k: all of B's panels when B is shared by several
 * matrices (packAll != 0), else PACK_STRIP panels (see matmul)
 */
export function matmulScratchBytes(n: i32, k: i32, packAll: i32): f64 {
  // f64, exact (see attentionScratchBytes)
  const np = Math.ceil(<f64>n / 8);
  return (packAll != 0 ? np : Math.min(np, <f64>PACK_STRIP)) * <f64>k * 32 + np * 32 + 4 * 32 + 64;
}

/** Packs B into panels of 8 columns: panel p, row kk at panels + (p*k + kk) * 32 bytes. */
export function matmulPack(panels: usize, B: usize, n: i32, k: i32, transB: bool): void {
  packPanels(panels, B, n, k, transB, 0, (n + 7) >> 3);
}

/** Packs panels [p0, p1) of B, panel p0 at `dst` (the layout of matmulPack, from p0 on). */
function packPanels(dst: usize, B: usize, n: i32, k: i32, transB: bool, p0: i32, p1: i32): void {
  const panelBytes = (<usize>k) * 32;
  // B [n][k]: its rows are the panels' columns, transposed 4 x 4 through registers
  if (transB) {
    packRows8(dst, B + (<usize>(p0 << 3)) * (<usize>k) * 4, (<usize>k) * 4, n - (p0 << 3), (p1 - p0) << 3, k);
    return;
  }
  // B [k][n], row by row across the panels: each row's piece is read in one contiguous run
  // (panel after panel down all k rows reads 32 bytes per row and page: 1 x 768 x 3072 took ~3x
  // as long)
  const full = min<i32>(p1, n >> 3);
  const ldb = (<usize>n) * 4;
  for (let kk = 0; kk < k; kk++) {
    let src = B + (<usize>kk) * ldb + (<usize>p0) * 32;
    let d = dst + (<usize>kk) * 32;
    for (let p = p0; p < full; p++) {
      v128.store(d, v128.load(src));
      v128.store(d, v128.load(src, 16), 16);
      src += 32;
      d += panelBytes;
    }
  }
  if (full < p1) {
    const c0 = full << 3;
    const cols = n - c0;
    const pd = dst + (<usize>(full - p0)) * panelBytes;
    for (let kk = 0; kk < k; kk++) {
      const src = B + (<usize>kk) * ldb + (<usize>c0) * 4;
      const d = pd + (<usize>kk) * 32;
      for (let c = 0; c < 8; c++) store<f32>(d + (<usize>c) * 4, c < cols ? load<f32>(src + (<usize>c) * 4) : 0);
    }
  }
}

// @ts-ignore: decorator
@inline const PACK_STRIP: i32 = 16; // panels packed at a time for one matrix: 512 bytes of each row of B [k][n]

/** bytes matmulPacked() needs for packed weights of n outputs and k inputs (panels, then a padded bias) */
export function matmulPackedBytes(n: i32, k: i32): f64 {
  const np = Math.ceil(<f64>n / 8);
  return np * <f64>k * 32 + np * 32;
}

/**
 * Packs weights once for matmulPacked(): B as in matmul (transB: [n][k], the nn.Linear layout)
 * and an optional bias, into `dst` (matmulPackedBytes(n, k) bytes, 16-aligned).
 */
export function matmulPrepack(dst: usize, b: usize, bias: usize, n: i32, k: i32, transB: i32): void {
  const np = (n + 7) >> 3;
  matmulPack(dst, b, n, k, transB != 0);
  const biasP = dst + (<usize>np) * (<usize>k) * 32;
  for (let i = 0; i < np * 8; i++) {
    store<f32>(biasP + (<usize>i) * 4, bias != 0 && i < n ? load<f32>(bias + (<usize>i) * 4) : 0);
  }
}

/** C (m x n) = A (m x k) * packed B + packed bias; `tmp` is 128 bytes of scratch (16-aligned). */
export function matmulPacked(out: usize, a: usize, packed: usize, m: i32, n: i32, k: i32, tmp: usize): void {
  const np = (n + 7) >> 3;
  panelsTimes(out, a, packed, packed + (<usize>np) * (<usize>k) * 32, tmp, m, n, k);
}

/** C = A * panels + bias for one matrix: every 8-column panel against every row (4 rows at a time). */
function panelsTimes(C: usize, A: usize, panels: usize, biasP: usize, tmp: usize, m: i32, n: i32, k: i32): void {
  panelRangeTimes(C, A, panels, biasP, tmp, m, n, k, 0, (n + 7) >> 3);
}

/**
 * columns of panels [p0, p1) of C = A * panels + bias, panel p0 at `panels`: groups of four
 * whole panels, their 4-row tiles and then their last 1-3 rows four panels at a time
 * (kernel1x32, while the group is still in cache); the rest panel by panel
 */
function panelRangeTimes(C: usize, A: usize, panels: usize, biasP: usize, tmp: usize, m: i32, n: i32, k: i32, p0: i32, p1: i32): void {
  const panelBytes = (<usize>k) * 32;
  const lda = (<usize>k) * 4;
  const ldc = (<usize>n) * 4;
  const m4 = m & ~3;
  const full = min<i32>(p1, n >> 3);
  let p = p0;
  if (m4 < m) {
    for (; p + 4 <= full; p += 4) {
      const group = panels + (<usize>(p - p0)) * panelBytes;
      for (let j = 0; j < 4; j++) panelTimes(C, A, group + (<usize>j) * panelBytes, biasP, tmp, m4, n, k, p + j);
      for (let r = m4; r < m; r++) {
        kernel1x32(A + (<usize>r) * lda, group, panelBytes, k, C + (<usize>r) * ldc + (<usize>p) * 32, biasP + (<usize>p) * 32);
      }
    }
  }
  for (; p < p1; p++) panelTimes(C, A, panels + (<usize>(p - p0)) * panelBytes, biasP, tmp, m, n, k, p);
}

/** columns 8p.. of C = A * panel + bias (every row, 4 at a time) */
function panelTimes(C: usize, A: usize, panel: usize, biasP: usize, tmp: usize, m: i32, n: i32, k: i32, p: i32): void {
  const lda = (<usize>k) * 4;
  const ldc = (<usize>n) * 4;
  const init = biasP + (<usize>p) * 32;
  const c0 = p << 3;
  const cols = min<i32>(8, n - c0);
  let r = 0;
  if (cols == 8) {
    for (; r + 4 <= m; r += 4) {
      kernel4x8(A + (<usize>r) * lda, lda, panel, 32, k, C + (<usize>r) * ldc + (<usize>c0) * 4, ldc, init, false);
    }
    for (; r < m; r++) {
      kernel1x8(A + (<usize>r) * lda, panel, 32, k, C + (<usize>r) * ldc + (<usize>c0) * 4, init);
    }
  } else {
    for (; r + 4 <= m; r += 4) {
      kernel4x8(A + (<usize>r) * lda, lda, panel, 32, k, tmp, 32, init, false);
      for (let rr = 0; rr < 4; rr++) {
        const dst = C + (<usize>(r + rr)) * ldc + (<usize>c0) * 4;
        for (let c = 0; c < cols; c++) {
          store<f32>(dst + (<usize>c) * 4, load<f32>(tmp + (<usize>(rr * 8 + c)) * 4));
        }
      }
    }
    for (; r < m; r++) {
      kernel1x8(A + (<usize>r) * lda, panel, 32, k, tmp, init);
      const dst = C + (<usize>r) * ldc + (<usize>c0) * 4;
      for (let c = 0; c < cols; c++) store<f32>(dst + (<usize>c) * 4, load<f32>(tmp + (<usize>c) * 4));
    }
  }
}

/**
 * C = A * B + bias for m < 4 rows and B [k][n], B read once, row after row: each row of C
 * accumulates A[r][kk] * B[kk] in kk order from the bias, the same operations kernel1x8 does
 * on a packed panel, so the same results, without the pass that packs B (a 1 x 768 x 3072
 * product spent most of its time writing and reading back B's packed copy). Columns go in
 * chunks so that the rows of C being summed stay in L1, and depth steps four at a time, so that
 * C is loaded and stored once per four multiply-adds (1 x 768 x 3072: B read at 5 → 17 GB/s).
 */
function fewRowsTimesB(C: usize, A: usize, B: usize, biasP: usize, m: i32, n: i32, k: i32): void {
  const lda = (<usize>k) * 4;
  const ld = (<usize>n) * 4;
  for (let j0 = 0; j0 < n; j0 += ROW_CHUNK) {
    const j1 = min<i32>(n, j0 + ROW_CHUNK);
    const j4 = j0 + ((j1 - j0) & ~3);
    for (let r = 0; r < m; r++) memory.copy(C + (<usize>r) * ld + (<usize>j0) * 4, biasP + (<usize>j0) * 4, (<usize>(j1 - j0)) * 4);
    let kk = 0;
    // four depth steps per load and store of C (the same operations in the same order)
    for (; kk + 4 <= k; kk += 4) {
      const b0 = B + (<usize>kk) * ld;
      const b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld;
      for (let r = 0; r < m; r++) {
        const a = A + (<usize>r) * lda + (<usize>kk) * 4;
        const s0 = v128.load32_splat(a), s1 = v128.load32_splat(a + 4), s2 = v128.load32_splat(a + 8), s3 = v128.load32_splat(a + 12);
        const crow = C + (<usize>r) * ld;
        for (let j = j0; j < j4; j += 4) {
          const o = (<usize>j) * 4;
          let c = v128.load(crow + o);
          c = fmadd(s0, v128.load(b0 + o), c);
          c = fmadd(s1, v128.load(b1 + o), c);
          c = fmadd(s2, v128.load(b2 + o), c);
          c = fmadd(s3, v128.load(b3 + o), c);
          v128.store(crow + o, c);
        }
        for (let j = j4; j < j1; j++) {
          const o = (<usize>j) * 4;
          let c = v128.load32_zero(crow + o);
          c = fmadd(s0, v128.load32_zero(b0 + o), c);
          c = fmadd(s1, v128.load32_zero(b1 + o), c);
          c = fmadd(s2, v128.load32_zero(b2 + o), c);
          c = fmadd(s3, v128.load32_zero(b3 + o), c);
          store<f32>(crow + o, f32x4.extract_lane(c, 0));
        }
      }
    }
    for (; kk < k; kk++) {
      const brow = B + (<usize>kk) * ld;
      for (let r = 0; r < m; r++) {
        const a = A + (<usize>r) * lda + (<usize>kk) * 4;
        const s = v128.load32_splat(a);
        const crow = C + (<usize>r) * ld;
        for (let j = j0; j < j4; j += 4) {
          const o = (<usize>j) * 4;
          v128.store(crow + o, fmadd(s, v128.load(brow + o), v128.load(crow + o)));
        }
        // the last 1-3 columns one lane at a time, through the same vector operation
        for (let j = j4; j < j1; j++) {
          const o = (<usize>j) * 4;
          const v = fmadd(s, v128.load32_zero(brow + o), v128.load32_zero(crow + o));
          store<f32>(crow + o, f32x4.extract_lane(v, 0));
        }
      }
    }
  }
}

// @ts-ignore: decorator
@inline const ROW_CHUNK: i32 = 1024; // columns per pass of fewRowsTimesB: 4 KiB of each row of C

/**
 * One matrix after another. B shared by all of them (strideB 0, batch > 1) is packed once;
 * otherwise each matrix's B is packed PACK_STRIP panels at a time just before they are used (so
 * B is read once and its packed copy stays in cache), or, for fewer than 4 rows against B [k][n],
 * not packed at all (fewRowsTimesB). Against B [n][k] such rows still pack: read in place through
 * the same 4 x 4 transposes (4, 8 or 16 rows of B side by side) they ran 0.5-1.0x as fast, the
 * transposes bounding both ways. `scratch`: matmulScratchBytes(n, k, packAll) bytes, with
 * packAll = strideB == 0 && batch > 1.
 */
export function matmul(
  out: usize, a: usize, b: usize, bias: usize,
  batch: i32, m: i32, n: i32, k: i32,
  strideA: usize, strideB: usize, transB: i32, scratch: usize
): void {
  const np = (n + 7) >> 3;
  const packAll = strideB == 0 && batch > 1;
  const panels = (scratch + 15) & ~(<usize>15);
  const biasP = panels + (packAll ? <usize>np : min<usize>(np, <usize>PACK_STRIP)) * (<usize>k) * 32;
  const tmp = biasP + (<usize>np) * 32;
  for (let i = 0; i < np * 8; i++) {
    store<f32>(biasP + (<usize>i) * 4, bias != 0 && i < n ? load<f32>(bias + (<usize>i) * 4) : 0);
  }
  const ldc = (<usize>n) * 4;
  const panelBytes = (<usize>k) * 32;
  for (let bi = 0; bi < batch; bi++) {
    const A = a + (<usize>bi) * strideA * 4;
    const B = b + (<usize>bi) * strideB * 4;
    const C = out + (<usize>bi) * (<usize>m) * ldc;
    if (packAll) {
      if (bi == 0) matmulPack(panels, B, n, k, transB != 0);
      panelsTimes(C, A, panels, biasP, tmp, m, n, k);
    } else if (transB == 0 && m < 4) {
      fewRowsTimesB(C, A, B, biasP, m, n, k);
    } else {
      for (let p0 = 0; p0 < np; p0 += PACK_STRIP) {
        const p1 = min<i32>(np, p0 + PACK_STRIP);
        packPanels(panels, B, n, k, transB != 0, p0, p1);
        panelRangeTimes(C, A, panels, biasP, tmp, m, n, k, p0, p1);
      }
    }
  }
}

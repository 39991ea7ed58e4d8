// Packing into the 8-wide panels the micro-kernels of gemm.ts read.

/**
 * Packs rows [0, n) of a row-major matrix (n a multiple of 8; rows at or past Sk become zeros;
 * D columns, row stride ldk bytes) into panels of 8 rows: panel p holds row 8p + c, column d at
 * Kp + (p * D + d) * 32 + c * 4. Attention packs keys this way, matmul a transposed B (its
 * columns are the rows here). Full groups of 8 rows go through two 4x4 transposes per 4 columns
 * (8 loads, 8 shuffles, 8 stores per 32 floats).
 */
export function packRows8(Kp: usize, kbase: usize, ldk: usize, Sk: i32, n: i32, D: i32): void {
  const D4 = D & ~3;
  for (let j0 = 0; j0 < n; j0 += 8) {
    const panel = Kp + (<usize>(j0 >> 3)) * (<usize>D) * 32;
    if (j0 + 8 <= Sk) {
      const r0 = kbase + (<usize>j0) * ldk;
      for (let d = 0; d < D4; d += 4) {
        const o = (<usize>d) * 4;
        const dst = panel + (<usize>d) * 32;
        for (let h: usize = 0; h < 2; h++) {
          const r = r0 + h * 4 * ldk;
          const a = v128.load(r + o), b = v128.load(r + ldk + o), c = v128.load(r + 2 * ldk + o), e = v128.load(r + 3 * ldk + o);
          const ab0 = i32x4.shuffle(a, b, 0, 4, 1, 5); // a0 b0 a1 b1
          const ab1 = i32x4.shuffle(a, b, 2, 6, 3, 7); // a2 b2 a3 b3
          const ce0 = i32x4.shuffle(c, e, 0, 4, 1, 5);
          const ce1 = i32x4.shuffle(c, e, 2, 6, 3, 7);
          v128.store(dst + h * 16, i32x4.shuffle(ab0, ce0, 0, 1, 4, 5)); // a0 b0 c0 e0
          v128.store(dst + h * 16, i32x4.shuffle(ab0, ce0, 2, 3, 6, 7), 32); // column d + 1
          v128.store(dst + h * 16, i32x4.shuffle(ab1, ce1, 0, 1, 4, 5), 64);
          v128.store(dst + h * 16, i32x4.shuffle(ab1, ce1, 2, 3, 6, 7), 96);
        }
      }
      for (let d = D4; d < D; d++) {
        for (let c = 0; c < 8; c++) {
          store<f32>(panel + (<usize>d) * 32 + (<usize>c) * 4, load<f32>(kbase + (<usize>(j0 + c)) * ldk + (<usize>d) * 4));
        }
      }
    } else {
      for (let c = 0; c < 8; c++) {
        const j = j0 + c;
        const dst = panel + (<usize>c) * 4;
        if (j < Sk) {
          const src = kbase + (<usize>j) * ldk;
          for (let d = 0; d < D; d++) store<f32>(dst + (<usize>d) * 32, load<f32>(src + (<usize>d) * 4));
        } else {
          for (let d = 0; d < D; d++) store<f32>(dst + (<usize>d) * 32, 0);
        }
      }
    }
  }
}

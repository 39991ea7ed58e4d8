/**
 * Reference matmul: C = A·B (or A·Bᵀ) + bias, batched over leading dims with numpy-style
 * broadcasting, accumulated in float64. Written for clarity; it is the oracle, not a kernel.
 */
import type { Tensor } from '../tensor.js';

export interface ReferenceMatmulOptions {
  transposeB?: boolean;
  /** [N], added to every output row */
  bias?: Float32Array;
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new RangeError(`cannot broadcast [${a}] with [${b}]`);
    out.push(Math.max(da, db));
  }
  return out;
}

/** Flat index into a tensor of `shape` for a multi-index of the broadcast `outShape` (right-aligned). */
export function broadcastIndex(shape: readonly number[], outIndex: readonly number[]): number {
  let flat = 0;
  const offset = outIndex.length - shape.length;
  for (let i = 0; i < shape.length; i++) {
    const idx = shape[i] === 1 ? 0 : outIndex[offset + i];
    flat = flat * shape[i] + idx;
  }
  return flat;
}

export function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    idx[i] = flat % shape[i];
    flat = Math.floor(flat / shape[i]);
  }
  return idx;
}

export function matmul(a: Tensor, b: Tensor, options: ReferenceMatmulOptions = {}): Tensor {
  const transposeB = options.transposeB ?? false;
  const [m, k] = a.shape.slice(-2);
  const n = transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batches = batchShape.reduce((x, y) => x * y, 1);
  const out = new Float32Array(batches * m * n);
  for (let t = 0; t < batches; t++) {
    const bi = unravel(t, batchShape);
    const aBase = broadcastIndex(a.shape.slice(0, -2), bi) * m * k;
    const bBase = broadcastIndex(b.shape.slice(0, -2), bi) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = options.bias ? options.bias[j] : 0;
        for (let p = 0; p < k; p++) {
          const bv = transposeB ? b.data[bBase + j * k + p] : b.data[bBase + p * n + j];
          acc += a.data[aBase + i * k + p] * bv;
        }
        out[t * m * n + i * n + j] = acc;
      }
    }
  }
  return { data: out, shape: [...batchShape, m, n] };
}

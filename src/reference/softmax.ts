/** Reference softmax over the last axis: exp(scale·x − max) / Σ, in float64. */
import type { Tensor } from '../tensor.js';

export interface ReferenceSoftmaxOptions {
  scale?: number;
}

/**
 * Softmax of one row of float64 scores in place. Hidden entries are -Infinity; a row with
 * nothing visible becomes all zeros (never NaN). NaN anywhere makes the row NaN.
 */
export function softmaxRow(scores: Float64Array): void {
  let max = -Infinity;
  for (const s of scores) max = s > max || Number.isNaN(s) ? s : max;
  if (Number.isNaN(max)) {
    scores.fill(NaN);
    return;
  }
  if (max === -Infinity) {
    scores.fill(0);
    return;
  }
  let sum = 0;
  for (let j = 0; j < scores.length; j++) {
    scores[j] = Math.exp(scores[j] - max);
    sum += scores[j];
  }
  for (let j = 0; j < scores.length; j++) scores[j] /= sum;
}

export function softmax(x: Tensor, options: ReferenceSoftmaxOptions = {}): Tensor {
  const scale = options.scale ?? 1;
  const cols = x.shape[x.shape.length - 1];
  const rows = x.data.length / cols;
  const out = new Float32Array(x.data.length);
  const row = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) row[j] = scale * x.data[r * cols + j];
    softmaxRow(row);
    out.set(row, r * cols);
  }
  return { data: out, shape: x.shape.slice() };
}

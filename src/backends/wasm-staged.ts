/**
 * Attention on K and V that live outside WASM memory, copied in one (batch, kv head) at a time
 * into one reused block instead of all at once.
 *
 * Why: the plain path copies all of K and V into fresh linear memory and the kernel then reads
 * them back. Once K+V outgrow the caches both trips go to DRAM: decoding one token over
 * 32 heads × 4096 keys × 128 (128 MiB) spent 22 of its 36 ms copying. A reused block of one
 * head's K and V (4 MiB there) stays in cache between the copy and the kernel, so the data
 * crosses DRAM once: 36 → 25 ms in paired runs (and 11 → 7.5 ms with 8 kv heads).
 *
 * The kernel runs once per (batch, kv head) on a view of that head's queries, outputs, mask
 * and weights; each output element is computed by the same code from the same values as in
 * one whole call, so results are bit-identical to the plain path (tested). With keyLengths only
 * the visible keys are copied (a preallocated KV cache holding fewer tokens costs what it holds).
 */
import type { AttentionArgs } from '../backend.js';
import { viewByteLength } from '../typed-arrays.js';
import { attentionCall, attentionFrame, execCalls } from './wasm-core.js';
import type { WasmInstance } from './wasm-instance.js';

/**
 * K+V bytes to copy from which staging is used: about a core's L2. Below it the whole copy
 * stays in cache and the per-head calls only add overhead (decoding with 1 MiB of K+V: staged
 * 0.75× the whole copy's speed; with 2 MiB 1.25×, with 16 MiB 2.6×, in paired runs).
 */
export const STAGE_KV_FROM_BYTES = 2 * 1024 * 1024;

/**
 * Whether `a` can run staged: K or V (or both) must be copied, every copied one holds each
 * (batch, kv head) as one contiguous block (rows of exactly D floats: layout bhsd, or a single
 * kv head), there is more than one such block, and the bytes to copy reach `fromBytes`.
 */
export function canStage(inst: WasmInstance, a: AttentionArgs, fromBytes: number): boolean {
  const stageK = !inst.heap.owns(a.k);
  const stageV = !inst.heap.owns(a.v);
  if (!stageK && !stageV) return false;
  if (stageK && a.kStrides.s !== a.headDim) return false;
  if (stageV && a.vStrides.s !== a.headDimV) return false;
  if (a.batch * a.numKvHeads < 2) return false;
  const bytes = (stageK ? viewByteLength(a.k) : 0) + (stageV ? viewByteLength(a.v) : 0);
  return bytes >= fromBytes;
}

/** Runs `a` staged (check canStage first). Errors propagate after the call's memory is freed. */
export function runAttentionStaged(inst: WasmInstance, a: AttentionArgs): void {
  const { exports: x, heap } = inst;
  const stageK = !heap.owns(a.k);
  const stageV = !heap.owns(a.v);
  const { frame: f, ptrs } = attentionFrame(inst, a, { k: stageK, v: stageV });
  const { q, k, v, out, mask, keyLengths: keyLens, weights: w, scratch } = ptrs;
  try {
    const G = a.numHeads / a.numKvHeads;
    const sub = { ...a, batch: 1, numHeads: G, numKvHeads: 1 };
    const maskBytes = a.mask ? a.mask.data.BYTES_PER_ELEMENT : 0;
    const mem = heap.f32; // commit() did every allocation: no grow below, the view stays valid
    for (let b = 0; b < a.batch; b++) {
      // keys past keyLengths[b] are hidden: the kernels never read their values, and their key
      // rows only in the packing of the last group of 8 (whose scores are then overwritten with
      // -Infinity), so only the visible rows are copied and that group's tail is zeroed
      // (clamped as the kernel clamps it: the copies below must stay inside the staging blocks)
      const visible = a.keyLengths ? Math.min(Math.max(a.keyLengths[b], 0), a.seqK) : a.seqK;
      const kZeroEnd = Math.min(a.seqK, (visible + 7) & ~7);
      for (let hk = 0; hk < a.numKvHeads; hk++) {
        const h0 = hk * G;
        const kOff = b * a.kStrides.b + hk * a.kStrides.h;
        const vOff = b * a.vStrides.b + hk * a.vStrides.h;
        if (stageK) {
          mem.set(a.k.subarray(kOff, kOff + visible * a.headDim), k >>> 2);
          mem.fill(0, (k >>> 2) + visible * a.headDim, (k >>> 2) + kZeroEnd * a.headDim);
        }
        if (stageV) mem.set(a.v.subarray(vOff, vOff + visible * a.headDimV), v >>> 2);
        heap.copiedIn += ((stageK ? a.headDim : 0) + (stageV ? a.headDimV : 0)) * visible * 4;
        const call = attentionCall(
          {
            out: out + (b * a.oStrides.b + h0 * a.oStrides.h) * 4,
            q: q + (b * a.qStrides.b + h0 * a.qStrides.h) * 4,
            k: stageK ? k : k + kOff * 4,
            v: stageV ? v : v + vOff * 4,
            mask: a.mask ? mask + (b * a.mask.strideB + h0 * a.mask.strideH) * maskBytes : 0,
            keyLengths: keyLens ? keyLens + b * 4 : 0,
            weights: w ? w + (b * a.numHeads + h0) * a.seqQ * a.seqK * 4 : 0,
            scratch,
          },
          sub,
        );
        execCalls(x, [call]);
      }
    }
    f.finish();
  } finally {
    f.release();
  }
}

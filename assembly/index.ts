// The module's exports. Kernels use raw pointers into this module's (imported) memory; the
// TypeScript side (src/backends/wasm-heap.ts) owns the layout and grows the memory.
export { attention, attentionScratchBytes } from './attention';
export { matmul, matmulScratchBytes, matmulPackedBytes, matmulPrepack, matmulPacked } from './matmul';
export { softmax, exp2Array } from './softmax';

/** first byte after the module's static data: the host's heap starts here (rounded up) */
export function heapBase(): usize {
  return __heap_base;
}

/** 1 when this build uses relaxed SIMD (f32x4.relaxed_madd) */
export function isRelaxed(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

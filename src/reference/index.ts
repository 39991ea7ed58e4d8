/** The TypeScript reference every backend is tested against: plain loops, float64 accumulation. */
export { matmul, broadcastShapes } from './matmul.js';
export type { ReferenceMatmulOptions } from './matmul.js';
export { softmax, softmaxRow } from './softmax.js';
export type { ReferenceSoftmaxOptions } from './softmax.js';
export { attention } from './attention.js';
export type { Layout, ReferenceAttentionOptions, ReferenceAttentionResult } from './attention.js';
export { multiHeadAttention, createReferenceCache } from './multihead.js';
export type { ReferenceMultiHeadParams, ReferenceMultiHeadOptions, ReferenceKvCache } from './multihead.js';

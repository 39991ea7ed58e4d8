/** What both entries (Node: index.ts, browser: browser.ts) export besides load() and loadSync(). */
export { tensor, MAX_ELEMENTS, type Tensor } from './tensor.js';
export { Attention, type AttentionOptions, type AttentionResult, type MultiHeadAttentionParams } from './facade.js';
export { MultiHeadAttention, KvCache, type MultiHeadForwardOptions } from './multihead.js';
export type { BackendInfo, BackendName } from './backend.js';
export type { AttentionError, AttentionErrorCode } from './errors.js';
export type { WasmBuild, WasmSource } from './backends/wasm-instance.js';
export { VERSION as version } from './version.js';

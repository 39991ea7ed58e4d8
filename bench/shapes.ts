/**
 * The benchmark grid, how many floating-point operations and bytes each shape costs, and the
 * deterministic inputs every backend and peer receives.
 */

export interface AttentionShape {
  kind: 'attention';
  name: string;
  batch: number;
  /** query heads (Hq) */
  heads: number;
  /** key/value heads (Hkv); Hq % Hkv === 0 */
  kvHeads: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  causal: boolean;
}

export interface MhaShape {
  kind: 'mha';
  name: string;
  batch: number;
  seq: number;
  embedDim: number;
  numHeads: number;
}

export type Shape = AttentionShape | MhaShape;

function attn(
  name: string,
  batch: number,
  heads: number,
  seqQ: number,
  seqK: number,
  headDim: number,
  extra: Partial<AttentionShape> = {},
): AttentionShape {
  return { kind: 'attention', name, batch, heads, kvHeads: heads, seqQ, seqK, headDim, causal: false, ...extra };
}

/** The grid of issue 5. */
export const GRID: Shape[] = [
  attn('enc128', 1, 12, 128, 128, 64),
  attn('enc512', 1, 12, 512, 512, 64),
  attn('long2k', 1, 8, 2048, 2048, 64),
  attn('causal1k', 1, 12, 1024, 1024, 64, { causal: true }),
  attn('decode4k', 1, 32, 1, 4096, 128),
  attn('gqa', 1, 32, 512, 512, 128, { kvHeads: 8 }),
  attn('decodeGqa', 1, 32, 1, 4096, 128, { kvHeads: 8 }),
  // a few new rows against a long KV cache (16 draft tokens, or a prompt's chunk, of a GQA model):
  // each head's K and V are read by one query block, so they come from memory on every call
  attn('chunk', 1, 32, 16, 4096, 128, { kvHeads: 8 }),
  { kind: 'mha', name: 'mha768', batch: 1, seq: 256, embedDim: 768, numHeads: 12 },
  // one decoding step of a small model's layer: so little arithmetic that the time is what a
  // call costs to make (argument checks, crossing into the kernel, threads) — what a token loop
  // pays per layer
  attn('step', 1, 4, 1, 64, 64),
];

/** `--quick`: small shapes that still show compute-bound, bandwidth-bound and projection-bound cases. */
export const QUICK_SHAPES = ['enc128', 'decode4k'];

/** Tiny shapes for the smoke test (test/bench.test.ts). */
export const TINY: Shape[] = [
  attn('tiny', 1, 2, 5, 7, 8),
  attn('tinyCausal', 1, 2, 6, 6, 8, { causal: true }),
  attn('tinyDecode', 1, 4, 1, 9, 8),
  attn('tinyGqa', 1, 4, 3, 5, 8, { kvHeads: 2 }),
  { kind: 'mha', name: 'tinyMha', batch: 1, seq: 5, embedDim: 16, numHeads: 2 },
];

export function findShapes(names: string[], pool: Shape[] = [...GRID, ...TINY]): Shape[] {
  return names.map((n) => {
    const s = pool.find((p) => p.name === n);
    if (!s) throw new RangeError(`unknown shape "${n}"; known: ${pool.map((p) => p.name).join(', ')}`);
    return s;
  });
}

/**
 * flops = 4·B·Hq·Sq·Sk·D (Q·Kᵀ and P·V, two flops per multiply-add). A causal shape is counted
 * as the full square, so skipping hidden tiles shows up as a higher GFLOP/s. The multi-head block
 * adds 2·B·S·E·E per projection (Q, K, V and output: four).
 */
export function flops(s: Shape): number {
  if (s.kind === 'attention') return 4 * s.batch * s.heads * s.seqQ * s.seqK * s.headDim;
  const d = s.embedDim / s.numHeads;
  return 4 * s.batch * s.numHeads * s.seq * s.seq * d + 4 * 2 * s.batch * s.seq * s.embedDim * s.embedDim;
}

/** Bytes of K and V read once (the floor of a decoding step's memory traffic). */
export function kvBytes(s: Shape): number {
  if (s.kind !== 'attention') return 0;
  return 2 * 4 * s.batch * s.kvHeads * s.seqK * s.headDim;
}

/** A shape is reported in GB/s against the memory bandwidth when it decodes one query row. */
export function isBandwidthBound(s: Shape): boolean {
  return s.kind === 'attention' && s.seqQ === 1;
}

export function describe(s: Shape): string {
  if (s.kind === 'mha') return `x [${s.batch},${s.seq},${s.embedDim}], ${s.numHeads} heads, 4 projections`;
  const kv = s.kvHeads !== s.heads ? `, ${s.kvHeads} kv heads` : '';
  return `B=${s.batch} H=${s.heads}${kv} Sq=${s.seqQ} Sk=${s.seqK} D=${s.headDim}${s.causal ? ', causal (flops of the full square)' : ''}`;
}

// ---- inputs ------------------------------------------------------------------------------------

/** Deterministic uniform values in [-amp, amp) (xorshift32), so every run sees the same data. */
export function seeded(n: number, seed: number, amp = 1): Float32Array {
  const out = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = ((x / 4294967296) * 2 - 1) * amp;
  }
  return out;
}

export interface AttentionInputs {
  kind: 'attention';
  /** [B, Hq, Sq, D] */
  q: Float32Array;
  /** [B, Hkv, Sk, D] */
  k: Float32Array;
  /** [B, Hkv, Sk, D] */
  v: Float32Array;
  scale: number;
}

export interface MhaInputs {
  kind: 'mha';
  /** [B, S, E] */
  x: Float32Array;
  /** [E, E] each, PyTorch nn.Linear convention (y = x·Wᵀ + b) */
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  bq: Float32Array;
  bk: Float32Array;
  bv: Float32Array;
  bo: Float32Array;
}

export type Inputs = AttentionInputs | MhaInputs;

const inputCache = new Map<string, Inputs>();

export function makeInputs(s: Shape): Inputs {
  const key = JSON.stringify(s);
  const hit = inputCache.get(key);
  if (hit) return hit;
  let made: Inputs;
  if (s.kind === 'attention') {
    made = {
      kind: 'attention',
      q: seeded(s.batch * s.heads * s.seqQ * s.headDim, 1),
      k: seeded(s.batch * s.kvHeads * s.seqK * s.headDim, 2),
      v: seeded(s.batch * s.kvHeads * s.seqK * s.headDim, 3),
      scale: 1 / Math.sqrt(s.headDim),
    };
  } else {
    const e = s.embedDim;
    const w = 1 / Math.sqrt(e);
    made = {
      kind: 'mha',
      x: seeded(s.batch * s.seq * e, 11),
      wq: seeded(e * e, 12, w),
      wk: seeded(e * e, 13, w),
      wv: seeded(e * e, 14, w),
      wo: seeded(e * e, 15, w),
      bq: seeded(e, 16, 0.1),
      bk: seeded(e, 17, 0.1),
      bv: seeded(e, 18, 0.1),
      bo: seeded(e, 19, 0.1),
    };
  }
  inputCache.set(key, made);
  return made;
}

/** Elements of the output: [B, Hq, Sq, D] for attention, [B, S, E] for the block. */
export function outputSize(s: Shape): number {
  return s.kind === 'attention' ? s.batch * s.heads * s.seqQ * s.headDim : s.batch * s.seq * s.embedDim;
}

/** [B, H, S, D] -> [B, S, H, D] (what ONNX Runtime's MultiHeadAttention takes as [B, S, H·D]). */
export function bhsdToBshd(x: Float32Array, b: number, h: number, s: number, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++)
      for (let si = 0; si < s; si++) {
        const src = ((bi * h + hi) * s + si) * d;
        const dst = ((bi * s + si) * h + hi) * d;
        out.set(x.subarray(src, src + d), dst);
      }
  return out;
}

/** [B, S, H, D] -> [B, H, S, D] */
export function bshdToBhsd(x: Float32Array, b: number, h: number, s: number, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let bi = 0; bi < b; bi++)
    for (let si = 0; si < s; si++)
      for (let hi = 0; hi < h; hi++) {
        const src = ((bi * s + si) * h + hi) * d;
        const dst = ((bi * h + hi) * s + si) * d;
        out.set(x.subarray(src, src + d), dst);
      }
  return out;
}

/** Repeats each kv head Hq/Hkv times: [B, Hkv, S, D] -> [B, Hq, S, D] (for peers without GQA). */
export function repeatKvHeads(x: Float32Array, b: number, hkv: number, hq: number, s: number, d: number): Float32Array {
  const g = hq / hkv;
  const out = new Float32Array(b * hq * s * d);
  const head = s * d;
  for (let bi = 0; bi < b; bi++)
    for (let h = 0; h < hq; h++) {
      const src = (bi * hkv + Math.floor(h / g)) * head;
      out.set(x.subarray(src, src + head), (bi * hq + h) * head);
    }
  return out;
}

/** Transposes a row-major [r, c] matrix (nn.Linear weights [out, in] -> MatMul's [in, out]). */
export function transpose2d(w: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = w[i * c + j];
  return out;
}

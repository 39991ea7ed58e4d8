/**
 * Validation shared by every backend: checks the caller's arguments once, names the argument,
 * the expectation and what was given, and resolves layouts and broadcasting into the explicit
 * strides backends consume (backend.ts).
 */
import type { AttentionArgs, MatmulArgs, MultiHeadParams, ResolvedMask, SoftmaxArgs, Strides3 } from './backend.js';
import { attnRangeError, attnTypeError, describe } from './errors.js';
import { checkShape, numel, type Tensor } from './tensor.js';
import { isFloat32Array, isInt32Array, isUint8Array, plainView, viewBuffer, viewByteLength, viewByteOffset, viewLength, type NamedArrays } from './typed-arrays.js';

export type Layout = 'bhsd' | 'bshd';

/**
 * A plain object of any realm: its prototype is null or an Object.prototype (whose own prototype
 * is null). A Map, a Date, a Promise (an options call missing its `await`) or a Response would
 * otherwise pass with no own keys and every option silently at its default.
 */
export function isPlainObject(x: object): boolean {
  const proto = Object.getPrototypeOf(x);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** Refuses option names the function does not know: a typo such as `casual` must not be ignored silently. */
export function checkOptions(fn: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw attnTypeError('ERR_ATTN_OPTION', `${fn}: options must be an object, got ${describe(options)}`);
  }
  if (!isPlainObject(options)) {
    const hint = typeof (options as { then?: unknown }).then === 'function' ? ' (a promise: is an `await` missing?)' : '';
    throw attnTypeError('ERR_ATTN_OPTION', `${fn}: options must be a plain object, got ${describe(options)}${hint}`);
  }
  const keys = Object.keys(options);
  for (const key of keys) {
    if (!allowed.includes(key)) {
      throw attnTypeError('ERR_ATTN_OPTION', `${fn}: unknown option "${key}" (known: ${allowed.join(', ')})`);
    }
  }
  // Each option is read once, here, before anything is checked: a getter cannot run between a
  // check and the use of what it checked (it could resize an array already validated, or call
  // the library again and fill a cache checked for room), and it cannot answer twice.
  // (every own option the function knows, enumerable or not, as a plain read of it would find)
  const snapshot: Record<string, unknown> = Object.create(null);
  for (const key of allowed) if (Object.prototype.hasOwnProperty.call(options, key)) snapshot[key] = (options as Record<string, unknown>)[key];
  return snapshot;
}

/** [name, array, its element count now]: an entry for checkStillSized, taken where the array was checked */
export function sized(name: string, view: ArrayBufferView | undefined): readonly [string, ArrayBufferView | undefined, number] {
  return [name, view, view ? viewLength(view) : 0];
}

/**
 * Validation still reads the caller's objects after the options: a tensor's `data` and `shape`
 * (getters, a Proxy's traps), and any of them may resize or detach an array checked before it.
 * Each resolve* ends with this, once nothing of the caller's runs before the backend has the
 * arrays: every array must still hold the elements it was checked with.
 */
export function checkStillSized(fn: string, arrays: ReadonlyArray<readonly [string, ArrayBufferView | undefined, number]>): void {
  for (const [name, view, n] of arrays) {
    if (view && viewLength(view) !== n) {
      throw attnRangeError('ERR_ATTN_SIZE', `${fn}: ${name} changed from ${n} to ${viewLength(view)} elements while the call was being checked (its buffer was resized or detached)`);
    }
  }
}

export function checkTensor(name: string, value: unknown, rank?: number | [number, number]): Tensor {
  return checkTypedTensor(name, value, 'float32', rank) as Tensor;
}

function checkTypedTensor(
  name: string,
  value: unknown,
  kind: 'float32' | 'mask',
  rank?: number | [number, number],
): Tensor<Float32Array | Uint8Array> {
  if (value === null || typeof value !== 'object' || !('data' in value) || !('shape' in value)) {
    throw attnTypeError('ERR_ATTN_TYPE', `${name}: expected a tensor { data, shape } (see tensor()), got ${describe(value)}`);
  }
  const { data, shape } = value as { data: unknown; shape: unknown };
  const okType = isFloat32Array(data) || (kind === 'mask' && isUint8Array(data));
  if (!okType) {
    const want = kind === 'mask' ? 'a Float32Array (additive mask) or a Uint8Array (boolean mask)' : 'a Float32Array';
    throw attnTypeError('ERR_ATTN_TYPE', `${name}.data: expected ${want}, got ${describe(data)}`);
  }
  const dims = checkShape(shape, name);
  if (rank !== undefined) {
    const [lo, hi] = typeof rank === 'number' ? [rank, rank] : rank;
    if (dims.length < lo || dims.length > hi) {
      const want = lo === hi ? `${lo}` : `${lo} to ${hi}`;
      throw attnRangeError('ERR_ATTN_SHAPE', `${name}: expected rank ${want}, got shape [${dims.join(', ')}]`);
    }
  }
  const n = numel(dims, name);
  const arr = plainView(data as Float32Array | Uint8Array);
  const length = viewLength(arr);
  if (length !== n) {
    throw attnRangeError('ERR_ATTN_SIZE', `${name}: data has ${length} elements but shape [${dims.join(', ')}] needs ${n}`);
  }
  return { data: arr, shape: dims };
}

function checkBoolean(fn: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw attnTypeError('ERR_ATTN_TYPE', `${fn}: ${name} must be a boolean, got ${describe(value)}`);
  return value;
}

const LOG2E_F32 = Math.fround(Math.LOG2E);
/** the largest float32 whose product with log2(e) stays finite in float32 */
const MAX_SCALE = 2.3586574359122396e38;

function checkScale(fn: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw attnTypeError('ERR_ATTN_TYPE', `${fn}: scale must be a number, got ${describe(value)}`);
  // The kernels work in float32 and in base 2: they multiply the scale by log2(e) before
  // anything else, so a scale whose product with it passes float32's range would turn every
  // score to NaN there (as would one past float32's range itself).
  if (!Number.isFinite(Math.fround(Math.fround(value) * LOG2E_F32))) {
    throw attnRangeError('ERR_ATTN_VALUE', `${fn}: scale must be finite and, rounded to float32, at most ${MAX_SCALE} in magnitude (float32's largest value over log2(e): the kernels compute in float32 and in base 2), got ${value}`);
  }
  return value;
}

export function checkLayout(fn: string, value: unknown): Layout {
  if (value === undefined) return 'bhsd';
  if (typeof value !== 'string') throw attnTypeError('ERR_ATTN_TYPE', `${fn}: layout must be "bhsd" or "bshd", got ${describe(value)}`);
  if (value !== 'bhsd' && value !== 'bshd') {
    throw attnRangeError('ERR_ATTN_VALUE', `${fn}: layout must be "bhsd" or "bshd", got ${describe(value)}`);
  }
  return value;
}

export function checkPositiveInt(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw attnTypeError('ERR_ATTN_TYPE', `${fn}: ${name} must be an integer, got ${describe(value)}`);
  }
  if (value < 1) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: ${name} must be >= 1, got ${value}`);
  return value;
}

/** Two typed arrays share memory: writing one would change the other mid-computation. */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (viewBuffer(a) !== viewBuffer(b)) return false;
  const [ao, bo] = [viewByteOffset(a), viewByteOffset(b)];
  return ao < bo + viewByteLength(b) && bo < ao + viewByteLength(a);
}

// ArrayBuffer.prototype's own getter, taken once: an own `resizable` property of a buffer could
// otherwise answer false for one that can shrink (undefined where the runtime has no resizable buffers)
const resizableGetter = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;

function isResizable(buffer: ArrayBufferLike): boolean {
  if (!resizableGetter) return false;
  try {
    return resizableGetter.call(buffer) === true;
  } catch {
    return false; // a SharedArrayBuffer: it can grow, never shrink
  }
}

/**
 * An async call's arrays are used after it returns (the native backend reads and writes them in
 * place until its promise settles): one on a resizable ArrayBuffer could shrink under the kernel.
 */
export function checkFixedLength(fn: string, named: NamedArrays): void {
  for (const [name, a] of named) {
    if (a && isResizable(viewBuffer(a))) {
      throw attnTypeError('ERR_ATTN_TYPE', `${fn}: ${name} is on a resizable ArrayBuffer, which could shrink while the call runs; pass an array on a fixed-length buffer`);
    }
  }
}

/** The caller's `out` (checked for type, length and aliasing with every array the call reads), or a fresh array. */
export function outputArray(fn: string, out: unknown, length: number, inputs: Array<ArrayBufferView | undefined>): Float32Array {
  if (out === undefined) return new Float32Array(length);
  if (!isFloat32Array(out)) throw attnTypeError('ERR_ATTN_TYPE', `${fn}: out must be a Float32Array, got ${describe(out)}`);
  if (viewLength(out) !== length) {
    throw attnRangeError('ERR_ATTN_SIZE', `${fn}: out must have exactly ${length} elements, got ${viewLength(out)}`);
  }
  for (const input of inputs) {
    if (input && overlaps(out, input)) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: out must not share memory with an input`);
  }
  return out;
}

/** Strides of a [B, H, S, D] tensor stored in `layout`, with D contiguous. */
export function layoutStrides(layout: Layout, H: number, S: number, D: number): Strides3 {
  return layout === 'bhsd' ? { b: H * S * D, h: S * D, s: D } : { b: S * H * D, h: D, s: H * D };
}

/**
 * Resolves a mask broadcastable (right-aligned, each dim 1 or full) to [B, Hq, Sq, Sk] into
 * strides with 0 on broadcast axes.
 */
export function resolveMask(fn: string, value: unknown, B: number, Hq: number, Sq: number, Sk: number): ResolvedMask {
  const mask = checkTypedTensor(`${fn}: mask`, value, 'mask', [1, 4]);
  const full = [B, Hq, Sq, Sk];
  const shape = [...new Array<number>(4 - mask.shape.length).fill(1), ...mask.shape];
  const strides = [0, 0, 0, 0];
  let stride = 1;
  for (let i = 3; i >= 0; i--) {
    if (shape[i] !== 1 && shape[i] !== full[i]) {
      throw attnRangeError(
        'ERR_ATTN_SHAPE',
        `${fn}: mask shape [${mask.shape.join(', ')}] does not broadcast to [B, Hq, Sq, Sk] = [${full.join(', ')}] (each dim must be 1 or equal)`,
      );
    }
    strides[i] = shape[i] === 1 ? 0 : stride;
    stride *= shape[i];
  }
  return {
    kind: isUint8Array(mask.data) ? 'boolean' : 'additive',
    data: mask.data,
    strideB: strides[0],
    strideH: strides[1],
    strideQ: strides[2],
    strideK: strides[3],
  };
}

export function resolveKeyLengths(fn: string, value: unknown, B: number, Sk: number): Int32Array {
  const typed = isInt32Array(value);
  if (!typed && !Array.isArray(value)) {
    throw attnTypeError('ERR_ATTN_TYPE', `${fn}: keyLengths must be an Int32Array (or integer[]) of length ${B}, got ${describe(value)}`);
  }
  // An array's entries are each read once, into the copy that is checked and used: a getter or a
  // Proxy cannot show validation one value and the kernel another. A hole reads as undefined and
  // is refused, as an explicit undefined is.
  const given: ArrayLike<unknown> = typed ? plainView(value as Int32Array) : Array.from(value as unknown[]);
  if (!typed) {
    for (let b = 0; b < given.length; b++) {
      const len = given[b];
      if (typeof len !== 'number' || !Number.isInteger(len)) {
        throw attnTypeError('ERR_ATTN_TYPE', `${fn}: keyLengths must be an Int32Array (or integer[]) of length ${B}; keyLengths[${b}] is ${describe(len)}`);
      }
    }
  }
  if (given.length !== B) throw attnRangeError('ERR_ATTN_SIZE', `${fn}: keyLengths must have ${B} entries (one per batch), got ${given.length}`);
  // checked as given, before any conversion (Int32Array's would wrap 2 ** 32 + 1 to 1)
  for (let b = 0; b < B; b++) {
    const len = given[b] as number;
    if (len < 0 || len > Sk) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: keyLengths[${b}] must be in [0, ${Sk}], got ${len}`);
  }
  return typed ? (given as Int32Array) : Int32Array.from(given as number[]);
}

export const ATTENTION_OPTIONS = ['scale', 'causal', 'mask', 'keyLengths', 'layout', 'returnWeights', 'out'] as const;

export interface ResolvedAttention {
  args: AttentionArgs;
  outShape: number[];
  returnWeights: boolean;
}

export function resolveAttention(fn: string, q: unknown, k: unknown, v: unknown, options: unknown): ResolvedAttention {
  const opts = checkOptions(fn, options, ATTENTION_OPTIONS);
  const layout = checkLayout(fn, opts.layout);
  // (each array's size noted as soon as it is checked: the next tensor's getters may change it)
  const qt = checkTensor(`${fn}: q`, q, 4);
  const checked = [sized('q', qt.data)];
  const kt = checkTensor(`${fn}: k`, k, 4);
  checked.push(sized('k', kt.data));
  const vt = checkTensor(`${fn}: v`, v, 4);
  checked.push(sized('v', vt.data));
  const at = (t: Tensor) => (layout === 'bhsd' ? { b: t.shape[0], h: t.shape[1], s: t.shape[2], d: t.shape[3] } : { b: t.shape[0], s: t.shape[1], h: t.shape[2], d: t.shape[3] });
  const Q = at(qt);
  const K = at(kt);
  const V = at(vt);
  // (made only for a message: joining the shapes on every call cost ~0.3 us)
  const shapes = () => `q [${qt.shape}], k [${kt.shape}], v [${vt.shape}] (layout ${layout} = ${layout === 'bhsd' ? '[B, H, S, D]' : '[B, S, H, D]'})`;
  if (K.b !== Q.b || V.b !== Q.b) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: q, k and v must have the same batch size, got ${shapes()}`);
  if (K.h !== V.h) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: k and v must have the same number of heads, got ${shapes()}`);
  if (Q.h % K.h !== 0) {
    throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: query heads (${Q.h}) must be a multiple of key/value heads (${K.h}), got ${shapes()}`);
  }
  if (K.s !== V.s) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: k and v must have the same sequence length, got ${shapes()}`);
  if (K.d !== Q.d) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: q and k must have the same head dim, got ${shapes()}`);

  const B = Q.b;
  const Hq = Q.h;
  const Sq = Q.s;
  const Sk = K.s;
  const returnWeights = checkBoolean(fn, 'returnWeights', opts.returnWeights);
  const outShape = layout === 'bhsd' ? [B, Hq, Sq, V.d] : [B, Sq, Hq, V.d];
  const outLength = numel(outShape, `${fn}: output`);
  const weightsLength = returnWeights ? numel([B, Hq, Sq, Sk], `${fn}: weights`) : 0;
  const mask = opts.mask === undefined ? undefined : resolveMask(fn, opts.mask, B, Hq, Sq, Sk);
  checked.push(sized('mask', mask?.data));
  const keyLengths = opts.keyLengths === undefined ? undefined : resolveKeyLengths(fn, opts.keyLengths, B, Sk);

  const args: AttentionArgs = {
    q: qt.data,
    k: kt.data,
    v: vt.data,
    batch: B,
    numHeads: Hq,
    numKvHeads: K.h,
    seqQ: Sq,
    seqK: Sk,
    headDim: Q.d,
    headDimV: V.d,
    qStrides: layoutStrides(layout, Hq, Sq, Q.d),
    kStrides: layoutStrides(layout, K.h, Sk, K.d),
    vStrides: layoutStrides(layout, V.h, Sk, V.d),
    oStrides: layoutStrides(layout, Hq, Sq, V.d),
    scale: checkScale(fn, opts.scale, 1 / Math.sqrt(Q.d)),
    causal: checkBoolean(fn, 'causal', opts.causal),
    mask,
    keyLengths,
    out: new Float32Array(0),
  };
  args.out = outputArray(fn, opts.out, outLength, [qt.data, kt.data, vt.data, args.mask?.data, args.keyLengths]);
  if (returnWeights) args.weights = new Float32Array(weightsLength);
  checkStillSized(fn, [...checked, sized('keyLengths', keyLengths), sized('out', args.out)]);
  return { args, outShape, returnWeights };
}

export const MATMUL_OPTIONS = ['transposeB', 'out'] as const;

export interface ResolvedMatmul {
  /** the backend calls that fill `out`, in order (one unless the batch dims broadcast in a way one call's strides cannot express) */
  calls: MatmulArgs[];
  /** the operands' data as checked (read once from the caller's tensors) */
  a: Float32Array;
  b: Float32Array;
  out: Float32Array;
  outShape: number[];
}

/**
 * Leading (batch) dims broadcast as in NumPy's matmul: right-aligned, each pair equal or one of
 * them 1. A backend call takes a run of matrices with one stride per side (consecutive
 * matrices, or 0: the same matrix for all), so the trailing batch dims where each side is
 * either whole or all 1s go to one call, and the dims before them are looped here.
 */
export function resolveMatmul(fn: string, a: unknown, b: unknown, options: unknown): ResolvedMatmul {
  const opts = checkOptions(fn, options, MATMUL_OPTIONS);
  const transposeB = checkBoolean(fn, 'transposeB', opts.transposeB);
  const at = checkTensor(`${fn}: a`, a, [2, 8]);
  const checked = [sized('a', at.data)];
  const bt = checkTensor(`${fn}: b`, b, [2, 8]);
  checked.push(sized('b', bt.data));
  const [m, ka] = at.shape.slice(-2);
  const [br, bc] = bt.shape.slice(-2);
  const kb = transposeB ? bc : br;
  const n = transposeB ? br : bc;
  if (ka !== kb) {
    const bDesc = transposeB ? '[.., N, K] (transposeB)' : '[.., K, N]';
    throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: inner dims differ: a [${at.shape}] is [.., M, K] with K=${ka}, b [${bt.shape}] is ${bDesc} with K=${kb}`);
  }
  const aLead = at.shape.slice(0, -2);
  const bLead = bt.shape.slice(0, -2);
  const rank = Math.max(aLead.length, bLead.length);
  const padded = (d: number[]) => [...new Array<number>(rank - d.length).fill(1), ...d];
  const A = padded(aLead);
  const B = padded(bLead);
  const lead = A.map((x, i) => {
    if (x === B[i] || B[i] === 1) return x;
    if (x === 1) return B[i];
    throw attnRangeError(
      'ERR_ATTN_SHAPE',
      `${fn}: batch dims of a [${aLead}] and b [${bLead}] do not broadcast (right-aligned, each pair equal or one of them 1)`,
    );
  });
  const count = (dims: number[]) => dims.reduce((x, y) => x * y, 1);
  const outShape = [...lead, m, n];
  const out = outputArray(fn, opts.out, numel(outShape, `${fn}: output`), [at.data, bt.data]);
  checkStillSized(fn, [...checked, sized('out', out)]);

  const ones = (side: number[], from: number) => side.slice(from).every((d) => d === 1);
  const whole = (side: number[], from: number) => side.slice(from).every((d, i) => d === lead[from + i]);
  let split = 0;
  while (!((ones(A, split) || whole(A, split)) && (ones(B, split) || whole(B, split)))) split++;
  const inner = count(lead.slice(split));
  const aSize = m * ka;
  const bSize = kb * n;
  const oSize = m * n;
  const aStep = ones(A, split) ? 0 : aSize;
  const bStep = ones(B, split) ? 0 : bSize;
  // One B for every matrix of a: the matrices' rows are one [inner·M, K] matrix (a and the output
  // are contiguous), so the backends pack and stream B once for all of them instead of once per
  // matrix ([8, 1, 768] x [768, 3072] native: ~9 ms as 8 products). Each row's sums are the same.
  const sharedB = bStep === 0 && aStep !== 0 && inner > 1;
  // matrices between consecutive indices of each batch dim, for a and b
  const strides = (side: number[]) => side.map((_, i) => count(side.slice(i + 1)));
  const sa = strides(A);
  const sb = strides(B);
  // (built from the buffer, not by subarray(), which would run a subclass's constructor of `out`)
  const view = (data: Float32Array, from: number, length: number) =>
    from === 0 && length === viewLength(data) ? data : new Float32Array(viewBuffer(data), viewByteOffset(data) + from * 4, length);
  const calls: MatmulArgs[] = [];
  const outer = count(lead.slice(0, split));
  for (let o = 0; o < outer; o++) {
    let rest = o;
    let ma = 0;
    let mb = 0;
    for (let i = split - 1; i >= 0; i--) {
      const idx = rest % lead[i];
      rest = (rest - idx) / lead[i];
      if (A[i] !== 1) ma += idx * sa[i];
      if (B[i] !== 1) mb += idx * sb[i];
    }
    calls.push({
      a: view(at.data, ma * aSize, aStep === 0 ? aSize : inner * aSize),
      b: view(bt.data, mb * bSize, bStep === 0 ? bSize : inner * bSize),
      out: view(out, o * inner * oSize, inner * oSize),
      batch: sharedB ? 1 : inner,
      m: sharedB ? inner * m : m,
      n,
      k: ka,
      strideA: sharedB ? 0 : aStep,
      strideB: bStep,
      transposeB,
    });
  }
  return { calls, a: at.data, b: bt.data, out, outShape };
}

export const SOFTMAX_OPTIONS = ['scale', 'out'] as const;

export function resolveSoftmax(fn: string, x: unknown, options: unknown): { args: SoftmaxArgs; outShape: number[] } {
  const opts = checkOptions(fn, options, SOFTMAX_OPTIONS);
  const xt = checkTensor(`${fn}: x`, x, [1, 8]);
  const cols = xt.shape[xt.shape.length - 1];
  const n = viewLength(xt.data);
  const args = { x: xt.data, out: outputArray(fn, opts.out, n, [xt.data]), rows: n / cols, cols, scale: checkScale(fn, opts.scale, 1) };
  checkStillSized(fn, [['x', xt.data, n], sized('out', args.out)]);
  return { args, outShape: xt.shape.slice() };
}

export const MULTIHEAD_PARAMS = ['embedDim', 'numHeads', 'numKvHeads', 'wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo'] as const;

/** A weight given as a Float32Array or a tensor, checked against its [rows, cols] shape. */
function checkWeight(fn: string, name: string, value: unknown, rows: number, cols: number | undefined): Float32Array {
  const want = cols === undefined ? `[${rows}]` : `[${rows}, ${cols}]`;
  const size = cols === undefined ? rows : rows * cols;
  let data: unknown = value;
  if (value !== null && typeof value === 'object' && 'data' in value && 'shape' in value) {
    const t = checkTensor(`${fn}: ${name}`, value);
    const shapeOk = cols === undefined ? t.shape.length === 1 && t.shape[0] === rows : t.shape.length === 2 && t.shape[0] === rows && t.shape[1] === cols;
    if (!shapeOk) throw attnRangeError('ERR_ATTN_SHAPE', `${fn}: ${name} must have shape ${want} (nn.Linear [out, in]), got [${t.shape}]`);
    data = t.data;
  }
  if (!isFloat32Array(data)) {
    throw attnTypeError('ERR_ATTN_TYPE', `${fn}: ${name} must be a Float32Array or a tensor of shape ${want}, got ${describe(value)}`);
  }
  if (viewLength(data) !== size) throw attnRangeError('ERR_ATTN_SIZE', `${fn}: ${name} must have ${size} elements (shape ${want}), got ${viewLength(data)}`);
  return plainView(data);
}

export function resolveMultiHeadParams(fn: string, params: unknown): MultiHeadParams {
  if (params === undefined) throw attnTypeError('ERR_ATTN_TYPE', `${fn}: parameters { embedDim, numHeads, wq, wk, wv, wo } are required`);
  const p = checkOptions(fn, params, MULTIHEAD_PARAMS);
  const E = checkPositiveInt(fn, 'embedDim', p.embedDim);
  const Hq = checkPositiveInt(fn, 'numHeads', p.numHeads);
  const Hkv = p.numKvHeads === undefined ? Hq : checkPositiveInt(fn, 'numKvHeads', p.numKvHeads);
  if (E % Hq !== 0) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: embedDim (${E}) must be a multiple of numHeads (${Hq})`);
  if (Hq % Hkv !== 0) throw attnRangeError('ERR_ATTN_VALUE', `${fn}: numHeads (${Hq}) must be a multiple of numKvHeads (${Hkv})`);
  numel([E, E], `${fn}: wq`);
  const headDim = E / Hq;
  const kvDim = Hkv * headDim;
  // (each weight's size noted as soon as it is checked, as resolveAttention does for its tensors)
  const checked: Array<ReturnType<typeof sized>> = [];
  const weight = (name: string, rows: number, cols: number | undefined) => {
    const w = checkWeight(fn, name, p[name], rows, cols);
    checked.push(sized(name, w));
    return w;
  };
  const bias = (name: string, n: number) => (p[name] === undefined ? undefined : weight(name, n, undefined));
  const resolved: MultiHeadParams = {
    embedDim: E,
    numHeads: Hq,
    numKvHeads: Hkv,
    headDim,
    kvDim,
    wq: weight('wq', E, E),
    wk: weight('wk', kvDim, E),
    wv: weight('wv', kvDim, E),
    wo: weight('wo', E, E),
    bq: bias('bq', E),
    bk: bias('bk', kvDim),
    bv: bias('bv', kvDim),
    bo: bias('bo', E),
  };
  checkStillSized(fn, checked);
  return resolved;
}

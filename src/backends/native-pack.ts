/**
 * The native binding's packed calling convention for attention, the multi-head forward (the
 * calls made per token) and matmul: their numbers go in one Float64Array header, their arrays
 * as positional arguments. Read as an arguments object, every named property cost the binding a
 * name string made and internalized (~0.2 us), ~7 us of a small attention call's ~15.
 *
 * Slot layout: the name lists below, and native/binding.cc's namespaces attn_slot, forward_slot
 * and matmul_slot (kept in step: the loader compares them). Here each slot is checked to be a
 * number (or a boolean, or an object where one is expected), so a wrong type is still a TypeError
 * naming the field; the binding checks the values (integer, range, sizes against the arrays).
 */
import type { AttentionArgs, MatmulArgs, MultiHeadForwardArgs, ResolvedMask } from '../backend.js';
import { attnTypeError } from '../errors.js';

// Each call's header slots, then its positional arrays, by the names the binding's messages use.
// The pack functions below write slot i of a header at the i-th name; the binding exports the
// same lists (`convention`), and the loader refuses a binary whose lists differ.
const ATTN_HEADER = [
  'args.batch', 'args.numHeads', 'args.numKvHeads', 'args.seqQ', 'args.seqK', 'args.headDim', 'args.headDimV',
  'qStrides.b', 'qStrides.h', 'qStrides.s', 'kStrides.b', 'kStrides.h', 'kStrides.s',
  'vStrides.b', 'vStrides.h', 'vStrides.s', 'oStrides.b', 'oStrides.h', 'oStrides.s',
  'args.scale', 'args.causal', 'mask.kind', 'mask.strideB', 'mask.strideH', 'mask.strideQ', 'mask.strideK', 'args.threads',
]; // prettier-ignore
const ATTN_ARGS = ['args.q', 'args.k', 'args.v', 'args.out', 'args.weights', 'mask.data', 'args.keyLengths'];
const FORWARD_HEADER = [
  'args.batch', 'args.seqQ', 'args.seqKv', 'args.selfAttention', 'args.causal', 'args.cache',
  'cache.maxLength', 'cache.length', 'mask.kind', 'mask.strideB', 'mask.strideH', 'mask.strideQ', 'mask.strideK',
]; // prettier-ignore
const FORWARD_ARGS = ['args.x', 'args.kv', 'args.out', 'cache.k', 'cache.v', 'mask.data', 'args.keyLengths'];
const MATMUL_HEADER = ['args.batch', 'args.m', 'args.n', 'args.k', 'args.strideA', 'args.strideB', 'args.transposeB', 'args.threads'];
const MATMUL_ARGS = ['args.a', 'args.b', 'args.out', 'args.bias'];

const convention = (header: string[], args: string[]) => `${header.join(',')};${args.join(',')}`;

/** The packed calling convention as the binding's `convention` export spells it. */
export const PACKED_CONVENTION: Readonly<Record<'attention' | 'forward' | 'matmul', string>> = Object.freeze({
  attention: convention(ATTN_HEADER, ATTN_ARGS),
  forward: convention(FORWARD_HEADER, FORWARD_ARGS),
  matmul: convention(MATMUL_HEADER, MATMUL_ARGS),
});

/** Slot names of each header, for the tests that check the pack functions against them. */
export const HEADER_SLOTS = { attention: ATTN_HEADER, forward: FORWARD_HEADER, matmul: MATMUL_HEADER } as const;

const ATTN_SLOTS = ATTN_HEADER.length;
const FORWARD_SLOTS = FORWARD_HEADER.length;
const MATMUL_SLOTS = MATMUL_HEADER.length;

// One header per kind, reused: the binding copies every slot before the call returns (an async
// call too, before it hands the work to a thread).
const attnHeader = new Float64Array(ATTN_SLOTS);
const forwardHeader = new Float64Array(FORWARD_SLOTS);
const matmulHeader = new Float64Array(MATMUL_SLOTS);

/** the binding's name for what a value is (as its own messages give it) */
function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (Array.isArray(v)) return 'Array';
  return typeof v;
}

function typeError(name: string, what: string, v: unknown): never {
  throw attnTypeError('ERR_ATTN_TYPE', `${name}: expected ${what}, got ${typeName(v)}`);
}

// The checks take values, not keys: property reads by a computed key went megamorphic in V8
// (~0.4 us a call), and names built per call were string concatenations.
function int(v: unknown, name: string): number {
  return typeof v === 'number' ? v : typeError(name, 'an integer', v);
}

function flag(v: unknown, name: string): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'boolean' ? Number(v) : typeError(name, 'a boolean', v);
}

function object(v: unknown, name: string): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : typeError(name, 'an object', v);
}

/** mask kind (0 none, 1 additive, 2 boolean) and its strides into h[at..at + 4]; returns the data */
function packMask(h: Float64Array, at: number, m: ResolvedMask | undefined | null): unknown {
  if (m === undefined || m === null) {
    h.fill(0, at, at + 5);
    return null;
  }
  const mask = object(m, 'args.mask');
  const kind = mask.kind === 'additive' ? 1 : mask.kind === 'boolean' ? 2 : 0;
  if (kind === 0) throw attnTypeError('ERR_ATTN_OPTION', `mask.kind: expected 'additive' or 'boolean', got ${typeName(mask.kind)}`);
  h[at] = kind;
  h[at + 1] = int(mask.strideB, 'mask.strideB');
  h[at + 2] = int(mask.strideH, 'mask.strideH');
  h[at + 3] = int(mask.strideQ, 'mask.strideQ');
  h[at + 4] = int(mask.strideK, 'mask.strideK');
  return mask.data;
}

const strideNames = (t: string) => [`args.${t}`, `${t}.b`, `${t}.h`, `${t}.s`] as const;
const Q_STRIDES = strideNames('qStrides');
const K_STRIDES = strideNames('kStrides');
const V_STRIDES = strideNames('vStrides');
const O_STRIDES = strideNames('oStrides');

function packStrides(h: Float64Array, at: number, v: unknown, names: readonly string[]): void {
  const s = object(v, names[0]);
  h[at] = int(s.b, names[1]);
  h[at + 1] = int(s.h, names[2]);
  h[at + 2] = int(s.s, names[3]);
}

/** the arguments of the binding's attention(header, q, k, v, out, weights, maskData, keyLengths) */
export function packAttention(args: AttentionArgs): unknown[] {
  const a = args;
  const h = attnHeader;
  h[0] = int(a.batch, 'args.batch');
  h[1] = int(a.numHeads, 'args.numHeads');
  h[2] = int(a.numKvHeads, 'args.numKvHeads');
  h[3] = int(a.seqQ, 'args.seqQ');
  h[4] = int(a.seqK, 'args.seqK');
  h[5] = int(a.headDim, 'args.headDim');
  h[6] = int(a.headDimV, 'args.headDimV');
  packStrides(h, 7, a.qStrides, Q_STRIDES);
  packStrides(h, 10, a.kStrides, K_STRIDES);
  packStrides(h, 13, a.vStrides, V_STRIDES);
  packStrides(h, 16, a.oStrides, O_STRIDES);
  h[19] = typeof a.scale === 'number' ? a.scale : typeError('args.scale', 'a number', a.scale);
  h[20] = flag(a.causal, 'args.causal');
  const maskData = packMask(h, 21, a.mask);
  h[26] = a.threads === undefined || a.threads === null ? 0 : int(a.threads, 'args.threads');
  return [h, a.q, a.k, a.v, a.out, a.weights ?? null, maskData, a.keyLengths ?? null];
}

/** the arguments of the binding's forward(header, x, kv, out, cacheK, cacheV, maskData, keyLengths) */
export function packForward(args: MultiHeadForwardArgs): unknown[] {
  const a = args;
  const h = forwardHeader;
  h[0] = int(a.batch, 'args.batch');
  h[1] = int(a.seqQ, 'args.seqQ');
  h[2] = int(a.seqKv, 'args.seqKv');
  h[3] = a.x === a.kv ? 1 : 0; // self-attention: one input feeds Q, K and V
  h[4] = flag(a.causal, 'args.causal');
  let cacheK: unknown = null;
  let cacheV: unknown = null;
  if (a.cache === undefined || a.cache === null) h.fill(0, 5, 8);
  else {
    const c = object(a.cache, 'args.cache');
    h[5] = 1;
    h[6] = int(c.maxLength, 'cache.maxLength');
    h[7] = int(c.length, 'cache.length');
    cacheK = c.k;
    cacheV = c.v;
  }
  const maskData = packMask(h, 8, a.mask);
  return [h, a.x, a.kv, a.out, cacheK, cacheV, maskData, a.keyLengths ?? null];
}

/** the arguments of the binding's matmul(header, a, b, out, bias) */
export function packMatmul(args: MatmulArgs): unknown[] {
  const a = args;
  const h = matmulHeader;
  h[0] = int(a.batch, 'args.batch');
  h[1] = int(a.m, 'args.m');
  h[2] = int(a.n, 'args.n');
  h[3] = int(a.k, 'args.k');
  h[4] = int(a.strideA, 'args.strideA');
  h[5] = int(a.strideB, 'args.strideB');
  h[6] = flag(a.transposeB, 'args.transposeB');
  h[7] = a.threads === undefined || a.threads === null ? 0 : int(a.threads, 'args.threads');
  return [h, a.a, a.b, a.out, a.bias ?? null];
}

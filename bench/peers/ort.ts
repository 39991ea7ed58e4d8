/**
 * ONNX Runtime peers: onnxruntime-node (native CPU execution provider, 1 thread and all threads)
 * and onnxruntime-web's wasm backend running in this Node (single thread). Both run the same
 * models, built here in code (onnx-proto.ts), offline:
 *
 * - `mha`: the com.microsoft MultiHeadAttention op (what ORT's transformer optimizer fuses
 *   attention into). It takes Q, K, V as [B, S, H·D]; our bhsd inputs are transposed once,
 *   before timing. It has no grouped-query form, so for GQA the kv heads are repeated (also
 *   before timing). Causal shapes use its `unidirectional` attribute.
 * - `graph`: the plain ONNX graph Transpose(K) → MatMul → Mul(scale) → [Add(causal mask)] →
 *   Softmax → MatMul, on bhsd inputs. GQA is expressed without copies by viewing the query heads
 *   of one group as extra rows (Reshape [B, Hkv, g·Sq, D]); causal adds a -inf mask.
 * - the multi-head block (mha768): MatMul projections (nn.Linear weights transposed once into
 *   initializers), MultiHeadAttention with its packed bias input [3E], output MatMul + Add.
 */
import path from 'node:path';
import type { AttentionInputs, AttentionShape, Inputs, MhaInputs, MhaShape, Shape } from '../shapes.js';
import { bhsdToBshd, bshdToBhsd, repeatKvHeads, transpose2d } from '../shapes.js';
import { consume } from '../harness.js';
import { Skip, type Prepared, type Runner } from '../types.js';
import { DataType, encodeModel, type OnnxGraph } from './onnx-proto.js';
import { NODE_MODULES } from '../paths.js';

const F = DataType.FLOAT;

export function mhaOpModel(s: AttentionShape): Uint8Array {
  const hq = s.heads * s.headDim;
  return encodeModel({
    name: `mha_${s.name}`,
    nodes: [
      {
        op: 'MultiHeadAttention',
        domain: 'com.microsoft',
        inputs: ['q', 'k', 'v'],
        outputs: ['o'],
        attrs: { num_heads: s.heads, scale: { float: 1 / Math.sqrt(s.headDim) }, ...(s.causal ? { unidirectional: 1 } : {}) },
      },
    ],
    inputs: [
      { name: 'q', elemType: F, dims: [s.batch, s.seqQ, hq] },
      { name: 'k', elemType: F, dims: [s.batch, s.seqK, hq] },
      { name: 'v', elemType: F, dims: [s.batch, s.seqK, hq] },
    ],
    outputs: [{ name: 'o', elemType: F, dims: [s.batch, s.seqQ, hq] }],
  });
}

/** Additive bottom-right-aligned causal mask [Sq, Sk]: 0 where key j is visible to query i, else -inf. */
export function causalMask(sq: number, sk: number): Float32Array {
  const m = new Float32Array(sq * sk);
  for (let i = 0; i < sq; i++) for (let j = 0; j < sk; j++) if (j > i + (sk - sq)) m[i * sk + j] = -Infinity;
  return m;
}

export function graphModel(s: AttentionShape): Uint8Array {
  const g = s.heads / s.kvHeads;
  const g5: OnnxGraph = {
    name: `graph_${s.name}`,
    nodes: [],
    inputs: [
      { name: 'q', elemType: F, dims: [s.batch, s.heads, s.seqQ, s.headDim] },
      { name: 'k', elemType: F, dims: [s.batch, s.kvHeads, s.seqK, s.headDim] },
      { name: 'v', elemType: F, dims: [s.batch, s.kvHeads, s.seqK, s.headDim] },
    ],
    outputs: [{ name: 'o', elemType: F, dims: [s.batch, s.heads, s.seqQ, s.headDim] }],
    initializers: [{ name: 'scale', dims: [], data: new Float32Array([1 / Math.sqrt(s.headDim)]) }],
  };
  let q = 'q';
  if (g > 1) {
    if (s.causal) throw new Skip('causal GQA graph not built (no such shape in the grid)');
    g5.initializers!.push({ name: 'qshape', dims: [4], data: { int64: [s.batch, s.kvHeads, g * s.seqQ, s.headDim] } });
    g5.initializers!.push({ name: 'oshape', dims: [4], data: { int64: [s.batch, s.heads, s.seqQ, s.headDim] } });
    g5.nodes.push({ op: 'Reshape', inputs: ['q', 'qshape'], outputs: ['qg'] });
    q = 'qg';
  }
  g5.nodes.push({ op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [0, 1, 3, 2] } });
  g5.nodes.push({ op: 'MatMul', inputs: [q, 'kt'], outputs: ['s'] });
  g5.nodes.push({ op: 'Mul', inputs: ['s', 'scale'], outputs: ['ss'] });
  let scores = 'ss';
  if (s.causal) {
    g5.initializers!.push({ name: 'mask', dims: [s.seqQ, s.seqK], data: causalMask(s.seqQ, s.seqK) });
    g5.nodes.push({ op: 'Add', inputs: ['ss', 'mask'], outputs: ['sm'] });
    scores = 'sm';
  }
  g5.nodes.push({ op: 'Softmax', inputs: [scores], outputs: ['p'], attrs: { axis: -1 } });
  if (g > 1) {
    g5.nodes.push({ op: 'MatMul', inputs: ['p', 'v'], outputs: ['og'] });
    g5.nodes.push({ op: 'Reshape', inputs: ['og', 'oshape'], outputs: ['o'] });
  } else {
    g5.nodes.push({ op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] });
  }
  return encodeModel(g5);
}

export function mhaBlockModel(s: MhaShape, m: MhaInputs): Uint8Array {
  const e = s.embedDim;
  const bias = new Float32Array(3 * e);
  bias.set(m.bq, 0);
  bias.set(m.bk, e);
  bias.set(m.bv, 2 * e);
  return encodeModel({
    name: `mha_block_${s.name}`,
    nodes: [
      { op: 'MatMul', inputs: ['x', 'wq'], outputs: ['q'] },
      { op: 'MatMul', inputs: ['x', 'wk'], outputs: ['k'] },
      { op: 'MatMul', inputs: ['x', 'wv'], outputs: ['v'] },
      {
        op: 'MultiHeadAttention',
        domain: 'com.microsoft',
        inputs: ['q', 'k', 'v', 'bqkv'],
        outputs: ['a'],
        attrs: { num_heads: s.numHeads },
      },
      { op: 'MatMul', inputs: ['a', 'wo'], outputs: ['y0'] },
      { op: 'Add', inputs: ['y0', 'bo'], outputs: ['y'] },
    ],
    initializers: [
      { name: 'wq', dims: [e, e], data: transpose2d(m.wq, e, e) },
      { name: 'wk', dims: [e, e], data: transpose2d(m.wk, e, e) },
      { name: 'wv', dims: [e, e], data: transpose2d(m.wv, e, e) },
      { name: 'wo', dims: [e, e], data: transpose2d(m.wo, e, e) },
      { name: 'bqkv', dims: [3 * e], data: bias },
      { name: 'bo', dims: [e], data: new Float32Array(m.bo) },
    ],
    inputs: [{ name: 'x', elemType: F, dims: [s.batch, s.seq, e] }],
    outputs: [{ name: 'y', elemType: F, dims: [s.batch, s.seq, e] }],
  });
}

// ---- sessions ----------------------------------------------------------------------------------

/** The slice of the onnxruntime-common API used here (node and web expose the same). */
interface OrtTensor {
  data: unknown;
  dims: readonly number[];
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  env: { versions?: Record<string, string>; wasm?: { numThreads?: number; wasmPaths?: string; simd?: boolean }; logLevel?: string };
}

let ortNode: Promise<OrtModule> | undefined;
let ortWeb: Promise<OrtModule> | undefined;

async function importPkg(name: string): Promise<OrtModule> {
  try {
    const mod = (await import(name)) as OrtModule & { default?: OrtModule };
    return (mod.InferenceSession ? mod : mod.default) as OrtModule;
  } catch (e) {
    throw new Skip(`${name} is not available (${(e as Error).message.split('\n')[0]})`);
  }
}

export function loadOrtNode(): Promise<OrtModule> {
  ortNode ??= importPkg('onnxruntime-node');
  return ortNode;
}

export function loadOrtWeb(): Promise<OrtModule> {
  ortWeb ??= importPkg('onnxruntime-web').then((ort) => {
    if (ort.env.wasm) {
      // single-threaded, and every .wasm/.mjs file from the local package: nothing is fetched
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.wasmPaths = path.join(NODE_MODULES, 'onnxruntime-web', 'dist') + path.sep;
    }
    return ort;
  });
  return ortWeb;
}

export type OrtVariant = 'mha' | 'graph';

async function prepareOrt(
  ort: OrtModule,
  sessionOptions: Record<string, unknown>,
  variant: OrtVariant,
  s: Shape,
  inputs: Inputs,
): Promise<Prepared> {
  let model: Uint8Array;
  let feeds: Record<string, OrtTensor>;
  let toCanonical: (y: Float32Array) => Float32Array;
  let note: string | undefined;
  if (s.kind === 'mha') {
    if (variant !== 'mha') throw new Skip('the multi-head block is measured with the MultiHeadAttention op only');
    const m = inputs as MhaInputs;
    model = mhaBlockModel(s, m);
    feeds = { x: new ort.Tensor('float32', m.x, [s.batch, s.seq, s.embedDim]) };
    toCanonical = (y) => y;
    note = 'MatMul projections + MultiHeadAttention(bias) + MatMul/Add';
  } else {
    const a = inputs as AttentionInputs;
    if (variant === 'mha') {
      model = mhaOpModel(s);
      let k = a.k;
      let v = a.v;
      if (s.kvHeads !== s.heads) {
        k = repeatKvHeads(k, s.batch, s.kvHeads, s.heads, s.seqK, s.headDim);
        v = repeatKvHeads(v, s.batch, s.kvHeads, s.heads, s.seqK, s.headDim);
        note = `no GQA in MultiHeadAttention: kv heads repeated to ${s.heads} before timing`;
      }
      const hd = s.heads * s.headDim;
      feeds = {
        q: new ort.Tensor('float32', bhsdToBshd(a.q, s.batch, s.heads, s.seqQ, s.headDim), [s.batch, s.seqQ, hd]),
        k: new ort.Tensor('float32', bhsdToBshd(k, s.batch, s.heads, s.seqK, s.headDim), [s.batch, s.seqK, hd]),
        v: new ort.Tensor('float32', bhsdToBshd(v, s.batch, s.heads, s.seqK, s.headDim), [s.batch, s.seqK, hd]),
      };
      toCanonical = (y) => bshdToBhsd(y, s.batch, s.heads, s.seqQ, s.headDim);
      if (s.causal) note = 'unidirectional=1';
    } else {
      model = graphModel(s);
      feeds = {
        q: new ort.Tensor('float32', a.q, [s.batch, s.heads, s.seqQ, s.headDim]),
        k: new ort.Tensor('float32', a.k, [s.batch, s.kvHeads, s.seqK, s.headDim]),
        v: new ort.Tensor('float32', a.v, [s.batch, s.kvHeads, s.seqK, s.headDim]),
      };
      toCanonical = (y) => y;
      if (s.causal) note = 'additive -inf mask';
      if (s.kvHeads !== s.heads) note = 'GQA as Reshape of query heads per kv head';
    }
  }
  const session = await ort.InferenceSession.create(model, sessionOptions);
  const outName = s.kind === 'mha' ? 'y' : 'o';
  let last: Float32Array | undefined;
  return {
    note,
    async run() {
      const r = await session.run(feeds);
      last = r[outName].data as Float32Array;
      consume(last);
    },
    output() {
      if (!last) throw new Error('output() before run()');
      return toCanonical(last);
    },
    async dispose() {
      await session.release();
    },
  };
}

export function ortNodeRunner(variant: OrtVariant, threads: number, all: boolean): Runner {
  const v = variant === 'mha' ? 'MHA' : 'graph';
  return {
    id: `ort-node-${variant}-${all ? 'all' : threads}`,
    label: `ort-node ${v} ×${threads}`,
    family: 'ort-node',
    kind: 'peer',
    threads,
    limit: threads === 1 ? 'fma1' : 'fmaAll',
    skipReason: (s) => (s.kind === 'mha' && variant === 'graph' ? 'graph variant is built for attention shapes only' : null),
    async prepare(s, inputs) {
      const ort = await loadOrtNode();
      return prepareOrt(
        ort,
        {
          executionProviders: ['cpu'],
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        },
        variant,
        s,
        inputs,
      );
    },
  };
}

export function ortWebRunner(variant: OrtVariant): Runner {
  const v = variant === 'mha' ? 'MHA' : 'graph';
  return {
    id: `ort-web-${variant}`,
    label: `ort-web ${v} ×1`,
    family: 'ort-web',
    kind: 'peer',
    threads: 1,
    limit: 'wasmSimd',
    skipReason: (s) => (s.kind === 'mha' && variant === 'graph' ? 'graph variant is built for attention shapes only' : null),
    async prepare(s, inputs) {
      const ort = await loadOrtWeb();
      return prepareOrt(ort, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }, variant, s, inputs);
    },
  };
}

export async function ortVersions(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, load] of [
    ['onnxruntime-node', loadOrtNode],
    ['onnxruntime-web', loadOrtWeb],
  ] as const) {
    try {
      const ort = await load();
      out[name] = ort.env.versions?.node ?? ort.env.versions?.web ?? ort.env.versions?.common ?? '?';
    } catch {
      /* absent */
    }
  }
  return out;
}

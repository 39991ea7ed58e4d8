/**
 * TensorFlow.js peer: @tensorflow/tfjs ops on the @tensorflow/tfjs-backend-wasm backend (XNNPACK
 * under WASM SIMD), one thread, the .wasm files loaded from the local package. Attention is
 * written the way a tfjs user would: matMul(Q, Kᵀ) · scale (+ causal mask) → softmax → matMul(·V),
 * GQA as a reshape of the query heads per kv head; the block adds matMul projections with the
 * nn.Linear weights (transposeB) and bias adds. The output is read back (dataSync) in each call.
 */
import path from 'node:path';
import type { AttentionInputs, MhaInputs } from '../shapes.js';
import { consume } from '../harness.js';
import { Skip, type Runner } from '../types.js';
import { NODE_MODULES } from '../paths.js';
import { causalMask } from './ort.js';

/** The slice of the tfjs API used here. */
interface TfTensor {
  dataSync(): Float32Array;
  dispose(): void;
}
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  getBackend(): string;
  tidy<T>(fn: () => T): T;
  tensor(data: Float32Array, shape: number[]): TfTensor;
  scalar(x: number): TfTensor;
  matMul(a: TfTensor, b: TfTensor, transposeA?: boolean, transposeB?: boolean): TfTensor;
  mul(a: TfTensor, b: TfTensor): TfTensor;
  add(a: TfTensor, b: TfTensor): TfTensor;
  softmax(a: TfTensor, dim?: number): TfTensor;
  reshape(a: TfTensor, shape: number[]): TfTensor;
  transpose(a: TfTensor, perm: number[]): TfTensor;
  version: Record<string, string>;
  env(): { set(flag: string, value: unknown): void };
}
interface TfWasm {
  setWasmPaths(prefix: string): void;
  setThreadsCount?(n: number): void;
  version_wasm?: string;
}

let loaded: Promise<{ tf: Tf; wasm: TfWasm }> | undefined;

export function loadTfjs(): Promise<{ tf: Tf; wasm: TfWasm }> {
  loaded ??= (async () => {
    let tf: Tf;
    let wasm: TfWasm;
    try {
      const t = (await import('@tensorflow/tfjs')) as unknown as Partial<Tf> & { default?: Tf };
      tf = (typeof t.setBackend === 'function' ? t : t.default) as Tf;
      const w = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as Partial<TfWasm> & { default?: TfWasm };
      wasm = (typeof w.setWasmPaths === 'function' ? w : w.default) as TfWasm;
    } catch (e) {
      throw new Skip(`@tensorflow/tfjs or @tensorflow/tfjs-backend-wasm is not available (${(e as Error).message.split('\n')[0]})`);
    }
    wasm.setWasmPaths(path.join(NODE_MODULES, '@tensorflow', 'tfjs-backend-wasm', 'dist') + path.sep);
    wasm.setThreadsCount?.(1);
    const ok = await tf.setBackend('wasm');
    await tf.ready();
    if (!ok || tf.getBackend() !== 'wasm') throw new Skip(`tfjs wasm backend did not initialise (backend: ${tf.getBackend()})`);
    return { tf, wasm };
  })();
  return loaded;
}

export function tfjsRunner(): Runner {
  return {
    id: 'tfjs-wasm',
    label: 'tfjs-wasm ×1',
    family: 'tfjs',
    kind: 'peer',
    threads: 1,
    limit: 'wasmSimd',
    async prepare(s, inputs) {
      const { tf } = await loadTfjs();
      const held: TfTensor[] = [];
      const keep = (t: TfTensor) => (held.push(t), t);
      let compute: () => TfTensor;
      let note: string | undefined;
      if (s.kind === 'attention') {
        const a = inputs as AttentionInputs;
        const g = s.heads / s.kvHeads;
        const q = keep(tf.tensor(a.q, [s.batch, s.kvHeads, g * s.seqQ, s.headDim]));
        const k = keep(tf.tensor(a.k, [s.batch, s.kvHeads, s.seqK, s.headDim]));
        const v = keep(tf.tensor(a.v, [s.batch, s.kvHeads, s.seqK, s.headDim]));
        const scale = keep(tf.scalar(a.scale));
        if (s.causal && g > 1) throw new Skip('causal GQA not built (no such shape in the grid)');
        const mask = s.causal ? keep(tf.tensor(causalMask(s.seqQ, s.seqK), [s.seqQ, s.seqK])) : null;
        if (g > 1) note = 'GQA as reshape of query heads per kv head';
        if (s.causal) note = 'additive -inf mask';
        compute = () =>
          tf.tidy(() => {
            let sc = tf.mul(tf.matMul(q, k, false, true), scale);
            if (mask) sc = tf.add(sc, mask);
            return tf.matMul(tf.softmax(sc), v);
          });
      } else {
        const m = inputs as MhaInputs;
        const e = s.embedDim;
        const h = s.numHeads;
        const dh = e / h;
        const rows = s.batch * s.seq;
        const x = keep(tf.tensor(m.x, [rows, e]));
        const w = (d: Float32Array) => keep(tf.tensor(d, [e, e]));
        const b = (d: Float32Array) => keep(tf.tensor(d, [e]));
        const [wq, wk, wv, wo] = [w(m.wq), w(m.wk), w(m.wv), w(m.wo)];
        const [bq, bk, bv, bo] = [b(m.bq), b(m.bk), b(m.bv), b(m.bo)];
        const scale = keep(tf.scalar(1 / Math.sqrt(dh)));
        const heads = (t: TfTensor) => tf.transpose(tf.reshape(t, [s.batch, s.seq, h, dh]), [0, 2, 1, 3]);
        note = 'matMul projections (transposeB) + attention ops + matMul/add';
        compute = () =>
          tf.tidy(() => {
            const q = heads(tf.add(tf.matMul(x, wq, false, true), bq));
            const k = heads(tf.add(tf.matMul(x, wk, false, true), bk));
            const v = heads(tf.add(tf.matMul(x, wv, false, true), bv));
            const p = tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale));
            const ctx = tf.reshape(tf.transpose(tf.matMul(p, v), [0, 2, 1, 3]), [rows, e]);
            return tf.add(tf.matMul(ctx, wo, false, true), bo);
          });
      }
      let last: Float32Array | undefined;
      return {
        note,
        run() {
          const o = compute();
          last = o.dataSync();
          o.dispose();
          consume(last);
        },
        output() {
          if (!last) throw new Error('output() before run()');
          return last; // [B, Hkv, g·Sq, D] is [B, Hq, Sq, D] in memory; [B·S, E] is [B, S, E]
        },
        dispose() {
          for (const t of held) t.dispose();
        },
      };
    },
  };
}

export async function tfjsVersions(): Promise<Record<string, string>> {
  try {
    const { tf, wasm } = await loadTfjs();
    return { '@tensorflow/tfjs': tf.version?.tfjs ?? '?', '@tensorflow/tfjs-backend-wasm': wasm.version_wasm ?? '?' };
  } catch {
    return {};
  }
}

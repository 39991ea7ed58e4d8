/**
 * Our own backends, loaded through the public API (src/index.ts) exactly as a user would:
 * native at one thread and at all cores, wasm (plain SIMD128 in this process; relaxed SIMD in a
 * child process started with --experimental-wasm-relaxed-simd where the runtime needs the flag),
 * and the js reference backend on shapes where it finishes in reasonable time.
 */
import type { AttentionInputs, MhaInputs, Shape } from './shapes.js';
import { flops, outputSize } from './shapes.js';
import { consume } from './harness.js';
import { Skip, type Prepared, type Runner } from './types.js';

type Api = typeof import('../src/index.js');
type Attention = Awaited<ReturnType<Api['load']>>;
type LoadOptions = NonNullable<Parameters<Api['load']>[0]>;

let api: Promise<Api> | undefined;

/** The public API, or Skip with the reason it cannot be imported (a backend file not there yet). */
export function loadApi(): Promise<Api> {
  api ??= import('../src/index.js').catch((e: Error) => {
    throw new Skip(`the public API (src/index.ts) does not load: ${e.message.split('\n')[0]}`);
  });
  return api;
}

/** Node 22+ validates relaxed SIMD by default; Node 20 needs the V8 flag. */
export function relaxedSimdNeedsFlag(): boolean {
  return Number(process.versions.node.split('.')[0]) < 22;
}

const instances = new Map<string, Promise<Attention>>();

/** One loaded Attention per configuration, shared by every shape (a user loads once). */
async function loadOurs(key: string, options: LoadOptions, expectIsa?: string): Promise<Attention> {
  let p = instances.get(key);
  if (!p) {
    p = (async () => {
      const { load } = await loadApi();
      let attn: Attention;
      try {
        attn = await load(options);
      } catch (e) {
        throw new Skip(`${options.backend} backend unavailable: ${(e as Error).message.split('\n')[0]}`);
      }
      const info = attn.info();
      if (info.backend !== options.backend) throw new Skip(`asked for ${options.backend}, got ${info.backend} (${info.fallbackReason ?? ''})`);
      if (expectIsa && info.isa !== expectIsa) throw new Skip(`asked for the ${expectIsa} build, got isa ${info.isa}`);
      return attn;
    })();
    instances.set(key, p);
  }
  return p;
}

/** A Tensor as the API takes it ({ data, shape }); the API validates it on each call. */
const tensor = (data: Float32Array, shape: number[]) => ({ data, shape });

function prepareWith(attn: Attention, s: Shape, inputs: AttentionInputs | MhaInputs): Prepared {
  const out = new Float32Array(outputSize(s));
  const isa = attn.info().isa;
  if (s.kind === 'attention') {
    const a = inputs as AttentionInputs;
    const q = tensor(a.q, [s.batch, s.heads, s.seqQ, s.headDim]);
    const k = tensor(a.k, [s.batch, s.kvHeads, s.seqK, s.headDim]);
    const v = tensor(a.v, [s.batch, s.kvHeads, s.seqK, s.headDim]);
    const opts = { causal: s.causal, scale: a.scale, out };
    return {
      note: `isa ${isa}`,
      run() {
        attn.attention(q, k, v, opts);
        consume(out);
      },
      output: () => out,
    };
  }
  const m = inputs as MhaInputs;
  const mha = attn.multiHeadAttention({
    embedDim: s.embedDim,
    numHeads: s.numHeads,
    wq: m.wq,
    wk: m.wk,
    wv: m.wv,
    wo: m.wo,
    bq: m.bq,
    bk: m.bk,
    bv: m.bv,
    bo: m.bo,
  });
  const x = tensor(m.x, [s.batch, s.seq, s.embedDim]);
  const opts = { out };
  return {
    note: `isa ${isa}`,
    run() {
      mha.forward(x, opts);
      consume(out);
    },
    output: () => out,
    dispose: () => mha.dispose(),
  };
}

export interface OursOptions {
  /** all-cores thread count for native */
  threads: number;
  /** the js reference runs shapes up to this many flops (default 1e9) */
  jsMaxFlops?: number;
}

export function ourRunners(o: OursOptions): Runner[] {
  const jsMax = o.jsMaxFlops ?? 1e9;
  const native = (threads: number, all: boolean): Runner => ({
    id: all ? 'native-all' : 'native-1',
    label: `native ×${threads}`,
    family: 'native',
    kind: 'ours',
    threads,
    limit: threads === 1 ? 'fma1' : 'fmaAll',
    async prepare(s, inputs) {
      const attn = await loadOurs(`native-${threads}`, { backend: 'native', threads });
      const p = prepareWith(attn, s, inputs);
      // native reads K and V where they are: the paired read on decode shapes reads the same
      if (s.kind === 'attention') p.reads = [(inputs as AttentionInputs).k, (inputs as AttentionInputs).v];
      return p;
    },
  });
  const runners: Runner[] = [native(1, false)];
  if (o.threads > 1) runners.push(native(o.threads, true));
  runners.push(
    {
      id: 'wasm',
      label: 'wasm simd128 ×1',
      family: 'wasm',
      kind: 'ours',
      threads: 1,
      limit: 'wasmSimd',
      async prepare(s, inputs) {
        const attn = await loadOurs('wasm-simd128', { backend: 'wasm', wasm: { build: 'simd128' } }, 'simd128');
        return prepareWith(attn, s, inputs);
      },
    },
    {
      id: 'wasm-relaxed',
      label: 'wasm relaxed ×1',
      family: 'wasm',
      kind: 'ours',
      threads: 1,
      limit: 'wasmRelaxed',
      childFlags: relaxedSimdNeedsFlag() ? ['--experimental-wasm-relaxed-simd'] : undefined,
      async prepare(s, inputs) {
        const attn = await loadOurs('wasm-relaxed', { backend: 'wasm', wasm: { build: 'relaxed-simd' } }, 'relaxed-simd');
        return prepareWith(attn, s, inputs);
      },
    },
    {
      id: 'js',
      label: 'js reference ×1',
      family: 'js',
      kind: 'ours',
      threads: 1,
      limit: 'fma1',
      skipReason: (s) =>
        flops(s) > jsMax ? `js reference runs shapes up to ${(jsMax / 1e9).toFixed(1)} GFLOP only (this one is ${(flops(s) / 1e9).toFixed(1)})` : null,
      async prepare(s, inputs) {
        const attn = await loadOurs('js', { backend: 'js' });
        return prepareWith(attn, s, inputs);
      },
    },
  );
  return runners;
}

/** info() of each of our backends that loads, for the report's machine section. */
export async function ourInfo(threads: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [key, opts] of [
    [`native-${threads}`, { backend: 'native', threads }],
    ['wasm-simd128', { backend: 'wasm', wasm: { build: 'simd128' } }],
    ['js', { backend: 'js' }],
  ] as Array<[string, LoadOptions]>) {
    try {
      out[key] = (await loadOurs(key, opts, key === 'wasm-simd128' ? 'simd128' : undefined)).info();
    } catch (e) {
      out[key] = { unavailable: (e as Error).message };
    }
  }
  return out;
}

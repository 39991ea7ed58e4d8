/**
 * wasm backend: the AssemblyScript kernels against the TypeScript reference (both builds where
 * the runtime validates them: the relaxed-SIMD build runs in a child Node with
 * --experimental-wasm-relaxed-simd when this Node needs the flag), the exp approximation's
 * measured error, linear-memory growth and reuse, oversized requests (an error, never a broken
 * instance), alloc() zero-copy, attentionAsync in a worker, loading from every kind of source,
 * and load() falling back to wasm when the native addon is absent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Backend } from '../src/backend.js';
import { createWasmBackend, type WasmBackend } from '../src/backends/wasm-core.js';
import { instantiateSync, type WasmBuild } from '../src/backends/wasm-instance.js';
import { loadWasmBackend, loadWasmBackendSync, nodeRunner, packageRoot, wasmBuilds, wasmPath } from '../src/backends/wasm.js';
import { MIRROR_BUDGET_BYTES } from '../src/backends/wasm-multihead.js';
import { Attention } from '../src/facade.js';
import { cacheState } from '../src/multihead.js';
import * as reference from '../src/reference/index.js';
import type { Tensor } from '../src/tensor.js';
import { assertClose } from './helpers/compare.js';
import { randomTensor, rng } from './helpers/random.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const mochaBin = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');

/** Builds the kernel suites run under: SIMD_ATTENTION_WASM_BUILDS (set for the child run) or what validates here. */
function kernelBuilds(): WasmBuild[] {
  const env = process.env.SIMD_ATTENTION_WASM_BUILDS;
  if (env) return env.split(',') as WasmBuild[];
  return wasmBuilds();
}

function wasmBackend(build?: WasmBuild): WasmBackend {
  return loadWasmBackendSync({ build }) as WasmBackend;
}

type Mask = Tensor<Float32Array> | Tensor<Uint8Array>;

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  Sk: number;
  D: number;
  Dv: number;
  causal?: boolean;
  layout?: 'bhsd' | 'bshd';
  mask?: 'additive' | 'boolean';
  maskShape?: 'qk' | 'b1qk' | 'bhqk';
  keyLengths?: number[];
  weights?: boolean;
  scale?: number;
}

function shapeOf(layout: 'bhsd' | 'bshd', B: number, H: number, S: number, D: number): number[] {
  return layout === 'bhsd' ? [B, H, S, D] : [B, S, H, D];
}

function makeMask(rand: () => number, c: Case): Mask | undefined {
  if (!c.mask) return undefined;
  const shape = c.maskShape === 'qk' ? [c.Sq, c.Sk] : c.maskShape === 'b1qk' ? [c.B, 1, c.Sq, c.Sk] : [c.B, c.Hq, c.Sq, c.Sk];
  const n = shape.reduce((a, b) => a * b, 1);
  if (c.mask === 'boolean') {
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = rand() < 0.7 ? 1 : 0;
    return { data, shape };
  }
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rand() < 0.15 ? -Infinity : rand() * 4 - 2;
  return { data, shape };
}

function checkCase(attn: Attention, c: Case, seed: number, label: string): void {
  const rand = rng(seed);
  const layout = c.layout ?? 'bhsd';
  const q = randomTensor(rand, shapeOf(layout, c.B, c.Hq, c.Sq, c.D));
  const k = randomTensor(rand, shapeOf(layout, c.B, c.Hkv, c.Sk, c.D));
  const v = randomTensor(rand, shapeOf(layout, c.B, c.Hkv, c.Sk, c.Dv));
  const mask = makeMask(rand, c);
  const opts = {
    causal: c.causal,
    layout,
    mask,
    keyLengths: c.keyLengths ? Int32Array.from(c.keyLengths) : undefined,
    returnWeights: c.weights,
    scale: c.scale,
  };
  const got = attn.attention(q, k, v, opts);
  const want = reference.attention(q, k, v, opts);
  assert.deepEqual(got.output.shape, want.output.shape, `${label}: output shape`);
  assertClose(got.output.data, want.output.data, `${label} output`);
  if (c.weights) assertClose(got.weights!.data, want.weights!.data, `${label} weights`);
}

const CASES: Case[] = [
  { B: 1, Hq: 1, Hkv: 1, Sq: 1, Sk: 1, D: 1, Dv: 1 },
  { B: 1, Hq: 2, Hkv: 2, Sq: 64, Sk: 64, D: 64, Dv: 64 },
  { B: 2, Hq: 4, Hkv: 2, Sq: 97, Sk: 131, D: 64, Dv: 64, causal: true },
  { B: 1, Hq: 3, Hkv: 1, Sq: 33, Sk: 200, D: 80, Dv: 48, causal: true, weights: true },
  { B: 2, Hq: 2, Hkv: 2, Sq: 130, Sk: 65, D: 128, Dv: 128, causal: true },
  { B: 2, Hq: 4, Hkv: 4, Sq: 70, Sk: 70, D: 32, Dv: 20, layout: 'bshd', weights: true },
  { B: 2, Hq: 2, Hkv: 1, Sq: 40, Sk: 150, D: 16, Dv: 16, mask: 'additive', maskShape: 'qk', weights: true },
  { B: 2, Hq: 3, Hkv: 3, Sq: 37, Sk: 77, D: 24, Dv: 24, mask: 'boolean', maskShape: 'b1qk' },
  { B: 2, Hq: 2, Hkv: 2, Sq: 21, Sk: 67, D: 8, Dv: 12, mask: 'additive', maskShape: 'bhqk', causal: true, layout: 'bshd' },
  { B: 3, Hq: 2, Hkv: 2, Sq: 45, Sk: 99, D: 40, Dv: 40, keyLengths: [99, 0, 17], weights: true },
  { B: 2, Hq: 4, Hkv: 1, Sq: 1, Sk: 300, D: 64, Dv: 64, keyLengths: [300, 129] },
  { B: 1, Hq: 2, Hkv: 2, Sq: 50, Sk: 50, D: 20, Dv: 20, causal: true, scale: 0.7, mask: 'boolean', maskShape: 'bhqk', weights: true },
  // decoding (fewer than 4 query rows): the row-at-a-time path, its 32 / 4 / 1-column tails
  { B: 2, Hq: 4, Hkv: 2, Sq: 1, Sk: 257, D: 128, Dv: 128, keyLengths: [257, 100], weights: true },
  { B: 1, Hq: 3, Hkv: 3, Sq: 3, Sk: 70, D: 13, Dv: 39, causal: true, mask: 'additive', maskShape: 'bhqk', weights: true },
  { B: 2, Hq: 2, Hkv: 1, Sq: 2, Sk: 33, D: 7, Dv: 5, mask: 'boolean', maskShape: 'qk', layout: 'bshd', weights: true },
  { B: 1, Hq: 1, Hkv: 1, Sq: 3, Sk: 2, D: 4, Dv: 4, causal: true, weights: true },
];

for (const build of kernelBuilds()) {
  describe(`wasm kernels: ${build}`, () => {
    let backend: WasmBackend;
    let attn: Attention;
    before(() => {
      backend = wasmBackend(build);
      attn = new Attention(backend);
    });

    it('reports the build it runs', () => {
      assert.equal(backend.name, 'wasm');
      assert.equal(backend.isa, build);
      assert.equal(attn.info().isa, build);
      assert.equal(backend.details().build, build);
    });

    it('exp2 approximation: relative error measured over [-126, 0], and its edges', () => {
      const { exports: x, heap } = backend.instance;
      const n = 100_003;
      const xs = heap.alloc(n * 4);
      const ys = heap.alloc(n * 4);
      try {
        const f32 = heap.f32;
        for (let i = 0; i < n; i++) f32[(xs >> 2) + i] = -126 + (126 * i) / (n - 1);
        x.exp2Array(ys, xs, n);
        let worst = 0;
        for (let i = 0; i < n; i++) {
          const want = 2 ** f32[(xs >> 2) + i];
          worst = Math.max(worst, Math.abs(f32[(ys >> 2) + i] - want) / want);
        }
        console.log(`      exp2 (${build}): max relative error ${worst.toExponential(2)} over [-126, 0] (float32 epsilon 1.19e-7)`);
        assert.ok(worst < 4e-7, `max relative error ${worst}`);
        // -Infinity (a hidden key) gives exactly 0, NaN stays NaN, 0 gives 1, far below -126 gives 0
        f32.set([-Infinity, NaN, 0, -1000], xs >> 2);
        x.exp2Array(ys, xs, 4);
        const [a, b, c, d] = f32.subarray(ys >> 2, (ys >> 2) + 4);
        assert.equal(a, 0);
        assert.ok(Number.isNaN(b));
        assert.equal(c, 1);
        assert.equal(d, 0);
      } finally {
        heap.free(xs);
        heap.free(ys);
      }
    });

    it('attention against the reference: tiles, tails, GQA, Dv != D, bshd, masks, keyLengths, causal, weights', () => {
      CASES.forEach((c, i) => checkCase(attn, c, 1000 + i, `${build} case ${i} ${JSON.stringify(c)}`));
    });

    it('attention: fully hidden rows give zeros (and zero weights), NaN propagates, hidden NaN values stay hidden', () => {
      const B = 1, H = 2, S = 40, D = 16;
      const rand = rng(7);
      const q = randomTensor(rand, [B, H, S, D]);
      const k = randomTensor(rand, [B, H, S, D]);
      const v = randomTensor(rand, [B, H, S, D]);
      q.data[3 * D + 5] = NaN; // head 0, query row 3
      v.data[(S + 30) * D + 2] = NaN; // head 1, key 30: hidden from causal rows < 30
      const mask: Tensor<Uint8Array> = { data: new Uint8Array(S * S).fill(1), shape: [S, S] };
      for (let j = 0; j < S; j++) mask.data[10 * S + j] = 0; // row 10 sees nothing
      const opts = { causal: true, mask, returnWeights: true };
      const got = attn.attention(q, k, v, opts);
      const want = reference.attention(q, k, v, opts);
      assertClose(got.output.data, want.output.data, 'output');
      assertClose(got.weights!.data, want.weights!.data, 'weights');
      for (let d = 0; d < D; d++) assert.equal(got.output.data[10 * D + d], 0);
    });

    it('matmul: a row of C is the same bit for bit whether it comes alone or among others (every row path does the same operations)', () => {
      const rand = rng(15);
      for (const transposeB of [false, true]) {
        const [m, n, k] = [7, 70, 45];
        const a = randomTensor(rand, [m, k]);
        const b = randomTensor(rand, transposeB ? [n, k] : [k, n]);
        const bias = randomTensor(rand, [n]).data;
        const all = new Float32Array(m * n);
        backend.matmul({ a: a.data, b: b.data, out: all, batch: 1, m, n, k, strideA: 0, strideB: 0, transposeB, bias });
        for (const rows of [1, 2, 3]) {
          for (let r0 = 0; r0 + rows <= m; r0 += rows) {
            const part = new Float32Array(rows * n);
            backend.matmul({ a: a.data.subarray(r0 * k, (r0 + rows) * k), b: b.data, out: part, batch: 1, m: rows, n, k, strideA: 0, strideB: 0, transposeB, bias });
            assert.deepEqual(part, all.subarray(r0 * n, (r0 + rows) * n), `rows ${r0}..${r0 + rows} transposeB ${transposeB}`);
          }
        }
      }
    });

    it('matmul against the reference (tails, batches, broadcast B, transposeB, bias)', () => {
      const rand = rng(5);
      const shapes: Array<[number, number, number, number, boolean, boolean, boolean]> = [
        [1, 1, 1, 1, false, false, false],
        [1, 5, 7, 3, true, true, false],
        [3, 17, 13, 29, false, true, false],
        [2, 64, 96, 64, true, false, false],
        [4, 9, 8, 33, false, true, true],
        [1, 130, 70, 300, true, true, false],
        // 1-3 rows: B [k][n] read in place four depth steps at a time (a depth past a multiple of
        // four, a column tail); B [n][k] in groups of four panels (kernel1x32) and a partial one
        [1, 3, 77, 37, false, true, false],
        [1, 2, 70, 45, true, true, false],
        [2, 7, 40, 19, true, false, false],
      ];
      for (const [batch, m, n, k, transposeB, bias, broadcastB] of shapes) {
        const a = randomTensor(rand, [batch, m, k]);
        const bMat = transposeB ? [n, k] : [k, n];
        const b = randomTensor(rand, broadcastB ? bMat : [batch, ...bMat]);
        const bi = bias ? randomTensor(rand, [n]).data : undefined;
        const out = new Float32Array(batch * m * n);
        backend.matmul({ a: a.data, b: b.data, out, batch, m, n, k, strideA: m * k, strideB: broadcastB ? 0 : n * k, transposeB, bias: bi });
        const want = reference.matmul(a, b, { transposeB, bias: bi });
        assertClose(out, want.data, `matmul ${[batch, m, n, k, transposeB, bias, broadcastB]}`);
      }
    });

    it('softmax against the reference (scale, tails, -Infinity rows, NaN)', () => {
      const rand = rng(9);
      for (const [rows, cols, scale] of [[1, 1, 1], [3, 7, 0.5], [5, 64, -1.3], [2, 1031, 2]] as const) {
        const x = randomTensor(rand, [rows, cols]);
        if (rows > 2) x.data.fill(-Infinity, cols, 2 * cols);
        if (rows > 3) x.data[3 * cols + 1] = NaN;
        const out = new Float32Array(rows * cols);
        backend.softmax({ x: x.data, out, rows, cols, scale });
        assertClose(out, reference.softmax(x, { scale }).data, `softmax ${rows}x${cols}`);
      }
    });
  });
}

describe('wasm backend: builds and loading', () => {
  it('wasmBuilds() lists simd128, and relaxed-simd only where it validates', () => {
    const builds = wasmBuilds();
    assert.ok(builds.includes('simd128'), `builds: ${builds}`);
    const relaxedBytes = readFileSync(wasmPath('relaxed-simd'));
    assert.equal(builds.includes('relaxed-simd'), WebAssembly.validate(relaxedBytes));
    assert.ok(WebAssembly.validate(readFileSync(wasmPath('simd128'))));
  });

  it('finds the package root and its .wasm files', () => {
    assert.equal(JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).name, 'simd-attention');
    assert.match(wasmPath('simd128'), /dist[\\/]wasm[\\/]attention-simd\.wasm$/);
  });

  it('asking for a build the runtime lacks throws a clear Error (a child Node without the relaxed-SIMD flag)', function () {
    const script = `import { wasmBuilds, loadWasmBackendSync } from './src/backends/wasm.ts';
      if (wasmBuilds().includes('relaxed-simd')) console.log('HAS-RELAXED');
      else try { loadWasmBackendSync({ build: 'relaxed-simd' }); console.log('NO-ERROR'); } catch (e) { console.log('ERROR ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const line = r.stdout.trim().split('\n').pop()!;
    // Node 22+ validates relaxed SIMD without a flag: there is no runtime here that lacks it
    if (line === 'HAS-RELAXED') this.skip();
    assert.match(line, /^ERROR .*relaxed SIMD/);
  });

  it('loads from bytes, an ArrayBuffer, a compiled module, a file URL and a path', async () => {
    const file = wasmPath('simd128');
    const bytes = new Uint8Array(readFileSync(file));
    const sources = [
      new Uint8Array(readFileSync(wasmPath('simd128', true))), // imports a shared memory: detected
      bytes,
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      new WebAssembly.Module(bytes),
      pathToFileURL(file),
      pathToFileURL(file).href,
      file,
    ];
    for (const source of sources) {
      const be = await loadWasmBackend({ source: source as never });
      const attn = new Attention(be);
      checkCase(attn, { B: 1, Hq: 2, Hkv: 1, Sq: 9, Sk: 11, D: 8, Dv: 8, causal: true }, 3, `source ${Object.prototype.toString.call(source)}`);
      be.close?.();
    }
  });

  it('the relaxed-SIMD build passes the kernel suite (in a child Node with --experimental-wasm-relaxed-simd when needed)', function () {
    if (process.env.SIMD_ATTENTION_WASM_BUILDS) this.skip(); // already the child
    this.timeout(120_000);
    if (wasmBuilds().includes('relaxed-simd')) return; // ran above in this process
    const r = spawnSync(
      process.execPath,
      ['--experimental-wasm-relaxed-simd', '--import', 'tsx', mochaBin, '--no-config', '--timeout', '60000', '--grep', 'wasm kernels', join(here, 'wasm.test.ts')],
      { cwd: root, env: { ...process.env, SIMD_ATTENTION_WASM_BUILDS: 'relaxed-simd' }, encoding: 'utf8' },
    );
    const output = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.status, 0, `child mocha failed:\n${output}`);
    assert.match(output, /wasm kernels: relaxed-simd/);
    assert.match(output, /[1-9]\d* passing/);
    const line = output.split('\n').find((l) => l.includes('max relative error'));
    if (line) console.log(line.replace(/^\s*/, '      '));
  });

  it('load() falls back to wasm when the native addon is absent (fresh process)', function () {
    this.timeout(60_000);
    const code = `
      import { load } from ${JSON.stringify(pathToFileURL(join(root, 'src', 'index.ts')).href)};
      const attn = await load();
      console.log(JSON.stringify(attn.info()));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root,
      env: { ...process.env, SIMD_ATTENTION_BACKEND: '', SIMD_ATTENTION_NATIVE_PATH: join(root, 'no-such-addon.node') },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(info.backend, 'wasm');
    assert.ok(['simd128', 'relaxed-simd'].includes(info.isa));
    assert.match(info.fallbackReason, /native/);
  });
});

describe('wasm backend: memory', () => {
  it('grows for a large call, then reuses the memory (no growth, nothing left allocated)', () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    const heap = be.instance.heap;
    const start = heap.byteLength;
    const c: Case = { B: 1, Hq: 4, Hkv: 4, Sq: 300, Sk: 700, D: 64, Dv: 64, weights: true };
    checkCase(attn, c, 11, 'large');
    const grown = heap.byteLength;
    const grows = heap.grows;
    assert.ok(grown > start, `memory grew: ${start} -> ${grown}`);
    assert.equal(heap.inUse, 0);
    for (let i = 0; i < 3; i++) checkCase(attn, c, 12 + i, `again ${i}`);
    checkCase(attn, { B: 1, Hq: 1, Hkv: 1, Sq: 3, Sk: 5, D: 4, Dv: 4 }, 20, 'small');
    assert.equal(heap.byteLength, grown);
    assert.equal(heap.grows, grows);
    assert.equal(heap.inUse, 0);
  });

  it('K and V from outside WASM memory go in one kv head at a time from 2 MiB: bit-identical to one whole copy, in less memory', () => {
    // 1 x 8 query heads over 4 kv heads, 1024 keys, D 128: K+V = 4 MiB, past the default threshold
    const rand = rng(31);
    const q = randomTensor(rand, [1, 8, 1, 128]);
    const k = randomTensor(rand, [1, 4, 1024, 128]);
    const v = randomTensor(rand, [1, 4, 1024, 128]);
    const keyLengths = Int32Array.of(997); // not a multiple of 8: the packed group's tail is zeroed
    const staged = wasmBackend('simd128');
    const whole = loadWasmBackendSync({ build: 'simd128', stageKvFromBytes: Infinity }) as WasmBackend;
    const results = [staged, whole].map((be) => {
      const copied = be.instance.heap.copiedIn;
      const r = new Attention(be).attention(q, k, v, { keyLengths, returnWeights: true });
      // staged: only the 997 visible keys of K and V; whole: every input byte once
      const kv = be === staged ? (k.data.byteLength + v.data.byteLength) * (997 / 1024) : k.data.byteLength + v.data.byteLength;
      assert.equal(be.instance.heap.copiedIn - copied, q.data.byteLength + kv + 4, 'bytes copied in');
      assert.equal(be.instance.heap.inUse, 0);
      return r;
    });
    assert.deepEqual(results[0].output.data, results[1].output.data, 'output bit for bit');
    assert.deepEqual(results[0].weights!.data, results[1].weights!.data, 'weights bit for bit');
    assertClose(results[0].output.data, reference.attention(q, k, v, { keyLengths }).output.data, 'staged against the reference');
    // the staged call held one kv head's K and V (1 MiB), the whole copy all four (4 MiB)
    assert.ok(staged.instance.heap.byteLength < whole.instance.heap.byteLength, `memory: staged ${staged.instance.heap.byteLength}, whole ${whole.instance.heap.byteLength}`);
    // K already in WASM memory (alloc), V a plain array: only V is staged, K read in place
    const sattn = new Attention(staged);
    const kw = sattn.alloc(k.shape);
    kw.data.set(k.data);
    const copied = staged.instance.heap.copiedIn;
    const mixed = sattn.attention(q, kw, v, { keyLengths });
    assert.equal(staged.instance.heap.copiedIn - copied, q.data.byteLength + v.data.byteLength * (997 / 1024) + 4, 'K not copied');
    assert.deepEqual(mixed.output.data, results[1].output.data, 'K in place, V staged: bit for bit');
  });

  it('staged K and V with keyLengths: hidden keys are neither copied nor read (a NaN left in the block by an earlier head stays out)', () => {
    const be = loadWasmBackendSync({ build: 'simd128', stageKvFromBytes: 0 }) as WasmBackend;
    const rand = rng(33);
    const [B, H, Sq, Sk, D] = [2, 2, 16, 40, 16];
    const q = randomTensor(rand, [B, H, Sq, D]);
    const k = randomTensor(rand, [B, H, Sk, D]);
    const v = randomTensor(rand, [B, H, Sk, D]);
    // batch 1 sees 3 keys; every key batch 0 leaves in the staging block is NaN, as are batch 1's hidden ones
    k.data.fill(NaN, 0, H * Sk * D);
    v.data.fill(NaN, 0, H * Sk * D);
    for (const t of [k, v]) for (let h = 0; h < H; h++) t.data.fill(NaN, ((H + h) * Sk + 3) * D, (H + h + 1) * Sk * D);
    const keyLengths = Int32Array.of(Sk, 3);
    const got = new Attention(be).attention(q, k, v, { keyLengths }).output.data;
    const want = reference.attention(q, k, v, { keyLengths }).output.data;
    const half = H * Sq * D;
    assert.ok(got.subarray(0, half).every(Number.isNaN) && want.subarray(0, half).every(Number.isNaN), 'batch 0 is NaN in both');
    assertClose(got.subarray(half), want.subarray(half), 'batch 1 (3 visible keys)');
  });

  it('gives right answers when its memory lies above 2 GiB (offsets past the int32 range)', () => {
    // whole copy and staged copy; a filler block (never touched: address space, not RAM) pushes
    // the call's blocks past 2^31, where a signed `offset >> 2` once read the wrong place
    for (const stageKvFromBytes of [Infinity, 0]) {
      const be = loadWasmBackendSync({ build: 'simd128', stageKvFromBytes }) as WasmBackend;
      const heap = be.instance.heap;
      const filler = heap.alloc(2 ** 31 + 2 ** 20);
      try {
        const attn = new Attention(be);
        checkCase(attn, { B: 2, Hq: 4, Hkv: 2, Sq: 5, Sk: 37, D: 24, Dv: 24, causal: true, weights: true }, 40, `above 2 GiB, staging from ${stageKvFromBytes} bytes`);
        // the multi-head block's KV cache (its rows are read back out of WASM memory)
        const rand = rng(41);
        const E = 16, S = 5;
        const w = (r: number, c: number) => randomTensor(rand, [r, c]).data.map((x) => x * 0.3);
        const params = { embedDim: E, numHeads: 4, numKvHeads: 2, wq: w(E, E), wk: w(8, E), wv: w(8, E), wo: w(E, E) };
        const mha = attn.multiHeadAttention(params);
        const x = randomTensor(rand, [1, S, E]);
        const cache = mha.createCache({ batch: 1, maxLength: S });
        const got = new Float32Array(S * E);
        got.set(mha.forward({ data: x.data.slice(0, 3 * E), shape: [1, 3, E] }, { causal: true, cache }).data);
        for (let s = 3; s < S; s++) got.set(mha.forward({ data: x.data.slice(s * E, (s + 1) * E), shape: [1, 1, E] }, { causal: true, cache }).data, s * E);
        assertClose(got, reference.multiHeadAttention(x, params, { causal: true }).data, 'KV cache above 2 GiB', 1e-3, 1e-3);
        // the cache's record (what a worker catches up from) holds x·Wkᵀ and x·Wvᵀ
        const xm = { data: x.data, shape: [S, E] };
        assertClose(cacheState(cache)!.k, reference.matmul(xm, { data: params.wk, shape: [8, E] }, { transposeB: true }).data, 'cached keys', 1e-4, 1e-4);
        assertClose(cacheState(cache)!.v, reference.matmul(xm, { data: params.wv, shape: [8, E] }, { transposeB: true }).data, 'cached values', 1e-4, 1e-4);
        mha.dispose();
      } finally {
        heap.free(filler);
      }
    }
  });

  it('an alloc() tensor that ends at the very top of a 4 GiB memory is read whole (a loop to its end address wrapped to 0)', () => {
    for (const build of kernelBuilds()) {
      const be = loadWasmBackendSync({ build }) as WasmBackend;
      const heap = be.instance.heap;
      const attn = new Attention(be);
      const rand = rng(43);
      const [Sq, Sk, D] = [8, 1024, 16]; // V: 64 KiB, one page
      const q = randomTensor(rand, [1, 1, Sq, D]), k = randomTensor(rand, [1, 1, Sk, D]), v = randomTensor(rand, [1, 1, Sk, D]);
      // fillers stand for other tensors (address space, not RAM); a hole below them is kept for
      // the call's own blocks; V takes the last 64 KiB
      const filler1 = heap.alloc(2 ** 30);
      const hole = heap.alloc(16 * 2 ** 20);
      const filler2 = heap.alloc(heap.maxBytes - (hole + 16 * 2 ** 20) - 65536);
      try {
        const top = attn.alloc([1, 1, Sk, D]);
        assert.equal(top.data.byteOffset + top.data.byteLength, 2 ** 32, `${build}: V ends at the top of the memory`);
        top.data.set(v.data);
        heap.free(hole);
        assertClose(attn.attention(q, k, top).output.data, reference.attention(q, k, v).output.data, `${build}: V at the top of memory`);
      } finally {
        heap.free(filler1);
        heap.free(filler2);
        attn.close();
      }
    }
  });

  it('scratch and packed sizes are exact past 2 and 4 GiB (32-bit sizes came back negative or wrapped)', () => {
    const x = wasmBackend('simd128').instance.exports;
    const ceil8 = (v: number) => Math.ceil(v / 8) * 8;
    const attn = (sk: number, d: number, dv: number) => 4 * (ceil8(sk) * d + ceil8(sk) * ceil8(dv) + 32 * d + 32 * 64 + 32 * ceil8(dv) + 96) + 256;
    for (const [sk, d, dv] of [[60_000_000, 1, 1], [2 ** 31 - 1, 8, 8], [1000, 64, 64], [1, 1, 1]]) {
      assert.equal(x.attentionScratchBytes(sk, d, dv), attn(sk, d, dv), `attentionScratchBytes(${sk}, ${d}, ${dv})`);
    }
    assert.ok(x.attentionScratchBytes(60_000_000, 1, 1) > 2 ** 31);
    assert.equal(x.matmulScratchBytes(128, 4_200_000, 0), 16 * 4_200_000 * 32 + 16 * 32 + 192);
    assert.equal(x.matmulScratchBytes(2 ** 31 - 1, 2 ** 31 - 1, 1), Math.ceil((2 ** 31 - 1) / 8) * (2 ** 31 - 1) * 32 + Math.ceil((2 ** 31 - 1) / 8) * 32 + 192);
    assert.equal(x.matmulPackedBytes(32768, 32768), 4096 * 32768 * 32 + 4096 * 32);
    // such a size is refused by the allocator, never handed over as a small block
    const heap = wasmBackend('simd128').instance.heap;
    assert.throws(() => heap.alloc(x.attentionScratchBytes(2 ** 31 - 1, 8, 8)), { code: 'ERR_ATTN_ALLOC' });
  });

  it('too large a request is ERR_ATTN_ALLOC, and the instance keeps working', () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    assert.throws(() => be.alloc(2 ** 30 + 16), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_ALLOC' && /allocate/.test(e.message));
    assert.throws(() => be.instance.heap.alloc(5e9), { code: 'ERR_ATTN_ALLOC' });
    assert.equal(be.instance.heap.inUse, 0);
    checkCase(attn, { B: 1, Hq: 2, Hkv: 2, Sq: 20, Sk: 30, D: 16, Dv: 16, causal: true }, 21, 'after the refusal');
  });

  it('a call that cannot get memory (capped instance) fails with ERR_ATTN_ALLOC, frees what it took, and the next call works', () => {
    const bytes = readFileSync(wasmPath('simd128'));
    const inst = instantiateSync(bytes, { maxPages: 64 }); // 4 MiB
    const be = createWasmBackend(inst);
    const attn = new Attention(be);
    const rand = rng(3);
    const q = randomTensor(rand, [1, 4, 512, 64]); // 512 KiB each: q, k, v, out fit; the weights (4 MiB) do not
    const k = randomTensor(rand, [1, 4, 512, 64]);
    const v = randomTensor(rand, [1, 4, 512, 64]);
    assert.throws(() => attn.attention(q, k, v, { returnWeights: true }), { code: 'ERR_ATTN_ALLOC' });
    assert.equal(inst.heap.inUse, 0);
    const got = attn.attention(q, k, v);
    assertClose(got.output.data, reference.attention(q, k, v).output.data, 'after the failed call');
  });

  it('alloc(): tensors inside WASM memory are used without a copy (inputs and output)', () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    const heap = be.instance.heap;
    const shape = [1, 4, 100, 32];
    const rand = rng(4);
    const q = attn.alloc(shape);
    const k = attn.alloc(shape);
    const v = attn.alloc(shape);
    const out = attn.alloc(shape);
    for (const t of [q, k, v]) {
      assert.ok(t.data.buffer === heap.memory.buffer, 'the tensor views WASM memory');
      assert.ok(t.data.every((x) => x === 0));
      t.data.set(randomTensor(rand, shape).data);
    }
    const copied = heap.copiedIn;
    const res = attn.attention(q, k, v, { causal: true, out: out.data });
    assert.equal(heap.copiedIn, copied, 'no input was copied');
    assert.ok(res.output.data === out.data, 'the result is the out tensor');
    assert.ok(heap.owns(out.data), 'the output still views WASM memory');
    const want = reference.attention(
      { data: q.data.slice(), shape },
      { data: k.data.slice(), shape },
      { data: v.data.slice(), shape },
      { causal: true },
    );
    assertClose(out.data, want.output.data, 'alloc() output');
    // plain arrays are copied in
    attn.attention({ data: q.data.slice(), shape }, k, v);
    assert.equal(heap.copiedIn, copied + q.data.byteLength);
  });

  it('alloc() tensors survive the memory growing (shared memory in Node), and stay zero-copy', () => {
    const be = wasmBackend('simd128');
    assert.equal(be.instance.shared, true, 'Node loads the shared-memory build');
    assert.equal(be.details().memory, 'shared');
    const attn = new Attention(be);
    const heap = be.instance.heap;
    const rand = rng(5);
    const shape = [1, 2, 300, 64];
    const q = attn.alloc(shape);
    q.data.set(randomTensor(rand, shape).data);
    const before = heap.byteLength;
    const big = [0, 1, 2].map(() => attn.alloc([64, 1024, 1024])); // 3 x 256 MiB: the memory must grow
    assert.ok(heap.byteLength >= 3 * 2 ** 28 && heap.byteLength > before, `grew: ${before} -> ${heap.byteLength}`);
    assert.equal(q.data.length, 2 * 300 * 64, 'the first tensor is not detached');
    big[2].data[12345] = 7;
    assert.equal(big[2].data[12345], 7);
    const copied = heap.copiedIn;
    const got = attn.attention(q, q, q, { causal: true });
    assert.equal(heap.copiedIn, copied, 'no copy after the grow either');
    assertClose(got.output.data, reference.attention({ data: q.data.slice(), shape }, { data: q.data.slice(), shape }, { data: q.data.slice(), shape }, { causal: true }).output.data, 'after the grow');
  });
});

describe('wasm backend: attentionAsync in a worker', () => {
  let be: Backend;
  let attn: Attention;
  before(() => {
    be = wasmBackend('simd128');
    attn = new Attention(be);
  });
  after(() => be.close?.());

  it('runs in a worker and equals attention()', async () => {
    const rand = rng(30);
    const q = randomTensor(rand, [2, 4, 65, 40]);
    const k = randomTensor(rand, [2, 2, 90, 40]);
    const v = randomTensor(rand, [2, 2, 90, 24]);
    const mask: Tensor<Uint8Array> = { data: new Uint8Array(65 * 90).map(() => (rand() < 0.8 ? 1 : 0)), shape: [65, 90] };
    const opts = { causal: true, mask, keyLengths: [90, 50], returnWeights: true };
    const sync = attn.attention(q, k, v, opts);
    const asyncRes = await attn.attentionAsync(q, k, v, opts);
    assert.equal(be.details().async, 'worker');
    assert.equal(be.details().worker, 'shares the memory');
    assert.deepEqual(Array.from(asyncRes.output.data), Array.from(sync.output.data));
    assert.deepEqual(Array.from(asyncRes.weights!.data), Array.from(sync.weights!.data));
  });

  it('keeps the calling thread free, and concurrent calls each get their own answer', async () => {
    const rand = rng(31);
    const shape = [1, 8, 1024, 64];
    const qs = [0, 1, 2].map(() => randomTensor(rand, shape));
    const k = randomTensor(rand, shape);
    const v = randomTensor(rand, shape);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const results = await Promise.all(qs.map((q) => attn.attentionAsync(q, k, v, { causal: true })));
    const elapsed = performance.now() - t0;
    clearInterval(timer);
    assert.ok(ticks >= Math.min(10, elapsed / 20), `timer ticked ${ticks} times in ${elapsed.toFixed(0)} ms`);
    qs.forEach((q, i) => {
      const sync = attn.attention(q, k, v, { causal: true });
      assert.deepEqual(Array.from(results[i].output.data), Array.from(sync.output.data));
    });
  });

  it('alloc() tensors go to the worker without a copy (it shares the memory)', async () => {
    const wb = be as WasmBackend;
    const heap = wb.instance.heap;
    const rand = rng(33);
    const shape = [1, 4, 200, 64];
    const [q, k, v, out] = [0, 1, 2, 3].map(() => attn.alloc(shape));
    for (const t of [q, k, v]) t.data.set(randomTensor(rand, shape).data);
    const copied = heap.copiedIn;
    await attn.attentionAsync(q, k, v, { causal: true, out: out.data });
    assert.equal(heap.copiedIn, copied);
    const plain = (t: Tensor) => ({ data: t.data.slice(), shape });
    assertClose(out.data, reference.attention(plain(q), plain(k), plain(v), { causal: true }).output.data, 'async zero-copy');
  });

  it('the copying protocol (a worker with its own memory, as in browsers without shared memory) gives the same answers', async () => {
    const inst = instantiateSync(readFileSync(wasmPath('simd128', true)));
    const cb = createWasmBackend(inst, { runner: nodeRunner(inst, { shareMemory: false }) });
    const cattn = new Attention(cb);
    const rand = rng(34);
    const q = randomTensor(rand, [2, 4, 40, 32]);
    const k = randomTensor(rand, [2, 2, 50, 32]);
    const want = reference.attention(q, k, k, { causal: true, returnWeights: true });
    const got = await cattn.attentionAsync(q, k, k, { causal: true, returnWeights: true });
    assert.equal(cb.details().worker, 'copies inputs and outputs');
    assertClose(got.output.data, want.output.data, 'copy-mode output');
    assertClose(got.weights!.data, want.weights!.data, 'copy-mode weights');
    // the multi-head block's twin in the worker, with a KV cache shared between the two threads
    const E = 32, S = 7;
    const w = (r: number, c: number) => randomTensor(rand, [r, c]).data.map((x) => x * 0.3);
    const params = { embedDim: E, numHeads: 4, numKvHeads: 2, wq: w(E, E), wk: w(16, E), wv: w(16, E), wo: w(E, E), bk: w(1, 16) };
    const mha = cattn.multiHeadAttention(params);
    const x = randomTensor(rand, [1, S, E]);
    const full = reference.multiHeadAttention(x, params, { causal: true }).data;
    const cache = mha.createCache({ batch: 1, maxLength: S });
    const got2 = new Float32Array(S * E);
    for (let s = 0; s < S; s++) {
      const row = { data: x.data.slice(s * E, (s + 1) * E), shape: [1, 1, E] };
      const y = s % 2 ? mha.forward(row, { causal: true, cache }) : await mha.forwardAsync(row, { causal: true, cache });
      got2.set(y.data, s * E);
    }
    assertClose(got2, full, 'copy-mode decode', 1e-3, 1e-3);
    mha.dispose();
    cb.close?.();
  });

  it('copying protocol: a reset cache refilled by the other thread, weights changed after creation, dispose() with a call pending', async () => {
    const inst = instantiateSync(readFileSync(wasmPath('simd128', true)));
    const cb = createWasmBackend(inst, { runner: nodeRunner(inst, { shareMemory: false }) });
    const cattn = new Attention(cb);
    const rand = rng(36);
    const E = 32;
    const w = (r: number, c: number) => randomTensor(rand, [r, c]).data.map((x) => x * 0.3);
    const params = { embedDim: E, numHeads: 4, wq: w(E, E), wk: w(E, E), wv: w(E, E), wo: w(E, E), bq: w(1, E) };
    const asBuilt = { ...params, wq: params.wq.slice(), wo: params.wo.slice(), bq: params.bq.slice() };
    const mha = cattn.multiHeadAttention(params);
    // the caller's arrays change after creation: neither thread sees it (the worker's twin is
    // built, at its first call, from the weights as packed then)
    params.wq.fill(0.5);
    params.bq.fill(-1);
    structuredClone(params.wo.buffer, { transfer: [params.wo.buffer] });
    const a = randomTensor(rand, [1, 4, E]);
    const b = randomTensor(rand, [1, 4, E]);
    const t = randomTensor(rand, [1, 1, E]);
    const wantAfter = (prompt: Tensor) => {
      const xs = new Float32Array(5 * E);
      xs.set(prompt.data);
      xs.set(t.data, 4 * E);
      return reference.multiHeadAttention({ data: xs, shape: [1, 5, E] }, asBuilt, { causal: true }).data.subarray(4 * E);
    };
    for (const firstOnWorker of [false, true]) {
      const cache = mha.createCache({ batch: 1, maxLength: 8 });
      const run = (onWorker: boolean, x: Tensor) => (onWorker ? mha.forwardAsync(x, { causal: true, cache }) : Promise.resolve(mha.forward(x, { causal: true, cache })));
      await run(firstOnWorker, a); // prompt A, mirrored on one side
      cache.reset();
      await run(!firstOnWorker, b); // prompt B at the same positions, written by the other side
      const y = await run(firstOnWorker, t); // that first side must not read its mirror of A
      assertClose(y.data, wantAfter(b), `after a reset, first on the ${firstOnWorker ? 'worker' : 'calling thread'}`, 1e-4, 1e-4);
    }
    // dispose() while forwardAsync is pending: the call was accepted, so it completes
    const base = inst.heap.inUse;
    const x = randomTensor(rand, [1, 6, E]);
    const pending = mha.forwardAsync(x, { causal: true });
    mha.dispose();
    assertClose((await pending).data, reference.multiHeadAttention(x, asBuilt, { causal: true }).data, 'disposed while pending', 1e-4, 1e-4);
    assert.ok(inst.heap.inUse < base, 'the weights were freed once the call settled');
    await assert.rejects(mha.forwardAsync(x), { code: 'ERR_ATTN_DISPOSED' });
    cb.close?.();
  });

  it('without a shared memory: alloc() tensors in a forward whose new cache mirror grows the memory', () => {
    const inst = instantiateSync(readFileSync(wasmPath('simd128')), { shared: false });
    const cattn = new Attention(createWasmBackend(inst));
    const rand = rng(38);
    const E = 64;
    const w = () => randomTensor(rand, [E, E]).data.map((x) => x * 0.3);
    const params = { embedDim: E, numHeads: 4, wq: w(), wk: w(), wv: w(), wo: w() };
    const mha = cattn.multiHeadAttention(params);
    const x = cattn.alloc([1, 3, E]);
    x.data.set(randomTensor(rand, [1, 3, E]).data);
    const plain = { data: x.data.slice(), shape: x.shape };
    const before = inst.heap.memory.buffer.byteLength;
    // the mirror (64 MiB) is allocated within the call, after x's offset was taken (the grow
    // detaches x.data, as the README says of alloc() tensors without a shared memory)
    const cache = mha.createCache({ batch: 1, maxLength: 2 ** 17 });
    const got = mha.forward(x, { causal: true, cache });
    assert.ok(inst.heap.memory.buffer.byteLength > before, 'the memory grew during the call');
    assert.equal(cache.length, 3);
    assertClose(got.data, reference.multiHeadAttention(plain, params, { causal: true }).data, 'alloc() input', 1e-4, 1e-4);
    mha.dispose();
  });

  it('cache mirrors: freed when their cache is collected, and kept within a budget when caches come faster than collection', async () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    const heap = be.instance.heap;
    const rand = rng(37);
    const E = 64;
    const w = () => randomTensor(rand, [E, E]).data.map((x) => x * 0.3);
    const params = { embedDim: E, numHeads: 4, wq: w(), wk: w(), wv: w(), wo: w() };
    const mha = attn.multiHeadAttention(params);
    const base = heap.inUse;
    const maxLength = 2048; // a mirror of 2048 x 2 x 64 floats: 1 MiB
    const x = randomTensor(rand, [1, 2, E]);
    const first = mha.createCache({ batch: 1, maxLength });
    mha.forward(x, { causal: true, cache: first });
    // a loop of single-use caches that never lets the event loop turn (so no finalizer runs)
    let most = 0;
    for (let i = 0; i < 300; i++) {
      mha.forward(x, { causal: true, cache: mha.createCache({ batch: 1, maxLength }) });
      most = Math.max(most, heap.inUse - base);
    }
    assert.ok(most <= MIRROR_BUDGET_BYTES + 2 ** 21, `mirrors took ${most} bytes`);
    // the first cache's mirror was evicted (least recently used): it is rebuilt from the record
    const t = randomTensor(rand, [1, 1, E]);
    const xs = new Float32Array(3 * E);
    xs.set(x.data);
    xs.set(t.data, 2 * E);
    const want = reference.multiHeadAttention({ data: xs, shape: [1, 3, E] }, params, { causal: true }).data.subarray(2 * E);
    assertClose(mha.forward(t, { causal: true, cache: first }).data, want, 'an evicted cache used again', 1e-4, 1e-4);
    // dropped caches' mirrors go when they are collected
    for (let i = 0; i < 5 && heap.inUse - base > 2 ** 21; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(heap.inUse - base <= 2 ** 21, `${heap.inUse - base} bytes of mirrors left after collection`);
    mha.dispose();
    be.close?.();
  });

  it('rejects, naming it, an out array whose buffer is transferred away during the call (inputs were copied at the call)', async () => {
    const inst = instantiateSync(readFileSync(wasmPath('simd128', true)));
    const cb = createWasmBackend(inst, { runner: nodeRunner(inst, { shareMemory: false }) });
    const rand = rng(35);
    const q = randomTensor(rand, [1, 2, 40, 16]);
    const want = reference.attention(q, q, q).output.data;
    for (const a of [attn, new Attention(cb)]) {
      const out = new Float32Array(q.data.length);
      const p = a.attentionAsync(q, q, q, { out });
      const moved = structuredClone(out.buffer, { transfer: [out.buffer] });
      await assert.rejects(p, (e: Error & { code?: string }) => {
        assert.ok(e instanceof RangeError);
        assert.equal(e.code, 'ERR_ATTN_SIZE');
        assert.match(e.message, /^args\.out: its buffer was detached \(transferred\) during the async call/);
        return true;
      });
      assert.equal(moved.byteLength, q.data.byteLength);
      const qc = { data: q.data.slice(), shape: q.shape };
      const p2 = a.attentionAsync(qc, q, q);
      structuredClone(qc.data.buffer, { transfer: [qc.data.buffer] });
      assertClose((await p2).output.data, want, 'input transferred after the call began');
    }
    // the multi-head block's forwardAsync (run in the worker) as well
    const E = 16;
    const w = () => randomTensor(rand, [E, E]).data.map((x) => x * 0.3);
    const mha = attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(), wk: w(), wv: w(), wo: w() });
    const x = randomTensor(rand, [1, 5, E]);
    const out = new Float32Array(5 * E);
    const fp = mha.forwardAsync(x, { out });
    structuredClone(out.buffer, { transfer: [out.buffer] });
    await assert.rejects(fp, /^RangeError: args\.out: its buffer was detached/);
    mha.dispose();
    cb.close?.();
  });

  it('without a worker, an array transferred away before the call computes is refused, not read or written in place', async () => {
    // no runner: attentionAsync / forwardAsync compute on this thread after an await, and copy
    // their arrays in only then; a detached one would have copied in nothing
    const inst = instantiateSync(readFileSync(wasmPath('simd128')));
    const local = new Attention(createWasmBackend(inst));
    const rand = rng(36);
    const q = randomTensor(rand, [1, 2, 24, 16]);
    const guard = local.alloc([64]);
    guard.data.fill(7);
    for (const victim of ['q', 'out'] as const) {
      const qc = { data: q.data.slice(), shape: q.shape };
      const out = new Float32Array(q.data.length);
      const p = local.attentionAsync(qc, q, q, { out });
      const buf = victim === 'q' ? qc.data.buffer : out.buffer;
      structuredClone(buf, { transfer: [buf] });
      await assert.rejects(p, new RegExp(`^RangeError: args\\.${victim}: its buffer was detached`));
    }
    const E = 16;
    const w = () => randomTensor(rand, [E, E]).data.map((x) => x * 0.3);
    const mha = local.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(), wk: w(), wv: w(), wo: w() });
    const x = randomTensor(rand, [1, 5, E]);
    const fp = mha.forwardAsync(x, { causal: true });
    structuredClone(x.data.buffer, { transfer: [x.data.buffer] });
    await assert.rejects(fp, /^RangeError: args\.x: its buffer was detached/);
    mha.dispose();
    assert.ok(guard.data.every((v) => v === 7), 'the heap around the call is untouched');
    const ok = await local.attentionAsync(q, q, q);
    assertClose(ok.output.data, reference.attention(q, q, q).output.data, 'a later call');
  });

  it('writes into an out array that lives in WASM memory', async () => {
    const rand = rng(32);
    const q = randomTensor(rand, [1, 2, 30, 16]);
    const out = attn.alloc([1, 2, 30, 16]);
    await attn.attentionAsync(q, q, q, { out: out.data });
    assertClose(out.data, reference.attention(q, q, q).output.data, 'async into alloc()');
  });
});

describe('wasm backend: multi-head block (packed weights, fused K/V projection, cache mirror, worker)', () => {
  const E = 64, H = 8, Hkv = 2, B = 2;
  const kvDim = (E / H) * Hkv;
  const rand = rng(40);
  const w = (rows: number, cols: number) => randomTensor(rand, [rows, cols]).data.map((x) => x * 0.3);
  const params = { embedDim: E, numHeads: H, numKvHeads: Hkv, wq: w(E, E), wk: w(kvDim, E), wv: w(kvDim, E), wo: w(E, E), bq: w(1, E), bv: w(1, kvDim), bo: w(1, E) };

  it('forward and forwardAsync (in the worker) equal the reference; dispose frees the weights', async () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    const heap = be.instance.heap;
    const base = heap.inUse;
    const mha = attn.multiHeadAttention(params);
    assert.ok(heap.inUse > base, 'weights packed into WASM memory');
    const x = randomTensor(rand, [B, 33, E]);
    const kv = randomTensor(rand, [B, 21, E]);
    const want = reference.multiHeadAttention(x, params, { causal: true }).data;
    assertClose(mha.forward(x, { causal: true }).data, want, 'forward', 1e-3, 1e-3);
    assertClose((await mha.forwardAsync(x, { causal: true })).data, want, 'forwardAsync', 1e-3, 1e-3);
    assert.equal(be.details().async, 'worker');
    const cross = reference.multiHeadAttention(x, params, { key: kv, value: kv, keyLengths: [21, 9] }).data;
    assertClose((await mha.forwardAsync(x, { key: kv, value: kv, keyLengths: [21, 9] })).data, cross, 'cross forwardAsync', 1e-3, 1e-3);
    mha.dispose();
    assert.equal(heap.inUse, base, 'dispose freed the packed weights');
    assert.throws(() => mha.forward(x), { code: 'ERR_ATTN_DISPOSED' });
    be.close?.();
  });

  it('KV cache: a prompt, then tokens alternating between this thread and the worker, then a reset, equal one causal pass', async () => {
    const be = wasmBackend('simd128');
    const attn = new Attention(be);
    const mha = attn.multiHeadAttention(params);
    const S = 12;
    const x = randomTensor(rand, [B, S, E]);
    const full = reference.multiHeadAttention(x, params, { causal: true }).data;
    const rows = (from: number, to: number): Tensor => {
      const data = new Float32Array(B * (to - from) * E);
      for (let b = 0; b < B; b++) data.set(x.data.subarray((b * S + from) * E, (b * S + to) * E), b * (to - from) * E);
      return { data, shape: [B, to - from, E] };
    };
    for (let round = 0; round < 2; round++) {
      const cache = mha.createCache({ batch: B, maxLength: S });
      const got = new Float32Array(B * S * E);
      const put = (t: Tensor, from: number, n: number) => {
        for (let b = 0; b < B; b++) got.set(t.data.subarray(b * n * E, (b + 1) * n * E), (b * S + from) * E);
      };
      put(mha.forward(rows(0, 4), { causal: true, cache }), 0, 4);
      for (let s = 4; s < S; s++) {
        const step = s % 3 === 0 ? mha.forward(rows(s, s + 1), { causal: true, cache }) : await mha.forwardAsync(rows(s, s + 1), { causal: true, cache });
        put(step, s, 1);
      }
      assert.equal(cache.length, S);
      assertClose(got, full, `decode round ${round}`, 1e-3, 1e-3);
      cache.reset();
      put(await mha.forwardAsync(rows(0, 6), { causal: true, cache }), 0, 6);
      put(mha.forward(rows(6, S), { causal: true, cache }), 6, S - 6);
      assertClose(got, full, `after reset, round ${round}`, 1e-3, 1e-3);
    }
    mha.dispose();
    be.close?.();
  });
});

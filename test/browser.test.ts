/**
 * browser: headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) loads the
 * browser entry dist/browser.mjs from a local static server and computes attention, attentionAsync
 * (in a Web Worker) and the multi-head block, checked against reference values computed here in
 * Node. Skipped, with the reason printed, only when /usr/bin/chromium is missing
 * (.ci/browser-deps.sh installs it).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as reference from '../src/reference/index.js';
import type { BackendInfo } from '../src/backend.js';
import type { Tensor } from '../src/tensor.js';
import { assertClose } from './helpers/compare.js';
import { randomTensor, rng } from './helpers/random.js';

type Browser = import('playwright-core').Browser;
type Page = import('playwright-core').Page;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

/** A static file server for the package root (loopback only); `cors`: as a CDN serves it to other origins. */
function serve(cors = false): Promise<Server> {
  const server = createServer((req, res) => {
    if (cors) res.setHeader('Access-Control-Allow-Origin', '*');
    let path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    // /coi/...: the same files, cross-origin isolated (COOP + COEP), so shared memory may be sent to workers
    const coi = path.startsWith('/coi/');
    if (coi) {
      path = path.slice(4);
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    const file = normalize(join(root, path));
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** plain arrays cross into the page */
const plain = (t: { data: ArrayLike<number>; shape: readonly number[] }) => ({ data: Array.from(t.data), shape: [...t.shape] });

/**
 * Runs `body` (plain JavaScript: the source of an async function of one argument) in the page.
 * The page code is a string, not a TypeScript function, so that what runs in Chromium is
 * exactly what is written here (tsx would otherwise inject its own helpers into it).
 */
async function inPage<T>(page: Page, body: string, input: unknown): Promise<T> {
  return page.evaluate(`(${body})(${JSON.stringify(input)})`) as Promise<T>;
}

describe('browser: headless Chromium runs dist/browser.mjs', function () {
  this.timeout(120_000);
  let server: Server | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let base = '';
  const pageErrors: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      // CI installs chromium and sets SIMD_ATTENTION_REQUIRE=...,browser: a missing browser fails there
      const required = (process.env.SIMD_ATTENTION_REQUIRE ?? '').split(',').includes('browser');
      assert.ok(!required, `${CHROMIUM} is missing and SIMD_ATTENTION_REQUIRE asks for the browser test`);
      console.log(`    [browser] skipped: ${CHROMIUM} is missing (install it with: bash .ci/browser-deps.sh)`);
      this.skip();
    }
    for (const f of ['dist/browser.mjs', 'dist/wasm-worker.mjs', 'dist/wasm/attention-simd.wasm', 'dist/wasm/attention-relaxed.wasm']) {
      assert.ok(existsSync(join(root, f)), `${f} is missing: run \`npm run build\``);
    }
    const { chromium } = await import('playwright-core');
    server = await serve();
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.goto(`${base}/test/fixtures/browser/index.html`);
    assert.equal(await page.textContent('#status'), 'ready');
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  afterEach(() => {
    assert.deepEqual(pageErrors.splice(0), [], 'no errors in the page');
  });

  it('load() picks wasm (relaxed SIMD where Chromium validates it) and attention equals the reference', async () => {
    const rand = rng(101);
    const q = randomTensor(rand, [2, 4, 37, 32]);
    const k = randomTensor(rand, [2, 2, 50, 32]);
    const v = randomTensor(rand, [2, 2, 50, 24]);
    const mask: Tensor<Uint8Array> = { data: new Uint8Array(37 * 50).map(() => (rand() < 0.8 ? 1 : 0)), shape: [37, 50] };
    const keyLengths = [50, 31];
    const want = reference.attention(q, k, v, { causal: true, mask, keyLengths, returnWeights: true });
    const got = await inPage<{ info: BackendInfo; builds: string[]; out: number[]; weights: number[] }>(
      page,
      `async ({ q, k, v, mask, keyLengths }) => {
        const m = await import('/dist/browser.mjs');
        const attn = await m.load();
        const t = (x) => m.tensor(new Float32Array(x.data), x.shape);
        const r = attn.attention(t(q), t(k), t(v), {
          causal: true,
          mask: m.tensor(new Uint8Array(mask.data), mask.shape),
          keyLengths,
          returnWeights: true,
        });
        return { info: attn.info(), builds: m.wasmBuilds(), out: Array.from(r.output.data), weights: Array.from(r.weights.data) };
      }`,
      { q: plain(q), k: plain(k), v: plain(v), mask: plain(mask), keyLengths },
    );
    assert.equal(got.info.backend, 'wasm', JSON.stringify(got.info));
    assert.equal(got.info.fallbackReason, undefined);
    assert.equal(got.info.isa, got.builds[0]);
    assert.equal(got.info.details?.memory, 'shared', 'Chromium gives shared memory, so the *-shared.wasm build is fetched');
    assert.match(got.info.details?.module ?? '', /attention-(simd|relaxed)-shared\.wasm$/);
    console.log(`      Chromium: backend ${got.info.backend}, isa ${got.info.isa}, builds ${got.builds.join(', ')}`);
    assertClose(got.out, want.output.data, 'browser attention output');
    assertClose(got.weights, want.weights!.data, 'browser attention weights');
  });

  it('attentionAsync runs in a Web Worker (both builds), and equals the reference', async () => {
    const rand = rng(102);
    const q = randomTensor(rand, [1, 4, 70, 64]);
    const k = randomTensor(rand, [1, 4, 90, 64]);
    const v = randomTensor(rand, [1, 4, 90, 64]);
    const want = reference.attention(q, k, v, { causal: true }).output.data;
    const got = await inPage<Array<{ build: string; async: string | undefined; worker: string | undefined; out: number[] }>>(
      page,
      `async ({ q, k, v }) => {
        const m = await import('/dist/browser.mjs');
        const t = (x) => m.tensor(new Float32Array(x.data), x.shape);
        const results = [];
        for (const build of m.wasmBuilds()) {
          const attn = await m.load({ backend: 'wasm', wasm: { build } });
          const r = await attn.attentionAsync(t(q), t(k), t(v), { causal: true });
          results.push({ build: attn.info().isa, async: attn.info().details?.async, worker: attn.info().details?.worker, out: Array.from(r.output.data) });
        }
        return results;
      }`,
      { q: plain(q), k: plain(k), v: plain(v) },
    );
    assert.ok(got.some((r) => r.build === 'simd128'), 'simd128 ran');
    for (const r of got) {
      assert.equal(r.async, 'worker', `${r.build}: attentionAsync ran in a worker`);
      // a page without cross-origin isolation cannot send shared memory to a worker
      assert.equal(r.worker, 'copies inputs and outputs');
      assertClose(r.out, want, `browser attentionAsync ${r.build}`);
    }
  });

  it('multi-head block (GQA, biases, causal; cross-attention with keyLengths) equals the reference', async () => {
    const rand = rng(103);
    const E = 48, H = 6, Hkv = 2, B = 2, S = 19, Skv = 23;
    const kvDim = (E / H) * Hkv;
    const w = (rows: number, cols: number) => randomTensor(rand, [rows, cols]).data;
    const params = { embedDim: E, numHeads: H, numKvHeads: Hkv, wq: w(E, E), wk: w(kvDim, E), wv: w(kvDim, E), wo: w(E, E), bq: w(1, E), bk: w(1, kvDim), bv: w(1, kvDim), bo: w(1, E) };
    const x = randomTensor(rand, [B, S, E]);
    const kv = randomTensor(rand, [B, Skv, E]);
    const keyLengths = [Skv, 11];
    const wantSelf = reference.multiHeadAttention(x, params, { causal: true }).data;
    const wantCross = reference.multiHeadAttention(x, params, { key: kv, value: kv, keyLengths }).data;
    const arr = (a: Float32Array) => Array.from(a);
    const got = await inPage<{ backend: string; self1: number[]; self2: number[]; cross: number[] }>(
      page,
      `async ({ p, x, kv, keyLengths }) => {
        const m = await import('/dist/browser.mjs');
        const attn = await m.load();
        const f = (a) => new Float32Array(a);
        const mha = attn.multiHeadAttention({
          embedDim: p.embedDim, numHeads: p.numHeads, numKvHeads: p.numKvHeads,
          wq: f(p.wq), wk: f(p.wk), wv: f(p.wv), wo: f(p.wo), bq: f(p.bq), bk: f(p.bk), bv: f(p.bv), bo: f(p.bo),
        });
        const xt = m.tensor(f(x.data), x.shape);
        const kvt = m.tensor(f(kv.data), kv.shape);
        const self1 = mha.forward(xt, { causal: true });
        const self2 = await mha.forwardAsync(xt, { causal: true });
        const cross = mha.forward(xt, { key: kvt, value: kvt, keyLengths });
        mha.dispose();
        return { backend: attn.backend, self1: Array.from(self1.data), self2: Array.from(self2.data), cross: Array.from(cross.data) };
      }`,
      {
        p: { embedDim: E, numHeads: H, numKvHeads: Hkv, wq: arr(params.wq), wk: arr(params.wk), wv: arr(params.wv), wo: arr(params.wo), bq: arr(params.bq), bk: arr(params.bk), bv: arr(params.bv), bo: arr(params.bo) },
        x: plain(x),
        kv: plain(kv),
        keyLengths,
      },
    );
    assert.equal(got.backend, 'wasm');
    // projections of width E = 48 accumulate ~48 products of magnitude ~1 before attention
    assertClose(got.self1, wantSelf, 'browser mha causal', 1e-3, 1e-3);
    assertClose(got.self2, wantSelf, 'browser mha forwardAsync', 1e-3, 1e-3);
    assertClose(got.cross, wantCross, 'browser mha cross-attention', 1e-3, 1e-3);
  });

  it('cross-origin isolated page: the worker shares the memory (nothing copied) for attentionAsync and forwardAsync with a KV cache', async () => {
    const coiPage = await browser!.newPage();
    coiPage.on('pageerror', (e) => pageErrors.push(e.message));
    try {
      await coiPage.goto(`${base}/coi/test/fixtures/browser/index.html`);
      const rand = rng(105);
      const q = randomTensor(rand, [1, 4, 50, 32]);
      const want = reference.attention(q, q, q, { causal: true }).output.data;
      const E = 32, S = 6;
      const w = (r: number, c: number) => Array.from(randomTensor(rand, [r, c]).data.map((x) => x * 0.3));
      const p = { embedDim: E, numHeads: 4, numKvHeads: 2, wq: w(E, E), wk: w(16, E), wv: w(16, E), wo: w(E, E) };
      const x = randomTensor(rand, [1, S, E]);
      const f = (a: number[]) => new Float32Array(a);
      const wantMha = reference.multiHeadAttention(x, { ...p, wq: f(p.wq), wk: f(p.wk), wv: f(p.wv), wo: f(p.wo) }, { causal: true }).data;
      const got = await inPage<{ isolated: boolean; worker: string; out: number[]; decode: number[] }>(
        coiPage,
        `async ({ q, p, x, S, E }) => {
          const m = await import('/coi/dist/browser.mjs');
          const attn = await m.load();
          const t = m.tensor(new Float32Array(q.data), q.shape);
          const r = await attn.attentionAsync(t, t, t, { causal: true });
          const f = (a) => new Float32Array(a);
          const mha = attn.multiHeadAttention({ ...p, wq: f(p.wq), wk: f(p.wk), wv: f(p.wv), wo: f(p.wo) });
          const cache = mha.createCache({ batch: 1, maxLength: S });
          const decode = [];
          for (let s = 0; s < S; s++) {
            const row = m.tensor(f(x.data.slice(s * E, (s + 1) * E)), [1, 1, E]);
            const y = s % 2 ? mha.forward(row, { causal: true, cache }) : await mha.forwardAsync(row, { causal: true, cache });
            decode.push(...y.data);
          }
          return { isolated: self.crossOriginIsolated, worker: attn.info().details?.worker, out: Array.from(r.output.data), decode };
        }`,
        { q: plain(q), p, x: plain(x), S, E },
      );
      assert.equal(got.isolated, true);
      assert.equal(got.worker, 'shares the memory');
      assertClose(got.out, want, 'isolated attentionAsync');
      assertClose(got.decode, wantMha, 'isolated decode', 1e-3, 1e-3);
    } finally {
      await coiPage.close();
    }
  });

  it('the package served from another origin (a CDN) still runs attentionAsync in a worker; close() ends it; no native here', async () => {
    const cdn = await serve(true);
    try {
      const cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
      const rand = rng(106);
      const q = randomTensor(rand, [1, 2, 30, 16]);
      const want = reference.attention(q, q, q, { causal: true }).output.data;
      const workersBefore = page.workers().length;
      const got = await inPage<{ async: string; out: number[]; native: string; after: string }>(
        page,
        `async ({ q, url }) => {
          const m = await import(url);
          let native = 'loaded';
          try { await m.load({ backend: 'native' }); } catch (e) { native = e.code; }
          const attn = await m.load({ backend: 'wasm' });
          const t = m.tensor(new Float32Array(q.data), q.shape);
          const r = await attn.attentionAsync(t, t, t, { causal: true });
          const async = attn.info().details.async;
          globalThis.cdnAttn = attn;
          return { async, out: Array.from(r.output.data), native, after: '' };
        }`,
        { q: plain(q), url: `${cdnBase}/dist/browser.mjs` },
      );
      assert.equal(got.native, 'ERR_ATTN_BACKEND_UNAVAILABLE');
      assert.equal(got.async, 'worker', 'a cross-origin worker script is started through a same-origin blob');
      assertClose(got.out, want, 'attentionAsync with the package from another origin');
      assert.equal(page.workers().length, workersBefore + 1);
      const closed = await inPage<string>(page, `async () => { globalThis.cdnAttn.close(); try { globalThis.cdnAttn.attention(); return 'ok'; } catch (e) { return e.code; } }`, null);
      assert.equal(closed, 'ERR_ATTN_DISPOSED');
      for (let i = 0; i < 50 && page.workers().length > workersBefore; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(page.workers().length, workersBefore, 'close() ended the worker');
    } finally {
      await new Promise<void>((resolve) => cdn.close(() => resolve()));
    }
  });

  it('close() before a cross-origin worker has answered still frees the blob URL it was started from', async () => {
    const cdn = await serve(true);
    try {
      const cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
      const got = await inPage<{ pending: string; made: number; kept: number }>(
        page,
        `async ({ url }) => {
          const made = new Set();
          const { createObjectURL: create, revokeObjectURL: revoke } = URL;
          URL.createObjectURL = function (b) { const u = create.call(URL, b); made.add(u); return u; };
          URL.revokeObjectURL = function (u) { made.delete(u); return revoke.call(URL, u); };
          let count = 0;
          try {
            const m = await import(url);
            const attn = await m.load({ backend: 'wasm' });
            const q = m.tensor(new Float32Array(16).fill(0.1), [1, 1, 2, 8]);
            const p = attn.attentionAsync(q, q, q).catch((e) => e.code);
            count = made.size;
            attn.close();
            return { pending: await p, made: count, kept: made.size };
          } finally {
            Object.assign(URL, { createObjectURL: create, revokeObjectURL: revoke });
          }
        }`,
        { url: `${cdnBase}/dist/browser.mjs?blob` },
      );
      assert.equal(got.pending, 'ERR_ATTN_DISPOSED');
      assert.equal(got.made, 1, 'the worker was started through a blob, not yet revoked when close() ran');
      assert.equal(got.kept, 0, 'close() revoked the blob URL');
    } finally {
      await new Promise<void>((resolve) => cdn.close(() => resolve()));
    }
  });

  it('takes the module from the caller (bytes, URL, compiled module), and alloc() views WASM memory', async () => {
    const rand = rng(104);
    const q = randomTensor(rand, [1, 2, 9, 16]);
    const want = reference.attention(q, q, q).output.data;
    const got = await inPage<{ outs: Array<{ module: string; out: number[] }>; allocOut: number[]; allocLength: number; syncBackend: string }>(
      page,
      `async ({ q }) => {
        const m = await import('/dist/browser.mjs');
        const url = new URL('/dist/wasm/attention-simd.wasm', location.href);
        const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
        const module = await WebAssembly.compile(bytes);
        const outs = [];
        for (const source of [bytes, url, url.href, module]) {
          const attn = await m.load({ wasm: source });
          const t = m.tensor(new Float32Array(q.data), q.shape);
          outs.push({ module: attn.info().details?.module, out: Array.from(attn.attention(t, t, t).output.data) });
        }
        const attn = await m.load();
        const a = attn.alloc(q.shape);
        a.data.set(q.data);
        const r = attn.attention(a, a, a);
        const sync = m.loadSync({ backend: 'js' });
        return { outs, allocOut: Array.from(r.output.data), allocLength: a.data.length, syncBackend: sync.backend };
      }`,
      { q: plain(q) },
    );
    assert.equal(got.outs.length, 4);
    for (const o of got.outs) assertClose(o.out, want, `browser load({ wasm: ${o.module} })`);
    assertClose(got.allocOut, want, 'browser alloc()');
    assert.equal(got.allocLength, q.data.length);
    assert.equal(got.syncBackend, 'js');
  });
});

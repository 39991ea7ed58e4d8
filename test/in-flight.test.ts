/**
 * An async call uses its arrays in place until its promise settles, so a call that would write
 * into them, or read what it writes, is refused with ERR_ATTN_VALUE (two calls sharing an `out`
 * would otherwise leave whichever finished last). Reads shared between calls stay allowed, and
 * the arrays are free again once the promise settles, resolved or rejected.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tensor } from '../src/index.js';
import type { Attention } from '../src/facade.js';
import { facadeOf, variants } from './helpers/backends.js';

const filled = (shape: number[], seed: number) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(seed * 7.1 + i * 0.37);
  return tensor(data, shape);
};

function refused(fn: () => unknown, name: RegExp): void {
  assert.throws(fn, (err: Error & { code?: string }) => {
    assert.ok(err instanceof RangeError, `${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.code, 'ERR_ATTN_VALUE', err.message);
    assert.match(err.message, name);
    assert.match(err.message, /pending/);
    return true;
  });
}

async function rejected(p: Promise<unknown>, name: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_ATTN_VALUE', err.message);
    assert.match(err.message, name);
    return true;
  });
}

for (const variant of variants()) {
  describe(`in-flight arrays: ${variant.label}`, () => {
    let attn: Attention;
    before(() => {
      attn = facadeOf(variant);
    });
    const [B, H, S, D] = [1, 2, 33, 16];
    const q = filled([B, H, S, D], 1);
    const k = filled([B, H, S, D], 2);
    const v = filled([B, H, S, D], 3);

    it('refuses calls that write what a pending attentionAsync uses, or read what it writes', async () => {
      const out = new Float32Array(B * H * S * D);
      const pending = attn.attentionAsync(q, k, v, { out });
      // checked when called, not after an await (the js backend settles on the next microtask)
      const second = attn.attentionAsync(k, q, v, { out });
      refused(() => attn.attention(q, k, v, { out }), /out writes into the memory of out/);
      // a view on part of the same memory counts
      refused(() => attn.softmax(filled([4], 4), { out: out.subarray(8, 12) }), /out writes into the memory of out/);
      refused(() => attn.attention(tensor(out, [B, H, S, D]), k, v), /q reads the memory of out/);
      refused(() => attn.matmul(tensor(out, [B * H * S, D]), filled([D, 3], 5)), /a reads the memory of out/);
      refused(() => attn.softmax(filled([B * H * S * D], 6), { out: k.data }), /out writes into the memory of k of a pending attentionAsync/);
      await rejected(second, /out writes into the memory of out of a pending attentionAsync/);
      // reading the pending call's inputs is fine, and so is an unrelated out
      const other = attn.attention(q, k, v);
      await pending;
      assert.deepEqual(Array.from(out), Array.from(other.output.data));
      // settled: the arrays are free again
      attn.attention(q, k, v, { out });
      await attn.attentionAsync(tensor(out.slice(), [B, H, S, D]), k, v, { out });
    });

    it('frees the arrays of a call that rejects', async () => {
      const q2 = filled([B, H, S, D], 7);
      const out = new Float32Array(B * H * S * D);
      const pending = attn.attentionAsync(q2, k, v, { out });
      // makes the call reject with ERR_ATTN_SIZE; the clone, owning the moved memory, is kept
      // until the call settles (a kernel may still write there)
      const moved = structuredClone(out.buffer, { transfer: [out.buffer] });
      await assert.rejects(pending, (err: Error & { code?: string }) => err.code === 'ERR_ATTN_SIZE');
      assert.ok(moved.byteLength > 0);
      attn.softmax(filled([B * H * S * D], 8), { out: q2.data });
    });

    it('refuses a forward that shares a pending forwardAsync\'s out or reads it', async () => {
      const E = 32;
      const w = (seed: number) => filled([E, E], seed).data.map((x) => x * 0.1);
      const block = attn.multiHeadAttention({ embedDim: E, numHeads: 4, wq: w(11), wk: w(12), wv: w(13), wo: w(14) });
      const x = filled([2, 5, E], 15);
      const out = new Float32Array(2 * 5 * E);
      const pending = block.forwardAsync(x, { out });
      const second = block.forwardAsync(filled([2, 5, E], 16), { out });
      refused(() => block.forward(tensor(out, [2, 5, E])), /x reads the memory of out of a pending forwardAsync/);
      refused(() => attn.softmax(filled([4], 17), { out: x.data.subarray(0, 4) }), /out writes into the memory of x of a pending forwardAsync/);
      // making a block reads (copies or packs) its weights
      refused(() => attn.multiHeadAttention({ embedDim: E, numHeads: 4, wq: w(11), wk: w(12), wv: w(13), wo: w(14), bo: out.subarray(0, E) }), /bo reads the memory of out of a pending forwardAsync/);
      await rejected(second, /out writes into the memory of out of a pending forwardAsync/);
      const alone = block.forward(x);
      await pending;
      assert.deepEqual(Array.from(out), Array.from(alone.data));
      block.forward(x, { out });
      block.dispose();
    });
  });
}

describe('in-flight arrays: one registry for the package\'s ESM and CommonJS builds', () => {
  it('a call through dist/index.cjs sees a pending call made through dist/index.mjs', async () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const esm = (await import(pathToFileURL(path.join(root, 'dist', 'index.mjs')).href)) as typeof import('../src/index.js');
    const cjs = createRequire(import.meta.url)(path.join(root, 'dist', 'index.cjs')) as typeof import('../src/index.js');
    assert.notEqual(esm.load, cjs.load, 'two copies of the module');
    const [a, b] = [esm.loadSync({ backend: 'js' }), cjs.loadSync({ backend: 'js' })];
    const q = filled([1, 1, 4, 8], 1);
    const out = new Float32Array(32);
    const pending = a.attentionAsync(q, q, q, { out });
    refused(() => b.attention(q, q, q, { out }), /out writes into the memory of out of a pending attentionAsync/);
    await pending;
    b.attention(q, q, q, { out });
  });
});

describe('in-flight arrays: a globalThis that takes no new property', () => {
  it('still loads and refuses, with a registry of its own (child process)', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const entry = pathToFileURL(path.join(root, 'dist', 'index.mjs')).href;
    const code = `Object.preventExtensions(globalThis);
const { loadSync, tensor } = await import(${JSON.stringify(entry)});
const a = loadSync({ backend: 'js' });
const q = tensor(new Float32Array(32).fill(0.5), [1, 1, 4, 8]);
const out = new Float32Array(32);
const p = a.attentionAsync(q, q, q, { out });
let code = 'accepted';
try { a.attention(q, q, q, { out }); } catch (e) { code = e.code; }
await p;
console.log(JSON.stringify({ code }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { code: 'ERR_ATTN_VALUE' });
  });
});

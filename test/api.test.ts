/** The public surface: load/loadSync, backend choice and its reasons, info(), out, alloc. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/backend.js';
import { createJsBackend } from '../src/backends/js.js';
import { chooseSync, choose, requestedBackend } from '../src/choose.js';
import { load, loadSync, tensor, version } from '../src/index.js';
import * as ref from '../src/reference/index.js';
import { assertClose } from './helpers/compare.js';
import { randomTensor, rng } from './helpers/random.js';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('api: backend choice', () => {
  const fail = (reason: string) => () => {
    throw new Error(reason);
  };

  it('auto falls through in order and records every reason', () => {
    const attn = chooseSync('auto', [
      { name: 'native', load: fail('no addon here') },
      { name: 'wasm', load: fail('wasm: no wasm here') }, // a reason already naming its backend is not prefixed twice
      { name: 'js', load: () => createJsBackend() },
    ]);
    assert.equal(attn.backend, 'js');
    assert.equal(attn.info().fallbackReason, 'native: no addon here; wasm: no wasm here');
  });

  it('auto with async loaders, one of them rejecting', async () => {
    const attn = await choose('auto', [
      { name: 'native', load: () => Promise.reject(new Error('nope')) },
      { name: 'wasm', load: async (): Promise<Backend> => createJsBackend() },
    ]);
    assert.equal(attn.info().fallbackReason, 'native: nope');
  });

  it('a named backend that cannot load throws ERR_ATTN_BACKEND_UNAVAILABLE with the reason', () => {
    assert.throws(
      () => chooseSync('native', [{ name: 'native', load: fail('compiler missing') }, { name: 'js', load: () => createJsBackend() }]),
      (err: Error & { code?: string }) => err.code === 'ERR_ATTN_BACKEND_UNAVAILABLE' && /native backend is not available here: compiler missing/.test(err.message),
    );
  });

  it('the backend option wins over SIMD_ATTENTION_BACKEND, which wins over auto; bad names are refused', () => {
    assert.equal(requestedBackend(undefined, undefined), 'auto');
    assert.equal(requestedBackend(undefined, 'wasm'), 'wasm');
    assert.equal(requestedBackend('js', 'wasm'), 'js');
    assert.throws(() => requestedBackend(undefined, 'gpu'), (e: Error & { code?: string }) => e instanceof RangeError && e.code === 'ERR_ATTN_VALUE' && /SIMD_ATTENTION_BACKEND/.test(e.message));
    assert.throws(() => requestedBackend('cuda', undefined), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_VALUE');
  });

  it('SIMD_ATTENTION_BACKEND=js is honoured by load() in a fresh process', () => {
    const script = "import { loadSync } from './src/index.ts'; console.log(JSON.stringify(loadSync().info()))";
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, env: { ...process.env, SIMD_ATTENTION_BACKEND: 'js' }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(info.backend, 'js');
  });
});

describe('api: load, info, out, alloc', () => {
  it('load() picks a backend and info() describes it', async () => {
    const attn = await load();
    const info = attn.info();
    assert.ok(['native', 'wasm', 'js'].includes(info.backend));
    assert.equal(info.backend, attn.backend);
    assert.equal(info.version, version);
    assert.equal(typeof info.isa, 'string');
    assert.ok(info.threads >= 1);
    if (info.backend !== 'native') assert.ok(info.fallbackReason, 'a fallback always says why');
  });

  it('the version constant matches package.json', async () => {
    const pkg = JSON.parse((await import('node:fs')).readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    assert.equal(version, pkg.version);
  });

  it('load options are checked', async () => {
    await assert.rejects(load({ threads: 0 }), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_VALUE');
    await assert.rejects(load({ backend: 'fast' as never }), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_VALUE');
    assert.throws(() => loadSync({ bogus: 1 } as never), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_OPTION');
    assert.throws(() => loadSync({ wasm: new Uint8Array(8) }), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_OPTION');
    // something meant as the module that is none of the kinds taken: refused, not read as options
    // setting nothing (which loaded the package's own module in place of the caller's)
    for (const wasm of [Promise.resolve(new Uint8Array(8)), new Blob([]), new Map(), 42, null]) {
      await assert.rejects(load({ backend: 'wasm', wasm: wasm as never }), (e: Error & { code?: string }) => e instanceof TypeError && e.code === 'ERR_ATTN_TYPE' && /wasm must be bytes/.test(e.message));
    }
  });

  it('out: the result is written into the caller array, which is returned', () => {
    const attn = loadSync({ backend: 'js' });
    const rand = rng(1);
    const q = randomTensor(rand, [1, 2, 3, 4]);
    const out = new Float32Array(24);
    const r = attn.attention(q, q, q, { out });
    assert.equal(r.output.data, out);
    assertClose(out, ref.attention(q, q, q).output.data, 'out');
  });

  it('alloc gives a zero-filled tensor usable as an input', () => {
    const attn = loadSync();
    const a = attn.alloc([2, 3]);
    assert.deepEqual(a.shape, [2, 3]);
    assert.equal(a.data.length, 6);
    assert.ok(a.data.every((x) => x === 0));
    a.data.set([1, 2, 3, 4, 5, 6]);
    const b = tensor(new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]), [3, 3]);
    assert.deepEqual([...attn.matmul(a, b).data], [1, 2, 3, 4, 5, 6]);
  });
});

/**
 * load()'s declared types, and the declarations the package ships: `npm test` type-checks this
 * file (tsc --noEmit) before mocha runs it, so each @ts-expect-error below fails the run if the
 * types accept the call.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from '../src/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('load(): the types refuse what it refuses', () => {
  // WebAssembly.Module is an empty interface, which any object matched: before, both calls
  // type-checked in the Node entry
  it('a misspelt wasm option does not type-check, and is refused at run time', async () => {
    // @ts-expect-error `biuld` is no option
    await assert.rejects(load({ backend: 'wasm', wasm: { biuld: 'simd128' } }), { code: 'ERR_ATTN_OPTION' });
  });

  it("the browser entry's `worker` option does not type-check in the Node entry, and is refused there", async () => {
    // @ts-expect-error the Node entry has no worker option
    await assert.rejects(load({ backend: 'wasm', wasm: { worker: false } }), { code: 'ERR_ATTN_OPTION' });
  });
});

describe('the shipped declarations (dist/types)', function () {
  this.timeout(120000);
  // TypeScript declares WebAssembly in its DOM library only: declarations that named it failed to
  // compile in a Node project without "dom" in its lib and without skipLibCheck (18 errors)
  it('type-check in a Node project without the DOM library, the package declarations checked', () => {
    const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'test', 'fixtures', 'types-without-dom')], { encoding: 'utf8', timeout: 110000 });
    assert.equal(r.status, 0, `tsc: ${r.stdout}${r.stderr}`);
  });
});

/**
 * `npx simd-attention info` (src/cli.ts): what runs, and the variable that chose it when one
 * chose something other than what would have run without it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeIsas } from '../src/backends/native.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function info(env: Record<string, string>): Map<string, string> {
  const clean = { ...process.env };
  delete clean.SIMD_ATTENTION_BACKEND;
  delete clean.SIMD_ATTENTION_ISA;
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli.ts'), 'info'], { cwd: root, env: { ...clean, ...env }, encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stderr);
  const rows = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-zA-Z ]+):\s+(.*)$/.exec(line);
    if (m) rows.set(m[1], rows.has(m[1]) ? `${rows.get(m[1])}; ${m[2]}` : m[2]);
  }
  return rows;
}

describe('cli: simd-attention info', function () {
  this.timeout(120000);
  const isas = nativeIsas();

  it('names SIMD_ATTENTION_BACKEND when it chose another backend than the default', () => {
    const rows = info({ SIMD_ATTENTION_BACKEND: 'js' });
    assert.equal(rows.get('backend'), 'js');
    assert.equal(rows.get('chosen by'), 'SIMD_ATTENTION_BACKEND=js');
  });

  it('does not credit SIMD_ATTENTION_ISA with a choice it did not make', function () {
    if (isas.length === 0) this.skip();
    // the ISA applies to native only
    const wasm = info({ SIMD_ATTENTION_BACKEND: 'wasm', SIMD_ATTENTION_ISA: isas[0] });
    assert.equal(wasm.get('backend'), 'wasm');
    assert.equal(wasm.get('chosen by'), 'SIMD_ATTENTION_BACKEND=wasm');
    // the best ISA is what runs anyway
    const best = info({ SIMD_ATTENTION_ISA: isas[0] });
    assert.equal(best.get('isa'), isas[0]);
    assert.equal(best.get('chosen by'), undefined);
  });

  it('names SIMD_ATTENTION_ISA when it chose a slower instruction set', function () {
    if (isas.length < 2) this.skip();
    const isa = isas[isas.length - 1];
    const rows = info({ SIMD_ATTENTION_ISA: isa });
    assert.equal(rows.get('backend'), 'native');
    assert.equal(rows.get('isa'), isa);
    assert.equal(rows.get('chosen by'), `SIMD_ATTENTION_ISA=${isa}`);
  });
});

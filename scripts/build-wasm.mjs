#!/usr/bin/env node
// Builds the AssemblyScript kernels (assembly/) into dist/wasm/: attention-simd.wasm (SIMD128)
// and attention-relaxed.wasm (SIMD128 + relaxed SIMD: f32x4.relaxed_madd), the two targets of
// asconfig.json, from the same source. Usage: node scripts/build-wasm.mjs [--debug]
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
let asc;
try {
  asc = join(dirname(require.resolve('assemblyscript/package.json')), 'bin', 'asc.js');
} catch {
  console.error('build-wasm: assemblyscript is not installed (npm install --include=dev)');
  process.exit(1);
}
mkdirSync(join(root, 'dist', 'wasm'), { recursive: true });
mkdirSync(join(root, 'build', 'wasm'), { recursive: true });

const targets = process.argv.includes('--debug') ? ['debug'] : ['simd', 'relaxed'];
for (const target of targets) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [asc, 'assembly/index.ts', '--config', 'asconfig.json', '--target', target], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    console.error(`build-wasm: asc failed for target ${target} (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  const out = target === 'debug' ? 'build/wasm/attention-debug.wasm' : `dist/wasm/attention-${target}.wasm`;
  console.log(`build-wasm: ${out} (${statSync(join(root, out)).size} bytes, ${Date.now() - t0} ms)`);
}

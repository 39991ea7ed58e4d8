#!/usr/bin/env node
// Builds the AssemblyScript kernels (assembly/) into dist/wasm/, all from the same source (the
// targets of asconfig.json):
//   attention-simd.wasm            SIMD128
//   attention-relaxed.wasm         SIMD128 + relaxed SIMD (f32x4.relaxed_madd)
//   attention-simd-shared.wasm     the same two importing a shared memory, which keeps views
//   attention-relaxed-shared.wasm  valid when it grows (alloc() tensors); used where the
//                                  runtime gives shared memory (Node; Chromium)
// Usage: node scripts/build-wasm.mjs [--debug]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
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

const targets = process.argv.includes('--debug') ? ['debug'] : ['simd', 'relaxed', 'simd-shared', 'relaxed-shared'];
const config = JSON.parse(readFileSync(join(root, 'asconfig.json'), 'utf8'));
const build = (target) =>
  new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [asc, 'assembly/index.ts', '--config', 'asconfig.json', '--target', target], {
      cwd: root,
      stdio: 'inherit',
    });
    child.on('exit', (code) => {
      if (code !== 0) {
        console.error(`build-wasm: asc failed for target ${target} (exit ${code})`);
        process.exit(code ?? 1);
      }
      const out = config.targets[target].outFile;
      console.log(`build-wasm: ${out} (${statSync(join(root, out)).size} bytes, ${Date.now() - t0} ms)`);
      resolve();
    });
  });
// two at a time (asc is single-threaded)
for (let i = 0; i < targets.length; i += 2) await Promise.all(targets.slice(i, i + 2).map(build));

// Builds dist/: the WASM kernels, the ESM / CommonJS / browser bundles and the type declarations.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

mkdirSync(join(root, 'dist'), { recursive: true });
if (existsSync(join(root, 'scripts/build-wasm.mjs'))) run(process.execPath, [join(root, 'scripts/build-wasm.mjs')]);

const common = { bundle: true, sourcemap: false, target: 'es2022', logLevel: 'warning', absWorkingDir: root };
const nodeEntries = [['src/index.ts', 'index'], ['src/demo.ts', 'demo'], ['src/cli.ts', 'cli'], ['src/wasm-worker.ts', 'wasm-worker']]
  .filter(([src]) => existsSync(join(root, src)));

await Promise.all([
  ...nodeEntries.map(([src, name]) =>
    esbuild.build({
      ...common,
      entryPoints: [src],
      outfile: `dist/${name}.mjs`,
      platform: 'node',
      format: 'esm',
      banner: name === 'cli' ? { js: '#!/usr/bin/env node' } : undefined,
    })),
  // CommonJS has no import.meta.url: give it one derived from __filename.
  esbuild.build({
    ...common,
    entryPoints: ['src/index.ts'],
    outfile: 'dist/index.cjs',
    platform: 'node',
    format: 'cjs',
    define: { 'import.meta.url': '__simdAttentionUrl' },
    banner: { js: 'const __simdAttentionUrl = require("node:url").pathToFileURL(__filename).href;' },
  }),
  // The bench, bundled for `npx simd-attention bench`: peers stay external (skipped when absent).
  ...[['bench/index.ts', 'bench'], ['bench/child.ts', 'bench-child']].map(([src, name]) =>
    esbuild.build({
      ...common,
      entryPoints: [src],
      outfile: `dist/${name}.mjs`,
      platform: 'node',
      format: 'esm',
      external: ['onnxruntime-node', 'onnxruntime-web', '@tensorflow/*', 'assemblyscript', 'tsx'],
      banner: { js: 'import { createRequire as __benchRequire } from "node:module"; const require = __benchRequire(import.meta.url);' },
    })),
  ...(existsSync(join(root, 'src/browser.ts'))
    ? [esbuild.build({ ...common, entryPoints: ['src/browser.ts'], outfile: 'dist/browser.mjs', platform: 'browser', format: 'esm' })]
    : []),
]);

run(process.execPath, ['--import', 'tsx', '-e', `import('./bench/limits.ts').then((m) => m.buildProbes('dist/bench-probes'))`]);
run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json']);
writeFileSync(join(root, 'dist/.stamp'), new Date().toISOString() + '\n');

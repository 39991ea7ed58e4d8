// Builds dist/: the WASM kernels, the ESM / CommonJS / browser bundles, the bundled bench with
// its probe modules, and the type declarations.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (args) => execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit' });

mkdirSync(join(root, 'dist'), { recursive: true });
run([join(root, 'scripts/build-wasm.mjs')]);

// CommonJS has no import.meta.url: give it one derived from __filename.
const cjsImportMeta = {
  define: { 'import.meta.url': '__simdAttentionUrl' },
  banner: { js: 'const __simdAttentionUrl = require("node:url").pathToFileURL(__filename).href;' },
};
// The bench, bundled for `npx simd-attention bench`: peers stay external (skipped when absent),
// and the CommonJS packages bundled into it (benchmark.js) get a require().
const benchBundle = {
  external: ['onnxruntime-node', 'onnxruntime-web', '@tensorflow/*', 'assemblyscript', 'tsx'],
  banner: { js: 'import { createRequire as __benchRequire } from "node:module"; const require = __benchRequire(import.meta.url);' },
};

const bundles = [
  ['src/index.ts', 'index.mjs'],
  ['src/index.ts', 'index.cjs', { format: 'cjs', ...cjsImportMeta }],
  ['src/browser.ts', 'browser.mjs', { platform: 'browser' }],
  ['src/wasm-worker.ts', 'wasm-worker.mjs'],
  ['src/demo.ts', 'demo.mjs'],
  ['src/cli.ts', 'cli.mjs', { banner: { js: '#!/usr/bin/env node' } }],
  ['bench/index.ts', 'bench.mjs', benchBundle],
  ['bench/child.ts', 'bench-child.mjs', benchBundle],
];
await Promise.all(
  bundles.map(([src, out, extra]) =>
    esbuild.build({
      absWorkingDir: root,
      entryPoints: [src],
      outfile: `dist/${out}`,
      bundle: true,
      target: 'es2022',
      platform: 'node',
      format: 'esm',
      logLevel: 'warning',
      ...extra,
    }),
  ),
);

run(['--import', 'tsx', '-e', `import('./bench/limits.ts').then((m) => m.buildProbes('dist/bench-probes'))`]);
run([join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json']);

// CommonJS consumers need declarations TypeScript reads as CommonJS: a .d.cts twin of every
// .d.ts whose relative imports point at the twins (an ESM .d.ts cannot be require()d).
for (const entry of readdirSync(join(root, 'dist/types'), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = join(entry.parentPath ?? entry.path, entry.name);
  const text = readFileSync(file, 'utf8').replace(/(from\s+['"]\.{1,2}\/[^'"]*?)\.js(['"])/g, '$1.cjs$2').replace(/(import\(['"]\.{1,2}\/[^'"]*?)\.js(['"]\))/g, '$1.cjs$2');
  writeFileSync(file.replace(/\.d\.ts$/, '.d.cts'), text);
}
writeFileSync(join(root, 'dist/.stamp'), new Date().toISOString() + '\n');

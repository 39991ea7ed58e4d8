/**
 * Where the bench reads packages and writes scratch files and results. It runs two ways: from
 * the repository's sources under tsx (`npm run bench`), and bundled into the published package
 * as dist/bench.mjs (`npx simd-attention bench`), where nothing may be written inside the
 * installed package and the probe modules come precompiled in dist/bench-probes/.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUNDLED = !fileURLToPath(import.meta.url).endsWith('.ts');
export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, '..');
/** scratch (git-ignored): compiled probe modules, cached reference outputs */
export const TMP_DIR =
  process.env.SIMD_ATTENTION_BENCH_TMP ?? (BUNDLED ? path.join(os.tmpdir(), 'simd-attention-bench') : path.join(ROOT, '.tmp', 'bench'));
export const RESULTS_DIR = BUNDLED ? path.join(process.cwd(), 'simd-attention-bench') : path.join(BENCH_DIR, 'results');
export const NODE_MODULES = path.join(ROOT, 'node_modules');
/** the child-process entry: child.ts under tsx from source, bench-child.mjs when bundled */
export const CHILD_ARGS = BUNDLED ? [path.join(BENCH_DIR, 'bench-child.mjs')] : ['--import', 'tsx', path.join(BENCH_DIR, 'child.ts')];
/** precompiled probe modules of the bundled bench */
export const PREBUILT_PROBES = path.join(BENCH_DIR, 'bench-probes');

/** Where the bench reads packages and writes scratch files and results. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, '..');
/** scratch (git-ignored): compiled probe modules, cached reference outputs */
export const TMP_DIR = process.env.SIMD_ATTENTION_BENCH_TMP ?? path.join(ROOT, '.tmp', 'bench');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
export const NODE_MODULES = path.join(ROOT, 'node_modules');

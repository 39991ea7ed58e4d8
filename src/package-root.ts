/**
 * The folder of this package (Node only): where dist/wasm, prebuilds/ and build/ live. The code
 * runs from src/ under tsx, and bundled as dist/index.mjs and dist/index.cjs (import.meta.url
 * shimmed there), so it walks up from its own file to the package.json named "simd-attention".
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null | undefined;

/** This module's folder. */
export function moduleDir(): string {
  return dirname(fileURLToPath(import.meta.url));
}

/** The package root, or undefined when no package.json named "simd-attention" is above this file. */
export function findPackageRoot(): string | undefined {
  if (cached !== undefined) return cached ?? undefined;
  let dir = moduleDir();
  for (;;) {
    const pj = join(dir, 'package.json');
    try {
      if (existsSync(pj) && JSON.parse(readFileSync(pj, 'utf8')).name === 'simd-attention') return (cached = dir);
    } catch {
      // unreadable package.json: keep walking up
    }
    const up = dirname(dir);
    if (up === dir) {
      cached = null;
      return undefined;
    }
    dir = up;
  }
}

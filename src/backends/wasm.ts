/**
 * The wasm backend in Node: reads the module from the package's own files
 * (<package root>/dist/wasm/attention-{relaxed,simd}[-shared].wasm), picks the best build this
 * runtime validates (relaxed SIMD on Node 22+, or Node 20 with --experimental-wasm-relaxed-simd),
 * preferring the variant that imports a shared memory (alloc() tensors then survive the memory
 * growing), and runs attentionAsync / forwardAsync in a worker_threads worker that shares that
 * memory (dist/wasm-worker.mjs, or src/wasm-worker.ts under tsx). The environment-neutral part
 * lives in wasm-instance.ts, wasm-heap.ts and wasm-core.ts (the browser entry uses those directly).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Backend } from '../backend.js';
import { createWasmBackend, type WasmBackend } from './wasm-core.js';
import {
  WASM_FILES,
  WASM_SHARED_FILES,
  instantiate,
  instantiateSync,
  instantiateUrl,
  probeWasmBuilds,
  sharedMemoryWorks,
  type WasmBuild,
  type WasmInstance,
  type WasmSource,
} from './wasm-instance.js';
import { createWorkerRunner, type WorkerLike } from './wasm-runner.js';
import { findPackageRoot, moduleDir } from '../package-root.js';

export type { WasmBuild, WasmSource } from './wasm-instance.js';

/**
 * A worker for the script at `file`. A .ts worker (running from source under tsx, as the tests
 * do) gets tsx registered first: Node 20 does not run `--import` preloads in workers.
 */
function startWorker(file: URL): Worker {
  if (!file.pathname.endsWith('.ts')) return new Worker(file);
  const boot = `import(${JSON.stringify(tsxApiUrl())}).then((m) => m.register()).then(() => import(${JSON.stringify(file.href)}))`;
  return new Worker(boot, { eval: true });
}

/** file URL of tsx's ESM API (tsx/esm/api, import condition), found from this file */
function tsxApiUrl(): string {
  const require = createRequire(fileURLToPath(import.meta.url));
  const pkgFile = require.resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports: Record<string, unknown> };
  let entry: unknown = pkg.exports['./esm/api'];
  while (entry && typeof entry === 'object') {
    const e = entry as Record<string, unknown>;
    entry = e.import ?? e.default;
  }
  if (typeof entry !== 'string') throw new Error('wasm: cannot locate tsx/esm/api to run the .ts worker');
  return pathToFileURL(join(dirname(pkgFile), entry)).href;
}

/** The package root; the wasm files are read from its dist/wasm. */
export function packageRoot(): string {
  const root = findPackageRoot();
  if (!root) throw new Error(`wasm: cannot find the simd-attention package root above ${moduleDir()}`);
  return root;
}

/** Path of a build's .wasm file in this package (the variant importing a shared memory with `shared`). */
export function wasmPath(build: WasmBuild, shared = false): string {
  return join(packageRoot(), 'dist', 'wasm', (shared ? WASM_SHARED_FILES : WASM_FILES)[build]);
}

/** The file to load: the shared-memory variant where it exists and the runtime allows it. */
function fileFor(build: WasmBuild): { file: string; shared: boolean } {
  const shared = wasmPath(build, true);
  if (existsSync(shared) && sharedMemoryWorks()) return { file: shared, shared: true };
  return { file: wasmPath(build), shared: false };
}

/** Builds this runtime validates, best first (relaxed-simd needs Node 22+, or Node 20 with --experimental-wasm-relaxed-simd). */
export function wasmBuilds(): WasmBuild[] {
  return probeWasmBuilds();
}

function pickBuild(requested: WasmBuild | undefined): WasmBuild {
  const available = wasmBuilds();
  if (requested) {
    if (!available.includes(requested)) {
      throw new Error(
        requested === 'relaxed-simd'
          ? 'wasm: this runtime does not support relaxed SIMD (Node 22+, Chrome 114+; Node 20 needs --experimental-wasm-relaxed-simd)'
          : 'wasm: this runtime does not support WebAssembly SIMD',
      );
    }
    return requested;
  }
  if (available.length === 0) throw new Error('wasm: this runtime does not support WebAssembly SIMD');
  return available[0];
}

function readBuild(build: WasmBuild): { bytes: Uint8Array; file: string; shared: boolean } {
  const { file, shared } = fileFor(build);
  try {
    return { bytes: readFileSync(file), file, shared };
  } catch (err) {
    throw new Error(`wasm: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); run \`npm run build:wasm\``);
  }
}

/** The worker script: dist/wasm-worker.mjs next to a bundle, src/wasm-worker.ts when running from source. */
function workerFile(): URL | undefined {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  const candidates = here.endsWith('.ts')
    ? [join(dir, '..', 'wasm-worker.ts'), join(dir, 'wasm-worker.ts')]
    : [join(dir, 'wasm-worker.mjs'), join(dir, '..', 'wasm-worker.mjs')];
  try {
    candidates.push(join(packageRoot(), 'dist', 'wasm-worker.mjs'));
  } catch {
    // no package root: only the siblings
  }
  const found = candidates.find((f) => existsSync(f));
  return found ? pathToFileURL(found) : undefined;
}

/** Starts a worker_threads worker (unref'ed while idle) for attentionAsync. */
/**
 * The worker_threads runner for an instance. With a shared memory the worker runs on that
 * memory (exec mode, nothing copied); `shareMemory: false` forces the copying protocol (tests).
 */
export function nodeRunner(inst: WasmInstance, opts: { shareMemory?: boolean } = {}) {
  const share = inst.shared && opts.shareMemory !== false;
  return () => {
    const file = workerFile();
    if (!file) return undefined;
    const worker = startWorker(file);
    const like: WorkerLike = {
      post: (msg, transfer) => worker.postMessage(msg, transfer as never),
      onMessage: (cb) => worker.on('message', cb),
      onError: (cb) => {
        worker.on('error', cb);
        worker.on('exit', (code) => cb(new Error(`wasm worker exited (code ${code})`)));
      },
      ref: () => worker.ref(),
      unref: () => worker.unref(),
      terminate: () => void worker.terminate(),
    };
    return createWorkerRunner(like, inst.module, inst.shared, share ? inst.heap.memory : undefined);
  };
}

function backendFor(inst: WasmInstance, origin: string, stageKvFromBytes?: number): WasmBackend {
  return createWasmBackend(inst, { runner: nodeRunner(inst), origin, stageKvFromBytes });
}

/**
 * Loads the wasm backend synchronously from the package's files. Throws an Error saying why when
 * it cannot. `stageKvFromBytes`: see WasmBackendOptions (tests).
 */
export function loadWasmBackendSync(opts: { build?: WasmBuild; stageKvFromBytes?: number } = {}): Backend {
  const { bytes, file, shared } = readBuild(pickBuild(opts.build));
  return backendFor(instantiateSync(bytes, { shared }), file, opts.stageKvFromBytes);
}

/** Loads the wasm backend: from `source` when given (bytes, URL, path or compiled module), else from the package's files. */
export async function loadWasmBackend(opts: { build?: WasmBuild; source?: WasmSource } = {}): Promise<Backend> {
  const src = opts.source;
  if (src === undefined) {
    const { bytes, file, shared } = readBuild(pickBuild(opts.build));
    return backendFor(await instantiate(bytes, { shared }), file);
  }
  // bytes or a compiled module, of any realm (load-options has checked it is one of those)
  if (typeof src !== 'string' && !(src instanceof URL)) {
    return backendFor(await instantiate(src as Uint8Array | ArrayBuffer | WebAssembly.Module), 'caller-provided');
  }
  const url = src instanceof URL ? src : /^[a-z][a-z0-9+.-]*:/i.test(src) && !/^[a-z]:[\\/]/i.test(src) ? new URL(src) : undefined;
  if (url && url.protocol !== 'file:') return backendFor(await instantiateUrl(url), url.href);
  const file = url ? fileURLToPath(url) : (src as string);
  return backendFor(await instantiate(readFileSync(file)), file);
}

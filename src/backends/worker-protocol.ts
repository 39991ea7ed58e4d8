/**
 * The version of the messages between the wasm backend and its worker (backends/wasm-runner.ts,
 * wasm-worker.ts). A page may serve its own copy of wasm-worker.mjs (load's `worker` option),
 * and that copy can outlive an upgrade of the package: the two sides compare this number when
 * the worker starts, and where they differ no call is computed in that worker (the calling
 * thread computes it). Raise it whenever a message's meaning changes.
 */
export const WORKER_PROTOCOL = 1;

/**
 * The wasm backend's worker (dist/wasm-worker.mjs): runs attentionAsync off the caller's thread.
 * The same file serves Node (worker_threads) and browsers (a module Web Worker): it receives the
 * compiled module once, instantiates it with its own memory, then answers attention requests
 * in order (protocol: backends/wasm-runner.ts).
 */
import type { AttentionArgs } from './backend.js';
import { execCalls, runAttention, type KernelCall } from './backends/wasm-core.js';
import { instantiateOnMemory, instantiateSync, type WasmExports, type WasmInstance } from './backends/wasm-instance.js';
import { WasmMhaCore, type PackedMha } from './backends/wasm-multihead.js';
import type { WorkerAttentionRequest, WorkerMhaCall, WorkerReply } from './backends/wasm-runner.js';
import { WORKER_PROTOCOL } from './backends/worker-protocol.js';

interface Port {
  post(message: unknown, transfer: Transferable[]): void;
  listen(cb: (message: unknown) => void): void;
}

declare const WorkerGlobalScope: unknown;

async function port(): Promise<Port> {
  if (typeof WorkerGlobalScope !== 'undefined' && typeof self !== 'undefined') {
    const scope = self as unknown as { postMessage(m: unknown, t: Transferable[]): void; onmessage: ((e: MessageEvent) => void) | null };
    return {
      post: (m, t) => scope.postMessage(m, t),
      listen: (cb) => {
        scope.onmessage = (e) => cb(e.data);
      },
    };
  }
  // Node: the module name is not a literal so that browser bundlers leave it alone
  const name = 'node:worker_threads';
  const wt = (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as typeof import('node:worker_threads');
  const parent = wt.parentPort;
  if (!parent) throw new Error('wasm-worker: not running in a worker');
  return {
    post: (m, t) => parent.postMessage(m, t as never),
    listen: (cb) => parent.on('message', cb),
  };
}

let inst: WasmInstance | undefined;
/** set when the calling side speaks another protocol: then nothing is computed here */
let refused: string | undefined;
/** exec mode: an instance on the caller's shared memory, running the caller's plans */
let shared: WasmExports | undefined;
const blocks = new Map<number, WasmMhaCore>();

function mhaForward(id: number, mhaId: number, c: WorkerMhaCall): { reply: WorkerReply; transfer: Transferable[] } {
  const core = blocks.get(mhaId);
  if (!core) throw new Error(`wasm-worker: no multi-head block ${mhaId}`);
  const out = new Float32Array(c.outLength);
  const cache = c.cache;
  const r = core.forward({
    ...c,
    out,
    cache: cache && {
      id: cache.id,
      maxLength: cache.maxLength,
      length: cache.length,
      epoch: cache.epoch,
      // what the calling thread sent before is all the twin's mirror may trust: a call computed
      // here and then refused there left rows here that the cache's record does not have
      known: cache.from,
      rows: (from, to) => {
        if (from !== cache.from || to !== cache.length) throw new Error(`wasm-worker: cache rows ${from}..${to} were not sent (${cache.from}..${cache.length})`);
        return { k: cache.k, v: cache.v };
      },
    },
  });
  const transfer: Transferable[] = [out.buffer];
  if (r.kNew) transfer.push(r.kNew.buffer, r.vNew!.buffer);
  return { reply: { id, out, kNew: r.kNew, vNew: r.vNew }, transfer };
}

/**
 * The reply for a call that failed. An error without an ERR_ATTN code is the worker's (its
 * protocol, its module), so the calling side computes the call itself; a coded one is the call's.
 */
function errorReply(id: number, err: unknown): WorkerReply {
  const e = err as Error & { code?: string };
  return { id, error: { name: e.name, message: e.message, code: e.code } };
}

function handle(p: Port, msg: unknown): void {
  const m = msg as { type: string; id?: number; protocol?: unknown; module?: WebAssembly.Module; shared?: boolean; memory?: WebAssembly.Memory };
  if (m.type === 'init') {
    // said first, before any answer, so that the calling side can check it
    p.post({ type: 'ready', protocol: WORKER_PROTOCOL }, []);
    if (m.protocol !== WORKER_PROTOCOL) {
      refused = `wasm-worker: the calling side speaks protocol ${String(m.protocol)}, this worker ${WORKER_PROTOCOL}`;
      return;
    }
    if (m.memory) shared = instantiateOnMemory(m.module!, m.memory);
    else inst = instantiateSync(m.module!, { shared: m.shared });
    return;
  }
  if (refused) {
    // a call of another protocol is answered, never computed: read with this protocol's
    // meaning it could write the calling side's shared memory wrongly
    if (typeof m.id === 'number') p.post(errorReply(m.id, new Error(refused)), []);
    return;
  }
  if (m.type === 'exec') {
    const e = msg as { id: number; calls: KernelCall[] };
    try {
      if (!shared) throw new Error('wasm-worker: exec without a shared memory');
      execCalls(shared, e.calls);
      p.post({ id: e.id }, []);
    } catch (err) {
      p.post(errorReply(e.id, err), []);
    }
    return;
  }
  if (m.type === 'mha-create') {
    const c = msg as { mhaId: number; weights: PackedMha };
    try {
      blocks.set(c.mhaId, new WasmMhaCore(inst!, c.weights, false));
    } catch {
      // reported when a forward asks for it
    }
    return;
  }
  if (m.type === 'mha-free-cache') {
    const c = msg as { mhaId: number; cacheId: number };
    blocks.get(c.mhaId)?.freeCache(c.cacheId);
    return;
  }
  if (m.type === 'mha-dispose') {
    const id = (msg as { mhaId: number }).mhaId;
    blocks.get(id)?.dispose();
    blocks.delete(id);
    return;
  }
  if (m.type === 'mha-forward') {
    const f = msg as { id: number; mhaId: number; call: WorkerMhaCall };
    try {
      const { reply, transfer } = mhaForward(f.id, f.mhaId, f.call);
      p.post(reply, transfer);
    } catch (err) {
      p.post(errorReply(f.id, err), []);
    }
    return;
  }
  if (m.type !== 'attention') {
    // a message this worker does not know still gets its answer: its call must not stay pending
    if (typeof m.id === 'number') p.post(errorReply(m.id, new Error(`wasm-worker: unknown message ${JSON.stringify(m.type)} (protocol ${WORKER_PROTOCOL})`)), []);
    return;
  }
  const req = msg as WorkerAttentionRequest;
  let reply: WorkerReply;
  const transfer: Transferable[] = [];
  try {
    if (!inst) throw new Error('wasm-worker: no module');
    const out = new Float32Array(req.outLength);
    const weights = req.weightsLength > 0 ? new Float32Array(req.weightsLength) : undefined;
    const args: AttentionArgs = { ...req.args, out, weights };
    runAttention(inst, args);
    reply = { id: req.id, out, weights };
    transfer.push(out.buffer);
    if (weights) transfer.push(weights.buffer);
  } catch (err) {
    reply = errorReply(req.id, err);
  }
  p.post(reply, transfer);
}

port().then((p) => p.listen((msg) => handle(p, msg)));

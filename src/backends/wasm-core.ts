/**
 * The wasm backend, environment-neutral: implements Backend on top of the raw exports of an
 * instance (wasm-instance.ts), its memory managed by wasm-heap.ts. Nothing here imports Node
 * modules: the Node loader (wasm.ts) and the browser entry (browser.ts) both build on it, and so
 * does the worker (wasm-worker.ts).
 */
import type { AttentionArgs, Backend, KvCacheState, MatmulArgs, MultiHeadKernel, MultiHeadParams, SoftmaxArgs } from '../backend.js';
import { attachedNow, attnError, copyResult } from '../errors.js';
import { isFloat32Array, isInt32Array, viewLength } from '../typed-arrays.js';
import { CallFrame, WasmHeap } from './wasm-heap.js';
import type { WasmExports, WasmInstance } from './wasm-instance.js';
import { WasmMhaCore, appendRows, recordRows, type MhaCall, type MhaResult } from './wasm-multihead.js';
import { STAGE_KV_FROM_BYTES, canStage, runAttentionStaged } from './wasm-staged.js';
import type { WorkerMhaCall, WorkerRunner } from './wasm-runner.js';

/** How attentionAsync gets off the calling thread (see WorkerRunner in wasm-runner.ts for the rest). */
export interface AsyncRunner {
  /** false once the worker failed: calls then compute on the calling thread */
  readonly alive?: boolean;
  attention(args: AttentionArgs): Promise<void>;
  close(): void;
}

export interface WasmBackend extends Backend {
  readonly name: 'wasm';
  /** the instance (memory, exports): for tests and for the worker */
  readonly instance: WasmInstance;
  alloc(length: number): Float32Array;
}

const MASK_KIND = { additive: 1, boolean: 2 } as const;

/** free space kept after an alloc() (at most; at least the tensor's own size, from 4 MiB) */
const ALLOC_HEADROOM = 64 * 1024 * 1024;

/** frees an alloc()ed block once its view is garbage collected */
const finalizer =
  typeof FinalizationRegistry === 'function'
    ? new FinalizationRegistry<{ heap: WasmHeap; off: number }>(({ heap, off }) => heap.free(off))
    : undefined;

/**
 * One call of a kernel export with its (numeric) arguments: a plan of these is plain data, so a
 * worker sharing the memory can run it (wasm-worker.ts, exec mode).
 */
export type KernelCall = [name: 'attention' | 'matmulPacked', ...args: number[]];

/** Runs a plan of kernel calls against an instance's exports. */
export function execCalls(exports: WasmExports, calls: readonly KernelCall[]): void {
  for (const [name, ...args] of calls) (exports[name] as (...a: number[]) => void)(...args);
}

/** A prepared call: its memory is reserved and inputs copied in; run `calls`, then `complete()` (or `abort()`). */
export interface PreparedCall<R = void> {
  calls: KernelCall[];
  /** copies the outputs back and frees the call's memory */
  complete(): R;
  /** frees the call's memory without reading outputs */
  abort(): void;
}

/**
 * Reserves one attention call's memory and copies its inputs in (those already in WASM memory
 * are used in place). `stage.k` / `stage.v`: instead of K or V, a block of one kv head's rows,
 * which the caller fills (wasm-staged.ts).
 */
export function attentionFrame(
  inst: WasmInstance,
  a: AttentionArgs,
  stage: { k: boolean; v: boolean } = { k: false, v: false },
): { frame: CallFrame; ptrs: AttentionPointers } {
  const f = new CallFrame(inst.heap);
  const ptrs: AttentionPointers = { out: 0, q: 0, k: 0, v: 0, mask: 0, keyLengths: 0, weights: 0, scratch: 0 };
  f.input(a.q, (p) => (ptrs.q = p));
  if (stage.k) f.scratch(a.seqK * a.headDim * 4, (p) => (ptrs.k = p));
  else f.input(a.k, (p) => (ptrs.k = p));
  if (stage.v) f.scratch(a.seqK * a.headDimV * 4, (p) => (ptrs.v = p));
  else f.input(a.v, (p) => (ptrs.v = p));
  f.input(a.mask?.data, (p) => (ptrs.mask = p));
  f.input(a.keyLengths, (p) => (ptrs.keyLengths = p));
  f.output(a.out, (p) => (ptrs.out = p), 'args.out');
  f.output(a.weights, (p) => (ptrs.weights = p), 'args.weights');
  f.scratch(inst.exports.attentionScratchBytes(a.seqK, a.headDim, a.headDimV), (p) => (ptrs.scratch = p));
  f.commit();
  return { frame: f, ptrs };
}

/** Reserves memory for one attention call, copies its inputs in, and plans the kernel call. */
export function prepareAttention(inst: WasmInstance, a: AttentionArgs): PreparedCall {
  const { frame: f, ptrs } = attentionFrame(inst, a);
  return {
    calls: [attentionCall(ptrs, a)],
    complete() {
      try {
        f.finish();
      } finally {
        f.release();
      }
    },
    abort: () => f.release(),
  };
}

/**
 * Runs one attention call on an instance, here: K and V from outside WASM memory one head at a
 * time from `stageFromBytes` of them (wasm-staged.ts), else everything copied in at once.
 */
export function runAttention(inst: WasmInstance, a: AttentionArgs, stageFromBytes = STAGE_KV_FROM_BYTES): void {
  if (canStage(inst, a, stageFromBytes)) return runAttentionStaged(inst, a);
  const call = prepareAttention(inst, a);
  try {
    execCalls(inst.exports, call.calls);
  } catch (err) {
    call.abort();
    throw err;
  }
  call.complete();
}

/** Byte pointers of one attention call's arrays (0: absent). */
export interface AttentionPointers {
  out: number;
  q: number;
  k: number;
  v: number;
  mask: number;
  keyLengths: number;
  weights: number;
  /** attentionScratchBytes(seqK, headDim, headDimV) bytes */
  scratch: number;
}

/** The kernel call for arrays already in WASM memory; sizes and strides from `a` (its arrays are not read). */
export function attentionCall(p: AttentionPointers, a: Omit<AttentionArgs, 'q' | 'k' | 'v' | 'out'>): KernelCall {
  const m = a.mask;
  return [
    'attention',
    p.out, p.q, p.k, p.v, p.mask, p.keyLengths, p.weights, p.scratch,
    a.batch, a.numHeads, a.numKvHeads, a.seqQ, a.seqK, a.headDim, a.headDimV,
    a.qStrides.b, a.qStrides.h, a.qStrides.s,
    a.kStrides.b, a.kStrides.h, a.kStrides.s,
    a.vStrides.b, a.vStrides.h, a.vStrides.s,
    a.oStrides.b, a.oStrides.h, a.oStrides.s,
    m ? m.strideB : 0, m ? m.strideH : 0, m ? m.strideQ : 0, m ? m.strideK : 0,
    m ? MASK_KIND[m.kind] : 0, a.causal ? 1 : 0, a.scale,
  ];
}

export function runMatmul(inst: WasmInstance, a: MatmulArgs): void {
  const { exports: x, heap } = inst;
  const f = new CallFrame(heap);
  let pa = 0, pb = 0, bias = 0, out = 0, scratch = 0;
  f.input(a.a, (p) => (pa = p));
  f.input(a.b, (p) => (pb = p));
  f.input(a.bias, (p) => (bias = p));
  f.output(a.out, (p) => (out = p), 'args.out');
  f.scratch(x.matmulScratchBytes(a.n, a.k, a.strideB === 0 && a.batch > 1 ? 1 : 0), (p) => (scratch = p));
  f.commit();
  try {
    x.matmul(out, pa, pb, bias, a.batch, a.m, a.n, a.k, a.strideA, a.strideB, a.transposeB ? 1 : 0, scratch);
    f.finish();
  } finally {
    f.release();
  }
}

export function runSoftmax(inst: WasmInstance, a: SoftmaxArgs): void {
  const { exports: x, heap } = inst;
  const f = new CallFrame(heap);
  let px = 0, out = 0;
  f.input(a.x, (p) => (px = p));
  f.output(a.out, (p) => (out = p), 'args.out');
  f.commit();
  try {
    x.softmax(out, px, a.rows, a.cols, a.scale);
    f.finish();
  } finally {
    f.release();
  }
}

export interface WasmBackendOptions {
  /** runs attentionAsync / forwardAsync off the calling thread; without it they compute here */
  runner?: () => WorkerRunner | undefined;
  /** where the module came from, for info().details */
  origin?: string;
  /** K+V bytes from which attention copies them in one head at a time (tests set 0 to force it) */
  stageKvFromBytes?: number;
}

/** Wraps an instance as the wasm Backend. */
export function createWasmBackend(inst: WasmInstance, opts: WasmBackendOptions = {}): WasmBackend {
  let runner: WorkerRunner | undefined;
  let runnerTried = false;
  let closed = false;
  const check = () => {
    if (closed) throw attnError('ERR_ATTN_DISPOSED', 'wasm: the backend has been closed');
  };
  /** the worker, started on first use; undefined where there is none (or it failed) */
  const worker = (): WorkerRunner | undefined => {
    if (!runnerTried) {
      runnerTried = true;
      try {
        runner = opts.runner?.();
      } catch {
        runner = undefined;
      }
    }
    return runner && runner.alive ? runner : undefined;
  };
  const isWorkerFailure = (err: unknown) => (err as { workerFailed?: boolean }).workerFailed === true;
  const backend: WasmBackend = {
    name: 'wasm',
    isa: inst.build,
    threads: 1,
    instance: inst,
    details: () => ({
      build: inst.build,
      memory: inst.shared ? 'shared' : 'not shared (a grow detaches alloc() tensors)',
      memoryBytes: String(inst.heap.byteLength),
      module: opts.origin ?? 'bytes',
      async: runner && runner.alive ? 'worker' : runnerTried ? 'calling thread' : 'worker (not started)',
      ...(runner && runner.alive ? { worker: runner.mode === 'exec' ? 'shares the memory' : 'copies inputs and outputs' } : {}),
    }),
    attention(args) {
      check();
      runAttention(inst, args, opts.stageKvFromBytes);
    },
    async attentionAsync(args) {
      check();
      const stillAttached = attachedNow([
        ['args.q', args.q], ['args.k', args.k], ['args.v', args.v], ['args.out', args.out], ['args.weights', args.weights],
        ['mask.data', args.mask?.data], ['args.keyLengths', args.keyLengths],
      ]); // prettier-ignore
      const w = worker();
      if (w && w.mode === 'exec') return execAsync(inst, w, prepareAttention(inst, args), isWorkerFailure);
      if (w) {
        try {
          return await w.attention(args);
        } catch (err) {
          // the worker could not start or died: compute here instead (errors of the call itself propagate)
          if (!isWorkerFailure(err)) throw err;
        }
      }
      await Promise.resolve();
      check();
      stillAttached();
      runAttention(inst, args, opts.stageKvFromBytes);
    },
    matmul(args) {
      check();
      runMatmul(inst, args);
    },
    softmax(args) {
      check();
      runSoftmax(inst, args);
    },
    createMultiHead(p) {
      check();
      return createMultiHead(inst, p, worker, isWorkerFailure);
    },
    alloc(length) {
      check();
      const heap = inst.heap;
      const off = heap.alloc(length * 4);
      // Keep headroom, so that calls on alloc()ed tensors (and further alloc()s) find their
      // memory without growing it: with a plain (unshared) memory a grow detaches every view
      // over the old buffer, these tensors included.
      if (!inst.shared) heap.reserve(Math.min(ALLOC_HEADROOM, Math.max(length * 4 * 4, 16 * 1024 * 1024)));
      const view = new Float32Array(heap.f32.buffer, off, length);
      view.fill(0);
      finalizer?.register(view, { heap, off });
      return view;
    },
    close() {
      closed = true;
      runner?.close();
      runner = undefined;
    },
  };
  return backend;
}

/**
 * Runs a prepared call in an exec-mode worker (which shares the memory: nothing is copied), or
 * here if the worker has failed; then completes it.
 */
async function execAsync<R>(inst: WasmInstance, w: WorkerRunner, call: PreparedCall<R>, isWorkerFailure: (err: unknown) => boolean): Promise<R> {
  try {
    await w.exec(call.calls);
  } catch (err) {
    if (!isWorkerFailure(err)) {
      call.abort();
      throw err;
    }
    try {
      execCalls(inst.exports, call.calls);
    } catch (e) {
      call.abort();
      throw e;
    }
  }
  return call.complete();
}

/**
 * The multi-head block: packed weights in this memory. forwardAsync runs the planned calls in
 * an exec-mode worker, or (copy mode) in a twin the worker builds from the weights.
 */
function createMultiHead(
  inst: WasmInstance,
  p: MultiHeadParams,
  worker: () => WorkerRunner | undefined,
  isWorkerFailure: (err: unknown) => boolean,
): MultiHeadKernel {
  // nothing below holds `p`: the caller's weight arrays are read once, here
  const core = new WasmMhaCore(inst, p);
  const KV = p.kvDim;
  const cacheIds = new WeakMap<KvCacheState, number>();
  let nextCache = 1;
  let remote: { runner: WorkerRunner; id: number } | undefined;
  /** rows of each cache the worker's mirror holds, and for which epoch of the cache */
  const workerSynced = new Map<number, { epoch: number; rows: number }>();
  let disposed = false;
  /** calls accepted before a dispose() finish with the weights they started with */
  let inFlight = 0;
  // A cache's mirrors (here and in a copy-mode worker) live as long as the cache: one cache per
  // request must not keep every request's mirror until dispose().
  const caches =
    typeof FinalizationRegistry === 'function'
      ? new FinalizationRegistry<number>((id) => {
          workerSynced.delete(id);
          if (disposed) return;
          core.freeCache(id);
          if (remote) remote.runner.mhaFreeCache(remote.id, id);
        })
      : undefined;
  const live = () => {
    if (disposed) throw attnError('ERR_ATTN_DISPOSED', 'wasm: the multi-head block was disposed');
  };
  const idOf = (s: KvCacheState) => {
    let id = cacheIds.get(s);
    if (id === undefined) {
      id = nextCache++;
      cacheIds.set(s, id);
      caches?.register(s, id);
    }
    return id;
  };
  const toCall = (a: Parameters<MultiHeadKernel['forward']>[0]): MhaCall => ({
    x: a.x,
    kv: a.kv === a.x ? undefined : a.kv,
    batch: a.batch,
    seqQ: a.seqQ,
    seqKv: a.seqKv,
    causal: a.causal,
    mask: a.mask,
    keyLengths: a.keyLengths,
    out: a.out,
    cache: a.cache && {
      id: idOf(a.cache),
      maxLength: a.cache.maxLength,
      length: a.cache.length,
      epoch: a.cache.epoch,
      rows: (from, to) => recordRows(a.cache!.k, a.cache!.v, a.batch, a.cache!.maxLength, KV, from, to),
    },
  });
  const record = (a: Parameters<MultiHeadKernel['forward']>[0], r: MhaResult) => {
    if (a.cache && r.kNew && r.vNew) appendRows(a.cache.k, a.cache.v, a.batch, a.cache.maxLength, KV, a.cache.length, r.kNew, r.vNew);
  };
  const here = (a: Parameters<MultiHeadKernel['forward']>[0]) => record(a, core.forward(toCall(a)));
  /** the copy-mode worker's twin, built from the weights as packed here */
  const twin = (w: WorkerRunner) => {
    if (!remote || remote.runner !== w) {
      remote = { runner: w, id: w.mhaCreate(core.packed()) };
      workerSynced.clear();
    }
    return remote.id;
  };
  const inWorker = async (w: WorkerRunner, a: Parameters<MultiHeadKernel['forward']>[0]) => {
    const id = twin(w);
    const { cache, out, ...rest } = toCall(a);
    const wc: WorkerMhaCall = { ...rest, outLength: viewLength(out) };
    if (a.cache && cache) {
      const known = workerSynced.get(cache.id);
      const from = known && known.epoch === cache.epoch ? Math.min(known.rows, a.cache.length) : 0;
      const rows = recordRows(a.cache.k, a.cache.v, a.batch, a.cache.maxLength, KV, from, a.cache.length);
      wc.cache = { id: cache.id, maxLength: cache.maxLength, length: cache.length, epoch: cache.epoch, from, k: rows.k, v: rows.v };
    }
    // until this call is recorded, the worker's mirror may hold rows the record does not (a call
    // that computed there, then was refused here): the next call sends every row
    if (cache) workerSynced.delete(cache.id);
    const r = await w.mhaForward(id, wc);
    copyResult(a.out, r.out, 'args.out');
    record(a, r);
    if (a.cache && cache) workerSynced.set(cache.id, { epoch: cache.epoch, rows: a.cache.length + a.seqQ });
  };
  return {
    forward(a) {
      live();
      here(a);
    },
    async forwardAsync(a) {
      live();
      const stillAttached = attachedNow([
        ['args.x', a.x], ['args.kv', a.kv], ['args.out', a.out], ['mask.data', a.mask?.data], ['args.keyLengths', a.keyLengths],
        ['cache.k', a.cache?.k], ['cache.v', a.cache?.v],
      ]); // prettier-ignore
      const w = worker();
      inFlight++;
      try {
        if (w && w.mode === 'exec') {
          record(a, await execAsync(inst, w, core.prepare(toCall(a)), isWorkerFailure));
          return;
        }
        if (w) {
          try {
            await inWorker(w, a);
            return;
          } catch (err) {
            if (!isWorkerFailure(err)) throw err;
          }
        }
        await Promise.resolve();
        stillAttached();
        here(a);
      } finally {
        // the packed weights are freed only once no accepted call can still read them
        if (--inFlight === 0 && disposed) core.dispose();
      }
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      if (inFlight === 0) core.dispose();
      // posted after every forward already sent, so the worker runs those first
      if (remote) remote.runner.mhaDispose(remote.id);
    },
  };
}


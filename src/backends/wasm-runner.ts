/**
 * attentionAsync for the wasm backend: the calling side of the worker protocol, environment-
 * neutral (a worker_threads Worker in Node, a Web Worker in browsers, both behind WorkerLike).
 *
 * The worker holds its own instance of the same compiled module (sent once); each call sends
 * compact copies of the inputs (transferred, so a view into a large buffer does not drag the
 * whole buffer along), the worker computes into fresh arrays and transfers them back, and the
 * result is copied into the caller's `out` / `weights`. Calls queue in order in the worker.
 */
import type { AttentionArgs } from '../backend.js';
import { attnError, copyResult, type AttentionErrorCode } from '../errors.js';
import { viewLength } from '../typed-arrays.js';
import type { AsyncRunner, KernelCall } from './wasm-core.js';
import type { MhaCall, PackedMha } from './wasm-multihead.js';
import { WORKER_PROTOCOL } from './worker-protocol.js';
import type { WasmMemory, WasmModule } from './wasm-types.js';

export interface WorkerLike {
  post(message: unknown, transfer?: Transferable[]): void;
  onMessage(cb: (message: unknown) => void): void;
  onError(cb: (err: Error) => void): void;
  /** keep the process alive while calls are pending (Node) */
  ref?(): void;
  unref?(): void;
  terminate(): void;
}

/** What crosses to the worker for one attention call. */
export interface WorkerAttentionRequest {
  type: 'attention';
  id: number;
  args: Omit<AttentionArgs, 'out' | 'weights'>;
  outLength: number;
  weightsLength: number;
}

export interface WorkerReply {
  id: number;
  out?: Float32Array;
  weights?: Float32Array;
  kNew?: Float32Array;
  vNew?: Float32Array;
  error?: { name: string; message: string; code?: string };
}

type Typed = Float32Array | Uint8Array | Int32Array;

function compact<T extends Typed>(a: T, transfer: Transferable[]): T {
  const c = a.slice() as T;
  transfer.push(c.buffer as ArrayBuffer);
  return c;
}

export function toRequest(id: number, a: AttentionArgs, transfer: Transferable[]): WorkerAttentionRequest {
  const { out, weights, ...rest } = a;
  const args: Omit<AttentionArgs, 'out' | 'weights'> = {
    ...rest,
    q: compact(a.q, transfer),
    k: compact(a.k, transfer),
    v: compact(a.v, transfer),
    mask: a.mask ? { ...a.mask, data: compact(a.mask.data, transfer) } : undefined,
    keyLengths: a.keyLengths ? compact(a.keyLengths, transfer) : undefined,
  };
  // sized through the built-in accessors: `out` is the caller's own array, and its own `length`
  // (a subclass's getter) would size the worker's block
  return { type: 'attention', id, args, outLength: viewLength(out), weightsLength: weights ? viewLength(weights) : 0 };
}

/**
 * A reply's error: a coded one is the call's own (as the calling thread would have thrown it);
 * one without a code is the worker's (its protocol, its module), and the call is computed on the
 * calling thread instead.
 */
function toError(e: NonNullable<WorkerReply['error']>): Error {
  if (e.code) return attnError(e.code as AttentionErrorCode, e.message);
  return workerFailed(`wasm worker: ${e.message}`);
}

export interface WorkerRunner extends AsyncRunner {
  /** false once the worker failed; callers then compute on their own thread */
  readonly alive: boolean;
  /**
   * 'exec': the worker shares the caller's (shared) memory and runs planned kernel calls on it,
   * nothing is copied; 'copy': the worker has its own memory and inputs / outputs are copied
   * (where shared memory cannot be sent to a worker, e.g. a browser page without cross-origin
   * isolation).
   */
  readonly mode: 'exec' | 'copy';
  /** exec mode: runs a plan of kernel calls in the worker */
  exec(calls: KernelCall[]): Promise<void>;
  /** registers a multi-head block's packed weights with the worker; returns its id there */
  mhaCreate(weights: PackedMha): number;
  /** one forward in the worker: the result's out, and the cache's new rows when there is a cache */
  mhaForward(id: number, call: WorkerMhaCall): Promise<{ out: Float32Array; kNew?: Float32Array; vNew?: Float32Array }>;
  mhaDispose(id: number): void;
  /** frees the worker's mirror of a cache that was garbage collected */
  mhaFreeCache(id: number, cacheId: number): void;
}

/** An MhaCall as it crosses to the worker: the cache's rows the worker has not seen travel with it. */
export type WorkerMhaCall = Omit<MhaCall, 'out' | 'cache'> & {
  outLength: number;
  cache?: { id: number; maxLength: number; length: number; epoch: number; from: number; k: Float32Array; v: Float32Array };
};

type Pending = { resolve: (reply: WorkerReply) => void; reject: (e: Error) => void };

function workerFailed(message: string): Error {
  const e = new Error(message) as Error & { workerFailed?: boolean };
  e.workerFailed = true;
  return e;
}

/**
 * Starts the protocol with a worker. With `memory` (shared), the worker instantiates on the same
 * memory and runs kernel plans (exec mode) where the runtime can send the memory; otherwise it
 * instantiates its own (copy mode).
 */
export function createWorkerRunner(worker: WorkerLike, module: WasmModule, shared = false, memory?: WasmMemory): WorkerRunner {
  let nextId = 1;
  let nextMha = 1;
  let alive = true;
  let mode: 'exec' | 'copy' = 'copy';
  const pending = new Map<number, Pending>();
  // the worker's first message says which protocol it speaks (worker-protocol.ts)
  let ready = false;
  const settle = () => {
    if (pending.size === 0) worker.unref?.();
  };
  /** the worker cannot serve: its pending calls and every later one are computed here */
  const fail = (message: string) => {
    if (!alive) return;
    alive = false;
    for (const p of pending.values()) p.reject(workerFailed(message));
    pending.clear();
    worker.terminate();
  };
  worker.onMessage((m) => {
    const msg = m as WorkerReply & { type?: string; protocol?: unknown };
    if (msg.type === 'ready') {
      if (msg.protocol === WORKER_PROTOCOL) ready = true;
      else fail(`wasm worker speaks protocol ${String(msg.protocol)}, this package ${WORKER_PROTOCOL} (a wasm-worker.mjs of another version?)`);
      return;
    }
    // a worker that answers before saying its protocol predates the handshake
    if (!ready) return fail('wasm worker answered without saying its protocol (a wasm-worker.mjs of another version?)');
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    settle();
    if (msg.error) p.reject(toError(msg.error));
    else p.resolve(msg);
  });
  worker.onError((err) => fail(`wasm worker failed: ${err.message}`));
  if (memory) {
    try {
      worker.post({ type: 'init', protocol: WORKER_PROTOCOL, module, shared, memory });
      mode = 'exec';
    } catch {
      // the memory cannot cross (DataCloneError without cross-origin isolation): copy mode
    }
  }
  if (mode === 'copy') worker.post({ type: 'init', protocol: WORKER_PROTOCOL, module, shared });
  worker.unref?.();

  const call = (msg: { type: string } & Record<string, unknown>, transfer: Transferable[]): Promise<WorkerReply> => {
    if (!alive) return Promise.reject(workerFailed('wasm worker is not running'));
    const id = nextId++;
    return new Promise<WorkerReply>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.ref?.();
      try {
        worker.post({ ...msg, id }, transfer);
      } catch (err) {
        // the message could not be sent (a DataCloneError): the call is computed here instead
        pending.delete(id);
        settle();
        reject(workerFailed(`wasm worker: the call could not be sent: ${(err as Error)?.message}`));
      }
    });
  };

  return {
    get alive() {
      return alive;
    },
    get mode() {
      return mode;
    },
    async exec(calls) {
      await call({ type: 'exec', calls }, []);
    },
    async attention(args) {
      const transfer: Transferable[] = [];
      const req = toRequest(0, args, transfer);
      const reply = await call(req as unknown as { type: string } & Record<string, unknown>, transfer);
      copyResult(args.out, reply.out!, 'args.out');
      if (args.weights && reply.weights) copyResult(args.weights, reply.weights, 'args.weights');
    },
    mhaCreate(weights) {
      const mhaId = nextMha++;
      const transfer: Transferable[] = [];
      const w: PackedMha = { dims: weights.dims, wq: compact(weights.wq, transfer), wkv: compact(weights.wkv, transfer), wo: compact(weights.wo, transfer) };
      if (alive) worker.post({ type: 'mha-create', mhaId, weights: w }, transfer);
      return mhaId;
    },
    async mhaForward(mhaId, c) {
      const transfer: Transferable[] = [];
      const msg = {
        type: 'mha-forward',
        mhaId,
        call: {
          ...c,
          x: compact(c.x, transfer),
          kv: c.kv ? compact(c.kv, transfer) : undefined,
          mask: c.mask ? { ...c.mask, data: compact(c.mask.data, transfer) } : undefined,
          keyLengths: c.keyLengths ? compact(c.keyLengths, transfer) : undefined,
          cache: c.cache ? { ...c.cache, k: compact(c.cache.k, transfer), v: compact(c.cache.v, transfer) } : undefined,
        },
      };
      const reply = await call(msg, transfer);
      return { out: reply.out!, kNew: reply.kNew, vNew: reply.vNew };
    },
    mhaDispose(mhaId) {
      if (alive) worker.post({ type: 'mha-dispose', mhaId });
    },
    mhaFreeCache(mhaId, cacheId) {
      if (alive) worker.post({ type: 'mha-free-cache', mhaId, cacheId });
    },
    close() {
      alive = false;
      for (const p of pending.values()) p.reject(attnError('ERR_ATTN_DISPOSED', 'wasm: the backend was closed while a call was pending'));
      pending.clear();
      worker.terminate();
    },
  };
}

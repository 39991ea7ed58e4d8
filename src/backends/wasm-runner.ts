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
import { attnError, type AttentionErrorCode } from '../errors.js';
import type { AsyncRunner } from './wasm-core.js';

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
  return { type: 'attention', id, args, outLength: out.length, weightsLength: weights ? weights.length : 0 };
}

function toError(e: NonNullable<WorkerReply['error']>): Error {
  if (e.code) {
    const err = attnError(e.code as AttentionErrorCode, e.message);
    return err;
  }
  const err = e.name === 'RangeError' ? new RangeError(e.message) : e.name === 'TypeError' ? new TypeError(e.message) : new Error(e.message);
  return err;
}

export interface WorkerRunner extends AsyncRunner {
  /** false once the worker failed; callers then compute on their own thread */
  readonly alive: boolean;
}

export function createWorkerRunner(worker: WorkerLike, module: WebAssembly.Module, shared = false): WorkerRunner {
  let nextId = 1;
  let alive = true;
  const pending = new Map<number, { args: AttentionArgs; resolve: () => void; reject: (e: Error) => void }>();
  const settle = () => {
    if (pending.size === 0) worker.unref?.();
  };
  worker.onMessage((m) => {
    const reply = m as WorkerReply;
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    settle();
    if (reply.error) return p.reject(toError(reply.error));
    try {
      p.args.out.set(reply.out!);
      if (p.args.weights && reply.weights) p.args.weights.set(reply.weights);
      p.resolve();
    } catch (err) {
      p.reject(err as Error);
    }
  });
  worker.onError((err) => {
    if (!alive) return;
    alive = false;
    for (const p of pending.values()) {
      const e = new Error(`wasm worker failed: ${err.message}`) as Error & { workerFailed?: boolean };
      e.workerFailed = true;
      p.reject(e);
    }
    pending.clear();
    worker.terminate();
  });
  worker.post({ type: 'init', module, shared });
  worker.unref?.();
  return {
    get alive() {
      return alive;
    },
    attention(args) {
      if (!alive) return Promise.reject(Object.assign(new Error('wasm worker is not running'), { workerFailed: true }));
      const id = nextId++;
      const transfer: Transferable[] = [];
      const req = toRequest(id, args, transfer);
      return new Promise<void>((resolve, reject) => {
        pending.set(id, { args, resolve, reject });
        worker.ref?.();
        worker.post(req, transfer);
      });
    },
    close() {
      alive = false;
      for (const p of pending.values()) p.reject(attnError('ERR_ATTN_DISPOSED', 'wasm: the backend was closed while a call was pending'));
      pending.clear();
      worker.terminate();
    },
  };
}

/**
 * The wasm backend where its memory does not cross to the worker: a worker in copy mode (its own
 * memory; a browser page without cross-origin isolation) and a memory that is not shared (a
 * grow detaches alloc() tensors). Each case failed before its fix: a stale cache row in the
 * worker, a worker block sized by the caller's own `length`, a message the worker could not be
 * sent, an alloc() result lost to a grow, an uncoded worker error.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { AttentionArgs } from '../src/backend.js';
import { createWasmBackend } from '../src/backends/wasm-core.js';
import { instantiateSync } from '../src/backends/wasm-instance.js';
import { createWorkerRunner, toRequest, type WorkerLike } from '../src/backends/wasm-runner.js';
import { WORKER_PROTOCOL } from '../src/backends/worker-protocol.js';
import { nodeRunner, wasmPath } from '../src/backends/wasm.js';
import { Attention } from '../src/facade.js';
import { tensor } from '../src/tensor.js';

const E = 16;
const weight = (s: number) => new Float32Array(E * E).map((_, i) => Math.sin(i * s) * 0.3);
const params = { embedDim: E, numHeads: 2, wq: weight(1), wk: weight(2), wv: weight(3), wo: weight(4) };
const token = (s: number) => tensor(new Float32Array(E).map((_, i) => Math.cos(i * s)), [1, 1, E]);

function copyMode(): Attention {
  const inst = instantiateSync(readFileSync(wasmPath('simd128', true)), { shared: true });
  const be = createWasmBackend(inst, { runner: nodeRunner(inst, { shareMemory: false }) });
  return new Attention(be);
}

/** a Float32Array whose own `length` says something else: only the built-in accessors may size a call */
class LyingLength extends Float32Array {
  constructor(
    n: number,
    private readonly says: () => unknown,
  ) {
    super(n);
  }
  override get length(): number {
    return this.says() as number;
  }
}

describe('wasm: a worker in copy mode', function () {
  this.timeout(60000);
  let attn: Attention;
  beforeEach(() => {
    attn = copyMode();
  });
  afterEach(() => attn.close());

  it('is in copy mode', async () => {
    // the worker starts with the first async call
    const q = tensor(new Float32Array(8).fill(0.5), [1, 1, 2, 4]);
    await attn.attentionAsync(q, q, q);
    assert.equal(attn.info().details?.worker, 'copies inputs and outputs');
  });

  // The worker computed the refused call, so its mirror held a row the cache never recorded; a
  // row written here at that position was then read from the worker's stale copy.
  for (const extra of [1, 2]) {
    it(`a forwardAsync refused after the worker computed it leaves no stale row there (${extra} rows written here after)`, async () => {
      const mha = attn.multiHeadAttention(params);
      const cache = mha.createCache({ batch: 1, maxLength: 8 });
      await mha.forwardAsync(token(1), { cache });
      const out = new Float32Array(E);
      const refused = mha.forwardAsync(token(2), { cache, out });
      structuredClone(out.buffer, { transfer: [out.buffer] });
      await assert.rejects(refused, { code: 'ERR_ATTN_SIZE' });
      assert.equal(cache.length, 1);
      for (let i = 0; i < extra; i++) mha.forward(token(3 + i), { cache });
      const got = (await mha.forwardAsync(token(9), { cache })).data;

      const ref = attn.multiHeadAttention(params);
      const refCache = ref.createCache({ batch: 1, maxLength: 8 });
      ref.forward(token(1), { cache: refCache });
      for (let i = 0; i < extra; i++) ref.forward(token(3 + i), { cache: refCache });
      assert.deepEqual(got, ref.forward(token(9), { cache: refCache }).data);
    });
  }

  it("sizes the worker's output block by the array, not by its own length getter", async () => {
    const mha = attn.multiHeadAttention(params);
    const x = tensor(new Float32Array(3 * E).map((_, i) => Math.cos(i)), [1, 3, E]);
    const want = mha.forward(x).data;
    assert.deepEqual((await mha.forwardAsync(x)).data, want);
    // attention whose output is far larger than its inputs: a 1-float block in the worker would
    // have been overrun by the whole output
    const [S, Sk, Dv] = [256, 4, 128];
    const q = tensor(new Float32Array(S).fill(0.5), [1, 1, S, 1]);
    const k = tensor(new Float32Array(Sk).fill(0.5), [1, 1, Sk, 1]);
    const v = tensor(new Float32Array(Sk * Dv).map((_, i) => i % 7), [1, 1, Sk, Dv]);
    const out = new LyingLength(S * Dv, () => 1);
    await attn.attentionAsync(q, k, v, { out });
    assert.deepEqual(Float32Array.from(out), attn.attention(q, k, v).output.data);
    const mhaOut = new LyingLength(3 * E, () => 1);
    await mha.forwardAsync(x, { out: mhaOut });
    assert.deepEqual(Float32Array.from(mhaOut), want);
    // and the worker's other blocks are intact
    assert.deepEqual((await mha.forwardAsync(x)).data, want);
  });

  it('a length getter that answers something no message can carry does not reach the worker', async () => {
    const q = tensor(new Float32Array(16).map((_, i) => i / 16), [1, 1, 2, 8]);
    const out = new LyingLength(16, () => () => 1);
    await attn.attentionAsync(q, q, q, { out });
    assert.deepEqual(Float32Array.from(out), attn.attention(q, q, q).output.data);
  });
});

describe('wasm: the worker protocol', () => {
  /**
   * a worker that answers every call with `reply`, or throws when a call is posted; it answers
   * `init` with `ready` (null: it says nothing, as a worker from before the handshake)
   */
  function fakeWorker(reply: (id: number) => unknown, postThrows = false, ready: unknown = { type: 'ready', protocol: WORKER_PROTOCOL }): WorkerLike & { refs: number; terminated: boolean } {
    let onMessage: (m: unknown) => void = () => {};
    const w = {
      refs: 0,
      terminated: false,
      post(msg: unknown) {
        const m = msg as { type: string; id?: number };
        if (m.type === 'init') {
          if (ready !== null) queueMicrotask(() => onMessage(ready));
          return;
        }
        if (postThrows) throw new DOMException('could not be cloned', 'DataCloneError');
        queueMicrotask(() => onMessage(reply(m.id!)));
      },
      onMessage: (cb: (m: unknown) => void) => (onMessage = cb),
      onError: () => {},
      ref: () => void w.refs++,
      unref: () => void w.refs--,
      terminate: () => void (w.terminated = true),
    };
    return w;
  }
  const inst = () => instantiateSync(readFileSync(wasmPath('simd128', false)), { shared: false });
  const q = tensor(new Float32Array(16).map((_, i) => i / 16), [1, 1, 2, 8]);

  it('a worker error without an ERR_ATTN code is the worker failing: the call is computed on the calling thread', async () => {
    const i = inst();
    const worker = fakeWorker((id) => ({ id, error: { name: 'Error', message: 'wasm-worker: no module' } }));
    const attn = new Attention(createWasmBackend(i, { runner: () => createWorkerRunner(worker, i.module) }));
    const r = await attn.attentionAsync(q, q, q);
    assert.deepEqual(r.output.data, attn.attention(q, q, q).output.data);
  });

  it("a coded worker error is the call's own and propagates", async () => {
    const i = inst();
    const worker = fakeWorker((id) => ({ id, error: { name: 'RangeError', message: 'wasm: out of memory', code: 'ERR_ATTN_ALLOC' } }));
    const attn = new Attention(createWasmBackend(i, { runner: () => createWorkerRunner(worker, i.module) }));
    await assert.rejects(attn.attentionAsync(q, q, q), { code: 'ERR_ATTN_ALLOC', message: 'wasm: out of memory' });
  });

  it('a call that cannot be posted is computed on the calling thread, and releases the worker', async () => {
    const i = inst();
    const worker = fakeWorker(() => undefined, true);
    const attn = new Attention(createWasmBackend(i, { runner: () => createWorkerRunner(worker, i.module) }));
    const r = await attn.attentionAsync(q, q, q);
    assert.deepEqual(r.output.data, attn.attention(q, q, q).output.data);
    assert.equal(worker.refs, -1, 'ref()ed for the call and unref()ed after it, on top of the unref() at start');
  });

  // A page may serve its own copy of wasm-worker.mjs, which can outlive an upgrade of the
  // package. Before the handshake such a worker computed calls with its own reading of them.
  for (const [what, ready] of [
    ['says another protocol', { type: 'ready', protocol: WORKER_PROTOCOL + 1 }],
    ['answers without saying its protocol (from before the handshake)', null],
  ] as const) {
    it(`a worker that ${what} computes nothing: its answer is not used, the call runs on the calling thread`, async () => {
      const i = inst();
      // its answer would be wrong: the calling thread's is what must come back
      const worker = fakeWorker((id) => ({ id, out: new Float32Array(16).fill(7) }), false, ready);
      const attn = new Attention(createWasmBackend(i, { runner: () => createWorkerRunner(worker, i.module) }));
      const r = await attn.attentionAsync(q, q, q);
      assert.deepEqual(r.output.data, attn.attention(q, q, q).output.data);
      assert.equal(worker.terminated, true);
      assert.equal(attn.info().details?.async, 'calling thread');
    });
  }
});

describe('wasm: the worker script and the protocol (dist/wasm-worker.mjs)', function () {
  this.timeout(60000);
  const file = new URL('../dist/wasm-worker.mjs', import.meta.url);
  const module = new WebAssembly.Module(readFileSync(wasmPath('simd128', false)));
  /** starts the worker, sends `init` with `protocol`, then `call`; resolves with what it answered to each */
  async function exchange(protocol: number, call: Record<string, unknown>): Promise<unknown[]> {
    const w = new Worker(file);
    try {
      const answers: unknown[] = [];
      const done = new Promise<void>((resolve, reject) => {
        w.on('message', (m) => {
          answers.push(m);
          if (answers.length === 2) resolve();
        });
        w.on('error', reject);
      });
      w.postMessage({ type: 'init', protocol, module, shared: false });
      w.postMessage(call);
      await done;
      return answers;
    } finally {
      await w.terminate();
    }
  }
  /** a well-formed attention message (the third test shows it is computed under the right protocol) */
  const request = (id: number) => {
    const t = new Float32Array(16).map((_, i) => i / 16);
    const st = { b: 16, h: 16, s: 8 };
    const args: AttentionArgs = {
      q: t, k: t, v: t, batch: 1, numHeads: 1, numKvHeads: 1, seqQ: 2, seqK: 2, headDim: 8, headDimV: 8,
      qStrides: st, kStrides: st, vStrides: st, oStrides: st, scale: 0.5, causal: false, out: new Float32Array(16),
    }; // prettier-ignore
    return toRequest(id, args, []) as unknown as Record<string, unknown>;
  };

  it('says its protocol first, and answers the calls of another protocol with an uncoded error, computing nothing', async () => {
    const [ready, reply] = await exchange(WORKER_PROTOCOL + 1, request(7));
    assert.deepEqual(ready, { type: 'ready', protocol: WORKER_PROTOCOL });
    const r = reply as { id: number; out?: unknown; error?: { message: string; code?: string } };
    assert.equal(r.id, 7);
    assert.equal(r.out, undefined);
    assert.match(r.error!.message, new RegExp(`protocol ${WORKER_PROTOCOL + 1}, this worker ${WORKER_PROTOCOL}`));
    assert.equal(r.error!.code, undefined);
  });

  it('answers a message it does not know with an uncoded error, so that its call does not stay pending', async () => {
    const [, reply] = await exchange(WORKER_PROTOCOL, { type: 'frobnicate', id: 3 });
    const r = reply as { id: number; error?: { message: string; code?: string } };
    assert.equal(r.id, 3);
    assert.match(r.error!.message, /unknown message "frobnicate"/);
    assert.equal(r.error!.code, undefined);
  });

  it('computes a call of its own protocol (the request above is well formed)', async () => {
    const [, reply] = await exchange(WORKER_PROTOCOL, request(9));
    const r = reply as { id: number; out?: Float32Array; error?: unknown };
    assert.equal(r.error, undefined);
    assert.equal(r.out!.length, 16);
  });
});

describe('wasm: a memory that is not shared', () => {
  it('refuses a call whose own copies grow the memory while its out is an alloc() tensor, rather than lose the result', () => {
    const i = instantiateSync(readFileSync(wasmPath('simd128', false)), { shared: false });
    const attn = new Attention(createWasmBackend(i, { runner: () => undefined }));
    const [Sq, Sk, D] = [4, 80_000, 32];
    const out = attn.alloc([1, 1, Sq, D]);
    const q = tensor(new Float32Array(Sq * D).fill(0.1), [1, 1, Sq, D]);
    const kv = tensor(new Float32Array(Sk * D).fill(0.2), [1, 1, Sk, D]);
    const before = i.heap.byteLength;
    assert.throws(() => attn.attention(q, kv, kv, { out: out.data }), { code: 'ERR_ATTN_SIZE', message: /alloc\(\) tensor.*grew the WebAssembly memory/ });
    assert.ok(i.heap.byteLength > before, 'the memory grew');
    // the same inputs once they live in the memory too: nothing is copied, the call runs
    // (the large one first: the headroom it keeps holds the small ones)
    const kvIn = attn.alloc([1, 1, Sk, D]);
    kvIn.data.set(kv.data);
    const qIn = attn.alloc([1, 1, Sq, D]);
    qIn.data.set(q.data);
    const out2 = attn.alloc([1, 1, Sq, D]);
    attn.attention(qIn, kvIn, kvIn, { out: out2.data });
    assert.ok(Math.abs(out2.data[0] - 0.2) < 1e-4, `out[0] = ${out2.data[0]}`);
    const bigA = tensor(new Float32Array(4 * 3_000_000).fill(1), [4, 3_000_000]);
    const bigB = tensor(new Float32Array(3_000_000 * 4).fill(1), [3_000_000, 4]);
    const o = attn.alloc([4, 4]);
    assert.throws(() => attn.matmul(bigA, bigB, { out: o.data }), { code: 'ERR_ATTN_SIZE' });
  });
});

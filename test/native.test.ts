/**
 * The native backend beyond parity (test/parity.test.ts runs it against the reference under
 * every ISA): async calls off the event loop, bit-identical results for any thread count,
 * the multi-head object's dispose and garbage collection, the binding's own size checks, the
 * loader's fallback reason (in child processes), ISA forcing and the machine probes.
 *
 * Skipped with a printed reason when the addon is not built, unless SIMD_ATTENTION_REQUIRE
 * names native (CI), where a missing addon fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';
import v8 from 'node:v8';
import type { AttentionArgs, Backend, MultiHeadParams } from '../src/backend.js';
import { loadNativeBackend, nativeCandidates, nativeIsas, nativeProbes, type NativeBinding } from '../src/backends/native.js';
import { PACKED_CONVENTION } from '../src/backends/native-pack.js';
import { withThrowingCodeSetter } from './helpers/code-setter.js';
import { sameBits } from './helpers/compare.js';
import { attnArgs, mhParams, rand } from './helpers/native-args.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const nativeModule = path.join(root, 'src', 'backends', 'native.ts');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function expectCode(fn: () => unknown, code: string, ctor: ErrorConstructor = Error): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ctor, `expected ${ctor.name}, got ${String(e)}`);
    assert.equal((e as { code?: string }).code, code, String(e));
    return true;
  });
}

/** Runs an ES module snippet in a child node with tsx, returns its JSON output. */
function child(code: string, env: Record<string, string | undefined>): unknown {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-native-'));
  const file = path.join(dir, 'probe.mjs');
  fs.writeFileSync(file, code.replaceAll('NATIVE_MODULE', JSON.stringify(pathToFileURL(nativeModule).href)));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60000,
  });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/**
 * Runs an ES module in a child node (no tsx: it imports the built package, PACKAGE_ENTRY standing
 * for dist/index.mjs), asserts that it exits cleanly and returns its last line's JSON.
 */
function packageChild(code: string): unknown {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-child-'));
  const file = path.join(dir, 'child.mjs');
  fs.writeFileSync(file, code.replaceAll('PACKAGE_ENTRY', JSON.stringify(pathToFileURL(path.join(root, 'dist', 'index.mjs')).href)));
  const r = spawnSync(process.execPath, [file], { cwd: root, encoding: 'utf8', timeout: 50000 });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, `child failed (signal ${r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('native loader order (no addon needed)', () => {
  const sources = (dir: string) => nativeCandidates(dir).map((c) => c.source);
  const touch = (file: string, secondsAgo: number) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '');
    const t = Date.now() / 1000 - secondsAgo;
    fs.utimesSync(file, t, t);
  };
  let dir = '';
  let envPath: string | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-loader-'));
    envPath = process.env.SIMD_ATTENTION_NATIVE_PATH;
    delete process.env.SIMD_ATTENTION_NATIVE_PATH;
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (envPath !== undefined) process.env.SIMD_ATTENTION_NATIVE_PATH = envPath;
  });
  const prebuilt = () => path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'simd-attention.glibc.node');
  const release = () => path.join(dir, 'build', 'Release', 'simd_attention.node');

  it('prebuilds/ first, then build/Release and build/Debug', () => {
    touch(prebuilt(), 10);
    touch(release(), 100);
    assert.deepEqual(sources(dir), ['prebuild', 'build/Release', 'build/Debug']);
  });

  it('a build/Release compiled after the prebuilt binary comes first (a rebuild is never shadowed by stale code)', () => {
    touch(prebuilt(), 100);
    touch(release(), 10);
    assert.deepEqual(sources(dir), ['build/Release', 'prebuild', 'build/Debug']);
  });

  it('without prebuilds/, build/Release then build/Debug', () => {
    assert.deepEqual(sources(dir), ['build/Release', 'build/Debug']);
  });
});

describe('native backend', function () {
  let isas: string[] = [];
  const backends: Backend[] = [];
  const load = (opts: { threads?: number; isa?: string }) => {
    const b = loadNativeBackend(opts);
    backends.push(b);
    return b;
  };

  before(function () {
    isas = nativeIsas();
    if (isas.length === 0) {
      let reason = '';
      try {
        loadNativeBackend();
      } catch (e) {
        reason = (e as Error).message;
      }
      if ((process.env.SIMD_ATTENTION_REQUIRE ?? '').includes('native')) throw new Error(`native required: ${reason}`);
      console.warn(`    [native] skipped: ${reason}`);
      this.skip();
    }
  });

  after(() => {
    for (const b of backends) b.close?.();
  });

  describe('loading and ISAs', () => {
    it('lists the ISAs best first, ending with scalar, and loads each', () => {
      assert.equal(isas[isas.length - 1], 'scalar');
      for (const isa of isas) {
        const b = load({ isa, threads: 1 });
        assert.equal(b.isa, isa);
        assert.equal(b.name, 'native');
        assert.ok(b.details().binary.endsWith('.node'));
      }
    });

    it("needs no newer C and C++ runtimes than Node 20's own Linux binaries: glibc 2.28, GCC 8 (objdump -T of the loaded binary)", function () {
      // The prebuilt binary must load wherever Node 20 runs (RHEL 8 and Debian 10: glibc 2.28 and
      // GCC 8's libstdc++). Built with GCC 12 here, it once asked for GLIBCXX_3.4.30
      // (condition_variable::wait: native/thread_pool.cc waits with a deadline instead),
      // GLIBCXX_3.4.26 (make_shared: binding.cc) and GLIBC_2.32 (__libc_single_threaded, from
      // GCC 12's headers: native/runtime_floor.cc).
      const binary = load({ threads: 1 }).details().binary;
      if (process.platform !== 'linux' || process.env.SIMD_ATTENTION_SANITIZED) this.skip();
      const r = spawnSync('objdump', ['-T', binary], { encoding: 'utf8', maxBuffer: 64 << 20 });
      if (r.error || r.status !== 0) {
        console.warn(`    [native] runtime versions not checked: objdump -T failed (${r.error?.message ?? r.stderr.trim()})`);
        this.skip();
      }
      const cmp = (a: number[], b: number[]) => {
        for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
        return 0;
      };
      const newest = (lib: string) =>
        [...r.stdout.matchAll(new RegExp(`\\b${lib}_([0-9.]+)\\b`, 'g'))].map((m) => m[1].split('.').map(Number)).reduce((a, b) => (cmp(a, b) >= 0 ? a : b), [0]);
      const glibc = newest('GLIBC');
      const glibcxx = newest('GLIBCXX');
      assert.ok(glibc.length > 1, `no GLIBC versions in objdump -T ${binary}`);
      const cxxabi = newest('CXXABI');
      assert.ok(cmp(glibc, [2, 28]) <= 0, `needs GLIBC_${glibc.join('.')}`);
      assert.ok(cmp(glibcxx, [3, 4, 25]) <= 0, `needs GLIBCXX_${glibcxx.join('.')}`);
      assert.ok(cmp(cxxabi, [1, 3, 11]) <= 0, `needs CXXABI_${cxxabi.join('.')}`);
    });

    it('defaults to the best ISA, and SIMD_ATTENTION_ISA forces one', () => {
      const prev = process.env.SIMD_ATTENTION_ISA;
      try {
        delete process.env.SIMD_ATTENTION_ISA;
        assert.equal(load({ threads: 1 }).isa, isas[0]);
        process.env.SIMD_ATTENTION_ISA = 'scalar';
        assert.equal(load({ threads: 1 }).isa, 'scalar');
      } finally {
        if (prev === undefined) delete process.env.SIMD_ATTENTION_ISA;
        else process.env.SIMD_ATTENTION_ISA = prev;
      }
    });

    it('refuses an ISA the CPU cannot run with a reason naming the ones it can', () => {
      assert.throws(() => loadNativeBackend({ isa: 'avx1024' }), (e: Error) => {
        assert.match(e.message, /avx1024/);
        assert.match(e.message, /scalar/);
        return true;
      });
    });

    it('reports every place tried when the addon is missing (child process)', () => {
      const missing = path.join(os.tmpdir(), 'no-such-dir', 'simd_attention.node');
      const r = child(
        `const m = await import(NATIVE_MODULE);
         let reason = '';
         try { m.loadNativeBackend(); } catch (e) { reason = e.message; }
         let probes = '';
         try { m.nativeProbes(); } catch (e) { probes = e.message; }
         console.log(JSON.stringify({ isas: m.nativeIsas(), reason, probes }));`,
        { SIMD_ATTENTION_NATIVE_PATH: missing },
      ) as { isas: string[]; reason: string; probes: string };
      assert.deepEqual(r.isas, []);
      assert.ok(r.reason.includes(missing), r.reason);
      assert.match(r.reason, /not found/);
      assert.match(r.reason, /Possible solutions/);
      assert.match(r.reason, /npm run build:native/);
      assert.equal(r.probes, r.reason);
    });

    /** why loadNativeBackend() fails in a child process that loads `file` as the addon */
    const loadFailure = (file: string): string =>
      (
        child(
          `const m = await import(NATIVE_MODULE);
           let reason = '';
           try { m.loadNativeBackend(); } catch (e) { reason = e.message; }
           console.log(JSON.stringify({ reason }));`,
          { SIMD_ATTENTION_NATIVE_PATH: file },
        ) as { reason: string }
      ).reason;

    it('explains a file that is not a loadable addon (child process)', () => {
      const bogus = path.join(os.tmpdir(), `sa-bogus-${process.pid}.node`);
      fs.writeFileSync(bogus, 'not an ELF file');
      try {
        const reason = loadFailure(bogus);
        assert.ok(reason.includes(bogus), reason);
        assert.doesNotMatch(reason, /not found/);
      } finally {
        fs.rmSync(bogus, { force: true });
      }
    });

    it('explains an addon cut short instead of dying in dlopen (SIGBUS) (child process)', function () {
      const real = nativeCandidates(root).find((c) => fs.existsSync(c.file));
      if (!real) return this.skip();
      const cut = path.join(os.tmpdir(), `sa-cut-${process.pid}.node`);
      try {
        for (const bytes of [1000, 50000, fs.statSync(real.file).size - 1]) {
          fs.writeFileSync(cut, fs.readFileSync(real.file).subarray(0, bytes));
          const reason = loadFailure(cut);
          assert.ok(reason.includes(`${cut} (SIMD_ATTENTION_NATIVE_PATH): truncated: its `), reason);
          assert.match(reason, new RegExp(`the file has ${bytes} bytes`));
        }
      } finally {
        fs.rmSync(cut, { force: true });
      }
    });

    it('refuses a binary whose packed calling convention differs, and says to rebuild it (child process)', () => {
      // the real addon, its matmul convention altered as it loads: a build/Release left by a
      // version that orders the header's slots differently must not be read in the wrong places
      const r = child(
        `const orig = process.dlopen;
         process.dlopen = function (mod, file, ...rest) {
           orig.call(this, mod, file, ...rest);
           const c = mod.exports.convention;
           mod.exports.convention = { ...c, matmul: c.matmul.replace('args.m,args.n', 'args.n,args.m') };
         };
         const m = await import(NATIVE_MODULE);
         let reason = '';
         try { m.loadNativeBackend(); } catch (e) { reason = e.message; }
         console.log(JSON.stringify({ reason, isas: m.nativeIsas() }));`,
        {},
      ) as { reason: string; isas: string[] };
      assert.match(r.reason, /built for another version of simd-attention \(addon [^)]+\): its matmul call/);
      assert.match(r.reason, /npm run build:native/);
      assert.deepEqual(r.isas, []);
    });

    it('honours a forced ISA from the environment in a fresh process', () => {
      const isa = isas[Math.min(1, isas.length - 1)];
      const r = child(
        `const m = await import(NATIVE_MODULE);
         const b = m.loadNativeBackend({ threads: 1 });
         console.log(JSON.stringify({ isa: b.isa }));
         b.close();`,
        { SIMD_ATTENTION_ISA: isa },
      ) as { isa: string };
      assert.equal(r.isa, isa);
    });
  });

  describe('async', () => {
    it('keeps the event loop ticking during a long attentionAsync, with the same result as sync', async () => {
      const b = load({ isa: 'scalar', threads: 1 });
      // long enough (~0.3-0.5 s) that a gc() on a loaded machine cannot outlast the kernel
      const args = attnArgs(1, 4, 4, 1536, 1536, 64, { causal: false }, 7);
      const sync = attnArgs(1, 4, 4, 1536, 1536, 64, {}, 7);
      const t0 = Date.now();
      b.attention(sync);
      const syncMs = Date.now() - t0;
      let ticks = 0;
      let stop = false;
      const spin = () => {
        ticks++;
        if (!stop) setImmediate(spin);
      };
      setImmediate(spin);
      let intervals = 0;
      const iv = setInterval(() => intervals++, 5);
      const p = b.attentionAsync(args);
      // drop our references to the inputs: the worker must hold them alive itself
      const out = args.out;
      for (const key of ['q', 'k', 'v'] as const) (args as unknown as Record<string, unknown>)[key] = null;
      gc();
      await p;
      stop = true;
      clearInterval(iv);
      assert.ok(sameBits(out, sync.out), 'async result differs from sync');
      // a blocked loop would see ~1 tick; a free one sees many while the kernel runs
      assert.ok(ticks > 20, `only ${ticks} setImmediate ticks during ${syncMs} ms of work`);
      if (syncMs > 50) assert.ok(intervals >= 3, `only ${intervals} interval ticks during ${syncMs} ms`);
    });

    // Every sync call took the pool's region lock, so one made while an async call of the same
    // engine ran waited for that call's whole kernel, and the event loop with it (~0.5 s behind a
    // prefill). It now runs on the JS thread alone.
    for (const threads of [1, 2]) {
      it(`a sync call made while an async call of the same engine computes does not wait for it (threads ${threads})`, async () => {
        const b = load({ isa: 'scalar', threads });
        // out on shared memory, so that this thread can watch the kernel write it (Atomics)
        const big = attnArgs(1, 4, 4, 2048, 2048, 64, {}, 41);
        big.out = new Float32Array(new SharedArrayBuffer(big.out.length * 4));
        const bits = new Int32Array(big.out.buffer);
        const last = bits.length - 1;
        const p = b.attentionAsync(big);
        // until its first query block is written, the kernel has not started (or not got far)
        const t0 = Date.now();
        while (Atomics.load(bits, 0) === 0 && Date.now() - t0 < 60000);
        assert.notEqual(Atomics.load(bits, 0), 0, 'the async kernel wrote nothing in 60 s');
        const small = attnArgs(1, 2, 2, 9, 13, 16, { causal: true }, 42);
        b.attention(small);
        const lastWritten = Atomics.load(bits, last) !== 0;
        await p;
        assert.equal(lastWritten, false, "the sync call returned only once the async call's kernel had ended");
        const again = { ...small, out: new Float32Array(small.out.length) };
        await b.attentionAsync(again);
        assert.ok(sameBits(small.out, again.out), 'the sync call computed on its own differs from the pool');
        const ref = { ...big, out: new Float32Array(big.out.length) };
        b.attention(ref);
        assert.ok(sameBits(big.out, ref.out), 'the async call differs from a sync one');
      });
    }

    it('runs several async calls concurrently on one engine and rejects bad ones with a code', async () => {
      const b = load({ threads: 2 });
      const a1 = attnArgs(2, 4, 2, 100, 130, 32, { causal: true }, 11);
      const a2 = attnArgs(1, 8, 8, 1, 3000, 64, {}, 12);
      const s1 = { ...a1, out: new Float32Array(a1.out.length) };
      const s2 = { ...a2, out: new Float32Array(a2.out.length) };
      await Promise.all([b.attentionAsync(a1), b.attentionAsync(a2)]);
      b.attention(s1);
      b.attention(s2);
      assert.ok(sameBits(a1.out, s1.out));
      assert.ok(sameBits(a2.out, s2.out));
      const bad = attnArgs(1, 2, 2, 4, 4, 8);
      bad.q = new Float32Array(3);
      await assert.rejects(b.attentionAsync(bad), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_SIZE');
    });

    it('runs the calls queued behind one whose rejection meets a throwing `code` setter on Error.prototype', async () => {
      // The binding defines `code` on its errors rather than assigning it, so script's setter is
      // never called; the queue goes on whatever happens while a call settles (a failure to
      // settle once stopped every later call on the engine).
      const b = load({ isa: 'scalar', threads: 1 });
      await withThrowingCodeSetter(async () => {
        const first = attnArgs(1, 4, 4, 256, 256, 64, {}, 31);
        const p = b.attentionAsync(first);
        const queued = [32, 33, 34].map((seed) => attnArgs(1, 2, 2, 40, 40, 16, {}, seed));
        const later = queued.map((args) => b.attentionAsync(args));
        const moved = structuredClone(first.out.buffer, { transfer: [first.out.buffer] }); // kept until the call settles
        // bounded, so that a call left pending fails the test here and the setter is removed
        const within = <T>(what: Promise<T>) => Promise.race([what, new Promise<never>((_, fail) => setTimeout(() => fail(new Error('still pending after 20 s')), 20000).unref())]);
        await assert.rejects(within(p), (e: Error & { code?: string }) => e.code === 'ERR_ATTN_SIZE' && Object.getOwnPropertyDescriptor(e, 'code')!.enumerable === true);
        await within(Promise.all(later));
        for (const args of queued) assert.ok(args.out.some((x) => x !== 0) && args.out.every(Number.isFinite));
        assert.ok(moved.byteLength > 0);
      });
    });

    it('rejects, without running it, a waiting call whose buffer was transferred away before it started', async () => {
      // the engine runs its async calls one after another: the second waits behind the first,
      // and is checked again on this thread just before it would start
      const b = load({ isa: 'scalar', threads: 1 });
      const first = attnArgs(1, 4, 4, 256, 256, 64, {}, 41);
      const running = b.attentionAsync(first);
      const second = attnArgs(1, 2, 2, 40, 40, 16, {}, 42);
      const waiting = b.attentionAsync(second);
      const moved = new Float32Array(structuredClone(second.out.buffer, { transfer: [second.out.buffer] }));
      await assert.rejects(waiting, (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ERR_ATTN_SIZE');
        assert.match(e.message, /args\.out: its buffer was detached \(transferred\) while the async call waited .*; it did not run/);
        return true;
      });
      await running;
      assert.ok(moved.every((x) => x === 0), 'the moved memory was not written');
      assert.ok(first.out.some((x) => x !== 0));
    });

    it('rejects, naming the array, when a buffer is transferred away during an async call', async () => {
      const b = load({ isa: 'scalar', threads: 1 });
      // the transfer comes before the promise can settle (that needs this thread), whether the
      // kernel is still running or has just finished
      for (const victim of ['out', 'q'] as const) {
        const args = attnArgs(1, 4, 4, 256, 256, 64, {}, 21);
        const p = b.attentionAsync(args);
        // the clone owns the moved memory: kept referenced until the call settles, so what the
        // kernel still writes lands in live memory
        const clone = structuredClone(args[victim].buffer, { transfer: [args[victim].buffer] });
        await assert.rejects(p, (e: Error & { code?: string }) => {
          assert.equal(e.code, 'ERR_ATTN_SIZE');
          assert.ok(e instanceof RangeError);
          assert.match(e.message, new RegExp(`args\\.${victim}: its buffer was detached \\(transferred\\) during the async call`));
          return true;
        });
        assert.ok(clone.byteLength > 0 && args[victim].length === 0, 'the memory moved to the clone');
      }
      // the multi-head forward too, and an untouched call still resolves afterwards
      const mh = b.createMultiHead!(mhParams(64, 4, 4, 3));
      const x = rand(2 * 300 * 64, 4);
      const out = new Float32Array(x.length);
      const fp = mh.forwardAsync({ x, kv: x, out, batch: 2, seqQ: 300, seqKv: 300, causal: false });
      const moved = structuredClone(x.buffer, { transfer: [x.buffer] });
      await assert.rejects(fp, /args\.x: its buffer was detached/);
      assert.ok(moved.byteLength > 0);
      const ok = attnArgs(1, 2, 2, 16, 16, 8);
      await b.attentionAsync(ok);
      assert.ok(ok.out.every(Number.isFinite));
      mh.dispose();
    });
  });

  describe('worker threads', () => {
    it('survives workers terminated in the middle of sync and async calls (child process)', function () {
      // Each worker loads the package's entry (dist/, built by `npm test`) and calls the native
      // backend in a loop: even workers synchronously, odd ones through attentionAsync and
      // forwardAsync. Terminating them lands some terminations inside a call, where no JS can
      // run any more; the binding must drop the exception it can no longer throw rather than
      // abort the process (before the fix every such run aborted within its 12 rounds).
      this.timeout(60000);
      const res = packageChild(
        `import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
const { load, tensor } = await import(PACKAGE_ENTRY);
if (isMainThread) {
  let rounds = 0;
  for (; rounds < 12; rounds++) {
    const ws = [0, 1, 2, 3].map((i) => new Worker(new URL(import.meta.url), { workerData: i }));
    await Promise.all(ws.map((w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); })));
    await new Promise((ok) => setTimeout(ok, 5 + (rounds % 4) * 10));
    await Promise.all(ws.map((w) => w.terminate()));
  }
  const a = await load({ backend: 'native' });
  const q = tensor(new Float32Array(16).fill(1), [1, 1, 2, 8]);
  console.log(JSON.stringify({ rounds, backend: a.info().backend, out: Array.from(a.attention(q, q, q).output.data.slice(0, 2)) }));
} else {
  const a = await load({ backend: 'native' });
  const q = tensor(new Float32Array(2 * 4 * 16 * 8).fill(0.5), [2, 4, 16, 8]);
  const w = new Float32Array(64 * 64).fill(0.01);
  const mha = a.multiHeadAttention({ embedDim: 64, numHeads: 4, wq: w, wk: w, wv: w, wo: w });
  const x = tensor(new Float32Array(2 * 16 * 64).fill(0.5), [2, 16, 64]);
  parentPort.postMessage('running');
  for (;;) {
    if (workerData % 2 === 0) { a.attention(q, q, q, { causal: true }); mha.forward(x); a.softmax(x); }
    else await Promise.all([a.attentionAsync(q, q, q), mha.forwardAsync(x), a.attentionAsync(q, q, q, { returnWeights: true })]);
  }
}
`,
      );
      assert.deepEqual(res, { rounds: 12, backend: 'native', out: [1, 1] });
    });

    it('drops the async calls still waiting when their worker is terminated (child process)', function () {
      // A worker queues eight long calls on one engine, each into its own slice of a shared
      // buffer, and is terminated as soon as they are queued. An engine runs its async calls
      // one after another and only the running one sits in libuv's queue, which Node drains
      // before tearing the worker down; the others are dropped, so their slices stay zero.
      // (When each call went to libuv's queue at once, terminate() waited for all eight and
      // every slice was written.)
      this.timeout(60000);
      const res = packageChild(
        `import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
const { load, tensor } = await import(PACKAGE_ENTRY);
const calls = 8, n = 8 * 1024 * 64;
if (isMainThread) {
  const shared = new SharedArrayBuffer(calls * n * 4);
  const w = new Worker(new URL(import.meta.url), { workerData: shared });
  await new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); });
  await w.terminate();
  const written = Array.from({ length: calls }, (_, i) => new Float32Array(shared, i * n * 4, n)).filter((o) => o.some((x) => x !== 0)).length;
  const a = await load({ backend: 'native', threads: 1 });
  const q = tensor(new Float32Array(16).fill(1), [1, 1, 2, 8]);
  const out = (await a.attentionAsync(q, q, q)).output.data;
  console.log(JSON.stringify({ written, after: Array.from(out.slice(0, 2)) }));
} else {
  const a = await load({ backend: 'native', threads: 1 });
  const q = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.1)), [1, 8, 1024, 64]);
  for (let i = 0; i < calls; i++) a.attentionAsync(q, q, q, { out: new Float32Array(workerData, i * n * 4, n) });
  parentPort.postMessage('queued');
}
`,
      ) as { written: number; after: number[] };
      assert.deepEqual(res.after, [1, 1]);
      // the call running at terminate() (rarely one more that finished before it) completes; the rest never start
      assert.ok(res.written <= 3, `${res.written} of 8 queued calls ran after terminate()`);
    });
  });

  describe('determinism', () => {
    it('gives bit-identical attention for 1, 2 and 3 threads (flash, causal, GQA, weights, decode split)', () => {
      const cases: Array<() => AttentionArgs> = [
        () => attnArgs(2, 8, 2, 200, 333, 64, { causal: true }, 21),
        () => attnArgs(1, 4, 4, 130, 130, 48, { weights: new Float32Array(4 * 130 * 130) }, 22),
        () => attnArgs(1, 16, 4, 1, 5000, 128, {}, 23), // decode: keys split in fixed chunks
        () => attnArgs(3, 4, 1, 3, 2500, 64, { causal: true, keyLengths: Int32Array.from([2500, 17, 2048]) }, 24),
      ];
      for (const isa of isas) {
        for (const make of cases) {
          const outs = [1, 2, 3].map((threads) => {
            const a = make();
            load({ isa, threads }).attention(a);
            return [a.out, a.weights] as const;
          });
          for (const [o, w] of outs.slice(1)) {
            assert.ok(sameBits(o, outs[0][0]), `${isa}: output differs with the thread count`);
            if (w) assert.ok(sameBits(w, outs[0][1]!), `${isa}: weights differ with the thread count`);
          }
        }
      }
    });

    it('gives bit-identical matmul, softmax and multi-head output for 1, 2 and 3 threads', () => {
      for (const isa of isas) {
        const res = [1, 2, 3].map((threads) => {
          const b = load({ isa, threads });
          const mm = { a: rand(3 * 77 * 300, 31), b: rand(300 * 129, 32), out: new Float32Array(3 * 77 * 129), batch: 3, m: 77, n: 129, k: 300, strideA: 77 * 300, strideB: 0, transposeB: false, bias: rand(129, 33) };
          b.matmul(mm);
          const sm = { x: rand(50 * 333, 34), out: new Float32Array(50 * 333), rows: 50, cols: 333, scale: 0.7 };
          b.softmax(sm);
          const mh = b.createMultiHead!(mhParams(96, 6, 2, 35));
          const x = rand(2 * 40 * 96, 36);
          const out = new Float32Array(x.length);
          mh.forward({ x, kv: x, batch: 2, seqQ: 40, seqKv: 40, causal: true, out });
          mh.dispose();
          return [mm.out, sm.out, out];
        });
        for (const r of res.slice(1)) r.forEach((a, i) => assert.ok(sameBits(a, res[0][i]), `${isa}: result ${i} differs`));
      }
    });
  });

  describe('multi-head object', () => {
    it('self-attention, cross-attention and the KV cache agree with one causal pass', () => {
      const b = load({ threads: 2 });
      const E = 64, H = 4, S = 9;
      const mh = b.createMultiHead!(mhParams(E, H, 2, 41));
      const x = rand(S * E, 42);
      const full = new Float32Array(S * E);
      mh.forward({ x, kv: x, batch: 1, seqQ: S, seqKv: S, causal: true, out: full });
      // same input as a separate kv array (cross path, no fused QKV) gives the same numbers
      const cross = new Float32Array(S * E);
      mh.forward({ x, kv: x.slice(), batch: 1, seqQ: S, seqKv: S, causal: true, out: cross });
      for (let i = 0; i < full.length; i++) assert.ok(Math.abs(full[i] - cross[i]) < 1e-5);
      // token by token through the cache
      const cache = { k: new Float32Array(S * 2 * (E / H)), v: new Float32Array(S * 2 * (E / H)), maxLength: S, length: 0, epoch: 0 };
      for (let t = 0; t < S; t++) {
        const xt = x.slice(t * E, (t + 1) * E);
        const ot = new Float32Array(E);
        mh.forward({ x: xt, kv: xt, batch: 1, seqQ: 1, seqKv: 1, causal: true, cache, out: ot });
        cache.length++;
        for (let i = 0; i < E; i++) assert.ok(Math.abs(ot[i] - full[t * E + i]) < 1e-4, `token ${t}`);
      }
      mh.dispose();
    });

    it('throws ERR_ATTN_DISPOSED after dispose(), and dispose() is idempotent', () => {
      const b = load({ threads: 1 });
      const mh = b.createMultiHead!(mhParams(32, 2, 2, 51));
      const x = rand(4 * 32, 52);
      mh.forward({ x, kv: x, batch: 1, seqQ: 4, seqKv: 4, causal: false, out: new Float32Array(4 * 32) });
      mh.dispose();
      mh.dispose();
      expectCode(() => mh.forward({ x, kv: x, batch: 1, seqQ: 4, seqKv: 4, causal: false, out: new Float32Array(4 * 32) }), 'ERR_ATTN_DISPOSED');
    });

    it('finishes a forwardAsync that was running when dispose() was called', async () => {
      const b = load({ isa: 'scalar', threads: 1 });
      const mh = b.createMultiHead!(mhParams(256, 4, 4, 61));
      const x = rand(300 * 256, 62);
      const want = new Float32Array(x.length);
      mh.forward({ x, kv: x, batch: 1, seqQ: 300, seqKv: 300, causal: true, out: want });
      const got = new Float32Array(x.length);
      const p = mh.forwardAsync({ x, kv: x, batch: 1, seqQ: 300, seqKv: 300, causal: true, out: got });
      mh.dispose();
      await p;
      assert.ok(sameBits(got, want));
    });

    it('frees undisposed blocks on garbage collection (memory stays bounded)', function () {
      // AddressSanitizer's quarantine keeps freed memory resident: rss says nothing there
      if (process.env.SIMD_ATTENTION_SANITIZED) this.skip();
      // In a child whose malloc serves every large block with mmap (a fixed threshold), so a
      // freed block leaves rss at once; glibc's adaptive threshold would keep freed blocks
      // in the heap and make rss say nothing about leaks.
      const script = `
        import { loadNativeBackend } from './src/backends/native.ts';
        const b = loadNativeBackend({ threads: 1 });
        const E = 512, w = () => new Float32Array(E * E).fill(0.01);
        const p = { embedDim: E, numHeads: 8, numKvHeads: 8, headDim: 64, kvDim: E, wq: w(), wk: w(), wv: w(), wo: w() };
        // Node runs native finalizers after the GC pass, from the event loop: let it turn
        const settle = async () => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); } };
        await settle();
        const before = process.memoryUsage().rss;
        for (let i = 0; i < 150; i++) {
          b.createMultiHead(p); // ~4 MiB of packed weights, dropped without dispose()
          if (i % 10 === 9) await settle();
        }
        await settle();
        console.log((process.memoryUsage().rss - before) / 2 ** 20);`;
      const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
      });
      assert.equal(r.status, 0, r.stderr);
      const grown = Number(r.stdout.trim().split('\n').pop());
      // 150 blocks kept alive would be ~600 MiB
      assert.ok(grown < 150, `rss grew by ${grown.toFixed(0)} MiB`);
    });
  });

  describe('the binding checks sizes itself', () => {
    let b: Backend;
    before(() => {
      b = load({ threads: 1 });
    });

    // ArrayBuffer.prototype.resizable replaced before the addon loads (a polyfill, hostile script):
    // the binding reads it through that getter, so it is JS, and it ran after earlier arrays'
    // addresses were taken: one that transferred q away let the kernel read q's old memory
    it('an async call asks whether its buffers are resizable before it takes any address (child process)', () => {
      const r = child(
        `const resizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable');
         let q, kBuffer, throwFor;
         Object.defineProperty(ArrayBuffer.prototype, 'resizable', {
           configurable: true,
           get() {
             if (this === throwFor) throw new Error('no answer');
             if (this === kBuffer && q.byteLength > 0) structuredClone(q.buffer, { transfer: [q.buffer] });
             return resizable.get.call(this);
           },
         });
         const m = await import(NATIVE_MODULE);
         const b = m.loadNativeBackend({ threads: 1 });
         const n = 2 * 64 * 16;
         const arr = () => Float32Array.from({ length: n }, (_, i) => Math.sin(i));
         const args = (over) => ({ q: (q = arr()), k: arr(), v: arr(), batch: 1, numHeads: 2, numKvHeads: 2, seqQ: 64, seqK: 64, headDim: 16, headDimV: 16,
           qStrides: { b: n, h: 1024, s: 16 }, kStrides: { b: n, h: 1024, s: 16 }, vStrides: { b: n, h: 1024, s: 16 }, oStrides: { b: n, h: 1024, s: 16 },
           scale: 0.25, causal: false, out: new Float32Array(n).fill(NaN), ...over });
         const outcome = async (a) => {
           try { await b.attentionAsync(a); return { settled: 'resolved' }; }
           catch (e) { return { settled: e.code, message: e.message, outUntouched: a.out.every((x) => Number.isNaN(x)) }; }
         };
         const transferred = args({});
         kBuffer = transferred.k.buffer;
         const first = await outcome(transferred);
         kBuffer = undefined;
         const throwing = args({});
         throwFor = throwing.v.buffer;
         const second = await outcome(throwing);
         console.log(JSON.stringify({ first, second }));`,
        {},
      ) as { first: { settled: string; message: string; outUntouched: boolean }; second: { settled: string; message: string } };
      assert.equal(r.first.settled, 'ERR_ATTN_SIZE', JSON.stringify(r.first));
      assert.match(r.first.message, /args\.q/);
      assert.ok(r.first.outUntouched, `the kernel never ran: ${r.first.message}`);
      assert.equal(r.second.settled, 'ERR_ATTN_TYPE', JSON.stringify(r.second));
      assert.match(r.second.message, /args\.v: could not be told fixed-length/);
    });

    it('refuses arrays shorter than shapes and strides need', () => {
      const short = (patch: (a: AttentionArgs) => void) => {
        const a = attnArgs(2, 4, 2, 5, 7, 8);
        patch(a);
        return () => b.attention(a);
      };
      expectCode(short((a) => (a.q = new Float32Array(a.q.length - 1))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.k = new Float32Array(a.k.length - 1))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.v = new Float32Array(10))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.out = new Float32Array(a.out.length - 1))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.weights = new Float32Array(2 * 4 * 5 * 7 - 1))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.qStrides = { b: 1e9, h: 40, s: 8 })), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.kStrides = { b: -1, h: 56, s: 8 })), 'ERR_ATTN_VALUE', RangeError);
      expectCode(short((a) => (a.seqQ = 2 ** 60)), 'ERR_ATTN_VALUE', RangeError);
      expectCode(short((a) => (a.numKvHeads = 3)), 'ERR_ATTN_SHAPE', RangeError);
      expectCode(
        short((a) => (a.mask = { kind: 'additive', data: new Float32Array(34), strideB: 0, strideH: 0, strideQ: 7, strideK: 1 })),
        'ERR_ATTN_SIZE',
        RangeError,
      );
      expectCode(
        short((a) => (a.mask = { kind: 'boolean', data: new Float32Array(35), strideB: 0, strideH: 0, strideQ: 7, strideK: 1 })),
        'ERR_ATTN_TYPE',
        TypeError,
      );
      expectCode(short((a) => (a.keyLengths = Int32Array.from([7]))), 'ERR_ATTN_SIZE', RangeError);
      expectCode(short((a) => (a.keyLengths = Int32Array.from([7, 8]))), 'ERR_ATTN_VALUE', RangeError);
      expectCode(short((a) => ((a as unknown as { q: unknown }).q = new Float64Array(80 * 8))), 'ERR_ATTN_TYPE', TypeError);
      expectCode(short((a) => ((a as unknown as { batch: unknown }).batch = '2')), 'ERR_ATTN_TYPE', TypeError);
      // a correct call still works after all that
      const ok = attnArgs(2, 4, 2, 5, 7, 8);
      b.attention(ok);
      assert.ok(ok.out.every(Number.isFinite));
    });

    it('checks the engine arguments, the cores count included', () => {
      const raw = createRequire(import.meta.url)(b.details().binary) as NativeBinding;
      expectCode(() => raw.createEngine('scalar', 0), 'ERR_ATTN_VALUE', RangeError);
      expectCode(() => raw.createEngine('scalar', 1, 0), 'ERR_ATTN_VALUE', RangeError);
      expectCode(() => raw.createEngine('scalar', 1, Number.NaN), 'ERR_ATTN_VALUE', RangeError);
      expectCode(() => raw.createEngine('scalar', 1, '2' as never), 'ERR_ATTN_TYPE', TypeError);
      expectCode(() => raw.createEngine('no-such-isa', 1, 2), 'ERR_ATTN_VALUE');
      for (const cores of [undefined, 1, 64]) {
        const e = raw.createEngine('scalar', 2, cores);
        assert.equal(e.threads, 2);
        e.close();
      }
    });

    it('refuses what could free memory under the kernel or confuse its objects (the raw binding, found in review)', async () => {
      const raw = createRequire(import.meta.url)(b.details().binary) as NativeBinding;
      const e = raw.createEngine('scalar', 1) as unknown as Record<string, (...a: unknown[]) => unknown> & { close(): void };
      type Resizable = ArrayBuffer & { resize(n: number): void };
      const resizable = (n: number) => new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable)(n, { maxByteLength: n });
      // an async call's array on a resizable buffer: refused before the call holds its address
      const header = new Float64Array(27);
      header.set([1, 1, 1, 1, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1]);
      const f = new Float32Array(8);
      const rab = resizable(32);
      expectCode(() => e.attentionAsync(header, f, f, f, new Float32Array(rab), null, null, null), 'ERR_ATTN_TYPE', TypeError);
      const spoofed = resizable(32);
      Object.defineProperty(spoofed, 'resizable', { value: false }); // the binding asks ArrayBuffer.prototype's getter
      expectCode(() => e.attentionAsync(header, f, f, f, new Float32Array(spoofed), null, null, null), 'ERR_ATTN_TYPE', TypeError);
      await e.attentionAsync(header, f, f, f, new Float32Array(8), null, null, null);
      e.attention(header, f, f, f, new Float32Array(rab), null, null, null); // sync: nothing runs meanwhile
      // a getter that shrinks an array's buffer runs before any address is taken: the size check sees it
      const ab = resizable(4 * 64);
      const x = new Float32Array(64).fill(1);
      const out = new Float32Array(ab);
      expectCode(() => e.softmax({ rows: 8, cols: 8, scale: 1, x, out, get threads() { ab.resize(0); return 0; } }), 'ERR_ATTN_SIZE', RangeError);
      // no method or constructor of one class can be handed the other's object: the classes have
      // no accessors (whose `this` V8 does not check), and the multi-head constructor checks its engine
      const mh = e.createMultiHead(mhParams(16, 2, 2, 5)) as { constructor: new (...a: unknown[]) => unknown; dispose(): void };
      for (const proto of [Object.getPrototypeOf(mh), Object.getPrototypeOf(e)]) {
        for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(proto))) assert.ok(!d.get && !d.set, `accessor ${name}`);
      }
      assert.throws(() => mh.dispose.call(e), TypeError); // V8: Illegal invocation
      expectCode(() => new mh.constructor(mhParams(16, 2, 2, 5), mh), 'ERR_ATTN_TYPE', TypeError);
      assert.equal((e as unknown as { isa: string }).isa, 'scalar');
      e.close();
    });

    it("refuses an engine made by another copy of the binary (another file: perhaps another version's layout)", () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-copy-'));
      try {
        const copy = path.join(dir, 'copy.node');
        fs.copyFileSync(b.details().binary, copy);
        const require = createRequire(import.meta.url);
        const raw = require(b.details().binary) as NativeBinding;
        const other = require(copy) as NativeBinding;
        const e = raw.createEngine('scalar', 1) as unknown as { createMultiHead(p: unknown): { constructor: new (...a: unknown[]) => unknown; dispose(): void }; close(): void };
        const foreign = other.createEngine('scalar', 1) as unknown as { close(): void };
        const mh = e.createMultiHead(mhParams(16, 2, 2, 5));
        // before, the tag was one constant: the other copy's engine passed and was unwrapped as this copy's
        expectCode(() => new mh.constructor(mhParams(16, 2, 2, 5), foreign), 'ERR_ATTN_TYPE', TypeError);
        const same = new mh.constructor(mhParams(16, 2, 2, 5), e) as { dispose(): void };
        same.dispose();
        mh.dispose();
        e.close();
        foreign.close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('an engine whose threads the OS refuses is an ERR_ATTN_NATIVE error, not a hang (a child under ulimit -v)', function () {
      // AddressSanitizer's shadow memory alone takes more address space than the limit
      if (process.env.SIMD_ATTENTION_SANITIZED) this.skip();
      // 1024 threads' stacks (8 MiB each) do not fit 6 GB of address space; Node itself does
      const script = `const raw = require(${JSON.stringify(b.details().binary)});
        try { raw.createEngine('scalar', 1024); console.log('created'); } catch (e) { console.log(e.code + ' ' + e.message); }
        const ok = raw.createEngine('scalar', 2); console.log('then ' + ok.threads); ok.close();`;
      const r = spawnSync('bash', ['-c', 'ulimit -v 6000000 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8', timeout: 60000 });
      assert.equal(r.signal, null, `the child hung or died: ${r.signal} ${r.stderr}`);
      assert.equal(r.status, 0, r.stderr);
      const [first, second] = r.stdout.trim().split('\n');
      if (first === 'created') this.skip(); // a machine whose limits let 1024 threads start anyway
      assert.match(first, /^ERR_ATTN_NATIVE .*could not start 1024 threads/);
      assert.equal(second, 'then 2');
    });

    it('a forwardAsync whose resizable getter disposes its block is refused, not run on freed weights (child process)', () => {
      const index = JSON.stringify(pathToFileURL(path.join(root, 'src', 'index.ts')).href);
      const r = child(
        `const resizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable');
         let armed = false, mha;
         Object.defineProperty(ArrayBuffer.prototype, 'resizable', {
           configurable: true,
           get() {
             // the binding's header (13 float64 slots) is asked about by the binding alone
             if (armed && this.byteLength === 13 * 8) { armed = false; mha.dispose(); }
             return resizable.get.call(this);
           },
         });
         const { load, tensor } = await import(${index});
         const attn = await load({ backend: 'native', threads: 1 });
         const E = 16, w = () => new Float32Array(E * E).fill(0.01);
         mha = attn.multiHeadAttention({ embedDim: E, numHeads: 2, wq: w(), wk: w(), wv: w(), wo: w() });
         armed = true;
         let settled;
         try { await mha.forwardAsync(tensor(new Float32Array(E).fill(1), [1, 1, E])); settled = 'resolved'; } catch (e) { settled = e.code; }
         console.log(JSON.stringify({ settled, armed }));`,
        {},
      ) as { settled: string; armed: boolean };
      assert.equal(r.armed, false, 'the getter ran for the header');
      assert.equal(r.settled, 'ERR_ATTN_DISPOSED');
    });

    it('a buffer whose size would pass int64 is refused, not allocated short (strides of 0, raw binding, child process)', () => {
      // heads 2^40 and seqK 2^25 over a few floats (every stride 0, which the binding allows):
      // the decode split's partial sums, B·H·Sq·chunks·(2 + Dv) floats, wrapped to a 0-byte block
      const script = `const raw = require(${JSON.stringify(b.details().binary)});
        const e = raw.createEngine(raw.bestIsa(), 1);
        const [H, Sq, Sk, D, Dv] = [2 ** 40, 1, 2 ** 25, 1, 62];
        const h = new Float64Array(27);
        h.set([1, H, 1, Sq, Sk, D, Dv, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        try { e.attention(h, new Float32Array(D), new Float32Array(D), new Float32Array(Dv), new Float32Array(Dv), null, null, null); console.log('ran'); }
        catch (err) { console.log(err.code); }`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 });
      assert.equal(r.signal, null, `the child died: ${r.signal} ${r.stderr}`);
      assert.equal(r.stdout.trim(), 'ERR_ATTN_ALLOC', r.stderr);
    });

    it('a probe whose threads the OS refuses is an ERR_ATTN_NATIVE error, not an abort (a child under ulimit -v)', function () {
      if (process.env.SIMD_ATTENTION_SANITIZED) this.skip();
      const script = `const raw = require(${JSON.stringify(b.details().binary)});
        for (const probe of [() => raw.fmaPeakGflops(1024, 1), () => raw.readBandwidthGBs(1 << 20, 1024)]) {
          try { probe(); console.log('ran'); } catch (e) { console.log(e.code + ' ' + e.message); }
        }`;
      const r = spawnSync('bash', ['-c', 'ulimit -v 6000000 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8', timeout: 60000 });
      assert.equal(r.signal, null, `the child died: ${r.signal} ${r.stderr}`);
      assert.equal(r.status, 0, r.stderr);
      const [fma, read] = r.stdout.trim().split('\n');
      if (fma === 'ran') this.skip(); // a machine whose limits let 1024 threads start anyway
      assert.match(fma, /^ERR_ATTN_NATIVE fmaPeakGflops: could not start 1024 threads/);
      assert.match(read, /^ERR_ATTN_NATIVE readBandwidthGBs: could not start 1024 threads/);
    });

    it('a multi-head block that runs out of memory while being made keeps none of it (children under ulimit -v)', function () {
      if (process.env.SIMD_ATTENTION_SANITIZED || !fs.existsSync('/proc/self/status')) this.skip();
      // E 8192: the packed weights are one 1 GiB block and the stacked [Wk; Wv] a 512 MiB vector.
      // With 1.25 GiB of address space to spare, one of the two cannot be had; whichever it is,
      // the other must be given back (the packed block, taken first, was kept: +1 GiB)
      const script = `const raw = require(${JSON.stringify(b.details().binary)});
        const fs = require('node:fs');
        const vm = () => Number(/VmSize:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
        const E = 8192, w = new Float32Array(E * E);
        const e = raw.createEngine('scalar', 1);
        const before = vm();
        if (process.argv[1] === 'measure') { console.log(Math.ceil(before)); process.exit(0); }
        let code = 'made';
        try { e.createMultiHead({ embedDim: E, numHeads: 8, numKvHeads: 8, headDim: 1024, kvDim: E, wq: w, wk: w, wv: w, wo: w }); } catch (err) { code = err.code; }
        console.log(JSON.stringify({ code, grown: vm() - before }));`;
      // MALLOC_ARENA_MAX=1: a V8 thread starting inside the measured window reserved a malloc
      // arena of its own (64 MiB each), which read as growth (256 MiB now and then, on a loaded machine)
      const run = (limitKiB: number | undefined, arg: string) =>
        spawnSync('bash', ['-c', `${limitKiB ? `ulimit -v ${limitKiB} && ` : ''}exec "$0" -e "$1" "$2"`, process.execPath, script, arg], {
          encoding: 'utf8',
          timeout: 60000,
          env: { ...process.env, MALLOC_ARENA_MAX: '1' },
        });
      const m = run(undefined, 'measure');
      assert.equal(m.status, 0, m.stderr);
      const baseMiB = Number(m.stdout.trim());
      const r = run(Math.round((baseMiB + 1280) * 1024), 'make');
      assert.equal(r.status, 0, `${r.signal} ${r.stderr}`);
      const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { code: string; grown: number };
      if (got.code === 'made') this.skip(); // the limit left room for both
      assert.equal(got.code, 'ERR_ATTN_ALLOC');
      assert.ok(got.grown < 256, `the address space grew by ${got.grown.toFixed(0)} MiB after the failed call`);
    });

    it('close() ends the pool even while a multi-head block made from the instance lives (threads counted in /proc, child process)', function () {
      if (!fs.existsSync('/proc/self/task')) this.skip();
      const facade = JSON.stringify(pathToFileURL(path.join(root, 'src', 'facade.ts')).href);
      const r = child(
        `import fs from 'node:fs';
         const { Attention } = await import(${facade});
         const m = await import(NATIVE_MODULE);
         const tasks = () => fs.readdirSync('/proc/self/task').length;
         const w = (n) => new Float32Array(n).fill(0.1);
         const before = tasks();
         const attn = new Attention(m.loadNativeBackend({ threads: 6 }));
         const mha = attn.multiHeadAttention({ embedDim: 16, numHeads: 2, wq: w(256), wk: w(256), wv: w(256), wo: w(256) });
         mha.forward({ data: w(32), shape: [1, 2, 16] });
         const running = tasks();
         attn.close();
         for (let i = 0; i < 100 && tasks() > before; i++) await new Promise((r) => setTimeout(r, 10));
         let after = '';
         try { mha.forward({ data: w(32), shape: [1, 2, 16] }); } catch (e) { after = e.code; }
         console.log(JSON.stringify({ before, running, closed: tasks(), after, held: typeof mha }));`,
        {},
      ) as { before: number; running: number; closed: number; after: string };
      assert.equal(r.running, r.before + 5, 'the pool started 5 workers');
      assert.equal(r.closed, r.before, 'close() joined them although the block is still referenced');
      assert.equal(r.after, 'ERR_ATTN_DISPOSED');
    });

    it('exports the packed calling convention native-pack.ts writes (what the loader compares)', () => {
      const raw = createRequire(import.meta.url)(b.details().binary) as NativeBinding;
      assert.deepEqual({ ...raw.convention }, { ...PACKED_CONVENTION });
    });

    it('refuses a packed call whose header or argument count is wrong (the raw binding, past native-pack.ts)', () => {
      const raw = createRequire(import.meta.url)(b.details().binary) as NativeBinding;
      const e = raw.createEngine('scalar', 1);
      const f = new Float32Array(64);
      const nulls = [null, null, null] as const; // weights, mask data, keyLengths
      expectCode(() => e.attention(), 'ERR_ATTN_TYPE', TypeError);
      expectCode(() => e.attention({ batch: 1 }), 'ERR_ATTN_TYPE', TypeError);
      expectCode(() => e.attention(new Float64Array(26), f, f, f, f, ...nulls), 'ERR_ATTN_TYPE', TypeError);
      expectCode(() => e.attention(new Float32Array(27), f, f, f, f, ...nulls), 'ERR_ATTN_TYPE', TypeError);
      expectCode(() => e.attention(new Float64Array(27), f, f, f, f, null, null), 'ERR_ATTN_TYPE', TypeError); // one argument short
      expectCode(() => e.attention(new Float64Array(27), f, f, f, f, ...nulls, null), 'ERR_ATTN_TYPE', TypeError); // one too many
      // a header of zeros: numHeads 0 is out of range
      expectCode(() => e.attention(new Float64Array(27), f, f, f, f, ...nulls), 'ERR_ATTN_VALUE', RangeError);
      const ok = new Float64Array(27);
      ok.set([1, 1, 1, 1, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1]);
      e.attention(ok, f, f, f, f, ...nulls);
      expectCode(() => e.attention(ok, f, f, 'v', f, ...nulls), 'ERR_ATTN_TYPE', TypeError);
      ok[21] = 3; // no such mask kind
      expectCode(() => e.attention(ok, f, f, f, f, ...nulls), 'ERR_ATTN_VALUE', RangeError);
      ok[21] = 1; // additive, but no data
      expectCode(() => e.attention(ok, f, f, f, f, ...nulls), 'ERR_ATTN_TYPE', TypeError);
      ok[21] = Number.NaN;
      expectCode(() => e.attention(ok, f, f, f, f, ...nulls), 'ERR_ATTN_VALUE', RangeError);
      ok[21] = 0;
      ok[20] = Number.NaN; // a flag is 0 or 1: NaN is not read as true
      expectCode(() => e.attention(ok, f, f, f, f, ...nulls), 'ERR_ATTN_VALUE', RangeError);
      ok[20] = 1;
      e.attention(ok, f, f, f, f, ...nulls);
      expectCode(() => raw.fmaPeakGflops(2 ** 32 + 1, 1), 'ERR_ATTN_VALUE', RangeError); // not wrapped to 1
      e.close();
    });

    it('checks matmul, softmax, multi-head weights and the KV cache', () => {
      const mm = { a: rand(6, 1), b: rand(6, 2), out: new Float32Array(4), batch: 1, m: 2, n: 2, k: 3, strideA: 0, strideB: 0, transposeB: false };
      b.matmul(mm);
      expectCode(() => b.matmul({ ...mm, b: new Float32Array(5) }), 'ERR_ATTN_SIZE', RangeError);
      expectCode(() => b.matmul({ ...mm, batch: 2, strideA: 6 }), 'ERR_ATTN_SIZE', RangeError);
      expectCode(() => b.matmul({ ...mm, bias: new Float32Array(1) }), 'ERR_ATTN_SIZE', RangeError);
      expectCode(() => b.softmax({ x: rand(10, 3), out: new Float32Array(9), rows: 2, cols: 5, scale: 1 }), 'ERR_ATTN_SIZE', RangeError);
      const p = mhParams(32, 4, 2, 81);
      expectCode(() => b.createMultiHead!({ ...p, wk: new Float32Array(10) }), 'ERR_ATTN_SIZE', RangeError);
      expectCode(() => b.createMultiHead!({ ...p, headDim: 7 }), 'ERR_ATTN_SHAPE', RangeError);
      const mh = b.createMultiHead!(p);
      const x = rand(3 * 32, 82);
      expectCode(() => mh.forward({ x, kv: x, batch: 1, seqQ: 4, seqKv: 4, causal: false, out: new Float32Array(128) }), 'ERR_ATTN_SIZE', RangeError);
      const cache = { k: new Float32Array(2 * 16), v: new Float32Array(2 * 16), maxLength: 2, length: 0, epoch: 0 };
      expectCode(() => mh.forward({ x, kv: x, batch: 1, seqQ: 3, seqKv: 3, causal: true, cache, out: new Float32Array(96) }), 'ERR_ATTN_SIZE', RangeError);
      expectCode(
        () => mh.forward({ x, kv: x, batch: 1, seqQ: 1, seqKv: 1, causal: true, cache: { ...cache, k: new Float32Array(31) }, out: new Float32Array(32) }),
        'ERR_ATTN_SIZE',
        RangeError,
      );
      mh.dispose();
    });

    it('throws ERR_ATTN_DISPOSED after close()', () => {
      const c = loadNativeBackend({ threads: 1 });
      c.close!();
      expectCode(() => c.attention(attnArgs(1, 1, 1, 2, 2, 4)), 'ERR_ATTN_DISPOSED');
      expectCode(() => c.createMultiHead!(mhParams(32, 2, 2, 91)), 'ERR_ATTN_DISPOSED');
    });
  });

  describe('probes', () => {
    it('measures the FMA peak and the read bandwidth', () => {
      const probes = nativeProbes();
      const g1 = probes.fmaPeakGflops(1, 30);
      const bw = probes.readBandwidthGBs(32 * 2 ** 20, 1);
      assert.ok(g1 > 1 && g1 < 1e5, `fma peak ${g1}`);
      assert.ok(bw > 0.1 && bw < 1e4, `bandwidth ${bw}`);
    });

    it('times one read of given arrays (odd sizes, any typed array), and refuses bad arguments with a code', () => {
      const probes = nativeProbes();
      const arrays = [new Float32Array(2 ** 20 + 3), new Uint8Array(101).subarray(7), new Float64Array(1)];
      for (const threads of [1, 2, 3]) {
        const s = probes.readRegionsSeconds(arrays, threads);
        assert.ok(s > 0 && s < 10, `${threads} threads: ${s} s`);
      }
      const bad = probes.readRegionsSeconds as unknown as (...a: unknown[]) => number;
      expectCode(() => bad(new Float32Array(4), 1), 'ERR_ATTN_TYPE');
      expectCode(() => bad([new Float32Array(4), 'x'], 1), 'ERR_ATTN_TYPE');
      expectCode(() => bad([new Float32Array(4)]), 'ERR_ATTN_TYPE');
      expectCode(() => bad([new Float32Array(4)], 0), 'ERR_ATTN_VALUE');
      expectCode(() => bad([], 1), 'ERR_ATTN_VALUE');
    });
  });
});

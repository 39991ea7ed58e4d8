// The install test (issue "Packaging"): pack the package, install the tarball into a new
// project with no scripts and no network, and check what a user gets: the prebuilt native
// backend from CommonJS and ESM, the wasm fallback without prebuilds/, and a browser bundle
// free of Node-only imports. Run by .ci/install-test.sh.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'simd-attention-install-'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const sh = (cmd, args, cwd, env = {}) => execFileSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
const log = (msg) => console.log(`install-test: ${msg}`);

try {
  log('npm pack (prepack builds dist/ and the prebuilt addon)');
  // lifecycle scripts print to stdout too: the JSON report is the last top-level array
  const packOut = sh(npm, ['pack', '--json', '--pack-destination', work], root);
  const packed = JSON.parse(packOut.slice(packOut.lastIndexOf('\n[\n') + 1));
  const files = packed[0].files.map((f) => f.path);
  const tarball = join(work, packed[0].filename);
  const has = (pattern) => files.some((f) => pattern.test(f));
  for (const needed of [/^dist\/index\.mjs$/, /^dist\/index\.cjs$/, /^dist\/browser\.mjs$/, /^dist\/types\/index\.d\.ts$/, /^dist\/types\/index\.d\.cts$/, /^dist\/wasm\/attention-simd\.wasm$/, /^prebuilds\/linux-x64\/.+\.node$/, /^binding\.gyp$/, /^native\/binding\.cc$/, /^scripts\/build-native\.cjs$/, /^scripts\/ensure-built\.mjs$/]) {
    assert.ok(has(needed), `the tarball lacks ${needed}`);
  }
  for (const unwanted of [/^test\//, /^bench\//, /^src\//, /^\.ci\//, /^native\/test\//, /^build\//]) {
    assert.ok(!has(unwanted), `the tarball should not contain ${unwanted}: ${files.filter((f) => unwanted.test(f)).join(', ')}`);
  }
  log(`files: ${files.join(' ')}`);
  log(`tarball ${packed[0].filename}: ${files.length} files, ${(packed[0].size / 1e6).toFixed(2)} MB`);

  const app = join(work, 'app');
  sh('mkdir', ['-p', app], work);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  // The one runtime dependency goes in from a tarball of the copy in node_modules, so the offline
  // install needs nothing from npm's cache (a fresh machine's `npm ci` caches tarballs, not the
  // registry metadata that resolving a version range would read).
  const depPack = JSON.parse(sh(npm, ['pack', join(root, 'node_modules', 'node-addon-api'), '--json', '--ignore-scripts', '--pack-destination', work], root));
  const depTarball = join(work, depPack[0].filename);
  log('npm install <tarball> <node-addon-api tarball> --ignore-scripts --offline');
  sh(npm, ['install', depTarball, tarball, '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], app);

  // The js backend is the reference itself, so each check compares a backend with it.
  const check = (expectBackend) => `
    const attn = loadSync();
    const refAttn = loadSync({ backend: 'js' });
    const info = attn.info();
    if (info.backend !== '${expectBackend}') throw new Error('expected ${expectBackend}, got ' + JSON.stringify(info));
    const n = 2 * 3 * 17 * 24;
    const data = (seed) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
    const q = tensor(data(1), [2, 3, 17, 24]), k = tensor(data(2), [2, 3, 17, 24]), v = tensor(data(3), [2, 3, 17, 24]);
    const got = attn.attention(q, k, v, { causal: true }).output.data;
    const want = refAttn.attention(q, k, v, { causal: true }).output.data;
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    if (!(worst < 1e-4)) throw new Error('max difference ' + worst);
    console.log(JSON.stringify({ ...info, worst }));
  `;
  const run = (file, source) => {
    writeFileSync(join(app, file), source);
    return JSON.parse(sh(process.execPath, [file], app, { SIMD_ATTENTION_BACKEND: '' }).trim().split('\n').pop());
  };
  const cjs = run('check.cjs', `const { loadSync, tensor } = require('simd-attention');\n${check('native')}`);
  log(`CommonJS: ${cjs.backend}/${cjs.isa}, max diff ${cjs.worst}`);
  const esm = run('check.mjs', `import { loadSync, tensor } from 'simd-attention';\n${check('native')}`);
  log(`ESM: ${esm.backend}/${esm.isa}, max diff ${esm.worst}`);

  const cliInfo = sh(npm, ['exec', '--offline', '--', 'simd-attention', 'info'], app, { SIMD_ATTENTION_BACKEND: '' });
  assert.match(cliInfo, /backend: +native/, cliInfo);
  log(`npx simd-attention info:\n${cliInfo.trim()}`);
  const cliBench = sh(npm, ['exec', '--offline', '--', 'simd-attention', 'bench', '--quick', '--no-memory', '--shapes', 'enc128', '--max-time', '0.3'], app);
  assert.match(cliBench, /enc128/);
  // our own cases ran (the bundled benchmark.js once looked up lodash, which an install lacks, and every case failed)
  assert.match(cliBench, /native ×1 +\d/, cliBench);
  assert.doesNotMatch(cliBench, /failed/, cliBench);
  assert.ok(existsSync(join(app, 'simd-attention-bench/latest.json')), 'the bench writes its report into the working directory');
  log('npx simd-attention bench --quick: report written to ./simd-attention-bench/');

  const prebuilds = join(app, 'node_modules/simd-attention/prebuilds');
  renameSync(prebuilds, `${prebuilds}.off`);
  const wasm = run('check-wasm.mjs', `import { loadSync, tensor } from 'simd-attention';\n${check('wasm')}`);
  assert.match(wasm.fallbackReason, /native/);
  log(`without prebuilds/: ${wasm.backend}/${wasm.isa}, max diff ${wasm.worst}; reason: ${wasm.fallbackReason.slice(0, 100)}...`);
  renameSync(`${prebuilds}.off`, prebuilds);

  // npm runs a directory's `prepare` and install scripts (npm install <dir>, npm link): the
  // published scripts must cope without the sources, and the install hook takes the prebuilt
  // binary once it has checked that it loads
  log('npm install <the unpacked package directory> (its prepare and install scripts run)');
  const unpacked = join(work, 'unpacked');
  sh('mkdir', ['-p', unpacked], work);
  sh('tar', ['xzf', tarball, '-C', unpacked], work);
  const dirApp = join(work, 'dir-app');
  sh('mkdir', ['-p', dirApp], work);
  writeFileSync(join(dirApp, 'package.json'), JSON.stringify({ name: 'dir-app', version: '1.0.0', private: true }));
  sh(npm, ['install', depTarball, join(unpacked, 'package'), '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], dirApp);
  assert.ok(!existsSync(join(unpacked, 'package', 'build')), 'the install hook compiled although the prebuilt binary loads');
  writeFileSync(join(dirApp, 'check.mjs'), `import { loadSync, tensor } from 'simd-attention';\n${check('native')}`);
  const dirInfo = JSON.parse(sh(process.execPath, ['check.mjs'], dirApp, { SIMD_ATTENTION_BACKEND: '' }).trim().split('\n').pop());
  log(`from the directory: ${dirInfo.backend}/${dirInfo.isa}, max diff ${dirInfo.worst}`);

  log('type-checking a CommonJS and an ESM consumer against the shipped declarations');
  writeFileSync(join(app, 'types-cjs.cts'), "import { loadSync, tensor } from 'simd-attention';\nconst t = tensor(new Float32Array(4), [1, 1, 1, 4]);\nexport const shape: readonly number[] = loadSync().attention(t, t, t).output.shape;\n");
  writeFileSync(join(app, 'types-esm.mts'), "import { load, type BackendInfo } from 'simd-attention';\nexport const info: BackendInfo = (await load()).info();\n");
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'node16', moduleResolution: 'node16', target: 'es2022', strict: true, noEmit: true, types: [] }, files: ['types-cjs.cts', 'types-esm.mts'] }));
  sh(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);

  log('bundling the browser entry with esbuild');
  writeFileSync(join(app, 'browser-app.mjs'), "import { load, tensor } from 'simd-attention';\nglobalThis.run = async () => (await load()).info();\n");
  const esbuild = await import(pathToFileURL(join(root, 'node_modules/esbuild/lib/main.js')).href);
  await esbuild.build({ absWorkingDir: app, entryPoints: ['browser-app.mjs'], bundle: true, platform: 'browser', format: 'esm', outfile: 'bundle.js', logLevel: 'warning' });
  const bundle = readFileSync(join(app, 'bundle.js'), 'utf8');
  for (const nodeOnly of [/from\s*["']node:/, /require\(["'](node:)?(fs|path|module|worker_threads|child_process|os|url)["']\)/, /\.node["']/, /from\s*["'](fs|path|module|worker_threads)["']/]) {
    assert.doesNotMatch(bundle, nodeOnly, `the browser bundle refers to a Node-only module: ${nodeOnly}`);
  }
  assert.ok(existsSync(join(app, 'bundle.js')));
  log(`browser bundle: ${(bundle.length / 1024).toFixed(0)} KiB, no Node-only import`);
  log('passed');
} finally {
  rmSync(work, { recursive: true, force: true });
}

#!/usr/bin/env node
// Builds the native addon (build/Release/simd_attention.node) with node-gyp.
//   node scripts/build-native.cjs                 build; exit status = node-gyp's
//   node scripts/build-native.cjs --from-install  (npm's install hook) never fails the install:
//                                                 prints a note and exits 0 when it cannot build
//   --debug                                       build/Debug instead
// node-gyp: node_modules/node-gyp if present, else npm's bundled one (npm_config_node_gyp).
// Offline: when Node's own headers are installed next to the running node (as Debian's and
// the official tarballs' include/node are), they are used instead of downloading them.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const fromInstall = args.includes('--from-install');
const debug = args.includes('--debug');

function note(msg) {
  process.stdout.write(`simd-attention: ${msg}\n`);
}

// A flag variable is on when set to anything but '', '0', 'false', 'no' or 'off'.
function flag(name) {
  const v = (process.env[name] || '').trim().toLowerCase();
  return v !== '' && !['0', 'false', 'no', 'off'].includes(v);
}

// The prebuilt binary for this platform that this Node can actually load (one built against
// another libc, e.g. glibc's on Alpine's musl, is passed over so that the install compiles one).
function loadablePrebuild() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let files = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
  } catch {
    return undefined;
  }
  for (const f of files) {
    const file = path.join(dir, f);
    const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { stdio: 'ignore', timeout: 30000 });
    if (r.status === 0) return file;
  }
  return undefined;
}

function finish(ok, why) {
  if (ok) {
    note(`native addon built: ${path.join(root, 'build', debug ? 'Debug' : 'Release', 'simd_attention.node')}`);
    process.exit(0);
  }
  if (fromInstall) {
    note(`could not build the native addon (${why}).`);
    const pre = loadablePrebuild();
    if (pre) note(`This is fine: the prebuilt binary ${path.relative(root, pre)} still serves.`);
    else note('This is fine: the package still works with the WebAssembly backend (see info().fallbackReason).');
    note(
      "To build it later: install python3, make and a C++17 compiler (and Node's headers, unless node-gyp may download them), then run `npm run build:native` in this package.",
    );
    process.exit(0);
  }
  process.stderr.write(`simd-attention: native build failed: ${why}\n`);
  process.exit(1);
}

if (flag('SIMD_ATTENTION_SKIP_BUILD') && fromInstall) {
  note('SIMD_ATTENTION_SKIP_BUILD is set: not building the native addon.');
  process.exit(0);
}

// A prebuilt binary that loads here makes the install-time build unnecessary.
if (fromInstall && !flag('SIMD_ATTENTION_BUILD_FROM_SOURCE')) {
  const pre = loadablePrebuild();
  if (pre) {
    note(`using the prebuilt binary ${path.relative(root, pre)} (set SIMD_ATTENTION_BUILD_FROM_SOURCE=1 to compile instead).`);
    process.exit(0);
  }
}

function findNodeGyp() {
  const candidates = [];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] }));
  } catch {
    /* not installed locally */
  }
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  const npmDir = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  candidates.push(npmDir);
  return candidates.find((c) => c && fs.existsSync(c));
}

const gyp = findNodeGyp();
if (!gyp) finish(false, 'node-gyp not found (neither node_modules/node-gyp nor npm\'s bundled copy)');

const gypArgs = [gyp, 'rebuild', `--jobs=${Math.max(1, require('node:os').cpus().length)}`];
if (debug) gypArgs.push('--debug');
// Offline headers: prefer an explicit nodedir, else the headers installed with this node.
if (!process.env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) && fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) {
    gypArgs.push(`--nodedir=${prefix}`);
  }
}

const r = spawnSync(process.execPath, gypArgs, { cwd: root, stdio: 'inherit', env: process.env });
if (r.error) finish(false, r.error.message);
finish(r.status === 0, `node-gyp exited with status ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}`);

// Rebuilds dist/ when any source is newer than the last build, so `npm start` / `npm test`
// work on a fresh clone and after edits without a separate build step.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist/.stamp');

// An installed copy of the package (npm runs `prepare` for directory installs and links) has
// dist/ and no sources: nothing to build.
if (!existsSync(join(root, 'src'))) process.exit(0);

/** newest mtime of the files under dir whose name passes `keep` (bench/results is output, not source) */
function newest(dir, keep = () => true) {
  if (!existsSync(dir)) return 0;
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) t = Math.max(t, entry.name === 'results' ? 0 : newest(p, keep));
    else if (keep(entry.name)) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const files = ['scripts/build.mjs', 'scripts/build-wasm.mjs', 'asconfig.json', 'tsconfig.build.json', 'package.json'];
const sources = Math.max(
  newest(join(root, 'src')),
  newest(join(root, 'assembly')),
  newest(join(root, 'bench'), (name) => name.endsWith('.ts')),
  ...files.map((f) => statSync(join(root, f)).mtimeMs),
);
if (!existsSync(stamp) || statSync(stamp).mtimeMs < sources) {
  execFileSync(process.execPath, [join(root, 'scripts/build.mjs')], { stdio: 'inherit' });
}

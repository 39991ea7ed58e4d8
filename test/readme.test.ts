/** The README's `ts` examples run as written (against this checkout's sources). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const blocks = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README examples', () => {
  it('has examples', () => assert.ok(blocks.length >= 2));

  blocks.forEach((code, i) => {
    it(`example ${i + 1} runs`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'simd-attention-readme-'));
      try {
        const file = join(dir, `example${i + 1}.mts`);
        const entry = pathToFileURL(join(root, 'src/index.ts')).href;
        writeFileSync(file, `${code.replaceAll("'simd-attention'", JSON.stringify(entry))}\nexport {};\n`);
        const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, `example ${i + 1} failed:\n${r.stderr}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

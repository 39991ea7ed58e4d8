/** `npm start` prints the walk-through: every step, the heatmaps with token labels, the backend. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('demo (npm start)', () => {
  it('prints each step of self-attention and which backend computed it', () => {
    const r = spawnSync(process.execPath, ['dist/demo.mjs'], { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    assert.equal(r.status, 0, r.stderr);
    for (const step of ['1. Embeddings', '2. Queries', '3. Scores', '4. Attention weights', '5. Context vectors', '6. Causal', '7.1 Head 1', '8. Multi-head output']) {
      assert.ok(r.stdout.includes(step), `missing "${step}"`);
    }
    assert.match(r.stdout, /backend: (native|wasm|js) \(/);
    assert.match(r.stdout, /^\s+the\s+cat\s+sat\s+on\s+the'\s+mat$/m, 'heatmap column labels');
    // the fused kernel agrees with the step-by-step computation
    const diff = Number(/max difference ([0-9.e+-]+)/.exec(r.stdout)?.[1]);
    assert.ok(diff < 1e-5, `fused vs step-by-step differ by ${diff}`);
  });
});

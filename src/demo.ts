/**
 * `npm start`: self-attention step by step, as an introduction to transformers tells it —
 * a sentence, toy embeddings, the Wq/Wk/Wv projections, the score matrix, the softmax, the
 * context vectors, then several heads at once — computed by whichever backend loaded.
 */
import { load, tensor, type Tensor } from './index.js';

const sentence = ['the', 'cat', 'sat', 'on', 'the', 'mat'];
const E = 8; // embedding size
const HEADS = 2;

/** Deterministic pseudo-random numbers in [-1, 1): the same demo on every machine. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}

function wordSeed(word: string): number {
  let h = 2166136261;
  for (const ch of word) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

/** Embedding = a vector per word (the same word, the same vector) + a sinusoidal position code. */
function embed(words: string[]): Tensor {
  const data = new Float32Array(words.length * E);
  words.forEach((w, pos) => {
    const r = seeded(wordSeed(w));
    for (let i = 0; i < E; i++) {
      const angle = pos / 10000 ** ((2 * Math.floor(i / 2)) / E);
      data[pos * E + i] = r() + 0.5 * (i % 2 === 0 ? Math.sin(angle) : Math.cos(angle));
    }
  });
  return tensor(data, [words.length, E]);
}

/** Toy projection weights; `gain` > 1 on Wq and Wk makes the softmax sharp enough to see structure. */
function weights(seed: number, rows: number, cols: number, gain = 1): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: rows * cols }, () => (gain * r()) / Math.sqrt(cols));
}

const fmt = (x: number) => (x >= 0 ? ' ' : '') + x.toFixed(2);

function printMatrix(title: string, m: Tensor, rowLabels: string[], colLabels?: string[]): void {
  const cols = m.shape[m.shape.length - 1];
  console.log(`\n${title}`);
  if (colLabels) console.log(' '.repeat(8) + colLabels.map((l) => l.padStart(6)).join(''));
  rowLabels.forEach((label, i) => {
    const row = Array.from(m.data.subarray(i * cols, (i + 1) * cols), (x) => fmt(x).padStart(6));
    console.log(label.padEnd(8) + row.join(''));
  });
}

/** Attention weights as a heatmap: one shaded cell per (query, key), rows summing to 1. */
function printHeatmap(title: string, p: Float32Array, labels: string[]): void {
  const shades = [' ', '░', '▒', '▓', '█'];
  const n = labels.length;
  const color = process.stdout.isTTY && !process.env.NO_COLOR;
  console.log(`\n${title}   (rows: queries, columns: keys; darker = more attention)`);
  console.log(' '.repeat(8) + labels.map((l) => l.padStart(7)).join(''));
  for (let i = 0; i < n; i++) {
    let line = labels[i].padEnd(8);
    for (let j = 0; j < n; j++) {
      const w = p[i * n + j];
      const shade = shades[Math.min(4, Math.round(w * 4 / 0.6))];
      const cell = `${shade}${shade}${w >= 0.995 ? '1.0' : w.toFixed(2).slice(1)}`.padStart(7);
      line += color ? `\x1b[48;5;${232 + Math.round(w * 23)}m\x1b[38;5;${w > 0.5 ? 232 : 255}m${cell}\x1b[0m` : cell;
    }
    console.log(line);
  }
}

async function main(): Promise<void> {
  const attn = await load();
  const info = attn.info();
  console.log('simd-attention demo: self-attention, one step at a time');
  console.log(`backend: ${info.backend} (${info.isa}, ${info.threads} thread${info.threads > 1 ? 's' : ''})${info.fallbackReason ? `\n  fell back because: ${info.fallbackReason}` : ''}`);
  console.log(`\nSentence: "${sentence.join(' ')}" — ${sentence.length} tokens, each embedded in ${E} dimensions.`);

  const labels = sentence.map((w, i) => `${w}${sentence.indexOf(w) !== i ? `'` : ''}`);
  const x = embed(sentence);
  printMatrix('1. Embeddings X (word vector + position code):', x, labels);

  // 2. Projections: Q = X·Wqᵀ, K = X·Wkᵀ, V = X·Wvᵀ (nn.Linear weights are [out, in]).
  const wq = weights(1, E, E, 3);
  const wk = weights(2, E, E, 3);
  const wv = weights(3, E, E);
  const wo = weights(4, E, E);
  const project = (w: Float32Array) => attn.matmul(x, tensor(w, [E, E]), { transposeB: true });
  const q = project(wq);
  const k = project(wk);
  const v = project(wv);
  printMatrix('2. Queries Q = X·Wqᵀ (what each token looks for):', q, labels);

  // 3. Scores: every query against every key, scaled by 1/sqrt(d) to keep the softmax soft.
  const scores = attn.matmul(q, k, { transposeB: true });
  printMatrix(`3. Scores Q·Kᵀ (to be scaled by 1/sqrt(${E}) = ${(1 / Math.sqrt(E)).toFixed(3)}):`, scores, labels, labels);

  // 4. Softmax over keys turns each row into weights that sum to 1.
  const p = attn.softmax(scores, { scale: 1 / Math.sqrt(E) });
  printHeatmap('4. Attention weights softmax(Q·Kᵀ/sqrt(d)):', p.data, labels);

  // 5. Context vectors: each token's output is the weighted average of the values.
  const context = attn.matmul(p, v);
  printMatrix('5. Context vectors P·V (each row mixes the values it attends to):', context, labels);

  // The fused kernel computes steps 3-5 in one pass without materialising the score matrix.
  const as4 = (t: Tensor) => tensor(t.data, [1, 1, sentence.length, E]);
  const fused = attn.attention(as4(q), as4(k), as4(v));
  let diff = 0;
  fused.output.data.forEach((y, i) => (diff = Math.max(diff, Math.abs(y - context.data[i]))));
  console.log(`\n   The fused attention kernel gives the same context vectors (max difference ${diff.toExponential(1)}).`);

  // 6. A decoder only looks back: the causal mask hides later tokens.
  const causal = attn.attention(as4(q), as4(k), as4(v), { causal: true, returnWeights: true });
  printHeatmap('6. Causal (decoder) weights: no token sees the future', causal.weights!.data, labels);

  // 7. Several heads: split the projections into heads of E/H dims, attend in each, concatenate, project.
  const Dh = E / HEADS;
  const asHeads = (t: Tensor) => tensor(t.data, [1, sentence.length, HEADS, Dh]);
  const perHead = attn.attention(asHeads(q), asHeads(k), asHeads(v), { layout: 'bshd', returnWeights: true });
  const S = sentence.length;
  for (let h = 0; h < HEADS; h++) {
    printHeatmap(`7.${h + 1} Head ${h + 1} of ${HEADS} (${Dh} dims each) attends differently:`, perHead.weights!.data.subarray(h * S * S, (h + 1) * S * S), labels);
  }
  const mha = attn.multiHeadAttention({ embedDim: E, numHeads: HEADS, wq, wk, wv, wo });
  const y = mha.forward(tensor(x.data, [1, S, E]));
  printMatrix(`8. Multi-head output concat(heads)·Woᵀ, [${y.shape}]:`, tensor(y.data, [S, E]), labels);
  mha.dispose();
  console.log(`\nComputed by the ${info.backend} backend. Run \`npm test\` to check every backend against the reference.`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

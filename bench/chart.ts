/**
 * The results chart, rendered by hand as SVG (no dependency): grouped bars of GFLOP/s per shape
 * per backend and peer on a log axis, the measured peaks as dashed horizontal lines; decoding
 * shapes in a second panel in GB/s of K and V read, against the measured read bandwidth.
 */
import type { BenchReport, CaseResult } from './types.js';

const COLORS: Record<string, string> = {
  'native-1': '#08306b',
  'native-all': '#2171b5',
  wasm: '#238b45',
  'wasm-relaxed': '#74c476',
  js: '#737373',
  'ort-node-mha-1': '#d94801',
  'ort-node-mha-all': '#fd8d3c',
  'ort-node-graph-1': '#a50f15',
  'ort-node-graph-all': '#ef3b2c',
  'ort-web-mha': '#6a51a3',
  'ort-web-graph': '#9e9ac8',
  'tfjs-wasm': '#8c6d31',
};
const FALLBACK = ['#1b9e77', '#e7298a', '#66a61e', '#e6ab02', '#a6761d'];

const LIMIT_STYLE: Record<string, { color: string; name: string }> = {
  fma1: { color: '#08306b', name: 'FMA peak ×1' },
  fmaAll: { color: '#2171b5', name: 'FMA peak ×all' },
  wasmSimd: { color: '#238b45', name: 'WASM mul+add peak' },
  wasmRelaxed: { color: '#74c476', name: 'WASM relaxed-madd peak' },
  bw1: { color: '#08306b', name: 'read BW ×1' },
  bwAll: { color: '#2171b5', name: 'read BW ×all' },
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

interface Panel {
  x: number;
  y: number;
  w: number;
  h: number;
  shapes: string[];
  value: (r: CaseResult) => number | undefined;
  log: boolean;
  unit: string;
  limits: Array<{ key: string; value: number; label: string }>;
}

export function renderChart(report: BenchReport): string {
  const runnersSeen: Array<{ id: string; label: string }> = [];
  for (const r of report.results) {
    if (r.status === 'skipped' || r.status === 'failed') continue;
    if (!runnersSeen.some((x) => x.id === r.runner)) runnersSeen.push({ id: r.runner, label: r.label });
  }
  const color = (id: string) => COLORS[id] ?? FALLBACK[runnersSeen.findIndex((x) => x.id === id) % FALLBACK.length];

  const decode = report.shapes.filter((s) => s.kvBytes > 0).map((s) => s.name);
  const compute = report.shapes.filter((s) => s.kvBytes === 0).map((s) => s.name);
  const has = (names: string[]) => names.filter((n) => report.results.some((r) => r.shape === n && r.status !== 'skipped' && r.status !== 'failed'));
  const comp = has(compute);
  const dec = has(decode);

  const W = 1500;
  const H = 720;
  const top = 120;
  const bottom = 90;
  const left = 80;
  const right = 30;
  const gap = dec.length && comp.length ? 110 : 0;
  const usable = W - left - right - gap;
  const compW = comp.length && dec.length ? (usable * comp.length) / (comp.length + dec.length * 0.9) : comp.length ? usable : 0;
  const decW = usable - compW;

  const lim = (key: string) => {
    const l = report.limits.find((x) => x.key === key && x.status === 'ok');
    return l?.value ? { key, value: l.value, label: `${LIMIT_STYLE[key]?.name ?? key} ${fmt(l.value)}` } : null;
  };
  const panels: Panel[] = [];
  if (comp.length) {
    panels.push({
      x: left,
      y: top,
      w: compW,
      h: H - top - bottom,
      shapes: comp,
      value: (r) => r.gflops,
      log: true,
      unit: 'GFLOP/s (log scale)',
      limits: ['fma1', 'fmaAll', 'wasmSimd', 'wasmRelaxed'].map(lim).filter((x): x is NonNullable<typeof x> => !!x),
    });
  }
  if (dec.length) {
    panels.push({
      x: left + compW + gap,
      y: top,
      w: decW,
      h: H - top - bottom,
      shapes: dec,
      value: (r) => r.gbs,
      log: false,
      unit: 'GB/s of K and V read',
      limits: ['bw1', 'bwAll'].map(lim).filter((x): x is NonNullable<typeof x> => !!x),
    });
  }

  const svg: string[] = [];
  svg.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  svg.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  const m = report.machine as Record<string, unknown>;
  svg.push(`<text x="${left}" y="30" font-size="20" font-weight="bold">simd-attention: speed per shape, backend and peer (higher is better)</text>`);
  svg.push(
    `<text x="${left}" y="52" font-size="13" fill="#444">${esc(`${m.cpu}, ${m.cores} cores, Node ${m.node} · ${report.date.slice(0, 10)} · medians of benchmark.js samples · causal counted as the full square · dashed: limits measured in the same run`)}</text>`,
  );

  // legend
  let lx = left;
  let ly = 78;
  for (const r of runnersSeen) {
    const w = 26 + r.label.length * 7.6;
    if (lx + w > W - right) {
      lx = left;
      ly += 20;
    }
    svg.push(`<rect x="${lx}" y="${ly - 11}" width="14" height="14" fill="${color(r.id)}"/>`);
    svg.push(`<text x="${lx + 19}" y="${ly}" font-size="13">${esc(r.label)}</text>`);
    lx += w + 12;
  }

  // legend entries for the dashed limit lines
  const limitKeys = [...new Set(panels.flatMap((p) => p.limits.map((l) => l.key)))];
  for (const key of limitKeys) {
    const st = LIMIT_STYLE[key] ?? { color: '#000', name: key };
    const w = 36 + st.name.length * 7.8;
    if (lx + w > W - right) {
      lx = left;
      ly += 20;
    }
    svg.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${st.color}" stroke-width="2" stroke-dasharray="7 4"/>`);
    svg.push(`<text x="${lx + 29}" y="${ly}" font-size="13">${esc(st.name)}</text>`);
    lx += w + 12;
  }

  for (const p of panels) {
    const vals: number[] = [];
    for (const r of report.results) if (p.shapes.includes(r.shape) && r.status === 'ok') vals.push(p.value(r) ?? NaN);
    for (const l of p.limits) vals.push(l.value);
    const finite = vals.filter((v) => Number.isFinite(v) && v > 0);
    const vmax = finite.length ? Math.max(...finite) : 1;
    const vmin = finite.length ? Math.min(...finite) : 1;
    let y0: number;
    let y1: number;
    let ticks: number[];
    if (p.log) {
      y0 = 10 ** Math.floor(Math.log10(vmin * 0.8));
      y1 = 10 ** Math.ceil(Math.log10(vmax * 1.25));
      ticks = [];
      for (let d = y0; d <= y1 * 1.0001; d *= 10) for (const k of [1, 2, 5]) if (d * k <= y1 * 1.0001) ticks.push(d * k);
    } else {
      const step = 10 ** Math.floor(Math.log10(vmax / 2));
      const nice = [1, 2, 5].map((k) => k * step).find((s) => vmax * 1.2 / s <= 8) ?? 10 * step;
      y0 = 0;
      y1 = Math.ceil((vmax * 1.2) / nice) * nice;
      ticks = [];
      for (let t = 0; t <= y1 + 1e-9; t += nice) ticks.push(t);
    }
    const Y = (v: number) =>
      p.log ? p.y + p.h - ((Math.log10(Math.max(v, y0)) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * p.h : p.y + p.h - ((v - y0) / (y1 - y0)) * p.h;

    // grid and axis
    for (const t of ticks) {
      const y = Y(t);
      svg.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
      svg.push(`<text x="${p.x - 6}" y="${y + 4}" font-size="12" text-anchor="end" fill="#333">${fmt(t)}</text>`);
    }
    svg.push(`<line x1="${p.x}" x2="${p.x}" y1="${p.y}" y2="${p.y + p.h}" stroke="#333"/>`);
    svg.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${p.y + p.h}" y2="${p.y + p.h}" stroke="#333"/>`);
    const ax = p.x - 58;
    const ay = p.y + p.h / 2;
    svg.push(`<text x="${ax}" y="${ay}" font-size="14" text-anchor="middle" transform="rotate(-90 ${ax} ${ay})">${esc(p.unit)}</text>`);

    // bars (a strip on the right is kept free for the limit values)
    const tagW = 52;
    const groupW = (p.w - tagW) / p.shapes.length;
    p.shapes.forEach((shape, gi) => {
      const rows = report.results.filter((r) => r.shape === shape && (r.status === 'ok' || r.status === 'wrong'));
      const inner = groupW * 0.86;
      const bw = rows.length ? inner / rows.length : 0;
      const gx = p.x + gi * groupW + (groupW - inner) / 2;
      rows.forEach((r, i) => {
        const x = gx + i * bw;
        const v = p.value(r);
        if (r.status === 'wrong' || v === undefined || !Number.isFinite(v)) {
          svg.push(`<text x="${x + bw / 2}" y="${p.y + p.h - 6}" font-size="11" fill="#c00" text-anchor="start" transform="rotate(-90 ${x + bw / 2} ${p.y + p.h - 6})">WRONG</text>`);
          return;
        }
        const y = Y(v);
        svg.push(
          `<rect x="${x + 1}" y="${y}" width="${Math.max(1, bw - 2)}" height="${p.y + p.h - y}" fill="${color(r.runner)}"><title>${esc(`${r.label} ${shape}: ${fmt(v)} ${p.unit.split(' ')[0]}`)}</title></rect>`,
        );
        const fs = Math.min(11, Math.max(8, bw - 3));
        const tx = x + bw / 2 + fs / 3;
        svg.push(`<text x="${tx}" y="${y - 4}" font-size="${fs}" fill="#222" transform="rotate(-90 ${tx} ${y - 4})">${fmt(v)}</text>`);
      });
      const cx = p.x + gi * groupW + groupW / 2;
      svg.push(`<text x="${cx}" y="${p.y + p.h + 20}" font-size="14" font-weight="bold" text-anchor="middle">${esc(shape)}</text>`);
      const s = report.shapes.find((x) => x.name === shape);
      if (s) {
        const words = s.description.replace(/ \(flops of the full square\)/, '').replace(/, /g, ' ').split(' ');
        const lines: string[] = [];
        const maxChars = Math.max(10, Math.floor((groupW - 8) / 7.2));
        for (const w of words) {
          if (lines.length && (lines[lines.length - 1] + ' ' + w).length <= maxChars) lines[lines.length - 1] += ' ' + w;
          else lines.push(w);
        }
        lines.slice(0, 3).forEach((w, k) =>
          svg.push(`<text x="${cx}" y="${p.y + p.h + 36 + 14 * k}" font-size="11" fill="#555" text-anchor="middle">${esc(w)}</text>`),
        );
      }
    });

    // limit lines (drawn last, over the bars)
    const used: number[] = [];
    for (const l of p.limits) {
      const y = Y(l.value);
      const st = LIMIT_STYLE[l.key] ?? { color: '#000', name: l.key };
      svg.push(`<line x1="${p.x}" x2="${p.x + p.w - tagW + 4}" y1="${y}" y2="${y}" stroke="${st.color}" stroke-width="1.6" stroke-dasharray="7 4"/>`);
      let ty = y + 4;
      while (used.some((u) => Math.abs(u - ty) < 13)) ty -= 13;
      used.push(ty);
      svg.push(`<text x="${p.x + p.w - 2}" y="${ty}" font-size="12" font-weight="bold" text-anchor="end" fill="${st.color}" stroke="white" stroke-width="4" paint-order="stroke">${esc(fmt(l.value))}</text>`);
    }
  }
  svg.push('</svg>');
  return svg.join('\n') + '\n';
}

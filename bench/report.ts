/**
 * Turns measured cases into the report: fractions of the limits, the targets of issues 3 and 4,
 * the terminal lines and tables, bench/results/latest.json and latest.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, flops, isBandwidthBound, kvBytes, type Shape } from './shapes.js';
import type { BenchReport, CaseResult, LimitResult, MemoryResult, TargetResult } from './types.js';

export function limitValue(limits: LimitResult[], key: string): LimitResult | undefined {
  const l = limits.find((x) => x.key === key);
  return l && l.status === 'ok' ? l : undefined;
}

/** Share of the score matrix that is visible: 1, or for a bottom-right causal mask the lower triangle. */
export function usefulFraction(s: Shape): number {
  if (s.kind !== 'attention' || !s.causal) return 1;
  let visible = 0;
  for (let i = 0; i < s.seqQ; i++) visible += Math.min(s.seqK, Math.max(0, i + (s.seqK - s.seqQ) + 1));
  return visible / (s.seqQ * s.seqK);
}

/** Attaches to each measured case the limit it is compared with and the fraction reached. */
export function annotateLimits(results: CaseResult[], shapes: Shape[], limits: LimitResult[], runnerLimit: (id: string) => string): void {
  for (const r of results) {
    if (r.status !== 'ok') continue;
    const shape = shapes.find((s) => s.name === r.shape);
    if (!shape) continue;
    if (isBandwidthBound(shape) && r.gbs !== undefined) {
      const l = limitValue(limits, r.threads === 1 ? 'bw1' : 'bwAll');
      if (l?.value) r.limit = { name: l.label, value: l.value, unit: 'GB/s', fraction: r.gbs / l.value };
    } else if (r.gflops !== undefined) {
      const key = runnerLimit(r.runner);
      const l = limitValue(limits, key);
      // GFLOP/s counts a causal shape as the full square; against a limit only the work that has
      // to be done counts (the visible part), so no figure can exceed its limit
      if (l?.value) r.limit = { name: l.label, value: l.value, unit: 'GFLOP/s', fraction: (r.gflops * usefulFraction(shape)) / l.value };
    }
  }
}

function find(results: CaseResult[], shape: string, runner: string): CaseResult | undefined {
  return results.find((r) => r.shape === shape && r.runner === runner);
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

/** The performance targets of issue 3 (native) and issue 4 (wasm), evaluated on this run. */
export function evaluateTargets(results: CaseResult[], threads: number): TargetResult[] {
  const out: TargetResult[] = [];
  const ratio = (issue: number, shape: string, ours: string, peer: string, min: number, what: string) => {
    const a = find(results, shape, ours);
    const b = find(results, shape, peer);
    const t: TargetResult = { issue, what: `${shape}: ${what}`, target: `≥ ${min.toFixed(2)}×` };
    if (a?.status !== 'ok' || b?.status !== 'ok') {
      t.reason = [a, b]
        .map((x, i) => (x?.status === 'ok' ? null : `${i === 0 ? ours : peer}: ${x ? `${x.status}${x.reason ? ` (${x.reason})` : ''}` : 'not run'}`))
        .filter(Boolean)
        .join('; ');
    } else {
      // the ratio from calls alternated with the peer's (paired.ts) is the one checked; the ratio
      // of the two timing-round medians goes alongside
      const r = b.median! / a.median!;
      const fromMedians = `${r.toFixed(2)}× (${(a.median! * 1e3).toFixed(2)} vs ${(b.median! * 1e3).toFixed(2)} ms)`;
      const pp = a.pairedPeers?.find((x) => x.peer === peer);
      if (pp) {
        t.what += ', calls alternated';
        t.measured = `${pp.ratio.toFixed(2)}× (median of ${pp.pairs} pairs; ${(pp.oursSeconds * 1e3).toFixed(2)} vs ${(pp.peerSeconds * 1e3).toFixed(2)} ms); from the timing rounds' medians ${fromMedians}`;
        t.met = pp.ratio >= min;
      } else {
        t.measured = fromMedians;
        t.met = r >= min;
      }
    }
    out.push(t);
  };
  const frac = (issue: number, shape: string, ours: string, min: number, what: string) => {
    const a = find(results, shape, ours);
    const t: TargetResult = { issue, what: `${shape}: ${what}`, target: `≥ ${pct(min)}` };
    // a native figure paired with its probe after each call (paired.ts) is the one checked; the
    // fraction of the probe run once at the start goes alongside
    const paired =
      a?.status !== 'ok'
        ? undefined
        : a.pairedPeak
          ? { ...a.pairedPeak, value: a.pairedPeak.gflops, probe: a.pairedPeak.peakGflops, unit: 'GFLOP/s', how: 'the FMA probe timed after each call', oneOff: 'the probe at the start of the run' }
          : a.pairedRead
            ? { ...a.pairedRead, value: a.pairedRead.gbs, probe: a.pairedRead.readGBs, unit: 'GB/s', how: 'a plain read of the same K and V after each call', oneOff: 'the best-of probe over its own buffer' }
            : undefined;
    if (a?.status !== 'ok') t.reason = `${ours}: ${a ? `${a.status}${a.reason ? ` (${a.reason})` : ''}` : 'not run'}`;
    else if (paired) {
      t.what += `, ${paired.how}`;
      t.measured = `${pct(paired.fraction)} (${paired.value.toFixed(1)} of ${paired.probe.toFixed(1)} ${paired.unit}, medians of ${paired.pairs} pairs)${a.limit ? `; against ${paired.oneOff} ${pct(a.limit.fraction)} (${(a.gbs ?? a.gflops)!.toFixed(1)} of ${a.limit.value.toFixed(1)})` : ''}`;
      t.met = paired.fraction >= min;
    } else if (!a.limit) t.reason = 'limit not measured';
    else {
      t.measured = `${pct(a.limit.fraction)} (${(a.gbs ?? a.gflops)!.toFixed(1)} of ${a.limit.value.toFixed(1)} ${a.limit.unit})`;
      t.met = a.limit.fraction >= min;
    }
    out.push(t);
  };
  const N = threads;
  const tn = N > 1 ? [1, N] : [1];
  const id = (base: string, t: number) => `${base}-${t === 1 ? '1' : 'all'}`;
  for (const t of tn) ratio(3, 'long2k', id('native', t), id('ort-node-mha', t), 1.0, `native ×${t} vs ort-node MultiHeadAttention ×${t}`);
  frac(3, 'long2k', 'native-1', 0.85, 'native ×1 fraction of FMA peak (1 thread)');
  for (const t of tn) ratio(3, 'enc512', id('native', t), id('ort-node-mha', t), 1.25, `native ×${t} vs ort-node MultiHeadAttention ×${t}`);
  for (const t of tn) ratio(3, 'enc128', id('native', t), id('ort-node-mha', t), 1.3, `native ×${t} vs ort-node MultiHeadAttention ×${t}`);
  for (const t of tn) ratio(3, 'causal1k', id('native', t), id('ort-node-graph', t), 1.8, `native ×${t} vs ort-node MatMul/Softmax graph + mask ×${t}`);
  frac(3, 'decode4k', N > 1 ? 'native-all' : 'native-1', 0.75, `native ×${N} K+V read speed, fraction of read bandwidth (${N} threads)`);
  for (const t of tn) ratio(3, 'mha768', id('native', t), id('ort-node-mha', t), 1.0, `native ×${t} vs ort-node MatMul + MultiHeadAttention ×${t}`);
  frac(3, 'mha768', 'native-1', 0.85, 'native ×1 fraction of FMA peak (1 thread)');
  for (const s of ['enc512', 'long2k']) ratio(4, s, 'wasm', 'ort-web-mha', 1.3, 'wasm simd128 vs ort-web MultiHeadAttention (1 thread)');
  ratio(4, 'causal1k', 'wasm', 'ort-web-graph', 1.3, 'wasm simd128 vs ort-web MatMul/Softmax graph + mask (1 thread)');
  frac(4, 'long2k', 'wasm', 0.75, 'wasm simd128 fraction of the f32x4 mul+add peak');
  frac(4, 'long2k', 'wasm-relaxed', 0.7, 'wasm relaxed fraction of the relaxed_madd peak');
  return out;
}

// ---- summary: ours against the best peer at the same thread count --------------------------------

export interface SummaryCell {
  ours?: CaseResult;
  peer?: CaseResult;
  /** peer time / our time */
  speedup?: number;
}

/**
 * For each shape, three comparisons at equal footing: native at 1 thread against the fastest
 * peer at 1 thread (any peer), native at all threads against the fastest onnxruntime-node at all
 * threads, and wasm (the build this runtime loads without flags) against the fastest
 * single-threaded WASM peer.
 */
export function summary(report: BenchReport): Array<{ shape: string; cells: SummaryCell[] }> {
  const ok = (r: CaseResult) => r.status === 'ok' && r.median !== undefined;
  const best = (rows: CaseResult[]) => rows.filter(ok).sort((a, b) => a.median! - b.median!)[0];
  const threadsAll = Number(report.options.threads ?? 1);
  return report.shapes.map((sh) => {
    const rows = report.results.filter((r) => r.shape === sh.name);
    const pick = (ours: CaseResult | undefined, peer: CaseResult | undefined): SummaryCell => ({
      ours,
      peer,
      speedup: ours && peer ? peer.median! / ours.median! : undefined,
    });
    const cells = [
      pick(best(rows.filter((r) => r.runner === 'native-1')), best(rows.filter((r) => r.kind === 'peer' && r.threads === 1))),
      ...(threadsAll > 1
        ? [pick(best(rows.filter((r) => r.runner === 'native-all')), best(rows.filter((r) => r.kind === 'peer' && r.threads === threadsAll)))]
        : []),
      // the wasm build this runtime loads by default (relaxed only where it needs no V8 flag)
      pick(
        best(rows.filter((r) => r.family === 'wasm' && !r.note?.includes('--experimental'))),
        best(rows.filter((r) => r.family === 'ort-web' || r.family === 'tfjs')),
      ),
    ];
    return { shape: sh.name, cells };
  });
}

function summaryHeaders(report: BenchReport): string[] {
  const n = Number(report.options.threads ?? 1);
  const groups = ['native ×1 vs best peer ×1', ...(n > 1 ? [`native ×${n} vs best peer ×${n}`] : []), 'wasm (default build) vs best WASM peer (1 thread)'];
  return ['shape', ...groups];
}

function summaryCellText(c: SummaryCell): string {
  if (!c.ours && !c.peer) return '—';
  const t = (r?: CaseResult) => (r ? `${fmtMs(r.median)} ms` : 'n/a');
  const who = c.peer ? ` (${c.peer.label.replace(/ ×\d+$/, '')})` : '';
  const oursLabel = c.ours && c.ours.family === 'wasm' ? `${c.ours.label.replace(/ ×1$/, '')} ` : '';
  return `${c.speedup !== undefined ? `**${c.speedup.toFixed(2)}×** · ` : ''}${oursLabel}${t(c.ours)} vs ${t(c.peer)}${who}`;
}

// ---- terminal ----------------------------------------------------------------------------------

export function fmtMs(s?: number): string {
  if (s === undefined) return '';
  const ms = s * 1e3;
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

function fmtErr(r: CaseResult): string {
  if (!r.check) return '';
  return Number.isNaN(r.check.maxAbsErr) ? 'NaN' : r.check.maxAbsErr.toExponential(1);
}

/** One progress line per finished case. */
export function caseLine(r: CaseResult): string {
  const head = `  ${r.shape.padEnd(9)} ${r.label.padEnd(22)}`;
  if (r.status === 'ok') {
    const spread = `[${fmtMs(r.q1)}–${fmtMs(r.q3)}]`;
    const speed = r.gbs !== undefined ? `${r.gbs.toFixed(1).padStart(6)} GB/s` : `${r.gflops!.toFixed(1).padStart(6)} GFLOP/s`;
    const lim = r.limit ? `${pct(r.limit.fraction).padStart(4)} of limit` : '';
    return `${head} ${fmtMs(r.median).padStart(8)} ms ${spread.padEnd(17)} ${speed} ${lim.padEnd(14)} err ${fmtErr(r)}  (${r.samples} samples)`;
  }
  const tag = r.status === 'wrong' ? 'WRONG' : r.status;
  const reason = r.reason ?? '';
  return `${head} ${tag}: ${reason.length > 150 ? reason.slice(0, 147) + '...' : reason}`;
}

function table(headers: string[], rows: string[][], align: Array<'l' | 'r'>): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (align[i] === 'r' ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ');
  return [fmt(headers), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(fmt)].join('\n');
}

function caseCells(r: CaseResult, bw: boolean): string[] {
  if (r.status !== 'ok') return [r.label, r.status === 'wrong' ? 'WRONG' : r.status, '', '', '', fmtErr(r)];
  return [
    r.label,
    fmtMs(r.median),
    `${fmtMs(r.q1)}–${fmtMs(r.q3)}`,
    bw ? `${r.gbs!.toFixed(1)} GB/s` : r.gflops!.toFixed(1),
    r.limit ? pct(r.limit.fraction) : '',
    fmtErr(r),
  ];
}

export function terminalSummary(report: BenchReport): string {
  const lines: string[] = [];
  for (const s of report.shapes) {
    const rows = report.results.filter((r) => r.shape === s.name && r.status !== 'skipped');
    if (rows.length === 0) continue;
    const bw = s.kvBytes > 0 && report.results.some((r) => r.shape === s.name && r.gbs !== undefined);
    lines.push(`\n${s.name}  (${s.description}; ${(s.flops / 1e9).toFixed(2)} GFLOP)`);
    lines.push(
      table(['backend', 'median ms', 'IQR ms', bw ? 'K+V read' : 'GFLOP/s', '% limit', 'max err'], rows.map((r) => caseCells(r, bw)), [
        'l',
        'r',
        'r',
        'r',
        'r',
        'r',
      ]),
    );
  }
  const sum = summary(report);
  if (sum.some((r) => r.cells.some((c) => c.speedup !== undefined))) {
    lines.push('\nSpeed-up against the fastest peer at the same thread count (peer time / our time)');
    lines.push(
      table(
        summaryHeaders(report),
        sum.map((r) => [r.shape, ...r.cells.map((c) => summaryCellText(c).replace(/\*\*/g, ''))]),
        summaryHeaders(report).map(() => 'l' as const),
      ),
    );
  }
  const t = report.targets.filter((x) => x.measured || x.reason);
  if (t.length) {
    lines.push('\nTargets (issues 3 and 4)');
    lines.push(
      table(
        ['issue', 'what', 'target', 'measured', 'met'],
        t.map((x) => [`#${x.issue}`, x.what, x.target, x.measured ?? `n/a: ${x.reason}`.slice(0, 70), x.met === undefined ? '' : x.met ? 'yes' : 'NO']),
        ['l', 'l', 'l', 'l', 'l'],
      ),
    );
  }
  return lines.join('\n');
}

// ---- markdown ----------------------------------------------------------------------------------

function mdTable(headers: string[], rows: string[][], align?: Array<'l' | 'r'>): string {
  const a = align ?? headers.map(() => 'l');
  return [
    `| ${headers.join(' | ')} |`,
    `|${a.map((x) => (x === 'r' ? '---:' : ':---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`),
  ].join('\n');
}

export function markdown(report: BenchReport): string {
  const m = report.machine as Record<string, unknown>;
  const out: string[] = [];
  out.push(`# simd-attention benchmark`);
  out.push('');
  out.push(`${report.date} · \`${report.command}\` · ${report.durationSeconds.toFixed(0)} s`);
  out.push('');
  out.push(`**Machine:** ${m.cpu} · ${m.cores} cores · Node ${m.node} (V8 ${m.v8}) · ${m.os}`);
  const pk = m.packages as Record<string, string> | undefined;
  if (pk) out.push(`**Packages:** ${Object.entries(pk).map(([k, v]) => `${k} ${v}`).join(' · ')}`);
  out.push('');
  out.push(
    'Median time per call (benchmark.js samples), interquartile range, GFLOP/s with flops = 4·B·Hq·Sq·Sk·D ' +
      '(+ 2·S·E·E per projection for the multi-head block; **causal shapes are counted as the full square**, ' +
      'while their fraction of the limit counts only the visible part, about half), ' +
      'GB/s of K and V read for decoding, and each figure as a fraction of its limit: native and onnxruntime-node ' +
      'against the FMA peak at the same thread count, wasm / onnxruntime-web / tfjs against the WASM peak, decoding ' +
      'against the read bandwidth. Every output is checked against the float64 reference before it is timed; a wrong one ' +
      'is marked WRONG and not timed.',
  );
  const sum = summary(report);
  if (sum.some((r) => r.cells.some((c) => c.speedup !== undefined))) {
    out.push('');
    out.push('## Summary: speed-up against the fastest peer at the same thread count');
    out.push('');
    out.push(mdTable(summaryHeaders(report), sum.map((r) => [r.shape, ...r.cells.map(summaryCellText)])));
  }
  out.push('');
  out.push('## Limits');
  out.push('');
  out.push(
    mdTable(
      ['limit', 'value', 'how'],
      report.limits.map((l) => [l.label, l.status === 'ok' ? `${l.value!.toFixed(1)} ${l.unit}` : `${l.status}`, l.status === 'ok' ? l.detail ?? '' : l.reason ?? '']),
      ['l', 'r', 'l'],
    ),
  );
  for (const s of report.shapes) {
    const rows = report.results.filter((r) => r.shape === s.name);
    if (rows.length === 0) continue;
    const bw = rows.some((r) => r.gbs !== undefined);
    out.push('');
    out.push(`## ${s.name}`);
    out.push('');
    out.push(`${s.description} — ${workAndBytes(s.flops, s.kvBytes)}`);
    out.push('');
    out.push(
      mdTable(
        ['backend', 'median ms', 'IQR ms', 'GFLOP/s', ...(bw ? ['K+V GB/s'] : []), '% of limit', 'max abs err', 'notes'],
        rows.map((r) =>
          r.status === 'ok'
            ? [
                r.label,
                fmtMs(r.median),
                `${fmtMs(r.q1)}–${fmtMs(r.q3)}`,
                r.gflops!.toFixed(1),
                ...(bw ? [r.gbs?.toFixed(1) ?? ''] : []),
                r.limit ? `${pct(r.limit.fraction)} of ${r.limit.value.toFixed(0)} ${r.limit.unit}` : '',
                fmtErr(r),
                [
                  r.note,
                  r.pairedRead && `paired read: ${pct(r.pairedRead.fraction)} of a plain read of the same K+V (${r.pairedRead.gbs.toFixed(1)} of ${r.pairedRead.readGBs.toFixed(1)} GB/s)`,
                  r.pairedPeak && `paired peak: ${pct(r.pairedPeak.fraction)} of the FMA probe run after each call (${r.pairedPeak.gflops.toFixed(1)} of ${r.pairedPeak.peakGflops.toFixed(1)} GFLOP/s)`,
                  ...(r.pairedPeers ?? []).map((x) => `vs ${rows.find((y) => y.runner === x.peer)?.label ?? x.peer} with calls alternated: ${x.ratio.toFixed(2)}× (${x.pairs} pairs)`),
                ]
                  .filter(Boolean)
                  .join('; '),
              ]
            : [r.label, r.status === 'wrong' ? '**WRONG**' : r.status, '', '', ...(bw ? [''] : []), '', fmtErr(r), r.reason ?? ''],
        ),
        ['l', 'r', 'r', 'r', ...(bw ? ['r' as const] : []), 'r', 'r', 'l'],
      ),
    );
  }
  if (report.targets.length) {
    out.push('');
    out.push('## Targets (issues 3 and 4)');
    out.push('');
    out.push(
      mdTable(
        ['issue', 'what', 'target', 'measured', 'met'],
        report.targets.map((t) => [`#${t.issue}`, t.what, t.target, t.measured ?? `n/a — ${t.reason ?? ''}`, t.met === undefined ? '' : t.met ? 'yes' : '**no**']),
      ),
    );
  }
  if (report.memory.length) {
    out.push('');
    out.push(`## Peak memory (${report.memory[0].shape}, one call in a fresh process)`);
    out.push('');
    const sc = report.memory.find((x) => x.scoresMiB)?.scoresMiB;
    if (sc) out.push(`The full score matrix B·H·S² would take ${sc.toFixed(0)} MiB. Measured with ${report.memory.find((x) => x.method)?.method ?? 'maxRSS'}.`);
    out.push('');
    out.push(
      mdTable(
        ['backend', 'resident before the call MiB', 'peak during the call MiB', 'added by the call MiB'],
        report.memory.map((x) =>
          x.status === 'ok'
            ? [x.label, x.baselineMiB!.toFixed(0), x.peakMiB!.toFixed(0), x.deltaMiB!.toFixed(1)]
            : [x.label, x.status, '', x.reason ?? ''],
        ),
        ['l', 'r', 'r', 'r'],
      ),
    );
  }
  if (report.notes.length) {
    out.push('');
    out.push('## Notes');
    out.push('');
    for (const n of report.notes) out.push(`- ${n}`);
  }
  out.push('');
  return out.join('\n');
}

export function shapeEntries(shapes: Shape[]): BenchReport['shapes'] {
  return shapes.map((s) => ({
    name: s.name,
    description: describe(s),
    flops: flops(s),
    kvBytes: isBandwidthBound(s) ? kvBytes(s) : 0,
    causal: s.kind === 'attention' && s.causal,
  }));
}

export function writeReport(dir: string, report: BenchReport, svg: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const files = [
    [path.join(dir, 'latest.json'), JSON.stringify(report, null, 2) + '\n'],
    [path.join(dir, 'latest.md'), markdown(report)],
    [path.join(dir, 'latest.svg'), svg],
  ] as const;
  for (const [f, text] of files) fs.writeFileSync(f, text);
  return files.map(([f]) => f);
}

/** "0.805 GFLOP, K+V 128 MiB"; a shape too small for those units (step) in MFLOP and KiB */
function workAndBytes(flops: number, kvBytes: number): string {
  const work = flops >= 1e6 ? `${(flops / 1e9).toFixed(3)} GFLOP` : `${(flops / 1e6).toFixed(3)} MFLOP`;
  if (!kvBytes) return work;
  return `${work}, K+V ${kvBytes >= 2 ** 20 ? `${(kvBytes / 2 ** 20).toFixed(0)} MiB` : `${(kvBytes / 2 ** 10).toFixed(0)} KiB`}`;
}

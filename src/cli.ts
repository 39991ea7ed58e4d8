/**
 * `npx simd-attention info` — which backend loads here, with which instruction set and
 * threads, and why any faster one did not; `npx simd-attention bench [--quick ...]` runs the
 * benchmark shipped in the package.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from './index.js';

const USAGE = `usage: simd-attention <command>
  info            the backend in use, its ISA and threads, and why a faster one did not load
  bench [args]    run the benchmark (e.g. bench --quick)`;

async function info(): Promise<number> {
  const attn = await load();
  const i = attn.info();
  const rows: [string, unknown][] = [['backend', i.backend], ['isa', i.isa], ['threads', i.threads], ...Object.entries(i.details ?? {})];
  if (i.fallbackReason) rows.push(['fallback', i.fallbackReason]);
  // a backend or instruction set chosen on purpose is no fallback, but is still why a faster one
  // is not in use: named when it chose something else than the default would have
  const backend = process.env.SIMD_ATTENTION_BACKEND;
  if (backend && backend !== 'auto' && i.backend !== 'native') rows.push(['chosen by', `SIMD_ATTENTION_BACKEND=${backend}`]);
  const isa = process.env.SIMD_ATTENTION_ISA;
  const best = String(i.details?.isasAvailable ?? '').split(',')[0];
  if (isa && i.backend === 'native' && i.isa !== best) rows.push(['chosen by', `SIMD_ATTENTION_ISA=${isa}`]);
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  console.log(`simd-attention ${i.version}`);
  for (const [key, value] of rows) console.log(`${`${key}:`.padEnd(width)}${value}`);
  return 0;
}

function bench(args: string[]): number {
  const here = dirname(fileURLToPath(import.meta.url));
  const script = join(here, 'bench.mjs');
  if (!existsSync(script)) {
    console.error(`simd-attention bench: ${script} is missing from this installation`);
    return 1;
  }
  return spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' }).status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'info') return info();
  if (command === 'bench') return bench(rest);
  const help = command === undefined || command === '--help' || command === '-h';
  if (!help) console.error(`simd-attention: unknown command ${JSON.stringify(command)}`);
  console.log(USAGE);
  return help ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`simd-attention: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  },
);

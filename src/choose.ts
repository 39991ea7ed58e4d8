/**
 * Backend choice: 'auto' tries the candidates in priority order (native → wasm → js) and
 * remembers why each one failed; naming a backend loads exactly that one or throws
 * ERR_ATTN_BACKEND_UNAVAILABLE with the reason.
 */
import type { Backend, BackendName } from './backend.js';
import { attnError, attnRangeError, describe } from './errors.js';
import { Attention } from './facade.js';

export type BackendRequest = 'auto' | BackendName;

export interface Candidate<R> {
  name: BackendName;
  load(): R;
}

const NAMES: readonly BackendRequest[] = ['auto', 'native', 'wasm', 'js'];

/** The backend asked for: the `backend` option, else SIMD_ATTENTION_BACKEND, else 'auto'. */
export function requestedBackend(option: unknown, envValue: string | undefined): BackendRequest {
  const fromEnv = envValue === undefined || envValue === '' ? undefined : envValue;
  const value = option ?? fromEnv ?? 'auto';
  if (!NAMES.includes(value as BackendRequest)) {
    const source = option !== undefined ? 'load: backend' : 'SIMD_ATTENTION_BACKEND';
    throw attnRangeError('ERR_ATTN_VALUE', `${source} must be one of ${NAMES.join(', ')}, got ${describe(value)}`);
  }
  return value as BackendRequest;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function unavailable(name: BackendName, err: unknown): Error {
  const e = attnError('ERR_ATTN_BACKEND_UNAVAILABLE', `the ${name} backend is not available here: ${message(err)}`);
  (e as Error & { cause?: unknown }).cause = err;
  return e;
}

/**
 * Walks the candidates in order; works for sync loaders (returns an Attention) and async ones
 * (returns a Promise), so load() and loadSync() share one policy.
 */
function chooseFrom<R extends Backend | Promise<Backend>>(
  request: BackendRequest,
  candidates: Candidate<R>[],
  index = 0,
  failures: string[] = [],
): Attention | Promise<Attention> {
  const c = candidates.slice(index).find((x) => request === 'auto' || x.name === request);
  if (!c) {
    throw attnError('ERR_ATTN_BACKEND_UNAVAILABLE', `no backend could be loaded (${request}): ${failures.join('; ') || 'not offered here'}`);
  }
  const next = candidates.indexOf(c) + 1;
  const accept = (backend: Backend) => new Attention(backend, failures.length > 0 ? failures.join('; ') : undefined);
  const reject = (err: unknown): Attention | Promise<Attention> => {
    if (request !== 'auto') throw unavailable(c.name, err);
    const why = message(err);
    failures.push(why.startsWith(`${c.name}: `) ? why : `${c.name}: ${why}`); // not "wasm: wasm: ..."
    return chooseFrom(request, candidates, next, failures);
  };
  let loaded: R;
  try {
    loaded = c.load();
  } catch (err) {
    return reject(err);
  }
  return loaded instanceof Promise ? loaded.then(accept, reject) : accept(loaded as Backend);
}

export function chooseSync(request: BackendRequest, candidates: Candidate<Backend>[]): Attention {
  return chooseFrom(request, candidates) as Attention;
}

export async function choose(request: BackendRequest, candidates: Candidate<Backend | Promise<Backend>>[]): Promise<Attention> {
  return chooseFrom(request, candidates);
}

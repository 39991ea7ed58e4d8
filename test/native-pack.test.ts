/**
 * native-pack.ts writes each header slot where its name list says (the lists the loader compares
 * with the binding's): every field gets a distinct value and each slot must hold its field's.
 * No addon needed.
 */
import assert from 'node:assert/strict';
import type { AttentionArgs, MatmulArgs, MultiHeadForwardArgs } from '../src/backend.js';
import { HEADER_SLOTS, packAttention, packForward, packMatmul } from '../src/backends/native-pack.js';

/** slot i of the header must hold want(name of slot i) */
function checkSlots(header: unknown, names: readonly string[], want: Record<string, number>): void {
  assert.ok(header instanceof Float64Array);
  assert.equal(header.length, names.length);
  assert.deepEqual(Object.keys(want).sort(), [...names].sort(), 'every slot has a field');
  names.forEach((name, i) => assert.equal(header[i], want[name], `slot ${i} (${name})`));
}

describe('native-pack: header slots in the order of their names', () => {
  const f = new Float32Array(1);
  const mask = { kind: 'boolean', data: new Uint8Array(1), strideB: 31, strideH: 32, strideQ: 33, strideK: 34 } as const;

  it('attention', () => {
    const args = {
      q: f, k: f, v: f, out: f, batch: 1, numHeads: 2, numKvHeads: 3, seqQ: 4, seqK: 5, headDim: 6, headDimV: 7,
      qStrides: { b: 11, h: 12, s: 13 }, kStrides: { b: 14, h: 15, s: 16 }, vStrides: { b: 17, h: 18, s: 19 },
      oStrides: { b: 20, h: 21, s: 22 }, scale: 0.5, causal: true, mask, threads: 9,
    } as unknown as AttentionArgs; // prettier-ignore
    const packed = packAttention(args);
    checkSlots(packed[0], HEADER_SLOTS.attention, {
      'args.batch': 1, 'args.numHeads': 2, 'args.numKvHeads': 3, 'args.seqQ': 4, 'args.seqK': 5, 'args.headDim': 6, 'args.headDimV': 7,
      'qStrides.b': 11, 'qStrides.h': 12, 'qStrides.s': 13, 'kStrides.b': 14, 'kStrides.h': 15, 'kStrides.s': 16,
      'vStrides.b': 17, 'vStrides.h': 18, 'vStrides.s': 19, 'oStrides.b': 20, 'oStrides.h': 21, 'oStrides.s': 22,
      'args.scale': 0.5, 'args.causal': 1, 'mask.kind': 2, 'mask.strideB': 31, 'mask.strideH': 32, 'mask.strideQ': 33,
      'mask.strideK': 34, 'args.threads': 9,
    }); // prettier-ignore
    assert.equal(packed.length, 8);
    assert.equal(packed[6], mask.data);
  });

  it('forward', () => {
    const x = new Float32Array(2);
    const cache = { k: f, v: f, maxLength: 40, length: 41 };
    const args = { x, kv: x, out: f, batch: 1, seqQ: 2, seqKv: 3, causal: true, cache, mask } as unknown as MultiHeadForwardArgs;
    const packed = packForward(args);
    checkSlots(packed[0], HEADER_SLOTS.forward, {
      'args.batch': 1, 'args.seqQ': 2, 'args.seqKv': 3, 'args.selfAttention': 1, 'args.causal': 1, 'args.cache': 1,
      'cache.maxLength': 40, 'cache.length': 41, 'mask.kind': 2, 'mask.strideB': 31, 'mask.strideH': 32,
      'mask.strideQ': 33, 'mask.strideK': 34,
    }); // prettier-ignore
    assert.equal(packed.length, 8);
  });

  it('matmul', () => {
    const args = { a: f, b: f, out: f, batch: 1, m: 2, n: 3, k: 4, strideA: 5, strideB: 6, transposeB: true, threads: 7 } as unknown as MatmulArgs;
    const packed = packMatmul(args);
    checkSlots(packed[0], HEADER_SLOTS.matmul, {
      'args.batch': 1, 'args.m': 2, 'args.n': 3, 'args.k': 4, 'args.strideA': 5, 'args.strideB': 6, 'args.transposeB': 1, 'args.threads': 7,
    }); // prettier-ignore
    assert.equal(packed.length, 5);
  });
});

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { StatsFormatError } from '../errors.js';
import { defaultTracePath } from '../trace/default.js';
import { readTrace } from '../trace/read.js';
import { subsetTrace } from '../trace/split.js';
import type { Trace } from '../trace/types.js';
import { emptyStats, mergeStats, scaleStats, StatsAccumulator, statsFromTrace } from './activation.js';
import type { ActivationStats } from './types.js';

/** Builds a trace from tokens given as [layer][rank] expert ids, all in request "t/0". */
function traceOf(tokens: readonly (readonly (readonly number[])[])[], experts: number): Trace {
  const layers = tokens[0]!.length;
  const topK = tokens[0]![0]!.length;
  return {
    meta: { name: 'toy', model: 'toy', layers, experts, topK },
    tokens: tokens.length,
    selections: Uint16Array.from(tokens.flat(2)),
    requestIds: ['t/0'],
    requestOfToken: new Uint32Array(tokens.length),
    positions: Uint32Array.from(tokens, (_, index) => index),
  };
}

/** Three tokens, 2 layers, 4 experts, top-3. */
const TINY = traceOf(
  [
    [
      [0, 1, 2],
      [3, 2, 1],
    ],
    [
      [1, 2, 3],
      [0, 1, 2],
    ],
    [
      [2, 0, 3],
      [3, 1, 0],
    ],
  ],
  4,
);

/** Builds a trace of `count` tokens with one layer and top-1, where token i selects expert i. */
function numberedTrace(count: number): Trace {
  return traceOf(
    Array.from({ length: count }, (_, token) => [[token]]),
    count,
  );
}

/** Compares bytes, because vitest's toEqual is too slow on arrays of millions of elements. */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function sampledTokenIds(stats: ActivationStats): number[] {
  return Array.from(stats.sample.selections);
}

describe('statsFromTrace on a tiny trace', () => {
  const stats = statsFromTrace(TINY);

  test('counts loads per layer', () => {
    expect(Array.from(stats.perLayer[0]!.loads)).toEqual([2, 2, 3, 2]);
    expect(Array.from(stats.perLayer[1]!.loads)).toEqual([2, 3, 2, 2]);
  });

  test('counts co-activation symmetrically with a zero diagonal', () => {
    expect(Array.from(stats.perLayer[0]!.coactivation)).toEqual([
      0, 1, 2, 1,
      1, 0, 2, 1,
      2, 2, 0, 2,
      1, 1, 2, 0,
    ]);
    expect(Array.from(stats.perLayer[1]!.coactivation)).toEqual([
      0, 2, 1, 1,
      2, 0, 2, 2,
      1, 2, 0, 1,
      1, 2, 1, 0,
    ]);
  });

  test('keeps every token in the sample', () => {
    expect(stats.tokens).toBe(3);
    expect(stats.perLayer.map((layer) => layer.tokens)).toEqual([3, 3]);
    expect(stats).toMatchObject({ experts: 4, layers: 2, topK: 3, window: null });
    expect(stats.sample.capacity).toBe(4096);
    expect(stats.sample.seen).toBe(3);
    expect(stats.sample.tokens).toBe(3);
    expect(Array.from(stats.sample.selections)).toEqual(Array.from(TINY.selections));
  });

  test('reports the given window', () => {
    const windowed = statsFromTrace(TINY, { window: { startMs: 1000, endMs: 2000 } });

    expect(windowed.window).toEqual({ startMs: 1000, endMs: 2000 });
  });
});

describe('StatsAccumulator', () => {
  test('snapshot is not changed by later tokens', () => {
    const accumulator = new StatsAccumulator({ experts: 4, layers: 2, topK: 3 });
    accumulator.add(TINY.selections, 0);
    const first = accumulator.snapshot();

    accumulator.add(TINY.selections, 6);

    expect(first.tokens).toBe(1);
    expect(Array.from(first.perLayer[0]!.loads)).toEqual([1, 1, 1, 0]);
    expect(first.sample.tokens).toBe(1);
    expect(accumulator.snapshot().tokens).toBe(2);
  });

  test('snapshot takes a window that overrides the default', () => {
    const accumulator = new StatsAccumulator(
      { experts: 4, layers: 2, topK: 3 },
      { window: { startMs: 1, endMs: 2 } },
    );

    expect(accumulator.snapshot().window).toEqual({ startMs: 1, endMs: 2 });
    expect(accumulator.snapshot({ startMs: 5, endMs: 9 }).window).toEqual({ startMs: 5, endMs: 9 });
  });

  test.each([
    { case: 'an id at the bound', token: [0, 1, 2, 3, 2, 4], fragment: 'token layer 1 rank 2: expert id must be an integer in [0, 4), got 4' },
    { case: 'a negative id', token: [-1, 1, 2, 3, 2, 1], fragment: 'token layer 0 rank 0: expert id must be an integer in [0, 4), got -1' },
    { case: 'a fractional id', token: [0, 1.5, 2, 3, 2, 1], fragment: 'got 1.5' },
    { case: 'a repeated id', token: [0, 1, 2, 3, 3, 1], fragment: 'token layer 1: duplicate expert id 3' },
    { case: 'too few ids', token: [0, 1, 2, 3, 2], fragment: 'a token needs 6 expert ids (2 layers x top-3) from offset 0, but the selections hold 5' },
  ] as const)('add rejects $case and counts nothing', ({ token, fragment }) => {
    const accumulator = new StatsAccumulator({ experts: 4, layers: 2, topK: 3 });

    expect(() => accumulator.add(token)).toThrow(StatsFormatError);
    expect(() => accumulator.add(token)).toThrow(fragment);
    const stats = accumulator.snapshot();
    expect(stats.tokens).toBe(0);
    expect(Array.from(stats.perLayer[0]!.loads)).toEqual([0, 0, 0, 0]);
    expect(stats.sample.tokens).toBe(0);
  });

  test('capacity 0 keeps no sample', () => {
    const stats = statsFromTrace(TINY, { sampleCapacity: 0 });

    expect(stats.sample).toMatchObject({ capacity: 0, seen: 3, tokens: 0 });
    expect(stats.sample.selections.length).toBe(0);
  });
});

describe('reservoir sample', () => {
  test('includes every token with probability capacity / tokens', () => {
    const trace = numberedTrace(20);
    const inclusions = new Array<number>(20).fill(0);
    const trials = 2000;

    for (let seed = 0; seed < trials; seed += 1) {
      const stats = statsFromTrace(trace, { sampleCapacity: 5, seed });
      expect(stats.sample.tokens).toBe(5);
      for (const token of sampledTokenIds(stats)) {
        inclusions[token]! += 1;
      }
    }

    // Expected 500 per token (2000 x 5 / 20), with a standard deviation of about 19.
    for (const count of inclusions) {
      expect(count).toBeGreaterThan(420);
      expect(count).toBeLessThan(580);
    }
  });

  test('sample depends only on the seed', () => {
    const trace = numberedTrace(200);

    const first = statsFromTrace(trace, { sampleCapacity: 16, seed: 7 });
    const again = statsFromTrace(trace, { sampleCapacity: 16, seed: 7 });
    const other = statsFromTrace(trace, { sampleCapacity: 16, seed: 8 });

    expect(sampledTokenIds(again)).toEqual(sampledTokenIds(first));
    expect(sampledTokenIds(other)).not.toEqual(sampledTokenIds(first));
    expect(new Set(sampledTokenIds(first)).size).toBe(16);
  });
});

describe('emptyStats', () => {
  test('has zero counts and an empty sample', () => {
    const stats = emptyStats({ experts: 3, layers: 2, topK: 2 }, 8);

    expect(stats).toMatchObject({ experts: 3, layers: 2, topK: 2, tokens: 0, window: null });
    expect(stats.perLayer.map((layer) => layer.tokens)).toEqual([0, 0]);
    expect(Array.from(stats.perLayer[1]!.loads)).toEqual([0, 0, 0]);
    expect(Array.from(stats.perLayer[1]!.coactivation)).toEqual(new Array(9).fill(0));
    expect(stats.sample).toMatchObject({ capacity: 8, seen: 0, tokens: 0 });
  });
});

describe('mergeStats', () => {
  test('adds counts and spans the windows', () => {
    const first = statsFromTrace(subsetTrace(TINY, [0]), { window: { startMs: 10, endMs: 20 } });
    const rest = statsFromTrace(subsetTrace(TINY, [1, 2]), { window: { startMs: 15, endMs: 40 } });
    const whole = statsFromTrace(TINY);

    const merged = mergeStats(first, rest, { seed: 1 });

    expect(merged.tokens).toBe(3);
    expect(merged.window).toEqual({ startMs: 10, endMs: 40 });
    for (const layer of [0, 1]) {
      expect(merged.perLayer[layer]!.tokens).toBe(3);
      expect(Array.from(merged.perLayer[layer]!.loads)).toEqual(Array.from(whole.perLayer[layer]!.loads));
      expect(Array.from(merged.perLayer[layer]!.coactivation)).toEqual(
        Array.from(whole.perLayer[layer]!.coactivation),
      );
    }
    expect(merged.sample).toMatchObject({ capacity: 4096, seen: 3, tokens: 3 });
  });

  test('with empty stats keeps everything', () => {
    const stats = statsFromTrace(numberedTrace(30), { sampleCapacity: 10, seed: 3 });

    const merged = mergeStats(emptyStats({ experts: 30, layers: 1, topK: 1 }, 4096), stats, { seed: 5 });

    expect(merged.tokens).toBe(30);
    expect(merged.window).toBeNull();
    expect(Array.from(merged.perLayer[0]!.loads)).toEqual(Array.from(stats.perLayer[0]!.loads));
    expect(merged.sample).toMatchObject({ capacity: 10, seen: 30, tokens: 10 });
    expect(sampledTokenIds(merged).sort((x, y) => x - y)).toEqual(sampledTokenIds(stats).sort((x, y) => x - y));
  });

  test('keeps the merged sample uniform over both sides', () => {
    const trace = numberedTrace(100);
    const large = subsetTrace(trace, Array.from({ length: 90 }, (_, i) => i));
    const small = subsetTrace(trace, Array.from({ length: 10 }, (_, i) => 90 + i));
    const inclusions = new Array<number>(100).fill(0);
    let fromSmall = 0;
    const trials = 2000;

    for (let seed = 0; seed < trials; seed += 1) {
      const merged = mergeStats(
        statsFromTrace(large, { sampleCapacity: 10, seed }),
        statsFromTrace(small, { sampleCapacity: 10, seed: seed + trials }),
        { seed },
      );
      expect(merged.sample).toMatchObject({ capacity: 10, seen: 100, tokens: 10 });
      for (const token of sampledTokenIds(merged)) {
        inclusions[token]! += 1;
        fromSmall += token >= 90 ? 1 : 0;
      }
    }

    // Expected 200 per token (2000 x 10 / 100), with a standard deviation of about 13.4.
    for (const count of inclusions) {
      expect(count).toBeGreaterThan(140);
      expect(count).toBeLessThan(260);
    }
    // The 10-token side supplies a tenth of the 20,000 drawn tokens.
    expect(fromSmall).toBeGreaterThan(1850);
    expect(fromSmall).toBeLessThan(2150);
  });

  test('is deterministic under the seed', () => {
    const trace = numberedTrace(50);
    const a = statsFromTrace(subsetTrace(trace, Array.from({ length: 30 }, (_, i) => i)), { sampleCapacity: 8 });
    const b = statsFromTrace(subsetTrace(trace, Array.from({ length: 20 }, (_, i) => 30 + i)), { sampleCapacity: 8 });

    expect(sampledTokenIds(mergeStats(a, b, { seed: 4 }))).toEqual(sampledTokenIds(mergeStats(a, b, { seed: 4 })));
    expect(sampledTokenIds(mergeStats(a, b, { seed: 4 }))).not.toEqual(
      sampledTokenIds(mergeStats(a, b, { seed: 5 })),
    );
  });

  test('takes the smaller sample capacity', () => {
    const trace = numberedTrace(40);
    const a = statsFromTrace(subsetTrace(trace, Array.from({ length: 20 }, (_, i) => i)), { sampleCapacity: 4 });
    const b = statsFromTrace(subsetTrace(trace, Array.from({ length: 20 }, (_, i) => 20 + i)), { sampleCapacity: 16 });

    expect(mergeStats(a, b, { seed: 0 }).sample).toMatchObject({ capacity: 4, seen: 40, tokens: 4 });
  });

  test.each([
    { field: 'experts', other: { experts: 5, layers: 2, topK: 3 }, message: 'different experts: 4 and 5' },
    { field: 'layers', other: { experts: 4, layers: 3, topK: 3 }, message: 'different layers: 2 and 3' },
    { field: 'topK', other: { experts: 4, layers: 2, topK: 2 }, message: 'different topK: 3 and 2' },
  ] as const)('rejects a different $field', ({ other, message }) => {
    const merge = (): unknown => mergeStats(statsFromTrace(TINY), emptyStats(other), { seed: 0 });

    expect(merge).toThrow(StatsFormatError);
    expect(merge).toThrow(`cannot merge activation statistics with ${message}`);
  });
});

describe('scaleStats', () => {
  test('scales counts and sample weight', () => {
    const stats = statsFromTrace(TINY, { window: { startMs: 0, endMs: 5 } });

    const scaled = scaleStats(stats, 0.5);

    expect(scaled.tokens).toBe(1.5);
    expect(scaled.perLayer[0]!.tokens).toBe(1.5);
    expect(Array.from(scaled.perLayer[0]!.loads)).toEqual([1, 1, 1.5, 1]);
    expect(Array.from(scaled.perLayer[0]!.coactivation.subarray(0, 4))).toEqual([0, 0.5, 1, 0.5]);
    expect(scaled.sample).toMatchObject({ capacity: 4096, seen: 1.5, tokens: 3 });
    expect(Array.from(scaled.sample.selections)).toEqual(Array.from(stats.sample.selections));
    expect(scaled.window).toEqual({ startMs: 0, endMs: 5 });
    expect(stats.tokens).toBe(3);
    expect(Array.from(stats.perLayer[0]!.loads)).toEqual([2, 2, 3, 2]);
  });

  test.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects factor %d', (factor) => {
    expect(() => scaleStats(statsFromTrace(TINY), factor)).toThrow(RangeError);
  });
});

interface ReferenceStats {
  readonly tokens_per_layer: number[];
  readonly layer_expert_counts: number[][];
  readonly coactivation_within_layer: number[][][];
}

describe('statsFromTrace on the shipped trace', () => {
  let trace: Trace;
  let stats: ActivationStats;
  let reference: ReferenceStats;

  beforeAll(async () => {
    const path = defaultTracePath();
    trace = await readTrace(path);
    stats = statsFromTrace(trace, { seed: 11 });
    reference = JSON.parse(
      readFileSync(join(dirname(path), 'deepseek_v2_lite_esft.stats.json'), 'utf8'),
    ) as ReferenceStats;
  });

  test('matches the reference aggregates', () => {
    expect(stats.tokens).toBe(33_279);
    expect(stats.perLayer.length).toBe(26);
    for (let layer = 0; layer < 26; layer += 1) {
      const mine = stats.perLayer[layer]!;
      expect(mine.tokens).toBe(reference.tokens_per_layer[layer]);
      expect(Array.from(mine.loads)).toEqual(reference.layer_expert_counts[layer]);
      expect(Array.from(mine.coactivation)).toEqual(reference.coactivation_within_layer[layer]!.flat());
    }
  });

  test('merged halves equal the whole', () => {
    const half = Math.floor(trace.tokens / 2);
    const indices = Array.from({ length: trace.tokens }, (_, i) => i);
    const first = statsFromTrace(subsetTrace(trace, indices.slice(0, half)), { seed: 1 });
    const second = statsFromTrace(subsetTrace(trace, indices.slice(half)), { seed: 2 });

    const merged = mergeStats(first, second, { seed: 3 });

    expect(merged.tokens).toBe(stats.tokens);
    for (let layer = 0; layer < 26; layer += 1) {
      expect(merged.perLayer[layer]!.tokens).toBe(stats.perLayer[layer]!.tokens);
      expect(Array.from(merged.perLayer[layer]!.loads)).toEqual(Array.from(stats.perLayer[layer]!.loads));
      expect(sameBytes(merged.perLayer[layer]!.coactivation, stats.perLayer[layer]!.coactivation)).toBe(true);
    }
    expect(merged.sample).toMatchObject({ capacity: 4096, seen: 33_279, tokens: 4096 });
  });

  test('samples 4096 real tokens of the trace', () => {
    const stride = 26 * 6;
    const traceTokens = new Set<string>();
    for (let token = 0; token < trace.tokens; token += 1) {
      traceTokens.add(trace.selections.subarray(token * stride, (token + 1) * stride).join(','));
    }

    expect(stats.sample).toMatchObject({ capacity: 4096, seen: 33_279, tokens: 4096 });
    expect(stats.sample.selections.length).toBe(4096 * stride);
    for (let token = 0; token < 4096; token += 1) {
      const selections = stats.sample.selections.subarray(token * stride, (token + 1) * stride).join(',');
      expect(traceTokens.has(selections)).toBe(true);
    }
  });

  test('same seed gives the same sample', () => {
    const again = statsFromTrace(trace, { seed: 11 });
    const other = statsFromTrace(trace, { seed: 12 });

    expect(sameBytes(again.sample.selections, stats.sample.selections)).toBe(true);
    expect(sameBytes(other.sample.selections, stats.sample.selections)).toBe(false);
  });

  test('large capacity keeps every token', () => {
    const all = statsFromTrace(trace, { sampleCapacity: 40_000 });

    expect(all.sample).toMatchObject({ capacity: 40_000, seen: 33_279, tokens: 33_279 });
    expect(all.sample.selections.length).toBe(trace.selections.length);
    expect(sameBytes(all.sample.selections, trace.selections)).toBe(true);
  });
});

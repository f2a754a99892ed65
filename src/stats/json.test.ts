import { beforeAll, describe, expect, test } from 'vitest';
import { FormatVersionError, StatsFormatError } from '../errors.js';
import { defaultTracePath } from '../trace/default.js';
import { readTrace } from '../trace/read.js';
import type { Trace } from '../trace/types.js';
import { scaleStats, statsFromTrace } from './activation.js';
import { parseStats, statsToJson } from './json.js';
import type { ActivationStats } from './types.js';

/** Three tokens, 2 layers, 4 experts, top-3, with the sample capacity at 3. */
const TINY_TRACE: Trace = {
  meta: { name: 'toy', model: 'toy', layers: 2, experts: 4, topK: 3 },
  tokens: 3,
  selections: Uint16Array.from([0, 1, 2, 3, 2, 1, 1, 2, 3, 0, 1, 2, 2, 0, 3, 3, 1, 0]),
  requestIds: ['t/0'],
  requestOfToken: new Uint32Array(3),
  positions: Uint32Array.from([0, 1, 2]),
};

const TINY = statsFromTrace(TINY_TRACE, { sampleCapacity: 3, window: { startMs: 1_000, endMs: 61_000 } });

/** Returns the tiny document after a JSON round trip, as a router would send it. */
function tinyDocument(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(statsToJson(TINY))) as Record<string, unknown>;
}

function expectSameStats(actual: ActivationStats, expected: ActivationStats): void {
  expect(actual).toMatchObject({
    experts: expected.experts,
    layers: expected.layers,
    topK: expected.topK,
    tokens: expected.tokens,
    window: expected.window,
  });
  expect(actual.perLayer.length).toBe(expected.perLayer.length);
  actual.perLayer.forEach((layer, index) => {
    const other = expected.perLayer[index]!;
    expect(layer.tokens).toBe(other.tokens);
    expect(Array.from(layer.loads)).toEqual(Array.from(other.loads));
    expect(Array.from(layer.coactivation)).toEqual(Array.from(other.coactivation));
  });
  expect(actual.sample.capacity).toBe(expected.sample.capacity);
  expect(actual.sample.seen).toBe(expected.sample.seen);
  expect(actual.sample.tokens).toBe(expected.sample.tokens);
  expect(Buffer.from(actual.sample.selections.buffer).equals(Buffer.from(expected.sample.selections.buffer))).toBe(
    true,
  );
}

describe('statsToJson', () => {
  test('writes sparse pairs with i < j and nested sample tokens', () => {
    const document = statsToJson(TINY);

    expect(document).toEqual({
      apiVersion: 'grace-moe.io/v1alpha1',
      kind: 'ActivationStats',
      experts: 4,
      layers: 2,
      topK: 3,
      tokens: 3,
      window: { startMs: 1_000, endMs: 61_000 },
      perLayer: [
        {
          tokens: 3,
          loads: [2, 2, 3, 2],
          coactivation: [
            [0, 1, 1],
            [0, 2, 2],
            [0, 3, 1],
            [1, 2, 2],
            [1, 3, 1],
            [2, 3, 2],
          ],
        },
        {
          tokens: 3,
          loads: [2, 3, 2, 2],
          coactivation: [
            [0, 1, 2],
            [0, 2, 1],
            [0, 3, 1],
            [1, 2, 2],
            [1, 3, 2],
            [2, 3, 1],
          ],
        },
      ],
      sample: {
        capacity: 3,
        seen: 3,
        tokens: [
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
      },
    });
  });

  test('omits pairs that never co-occur', () => {
    const oneToken = statsFromTrace({ ...TINY_TRACE, tokens: 1, selections: TINY_TRACE.selections.slice(0, 6) });

    expect(statsToJson(oneToken).perLayer[0]!.coactivation).toEqual([
      [0, 1, 1],
      [0, 2, 1],
      [1, 2, 1],
    ]);
  });
});

describe('parseStats round trip', () => {
  test('restores the tiny statistics', () => {
    expectSameStats(parseStats(tinyDocument()), TINY);
  });

  test('restores scaled statistics with fractional counts', () => {
    const scaled = scaleStats(TINY, 0.25);

    expectSameStats(parseStats(JSON.parse(JSON.stringify(statsToJson(scaled)))), scaled);
  });

  test('restores a null window', () => {
    const offline = statsFromTrace(TINY_TRACE);

    expect(parseStats(JSON.parse(JSON.stringify(statsToJson(offline)))).window).toBeNull();
  });

  describe('on the shipped trace', () => {
    let stats: ActivationStats;

    beforeAll(async () => {
      stats = statsFromTrace(await readTrace(defaultTracePath()), { seed: 3 });
    });

    test('restores every count and the 4096-token sample', () => {
      const text = JSON.stringify(statsToJson(stats));

      expectSameStats(parseStats(JSON.parse(text)), stats);
    });
  });
});

/** Edits a parsed document in place. The `any` type lets each row reach the nested field it breaks. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Mutation = (document: Record<string, any>) => void;

describe('parseStats rejects invalid documents', () => {
  test.each([
    { case: 'a wrong apiVersion', mutate: (d) => (d.apiVersion = 'grace-moe.io/v0'), fragment: 'apiVersion must be "grace-moe.io/v1alpha1", got "grace-moe.io/v0"' },
    { case: 'a missing apiVersion', mutate: (d) => delete d.apiVersion, fragment: 'apiVersion must be "grace-moe.io/v1alpha1", got nothing (field missing)' },
    { case: 'a wrong kind', mutate: (d) => (d.kind = 'PlacementPlan'), fragment: 'kind must be "ActivationStats", got "PlacementPlan"' },
  ] as const satisfies readonly { case: string; mutate: Mutation; fragment: string }[])(
    'rejects $case with FormatVersionError',
    ({ mutate, fragment }) => {
      const document = tinyDocument();
      mutate(document);

      expect(() => parseStats(document)).toThrow(FormatVersionError);
      expect(() => parseStats(document)).toThrow(fragment);
    },
  );

  test.each([
    { case: 'missing experts', mutate: (d) => delete d.experts, fragment: 'experts must be an integer from 1 to 1024, got nothing (field missing)' },
    { case: 'too many experts', mutate: (d) => (d.experts = 5000), fragment: 'experts must be an integer from 1 to 1024, got 5000' },
    { case: 'fractional layers', mutate: (d) => (d.layers = 2.5), fragment: 'layers must be an integer from 1 to' },
    { case: 'topK above experts', mutate: (d) => (d.topK = 5), fragment: 'topK must be an integer from 1 to 4, got 5' },
    { case: 'NaN tokens', mutate: (d) => (d.tokens = Number.NaN), fragment: 'tokens must be a finite number >= 0, got NaN' },
    { case: 'infinite tokens', mutate: (d) => (d.tokens = Number.POSITIVE_INFINITY), fragment: 'tokens must be a finite number >= 0, got Infinity' },
    { case: 'negative tokens', mutate: (d) => (d.tokens = -3), fragment: 'tokens must be a finite number >= 0, got -3' },
    { case: 'a missing window', mutate: (d) => delete d.window, fragment: 'window must be null or {"startMs": number, "endMs": number}, got nothing (field missing)' },
    { case: 'a string window start', mutate: (d) => (d.window.startMs = '0'), fragment: 'window.startMs must be a finite number, got "0"' },
    { case: 'a window ending before it starts', mutate: (d) => (d.window.endMs = 500), fragment: 'window.endMs must be a time no earlier than window.startMs (1000), got 500' },
    { case: 'a missing perLayer', mutate: (d) => delete d.perLayer, fragment: 'perLayer must be an array (2 entries, one per layer), got nothing (field missing)' },
    { case: 'too few layers', mutate: (d) => d.perLayer.pop(), fragment: 'perLayer must be an array of 2 entries, one per layer, got [{' },
    { case: 'a null layer', mutate: (d) => (d.perLayer[1] = null), fragment: 'perLayer[1] must be a JSON object, got null' },
    { case: 'missing layer tokens', mutate: (d) => delete d.perLayer[0].tokens, fragment: 'perLayer[0].tokens must be a finite number >= 0, got nothing (field missing)' },
    { case: 'loads of the wrong length', mutate: (d) => d.perLayer[1].loads.push(0), fragment: 'perLayer[1].loads must be an array of 4 counts, one per expert, got [2,3,2,2,0]' },
    { case: 'a negative load', mutate: (d) => (d.perLayer[1].loads[3] = -1), fragment: 'perLayer[1].loads[3] must be a finite number >= 0, got -1' },
    { case: 'a NaN load', mutate: (d) => (d.perLayer[0].loads[2] = Number.NaN), fragment: 'perLayer[0].loads[2] must be a finite number >= 0, got NaN' },
    { case: 'a load above the layer tokens', mutate: (d) => (d.perLayer[0].loads[0] = 4), fragment: 'perLayer[0].loads[0] must be a count no larger than perLayer[0].tokens (3), got 4' },
    { case: 'a pair with i equal to j', mutate: (d) => (d.perLayer[0].coactivation[0] = [2, 2, 1]), fragment: 'perLayer[0].coactivation[0] must be a pair with i < j (each pair is listed once, diagonal excluded), got [2,2,1]' },
    { case: 'a pair with i above j', mutate: (d) => (d.perLayer[1].coactivation[5] = [3, 2, 1]), fragment: 'perLayer[1].coactivation[5] must be a pair with i < j' },
    { case: 'a pair id out of range', mutate: (d) => (d.perLayer[0].coactivation[2] = [0, 4, 1]), fragment: 'perLayer[0].coactivation[2][1] must be an integer from 0 to 3, got 4' },
    { case: 'a fractional pair id', mutate: (d) => (d.perLayer[0].coactivation[2] = [0.5, 3, 1]), fragment: 'perLayer[0].coactivation[2][0] must be an integer from 0 to 3, got 0.5' },
    { case: 'a pair of two numbers', mutate: (d) => (d.perLayer[0].coactivation[1] = [0, 2]), fragment: 'perLayer[0].coactivation[1] must be [i, j, count] with expert ids i < j, got [0,2]' },
    { case: 'a negative pair count', mutate: (d) => (d.perLayer[0].coactivation[1] = [0, 2, -2]), fragment: 'perLayer[0].coactivation[1][2] must be a finite number >= 0, got -2' },
    { case: 'a pair count above the loads', mutate: (d) => (d.perLayer[0].coactivation[1] = [0, 2, 3]), fragment: 'perLayer[0].coactivation[1][2] must be a count no larger than the loads of experts 0 and 2, got 3' },
    { case: 'a pair listed twice', mutate: (d) => d.perLayer[0].coactivation.push([1, 3, 1]), fragment: 'perLayer[0].coactivation[6] must be a pair listed once, but (1, 3) appears earlier, got [1,3,1]' },
    { case: 'a missing sample', mutate: (d) => delete d.sample, fragment: 'sample must be a JSON object, got nothing (field missing)' },
    { case: 'a fractional capacity', mutate: (d) => (d.sample.capacity = 3.5), fragment: 'sample.capacity must be an integer from 0 to 9007199254740991, got 3.5' },
    { case: 'a negative seen count', mutate: (d) => (d.sample.seen = -1), fragment: 'sample.seen must be a finite number >= 0, got -1' },
    { case: 'more sampled tokens than the capacity', mutate: (d) => (d.sample.capacity = 2), fragment: 'sample.tokens must hold at most sample.capacity (2) tokens, got 3' },
    { case: 'a sampled token with one layer', mutate: (d) => d.sample.tokens[0].pop(), fragment: 'sample.tokens[0] must be an array of 2 top-k lists, one per layer, got [[0,1,2]]' },
    { case: 'a sampled top-k list too short', mutate: (d) => d.sample.tokens[1][0].pop(), fragment: 'sample.tokens[1][0] must be an array of 3 distinct expert ids, got [1,2]' },
    { case: 'a sampled list that is not an array', mutate: (d) => (d.sample.tokens[1][1] = 7), fragment: 'sample.tokens[1][1] must be an array (3 distinct expert ids), got 7' },
    { case: 'a sampled id out of range', mutate: (d) => (d.sample.tokens[2][1][0] = 9), fragment: 'sample.tokens[2][1][0] must be an integer from 0 to 3, got 9' },
    { case: 'a repeated sampled id', mutate: (d) => (d.sample.tokens[2][1][2] = 3), fragment: 'sample.tokens[2][1] must be distinct expert ids, but 3 appears twice, got [3,1,3]' },
  ] as const satisfies readonly { case: string; mutate: Mutation; fragment: string }[])(
    'rejects $case',
    ({ mutate, fragment }) => {
      const document = tinyDocument();
      mutate(document);

      expect(() => parseStats(document)).toThrow(StatsFormatError);
      expect(() => parseStats(document)).toThrow(`invalid activation statistics: ${fragment}`);
    },
  );

  test.each([
    ['an array', []],
    ['null', null],
    ['a string', 'stats'],
  ] as const)('rejects %s as the document', (_, value) => {
    expect(() => parseStats(value)).toThrow(StatsFormatError);
    expect(() => parseStats(value)).toThrow('invalid activation statistics: (root) must be a JSON object');
  });

  test('clips a long value and gives its length', () => {
    const document = tinyDocument();
    document['perLayer'] = [...(document['perLayer'] as unknown[]), ...new Array(40).fill({ tokens: 0 })];

    expect(() => parseStats(document)).toThrow(/perLayer must be an array of 2 entries, one per layer, got .*\.\.\. \(42 entries\)$/);
  });
});

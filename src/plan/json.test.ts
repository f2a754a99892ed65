import { createHash } from 'node:crypto';

import { describe, expect, test } from 'vitest';

import { FormatVersionError, PlanValidationError } from '../errors.js';
import { planFromSlots } from './build.js';
import { digestOf, parsePlan, planToJson } from './json.js';
import type { Plan } from './types.js';

function samplePlan(withPredictions = true): Plan {
  return planFromSlots({
    strategy: 'sample',
    topology: { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 },
    model: { layers: 1, experts: 3, topK: 1 },
    slots: [[[0, 2], [1, 2]]],
    weights: [[[1, 0.25], [1, 0.75]]],
    generation: 3,
    ...(withPredictions
      ? { predicted: { moeLayerTimeMs: 2, crossNodeCopiesPerToken: 0, localHitRatio: 0.5, balancedness: 1.1 } }
      : {}),
    inputDigest: 'f'.repeat(64),
  });
}

/** Returns the sample plan as a decoded JSON document that a test may change freely. */
function sampleDocument(): Record<string, unknown> & { layers: { slots: unknown[][] }[] } {
  return JSON.parse(JSON.stringify(planToJson(samplePlan()))) as Record<string, unknown> & {
    layers: { slots: unknown[][] }[];
  };
}

function thrownBy(action: () => void): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error('expected the action to throw');
}

describe('parsePlan', () => {
  test('round-trips a plan through JSON text', () => {
    const plan = samplePlan();

    const parsed = parsePlan(JSON.parse(JSON.stringify(planToJson(plan))));

    expect(parsed).toEqual(plan);
  });

  test('shares no arrays with its input', () => {
    const document = sampleDocument();
    const parsed = parsePlan(document);

    document.layers[0]!.slots[0]![0] = 1;

    expect(parsed.layers[0]!.slots[0]).toEqual([0, 2]);
  });

  test('rejects an unknown apiVersion with FormatVersionError', () => {
    const document = { ...sampleDocument(), apiVersion: 'grace-moe.io/v9' };

    const error = thrownBy(() => parsePlan(document));
    expect(error).toBeInstanceOf(FormatVersionError);
    expect((error as Error).message).toContain('grace-moe.io/v9');
  });

  test.each([
    ['a non-object', () => [1, 2], 'plan'],
    ['an unknown field', () => ({ ...sampleDocument(), extra: 1 }), 'extra'],
    ['an unknown topology field', () => {
      const document = sampleDocument();
      document.topology = { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2, racks: 1 };
      return document;
    }, 'topology.racks'],
    ['a string generation', () => ({ ...sampleDocument(), generation: '3' }), 'generation'],
    ['a missing model', () => ({ ...sampleDocument(), model: undefined }), 'model'],
    ['non-array layers', () => ({ ...sampleDocument(), layers: {} }), 'layers'],
    ['a non-array GPU entry', () => {
      const document = sampleDocument();
      document.layers[0]!.slots[1] = 5 as unknown as unknown[];
      return document;
    }, 'layers[0].slots[1]'],
    ['a string expert id', () => {
      const document = sampleDocument();
      document.layers[0]!.slots[1]![0] = '1';
      return document;
    }, 'layers[0].slots[1][0]'],
    ['an invariant broken after parsing', () => {
      const document = sampleDocument();
      document.layers[0]!.slots[1]![0] = 2;
      return document;
    }, 'layers[0].slots[1]'],
  ] as const)('rejects %s naming the field', (_name, makeDocument, field) => {
    const error = thrownBy(() => parsePlan(makeDocument()));

    expect(error).toBeInstanceOf(PlanValidationError);
    expect((error as PlanValidationError).field).toBe(field);
    expect((error as Error).message).toContain(field);
  });

  test('accepts duplicates when allowed', () => {
    const document = sampleDocument();
    document.layers[0]!.slots[0] = [0, 1];
    document.layers[0]!.slots[1] = [2, 2];

    const parsed = parsePlan(document, { allowDuplicateInstances: true });
    expect(parsed.layers[0]!.slots).toEqual([[0, 1], [2, 2]]);
  });
});

describe('planToJson', () => {
  test('writes the fields in a fixed order', () => {
    expect(Object.keys(planToJson(samplePlan()))).toEqual([
      'apiVersion',
      'kind',
      'generation',
      'strategy',
      'inputDigest',
      'topology',
      'model',
      'predicted',
      'layers',
    ]);
  });

  test('omits missing predictions', () => {
    const json = planToJson(samplePlan(false));

    expect(Object.keys(json)).not.toContain('predicted');
    expect(parsePlan(JSON.parse(JSON.stringify(json)))).toEqual(samplePlan(false));
  });
});

describe('digestOf', () => {
  test('hashes the canonical JSON text', () => {
    const value = { b: { d: 'x', c: null }, a: [1, 2] };

    expect(digestOf(value)).toBe('daf8b0a2c35be3d034651c198a9a20a5094a21b177514cadf9c767c560cd70d7');
  });

  test('hashes null as the text null', () => {
    expect(digestOf(null)).toBe('74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b');
  });

  test('ignores key order', () => {
    expect(digestOf({ x: 1, y: { p: [1], q: 2 } })).toBe(digestOf({ y: { q: 2, p: [1] }, x: 1 }));
  });

  test('encodes typed arrays as arrays', () => {
    const plain = { loads: [1.5, 2, 0], sample: [3, 4] };
    const typed = { loads: new Float64Array([1.5, 2, 0]), sample: new Uint16Array([3, 4]) };

    expect(digestOf(typed)).toBe(digestOf(plain));
  });

  test('drops undefined properties as JSON does', () => {
    expect(digestOf({ a: 1, b: undefined })).toBe(digestOf({ a: 1 }));
  });

  test('distinguishes different values', () => {
    expect(digestOf([1, 2])).not.toBe(digestOf([2, 1]));
    expect(digestOf({ a: '1' })).not.toBe(digestOf({ a: 1 }));
  });

  test('matches a direct hash of long input', () => {
    const long = Array.from({ length: 50_000 }, (_, index) => index / 7);
    const expected = createHash('sha256').update(JSON.stringify(long)).digest('hex');

    expect(digestOf(long)).toBe(expected);
  });
});

import { describe, expect, test } from 'vitest';

import { PlanValidationError, StatsFormatError, TopologyError } from '../errors.js';
import { validatePlan } from '../plan/validate.js';
import { contiguousPlan } from './contiguous.js';

const twelveExperts = [
  Array.from({ length: 12 }, (_, expert) => expert + 1),
  Array.from({ length: 12 }, (_, expert) => 12 - expert),
];
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 };

describe('contiguousPlan', () => {
  test('places contiguous id ranges on a 2x2 topology', () => {
    const plan = contiguousPlan(twelveExperts, topology, { topK: 2 });

    expect(plan.strategy).toBe('contiguous');
    expect(plan.model).toEqual({ layers: 2, experts: 12, topK: 2 });
    for (const layer of plan.layers) {
      expect(layer.slots).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]);
      expect(layer.weights).toEqual([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]]);
    }
    expect(() => validatePlan(plan)).not.toThrow();
  });

  test('leaves spare slots empty', () => {
    const plan = contiguousPlan(twelveExperts, { ...topology, slotsPerGpu: 5 }, { topK: 2 });

    expect(plan.layers[0]!.slots).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]);
  });

  test('splits uneven counts by floor(e * GPUs / E)', () => {
    const plan = contiguousPlan([[1, 1, 1, 1, 1, 1, 1]], { nodes: 1, gpusPerNode: 3, slotsPerGpu: 3 }, { topK: 1 });

    expect(plan.layers[0]!.slots).toEqual([[0, 1, 2], [3, 4], [5, 6]]);
  });

  test('records the digest of the loads by default', () => {
    const first = contiguousPlan(twelveExperts, topology, { topK: 2 });
    const changed = contiguousPlan([twelveExperts[1]!, twelveExperts[0]!], topology, { topK: 2 });
    const given = contiguousPlan(twelveExperts, topology, { topK: 2, inputDigest: 'given', generation: 5 });

    expect(first.inputDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(changed.inputDigest).not.toBe(first.inputDigest);
    expect(given.inputDigest).toBe('given');
    expect(given.generation).toBe(5);
  });

  test.each([
    ['too few slots', twelveExperts, { ...topology, slotsPerGpu: 2 }, 2, TopologyError, '8 instances'],
    ['zero nodes', twelveExperts, { ...topology, nodes: 0 }, 2, TopologyError, 'topology.nodes'],
    ['no layers', [], topology, 2, StatsFormatError, 'at least one layer'],
    ['ragged layers', [[1, 2, 3], [1, 2]], topology, 1, StatsFormatError, 'loads[1]'],
    ['a NaN load', [[1, NaN, 3]], topology, 1, StatsFormatError, 'loads[0][1]'],
    ['a negative load', [[1, 2, -3]], topology, 1, StatsFormatError, 'loads[0][2]'],
    ['topK above experts', [[1, 2, 3]], topology, 4, PlanValidationError, 'model.topK'],
  ] as const)('rejects %s', (_name, loads, shape, topK, errorClass, text) => {
    expect(() => contiguousPlan(loads, shape, { topK })).toThrow(errorClass);
    expect(() => contiguousPlan(loads, shape, { topK })).toThrow(text);
  });
});

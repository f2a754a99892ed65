import { describe, expect, test } from 'vitest';

import { TopologyError } from '../errors.js';
import { validatePlan } from '../plan/validate.js';
import { roundRobinPlan } from './round-robin.js';

const twelveExperts = [Array.from({ length: 12 }, (_, expert) => expert + 1)];
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 };

describe('roundRobinPlan', () => {
  test('deals experts to GPUs in turn on a 2x2 topology', () => {
    const plan = roundRobinPlan(twelveExperts, topology, { topK: 2 });

    expect(plan.strategy).toBe('round-robin');
    expect(plan.layers[0]!.slots).toEqual([[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]);
    expect(plan.layers[0]!.weights).toEqual([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]]);
    expect(() => validatePlan(plan)).not.toThrow();
  });

  test('leaves spare slots empty', () => {
    const plan = roundRobinPlan([[5, 5, 5, 5, 5]], { nodes: 1, gpusPerNode: 2, slotsPerGpu: 4 }, { topK: 1 });

    expect(plan.layers[0]!.slots).toEqual([[0, 2, 4], [1, 3]]);
  });

  test('rejects a topology too small for the experts', () => {
    expect(() => roundRobinPlan(twelveExperts, { ...topology, slotsPerGpu: 2 }, { topK: 2 })).toThrow(TopologyError);
  });
});

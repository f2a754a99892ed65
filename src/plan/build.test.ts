import { describe, expect, test } from 'vitest';

import { emptySlots, planFromSlots, slotsFromGpuOfExpert } from './build.js';
import { validatePlan } from './validate.js';

const topology = { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 };
const model = { layers: 2, experts: 3, topK: 1 };

describe('planFromSlots', () => {
  test('fills default weights and generation', () => {
    const plan = planFromSlots({
      strategy: 'test',
      topology,
      model,
      slots: [[[0, 1], [2]], [[2], [0, 1]]],
      inputDigest: 'digest',
    });

    expect(plan.apiVersion).toBe('grace-moe.io/v1alpha1');
    expect(plan.kind).toBe('PlacementPlan');
    expect(plan.generation).toBe(0);
    expect(plan.layers[0]!.weights).toEqual([[1, 1], [1]]);
    expect(plan.layers[1]!.weights).toEqual([[1], [1, 1]]);
    expect(plan.predicted).toBeUndefined();
    expect(() => validatePlan(plan)).not.toThrow();
  });

  test('keeps given weights and generation', () => {
    const plan = planFromSlots({
      strategy: 'test',
      topology,
      model: { ...model, layers: 1 },
      slots: [[[0, 1], [2, 1]]],
      weights: [[[2, 0.5], [1, 1.5]]],
      generation: 7,
      inputDigest: 'digest',
    });

    expect(plan.generation).toBe(7);
    expect(plan.layers[0]!.weights).toEqual([[2, 0.5], [1, 1.5]]);
  });

  test('copies its inputs', () => {
    const slots = [[[0, 1], [2]]];
    const weights = [[[1, 1], [3]]];
    const plan = planFromSlots({
      strategy: 'test',
      topology,
      model: { ...model, layers: 1 },
      slots,
      weights,
      inputDigest: 'digest',
    });

    slots[0]![0]![0] = 2;
    weights[0]![1]![0] = 9;

    expect(plan.layers[0]!.slots).toEqual([[0, 1], [2]]);
    expect(plan.layers[0]!.weights).toEqual([[1, 1], [3]]);
  });
});

describe('emptySlots', () => {
  test('returns independent empty lists', () => {
    const slots = emptySlots(3);
    slots[0]!.push(4);

    expect(slots).toEqual([[4], [], []]);
  });
});

describe('slotsFromGpuOfExpert', () => {
  test('lists each GPU experts in id order', () => {
    expect(slotsFromGpuOfExpert([1, 0, 1, 2], 3)).toEqual([[1], [0, 2], [3]]);
  });

  test('rejects a GPU outside the range', () => {
    expect(() => slotsFromGpuOfExpert([0, 3], 3)).toThrow(RangeError);
  });
});

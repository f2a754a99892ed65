import { describe, expect, test } from 'vitest';

import { FormatVersionError, PlanValidationError } from '../errors.js';
import { API_VERSION, type Plan } from './types.js';
import { countDuplicateInstances, validatePlan } from './validate.js';

type DeepMutable<T> = T extends object ? { -readonly [K in keyof T]: DeepMutable<T[K]> } : T;
type MutablePlan = DeepMutable<Plan> & Record<string, unknown>;
type BreakPlan = (plan: MutablePlan) => void;
type BrokenCase = readonly [name: string, field: string, value: string, breakPlan: BreakPlan];

/** 2 nodes x 2 GPUs, 3 slots per GPU, 6 experts, 2 layers; expert 0 is replicated on GPU 3. */
function validPlan(): MutablePlan {
  return {
    apiVersion: API_VERSION,
    kind: 'PlacementPlan',
    generation: 4,
    strategy: 'test',
    topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 },
    model: { layers: 2, experts: 6, topK: 2 },
    layers: [
      {
        slots: [[0, 1], [2, 3], [4], [5, 0]],
        weights: [[0.5, 1], [1, 1], [1], [1, 0.5]],
      },
      {
        slots: [[5], [4, 3], [2, 1], [0]],
        weights: [[1], [1, 1], [1, 1], [1]],
      },
    ],
    inputDigest: 'abc',
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

describe('validatePlan', () => {
  test('accepts a valid plan', () => {
    expect(() => validatePlan(validPlan())).not.toThrow();
  });

  test('accepts a plan with predicted metrics', () => {
    const plan = validPlan();
    plan.predicted = { moeLayerTimeMs: 1.5, crossNodeCopiesPerToken: 0.8, localHitRatio: 0.3, balancedness: 1.2 };
    expect(() => validatePlan(plan)).not.toThrow();
  });

  const versionCases: readonly (readonly [field: string, breakPlan: BreakPlan])[] = [
    ['apiVersion', (p) => void (p.apiVersion = 'grace-moe.io/v2' as typeof API_VERSION)],
    ['kind', (p) => void (p.kind = 'RoutingTable' as 'PlacementPlan')],
  ];

  test.each(versionCases)('rejects an unknown %s with FormatVersionError', (field, breakPlan) => {
    const plan = validPlan();
    breakPlan(plan);

    const error = thrownBy(() => validatePlan(plan));
    expect(error).toBeInstanceOf(FormatVersionError);
    expect((error as Error).message).toContain(field);
  });

  const brokenCases: readonly BrokenCase[] = [
    ['negative generation', 'generation', '-1', (p: MutablePlan) => void (p.generation = -1)],
    ['fractional generation', 'generation', '1.5', (p: MutablePlan) => void (p.generation = 1.5)],
    ['empty strategy', 'strategy', '""', (p: MutablePlan) => void (p.strategy = '')],
    ['zero nodes', 'topology.nodes', '0', (p: MutablePlan) => void (p.topology.nodes = 0)],
    ['fractional GPUs per node', 'topology.gpusPerNode', '2.5', (p: MutablePlan) => void (p.topology.gpusPerNode = 2.5)],
    ['NaN slots per GPU', 'topology.slotsPerGpu', 'NaN', (p: MutablePlan) => void (p.topology.slotsPerGpu = NaN)],
    ['zero experts', 'model.experts', '0', (p: MutablePlan) => void (p.model.experts = 0)],
    ['topK above experts', 'model.topK', '7', (p: MutablePlan) => void (p.model.topK = 7)],
    ['NaN prediction', 'predicted.balancedness', 'NaN', (p: MutablePlan) => {
      p.predicted = { moeLayerTimeMs: 1, crossNodeCopiesPerToken: 1, localHitRatio: 1, balancedness: NaN };
    }],
    ['missing layer', 'layers', 'got 1', (p: MutablePlan) => void p.layers.pop()],
    ['missing GPU', 'layers[1].slots', 'got 3', (p: MutablePlan) => {
      p.layers[1]!.slots = [[5, 0], [4, 3], [2, 1]];
    }],
    ['missing weight row', 'layers[0].weights', 'got 3', (p: MutablePlan) => void p.layers[0]!.weights.pop()],
    ['GPU over its slots', 'layers[0].slots[3]', '[5,0,1,2]', (p: MutablePlan) => {
      p.layers[0]!.slots[3] = [5, 0, 1, 2];
      p.layers[0]!.weights[3] = [1, 1, 1, 1];
    }],
    ['expert id out of range', 'layers[0].slots[1][0]', '6', (p: MutablePlan) => void (p.layers[0]!.slots[1]![0] = 6)],
    ['negative expert id', 'layers[0].slots[1][1]', '-1', (p: MutablePlan) => void (p.layers[0]!.slots[1]![1] = -1)],
    ['fractional expert id', 'layers[1].slots[0][0]', '4.5', (p: MutablePlan) => void (p.layers[1]!.slots[0]![0] = 4.5)],
    ['two instances on one GPU', 'layers[0].slots[3]', 'expert 5', (p: MutablePlan) => {
      p.layers[0]!.slots[3] = [5, 5];
    }],
    ['expert without instance', 'layers[1].slots', 'expert 0', (p: MutablePlan) => {
      p.layers[1]!.slots[3] = [1];
    }],
    ['weight row shorter than slots', 'layers[0].weights[0]', 'got 1', (p: MutablePlan) => {
      p.layers[0]!.weights[0] = [1];
    }],
    ['zero weight', 'layers[0].weights[1][0]', '0', (p: MutablePlan) => void (p.layers[0]!.weights[1]![0] = 0)],
    ['negative weight', 'layers[0].weights[1][1]', '-2', (p: MutablePlan) => void (p.layers[0]!.weights[1]![1] = -2)],
    ['infinite weight', 'layers[1].weights[2][0]', 'Infinity', (p: MutablePlan) => {
      p.layers[1]!.weights[2]![0] = Infinity;
    }],
    ['NaN weight', 'layers[1].weights[3][0]', 'NaN', (p: MutablePlan) => void (p.layers[1]!.weights[3]![0] = NaN)],
  ];

  test.each(brokenCases)('rejects %s', (_name, field, value, breakPlan) => {
    const plan = validPlan();
    breakPlan(plan);

    const error = thrownBy(() => validatePlan(plan));
    expect(error).toBeInstanceOf(PlanValidationError);
    expect((error as PlanValidationError).field).toBe(field);
    expect((error as Error).message).toContain(`${field}:`);
    expect((error as Error).message).toContain(value);
  });

  test('names the layer of an expert without instance', () => {
    const plan = validPlan();
    plan.layers[1]!.slots[3] = [1];

    const error = thrownBy(() => validatePlan(plan));
    expect((error as Error).message).toContain('layer 1');
  });

  test('accepts duplicates when allowed', () => {
    const plan = validPlan();
    plan.layers[0]!.slots[2] = [4, 4, 4];
    plan.layers[0]!.weights[2] = [1, 1, 1];

    expect(() => validatePlan(plan, { allowDuplicateInstances: true })).not.toThrow();
    expect(() => validatePlan(plan)).toThrow(PlanValidationError);
  });

  test('still rejects other faults when duplicates are allowed', () => {
    const plan = validPlan();
    plan.layers[0]!.slots[2] = [4, 4, 7];
    plan.layers[0]!.weights[2] = [1, 1, 1];

    const error = thrownBy(() => validatePlan(plan, { allowDuplicateInstances: true }));
    expect((error as PlanValidationError).field).toBe('layers[0].slots[2][2]');
  });
});

describe('countDuplicateInstances', () => {
  test('returns 0 for a plan without duplicates', () => {
    expect(countDuplicateInstances(validPlan())).toBe(0);
  });

  test('counts every extra instance on a GPU, summed over layers', () => {
    const plan = validPlan();
    plan.layers[0]!.slots[2] = [4, 4, 4];
    plan.layers[1]!.slots[0] = [5, 0, 5];

    expect(countDuplicateInstances(plan)).toBe(3);
  });
});

describe('plan generation bound', () => {
  test('rejects a generation engines cannot carry', async () => {
    const { contiguousPlan } = await import('../baselines/contiguous.js');
    const plan = { ...contiguousPlan([[1, 1, 1, 1]], { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 }, { topK: 1 }), generation: 2 ** 32 };
    expect(() => validatePlan(plan)).toThrow('generation: must be at most 4294967295');
  });
});

import { describe, expect, test } from 'vitest';

import { baselineStrategies } from './index.js';

const loads = [[90, 10, 40, 20, 60, 5, 30, 25]];
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 };

describe('baselineStrategies', () => {
  test('lists the baselines in report order', () => {
    expect(baselineStrategies.map((strategy) => strategy.name)).toEqual([
      'contiguous',
      'round-robin',
      'eplb',
      'eplb-hierarchical',
    ]);
  });

  test.each([
    ['contiguous', undefined, 'contiguous'],
    ['round-robin', undefined, 'round-robin'],
    ['eplb', undefined, 'eplb-global'],
    ['eplb', 4, 'eplb-hierarchical'],
    ['eplb-hierarchical', undefined, 'eplb-hierarchical'],
  ] as const)('%s with %s groups builds a %s plan', (name, groups, planStrategy) => {
    const strategy = baselineStrategies.find((candidate) => candidate.name === name);
    const options = groups === undefined ? { topK: 2 } : { topK: 2, groups };

    const plan = strategy?.build(loads, topology, options);

    expect(plan?.strategy).toBe(planStrategy);
    expect(plan?.layers).toHaveLength(1);
  });
});

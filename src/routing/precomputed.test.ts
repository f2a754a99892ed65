import { describe, expect, test } from 'vitest';
import { createRandom } from '../random.js';
import { LocalityChooser } from './policy.js';
import { compileRoutingTable } from './table.js';
import type { RouteInstance, RoutingTable } from './types.js';
import { PrecomputedLocalityChooser } from './precomputed.js';

/** Builds a random table over 2 nodes x 4 GPUs: 1 to 5 instances per expert on distinct GPUs, weights 1 to 4. */
function randomTable(seed: number): RoutingTable {
  const random = createRandom(seed);
  const gpus = 8;
  const layers = Array.from({ length: 3 }, () =>
    Array.from({ length: 8 }, (): RouteInstance[] => {
      const count = 1 + Math.floor(random() * 5);
      const chosen = new Set<number>();
      while (chosen.size < count) chosen.add(Math.floor(random() * gpus));
      return [...chosen].map((gpu) => ({ gpu, node: Math.floor(gpu / 4), weight: 1 + Math.floor(random() * 4) }));
    }),
  );
  return {
    apiVersion: 'grace-moe.io/v1alpha1',
    kind: 'RoutingTable',
    generation: 1,
    topology: { nodes: 2, gpusPerNode: 4, slotsPerGpu: 32 },
    experts: 8,
    layers,
  };
}

describe('PrecomputedLocalityChooser', () => {
  test.each([1, 2, 3, 4, 5])('returns what LocalityChooser returns, in order (seed %i)', (seed) => {
    const compiled = compileRoutingTable(randomTable(seed));
    const reference = new LocalityChooser(compiled);
    const precomputed = new PrecomputedLocalityChooser(compiled);
    const random = createRandom(100 + seed);
    const expected: number[] = [];
    const actual: number[] = [];

    for (let call = 0; call < 5000; call++) {
      const source = Math.floor(random() * 8);
      const layer = Math.floor(random() * 3);
      const expert = Math.floor(random() * 8);
      expected.push(reference.choose(source, layer, expert));
      actual.push(precomputed.choose(source, layer, expert));
    }

    expect(actual).toEqual(expected);
  });
});

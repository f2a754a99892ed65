import { describe, expect, test } from 'vitest';

import { TopologyError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import { countDuplicateInstances, validatePlan } from '../plan/validate.js';
import { contiguousPlan } from './contiguous.js';
import { balancedPacking, eplbPlan, eplbPlanWithDetails, replicateExperts, resolveEplbLayout } from './eplb.js';

// Eight experts with uneven loads; the expected placements below were derived by hand.
const skewed = [90, 10, 40, 20, 60, 5, 30, 25];
const oneNode = { nodes: 1, gpusPerNode: 4, slotsPerGpu: 3 };
const twoNodes = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 };

/** Maximum over GPUs of the load a GPU serves when every expert's load is split evenly over its instances. */
function maxGpuLoad(plan: Plan, loads: readonly number[], layer = 0): number {
  const slots = plan.layers[layer]!.slots;
  const instances = new Array<number>(loads.length).fill(0);
  for (const held of slots) {
    for (const expert of held) {
      instances[expert]! += 1;
    }
  }
  return Math.max(
    ...slots.map((held) => held.reduce((total, expert) => total + loads[expert]! / instances[expert]!, 0)),
  );
}

describe('replicateExperts', () => {
  test('gives replicas to the highest load per instance', () => {
    // Extra instances go to 0 (90), 4 (60), 0 (45) and 2 (40).
    const replication = replicateExperts(skewed, 12);

    expect(replication.physicalToLogical).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 4, 0, 2]);
    expect(replication.replicaCounts).toEqual([3, 1, 2, 1, 2, 1, 1, 1]);
  });

  test('breaks ties by the lowest id', () => {
    expect(replicateExperts([10, 10, 10, 10], 6).physicalToLogical).toEqual([0, 1, 2, 3, 0, 1]);
    expect(replicateExperts([0, 0, 0], 5).physicalToLogical).toEqual([0, 1, 2, 0, 0]);
  });

  test('breaks ties by the given order', () => {
    expect(replicateExperts([10, 10, 10], 4, [2, 1, 0]).physicalToLogical).toEqual([0, 1, 2, 2]);
  });

  test('rejects fewer slots than experts', () => {
    expect(() => replicateExperts([1, 2, 3], 2)).toThrow(TopologyError);
  });
});

describe('balancedPacking', () => {
  test('packs heaviest first into the lightest pack with room', () => {
    // Sorted: 9 (item 1), 7 (item 3), 5 (item 0), 5 (item 4), 2 (item 2), 1 (item 5).
    // Packs after each step: [9,0] [9,7] [9,12] [14,12] [14,14] then item 5 fills pack 0.
    const packing = balancedPacking([5, 9, 2, 7, 5, 1], 2);

    expect(packing.packOf).toEqual([1, 0, 1, 1, 0, 0]);
    expect(packing.rankInPack).toEqual([1, 0, 2, 0, 1, 2]);
  });

  test('keeps item order when each pack takes one item', () => {
    const packing = balancedPacking([1, 9, 5], 3);

    expect(packing.packOf).toEqual([0, 1, 2]);
    expect(packing.rankInPack).toEqual([0, 0, 0]);
  });

  test('orders equal weights by index, not by sort stability', () => {
    const packing = balancedPacking([3, 3, 3, 3], 2);

    expect(packing.packOf).toEqual([0, 1, 0, 1]);
    expect(packing.rankInPack).toEqual([0, 0, 1, 1]);
  });

  test('rejects items that do not divide by the packs', () => {
    expect(() => balancedPacking([1, 2, 3], 2)).toThrow(TopologyError);
  });
});

describe('resolveEplbLayout', () => {
  test.each([
    ['auto, one group, two nodes', 'auto', undefined, 2, 'global', 1, 1],
    ['auto, four groups, two nodes', 'auto', 4, 2, 'hierarchical', 4, 2],
    ['auto, two groups, four nodes', 'auto', 2, 4, 'global', 1, 1],
    ['auto, one group, one node', 'auto', 1, 1, 'hierarchical', 1, 1],
    ['hierarchical, one group, two nodes', 'hierarchical', 1, 2, 'hierarchical', 2, 2],
    ['hierarchical, four groups, two nodes', 'hierarchical', 4, 2, 'hierarchical', 4, 2],
    ['global, four groups, two nodes', 'global', 4, 2, 'global', 1, 1],
  ] as const)('resolves %s', (_name, policy, groups, nodes, expectedPolicy, expectedGroups, expectedNodes) => {
    const layout = resolveEplbLayout(
      groups === undefined ? { policy } : { policy, groups },
      { nodes, gpusPerNode: 2, slotsPerGpu: 3 },
      8,
    );

    expect(layout.policy).toBe(expectedPolicy);
    expect(layout.groups).toBe(expectedGroups);
    expect(layout.nodes).toBe(expectedNodes);
    expect(layout.gpus).toBe(nodes * 2);
  });

  test.each([
    ['groups that do not divide the experts', 'auto', 3, 2],
    ['hierarchical groups that do not divide by the nodes', 'hierarchical', 2, 4],
    ['hierarchical with experts that do not divide by the nodes', 'hierarchical', 1, 3],
  ] as const)('rejects %s', (_name, policy, groups, nodes) => {
    expect(() => resolveEplbLayout({ policy, groups }, { nodes, gpusPerNode: 2, slotsPerGpu: 4 }, 8)).toThrow(
      TopologyError,
    );
  });
});

describe('eplbPlan', () => {
  test('places the global policy as derived by hand', () => {
    // Replicas as in replicateExperts above; instance loads 30,10,20,20,30,5,30,25 then 30,30,30,20.
    // Packing by load per instance gives GPU loads 70, 65, 75 and 70.
    const details = eplbPlanWithDetails([skewed], oneNode, { topK: 2, policy: 'global' });

    expect(details.plan.strategy).toBe('eplb-global');
    expect(details.plan.layers[0]!.slots).toEqual([
      [0, 4, 1],
      [4, 0, 5],
      [6, 7, 2],
      [0, 2, 3],
    ]);
    expect(details.replicaCounts).toEqual([[3, 1, 2, 1, 2, 1, 1, 1]]);
    expect(details.duplicateInstances).toBe(0);
    expect(maxGpuLoad(details.plan, skewed)).toBe(75);
  });

  test('places the hierarchical policy with four groups as derived by hand', () => {
    // Group loads 100, 60, 65, 55: node 0 gets groups 0 and 3 (experts 0, 1, 6, 7), node 1 gets
    // groups 2 and 1 (experts 4, 5, 2, 3). Node 0 replicates expert 0 twice, node 1 experts 4 and 2.
    const details = eplbPlanWithDetails([skewed], twoNodes, { topK: 2, policy: 'hierarchical', groups: 4 });

    expect(details.plan.strategy).toBe('eplb-hierarchical');
    expect(details.plan.layers[0]!.slots).toEqual([
      [0, 0, 7],
      [6, 0, 1],
      [4, 2, 2],
      [4, 3, 5],
    ]);
    expect(details.replicaCounts).toEqual([[3, 1, 2, 1, 2, 1, 1, 1]]);
    expect(details.duplicateInstances).toBe(2);
  });

  test('splits a single-group model into one contiguous group per node', () => {
    // Node 0 has experts 0-3 and replicates expert 0 twice. Node 1 has experts 4-7 and
    // replicates expert 4 twice, the second time on a tie with expert 6 that the lower id wins.
    const details = eplbPlanWithDetails([skewed], twoNodes, { topK: 2, policy: 'hierarchical' });

    expect(details.layout.groups).toBe(2);
    expect(details.plan.layers[0]!.slots).toEqual([
      [2, 0, 1],
      [0, 0, 3],
      [6, 4, 5],
      [7, 4, 4],
    ]);
    expect(details.replicaCounts).toEqual([[3, 1, 1, 1, 3, 1, 1, 1]]);
    expect(details.duplicateInstances).toBe(2);
  });

  test('counts duplicates on one GPU', () => {
    // Expert 0 gets three of four instances; packing puts two of them together on GPU 0.
    const plan = eplbPlan([[100, 1]], { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 }, { topK: 1, policy: 'global' });

    expect(plan.layers[0]!.slots).toEqual([[0, 0], [0, 1]]);
    expect(countDuplicateInstances(plan)).toBe(1);
    expect(() => validatePlan(plan)).toThrow('two instances of expert 0');
    expect(() => validatePlan(plan, { allowDuplicateInstances: true })).not.toThrow();
  });

  test('places equal loads by id', () => {
    // Replicas for experts 0 and 1; the full-load instances of 2 and 3 lead the packing.
    const plan = eplbPlan([[10, 10, 10, 10]], { nodes: 1, gpusPerNode: 2, slotsPerGpu: 3 }, {
      topK: 1,
      policy: 'global',
    });

    expect(plan.layers[0]!.slots).toEqual([[2, 0, 0], [3, 1, 1]]);
  });

  test('fills every slot of every GPU', () => {
    const loads = [skewed, [...skewed].reverse(), [1, 1, 1, 1, 1, 1, 1, 200]];
    for (const [topology, policy] of [
      [oneNode, 'global'],
      [twoNodes, 'global'],
      [twoNodes, 'hierarchical'],
      [{ nodes: 2, gpusPerNode: 4, slotsPerGpu: 2 }, 'hierarchical'],
    ] as const) {
      const plan = eplbPlan(loads, topology, { topK: 2, policy });

      for (const layer of plan.layers) {
        expect(layer.slots.map((held) => held.length)).toEqual(layer.slots.map(() => topology.slotsPerGpu));
        expect(layer.weights.flat().every((weight) => weight === 1)).toBe(true);
      }
      expect(() => validatePlan(plan, { allowDuplicateInstances: true })).not.toThrow();
    }
  });

  test('lowers the maximum GPU load below contiguous on skewed loads', () => {
    const eplb = eplbPlan([skewed], oneNode, { topK: 2, policy: 'global' });
    const contiguous = contiguousPlan([skewed], oneNode, { topK: 2 });

    expect(maxGpuLoad(contiguous, skewed)).toBe(100);
    expect(maxGpuLoad(eplb, skewed)).toBe(75);
  });

  test('places every layer on its own loads', () => {
    const second = [5, 5, 5, 5, 5, 5, 5, 80];
    const both = eplbPlan([skewed, second], oneNode, { topK: 2, policy: 'global' });
    const first = eplbPlan([skewed], oneNode, { topK: 2, policy: 'global' });
    const alone = eplbPlan([second], oneNode, { topK: 2, policy: 'global' });

    expect(both.layers[0]).toEqual(first.layers[0]);
    expect(both.layers[1]).toEqual(alone.layers[0]);
  });

  test('uses the global policy for auto with one group', () => {
    const auto = eplbPlan([skewed], twoNodes, { topK: 2, policy: 'auto' });
    const global = eplbPlan([skewed], twoNodes, { topK: 2, policy: 'global' });

    expect(auto.strategy).toBe('eplb-global');
    expect(auto.layers).toEqual(global.layers);
  });

  test('does not change its input', () => {
    const loads = [Float64Array.from(skewed)];
    eplbPlan(loads, twoNodes, { topK: 2, policy: 'hierarchical' });

    expect(Array.from(loads[0]!)).toEqual(skewed);
  });
});

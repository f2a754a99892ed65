import { describe, expect, test } from 'vitest';

import { PlanValidationError } from '../errors.js';
import { planFromSlots } from '../plan/build.js';
import type { Topology } from '../topology.js';
import { LocalityChooser } from './policy.js';
import { compilePlan, compileRoutingTable, routingTableFromPlan } from './table.js';
import type { RouteInstance, RoutingTable } from './types.js';

/** Builds a routing table whose instances are given as [gpu, weight] pairs, node from gpusPerNode. */
function routingTable(
  topology: Topology,
  layers: readonly (readonly (readonly (readonly [gpu: number, weight: number])[])[])[],
  generation = 1,
): RoutingTable {
  return {
    apiVersion: 'grace-moe.io/v1alpha1',
    kind: 'RoutingTable',
    generation,
    topology,
    experts: layers[0]?.length ?? 0,
    layers: layers.map((experts) =>
      experts.map((instances) =>
        instances.map(([gpu, weight]): RouteInstance => ({ gpu, node: Math.floor(gpu / topology.gpusPerNode), weight })),
      ),
    ),
  };
}

describe('routingTableFromPlan', () => {
  // 3 nodes x 2 GPUs: GPU 2 is on node 1 and GPU 5 on node 2, so a node computed as gpu mod nodes
  // or gpu mod gpusPerNode would differ from floor(gpu / gpusPerNode).
  const topology = { nodes: 3, gpusPerNode: 2, slotsPerGpu: 2 };
  const plan = planFromSlots({
    strategy: 'test',
    topology,
    model: { layers: 1, experts: 4, topK: 2 },
    slots: [[[0, 1], [2], [0, 3], [1], [0], [3, 2]]],
    weights: [[[0.5, 1], [2], [0.25, 1], [3], [0.25], [1.5, 1]]],
    generation: 7,
    inputDigest: 'digest',
  });

  test('keeps weights and GPU-ordered instances', () => {
    const table = routingTableFromPlan(plan);

    expect(table.layers).toEqual([
      [
        [
          { gpu: 0, node: 0, weight: 0.5 },
          { gpu: 2, node: 1, weight: 0.25 },
          { gpu: 4, node: 2, weight: 0.25 },
        ],
        [
          { gpu: 0, node: 0, weight: 1 },
          { gpu: 3, node: 1, weight: 3 },
        ],
        [
          { gpu: 1, node: 0, weight: 2 },
          { gpu: 5, node: 2, weight: 1 },
        ],
        [
          { gpu: 2, node: 1, weight: 1 },
          { gpu: 5, node: 2, weight: 1.5 },
        ],
      ],
    ]);
  });

  test('copies generation, topology and experts', () => {
    const table = routingTableFromPlan(plan);

    expect(table.apiVersion).toBe('grace-moe.io/v1alpha1');
    expect(table.kind).toBe('RoutingTable');
    expect(table.generation).toBe(7);
    expect(table.topology).toEqual(topology);
    expect(table.experts).toBe(4);
  });
});

describe('compileRoutingTable', () => {
  const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 };

  test('computes offsets from instance counts', () => {
    // Instance counts per expert: layer 0 [2, 1, 3], layer 1 [1, 1, 2].
    const compiled = compileRoutingTable(
      routingTable(topology, [
        [[[1, 1], [2, 1]], [[0, 1]], [[0, 1], [1, 1], [3, 1]]],
        [[[3, 1]], [[2, 1]], [[0, 1], [1, 1]]],
      ]),
    );

    expect(Array.from(compiled.offsets)).toEqual([0, 2, 3, 6, 7, 8, 10]);
    expect(Array.from(compiled.instanceGpu)).toEqual([1, 2, 0, 0, 1, 3, 3, 2, 0, 1]);
    expect(compiled.layers).toBe(2);
    expect(compiled.experts).toBe(3);
    expect(compiled.gpus).toBe(4);
  });

  test('sorts instances by GPU with their weights', () => {
    const compiled = compileRoutingTable(routingTable(topology, [[[[3, 0.25], [0, 2], [1, 0.5]]]]));

    expect(Array.from(compiled.instanceGpu)).toEqual([0, 1, 3]);
    expect(Array.from(compiled.instanceWeight)).toEqual([2, 0.5, 0.25]);
  });

  const missingCases = [
    { name: 'empty instance list', layers: [[[[0, 1]], [[1, 1]]], [[[2, 1]], []]], field: 'layers[1][1]' },
    { name: 'missing expert entry', layers: [[[[0, 1]]], [[[2, 1]], [[3, 1]]]], field: 'layers[0][1]' },
  ] as const;

  test.each(missingCases)('rejects $name naming the field', ({ layers, field }) => {
    // The expert count comes from layer 0, so the second row declares 2 experts through layer 1.
    const table = { ...routingTable(topology, layers), experts: 2 };

    let thrown: unknown;
    try {
      compileRoutingTable(table);
    } catch (error) {
      thrown = error;
    }

    expect(thrown).toBeInstanceOf(PlanValidationError);
    expect((thrown as PlanValidationError).code).toBe('PLAN_INVALID');
    expect((thrown as PlanValidationError).field).toBe(field);
    expect((thrown as PlanValidationError).message).toContain(field);
  });

  test('keeps the generation number', () => {
    expect(compileRoutingTable(routingTable(topology, [[[[0, 1]]]], 12)).generation).toBe(12);
  });
});

describe('routing tables of two generations', () => {
  const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 2 };
  const planOf = (generation: number, slots: number[][]) =>
    planFromSlots({
      strategy: 'test',
      topology,
      model: { layers: 1, experts: 2, topK: 1 },
      slots: [slots],
      generation,
      inputDigest: 'digest',
    });

  test('choosers never mix generations', () => {
    // Generation 1 places both experts on node 1 (GPUs 2 and 3), generation 2 on node 0 (GPUs 0 and 1).
    const first = compilePlan(planOf(1, [[], [], [0, 1], [0, 1]]));
    const second = compilePlan(planOf(2, [[0, 1], [0, 1], [], []]));
    const firstChooser = new LocalityChooser(first);
    const secondChooser = new LocalityChooser(second);

    expect(first.generation).toBe(1);
    expect(second.generation).toBe(2);

    // Each chooser serves a GPU without an instance in its own table, so it rotates over the
    // table's two remote instances. The calls to the two choosers alternate.
    const firstPicks: number[] = [];
    const secondPicks: number[] = [];
    for (let call = 0; call < 4; call++) {
      for (const expert of [0, 1]) {
        firstPicks.push(firstChooser.choose(0, 0, expert, call, 0));
        secondPicks.push(secondChooser.choose(3, 0, expert, call, 0));
      }
    }

    expect(firstPicks).toEqual([2, 2, 3, 3, 2, 2, 3, 3]);
    expect(secondPicks).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
  });
});

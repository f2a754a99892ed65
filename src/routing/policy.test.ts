import { describe, expect, test } from 'vitest';

import { createRandom } from '../random.js';
import type { Topology } from '../topology.js';
import {
  createChooser,
  LocalityChooser,
  PositionModuloChooser,
  WeightedChooser,
  type LocalityOptions,
} from './policy.js';
import { PrecomputedLocalityChooser } from './precomputed.js';
import { compileRoutingTable, type CompiledTable } from './table.js';
import type { ReplicaChooser } from './types.js';

const twoByTwo = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 };
const twoByThree = { nodes: 2, gpusPerNode: 3, slotsPerGpu: 4 };

/**
 * Compiles a table in which every expert of every layer has the instances `gpus`, with `weights`
 * (all 1 when omitted).
 */
function uniformTable(
  topology: Topology,
  gpus: readonly number[],
  weights: readonly number[] = gpus.map(() => 1),
  shape: { layers: number; experts: number } = { layers: 1, experts: 1 },
): CompiledTable {
  const instances = gpus.map((gpu, i) => ({
    gpu,
    node: Math.floor(gpu / topology.gpusPerNode),
    weight: weights[i] ?? 1,
  }));
  return compileRoutingTable({
    apiVersion: 'grace-moe.io/v1alpha1',
    kind: 'RoutingTable',
    generation: 1,
    topology,
    experts: shape.experts,
    layers: Array.from({ length: shape.layers }, () => Array.from({ length: shape.experts }, () => instances)),
  });
}

/** Calls `chooser` `calls` times for one (source GPU, layer, expert) and returns the GPUs it picks. */
function picks(chooser: ReplicaChooser, sourceGpu: number, calls: number, layer = 0, expert = 0): number[] {
  return Array.from({ length: calls }, (_, call) => chooser.choose(sourceGpu, layer, expert, call, 0));
}

function countOf(values: readonly number[], value: number): number {
  return values.filter((v) => v === value).length;
}

describe('LocalityChooser tiers', () => {
  const tierCases = [
    { name: 'own GPU first', topology: twoByTwo, gpus: [0, 1, 2], source: 0, expected: [0, 0, 0, 0] },
    { name: 'own node before remote', topology: twoByTwo, gpus: [1, 2, 3], source: 0, expected: [1, 1, 1, 1] },
    { name: 'rotation inside own node', topology: twoByThree, gpus: [1, 2, 3, 4], source: 0, expected: [1, 2, 1, 2] },
    { name: 'all instances when none near', topology: twoByTwo, gpus: [2, 3], source: 0, expected: [2, 3, 2, 3] },
    { name: 'single instance anywhere', topology: twoByTwo, gpus: [3], source: 0, expected: [3, 3, 3, 3] },
  ] as const;

  test.each(tierCases)('$name', ({ topology, gpus, source, expected }) => {
    const chooser = new LocalityChooser(uniformTable(topology, gpus));

    expect(picks(chooser, source, expected.length)).toEqual(expected);
  });
});

describe('LocalityChooser smooth weighted round-robin', () => {
  test('equal weights split exactly 1:1', () => {
    const chooser = new LocalityChooser(uniformTable(twoByTwo, [2, 3]));
    const chosen = picks(chooser, 0, 10);

    expect(countOf(chosen, 2)).toBe(5);
    expect(countOf(chosen, 3)).toBe(5);
  });

  test('three equal instances take turns', () => {
    const chooser = new LocalityChooser(uniformTable({ nodes: 2, gpusPerNode: 4, slotsPerGpu: 4 }, [4, 5, 6]));

    expect(picks(chooser, 0, 6)).toEqual([4, 5, 6, 4, 5, 6]);
  });

  // Current weights start at 0. Each call adds the weights, picks the largest (a tie goes to the
  // lower GPU) and subtracts the total 4 from the pick. Current weights after adding, the pick,
  // and current weights after subtracting, per call:
  //   weights [3, 1]: [3, 1] GPU 2 [-1, 1], [2, 2] GPU 2 [-2, 2], [1, 3] GPU 3 [1, -1],
  //                   [4, 0] GPU 2 [0, 0], then the cycle repeats.
  //   weights [1, 3]: [1, 3] GPU 3 [1, -1], [2, 2] GPU 2 [-2, 2], [-1, 5] GPU 3 [-1, 1],
  //                   [0, 4] GPU 3 [0, 0], then the cycle repeats.
  const weightCases = [
    { weights: [3, 1], expected: [2, 2, 3, 2, 2, 2, 3, 2] },
    { weights: [1, 3], expected: [3, 2, 3, 3, 3, 2, 3, 3] },
  ] as const;

  test.each(weightCases)('weights $weights give 3:1 order', ({ weights, expected }) => {
    const chooser = new LocalityChooser(uniformTable(twoByTwo, [2, 3], weights));
    const chosen = picks(chooser, 0, 8);

    expect(chosen).toEqual(expected);
    expect(countOf(chosen, weights[0] > weights[1] ? 2 : 3)).toBe(6);
  });

  test('choice ignores token and rank', () => {
    const table = uniformTable(twoByTwo, [2, 3], [3, 1]);
    const fixed = new LocalityChooser(table);
    const varied = new LocalityChooser(table);
    const tokenRank = [
      [0, 0],
      [17, 5],
      [3, 1],
      [250, 2],
      [8, 4],
      [9, 3],
      [1, 0],
      [42, 5],
    ] as const;

    const fixedPicks = tokenRank.map(() => fixed.choose(0, 0, 0, 0, 0));
    const variedPicks = tokenRank.map(([token, rank]) => varied.choose(0, 0, 0, token, rank));

    expect(variedPicks).toEqual([2, 2, 3, 2, 2, 2, 3, 2]);
    expect(variedPicks).toEqual(fixedPicks);
  });

  // Two interleaved keys A and B over instances on GPUs 2 and 3. Shared state would give A, B, A, B
  // the picks 2, 3, 2, 3; independent state gives each key 2 then 3.
  const keyCases = [
    { name: 'source GPUs on one node', first: [0, 0, 0], second: [1, 0, 0] },
    { name: 'layers', first: [0, 0, 0], second: [0, 1, 0] },
    { name: 'experts', first: [0, 0, 1], second: [0, 0, 0] },
  ] as const;

  test.each(keyCases)('separate rotation per $name', ({ first, second }) => {
    const chooser = new LocalityChooser(uniformTable(twoByTwo, [2, 3], [1, 1], { layers: 2, experts: 2 }));
    const chosen: number[] = [];
    for (let round = 0; round < 2; round++) {
      for (const [source, layer, expert] of [first, second]) chosen.push(chooser.choose(source, layer, expert, round, 0));
    }

    expect(chosen).toEqual([2, 2, 3, 3]);
  });
});

describe('LocalityChooser weighted random', () => {
  // Source GPU 0 on a 2x3 topology: GPUs 1 and 2 form its node tier, with weights 3 and 1. GPU 4
  // is remote and must never be picked.
  const table = uniformTable(twoByThree, [1, 2, 4], [3, 1, 5]);
  const randomPicks = (seed: number, calls: number): number[] =>
    picks(new LocalityChooser(table, { selection: 'weighted-random', random: createRandom(seed) }), 0, calls);

  test('frequencies follow the weights', () => {
    const chosen = randomPicks(7, 10_000);

    // Expected 7500 and 2500; the binomial standard deviation is about 43, so 200 is over 4.5 sigma.
    expect(countOf(chosen, 1)).toBeGreaterThan(7300);
    expect(countOf(chosen, 1)).toBeLessThan(7700);
    expect(countOf(chosen, 2)).toBe(10_000 - countOf(chosen, 1));
    expect(countOf(chosen, 4)).toBe(0);
  });

  test('same seed repeats the sequence', () => {
    expect(randomPicks(11, 200)).toEqual(randomPicks(11, 200));
    expect(randomPicks(11, 200)).not.toEqual(randomPicks(12, 200));
  });
});

describe('LocalityChooser spill', () => {
  // Predicted GPU loads of layer 0 and the spill factor. The layer mean is 13 / 4 = 3.25 in the first
  // two rows, so factor 2 spills above 6.5 and factor 4 only above 13.
  const spillCases = [
    { name: 'overloaded own GPU skipped', gpus: [0, 2], loads: [10, 1, 1, 1], factor: 2, expected: [0, 2, 0, 2] },
    { name: 'own GPU under threshold kept', gpus: [0, 2], loads: [10, 1, 1, 1], factor: 4, expected: [0, 0, 0, 0] },
    { name: 'overloaded own node skipped', gpus: [1, 2], loads: [1, 10, 1, 1], factor: 2, expected: [1, 2, 1, 2] },
    { name: 'own node under threshold kept', gpus: [1, 2], loads: [1, 10, 1, 1], factor: 4, expected: [1, 1, 1, 1] },
    // Mean 3, threshold 6: the own GPU (8) spills but the own node (mean of GPUs 0 and 1 is 4) does
    // not, and the node tier still contains the own GPU's instance.
    { name: 'node tier after own GPU', gpus: [0, 1, 2], loads: [8, 0, 2, 2], factor: 2, expected: [0, 1, 0, 1] },
  ] as const;

  test.each(spillCases)('$name', ({ gpus, loads, factor, expected }) => {
    const options: LocalityOptions = { spill: { factor, predictedGpuLoad: [loads] } };
    const chooser = new LocalityChooser(uniformTable(twoByTwo, gpus), options);

    expect(picks(chooser, 0, expected.length)).toEqual(expected);
  });
});

describe('WeightedChooser', () => {
  test('ignores an instance on the source GPU', () => {
    const table = uniformTable(twoByTwo, [0, 2]);
    const weighted = picks(new WeightedChooser(table), 0, 8);

    expect(weighted).toEqual([0, 2, 0, 2, 0, 2, 0, 2]);
    expect(picks(new LocalityChooser(table), 0, 8)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  test('follows weights 3:1', () => {
    expect(picks(new WeightedChooser(uniformTable(twoByTwo, [0, 2], [3, 1])), 1, 8)).toEqual([0, 0, 2, 0, 0, 0, 2, 0]);
  });
});

describe('PositionModuloChooser', () => {
  // Instances listed out of order; the compiled table orders them by GPU: [0, 3, 5].
  const table = uniformTable(twoByThree, [5, 0, 3]);

  const formulaCases = [
    { token: 0, rank: 0, topK: 6, expected: 0 }, // 0 mod 3 = 0
    { token: 1, rank: 0, topK: 2, expected: 5 }, // 2 mod 3 = 2
    { token: 2, rank: 4, topK: 6, expected: 3 }, // 16 mod 3 = 1
    { token: 3, rank: 1, topK: 4, expected: 3 }, // 13 mod 3 = 1
    { token: 5, rank: 2, topK: 3, expected: 5 }, // 17 mod 3 = 2
  ] as const;

  test.each(formulaCases)('token $token rank $rank top-$topK picks GPU $expected', ({ token, rank, topK, expected }) => {
    const chooser = new PositionModuloChooser(table, topK);

    expect(chooser.choose(4, 0, 0, token, rank)).toBe(expected);
    // The source GPU plays no part, even one holding an instance.
    expect(chooser.choose(3, 0, 0, token, rank)).toBe(expected);
  });

  // Two instances on GPUs 1 and 3. With an even top-k, token * topK is even, so rank parity alone
  // decides the instance for every token. With an odd top-k the token's parity also counts.
  const skewCases = [
    { topK: 6, rank: 0, onGpu1: 8, onGpu3: 0 },
    { topK: 6, rank: 1, onGpu1: 0, onGpu3: 8 },
    { topK: 6, rank: 4, onGpu1: 8, onGpu3: 0 },
    { topK: 5, rank: 0, onGpu1: 4, onGpu3: 4 },
  ] as const;

  test.each(skewCases)('top-$topK rank $rank splits $onGpu1:$onGpu3', ({ topK, rank, onGpu1, onGpu3 }) => {
    const chooser = new PositionModuloChooser(uniformTable(twoByTwo, [1, 3]), topK);
    const chosen = Array.from({ length: 8 }, (_, token) => chooser.choose(0, 0, 0, token, rank));

    expect(countOf(chosen, 1)).toBe(onGpu1);
    expect(countOf(chosen, 3)).toBe(onGpu3);
  });

  test('sorted top-6 lists skew replicas', () => {
    // Expert 1 has instances on GPUs 1 (node 0) and 3 (node 1); token t lives on GPU t mod 4. In a
    // sorted list the rank of expert 1 is 1 whenever the popular expert 0 is also selected, so five
    // of six tokens land on GPU 3 wherever they live. The locality tiers serve each token on its
    // own node instead.
    const sortedTopK = [
      [0, 1, 2, 3, 4, 5],
      [0, 1, 2, 3, 6, 7],
      [1, 2, 3, 4, 5, 6],
      [0, 1, 3, 4, 5, 7],
      [0, 1, 2, 4, 6, 7],
      [0, 1, 2, 3, 5, 6],
    ];
    const table = uniformTable(twoByTwo, [1, 3], [1, 1], { layers: 1, experts: 8 });
    const modulo = new PositionModuloChooser(table, 6);
    const locality = new LocalityChooser(table);

    const moduloPicks = sortedTopK.map((experts, token) => modulo.choose(token % 4, 0, 1, token, experts.indexOf(1)));
    const localityPicks = sortedTopK.map((experts, token) =>
      locality.choose(token % 4, 0, 1, token, experts.indexOf(1)),
    );

    expect(moduloPicks).toEqual([3, 3, 1, 3, 3, 3]);
    expect(localityPicks).toEqual([1, 1, 3, 3, 1, 1]);
  });
});

describe('createChooser', () => {
  const policyCases = [
    { policy: 'locality', type: PrecomputedLocalityChooser },
    { policy: 'weighted', type: WeightedChooser },
    { policy: 'position-modulo', type: PositionModuloChooser },
  ] as const;

  test.each(policyCases)('builds the $policy chooser', ({ policy, type }) => {
    expect(createChooser(policy, uniformTable(twoByTwo, [0, 2]), 2)).toBeInstanceOf(type);
  });

  test('keeps LocalityChooser for spill and weighted random', () => {
    const table = uniformTable(twoByTwo, [0, 2]);
    expect(createChooser('locality', table, 2, { selection: 'weighted-random' })).toBeInstanceOf(LocalityChooser);
    expect(createChooser('locality', table, 2, { spill: { factor: 2, predictedGpuLoad: [[1, 1, 1, 1]] } })).toBeInstanceOf(LocalityChooser);
  });
});

import { describe, expect, test } from 'vitest';
import { StatsFormatError, TopologyError } from '../errors.js';
import { countDuplicateInstances, validatePlan } from '../plan/validate.js';
import type { Plan } from '../plan/types.js';
import type { ActivationStats, LayerActivation } from '../stats/types.js';
import { keptAffinity } from './partition.js';
import { planGrace, planGraceDetailed } from './grace.js';
import { clusteredTokens, statsOf, TEST_COST } from './test-helpers.js';

function instanceCount(plan: Plan, layer: number, expert: number): number {
  return plan.layers[layer].slots.reduce((sum, slots) => sum + slots.filter((e) => e === expert).length, 0);
}

function withLayer(stats: ActivationStats, layer: number, change: Partial<LayerActivation>): ActivationStats {
  const perLayer = stats.perLayer.map((entry, l) => (l === layer ? { ...entry, ...change } : entry));
  return { ...stats, perLayer };
}

describe('planGrace', () => {
  const base = statsOf(16, 2, clusteredTokens({ experts: 16, layers: 2, topK: 2, tokens: 600, clusterSize: 4, skew: 0.8, seed: 5 }));

  test.each([
    { name: 'experts not divisible by GPUs', experts: 10, nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 },
    { name: 'spare slots not divisible by GPUs per node', experts: 13, nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 },
    { name: 'no spare slots', experts: 16, nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 },
    { name: 'single node', experts: 16, nodes: 1, gpusPerNode: 4, slotsPerGpu: 5 },
    { name: 'one GPU per node', experts: 12, nodes: 3, gpusPerNode: 1, slotsPerGpu: 6 },
  ] as const)('returns a valid plan: $name', ({ experts, nodes, gpusPerNode, slotsPerGpu }) => {
    const tokens = clusteredTokens({ experts, layers: 2, topK: 2, tokens: 400, clusterSize: experts % 4 === 0 ? 4 : 1, skew: 1, seed: experts });
    const stats = statsOf(experts, 2, tokens);
    const topology = { nodes, gpusPerNode, slotsPerGpu };
    const plan = planGrace(stats, { topology, cost: TEST_COST });
    expect(() => validatePlan(plan)).not.toThrow();
    expect(countDuplicateInstances(plan)).toBe(0);
    for (const layer of plan.layers) {
      expect(layer.slots).toHaveLength(nodes * gpusPerNode);
      for (const slots of layer.slots) expect(slots.length).toBeLessThanOrEqual(slotsPerGpu);
    }
  });

  test('fills every spare slot with a replica', () => {
    const plan = planGrace(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST, replication: 'fill' });
    for (const layer of plan.layers) {
      expect(layer.slots.reduce((sum, slots) => sum + slots.length, 0)).toBe(20);
    }
  });

  test('grouping-only plan holds one instance per expert', () => {
    const plan = planGrace(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST, replication: 'none' });
    for (let e = 0; e < 16; e++) expect(instanceCount(plan, 0, e)).toBe(1);
  });

  test('single dominant expert gets an instance on every node', () => {
    const tokens = clusteredTokens({ experts: 16, layers: 1, topK: 2, tokens: 400, clusterSize: 4, skew: 0, seed: 9 }).map((token) =>
      token.map((layer) => (layer.includes(0) ? layer : [0, layer[0]])),
    );
    const stats = statsOf(16, 2, tokens);
    const plan = planGrace(stats, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST });
    const nodesWithExpert = new Set(
      plan.layers[0].slots.flatMap((slots, gpu) => (slots.includes(0) ? [Math.floor(gpu / 2)] : [])),
    );
    expect(nodesWithExpert.size).toBe(2);
    expect(instanceCount(plan, 0, 0)).toBeGreaterThanOrEqual(2);
  });

  test('all-zero loads in a layer still place every expert', () => {
    const zero = withLayer(base, 1, { tokens: 0, loads: new Float64Array(16), coactivation: new Float64Array(256) });
    const plan = planGrace({ ...zero, sample: { ...zero.sample, tokens: 0, selections: new Uint16Array(0) } }, {
      topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 },
      cost: TEST_COST,
    });
    expect(() => validatePlan(plan)).not.toThrow();
    for (let e = 0; e < 16; e++) expect(instanceCount(plan, 1, e)).toBeGreaterThanOrEqual(1);
  });

  test('equal loads give an equal primary count per GPU', () => {
    // Every token selects a pair inside one of 4 blocks, all blocks equally often.
    const tokens = Array.from({ length: 64 }, (_, t) => [[4 * (t % 4) + (t % 3), 4 * (t % 4) + 3]]);
    const stats = statsOf(16, 2, tokens);
    const plan = planGrace(stats, {
      topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 },
      cost: TEST_COST,
      nonUniformity: 0,
      replication: 'none',
    });
    expect(plan.layers[0].slots.map((slots) => slots.length)).toEqual([4, 4, 4, 4]);
  });

  test('is deterministic for the same input', () => {
    const options = { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST };
    expect(planGrace(base, options)).toEqual(planGrace(base, options));
  });

  test('does not mutate its input', () => {
    const before = Array.from(base.perLayer[0].loads);
    planGrace(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST });
    expect(Array.from(base.perLayer[0].loads)).toEqual(before);
  });

  test('routing weights are finite and positive', () => {
    const plan = planGrace(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 6 }, cost: TEST_COST });
    for (const layer of plan.layers) {
      for (const weights of layer.weights) for (const weight of weights) expect(weight).toBeGreaterThan(0);
    }
  });

  test('diagnostics name the chosen candidate and its score', () => {
    const { layers } = planGraceDetailed(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST });
    expect(layers).toHaveLength(2);
    for (const layer of layers) {
      const names = layer.candidates.map((candidate) => candidate.name);
      expect(names).toContain(layer.chosen);
      expect(names).toContain('paper');
      for (const candidate of layer.candidates) expect(candidate.timeMs).toBeGreaterThan(0);
    }
  });

  test.each([
    { name: 'NaN load', change: { loads: Float64Array.from({ length: 16 }, (_, e) => (e === 3 ? NaN : 1)) }, fragment: 'loads[3] is NaN' },
    { name: 'negative load', change: { loads: Float64Array.from({ length: 16 }, (_, e) => (e === 5 ? -2 : 1)) }, fragment: 'loads[5] is -2' },
    { name: 'missing loads', change: { loads: new Float64Array(15) }, fragment: 'has 15 entries; expected 16' },
    { name: 'negative co-activation', change: { coactivation: Float64Array.from({ length: 256 }, (_, i) => (i === 17 ? -1 : 0)) }, fragment: 'coactivation[1][1]' },
  ] as const)('rejects statistics with $name', ({ change, fragment }) => {
    const stats = withLayer(base, 0, change);
    const run = () => planGrace(stats, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 }, cost: TEST_COST });
    expect(run).toThrow(StatsFormatError);
    expect(run).toThrow(fragment);
  });

  test('rejects a slot budget below the experts', () => {
    const run = () => planGrace(base, { topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 }, cost: TEST_COST });
    expect(run).toThrow(TopologyError);
    expect(run).toThrow('use at least 4 slots per GPU');
  });
});

/** Best GPU-level kept affinity over every split of 12 items into 4 groups of 3. */
function exhaustiveBest(affinity: Float64Array, n: number): number {
  let best = 0;
  const group = new Int32Array(n).fill(-1);
  const sizes = [0, 0, 0, 0];
  const search = (item: number, used: number): void => {
    if (item === n) {
      best = Math.max(best, keptAffinity(affinity, n, group));
      return;
    }
    // Groups are interchangeable: a new group may only be the next unused index.
    for (let g = 0; g < Math.min(4, used + 1); g++) {
      if (sizes[g] === 3) continue;
      group[item] = g;
      sizes[g]++;
      search(item + 1, Math.max(used, g + 1));
      sizes[g]--;
    }
    group[item] = -1;
  };
  search(0, 0);
  return best;
}

describe('grouping quality', () => {
  // The load cap is lifted so only affinity counts, as in the exhaustive search.
  test.each([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => ({ seed })))('keeps 85 percent of best affinity, seed $seed', ({ seed }) => {
    // Clusters of 4 do not fit groups of 3, and half the selections ignore the cluster.
    const tokens = clusteredTokens({ experts: 12, layers: 1, topK: 3, tokens: 500, clusterSize: 4, skew: 0.5, seed, cohesion: 0.5 });
    const stats = statsOf(12, 3, tokens);
    const { plan, layers } = planGraceDetailed(stats, {
      topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 },
      cost: TEST_COST,
      nonUniformity: 0,
      replication: 'none',
      loadTolerance: Infinity,
    });
    const affinity = stats.perLayer[0].coactivation;
    const group = new Int32Array(12);
    plan.layers[0].slots.forEach((slots, gpu) => slots.forEach((expert) => (group[expert] = gpu)));
    const kept = keptAffinity(affinity, 12, group);
    const best = exhaustiveBest(affinity, 12);
    // Measured on these seeds: 0.90 to 0.96 of the optimum. Grouping by node first costs a little
    // against a search over all GPU groupings at once.
    expect(kept / best).toBeGreaterThanOrEqual(0.85);
    expect(layers[0].gpuAffinityKept).toBeCloseTo(kept / keptAffinity(affinity, 12, new Int32Array(12)), 9);
  });
});

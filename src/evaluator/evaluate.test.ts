import { describe, expect, test } from 'vitest';

import { PlanValidationError } from '../errors.js';
import { planFromSlots } from '../plan/build.js';
import type { Topology } from '../topology.js';
import type { Trace } from '../trace/types.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from './cost-model.js';
import { evaluatePlan, loadBalance } from './evaluate.js';

/** Builds a trace from selected[t][l], the experts token t selected at layer l. */
function traceOf(experts: number, selected: readonly (readonly (readonly number[])[])[]): Trace {
  const tokens = selected.length;
  const layers = selected[0]?.length ?? 0;
  const topK = selected[0]?.[0]?.length ?? 0;
  return {
    meta: { name: 'hand-built', model: 'deepseek-ai/DeepSeek-V2-Lite', layers, experts, topK },
    tokens,
    selections: Uint16Array.from(selected.flat(2)),
    requestIds: ['test/0'],
    requestOfToken: new Uint32Array(tokens),
    positions: Uint32Array.from({ length: tokens }, (_, t) => t),
  };
}

/** Places expert e on GPU floor(e * GPUs / experts) at every layer, one instance each. */
function contiguousPlan(topology: Topology, experts: number, layers: number, topK: number) {
  const gpus = topology.nodes * topology.gpusPerNode;
  const slots: number[][] = Array.from({ length: gpus }, () => []);
  for (let e = 0; e < experts; e++) slots[Math.floor((e * gpus) / experts)]?.push(e);
  return planFromSlots({
    strategy: 'contiguous',
    topology,
    model: { layers, experts, topK },
    slots: Array.from({ length: layers }, () => slots),
    inputDigest: 'digest',
  });
}

const a100: CostModel = { model: MODEL_SHAPES['deepseek-v2-lite']!, hardware: hardwarePreset('a100-25gbe') };

describe('loadBalance', () => {
  const balanceCases = [
    { loads: [2, 1], balancedness: 4 / 3, std: 0.5 },
    { loads: [3, 3, 3, 3], balancedness: 1, std: 0 },
    { loads: [0, 0, 0, 0], balancedness: 1, std: 0 },
    { loads: [6, 0, 0, 0], balancedness: 4, std: Math.sqrt(6.75) },
    { loads: [5, 3, 6, 2], balancedness: 1.5, std: Math.sqrt(2.5) },
  ] as const;

  test.each(balanceCases)('loads $loads', ({ loads, balancedness, std }) => {
    const balance = loadBalance(loads);

    expect(balance.balancedness).toBeCloseTo(balancedness, 12);
    expect(balance.std).toBeCloseTo(std, 12);
  });
});

describe('evaluatePlan balance', () => {
  // 1 node x 2 GPUs, expert e on GPU e, top-1. Each row lists the experts of every token at layers
  // 0 and 1. Balancedness is taken per layer, then averaged over layers.
  const layerCases = [
    // Layer loads [1, 1] and [2, 0]: balancedness 1 and 2, std 0 and 1.
    { name: 'averages 1 and 2', tokens: [[0, 0], [1, 0]], balancedness: 1.5, loadStd: 0.5 },
    // Layer loads [2, 1] and [1, 2]: pooled over layers they would be [3, 3], balancedness 1.
    { name: 'opposite 2:1 splits', tokens: [[0, 1], [0, 1], [1, 0]], balancedness: 4 / 3, loadStd: 0.5 },
    { name: 'steady 2:1 split', tokens: [[0, 0], [0, 0], [1, 1]], balancedness: 4 / 3, loadStd: 0.5 },
  ] as const;

  test.each(layerCases)('$name', ({ tokens, balancedness, loadStd }) => {
    const topology = { nodes: 1, gpusPerNode: 2, slotsPerGpu: 1 };
    const trace = traceOf(
      2,
      tokens.map((layers) => layers.map((expert) => [expert])),
    );

    const result = evaluatePlan(trace, contiguousPlan(topology, 2, 2, 1), 'locality', a100);

    for (const scheme of ['flat', 'hierarchical'] as const) {
      expect(result[scheme].metrics.balancedness).toBeCloseTo(balancedness, 12);
      expect(result[scheme].metrics.loadStd).toBeCloseTo(loadStd, 12);
    }
  });
});

describe('evaluatePlan on a contiguous plan', () => {
  // 2 nodes x 2 GPUs, 8 experts, top-2, expert e on GPU floor(e / 2); token t lives on GPU t mod 4.
  // Layer 0 sends tokens across GPUs and nodes (pairs -> GPUs):
  //   t0 [0, 2] -> 0, 1   t1 [4, 6] -> 2, 3   t2 [0, 5] -> 0, 2   t3 [1, 3] -> 0, 1
  //   t4 [1, 7] -> 0, 3   t5 [4, 5] -> 2, 2   t6 [5, 4] -> 2, 2   t7 [0, 2] -> 0, 1
  // Layer 1 keeps every token on its home GPU: token t selects experts 2h and 2h + 1, h = t mod 4.
  const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 2 };
  const layerZero = [
    [0, 2],
    [4, 6],
    [0, 5],
    [1, 3],
    [1, 7],
    [4, 5],
    [5, 4],
    [0, 2],
  ];
  const trace = traceOf(
    8,
    layerZero.map((experts, t) => [experts, [2 * (t % 4), 2 * (t % 4) + 1]]),
  );
  const plan = contiguousPlan(topology, 8, 2, 2);

  // Over 8 tokens x 2 layers = 16 token-layers and 32 pairs, 5 + 16 = 21 served at home.
  // Flat layer 0: 9 cross-node copies (t1 2, t2 1, t3 2, t4 1, t5 1, t7 2) and 1 intra-node (t0).
  // Hierarchical layer 0: 6 cross-node copies (one per token and remote node) and 6 intra-node
  // (t0's direct copy and five forwards from the rail-aligned proxy GPU).
  const schemeCases = [
    {
      scheme: 'flat',
      crossNodeCopiesPerToken: 9 / 16,
      crossGpuCopiesPerToken: 10 / 16,
      crossNodeBytes: 9 * 4096 * 2,
      intraNodeBytes: 1 * 4096 * 2,
    },
    {
      scheme: 'hierarchical',
      crossNodeCopiesPerToken: 6 / 16,
      crossGpuCopiesPerToken: 12 / 16,
      crossNodeBytes: 6 * 4096 * 2,
      intraNodeBytes: 6 * 4096 * 2,
    },
  ] as const;

  test.each(schemeCases)('$scheme copies, bytes and hits', (expected) => {
    const { metrics, perLayer } = evaluatePlan(trace, plan, 'locality', a100)[expected.scheme];

    expect(metrics.crossNodeCopiesPerToken).toBe(expected.crossNodeCopiesPerToken);
    expect(metrics.crossGpuCopiesPerToken).toBe(expected.crossGpuCopiesPerToken);
    expect(metrics.crossNodeBytes).toBe(expected.crossNodeBytes);
    expect(metrics.intraNodeBytes).toBe(expected.intraNodeBytes);
    expect(metrics.localHitRatio).toBe(21 / 32);
    expect(perLayer.crossNodeBytes).toEqual([expected.crossNodeBytes, 0]);
  });

  test('balance over both layers', () => {
    const { metrics, perLayer } = evaluatePlan(trace, plan, 'locality', a100).flat;

    // Layer 0 loads [5, 3, 6, 2]: balancedness 6 / 4, std sqrt(2.5); layer 1 [4, 4, 4, 4].
    expect(perLayer.gpuLoads).toEqual([
      [5, 3, 6, 2],
      [4, 4, 4, 4],
    ]);
    expect(metrics.balancedness).toBeCloseTo(1.25, 12);
    expect(metrics.loadStd).toBeCloseTo(Math.sqrt(2.5) / 2, 12);
  });

  // Round numbers, not real hardware: 2 bytes per copy, 8 s per NVLink byte, 4 s per network byte,
  // latencies 0.5 s and 3 s, 2 s per pair (6 flops at 3 flop/s), batches of 4 tokens. Layer 0
  // takes 50 + 52 s flat and 39 + 41 s hierarchical over its two batches, as derived in
  // replay.test.ts. Layer 1 has no copies and 2 pairs per GPU, so each batch takes 4 s.
  const toy: CostModel = {
    model: { name: 'toy', hiddenSize: 1, bytesPerElement: 2, expertIntermediateSize: 1 },
    hardware: {
      name: 'toy',
      description: 'round numbers for hand computation',
      intraNodeBytesPerSecondPerGpu: 1 / 8,
      interNodeBytesPerSecondPerGpu: 1 / 4,
      intraNodeLatencySeconds: 0.5,
      interNodeLatencySeconds: 3,
      gpuFlopsPerSecond: 3,
      batchTokensPerGpu: 1,
    },
  };
  const timeCases = [
    // Per batch, layer 0: time 51 s, all-to-all 44 s, idle 14 s; layer 1: 4 s, 0 s, 0 s.
    { scheme: 'flat', perLayerMs: [51_000, 4000], moeLayerTimeMs: 27_500, allToAllTimeMs: 22_000, gpuIdleTimeMs: 7000 },
    // Per batch, layer 0: time 40 s, all-to-all 33 s, idle 3 s; layer 1 as above.
    {
      scheme: 'hierarchical',
      perLayerMs: [40_000, 4000],
      moeLayerTimeMs: 22_000,
      allToAllTimeMs: 16_500,
      gpuIdleTimeMs: 1500,
    },
  ] as const;

  test.each(timeCases)('$scheme times per batch and layer', (expected) => {
    const { metrics, perLayer } = evaluatePlan(trace, plan, 'locality', toy)[expected.scheme];

    expect(perLayer.moeLayerTimeMs[0]).toBeCloseTo(expected.perLayerMs[0], 9);
    expect(perLayer.moeLayerTimeMs[1]).toBeCloseTo(expected.perLayerMs[1], 9);
    expect(metrics.moeLayerTimeMs).toBeCloseTo(expected.moeLayerTimeMs, 9);
    expect(metrics.allToAllTimeMs).toBeCloseTo(expected.allToAllTimeMs, 9);
    expect(metrics.gpuIdleTimeMs).toBeCloseTo(expected.gpuIdleTimeMs, 9);
  });

  test('reports each finished layer', () => {
    const done: number[] = [];

    evaluatePlan(trace, plan, 'locality', a100, { onLayer: (layers) => done.push(layers) });

    expect(done).toEqual([1, 2]);
  });

  test('repeated evaluation gives equal results', () => {
    // Expert 0 has instances on GPUs 0 and 3, and the weighted policy rotates per source GPU. At
    // layer 0, GPUs 0, 2 and 3 each route expert 0 once, an odd count, so round-robin state carried
    // from the first evaluation into the second would change its picks.
    const replicated = planFromSlots({
      strategy: 'test',
      topology: { ...topology, slotsPerGpu: 3 },
      model: { layers: 2, experts: 8, topK: 2 },
      slots: Array.from({ length: 2 }, () => [[0, 1], [2, 3], [4, 5], [6, 7, 0]]),
      inputDigest: 'digest',
    });

    const first = evaluatePlan(trace, replicated, 'weighted', a100);
    const second = evaluatePlan(trace, replicated, 'weighted', a100);

    expect(second).toEqual(first);
    // t0 (home 0) takes GPU 0, t2 (home 2) GPU 0, t7 (home 3) GPU 0: each source's first pick.
    expect(first.flat.perLayer.gpuLoads[0]).toEqual([5, 3, 6, 2]);
  });
});

describe('evaluatePlan input checks', () => {
  test('rejects a plan for another model', () => {
    const trace = traceOf(2, [[[0], [1]]]);
    const plan = contiguousPlan({ nodes: 1, gpusPerNode: 2, slotsPerGpu: 1 }, 2, 1, 1);
    const run = () => evaluatePlan(trace, plan, 'locality', a100);
    expect(run).toThrow(PlanValidationError);
    expect(run).toThrow('model.layers');
  });
});

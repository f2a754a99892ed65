import { describe, expect, test } from 'vitest';

import { LocalityChooser } from '../routing/policy.js';
import { compileRoutingTable } from '../routing/table.js';
import type { ReplicaChooser } from '../routing/types.js';
import { hardwarePreset, MODEL_SHAPES, unitCosts, type UnitCosts } from './cost-model.js';
import { replayLayer, type ReplayInput } from './replay.js';

// 2 nodes x 2 GPUs, 8 experts, one instance each: expert e on GPU floor(e / 2). Token t lives on
// GPU t mod 4, so GPUs 0 and 1 are node 0 and GPUs 2 and 3 node 1.
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 2 };
const table = compileRoutingTable({
  apiVersion: 'grace-moe.io/v1alpha1',
  kind: 'RoutingTable',
  generation: 1,
  topology,
  experts: 8,
  layers: [
    Array.from({ length: 8 }, (_, expert) => {
      const gpu = Math.floor(expert / 2);
      return [{ gpu, node: Math.floor(gpu / 2), weight: 1 }];
    }),
  ],
});

/**
 * Round numbers, not real hardware. One NVLink copy to one peer takes 16 s + 0.5 s, between one
 * network copy (8 s + 3 s) and two network copies to two peers (22 s). So in the cases below the
 * network sets the dispatch time of flat dispatch and NVLink that of hierarchical dispatch.
 */
const toyUnits: UnitCosts = {
  bytesPerCopy: 2,
  secondsPerPair: 2,
  secondsPerIntraByte: 8,
  secondsPerInterByte: 4,
  intraLatency: 0.5,
  interLatency: 3,
};

// Top-2 selections of 8 tokens at one layer, with the GPUs that serve them:
//   t0 home 0: experts 0, 2 -> GPUs 0 (home), 1 (same node)
//   t1 home 1: experts 4, 6 -> GPUs 2, 3 (both on node 1)
//   t2 home 2: experts 0, 5 -> GPUs 0 (node 0), 2 (home)
//   t3 home 3: experts 1, 3 -> GPUs 0, 1 (both on node 0)
//   t4 home 0: experts 1, 7 -> GPUs 0 (home), 3 (node 1)
//   t5 home 1: experts 4, 5 -> GPU 2 twice
//   t6 home 2: experts 5, 4 -> GPU 2 twice (home)
//   t7 home 3: experts 0, 2 -> GPUs 0, 1 (both on node 0)
const eightTokens = [0, 2, 4, 6, 0, 5, 1, 3, 1, 7, 4, 5, 5, 4, 0, 2];

function replay(selections: readonly number[], overrides: Partial<ReplayInput> = {}) {
  return replayLayer({
    selections,
    tokens: selections.length / 2,
    layers: 1,
    topK: 2,
    layer: 0,
    chooserLayer: 0,
    chooser: new LocalityChooser(table),
    nodes: topology.nodes,
    gpusPerNode: topology.gpusPerNode,
    units: toyUnits,
    // 1 token per GPU: batches of 4 tokens, so 8 tokens make two batches.
    batchTokensPerGpu: 1,
    ...overrides,
  });
}

describe('replayLayer counts', () => {
  test('pairs, home hits and GPU loads', () => {
    const result = replay(eightTokens);

    expect(result.pairs).toBe(16);
    // t0, t2 and t4 once each, t6 twice.
    expect(result.homeHits).toBe(5);
    expect(Array.from(result.gpuLoads)).toEqual([5, 3, 6, 2]);
    expect(result.batches).toBe(2);
  });

  // Flat: one copy per (token, non-home GPU). Cross-node copies: t1 2, t2 1, t3 2, t4 1, t5 1,
  // t7 2. Intra-node copies: t0 1.
  // Hierarchical: one network copy per (token, remote node) to the proxy GPU node * 2 + home % 2.
  // NVLink forwards: proxy 3 to GPU 2 for t1 and t5, proxy 1 to GPU 0 for t3 and t7, proxy 2 to
  // GPU 3 for t4. The sixth intra-node copy is t0's direct one.
  const copyCases = [
    { scheme: 'flat', crossNodeCopies: 9, intraNodeCopies: 1 },
    { scheme: 'hierarchical', crossNodeCopies: 6, intraNodeCopies: 6 },
  ] as const;

  test.each(copyCases)('$scheme copies over eight tokens', ({ scheme, crossNodeCopies, intraNodeCopies }) => {
    const totals = replay(eightTokens)[scheme];

    expect(totals.crossNodeCopies).toBe(crossNodeCopies);
    expect(totals.intraNodeCopies).toBe(intraNodeCopies);
  });

  // One token on GPU `home` (earlier tokens select the two experts of their own GPU).
  const singleTokenCases = [
    { name: 'rail proxy forwards', home: 0, experts: [6, 7], flat: [1, 0], hierarchical: [1, 1] },
    { name: 'proxy is destination', home: 1, experts: [6, 7], flat: [1, 0], hierarchical: [1, 0] },
    { name: 'one network copy per node', home: 0, experts: [4, 6], flat: [2, 0], hierarchical: [1, 1] },
    { name: 'home node copy direct', home: 0, experts: [2, 6], flat: [1, 1], hierarchical: [1, 2] },
    { name: 'one copy per GPU', home: 0, experts: [4, 5], flat: [1, 0], hierarchical: [1, 0] },
    { name: 'proxy on node 0', home: 3, experts: [0, 1], flat: [1, 0], hierarchical: [1, 1] },
  ] as const;

  test.each(singleTokenCases)('$name', ({ home, experts, flat, hierarchical }) => {
    const selections: number[] = [];
    for (let t = 0; t < home; t++) selections.push(2 * t, 2 * t + 1);
    selections.push(...experts);

    const result = replay(selections, { batchTokensPerGpu: 2 });

    expect([result.flat.crossNodeCopies, result.flat.intraNodeCopies]).toEqual(flat);
    expect([result.hierarchical.crossNodeCopies, result.hierarchical.intraNodeCopies]).toEqual(hierarchical);
  });
});

describe('replayLayer modelled time', () => {
  // Per GPU, a link's time is max(copies sent, received) x 2 bytes x seconds per byte, plus
  // max(peers sent to, received from) x latency. A GPU's comm time is the larger of its NVLink and
  // network times, and its compute is 2 s per pair.
  // Batch time = 2 x max comm + max compute. Idle = mean over GPUs of (batch - 2 x comm - compute).
  //
  // Batch 0 (t0..t3), compute [6, 4, 4, 2] s:
  //   flat: GPU 0 NVLink 16.5, network 2 copies 2 peers = 22; GPU 1 22; GPU 2 11; GPU 3 22.
  //         time 2 x 22 + 6 = 50; idle (0 + 2 + 24 + 4) / 4 = 7.5
  //   hierarchical: every GPU has 1 NVLink copy and peer (16.5) and 1 network copy and peer (11).
  //         time 2 x 16.5 + 6 = 39; idle (0 + 2 + 2 + 4) / 4 = 2
  // Batch 1 (t4..t7), compute [4, 2, 8, 2] s:
  //   flat: no NVLink copies; network 11, 11, 11, 22. time 2 x 22 + 8 = 52;
  //         idle (26 + 28 + 22 + 6) / 4 = 20.5
  //   hierarchical: every GPU 16.5 NVLink, 11 network. time 2 x 16.5 + 8 = 41;
  //         idle (4 + 6 + 0 + 6) / 4 = 4
  const timeCases = [
    { scheme: 'flat', tokens: 4, layerSeconds: 50, allToAllSeconds: 44, idleSeconds: 7.5 },
    { scheme: 'hierarchical', tokens: 4, layerSeconds: 39, allToAllSeconds: 33, idleSeconds: 2 },
    { scheme: 'flat', tokens: 8, layerSeconds: 102, allToAllSeconds: 88, idleSeconds: 28 },
    { scheme: 'hierarchical', tokens: 8, layerSeconds: 80, allToAllSeconds: 66, idleSeconds: 6 },
  ] as const;

  test.each(timeCases)(
    '$scheme time over $tokens tokens',
    ({ scheme, tokens, layerSeconds, allToAllSeconds, idleSeconds }) => {
      const totals = replay(eightTokens.slice(0, 2 * tokens))[scheme];

      expect(totals.layerSeconds).toBeCloseTo(layerSeconds, 12);
      expect(totals.allToAllSeconds).toBeCloseTo(allToAllSeconds, 12);
      expect(totals.idleSeconds).toBeCloseTo(idleSeconds, 12);
    },
  );

  test('batch 0 on a100-25gbe units', () => {
    const units = unitCosts({ model: MODEL_SHAPES['deepseek-v2-lite']!, hardware: hardwarePreset('a100-25gbe') });
    const result = replay(eightTokens.slice(0, 8), { units });

    const bytes = 4096;
    const interPerByte = 1 / 781_250_000;
    const intraPerByte = 1 / 200e9;
    const compute = 3 * ((6 * 2048 * 1408) / 150e12);
    // Flat: GPUs 0, 1 and 3 each move 2 network copies to or from 2 peers.
    const flatDispatch = 2 * bytes * interPerByte + 2 * 25e-6;
    // Hierarchical: every GPU moves 1 network copy (which beats 1 NVLink copy) with 1 peer.
    const hierarchicalDispatch = Math.max(bytes * interPerByte + 25e-6, bytes * intraPerByte + 5e-6);

    expect(result.flat.layerSeconds).toBeCloseTo(2 * flatDispatch + compute, 15);
    expect(result.hierarchical.layerSeconds).toBeCloseTo(2 * hierarchicalDispatch + compute, 15);
    expect(result.flat.layerSeconds).toBeCloseTo(1.2131755008e-4, 15);
  });

  test('latency once per peer', () => {
    // Batches of 8 tokens hold t0..t4 together. t0 (home 0) sends to GPU 2 and so does t4; t1..t3
    // stay on their own GPU. GPU 0 sends 2 copies to 1 peer: 2 x 2 x 4 + 1 x 3 = 19 s.
    // Compute: GPU 2 serves 2 (t0) + 2 (t2) + 1 (t4) pairs = 10 s. Time 2 x 19 + 10 = 48.
    const selections = [4, 5, 2, 3, 4, 5, 6, 7, 4, 0];
    const result = replay(selections, { batchTokensPerGpu: 2 });

    expect(result.batches).toBe(1);
    expect(result.flat.crossNodeCopies).toBe(2);
    expect(result.flat.layerSeconds).toBeCloseTo(48, 12);
    expect(result.hierarchical.layerSeconds).toBeCloseTo(48, 12);
  });
});

describe('replayLayer chooser calls', () => {
  test('passes home, chooser layer and rank', () => {
    // Layer 1 of a two-layer trace is replayed against a one-layer table, so the chooser gets layer 0.
    const calls: number[][] = [];
    const recorder: ReplicaChooser = {
      choose(sourceGpu, layer, expert, token, rank) {
        calls.push([sourceGpu, layer, expert, token, rank]);
        return sourceGpu;
      },
    };
    // Token 0: layer 0 [1, 2], layer 1 [7, 3]; token 1: layer 0 [4, 5], layer 1 [0, 6].
    const selections = [1, 2, 7, 3, 4, 5, 0, 6];

    const result = replay(selections, { tokens: 2, layers: 2, layer: 1, chooserLayer: 0, chooser: recorder });

    expect(calls).toEqual([
      [0, 0, 7, 0, 1],
      [0, 0, 3, 0, 0],
      [1, 0, 0, 1, 0],
      [1, 0, 6, 1, 1],
    ]);
    expect(result.homeHits).toBe(4);
  });
});

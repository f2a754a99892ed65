import { describe, expect, test } from 'vitest';
import { contiguousPlan } from '../baselines/contiguous.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from '../evaluator/cost-model.js';
import { planFromSlots } from '../plan/build.js';
import { planGrace } from '../planner/grace.js';
import { clusteredTokens, statsOf } from '../planner/test-helpers.js';
import { diffPlans } from './diff.js';
import { gatePlan, layerTimes } from './gate.js';
import { decayFactor, smoothStats } from './smoothing.js';

const cost: CostModel = { model: MODEL_SHAPES['deepseek-v2-lite'], hardware: hardwarePreset('a100-25gbe') };
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 };
const stats = statsOf(16, 2, clusteredTokens({ experts: 16, layers: 3, topK: 2, tokens: 800, clusterSize: 4, skew: 0.8, seed: 3 }));

describe('smoothing', () => {
  test.each([
    { elapsedMs: 0, halfLifeMs: 1000, factor: 1 },
    { elapsedMs: 1000, halfLifeMs: 1000, factor: 0.5 },
    { elapsedMs: 3000, halfLifeMs: 1000, factor: 0.125 },
    { elapsedMs: 500, halfLifeMs: 0, factor: 0 },
  ] as const)('decays by $factor after $elapsedMs ms', ({ elapsedMs, halfLifeMs, factor }) => {
    expect(decayFactor(elapsedMs, halfLifeMs)).toBeCloseTo(factor, 12);
  });

  test('adds the window to the decayed estimate', () => {
    const smoothed = smoothStats(stats, stats, { elapsedMs: 1000, halfLifeMs: 1000, seed: 1 });
    expect(smoothed.tokens).toBeCloseTo(stats.tokens * 1.5, 9);
    expect(smoothed.perLayer[0].loads[3]).toBeCloseTo(stats.perLayer[0].loads[3] * 1.5, 9);
  });

  test('starts from the first window', () => {
    expect(smoothStats(null, stats, { elapsedMs: 0, halfLifeMs: 1000, seed: 1 })).toBe(stats);
  });
});

describe('diffPlans', () => {
  test('lists added and removed instances per GPU', () => {
    const model = { layers: 1, experts: 4, topK: 1 };
    const shape = { nodes: 1, gpusPerNode: 2, slotsPerGpu: 3 };
    const from = planFromSlots({ strategy: 'a', topology: shape, model, slots: [[[0, 1], [2, 3]]], inputDigest: 'x' });
    const to = planFromSlots({ strategy: 'b', topology: shape, model, slots: [[[0, 2], [2, 3, 1]]], inputDigest: 'x' });
    const diff = diffPlans(from, to);
    expect(diff.added).toEqual([
      { layer: 0, gpu: 0, expert: 2 },
      { layer: 0, gpu: 1, expert: 1 },
    ]);
    expect(diff.removed).toEqual([{ layer: 0, gpu: 0, expert: 1 }]);
    expect(diff.movesPerLayer).toEqual([2]);
  });
});

describe('gatePlan', () => {
  const loads = stats.perLayer.map((layer) => layer.loads);
  const active = contiguousPlan(loads, topology, { topK: 2, generation: 1 });
  const candidate = planGrace(stats, { topology, cost, generation: 2 });

  test('applies a clearly better plan', () => {
    const decision = gatePlan(active, candidate, stats, { cost, dispatch: 'hierarchical', minGain: 0.01, maxMoves: 1000 });
    expect(decision.apply).toBe(true);
    expect(decision.nextTimeMs).toBeLessThan(decision.activeTimeMs);
    expect(decision.adoptedLayers.length).toBeGreaterThan(0);
    expect(decision.plan.generation).toBe(2);
  });

  test('keeps the active plan below the minimum gain', () => {
    const decision = gatePlan(active, candidate, stats, { cost, dispatch: 'hierarchical', minGain: 0.99, maxMoves: 1000 });
    expect(decision.apply).toBe(false);
    expect(decision.reason).toContain('below the minimum');
  });

  test('caps the moves by adopting whole layers', () => {
    const { movesPerLayer } = diffPlans(active, candidate);
    const cap = Math.min(...movesPerLayer);
    const decision = gatePlan(active, candidate, stats, { cost, dispatch: 'hierarchical', minGain: 0, maxMoves: cap });
    expect(decision.moves).toBeLessThanOrEqual(cap);
    expect(decision.adoptedLayers).toHaveLength(1);
    const diff = diffPlans(active, decision.plan);
    expect(diff.added.length).toBe(decision.moves);
    expect(decision.plan.predicted).toBeUndefined();
  });

  test('a plan gated against itself is not applied', () => {
    const decision = gatePlan(candidate, candidate, stats, { cost, dispatch: 'flat', minGain: 0, maxMoves: 1000 });
    expect(decision.apply).toBe(false);
    expect(decision.moves).toBe(0);
  });

  test('layer times are positive per layer', () => {
    const times = layerTimes(active, stats, cost, 'flat');
    expect(times).toHaveLength(3);
    for (const time of times) expect(time).toBeGreaterThan(0);
  });
});

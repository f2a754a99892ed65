import { describe, expect, test } from 'vitest';
import { LayerPlacement } from './placement.js';
import { LoadPredictor, type CostRates } from './predict.js';
import { fillSpareSlots, paperReplication } from './replicate.js';

const rates: CostRates = { perPair: 1, perInterCopy: 10, perIntraCopy: 2, scheme: 'flat' };

function build(shape: { nodes: number; gpusPerNode: number; slotsPerGpu: number }, slots: readonly (readonly number[])[], loads: readonly number[]) {
  const placement = new LayerPlacement({ experts: loads.length, ...shape });
  slots.forEach((list, gpu) => list.forEach((expert) => placement.add(gpu, expert)));
  return { placement, predictor: new LoadPredictor(placement, loads, rates) };
}

describe('paperReplication', () => {
  test('replicates the heaviest GPU prefix onto the least-loaded GPUs', () => {
    // GPU loads 60, 20, 20, 20: rho = 2, so n = 2 replicas of the prefix reaching 60 x 2/3 = 40,
    // which is expert 0 alone, on GPUs 1 and 2 (the least loaded, ties to the lower index).
    const loads = [40, 20, 10, 10, 10, 10, 10, 10];
    const { placement, predictor } = build({ nodes: 1, gpusPerNode: 4, slotsPerGpu: 3 }, [[0, 1], [2, 3], [4, 5], [6, 7]], loads);
    const added = paperReplication(placement, predictor, loads);
    expect(added).toBe(2);
    expect(placement.instancesOf(0)).toEqual([0, 1, 2]);
    expect(placement.slots[3]).toEqual([6, 7]);
  });

  test('caps replicas at GPUs minus one', () => {
    // One expert carries everything: rho = 4 on 4 GPUs, but at most 3 replicas fit.
    const loads = [100, 0, 0, 0];
    const { placement, predictor } = build({ nodes: 2, gpusPerNode: 2, slotsPerGpu: 2 }, [[0], [1], [2], [3]], loads);
    expect(paperReplication(placement, predictor, loads)).toBe(3);
    expect(placement.instancesOf(0)).toEqual([0, 1, 2, 3]);
  });
});

describe('fillSpareSlots', () => {
  const loads = [50, 30, 10, 10, 5, 5, 5, 5];
  const primaries = [[0, 4], [1, 5], [2, 6], [3, 7]];

  test('fills every slot without duplicates', () => {
    const { placement, predictor } = build({ nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 }, primaries, loads);
    expect(fillSpareSlots(placement, predictor, loads)).toBe(8);
    expect(placement.totalFree()).toBe(0);
    for (const slots of placement.slots) expect(new Set(slots).size).toBe(slots.length);
  });

  test('gives the hottest expert an instance on the other node', () => {
    const { placement, predictor } = build({ nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 }, primaries, loads);
    fillSpareSlots(placement, predictor, loads, 1);
    expect(placement.instancesOf(0).map((gpu) => placement.nodeOf(gpu))).toEqual([0, 1]);
  });

  test('stops at the limit', () => {
    const { placement, predictor } = build({ nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 }, primaries, loads);
    expect(fillSpareSlots(placement, predictor, loads, 3)).toBe(3);
    expect(placement.totalFree()).toBe(5);
  });
});

import { describe, expect, test } from 'vitest';
import { LayerPlacement } from './placement.js';
import { LoadPredictor, type CostRates } from './predict.js';

const rates: CostRates = { perPair: 1, perInterCopy: 10, perIntraCopy: 2, scheme: 'flat' };

function placement2x2(slots: readonly (readonly number[])[], experts: number): LayerPlacement {
  const placement = new LayerPlacement({ experts, nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 });
  slots.forEach((list, gpu) => list.forEach((expert) => placement.add(gpu, expert)));
  return placement;
}

describe('LoadPredictor', () => {
  // Expert 0 (load 8) has an instance on each node; expert 1 (load 4) lives only on GPU 1.
  const slots = [[0], [1], [0], []];

  test('splits load by locality tier', () => {
    const predictor = new LoadPredictor(placement2x2(slots, 2), [8, 4], rates);
    // Expert 0: every GPU sends 2; GPUs 0 and 2 serve themselves and their node neighbour.
    // Expert 1: GPUs 0 and 1 send 1 each locally; node 1 sends 2 across the network.
    expect(Array.from(predictor.load)).toEqual([4, 4, 4, 0]);
    expect(Array.from(predictor.localIn)).toEqual([2, 1, 2, 0]);
    expect(Array.from(predictor.remoteIn)).toEqual([0, 2, 0, 0]);
    expect(Array.from(predictor.nodeRemoteIn)).toEqual([2, 0]);
  });

  test('flat cost adds compute, network and NVLink time', () => {
    const predictor = new LoadPredictor(placement2x2(slots, 2), [8, 4], rates);
    expect(predictor.cost(1)).toBe(4 * 1 + 2 * 10 + 1 * 2);
    expect(predictor.cost(0)).toBe(4 * 1 + 2 * 2);
  });

  test('hierarchical cost spreads network arrivals over the node', () => {
    const predictor = new LoadPredictor(placement2x2(slots, 2), [8, 4], { ...rates, scheme: 'hierarchical' });
    // Node 0 receives 2 pairs from node 1, shared by its 2 GPUs; GPU 1 forwards 3 over NVLink.
    expect(predictor.cost(1)).toBe(4 + (2 / 2) * 10 + 3 * 2);
    expect(predictor.cost(0)).toBe(4 + (2 / 2) * 10 + 2 * 2);
  });

  test('adding and removing an instance restores the prediction', () => {
    const placement = placement2x2(slots, 2);
    const predictor = new LoadPredictor(placement, [8, 4], rates);
    const before = Array.from(predictor.load);
    placement.add(3, 1);
    predictor.instanceAdded(1, 3);
    expect(Array.from(predictor.remoteIn)).toEqual([0, 0, 0, 0]);
    expect(Array.from(predictor.load)).toEqual([4, 2, 4, 2]);
    placement.remove(3, 1);
    predictor.instanceRemoved(1, 3);
    expect(Array.from(predictor.load)).toEqual(before);
  });

  test('settled weights shift remote load to the cheaper instance', () => {
    // Expert 0 has instances on GPUs 0 and 1 of node 0; GPU 0 also serves the hot expert 1.
    // Node 1 has no instance of expert 0, so its tokens split by weight.
    const placement = placement2x2([[0, 1], [0], [2], [3]], 4);
    const predictor = new LoadPredictor(placement, [8, 16, 1, 1], rates);
    const rounds = predictor.settleWeights();
    const [heavy, light] = predictor.weightsOf(0);
    expect(rounds).toBeGreaterThan(1);
    expect(light).toBeGreaterThan(heavy);
    // Node 1 sends 4 pairs of expert 0 across the network; most of them now go to GPU 1.
    expect(predictor.remoteIn[1]).toBeGreaterThan(2);
    expect(predictor.remoteIn[0] + predictor.remoteIn[1]).toBeCloseTo(4 + 8, 9);
  });
});

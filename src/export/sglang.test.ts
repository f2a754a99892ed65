import { describe, expect, test } from 'vitest';

import { eplbPlan } from '../baselines/eplb.js';
import { PlanValidationError, StatsFormatError, UsageError } from '../errors.js';
import { planFromSlots } from '../plan/build.js';
import type { Plan } from '../plan/types.js';
import { exportSglang, sglangServerArgs } from './sglang.js';

const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 4 };

/** Twelve experts on 2x2 GPUs with four slots each: three experts per GPU, one free slot each. */
function underFilledPlan(): Plan {
  const slots = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]];
  return planFromSlots({
    strategy: 'contiguous',
    topology,
    model: { layers: 2, experts: 12, topK: 2 },
    slots: [slots, slots],
    inputDigest: 'digest',
  });
}

function gpuRows(row: readonly number[], slotsPerGpu: number): number[][] {
  const rows: number[][] = [];
  for (let start = 0; start < row.length; start += slotsPerGpu) {
    rows.push(row.slice(start, start + slotsPerGpu));
  }
  return rows;
}

describe('exportSglang', () => {
  test('writes only the physical-to-logical map', () => {
    expect(Object.keys(exportSglang(underFilledPlan()))).toEqual(['physical_to_logical_map']);
  });

  test('pads free slots with the lowest id the GPU lacks', () => {
    const map = exportSglang(underFilledPlan()).physical_to_logical_map;

    expect(map).toHaveLength(2);
    expect(map[0]).toEqual([0, 1, 2, 3, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0]);
    expect(map[1]).toEqual(map[0]);
  });

  test('pads free slots with the most load per instance', () => {
    // Expert 11 (100) pads GPUs 0 and 1, which leaves it 33.3 per instance, so expert 5 (50) pads
    // GPU 2; GPU 3 already holds 11, and expert 5 (25) still beats the experts at load 1.
    const hot = Array.from({ length: 12 }, () => 1);
    hot[11] = 100;
    hot[5] = 50;

    const map = exportSglang(underFilledPlan(), { loads: [hot, hot] }).physical_to_logical_map;

    expect(map[0]).toEqual([0, 1, 2, 11, 3, 4, 5, 11, 6, 7, 8, 5, 9, 10, 11, 5]);
  });

  test('never pads a GPU with an expert it holds', () => {
    const hot = Array.from({ length: 12 }, (_, expert) => (expert === 1 ? 1000 : 1));
    const map = exportSglang(underFilledPlan(), { loads: [hot, hot] }).physical_to_logical_map;

    for (const row of map) {
      for (const held of gpuRows(row, topology.slotsPerGpu)) {
        expect(held).toHaveLength(4);
        expect(new Set(held).size).toBe(4);
      }
    }
  });

  test('repeats an expert only when the GPU holds every expert', () => {
    const plan = planFromSlots({
      strategy: 'small',
      topology: { nodes: 1, gpusPerNode: 2, slotsPerGpu: 3 },
      model: { layers: 1, experts: 2, topK: 1 },
      slots: [[[0, 1], [1]]],
      inputDigest: 'digest',
    });

    expect(exportSglang(plan).physical_to_logical_map).toEqual([[0, 1, 0, 1, 0, 0]]);
  });

  test('maps every physical slot to a valid logical expert', () => {
    const loads = [[90, 10, 40, 20, 60, 5, 30, 25], [1, 2, 3, 4, 5, 6, 7, 8]];
    const plan = eplbPlan(loads, { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 }, { topK: 2, policy: 'hierarchical' });

    const map = exportSglang(plan).physical_to_logical_map;

    expect(map).toHaveLength(2);
    map.forEach((row, layer) => {
      expect(row).toHaveLength(12);
      expect(row.every((expert) => Number.isInteger(expert) && expert >= 0 && expert < 8)).toBe(true);
      expect(new Set(row).size).toBe(8);
      expect(gpuRows(row, 3)).toEqual(plan.layers[layer]!.slots);
    });
  });

  test('places plan layers at their model layer ids', () => {
    const map = exportSglang(underFilledPlan(), { moeLayerIds: [1, 3], modelLayers: 5 }).physical_to_logical_map;
    const trivial = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3];
    const padded = [0, 1, 2, 3, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0];

    expect(map).toEqual([trivial, padded, trivial, padded, trivial]);
  });

  test('defaults the row count to the highest layer id plus one', () => {
    const map = exportSglang(underFilledPlan(), { moeLayerIds: [1, 2] }).physical_to_logical_map;

    expect(map).toHaveLength(3);
  });

  test('does not change the plan', () => {
    const plan = underFilledPlan();
    exportSglang(plan);

    expect(plan.layers[0]!.slots[0]).toEqual([0, 1, 2]);
  });

  test.each([
    ['too few layer ids', { moeLayerIds: [1] }, UsageError, 'moeLayerIds'],
    ['decreasing layer ids', { moeLayerIds: [2, 1] }, UsageError, 'moeLayerIds'],
    ['too few model layers', { moeLayerIds: [1, 2], modelLayers: 2 }, UsageError, 'modelLayers'],
    ['loads of the wrong length', { loads: [[1, 2]] }, StatsFormatError, 'loads'],
    ['a NaN load', { loads: [new Array(12).fill(1), [NaN, ...new Array(11).fill(1)]] }, StatsFormatError, 'loads[1][0]'],
  ] as const)('rejects %s', (_name, options, errorClass, text) => {
    expect(() => exportSglang(underFilledPlan(), options)).toThrow(errorClass);
    expect(() => exportSglang(underFilledPlan(), options)).toThrow(text);
  });

  test('rejects an invalid plan', () => {
    const plan = planFromSlots({
      strategy: 'broken',
      topology,
      model: { layers: 1, experts: 12, topK: 2 },
      slots: [[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]],
      inputDigest: 'digest',
    });

    expect(() => exportSglang(plan)).toThrow(PlanValidationError);
  });
});

describe('sglangServerArgs', () => {
  test('returns the matching expert-parallel flags', () => {
    expect(sglangServerArgs(underFilledPlan(), 'plan.json')).toEqual([
      '--ep-size',
      '4',
      '--ep-num-redundant-experts',
      '4',
      '--init-expert-location',
      'plan.json',
    ]);
  });
});

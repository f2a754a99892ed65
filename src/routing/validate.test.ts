import { describe, expect, test } from 'vitest';
import { FormatVersionError, PlanValidationError } from '../errors.js';
import { contiguousPlan } from '../baselines/contiguous.js';
import { planToJson } from '../plan/json.js';
import { smallTable } from '../router/test-tables.js';
import { parseRoutingTable, parseTableDocument, routingTableToJson } from './validate.js';

/** smallTable(1) as plain JSON with one change applied. */
function edited(change: (table: Record<string, unknown>) => void): unknown {
  const table = JSON.parse(JSON.stringify(smallTable(1))) as Record<string, unknown>;
  change(table);
  return table;
}

describe('parseRoutingTable', () => {
  test('accepts a valid table and copies it', () => {
    const source = smallTable(3);
    const parsed = parseRoutingTable(JSON.parse(JSON.stringify(source)));

    expect(parsed).toEqual(source);
    expect(routingTableToJson(parsed)).toEqual(source);
  });

  const invalid = [
    ['an unknown kind', (t: Record<string, unknown>) => (t.kind = 'PlacementPlan'), FormatVersionError, 'kind must be "RoutingTable"'],
    ['a negative generation', (t: Record<string, unknown>) => (t.generation = -1), PlanValidationError, 'generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got -1'],
    ['a generation above u32', (t: Record<string, unknown>) => (t.generation = 4294967296), PlanValidationError, 'generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got 4294967296'],
    ['a generation of 2^53', (t: Record<string, unknown>) => (t.generation = 2 ** 53), PlanValidationError, 'generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got 9007199254740992'],
    ['a fractional generation', (t: Record<string, unknown>) => (t.generation = 1.5), PlanValidationError, 'generation: must be an integer in [0, 4294967295]'],
    ['zero nodes', (t: Record<string, unknown>) => ((t.topology as Record<string, number>).nodes = 0), PlanValidationError, 'topology.nodes: must be a positive integer, got 0'],
    ['no layers', (t: Record<string, unknown>) => (t.layers = []), PlanValidationError, 'layers: must list at least one layer'],
    ['a NaN-like weight', (t: Record<string, unknown>) => ((t.layers as { weight: unknown }[][][])[0]![2]![0]!.weight = 'NaN'), PlanValidationError, 'layers[0][2][0].weight: must be a number, got "NaN"'],
    ['an infinite weight', (t: Record<string, unknown>) => ((t.layers as { weight: unknown }[][][])[0]![2]![0]!.weight = Infinity), PlanValidationError, 'layers[0][2][0].weight: must be a finite number greater than 0, got Infinity'],
    ['a GPU over its slots', (t: Record<string, unknown>) => ((t.topology as Record<string, number>).slotsPerGpu = 2), PlanValidationError, 'GPU 2 would hold 3 instances in this layer, more than its 2 slots'],
    ['an unknown instance field', (t: Record<string, unknown>) => ((t.layers as Record<string, unknown>[][][])[0]![0]![0]!.slot = 1), PlanValidationError, 'layers[0][0][0].slot: is not a known field'],
  ] as const;

  test.each(invalid)('rejects %s', (_name, change, errorClass, message) => {
    const document = edited(change);

    expect(() => parseRoutingTable(document)).toThrow(errorClass);
    expect(() => parseRoutingTable(document)).toThrow(message);
  });

  test('accepts the largest u32 generation', () => {
    const document = edited((t) => (t.generation = 4294967295));

    expect(parseRoutingTable(document).generation).toBe(4294967295);
  });
});

describe('parseTableDocument', () => {
  test('converts a placement plan', () => {
    const plan = contiguousPlan([new Float64Array(4)], { nodes: 2, gpusPerNode: 1, slotsPerGpu: 2 }, { topK: 2, generation: 8 });
    const table = parseTableDocument(JSON.parse(JSON.stringify(planToJson(plan))));

    expect(table.generation).toBe(8);
    expect(table.layers[0]!.map((instances) => instances.map((instance) => instance.gpu))).toEqual([[0], [0], [1], [1]]);
  });

  test('merges two instances of one expert on one GPU and sums their weights', () => {
    const plan = contiguousPlan([new Float64Array(2)], { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 }, { topK: 1, generation: 3 });
    const document = JSON.parse(JSON.stringify(planToJson(plan))) as { layers: { slots: number[][]; weights: number[][] }[] };
    document.layers[0] = { slots: [[0, 0], [1, 0]], weights: [[0.5, 0.25], [1, 2]] };

    const table = parseTableDocument(document);

    expect(table.layers[0]).toEqual([
      [{ gpu: 0, node: 0, weight: 0.75 }, { gpu: 1, node: 0, weight: 2 }],
      [{ gpu: 1, node: 0, weight: 1 }],
    ]);
  });

  test('rejects a plan whose generation does not fit in u32', () => {
    const plan = contiguousPlan([new Float64Array(4)], { nodes: 2, gpusPerNode: 1, slotsPerGpu: 2 }, { topK: 2, generation: 2 ** 32 });

    const document = JSON.parse(JSON.stringify(planToJson(plan)));

    expect(() => parseTableDocument(document)).toThrow(PlanValidationError);
    expect(() => parseTableDocument(document)).toThrow(/generation: .*4294967295.*got 4294967296/);
  });
});

import { beforeAll, describe, expect, test } from 'vitest';
import { compareStrategies } from './compare.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from './evaluator/cost-model.js';
import { defaultTracePath } from './trace/default.js';
import { readTrace } from './trace/read.js';
import { parseSplit, splitTrace, subsetTrace } from './trace/split.js';
import type { TraceSplit } from './trace/types.js';

const cost: CostModel = { model: MODEL_SHAPES['deepseek-v2-lite'], hardware: hardwarePreset('a100-25gbe') };
let split: TraceSplit;

beforeAll(async () => {
  const trace = await readTrace(defaultTracePath(), { maxTokens: 2000 });
  split = splitTrace(subsetTrace(trace, Array.from({ length: 2000 }, (_, t) => t)), parseSplit('0.5'));
});

describe('compareStrategies', () => {
  test('leaves out hierarchical EPLB when nodes do not divide the experts', async () => {
    const result = await compareStrategies({ split, topology: { nodes: 3, gpusPerNode: 2, slotsPerGpu: 12 }, cost, preset: 'a100-25gbe', sampleCapacity: 512 });
    const names = new Set(result.strategies.map((strategy) => strategy.name));
    expect(names.has('eplb-hierarchical')).toBe(false);
    expect(names.has('eplb')).toBe(true);
    expect(names.has('grace')).toBe(true);
    expect(result.notes).toHaveLength(1);
    expect(result.notes?.[0]).toContain('eplb-hierarchical left out');
  });

  test('stops when the signal aborts', async () => {
    const controller = new AbortController();
    const run = compareStrategies({
      split,
      topology: { nodes: 2, gpusPerNode: 4, slotsPerGpu: 9 },
      cost,
      preset: 'a100-25gbe',
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.phase === 'plan') controller.abort(new Error('interrupted'));
      },
    });
    await expect(run).rejects.toThrow('interrupted');
  });
});

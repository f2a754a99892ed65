/**
 * End-to-end suite of `grace-moe plan` and `grace-moe export` on the shipped DeepSeek-V2-Lite trace
 * (64 experts, 26 MoE layers; model layer 0 is dense). Plans are computed at 2x4 with one
 * redundant slot per GPU (9 slots, 72 physical experts) and exported as SGLang's expert-location
 * file.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePlan } from '../src/plan/json.js';
import type { Plan } from '../src/plan/types.js';
import { requireBuiltCli, runCliProcess, type CliRun } from './support/cli-process.js';

const RUN_TIMEOUT_MS = 120_000;
const GPUS = 8;
const SLOTS_PER_GPU = 9;
const EXPERTS = 64;
const MOE_LAYERS = 26;

let workDir = '';

beforeAll(async () => {
  requireBuiltCli();
  workDir = await mkdtemp(join(tmpdir(), 'grace-moe-plan-export-'));
});

afterAll(async () => {
  if (workDir !== '') {
    await rm(workDir, { recursive: true, force: true });
  }
});

/** Runs `plan` at 2x4 with one redundant slot and returns the run and the written file's path. */
async function planAt2x4(strategy: string, file: string): Promise<{ run: CliRun; path: string }> {
  const path = join(workDir, file);
  const run = await runCliProcess(['plan', '--topology', '2x4', '--redundant-slots', '1', '--strategy', strategy, '-o', path]);
  return { run, path };
}

/** Runs `export` for DeepSeek-V2-Lite (first MoE layer 1) and returns the run and the output path. */
async function exportPlan(planPath: string, file: string): Promise<{ run: CliRun; path: string }> {
  const path = join(workDir, file);
  const run = await runCliProcess(['export', '--plan', planPath, '--format', 'sglang', '--first-moe-layer', '1', '-o', path]);
  return { run, path };
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8')) as unknown;
}

/** Checks the plan's shape and invariants directly, without relying on the validator. */
function expectPlacement(plan: Plan, options: { duplicatesAllowed: boolean }): void {
  expect(plan.topology).toEqual({ nodes: 2, gpusPerNode: 4, slotsPerGpu: SLOTS_PER_GPU });
  expect(plan.model).toEqual({ layers: MOE_LAYERS, experts: EXPERTS, topK: 6 });
  expect(plan.layers).toHaveLength(MOE_LAYERS);

  plan.layers.forEach((layer, index) => {
    expect(layer.slots, `layer ${index} GPUs`).toHaveLength(GPUS);
    const covered = new Set<number>();
    layer.slots.forEach((experts, gpu) => {
      expect(experts.length, `layer ${index} GPU ${gpu} instances`).toBeLessThanOrEqual(SLOTS_PER_GPU);
      if (!options.duplicatesAllowed) {
        expect(new Set(experts).size, `layer ${index} GPU ${gpu} distinct experts`).toBe(experts.length);
      }
      for (const expert of experts) covered.add(expert);
    });
    expect(covered.size, `layer ${index} experts with an instance`).toBe(EXPERTS);
    expect(Math.min(...covered), `layer ${index} lowest expert`).toBe(0);
    expect(Math.max(...covered), `layer ${index} highest expert`).toBe(EXPERTS - 1);
  });
}

/**
 * Checks an SGLang map for a plan exported with --first-moe-layer 1. Row 0 (the dense layer) maps
 * physical expert p to p mod 64. Row l + 1 lists plan layer l GPU by GPU: every GPU's slots first,
 * then padding with experts the GPU does not hold.
 */
function expectSglangMap(location: unknown, plan: Plan): void {
  expect(Object.keys(location as object)).toEqual(['physical_to_logical_map']);
  const map = (location as { physical_to_logical_map: number[][] }).physical_to_logical_map;
  expect(map).toHaveLength(MOE_LAYERS + 1);
  map.forEach((row, index) => expect(row, `row ${index}`).toHaveLength(GPUS * SLOTS_PER_GPU));

  expect(map[0]).toEqual(Array.from({ length: GPUS * SLOTS_PER_GPU }, (_, physical) => physical % EXPERTS));

  plan.layers.forEach((layer, index) => {
    const row = map[index + 1] ?? [];
    layer.slots.forEach((experts, gpu) => {
      const gpuRow = row.slice(gpu * SLOTS_PER_GPU, (gpu + 1) * SLOTS_PER_GPU);
      expect(gpuRow.slice(0, experts.length), `row ${index + 1} GPU ${gpu}`).toEqual([...experts]);
      const padding = gpuRow.slice(experts.length);
      for (const expert of padding) {
        expect(experts, `row ${index + 1} GPU ${gpu} padding ${expert}`).not.toContain(expert);
        expect(Number.isInteger(expert), `padding ${expert} is an integer`).toBe(true);
        expect(expert).toBeGreaterThanOrEqual(0);
        expect(expert).toBeLessThan(EXPERTS);
      }
      expect(new Set(padding).size, `row ${index + 1} GPU ${gpu} distinct padding`).toBe(padding.length);
    });
  });
}

describe('grace plan exported for SGLang', () => {
  let planRun: CliRun;
  let exportRun: CliRun;
  let plan: Plan;
  let location: unknown;
  let planPath = '';

  beforeAll(async () => {
    const planned = await planAt2x4('grace', 'plan.json');
    planRun = planned.run;
    planPath = planned.path;
    expect(planRun.stderr).not.toContain('internal error');
    expect(planRun.code).toBe(0);
    plan = parsePlan(await readJson(planPath));

    const exported = await exportPlan(planPath, 'loc.json');
    exportRun = exported.run;
    expect(exportRun.stderr).not.toContain('internal error');
    expect(exportRun.code).toBe(0);
    location = await readJson(exported.path);
  }, RUN_TIMEOUT_MS);

  test('plan writes the file, not stdout', () => {
    expect(planRun.stdout).toBe('');
    expect(planRun.stderr).toContain(`plan (grace, generation 1) written to ${planPath}`);
  });

  test('plan places every expert within the slots', () => {
    expect(plan.strategy).toBe('grace');
    expect(plan.generation).toBe(1);
    expectPlacement(plan, { duplicatesAllowed: false });
  });

  test('export maps every layer GPU by GPU', () => {
    expectSglangMap(location, plan);
  });

  test('export prints the matching SGLang flags', () => {
    expect(exportRun.stdout).toBe('');
    expect(exportRun.stderr).toContain('--ep-size 8 --ep-num-redundant-experts 8 --init-expert-location');
  });

  test(
    'export rejects a plan missing an expert',
    async () => {
      const document = (await readJson(planPath)) as {
        layers: { slots: number[][]; weights: number[][] }[];
      };
      const layer = document.layers[3];
      const removed = layer?.slots[0]?.[0];
      if (layer === undefined || removed === undefined) {
        throw new Error('the plan has no expert on GPU 0 in layer 3');
      }
      // Drop every instance of one expert, with its weight, so only the coverage rule is broken.
      layer.slots.forEach((experts, gpu) => {
        const weights = layer.weights[gpu] ?? [];
        const remaining = experts
          .map((expert, slot) => ({ expert, weight: weights[slot] ?? 1 }))
          .filter((entry) => entry.expert !== removed);
        layer.slots[gpu] = remaining.map((entry) => entry.expert);
        layer.weights[gpu] = remaining.map((entry) => entry.weight);
      });
      const corruptPath = join(workDir, 'corrupt-plan.json');
      await writeFile(corruptPath, JSON.stringify(document));

      const exported = await exportPlan(corruptPath, 'corrupt-loc.json');

      expect(exported.run.code).toBe(2);
      expect(exported.run.stdout).toBe('');
      expect(exported.run.stderr).toContain('layers[3].slots');
      expect(exported.run.stderr).toContain(`expert ${removed} has no instance`);
      await expect(readFile(exported.path, 'utf8')).rejects.toThrow(/ENOENT/);
    },
    RUN_TIMEOUT_MS,
  );
});

describe('baseline plans', () => {
  test.each([
    { strategy: 'eplb', recorded: 'eplb-global', duplicatesAllowed: true },
    { strategy: 'contiguous', recorded: 'contiguous', duplicatesAllowed: false },
  ] as const)(
    '$strategy plan is valid and exports',
    async ({ strategy, recorded, duplicatesAllowed }) => {
      const planned = await planAt2x4(strategy, `${strategy}.json`);
      expect(planned.run.stderr).not.toContain('internal error');
      expect(planned.run.code).toBe(0);
      // Published EPLB can put two instances of one expert on one GPU; the plan keeps them.
      const plan = parsePlan(await readJson(planned.path), { allowDuplicateInstances: duplicatesAllowed });
      expect(plan.strategy).toBe(recorded);
      expectPlacement(plan, { duplicatesAllowed });

      const exported = await exportPlan(planned.path, `${strategy}-loc.json`);
      expect(exported.run.code).toBe(0);
      expectSglangMap(await readJson(exported.path), plan);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    'contiguous plan gives GPU g experts 8g to 8g+7',
    async () => {
      const planned = await planAt2x4('contiguous', 'contiguous-layout.json');
      expect(planned.run.code).toBe(0);
      const plan = parsePlan(await readJson(planned.path));

      const expected = Array.from({ length: GPUS }, (_, gpu) => Array.from({ length: 8 }, (_, slot) => 8 * gpu + slot));
      plan.layers.forEach((layer, index) => expect(layer.slots, `layer ${index}`).toEqual(expected));
    },
    RUN_TIMEOUT_MS,
  );
});

/**
 * Export of a plan as SGLang's expert-location file, the JSON that `--init-expert-location` reads.
 *
 * The file contains one key, `physical_to_logical_map`: one row per model layer, and in each row the
 * logical expert of every physical expert. Physical expert p lives on expert-parallel rank
 * floor(p / slotsPerGpu), so GPU g's slot s is physical expert g * slotsPerGpu + s. SGLang passes
 * the file's keys as keyword arguments to its mapping constructor, so any other key fails at
 * start-up. It also needs the same number of physical experts on every rank and
 * `--ep-num-redundant-experts` equal to the physical count minus the logical count.
 */
import { StatsFormatError, UsageError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import { validatePlan } from '../plan/validate.js';
import { gpuCount } from '../topology.js';

export interface SglangExportOptions {
  /**
   * loads[layer][expert]: profile token counts, one row per plan layer. When given, padding goes to
   * the expert with the highest load per instance, otherwise to the lowest id the GPU lacks.
   */
  readonly loads?: readonly ArrayLike<number>[];
  /**
   * Model layer index of every plan layer (DeepSeek-V2-Lite: 1 to 26, layer 0 is dense). SGLang
   * indexes rows by model layer, so models with dense layers need this. Defaults to 0, 1, 2, ...
   */
  readonly moeLayerIds?: readonly number[];
  /**
   * Rows of the map: the model's total layer count (`num_hidden_layers`). Defaults to the highest
   * MoE layer id plus one. Rows of layers without a plan layer get SGLang's trivial mapping,
   * physical expert p to logical expert p mod experts.
   */
  readonly modelLayers?: number;
}

/** The JSON document SGLang's `--init-expert-location` loads. */
export interface SglangExpertLocation {
  /** physical_to_logical_map[modelLayer][physicalExpert] = logical expert id. */
  readonly physical_to_logical_map: number[][];
}

/**
 * Converts a plan to SGLang's expert-location document. Duplicate instances on one GPU are
 * accepted, because SGLang loads them (EPLB produces them). A GPU holding fewer than slotsPerGpu
 * instances is padded, because SGLang needs full ranks: each free slot gets a replica of an expert
 * the GPU does not hold yet, chosen as documented on `loads`. Throws PlanValidationError for an
 * invalid plan, StatsFormatError for malformed loads and UsageError for inconsistent layer options.
 */
export function exportSglang(plan: Plan, options: SglangExportOptions = {}): SglangExpertLocation {
  validatePlan(plan, { allowDuplicateInstances: true });
  const { experts } = plan.model;
  const gpus = gpuCount(plan.topology);
  const physical = gpus * plan.topology.slotsPerGpu;

  const layerIds = resolveLayerIds(plan, options);
  const rows = options.modelLayers ?? Math.max(...layerIds) + 1;
  if (!Number.isInteger(rows) || rows <= Math.max(...layerIds)) {
    throw new UsageError(
      `modelLayers must be an integer greater than the highest MoE layer id (${Math.max(...layerIds)}), got ${rows}`,
    );
  }
  validateLoads(plan, options.loads);

  const trivialRow = Array.from({ length: physical }, (_, instance) => instance % experts);
  const map = Array.from({ length: rows }, () => trivialRow.slice());
  plan.layers.forEach((layer, layerIndex) => {
    const padded = padLayer(layer.slots, plan.topology.slotsPerGpu, experts, options.loads?.[layerIndex]);
    map[layerIds[layerIndex] ?? layerIndex] = padded.flat();
  });

  return { physical_to_logical_map: map };
}

/** Returns the SGLang server flags that match an exported plan written to `file`. */
export function sglangServerArgs(plan: Plan, file: string): string[] {
  const gpus = gpuCount(plan.topology);
  const redundant = gpus * plan.topology.slotsPerGpu - plan.model.experts;
  return ['--ep-size', String(gpus), '--ep-num-redundant-experts', String(redundant), '--init-expert-location', file];
}

/**
 * Fills every GPU's free slots. With loads, each free slot gets the expert the GPU lacks with the
 * highest load per instance, counting instances added by earlier padding, ties to the lowest id.
 * Without loads, it gets the lowest id the GPU lacks. Only a GPU that already holds every expert
 * gets a repeated expert, chosen by the same rule.
 */
function padLayer(
  slots: readonly (readonly number[])[],
  slotsPerGpu: number,
  experts: number,
  loads: ArrayLike<number> | undefined,
): number[][] {
  const instances = new Array<number>(experts).fill(0);
  for (const gpuExperts of slots) {
    for (const expert of gpuExperts) {
      instances[expert] = (instances[expert] ?? 0) + 1;
    }
  }

  return slots.map((gpuExperts) => {
    const padded = Array.from(gpuExperts);
    while (padded.length < slotsPerGpu) {
      const onGpu = new Set(padded);
      const candidates = Array.from({ length: experts }, (_, expert) => expert).filter((e) => !onGpu.has(e));
      const pool = candidates.length > 0 ? candidates : Array.from({ length: experts }, (_, expert) => expert);
      const chosen = loads === undefined ? (pool[0] ?? 0) : hottestPerInstance(pool, loads, instances);
      padded.push(chosen);
      instances[chosen] = (instances[chosen] ?? 0) + 1;
    }
    return padded;
  });
}

function hottestPerInstance(pool: readonly number[], loads: ArrayLike<number>, instances: readonly number[]): number {
  let best = pool[0] ?? 0;
  let bestLoad = -Infinity;
  for (const expert of pool) {
    const loadPerInstance = (loads[expert] ?? 0) / Math.max(1, instances[expert] ?? 0);
    if (loadPerInstance > bestLoad) {
      best = expert;
      bestLoad = loadPerInstance;
    }
  }
  return best;
}

function resolveLayerIds(plan: Plan, options: SglangExportOptions): readonly number[] {
  const ids = options.moeLayerIds ?? plan.layers.map((_, index) => index);
  if (ids.length !== plan.layers.length) {
    throw new UsageError(`moeLayerIds must list one model layer per plan layer (${plan.layers.length}), got ${ids.length}`);
  }
  ids.forEach((id, index) => {
    const previous = index > 0 ? (ids[index - 1] ?? -1) : -1;
    if (!Number.isInteger(id) || id <= previous) {
      throw new UsageError(
        `moeLayerIds must be strictly increasing non-negative integers, got ${id} at index ${index}`,
      );
    }
  });
  return ids;
}

function validateLoads(plan: Plan, loads: readonly ArrayLike<number>[] | undefined): void {
  if (loads === undefined) {
    return;
  }
  if (loads.length !== plan.layers.length) {
    throw new StatsFormatError(`loads must list one row per plan layer (${plan.layers.length}), got ${loads.length}`);
  }
  loads.forEach((row, layer) => {
    if (row.length !== plan.model.experts) {
      throw new StatsFormatError(`loads[${layer}] must list ${plan.model.experts} experts, got ${row.length}`);
    }
    for (let expert = 0; expert < row.length; expert++) {
      const load = row[expert];
      if (load === undefined || !Number.isFinite(load) || load < 0) {
        throw new StatsFormatError(`loads[${layer}][${expert}] must be a finite non-negative token count, got ${load}`);
      }
    }
  });
}

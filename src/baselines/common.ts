/** Inputs and checks shared by the baseline placements. */
import { PlanValidationError, StatsFormatError, TopologyError } from '../errors.js';
import { digestOf } from '../plan/json.js';
import type { PlanModel } from '../plan/types.js';
import { gpuCount, type Topology } from '../topology.js';

/** loads[layer][expert]: tokens that selected the expert in the profile. */
export type LayerLoads = readonly ArrayLike<number>[];

export interface BaselineOptions {
  /** Experts the gate selects per token, recorded in the plan's model. */
  readonly topK: number;
  /** Digest of the statistics the loads come from, digestOf(loads) when omitted. */
  readonly inputDigest?: string;
  /** Generation number of the plan, 0 when omitted. */
  readonly generation?: number;
}

export interface BaselineInputs {
  readonly model: PlanModel;
  readonly gpus: number;
  readonly inputDigest: string;
}

/**
 * Checks the loads and the topology a baseline receives and returns the model shape they imply.
 * Throws StatsFormatError for missing, ragged, negative or non-finite loads and TopologyError for a
 * topology whose slots cannot hold one instance of every expert. A topK outside [1, experts] throws
 * PlanValidationError.
 */
export function resolveBaselineInputs(loads: LayerLoads, topology: Topology, options: BaselineOptions): BaselineInputs {
  if (loads.length === 0) {
    throw new StatsFormatError('loads must list at least one layer, got none');
  }
  const experts = loads[0]?.length ?? 0;
  if (experts === 0) {
    throw new StatsFormatError('loads[0] must list at least one expert, got none');
  }

  loads.forEach((layer, layerIndex) => {
    if (layer.length !== experts) {
      throw new StatsFormatError(
        `loads[${layerIndex}] must list ${experts} experts like loads[0], got ${layer.length}`,
      );
    }
    for (let expert = 0; expert < experts; expert++) {
      const load = layer[expert];
      if (load === undefined || !Number.isFinite(load) || load < 0) {
        throw new StatsFormatError(
          `loads[${layerIndex}][${expert}] must be a finite non-negative token count, got ${load}`,
        );
      }
    }
  });

  for (const field of ['nodes', 'gpusPerNode', 'slotsPerGpu'] as const) {
    const value = topology[field];
    if (!Number.isInteger(value) || value < 1) {
      throw new TopologyError(`topology.${field} must be a positive integer, got ${value}`);
    }
  }
  const gpus = gpuCount(topology);
  if (gpus * topology.slotsPerGpu < experts) {
    throw new TopologyError(
      `${topology.nodes}x${topology.gpusPerNode} GPUs with ${topology.slotsPerGpu} slots each hold ` +
        `${gpus * topology.slotsPerGpu} instances, fewer than the ${experts} experts per layer; ` +
        `use at least ${Math.ceil(experts / gpus)} slots per GPU`,
    );
  }

  if (!Number.isInteger(options.topK) || options.topK < 1 || options.topK > experts) {
    throw new PlanValidationError('model.topK', `must be an integer in [1, ${experts}], got ${options.topK}`);
  }

  return {
    model: { layers: loads.length, experts, topK: options.topK },
    gpus,
    inputDigest: options.inputDigest ?? digestOf(loads),
  };
}

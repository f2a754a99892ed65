/**
 * Plan construction from per-layer slot lists. These helpers copy their inputs and do not validate:
 * callers run validatePlan on the result.
 */
import type { Topology } from '../topology.js';
import { API_VERSION, type Plan, type PlanModel, type PredictedMetrics } from './types.js';

export interface PlanFromSlotsArgs {
  readonly strategy: string;
  readonly topology: Topology;
  readonly model: PlanModel;
  /** slots[layer][gpu] lists the logical experts GPU `gpu` holds at that layer. */
  readonly slots: readonly (readonly (readonly number[])[])[];
  /** weights[layer][gpu][i] is the routing weight of slots[layer][gpu][i]. Every weight is 1 when omitted. */
  readonly weights?: readonly (readonly (readonly number[])[])[];
  /** Generation number of the plan, 0 when omitted. */
  readonly generation?: number;
  readonly predicted?: PredictedMetrics;
  /** SHA-256 hex digest of the statistics the plan was computed from. */
  readonly inputDigest: string;
}

/** Builds a plan from slot lists, copying every array so later changes to the inputs do not leak in. */
export function planFromSlots(args: PlanFromSlotsArgs): Plan {
  const layers = args.slots.map((layerSlots, layer) => {
    const layerWeights = args.weights?.[layer];
    return {
      slots: layerSlots.map((experts) => Array.from(experts)),
      weights: layerSlots.map((experts, gpu) => {
        const gpuWeights = layerWeights?.[gpu];
        return gpuWeights === undefined ? experts.map(() => 1) : Array.from(gpuWeights);
      }),
    };
  });

  return {
    apiVersion: API_VERSION,
    kind: 'PlacementPlan',
    generation: args.generation ?? 0,
    strategy: args.strategy,
    topology: {
      nodes: args.topology.nodes,
      gpusPerNode: args.topology.gpusPerNode,
      slotsPerGpu: args.topology.slotsPerGpu,
    },
    model: { layers: args.model.layers, experts: args.model.experts, topK: args.model.topK },
    layers,
    ...(args.predicted === undefined ? {} : { predicted: { ...args.predicted } }),
    inputDigest: args.inputDigest,
  };
}

/** Returns `gpus` empty slot lists, one per GPU, to fill with expert ids. */
export function emptySlots(gpus: number): number[][] {
  return Array.from({ length: gpus }, () => []);
}

/**
 * Returns the slot lists of a placement without replicas: `gpuOfExpert[e]` is the GPU of expert e.
 * Each GPU lists its experts in ascending id order.
 */
export function slotsFromGpuOfExpert(gpuOfExpert: readonly number[], gpus: number): number[][] {
  const slots = emptySlots(gpus);
  gpuOfExpert.forEach((gpu, expert) => {
    const gpuExperts = slots[gpu];
    if (gpuExperts === undefined) {
      throw new RangeError(`GPU ${gpu} of expert ${expert} is outside [0, ${gpus})`);
    }
    gpuExperts.push(expert);
  });
  return slots;
}

/**
 * Round-robin placement: expert e on GPU e mod GPUs, one instance per expert. Spare slots stay
 * empty. O(layers * E).
 */
import { planFromSlots, slotsFromGpuOfExpert } from '../plan/build.js';
import type { Plan } from '../plan/types.js';
import type { Topology } from '../topology.js';
import { resolveBaselineInputs, type BaselineOptions, type LayerLoads } from './common.js';

/** Places every expert once, dealing ids to GPUs in turn. The loads only fix the model shape. */
export function roundRobinPlan(loads: LayerLoads, topology: Topology, options: BaselineOptions): Plan {
  const { model, gpus, inputDigest } = resolveBaselineInputs(loads, topology, options);

  const gpuOfExpert = Array.from({ length: model.experts }, (_, expert) => expert % gpus);
  const layerSlots = slotsFromGpuOfExpert(gpuOfExpert, gpus);

  return planFromSlots({
    strategy: 'round-robin',
    topology,
    model,
    slots: Array.from({ length: model.layers }, () => layerSlots),
    ...(options.generation === undefined ? {} : { generation: options.generation }),
    inputDigest,
  });
}

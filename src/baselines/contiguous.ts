/**
 * Contiguous expert parallelism: expert e on GPU floor(e * GPUs / E), one instance per expert. This
 * is the default layout of expert-parallel engines (SGLang's trivial expert location gives every
 * rank a contiguous range of experts). Spare slots stay empty. O(layers * E).
 */
import { planFromSlots, slotsFromGpuOfExpert } from '../plan/build.js';
import type { Plan } from '../plan/types.js';
import type { Topology } from '../topology.js';
import { resolveBaselineInputs, type BaselineOptions, type LayerLoads } from './common.js';

/** Places every expert once, in contiguous id ranges. The loads only fix the model shape. */
export function contiguousPlan(loads: LayerLoads, topology: Topology, options: BaselineOptions): Plan {
  const { model, gpus, inputDigest } = resolveBaselineInputs(loads, topology, options);

  const gpuOfExpert = Array.from({ length: model.experts }, (_, expert) =>
    Math.floor((expert * gpus) / model.experts),
  );
  const layerSlots = slotsFromGpuOfExpert(gpuOfExpert, gpus);

  return planFromSlots({
    strategy: 'contiguous',
    topology,
    model,
    slots: Array.from({ length: model.layers }, () => layerSlots),
    ...(options.generation === undefined ? {} : { generation: options.generation }),
    inputDigest,
  });
}

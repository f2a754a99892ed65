/**
 * Plan invariants. A plan is valid only if every logical expert has at least one instance in every
 * layer, no GPU exceeds its slots, no GPU holds two instances of one expert, and every instance has
 * a finite positive routing weight. An invalid plan is rejected whole: the first broken invariant
 * throws, naming the field path (for example `layers[3].slots[5]`) and the value.
 */
import { FormatVersionError, PlanValidationError } from '../errors.js';
import { gpuCount } from '../topology.js';
import { API_VERSION, type Plan, type PlanLayer } from './types.js';

export interface ValidateOptions {
  /**
   * Accept two instances of one expert on one GPU. Published EPLB produces such plans; they are
   * kept as produced so the duplicates can be counted.
   */
  readonly allowDuplicateInstances?: boolean;
}

/** Throws FormatVersionError or PlanValidationError unless the plan satisfies every invariant. */
/** Largest plan generation: engines carry the generation as an unsigned 32-bit number. */
export const MAX_GENERATION = 0xffff_ffff;

export function validatePlan(plan: Plan, options: ValidateOptions = {}): void {
  if (plan.apiVersion !== API_VERSION) {
    throw new FormatVersionError(
      `plan apiVersion must be "${API_VERSION}", got ${describeValue(plan.apiVersion)}`,
    );
  }
  if (plan.kind !== 'PlacementPlan') {
    throw new FormatVersionError(`plan kind must be "PlacementPlan", got ${describeValue(plan.kind)}`);
  }

  requireNonNegativeInteger('generation', plan.generation);
  if (plan.generation > MAX_GENERATION) {
    throw new PlanValidationError('generation', `must be at most ${MAX_GENERATION} (engines carry it as a 32-bit number), got ${plan.generation}`);
  }
  if (typeof plan.strategy !== 'string' || plan.strategy.length === 0) {
    throw new PlanValidationError('strategy', `must be a non-empty string, got ${describeValue(plan.strategy)}`);
  }
  if (typeof plan.inputDigest !== 'string') {
    throw new PlanValidationError('inputDigest', `must be a string, got ${describeValue(plan.inputDigest)}`);
  }

  requirePositiveInteger('topology.nodes', plan.topology.nodes);
  requirePositiveInteger('topology.gpusPerNode', plan.topology.gpusPerNode);
  requirePositiveInteger('topology.slotsPerGpu', plan.topology.slotsPerGpu);
  requirePositiveInteger('model.layers', plan.model.layers);
  requirePositiveInteger('model.experts', plan.model.experts);
  requirePositiveInteger('model.topK', plan.model.topK);
  if (plan.model.topK > plan.model.experts) {
    throw new PlanValidationError(
      'model.topK',
      `must not exceed model.experts (${plan.model.experts}), got ${plan.model.topK}`,
    );
  }

  if (plan.predicted !== undefined) {
    validatePredicted(plan.predicted);
  }

  if (plan.layers.length !== plan.model.layers) {
    throw new PlanValidationError(
      'layers',
      `must list model.layers (${plan.model.layers}) layers, got ${plan.layers.length}`,
    );
  }
  plan.layers.forEach((layer, index) => validateLayer(plan, layer, index, options));
}

/**
 * Counts the slots that hold an expert already present on the same GPU, summed over GPUs and layers.
 * A GPU that lists one expert three times contributes 2.
 */
export function countDuplicateInstances(plan: Pick<Plan, 'layers'>): number {
  let duplicates = 0;
  for (const layer of plan.layers) {
    for (const experts of layer.slots) {
      duplicates += experts.length - new Set(experts).size;
    }
  }
  return duplicates;
}

function validateLayer(plan: Plan, layer: PlanLayer, layerIndex: number, options: ValidateOptions): void {
  const { slotsPerGpu } = plan.topology;
  const { experts } = plan.model;
  const gpus = gpuCount(plan.topology);
  const path = `layers[${layerIndex}]`;

  if (layer.slots.length !== gpus) {
    throw new PlanValidationError(
      `${path}.slots`,
      `must list one entry per GPU (${gpus}), got ${layer.slots.length}`,
    );
  }
  if (layer.weights.length !== gpus) {
    throw new PlanValidationError(
      `${path}.weights`,
      `must list one entry per GPU (${gpus}), got ${layer.weights.length}`,
    );
  }

  const covered = new Uint8Array(experts);
  for (let gpu = 0; gpu < gpus; gpu++) {
    const gpuExperts = layer.slots[gpu] ?? [];
    const weights = layer.weights[gpu] ?? [];
    const gpuPath = `${path}.slots[${gpu}]`;

    if (gpuExperts.length > slotsPerGpu) {
      throw new PlanValidationError(
        gpuPath,
        `holds ${gpuExperts.length} instances, more than the ${slotsPerGpu} slots of a GPU: ${describeValue(gpuExperts)}`,
      );
    }
    if (weights.length !== gpuExperts.length) {
      throw new PlanValidationError(
        `${path}.weights[${gpu}]`,
        `must have one weight per instance (${gpuExperts.length}), got ${weights.length}`,
      );
    }

    const seen = new Set<number>();
    gpuExperts.forEach((expert, slot) => {
      if (!Number.isInteger(expert) || expert < 0 || expert >= experts) {
        throw new PlanValidationError(
          `${gpuPath}[${slot}]`,
          `must be an expert id, an integer in [0, ${experts}), got ${describeValue(expert)}`,
        );
      }
      if (seen.has(expert) && options.allowDuplicateInstances !== true) {
        throw new PlanValidationError(gpuPath, `holds two instances of expert ${expert}: ${describeValue(gpuExperts)}`);
      }
      seen.add(expert);
      covered[expert] = 1;

      const weight = weights[slot];
      if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
        throw new PlanValidationError(
          `${path}.weights[${gpu}][${slot}]`,
          `must be a finite number greater than 0, got ${describeValue(weight)}`,
        );
      }
    });
  }

  const missing = covered.indexOf(0);
  if (missing !== -1) {
    throw new PlanValidationError(
      `${path}.slots`,
      `expert ${missing} has no instance in layer ${layerIndex}; every expert needs at least one`,
    );
  }
}

function validatePredicted(predicted: NonNullable<Plan['predicted']>): void {
  const fields = ['moeLayerTimeMs', 'crossNodeCopiesPerToken', 'localHitRatio', 'balancedness'] as const;
  for (const field of fields) {
    const value = predicted[field];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new PlanValidationError(
        `predicted.${field}`,
        `must be a finite non-negative number, got ${describeValue(value)}`,
      );
    }
  }
}

function requirePositiveInteger(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new PlanValidationError(field, `must be a positive integer, got ${describeValue(value)}`);
  }
}

function requireNonNegativeInteger(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new PlanValidationError(field, `must be a non-negative integer, got ${describeValue(value)}`);
  }
}

/** Renders a value for an error message; NaN and infinities stay readable, long lists are cut. */
export function describeValue(value: unknown): string {
  if (typeof value === 'number') {
    return String(value);
  }
  if (value === undefined) {
    return 'undefined';
  }
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

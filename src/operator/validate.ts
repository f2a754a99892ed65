/**
 * Semantic checks of a MoEDeployment spec beyond what the CRD schema enforces at admission. Each
 * violation names the field, shows the value and says what is accepted; the reconciler reports
 * them in the Ready and Degraded conditions and creates nothing while any remain.
 */
import type { MoEDeploymentSpec } from './crd.js';

export interface SpecViolation {
  readonly field: string;
  readonly message: string;
}

/** Defaults applied by the operator where the schema has none (schema defaults apply at admission). */
export interface ResolvedSpec {
  readonly layers: number;
  readonly experts: number;
  readonly topK: number;
  readonly hiddenSize: number;
  readonly nodes: number;
  readonly gpusPerNode: number;
  readonly gpuResourceName: string;
  readonly slotsPerGpu: number;
  readonly migrationHeadroomSlots: number;
  readonly strategy: 'grace' | 'eplb' | 'contiguous';
  readonly dispatch: 'flat' | 'hierarchical';
  readonly hardwarePreset: 'a100-25gbe' | 'h200-400g';
  readonly mode: 'Off' | 'Observe' | 'Auto';
  readonly intervalSeconds: number;
  readonly halfLifeSeconds: number;
  readonly minGain: number;
  readonly maxMovesPerRound: number;
  readonly enginePort: number;
  readonly routerPort: number;
}

/** GPU capacity of the nodes a deployment could land on: the largest allocatable count of the resource. */
export interface NodeCapacity {
  readonly maxGpusPerNode: number | null;
}

function positiveInteger(violations: SpecViolation[], field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    violations.push({ field, message: `${field} must be a positive integer, got ${JSON.stringify(value)}` });
    return 1;
  }
  return value;
}

function nonNegativeInteger(violations: SpecViolation[], field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    violations.push({ field, message: `${field} must be a non-negative integer, got ${JSON.stringify(value)}` });
    return 0;
  }
  return value;
}

function port(violations: SpecViolation[], field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    violations.push({ field, message: `${field} must be a TCP port in [1, 65535], got ${JSON.stringify(value)}` });
    return 1;
  }
  return value;
}

/** Checks a spec; returns the resolved values, or the violations when there is any. */
export function validateSpec(
  spec: MoEDeploymentSpec,
  capacity: NodeCapacity,
): { ok: true; resolved: ResolvedSpec } | { ok: false; violations: readonly SpecViolation[] } {
  const violations: SpecViolation[] = [];
  const layers = positiveInteger(violations, 'spec.model.layers', spec.model.layers);
  const experts = positiveInteger(violations, 'spec.model.experts', spec.model.experts);
  const topK = positiveInteger(violations, 'spec.model.topK', spec.model.topK);
  const expertsValid = Number.isInteger(spec.model.experts) && spec.model.experts >= 1;
  if (expertsValid && topK > experts) {
    violations.push({ field: 'spec.model.topK', message: `spec.model.topK must be at most spec.model.experts (${experts}), got ${topK}` });
  }
  if (experts > 65536) {
    violations.push({ field: 'spec.model.experts', message: `spec.model.experts must be at most 65536, got ${experts}` });
  }
  const hiddenSize = positiveInteger(violations, 'spec.model.hiddenSize', spec.model.hiddenSize ?? 2048);
  const nodes = positiveInteger(violations, 'spec.workers.nodes', spec.workers.nodes);
  const gpusPerNode = positiveInteger(violations, 'spec.workers.gpusPerNode', spec.workers.gpusPerNode ?? 8);
  const gpuResourceName = spec.workers.gpuResourceName ?? 'nvidia.com/gpu';
  if (capacity.maxGpusPerNode !== null && gpusPerNode > capacity.maxGpusPerNode) {
    violations.push({
      field: 'spec.workers.gpusPerNode',
      message:
        `spec.workers.gpusPerNode is ${gpusPerNode} but no node offers more than ${capacity.maxGpusPerNode} ${gpuResourceName}; ` +
        `lower it or add nodes with more GPUs`,
    });
  }

  const placement = spec.placement ?? {};
  const gpus = nodes * gpusPerNode;
  const primaries = Math.ceil(experts / gpus);
  const slotsPerGpu =
    placement.slotsPerGpu === undefined ? primaries + 1 : positiveInteger(violations, 'spec.placement.slotsPerGpu', placement.slotsPerGpu);
  if (slotsPerGpu * gpus < experts) {
    violations.push({
      field: 'spec.placement.slotsPerGpu',
      message:
        `spec.placement.slotsPerGpu is ${slotsPerGpu}: ${gpus} GPUs hold ${slotsPerGpu * gpus} expert instances, fewer than the ` +
        `${experts} experts; use at least ${primaries}`,
    });
  }
  const migrationHeadroomSlots = nonNegativeInteger(violations, 'spec.placement.migrationHeadroomSlots', placement.migrationHeadroomSlots ?? 1);
  if (placement.nonUniformity !== undefined && !(placement.nonUniformity >= 0 && placement.nonUniformity <= 1)) {
    violations.push({ field: 'spec.placement.nonUniformity', message: `spec.placement.nonUniformity must be in [0, 1], got ${placement.nonUniformity}` });
  }

  const rebalance = spec.rebalance ?? {};
  const intervalSeconds = positiveInteger(violations, 'spec.rebalance.intervalSeconds', rebalance.intervalSeconds ?? 60);
  const halfLifeSeconds = positiveInteger(violations, 'spec.rebalance.halfLifeSeconds', rebalance.halfLifeSeconds ?? 300);
  const minGain = rebalance.minGain ?? 0.05;
  if (!(minGain >= 0 && minGain < 1)) {
    violations.push({ field: 'spec.rebalance.minGain', message: `spec.rebalance.minGain must be in [0, 1), got ${minGain}` });
  }
  const maxMovesPerRound = positiveInteger(violations, 'spec.rebalance.maxMovesPerRound', rebalance.maxMovesPerRound ?? 256);
  const enginePort = port(violations, 'spec.engine.port', spec.engine.port ?? 8000);
  const routerPort = port(violations, 'spec.router.port', spec.router?.port ?? 8470);
  if (enginePort === routerPort) {
    violations.push({ field: 'spec.router.port', message: `spec.router.port must differ from spec.engine.port (${enginePort})` });
  }
  if (spec.engine.image.trim() === '') {
    violations.push({ field: 'spec.engine.image', message: 'spec.engine.image must name a container image, got ""' });
  }

  if (violations.length > 0) return { ok: false, violations };
  return {
    ok: true,
    resolved: {
      layers,
      experts,
      topK,
      hiddenSize,
      nodes,
      gpusPerNode,
      gpuResourceName,
      slotsPerGpu,
      migrationHeadroomSlots,
      strategy: placement.strategy ?? 'grace',
      dispatch: placement.dispatch ?? 'hierarchical',
      hardwarePreset: placement.hardwarePreset ?? 'h200-400g',
      mode: rebalance.mode ?? 'Observe',
      intervalSeconds,
      halfLifeSeconds,
      minGain,
      maxMovesPerRound,
      enginePort,
      routerPort,
    },
  };
}

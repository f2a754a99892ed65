import { PlanValidationError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import { gpuCount, nodeOfGpu, type Topology } from '../topology.js';
import type { RouteInstance, RoutingTable } from './types.js';

/**
 * Routing table in flat typed arrays, for the hot path. The instances of expert e at layer l are
 * the entries offsets[l * experts + e] .. offsets[l * experts + e + 1] - 1 of instanceGpu and
 * instanceWeight, sorted by GPU (the order of physical slots).
 */
export interface CompiledTable {
  readonly generation: number;
  readonly topology: Topology;
  readonly experts: number;
  readonly layers: number;
  readonly gpus: number;
  readonly offsets: Int32Array;
  readonly instanceGpu: Int32Array;
  readonly instanceWeight: Float64Array;
}

/** Derives the routing table of a plan: per layer and logical expert, its instances sorted by GPU. */
export function routingTableFromPlan(plan: Plan): RoutingTable {
  const { topology } = plan;
  const experts = plan.model.experts;
  const layers = plan.layers.map((layer) => {
    const byExpert: RouteInstance[][] = Array.from({ length: experts }, () => []);
    layer.slots.forEach((slots, gpu) => {
      slots.forEach((expert, slot) => {
        const weight = layer.weights[gpu]?.[slot] ?? 1;
        byExpert[expert]?.push({ gpu, node: nodeOfGpu(topology, gpu), weight });
      });
    });
    return byExpert;
  });
  return {
    apiVersion: plan.apiVersion,
    kind: 'RoutingTable',
    generation: plan.generation,
    topology,
    experts,
    layers,
  };
}

/** Flattens a routing table; throws PlanValidationError when an expert has no instance. */
export function compileRoutingTable(table: RoutingTable): CompiledTable {
  const { experts } = table;
  const layers = table.layers.length;
  const offsets = new Int32Array(layers * experts + 1);
  let total = 0;
  for (let l = 0; l < layers; l++) {
    for (let e = 0; e < experts; e++) {
      const count = table.layers[l]?.[e]?.length ?? 0;
      if (count === 0) {
        throw new PlanValidationError(`layers[${l}][${e}]`, `expert ${e} has no instance; every expert needs one`);
      }
      offsets[l * experts + e] = total;
      total += count;
    }
  }
  offsets[layers * experts] = total;

  const instanceGpu = new Int32Array(total);
  const instanceWeight = new Float64Array(total);
  for (let l = 0; l < layers; l++) {
    for (let e = 0; e < experts; e++) {
      const sorted = [...(table.layers[l]?.[e] ?? [])].sort((a, b) => a.gpu - b.gpu);
      let at = offsets[l * experts + e] ?? 0;
      for (const instance of sorted) {
        instanceGpu[at] = instance.gpu;
        instanceWeight[at] = instance.weight;
        at++;
      }
    }
  }
  return {
    generation: table.generation,
    topology: table.topology,
    experts,
    layers,
    gpus: gpuCount(table.topology),
    offsets,
    instanceGpu,
    instanceWeight,
  };
}

/** Compiles the routing table of a plan in one step. */
export function compilePlan(plan: Plan): CompiledTable {
  return compileRoutingTable(routingTableFromPlan(plan));
}

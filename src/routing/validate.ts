/**
 * Routing-table documents: parsing and validation of decoded JSON, and a copy in a fixed key order.
 *
 * A table is accepted only whole. It must have the known apiVersion and kind, a valid topology, one
 * entry per logical expert in every layer, and at least one instance per expert. Every instance
 * names a GPU inside the topology and the node of that GPU (floor(gpu / gpusPerNode)), and carries a
 * finite routing weight greater than 0. No GPU may have two instances of one expert, or more
 * instances in one layer than it has slots. The generation fits in a u32, because the engines' binary
 * wire header carries it as one. The first broken rule throws, naming the JSON path and the value.
 */
import { FormatVersionError, PlanValidationError } from '../errors.js';
import { rejectUnknownFields, requireArray, requireNumber, requireObject, type JsonObject } from '../plan/json-fields.js';
import { parsePlan } from '../plan/json.js';
import { API_VERSION } from '../plan/types.js';
import { describeValue, MAX_GENERATION } from '../plan/validate.js';
import { gpuCount } from '../topology.js';
import { routingTableFromPlan } from './table.js';
import type { RouteInstance, RoutingTable } from './types.js';

/** Expert ids travel as Uint16 in traces and on the engine's wire format. */
export const MAX_TABLE_EXPERTS = 65_536;

const TABLE_FIELDS = ['apiVersion', 'kind', 'generation', 'topology', 'experts', 'layers'] as const;
const TOPOLOGY_FIELDS = ['nodes', 'gpusPerNode', 'slotsPerGpu'] as const;
const INSTANCE_FIELDS = ['gpu', 'node', 'weight'] as const;


/**
 * Parses a decoded JSON value into a routing table and validates it. Unknown fields are rejected.
 * Throws FormatVersionError for an unknown apiVersion or kind and PlanValidationError otherwise.
 * The result shares no arrays with `value`.
 */
export function parseRoutingTable(value: unknown): RoutingTable {
  const document = requireObject('(root)', value);
  requireVersion(document, 'RoutingTable');
  rejectUnknownFields('', document, TABLE_FIELDS);

  const topologyObject = requireObject('topology', document.topology);
  rejectUnknownFields('topology.', topologyObject, TOPOLOGY_FIELDS);
  const topology = {
    nodes: requirePositiveInteger('topology.nodes', topologyObject.nodes),
    gpusPerNode: requirePositiveInteger('topology.gpusPerNode', topologyObject.gpusPerNode),
    slotsPerGpu: requirePositiveInteger('topology.slotsPerGpu', topologyObject.slotsPerGpu),
  };
  const experts = requirePositiveInteger('experts', document.experts);

  const layers = requireArray('layers', document.layers).map((layerValue, layer) =>
    requireArray(`layers[${layer}]`, layerValue).map((expertValue, expert) =>
      requireArray(`layers[${layer}][${expert}]`, expertValue).map((instanceValue, index) =>
        parseInstance(`layers[${layer}][${expert}][${index}]`, instanceValue),
      ),
    ),
  );

  const table: RoutingTable = {
    apiVersion: API_VERSION,
    kind: 'RoutingTable',
    generation: requireGeneration(document.generation),
    topology,
    experts,
    layers,
  };
  validateRoutingTable(table);
  return table;
}

/**
 * Parses either a routing table or a placement plan (converted with routingTableFromPlan), as a
 * mounted plan file or a pushed document may hold either.
 */
export function parseTableDocument(value: unknown): RoutingTable {
  return isPlacementPlan(value) ? parsePlanAsRoutingTable(value) : parseRoutingTable(value);
}

/** Reports whether a decoded JSON value claims to be a placement plan (`kind` is "PlacementPlan"). */
export function isPlacementPlan(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as JsonObject).kind === 'PlacementPlan';
}

/**
 * Validates a placement plan with parsePlan and converts it to a routing table. A GPU that lists
 * one expert twice, as EPLB plans can, becomes one routing entry whose weight is the sum of the two
 * slot weights, so the GPU keeps its share of that expert's tokens. Throws FormatVersionError or
 * PlanValidationError.
 */
export function parsePlanAsRoutingTable(value: unknown): RoutingTable {
  const plan = parsePlan(value, { allowDuplicateInstances: true });
  const table = mergeInstancesPerGpu(routingTableFromPlan(plan));
  validateRoutingTable(table);
  return table;
}

/** Merges the instances of one expert on one GPU into one entry with the summed weight. */
function mergeInstancesPerGpu(table: RoutingTable): RoutingTable {
  const layers = table.layers.map((layer) =>
    layer.map((instances) => {
      const byGpu = new Map<number, RouteInstance>();
      for (const instance of instances) {
        const earlier = byGpu.get(instance.gpu);
        byGpu.set(instance.gpu, earlier === undefined ? instance : { ...earlier, weight: earlier.weight + instance.weight });
      }
      return [...byGpu.values()];
    }),
  );
  return { ...table, layers };
}

/** Throws FormatVersionError or PlanValidationError unless the table satisfies every rule above. */
export function validateRoutingTable(table: RoutingTable): void {
  if (table.apiVersion !== API_VERSION) {
    throw new FormatVersionError(
      `routing table apiVersion must be "${API_VERSION}", got ${describeValue(table.apiVersion)}`,
    );
  }
  if (table.kind !== 'RoutingTable') {
    throw new FormatVersionError(`routing table kind must be "RoutingTable", got ${describeValue(table.kind)}`);
  }
  requireGeneration(table.generation);
  requirePositiveInteger('topology.nodes', table.topology.nodes);
  requirePositiveInteger('topology.gpusPerNode', table.topology.gpusPerNode);
  requirePositiveInteger('topology.slotsPerGpu', table.topology.slotsPerGpu);
  requirePositiveInteger('experts', table.experts);
  if (table.experts > MAX_TABLE_EXPERTS) {
    throw new PlanValidationError('experts', `must be at most ${MAX_TABLE_EXPERTS}, got ${table.experts}`);
  }
  if (table.layers.length === 0) {
    throw new PlanValidationError('layers', 'must list at least one layer, got an empty array');
  }

  const gpus = gpuCount(table.topology);
  const instancesOnGpu = new Int32Array(gpus);
  table.layers.forEach((layer, layerIndex) => {
    if (layer.length !== table.experts) {
      throw new PlanValidationError(
        `layers[${layerIndex}]`,
        `must list one entry per expert (${table.experts}), got ${layer.length}`,
      );
    }
    instancesOnGpu.fill(0);
    layer.forEach((instances, expert) => {
      validateExpert(table, instances, `layers[${layerIndex}][${expert}]`, expert, instancesOnGpu);
    });
  });
}

function validateExpert(
  table: RoutingTable,
  instances: readonly RouteInstance[],
  path: string,
  expert: number,
  instancesOnGpu: Int32Array,
): void {
  const { gpusPerNode, slotsPerGpu } = table.topology;
  const gpus = instancesOnGpu.length;
  if (instances.length === 0) {
    throw new PlanValidationError(path, `expert ${expert} has no instance; every expert needs at least one`);
  }

  const seen = new Set<number>();
  instances.forEach((instance, index) => {
    const at = `${path}[${index}]`;
    const { gpu, node, weight } = instance;
    if (typeof gpu !== 'number' || !Number.isInteger(gpu) || gpu < 0 || gpu >= gpus) {
      throw new PlanValidationError(`${at}.gpu`, `must be a GPU index, an integer in [0, ${gpus}), got ${describeValue(gpu)}`);
    }
    const expectedNode = Math.floor(gpu / gpusPerNode);
    if (node !== expectedNode) {
      throw new PlanValidationError(
        `${at}.node`,
        `must be the node of GPU ${gpu}, floor(${gpu} / ${gpusPerNode}) = ${expectedNode}, got ${describeValue(node)}`,
      );
    }
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
      throw new PlanValidationError(`${at}.weight`, `must be a finite number greater than 0, got ${describeValue(weight)}`);
    }
    if (seen.has(gpu)) {
      throw new PlanValidationError(`${at}.gpu`, `GPU ${gpu} has two instances of expert ${expert}; at most one is allowed`);
    }
    seen.add(gpu);

    const held = (instancesOnGpu[gpu] as number) + 1;
    instancesOnGpu[gpu] = held;
    if (held > slotsPerGpu) {
      throw new PlanValidationError(
        `${at}.gpu`,
        `GPU ${gpu} would hold ${held} instances in this layer, more than its ${slotsPerGpu} slots`,
      );
    }
  });
}

/** Copies a table into a plain JSON-ready object with a fixed key order. */
export function routingTableToJson(table: RoutingTable): RoutingTable {
  return {
    apiVersion: table.apiVersion,
    kind: table.kind,
    generation: table.generation,
    topology: {
      nodes: table.topology.nodes,
      gpusPerNode: table.topology.gpusPerNode,
      slotsPerGpu: table.topology.slotsPerGpu,
    },
    experts: table.experts,
    layers: table.layers.map((layer) =>
      layer.map((instances) => instances.map((instance) => ({ gpu: instance.gpu, node: instance.node, weight: instance.weight }))),
    ),
  };
}

function parseInstance(path: string, value: unknown): RouteInstance {
  const instance = requireObject(path, value);
  rejectUnknownFields(`${path}.`, instance, INSTANCE_FIELDS);
  return {
    gpu: requireNumber(`${path}.gpu`, instance.gpu),
    node: requireNumber(`${path}.node`, instance.node),
    weight: requireNumber(`${path}.weight`, instance.weight),
  };
}

function requireVersion(document: JsonObject, kind: string): void {
  if (document.apiVersion !== API_VERSION) {
    throw new FormatVersionError(
      `routing table apiVersion must be "${API_VERSION}", got ${describeValue(document.apiVersion)}`,
    );
  }
  if (document.kind !== kind) {
    throw new FormatVersionError(`routing table kind must be "${kind}", got ${describeValue(document.kind)}`);
  }
}

function requireGeneration(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_GENERATION) {
    throw new PlanValidationError(
      'generation',
      `must be an integer in [0, ${MAX_GENERATION}] (the engine wire format stores it as u32), got ${describeValue(value)}`,
    );
  }
  return value;
}

function requirePositiveInteger(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new PlanValidationError(field, `must be a positive integer, got ${describeValue(value)}`);
  }
  return value;
}





import { TopologyError } from './errors.js';

/** Shape of an expert-parallel deployment: nodes x GPUs per node, each GPU with a fixed slot count. */
export interface Topology {
  readonly nodes: number;
  readonly gpusPerNode: number;
  /** Expert instances (primary or replica) one GPU can hold, per layer. */
  readonly slotsPerGpu: number;
}

/** Total GPUs of a topology. */
export function gpuCount(topology: Pick<Topology, 'nodes' | 'gpusPerNode'>): number {
  return topology.nodes * topology.gpusPerNode;
}

/** Node of a global GPU index: GPU g lives on node floor(g / gpusPerNode). */
export function nodeOfGpu(topology: Pick<Topology, 'gpusPerNode'>, gpu: number): number {
  return Math.floor(gpu / topology.gpusPerNode);
}

/**
 * Parses "NxG" (for example "2x4") into nodes and GPUs per node.
 * Throws TopologyError naming the flag when the text is not two positive integers.
 */
export function parseTopologyShape(text: string, flag = '--topology'): { nodes: number; gpusPerNode: number } {
  const match = /^\s*(\d+)\s*[xX]\s*(\d+)\s*$/.exec(text);
  if (!match) {
    throw new TopologyError(`${flag} must look like NODESxGPUS (for example 2x4), got "${text}"`);
  }
  const nodes = Number(match[1]);
  const gpusPerNode = Number(match[2]);
  if (nodes < 1 || gpusPerNode < 1) {
    throw new TopologyError(`${flag} needs at least one node and one GPU per node, got "${text}"`);
  }
  return { nodes, gpusPerNode };
}

/**
 * Builds a topology for `experts` logical experts. Without an explicit slot count, each GPU gets
 * ceil(experts / GPUs) slots for primaries plus `redundantSlotsPerGpu` for replicas.
 */
/** Largest deployment the planner and evaluator accept. */
export const MAX_GPUS = 16_384;

export function resolveTopology(
  shape: { nodes: number; gpusPerNode: number },
  experts: number,
  options: { slotsPerGpu?: number; redundantSlotsPerGpu?: number } = {},
): Topology {
  const gpus = gpuCount(shape);
  if (gpus > MAX_GPUS) {
    throw new TopologyError(`${shape.nodes}x${shape.gpusPerNode} is ${gpus} GPUs; at most ${MAX_GPUS} are supported`);
  }
  const primariesPerGpu = Math.ceil(experts / gpus);
  const slotsPerGpu = options.slotsPerGpu ?? primariesPerGpu + (options.redundantSlotsPerGpu ?? 0);
  if (!Number.isInteger(slotsPerGpu) || slotsPerGpu < 1) {
    throw new TopologyError(`slots per GPU must be a positive integer, got ${slotsPerGpu}`);
  }
  if (slotsPerGpu > experts) {
    throw new TopologyError(
      `${slotsPerGpu} slots per GPU exceed the ${experts} experts: a GPU holds each expert at most once, so use at most ${experts}`,
    );
  }
  if (slotsPerGpu * gpus < experts) {
    throw new TopologyError(
      `${shape.nodes}x${shape.gpusPerNode} GPUs with ${slotsPerGpu} slots each hold ${slotsPerGpu * gpus} ` +
        `instances, fewer than the ${experts} experts per layer; use at least ${primariesPerGpu} slots per GPU`,
    );
  }
  return { nodes: shape.nodes, gpusPerNode: shape.gpusPerNode, slotsPerGpu };
}

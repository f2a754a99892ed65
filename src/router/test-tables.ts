/** Small routing tables for the router and engine tests. */
import type { RouteInstance, RoutingTable } from '../routing/types.js';

/**
 * Builds a table of 2 nodes x 2 GPUs, 3 slots per GPU, 4 experts and `layers` identical layers.
 * Seen from GPU 0, expert 0 has an instance on GPU 0 (own GPU) and expert 1 one on GPU 1 (own node).
 * Expert 2 is on GPUs 2 and 3 with equal weights, expert 3 on GPUs 2 and 3 with weights 3 and 1.
 */
export function smallTable(generation: number, layers = 1): RoutingTable {
  const instance = (gpu: number, weight = 1): RouteInstance => ({ gpu, node: Math.floor(gpu / 2), weight });
  const layer = [
    [instance(0), instance(2)],
    [instance(1), instance(3)],
    [instance(2), instance(3)],
    [instance(2, 3), instance(3, 1)],
  ];
  return {
    apiVersion: 'grace-moe.io/v1alpha1',
    kind: 'RoutingTable',
    generation,
    topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 },
    experts: 4,
    layers: Array.from({ length: layers }, () => layer),
  };
}

import type { Topology } from '../topology.js';

/** One instance of a logical expert as routers see it. */
export interface RouteInstance {
  readonly gpu: number;
  readonly node: number;
  readonly weight: number;
}

/**
 * What routers need from a plan: per layer, per logical expert, its instances. Generation-scoped:
 * a router never mixes two generations in one decision.
 */
export interface RoutingTable {
  readonly apiVersion: 'grace-moe.io/v1alpha1';
  readonly kind: 'RoutingTable';
  readonly generation: number;
  readonly topology: Topology;
  readonly experts: number;
  /** layers[l][e] lists the instances of expert e at layer l. */
  readonly layers: readonly (readonly (readonly RouteInstance[])[])[];
}

/**
 * Chooses the GPU that serves one token-expert pair. `token` and `rank` (position in the sorted top-k
 * list) feed the engines' position-modulo rule; locality-aware choosers ignore them.
 */
export interface ReplicaChooser {
  choose(sourceGpu: number, layer: number, expert: number, token: number, rank: number): number;
}

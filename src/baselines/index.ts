/** Baseline placements with the same slot budget as the planner, and the table the compare command runs. */
import type { Plan } from '../plan/types.js';
import type { Topology } from '../topology.js';
import type { BaselineOptions, LayerLoads } from './common.js';
import { contiguousPlan } from './contiguous.js';
import { eplbPlan } from './eplb.js';
import { roundRobinPlan } from './round-robin.js';

export { resolveBaselineInputs, type BaselineInputs, type BaselineOptions, type LayerLoads } from './common.js';
export { contiguousPlan } from './contiguous.js';
export {
  balancedPacking,
  eplbPlan,
  eplbPlanWithDetails,
  placeLayer,
  replicateExperts,
  resolveEplbLayout,
  type EplbDetails,
  type EplbLayout,
  type EplbOptions,
  type EplbPolicy,
  type Packing,
  type Replication,
} from './eplb.js';
export { roundRobinPlan } from './round-robin.js';

export interface BaselineStrategyOptions extends BaselineOptions {
  /** Expert groups of the model (`n_group` in DeepSeek configurations), used by EPLB; 1 when omitted. */
  readonly groups?: number;
}

export interface BaselineStrategy {
  readonly name: string;
  readonly description: string;
  readonly build: (loads: LayerLoads, topology: Topology, options: BaselineStrategyOptions) => Plan;
}

/**
 * Baselines in the order reports list them. EPLB plans can hold two instances of one expert on
 * one GPU: validate them with `allowDuplicateInstances`.
 */
export const baselineStrategies: readonly BaselineStrategy[] = Object.freeze([
  {
    name: 'contiguous',
    description: 'expert e on GPU floor(e * GPUs / experts), no replicas',
    build: (loads, topology, options) => contiguousPlan(loads, topology, options),
  },
  {
    name: 'round-robin',
    description: 'expert e on GPU e mod GPUs, no replicas',
    build: (loads, topology, options) => roundRobinPlan(loads, topology, options),
  },
  {
    name: 'eplb',
    description:
      'DeepSeek EPLB as engines run it: hierarchical when the expert groups divide by the nodes, else global',
    build: (loads, topology, options) => eplbPlan(loads, topology, { ...options, policy: 'auto' }),
  },
  {
    name: 'eplb-hierarchical',
    description: 'DeepSeek EPLB hierarchical policy; a single-group model is split into one contiguous group per node',
    build: (loads, topology, options) => eplbPlan(loads, topology, { ...options, policy: 'hierarchical' }),
  },
]);

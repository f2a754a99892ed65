/**
 * DeepSeek's Expert Parallelism Load Balancer (EPLB), written from the description and the open-source
 * `eplb.py` of the deepseek-ai/EPLB repository.
 *
 * Per layer, with P = nodes x GPUs per node x slots per GPU physical slots, all of them filled:
 * 1. Expert groups go to nodes by balanced packing of the groups' total loads.
 * 2. Inside every node, the node's experts are replicated to the node's physical slots: each extra
 *    instance goes to the expert with the highest load per instance.
 * 3. The node's instances go to its GPUs by balanced packing, each instance weighted by its expert's
 *    load divided by the expert's instance count.
 * The global policy is the hierarchical one with a single group and a single node.
 *
 * Ties never depend on sort stability: items are ordered by weight, then by index.
 * Complexity per layer: O(P x E) for replication plus O(P x GPUs) for packing.
 *
 * Like the published algorithm, step 3 can put two instances of one expert on one GPU. Such plans
 * are returned as produced; validate them with `allowDuplicateInstances` and count the duplicates
 * with countDuplicateInstances. Every instance gets routing weight 1, because engines choose among
 * replicas by position, not by weight.
 */
import { TopologyError, UsageError } from '../errors.js';
import { planFromSlots } from '../plan/build.js';
import type { Plan } from '../plan/types.js';
import { countDuplicateInstances } from '../plan/validate.js';
import type { Topology } from '../topology.js';
import { resolveBaselineInputs, type BaselineOptions, type LayerLoads } from './common.js';

export type EplbPolicy = 'global' | 'hierarchical' | 'auto';

export interface EplbOptions extends BaselineOptions {
  /** `auto` picks hierarchical when the groups divide by the nodes, else global, as engines do. */
  readonly policy: EplbPolicy;
  /** Expert groups of the model (`n_group` in DeepSeek configurations); 1 when omitted. */
  readonly groups?: number;
}

/** The packing EPLB runs after resolving `auto` and the group count. */
export interface EplbLayout {
  readonly policy: 'global' | 'hierarchical';
  /** Expert groups packed to nodes; 1 for the global policy. */
  readonly groups: number;
  /** Nodes the groups are packed to; 1 for the global policy. */
  readonly nodes: number;
  readonly gpus: number;
  readonly slotsPerGpu: number;
}

export interface EplbDetails {
  readonly plan: Plan;
  readonly layout: EplbLayout;
  /** replicaCounts[layer][expert]: instances of the expert in that layer. */
  readonly replicaCounts: readonly (readonly number[])[];
  /** Slots that hold an expert already present on the same GPU, summed over layers. */
  readonly duplicateInstances: number;
}

export interface Replication {
  /** physicalToLogical[i]: index of the expert that instance i belongs to. The first E are primaries. */
  readonly physicalToLogical: readonly number[];
  /** replicaCounts[e]: instances of expert e. */
  readonly replicaCounts: readonly number[];
}

export interface Packing {
  /** packOf[i]: pack of item i. */
  readonly packOf: readonly number[];
  /** rankInPack[i]: position of item i inside its pack, in the order items were placed. */
  readonly rankInPack: readonly number[];
}

/** Places every layer with EPLB and returns the plan. */
export function eplbPlan(loads: LayerLoads, topology: Topology, options: EplbOptions): Plan {
  return eplbPlanWithDetails(loads, topology, options).plan;
}

/** Places every layer with EPLB and returns the plan with the resolved layout and replica counts. */
export function eplbPlanWithDetails(loads: LayerLoads, topology: Topology, options: EplbOptions): EplbDetails {
  const { model, inputDigest } = resolveBaselineInputs(loads, topology, options);
  const layout = resolveEplbLayout(options, topology, model.experts);

  const slots = loads.map((layerLoads) => placeLayer(layerLoads, layout));
  const plan = planFromSlots({
    strategy: `eplb-${layout.policy}`,
    topology,
    model,
    slots,
    ...(options.generation === undefined ? {} : { generation: options.generation }),
    inputDigest,
  });

  const replicaCounts = slots.map((layerSlots) => {
    const counts = new Array<number>(model.experts).fill(0);
    for (const gpuSlots of layerSlots) {
      for (const expert of gpuSlots) {
        counts[expert] = (counts[expert] ?? 0) + 1;
      }
    }
    return counts;
  });

  return {
    plan,
    layout,
    replicaCounts,
    duplicateInstances: countDuplicateInstances(plan),
  };
}

/**
 * Resolves the policy and the group count. A model with a single expert group (DeepSeek-V2-Lite)
 * has nothing to pack hierarchically. An explicit `hierarchical` request therefore splits its
 * experts into `nodes` contiguous groups, so the hierarchical variant can be compared with the
 * global one. `auto` never does this: a single group on several nodes resolves to global.
 */
export function resolveEplbLayout(
  options: Pick<EplbOptions, 'policy' | 'groups'>,
  topology: Topology,
  experts: number,
): EplbLayout {
  const modelGroups = options.groups ?? 1;
  if (!Number.isInteger(modelGroups) || modelGroups < 1 || experts % modelGroups !== 0) {
    throw new TopologyError(
      `EPLB groups must be a positive integer that divides the ${experts} experts, got ${modelGroups}`,
    );
  }

  const gpus = topology.nodes * topology.gpusPerNode;
  const global: EplbLayout = { policy: 'global', groups: 1, nodes: 1, gpus, slotsPerGpu: topology.slotsPerGpu };
  const groupsDivideByNodes = modelGroups % topology.nodes === 0;

  switch (options.policy) {
    case 'global':
      return global;
    case 'auto':
      return groupsDivideByNodes ? { ...global, policy: 'hierarchical', groups: modelGroups, nodes: topology.nodes } : global;
    case 'hierarchical': {
      const groups = modelGroups === 1 ? topology.nodes : modelGroups;
      if (groups % topology.nodes !== 0 || experts % groups !== 0) {
        throw new TopologyError(
          `hierarchical EPLB needs expert groups that divide by the ${topology.nodes} nodes and divide ` +
            `the ${experts} experts, got ${groups} groups; use the global policy`,
        );
      }
      return { ...global, policy: 'hierarchical', groups, nodes: topology.nodes };
    }
    default:
      throw new UsageError(`EPLB policy must be global, hierarchical or auto, got ${String(options.policy)}`);
  }
}

/**
 * Gives one instance to every expert, then repeatedly one more instance to the expert with the
 * highest load per instance until `physical` instances exist. Ties go to the lowest `tieOrder`
 * value, which defaults to the expert index. O(physical x E).
 */
export function replicateExperts(
  loads: ArrayLike<number>,
  physical: number,
  tieOrder: ArrayLike<number> = identityOrder(loads.length),
): Replication {
  const experts = loads.length;
  if (physical < experts) {
    throw new TopologyError(`EPLB needs at least one slot per expert: ${physical} slots for ${experts} experts`);
  }

  const physicalToLogical = Array.from({ length: experts }, (_, expert) => expert);
  const replicaCounts = new Array<number>(experts).fill(1);
  for (let instance = experts; instance < physical; instance++) {
    let best = 0;
    let bestLoad = -Infinity;
    for (let expert = 0; expert < experts; expert++) {
      const loadPerInstance = (loads[expert] ?? 0) / (replicaCounts[expert] ?? 1);
      const better =
        loadPerInstance > bestLoad ||
        (loadPerInstance === bestLoad && (tieOrder[expert] ?? expert) < (tieOrder[best] ?? best));
      if (better) {
        best = expert;
        bestLoad = loadPerInstance;
      }
    }
    physicalToLogical.push(best);
    replicaCounts[best] = (replicaCounts[best] ?? 1) + 1;
  }

  return { physicalToLogical, replicaCounts };
}

/**
 * Packs weighted items into `packs` packs of equal item count, balancing the packs' total weights.
 * Items are taken by weight descending, ties by lower index. Each goes to the pack with the lowest
 * total among the packs that still have room, ties by lower pack index. With one item per pack,
 * item i goes to pack i, as eplb.py does. O(items x packs).
 */
export function balancedPacking(weights: ArrayLike<number>, packs: number): Packing {
  const items = weights.length;
  if (!Number.isInteger(packs) || packs < 1 || items % packs !== 0) {
    throw new TopologyError(`balanced packing needs an item count (${items}) that divides by the packs (${packs})`);
  }

  const perPack = items / packs;
  if (perPack === 1) {
    const identity = identityOrder(items);
    return { packOf: identity, rankInPack: new Array<number>(items).fill(0) };
  }

  const order = identityOrder(items).sort((a, b) => (weights[b] ?? 0) - (weights[a] ?? 0) || a - b);
  const packWeights = new Array<number>(packs).fill(0);
  const packItems = new Array<number>(packs).fill(0);
  const packOf = new Array<number>(items).fill(-1);
  const rankInPack = new Array<number>(items).fill(-1);

  for (const item of order) {
    let chosen = -1;
    for (let pack = 0; pack < packs; pack++) {
      if ((packItems[pack] ?? 0) >= perPack) {
        continue;
      }
      if (chosen === -1 || (packWeights[pack] ?? 0) < (packWeights[chosen] ?? 0)) {
        chosen = pack;
      }
    }
    packOf[item] = chosen;
    rankInPack[item] = packItems[chosen] ?? 0;
    packWeights[chosen] = (packWeights[chosen] ?? 0) + (weights[item] ?? 0);
    packItems[chosen] = (packItems[chosen] ?? 0) + 1;
  }

  return { packOf, rankInPack };
}

/** Places one layer: returns slots[gpu], the experts of each GPU in slot order. */
export function placeLayer(loads: ArrayLike<number>, layout: EplbLayout): number[][] {
  const experts = loads.length;
  const groupSize = experts / layout.groups;
  const groupsPerNode = layout.groups / layout.nodes;
  const gpusPerNode = layout.gpus / layout.nodes;
  const physicalPerNode = gpusPerNode * layout.slotsPerGpu;

  // Step 1: expert groups to nodes.
  const groupLoads = Array.from({ length: layout.groups }, (_, group) => {
    let total = 0;
    for (let offset = 0; offset < groupSize; offset++) {
      total += loads[group * groupSize + offset] ?? 0;
    }
    return total;
  });
  const groupPacking = balancedPacking(groupLoads, layout.nodes);
  const groupsOfNode = Array.from({ length: layout.nodes }, () => new Array<number>(groupsPerNode).fill(-1));
  groupPacking.packOf.forEach((node, group) => {
    const row = groupsOfNode[node];
    if (row !== undefined) {
      row[groupPacking.rankInPack[group] ?? 0] = group;
    }
  });

  // Nodes hold consecutive GPUs, so concatenating the nodes' GPU lists gives slots[gpu].
  return groupsOfNode.flatMap((groups) => {
    // The node's experts, group by group in packing order. Replication breaks ties by expert id,
    // whereas eplb.py breaks them by position in this list. Both agree for the global policy.
    const nodeExperts = groups.flatMap((group) =>
      Array.from({ length: groupSize }, (_, offset) => group * groupSize + offset),
    );
    const nodeLoads = nodeExperts.map((expert) => loads[expert] ?? 0);

    // Step 2: replicas inside the node.
    const replication = replicateExperts(nodeLoads, physicalPerNode, nodeExperts);

    // Step 3: instances to the node's GPUs, weighted by load per instance.
    const instanceLoads = replication.physicalToLogical.map(
      (local) => (nodeLoads[local] ?? 0) / (replication.replicaCounts[local] ?? 1),
    );
    const packing = balancedPacking(instanceLoads, gpusPerNode);

    const nodeSlots = Array.from({ length: gpusPerNode }, () => new Array<number>(layout.slotsPerGpu).fill(-1));
    replication.physicalToLogical.forEach((local, instance) => {
      const gpuSlots = nodeSlots[packing.packOf[instance] ?? 0];
      if (gpuSlots !== undefined) {
        gpuSlots[packing.rankInPack[instance] ?? 0] = nodeExperts[local] ?? -1;
      }
    });
    return nodeSlots;
  });
}

function identityOrder(length: number): number[] {
  return Array.from({ length }, (_, index) => index);
}

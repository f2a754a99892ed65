/**
 * Replication of hot experts into spare slots.
 *
 * paperReplication: the GRACE-MoE rule (arXiv 2509.25041, section 4.2). With skew
 * rho = max GPU load / mean GPU load, n = min(max(1, floor(rho)), GPUs - 1) replicas go to the hottest
 * experts of the heaviest GPU: the shortest prefix of its experts, by load descending, whose load
 * reaches W_max x n / (n + 1), each placed on the n least-loaded GPUs. One pass.
 *
 * fillSpareSlots: the iterative extension. While a slot is free, add the single instance that lowers
 * the predicted maximum GPU cost most (then the mean cost), taken from the experts of the most
 * expensive GPUs and the hottest experts that some node lacks; a node without an instance of the
 * expert is preferred on ties, so replicas also raise locality. Costs come from LoadPredictor, so
 * they see cross-node copies as well as compute.
 *
 * Ties: lower cost, then a node without the expert, then the hotter expert, then the lower expert
 * id, then the lower GPU index. Never two instances of one expert on one GPU.
 */
import type { LayerPlacement } from './placement.js';
import type { LoadPredictor } from './predict.js';

/** Experts on `gpu` sorted by load descending, ties by lower id. */
function expertsByLoad(placement: LayerPlacement, gpu: number, loads: ArrayLike<number>): number[] {
  return [...placement.slots[gpu]].sort((a, b) => loads[b] - loads[a] || a - b);
}

/** Applies the paper's single replication pass; returns the instances added. */
export function paperReplication(placement: LayerPlacement, predictor: LoadPredictor, loads: ArrayLike<number>): number {
  const gpuLoads = Array.from(predictor.load);
  const mean = gpuLoads.reduce((sum, value) => sum + value, 0) / gpuLoads.length;
  if (mean <= 0) return 0;

  let heaviest = 0;
  for (let g = 1; g < gpuLoads.length; g++) if (gpuLoads[g] > gpuLoads[heaviest]) heaviest = g;
  const maxLoad = gpuLoads[heaviest];
  const replicas = Math.min(Math.max(1, Math.floor(maxLoad / mean)), placement.gpus - 1);

  const chosen: number[] = [];
  let covered = 0;
  for (const expert of expertsByLoad(placement, heaviest, loads)) {
    if (covered >= (maxLoad * replicas) / (replicas + 1)) break;
    chosen.push(expert);
    // Share of the expert's load the heaviest GPU serves, as predicted.
    covered += loads[expert] / placement.instancesOf(expert).length;
  }

  const targets = Array.from({ length: placement.gpus }, (_, g) => g)
    .filter((g) => g !== heaviest)
    .sort((a, b) => gpuLoads[a] - gpuLoads[b] || a - b)
    .slice(0, replicas);

  let added = 0;
  for (const expert of chosen) {
    for (const gpu of targets) {
      if (placement.free(gpu) === 0 || placement.holds(gpu, expert)) continue;
      placement.add(gpu, expert);
      predictor.instanceAdded(expert, gpu);
      added++;
    }
  }
  return added;
}

interface Candidate {
  expert: number;
  gpu: number;
  peak: number;
  mean: number;
  newNode: boolean;
}

function better(a: Candidate, b: Candidate | null, loads: ArrayLike<number>): boolean {
  if (b === null) return true;
  const scale = Math.max(Math.abs(b.peak), 1e-30) * 1e-9;
  if (a.peak < b.peak - scale) return true;
  if (a.peak > b.peak + scale) return false;
  if (a.mean < b.mean - scale) return true;
  if (a.mean > b.mean + scale) return false;
  if (a.newNode !== b.newNode) return a.newNode;
  if (loads[a.expert] !== loads[b.expert]) return loads[a.expert] > loads[b.expert];
  if (a.expert !== b.expert) return a.expert < b.expert;
  return a.gpu < b.gpu;
}

/**
 * Fills spare slots one instance at a time; stops after `limit` instances, when no slot is free, or
 * when no expert can be placed. Returns the instances added.
 *
 * Each step looks at the 3 hottest experts of each of the 2 most expensive GPUs and the 3 hottest
 * experts (by load per instance) that some node lacks (2 and 2 on large layers); each is tried on at most 4 GPUs (see
 * targetsFor). Cost per step: O(GPUs + experts + nodes log nodes) plus 36 trial predictions.
 */
export function fillSpareSlots(
  placement: LayerPlacement,
  predictor: LoadPredictor,
  loads: ArrayLike<number>,
  limit = Infinity,
): number {
  const { nodes, gpusPerNode } = placement.shape;
  const gpus = placement.gpus;
  // trialAdd scans past the affected GPUs in this list and falls back to a full scan if all are.
  const topSize = Math.min(gpus, 32);
  // Fewer candidates per step on large layers, where a step is cheap to get wrong and there are
  // many of them.
  const poolSize = gpus * placement.shape.experts > 8192 ? 2 : 3;
  let added = 0;
  while (added < limit && placement.totalFree() > 0) {
    const costs = predictor.costs();
    let sum = 0;
    for (let g = 0; g < gpus; g++) sum += costs[g];
    const top = highestCosts(costs, topSize);
    const cheapest = cheapestFreeGpuPerNode(placement, costs);
    const nodeOrder = Array.from({ length: nodes }, (_, n) => n)
      .filter((n) => cheapest[n] >= 0)
      .sort((a, b) => costs[cheapest[a]] - costs[cheapest[b]] || a - b);

    const pool = new Set<number>();
    for (const gpu of [top[0], top[1]]) {
      if (gpu === undefined) continue;
      for (const expert of expertsByLoad(placement, gpu, loads).slice(0, poolSize)) pool.add(expert);
    }
    for (const expert of hottestMissing(placement, loads, poolSize)) pool.add(expert);

    let best: Candidate | null = null;
    for (const expert of pool) {
      for (const gpu of targetsFor(placement, costs, cheapest, nodeOrder, gpusPerNode, expert)) {
        const newNode = !placement.hasInstanceOnNode(expert, placement.nodeOf(gpu));
        const trial = predictor.trialAdd(expert, gpu, costs, top);
        const candidate = { expert, gpu, peak: trial.peak, mean: (sum + trial.sumDelta) / gpus, newNode };
        if (better(candidate, best, loads)) best = candidate;
      }
    }
    if (best === null) {
      // No hot expert fits: place the hottest expert that is missing somewhere with a free slot.
      best = anyPlacement(placement, costs, loads);
      if (best === null) break;
    }
    placement.add(best.gpu, best.expert);
    predictor.instanceAdded(best.expert, best.gpu);
    added++;
  }
  return added;
}

/** Returns the `size` GPUs of highest cost, highest first (ties to the lower index), in one pass. */
function highestCosts(costs: Float64Array, size: number): Int32Array {
  const top = new Int32Array(size).fill(-1);
  let count = 0;
  for (let g = 0; g < costs.length; g++) {
    const cost = costs[g];
    if (count === size && cost <= costs[top[size - 1]]) continue;
    let at = count < size ? count++ : size - 1;
    while (at > 0 && costs[top[at - 1]] < cost) {
      top[at] = top[at - 1];
      at--;
    }
    top[at] = g;
  }
  return top.subarray(0, count);
}

/** For every node, its cheapest GPU with a free slot, or -1. */
function cheapestFreeGpuPerNode(placement: LayerPlacement, costs: Float64Array): Int32Array {
  const per = placement.shape.gpusPerNode;
  const result = new Int32Array(placement.shape.nodes).fill(-1);
  for (let g = 0; g < placement.gpus; g++) {
    if (placement.free(g) === 0) continue;
    const node = Math.floor(g / per);
    if (result[node] < 0 || costs[g] < costs[result[node]]) result[node] = g;
  }
  return result;
}

/** Returns the `count` experts with the highest load per instance that some node lacks. */
function hottestMissing(placement: LayerPlacement, loads: ArrayLike<number>, count: number): number[] {
  const { experts, nodes } = placement.shape;
  const chosen: number[] = [];
  const share = (e: number): number => loads[e] / placement.instancesOf(e).length;
  for (let e = 0; e < experts; e++) {
    if (loads[e] <= 0 || placement.instancesOf(e).length >= nodes) continue;
    let at = chosen.length;
    while (at > 0 && share(chosen[at - 1]) < share(e)) at--;
    if (at >= count) continue;
    chosen.splice(at, 0, e);
    if (chosen.length > count) chosen.pop();
  }
  return chosen;
}

/**
 * Returns up to 4 target GPUs for a replica of `expert`: the cheapest free GPU of the 2 cheapest
 * nodes without the expert, and of the 2 cheapest other nodes. A node whose cheapest free GPU
 * already contains the expert falls back to its next free GPU.
 */
function targetsFor(
  placement: LayerPlacement,
  costs: Float64Array,
  cheapest: Int32Array,
  nodeOrder: readonly number[],
  perNode: number,
  expert: number,
): number[] {
  const targets: number[] = [];
  let onNewNode = 0;
  let elsewhere = 0;
  for (const node of nodeOrder) {
    const newNode = !placement.hasInstanceOnNode(expert, node);
    if (newNode ? onNewNode >= 2 : elsewhere >= 2) continue;
    let gpu = cheapest[node];
    if (placement.holds(gpu, expert)) {
      gpu = -1;
      for (let g = node * perNode; g < (node + 1) * perNode; g++) {
        if (placement.free(g) === 0 || placement.holds(g, expert)) continue;
        if (gpu < 0 || costs[g] < costs[gpu]) gpu = g;
      }
      if (gpu < 0) continue;
    }
    targets.push(gpu);
    if (newNode) onNewNode++;
    else elsewhere++;
    if (onNewNode >= 2 && elsewhere >= 2) break;
  }
  return targets;
}

function anyPlacement(placement: LayerPlacement, costs: Float64Array, loads: ArrayLike<number>): Candidate | null {
  const experts = Array.from({ length: placement.shape.experts }, (_, e) => e).sort((a, b) => loads[b] - loads[a] || a - b);
  for (const expert of experts) {
    let best = -1;
    for (let gpu = 0; gpu < placement.gpus; gpu++) {
      if (placement.free(gpu) === 0 || placement.holds(gpu, expert)) continue;
      if (best < 0 || costs[gpu] < costs[best]) best = gpu;
    }
    if (best >= 0) {
      return { expert, gpu: best, peak: 0, mean: 0, newNode: !placement.hasInstanceOnNode(expert, placement.nodeOf(best)) };
    }
  }
  return null;
}

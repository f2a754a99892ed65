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
 */
export function fillSpareSlots(
  placement: LayerPlacement,
  predictor: LoadPredictor,
  loads: ArrayLike<number>,
  limit = Infinity,
): number {
  const { experts, nodes } = placement.shape;
  let added = 0;
  while (added < limit && placement.totalFree() > 0) {
    const costs = predictor.costs();
    const order = Array.from({ length: placement.gpus }, (_, g) => g).sort((a, b) => costs[b] - costs[a] || a - b);

    const pool = new Set<number>();
    for (const gpu of order.slice(0, 2)) for (const expert of expertsByLoad(placement, gpu, loads).slice(0, 4)) pool.add(expert);
    const missing = Array.from({ length: experts }, (_, e) => e)
      .filter((e) => loads[e] > 0 && placement.instancesOf(e).length < nodes)
      .sort((a, b) => loads[b] / placement.instancesOf(b).length - loads[a] / placement.instancesOf(a).length || a - b)
      .slice(0, 4);
    for (const expert of missing) pool.add(expert);

    let best: Candidate | null = null;
    for (const expert of pool) {
      for (let node = 0; node < nodes; node++) {
        const gpu = cheapestFreeGpu(placement, costs, node, expert);
        if (gpu < 0) continue;
        const candidate = evaluate(placement, predictor, expert, gpu);
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

function cheapestFreeGpu(placement: LayerPlacement, costs: Float64Array, node: number, expert: number): number {
  const g = placement.shape.gpusPerNode;
  let best = -1;
  for (let gpu = node * g; gpu < (node + 1) * g; gpu++) {
    if (placement.free(gpu) === 0 || placement.holds(gpu, expert)) continue;
    if (best < 0 || costs[gpu] < costs[best]) best = gpu;
  }
  return best;
}

/** Predicted peak and mean cost if an instance of `expert` were added on `gpu`. */
function evaluate(placement: LayerPlacement, predictor: LoadPredictor, expert: number, gpu: number): Candidate {
  const newNode = !placement.hasInstanceOnNode(expert, placement.nodeOf(gpu));
  placement.add(gpu, expert);
  const trial = placement;
  predictor.instanceAdded(expert, gpu);
  let peak = 0;
  let sum = 0;
  for (let g = 0; g < trial.gpus; g++) {
    const cost = predictor.cost(g);
    peak = Math.max(peak, cost);
    sum += cost;
  }
  removeLast(placement, predictor, expert, gpu);
  return { expert, gpu, peak, mean: sum / trial.gpus, newNode };
}

function removeLast(placement: LayerPlacement, predictor: LoadPredictor, expert: number, gpu: number): void {
  placement.remove(gpu, expert);
  predictor.instanceRemoved(expert, gpu);
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

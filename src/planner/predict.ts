/**
 * Load prediction under locality-aware routing, and routing weights by fixed-point iteration.
 *
 * Tokens are spread evenly over GPUs, so each GPU sends 1/P of an expert's selections. A source GPU
 * that holds an instance serves itself; the other GPUs of a node with instances split their share
 * over that node's instances by weight; GPUs of a node without instances split theirs over all
 * instances by weight. This is the expected value of the smooth weighted round-robin the routers
 * run, so no replay is needed.
 *
 * Weights: every instance's weight is multiplied by (mean GPU cost / its GPU's cost)^0.5 and the
 * expert's weights are renormalised, until no weight changes by more than 0.1%. The update settles
 * where instances on expensive GPUs get less of the traffic they can be spared.
 *
 * Cost: O(nodes + instances) per expert and round.
 */
import type { DispatchScheme } from '../evaluator/types.js';
import type { LayerPlacement } from './placement.js';

/** Seconds per unit of load, from the cost model. */
export interface CostRates {
  readonly perPair: number;
  readonly perInterCopy: number;
  readonly perIntraCopy: number;
  readonly scheme: DispatchScheme;
}

export class LoadPredictor {
  /** Predicted token-expert pairs per GPU. */
  readonly load: Float64Array;
  /** Pairs per GPU that arrive from other nodes. */
  readonly remoteIn: Float64Array;
  /** Pairs per GPU that arrive from other GPUs of its node. */
  readonly localIn: Float64Array;
  /** Pairs per node that arrive from other nodes. */
  readonly nodeRemoteIn: Float64Array;
  private readonly weights: Float64Array[];
  private readonly contributed: number[][];
  /** Scratch arrays of trialAdd, zero between calls. */
  private readonly trial: {
    load: Float64Array;
    remoteIn: Float64Array;
    localIn: Float64Array;
    nodeRemoteIn: Float64Array;
    seen: Int32Array;
    stamp: number;
  };

  constructor(
    private readonly placement: LayerPlacement,
    private readonly expertLoads: ArrayLike<number>,
    private readonly rates: CostRates,
  ) {
    const { gpus, shape } = placement;
    this.load = new Float64Array(gpus);
    this.remoteIn = new Float64Array(gpus);
    this.localIn = new Float64Array(gpus);
    this.nodeRemoteIn = new Float64Array(shape.nodes);
    this.weights = Array.from({ length: shape.experts }, (_, e) => new Float64Array(placement.instancesOf(e).length).fill(1));
    this.contributed = Array.from({ length: shape.experts }, () => []);
    this.trial = {
      load: new Float64Array(gpus),
      remoteIn: new Float64Array(gpus),
      localIn: new Float64Array(gpus),
      nodeRemoteIn: new Float64Array(shape.nodes),
      seen: new Int32Array(gpus),
      stamp: 0,
    };
    for (let e = 0; e < shape.experts; e++) this.apply(e, 1);
  }

  /** Routing weight of every instance of `expert`, in the order of placement.instancesOf. */
  weightsOf(expert: number): Float64Array {
    return this.weights[expert];
  }

  /** Modelled seconds GPU g spends on this layer's tokens. */
  cost(gpu: number): number {
    return this.costOf(
      this.load[gpu],
      this.remoteIn[gpu],
      this.localIn[gpu],
      this.nodeRemoteIn[this.placement.nodeOf(gpu)],
    );
  }

  private costOf(load: number, remoteIn: number, localIn: number, nodeRemoteIn: number): number {
    const { rates } = this;
    const compute = load * rates.perPair;
    if (rates.scheme === 'flat') return compute + remoteIn * rates.perInterCopy + localIn * rates.perIntraCopy;
    const perNode = this.placement.shape.gpusPerNode;
    return compute + (nodeRemoteIn / perNode) * rates.perInterCopy + (remoteIn + localIn) * rates.perIntraCopy;
  }

  /**
   * Predicts the peak GPU cost and the change of the summed cost if an instance of `expert` were
   * added on `gpu`, without changing the prediction. `costs` are the current costs and `order`
   * lists the most expensive GPUs (all or a prefix), highest first. Cost: O(instances + GPUs whose cost changes),
   * where a hierarchical prediction changes every GPU of a node whose network arrivals change.
   */
  trialAdd(expert: number, gpu: number, costs: Float64Array, order: Int32Array): { peak: number; sumDelta: number } {
    const { placement, trial } = this;
    const old = this.contributed[expert];
    const oldWeights = this.weights[expert];
    let at = 0;
    while (at < old.length && old[at] < gpu) at++;
    const gpus = [...old.slice(0, at), gpu, ...old.slice(at)];
    const weights = new Float64Array(gpus.length);
    for (let i = 0, j = 0; i < gpus.length; i++) weights[i] = i === at ? 1 : oldWeights[j++];

    const total = this.expertLoads[expert];
    distribute(placement, old, oldWeights, -total, trial);
    distribute(placement, gpus, weights, total, trial);

    trial.stamp++;
    const affected: number[] = [];
    const perNode = placement.shape.gpusPerNode;
    for (const g of gpus) {
      if (this.rates.scheme === 'flat') {
        if (trial.seen[g] !== trial.stamp) {
          trial.seen[g] = trial.stamp;
          affected.push(g);
        }
        continue;
      }
      const node = placement.nodeOf(g);
      for (let other = node * perNode; other < (node + 1) * perNode; other++) {
        if (trial.seen[other] === trial.stamp) continue;
        trial.seen[other] = trial.stamp;
        affected.push(other);
      }
    }

    let peak = 0;
    let sumDelta = 0;
    for (const g of affected) {
      const node = placement.nodeOf(g);
      const cost = this.costOf(
        this.load[g] + trial.load[g],
        this.remoteIn[g] + trial.remoteIn[g],
        this.localIn[g] + trial.localIn[g],
        this.nodeRemoteIn[node] + trial.nodeRemoteIn[node],
      );
      peak = Math.max(peak, cost);
      sumDelta += cost - costs[g];
    }
    let unaffectedFound = false;
    for (let i = 0; i < order.length; i++) {
      const g = order[i];
      if (trial.seen[g] === trial.stamp) continue;
      peak = Math.max(peak, costs[g]);
      unaffectedFound = true;
      break;
    }
    if (!unaffectedFound) {
      // `order` holds only the most expensive GPUs and all were affected: scan the rest.
      for (let g = 0; g < costs.length; g++) if (trial.seen[g] !== trial.stamp) peak = Math.max(peak, costs[g]);
    }

    for (const g of gpus) {
      trial.load[g] = 0;
      trial.remoteIn[g] = 0;
      trial.localIn[g] = 0;
      trial.nodeRemoteIn[placement.nodeOf(g)] = 0;
    }
    return { peak, sumDelta };
  }

  costs(): Float64Array {
    const costs = new Float64Array(this.placement.gpus);
    for (let g = 0; g < costs.length; g++) costs[g] = this.cost(g);
    return costs;
  }

  /** Re-derives the prediction of `expert` after the placement gained an instance of it on `gpu`. */
  instanceAdded(expert: number, gpu: number): void {
    const old = this.weights[expert];
    const gpus = this.placement.instancesOf(expert);
    const at = gpus.indexOf(gpu);
    const next = new Float64Array(gpus.length);
    for (let i = 0, j = 0; i < gpus.length; i++) next[i] = i === at ? 1 : old[j++];
    this.rebuild(expert, next);
  }

  /** Re-derives the prediction of `expert` after the placement lost its instance on `gpu`. */
  instanceRemoved(expert: number, gpu: number): void {
    const at = this.contributed[expert].indexOf(gpu);
    const next = this.weights[expert].filter((_, i) => i !== at);
    this.rebuild(expert, next);
  }

  /** Iterates the weights to their fixed point; returns the rounds used. */
  settleWeights(maxRounds = 30): number {
    const { placement } = this;
    for (let round = 1; round <= maxRounds; round++) {
      const costs = this.costs();
      let mean = 0;
      for (const cost of costs) mean += cost;
      mean /= costs.length;
      if (mean <= 0) return round;
      let change = 0;
      for (let e = 0; e < placement.shape.experts; e++) {
        const gpus = placement.instancesOf(e);
        if (gpus.length < 2) continue;
        const next = new Float64Array(gpus.length);
        let sum = 0;
        for (let i = 0; i < gpus.length; i++) {
          const cost = Math.max(costs[gpus[i]], mean * 1e-3);
          next[i] = this.weights[e][i] * Math.sqrt(mean / cost);
          sum += next[i];
        }
        for (let i = 0; i < gpus.length; i++) {
          next[i] = Math.min(1e3, Math.max(1e-3, (next[i] * gpus.length) / sum));
          change = Math.max(change, Math.abs(next[i] - this.weights[e][i]) / this.weights[e][i]);
        }
        this.rebuild(e, next);
      }
      if (change < 1e-3) return round;
    }
    return maxRounds;
  }

  private rebuild(expert: number, weights: Float64Array): void {
    this.apply(expert, -1);
    this.weights[expert] = weights;
    this.apply(expert, 1);
  }

  /**
   * Adds (sign 1) or removes (sign -1) the expected contribution of `expert`. Removal uses the
   * instance list and weights of the last addition, so it stays exact after the placement changed.
   */
  private apply(expert: number, sign: 1 | -1): void {
    if (sign === 1) this.contributed[expert] = [...this.placement.instancesOf(expert)];
    distribute(this.placement, this.contributed[expert], this.weights[expert], this.expertLoads[expert] * sign, this);
  }
}

/** Adds the expected routing of `total` selections of one expert to the predictor's arrays. */
function distribute(
  placement: LayerPlacement,
  gpus: readonly number[],
  weights: Float64Array,
  total: number,
  into: { load: Float64Array; remoteIn: Float64Array; localIn: Float64Array; nodeRemoteIn: Float64Array },
): void {
  if (gpus.length === 0 || total === 0) return;
  const { nodes, gpusPerNode } = placement.shape;
  const share = total / placement.gpus;
  let allWeight = 0;
  for (let i = 0; i < gpus.length; i++) allWeight += weights[i];

  let emptyNodes = 0;
  let i = 0;
  for (let node = 0; node < nodes; node++) {
    const first = i;
    let nodeWeight = 0;
    while (i < gpus.length && Math.floor(gpus[i] / gpusPerNode) === node) nodeWeight += weights[i++];
    const count = i - first;
    if (count === 0) {
      emptyNodes++;
      continue;
    }
    const others = (gpusPerNode - count) * share;
    for (let j = first; j < i; j++) {
      const fromNode = (others * weights[j]) / nodeWeight;
      into.load[gpus[j]] += share + fromNode;
      into.localIn[gpus[j]] += fromNode;
    }
  }
  if (emptyNodes === 0) return;
  const remote = emptyNodes * gpusPerNode * share;
  for (let j = 0; j < gpus.length; j++) {
    const part = (remote * weights[j]) / allWeight;
    into.load[gpus[j]] += part;
    into.remoteIn[gpus[j]] += part;
    into.nodeRemoteIn[Math.floor(gpus[j] / gpusPerNode)] += part;
  }
}

/**
 * Replica choice for token-expert pairs.
 *
 * Locality-aware routing (TAR in GRACE-MoE, arXiv 2509.25041): a token is served by an instance on
 * its own GPU if there is one, else by the instances on its own node, else by all instances. Inside
 * a tier the choice is deterministic smooth weighted round-robin (the algorithm nginx uses for
 * weighted upstreams), keyed by (source GPU, layer, expert), so equally near instances share the
 * load in proportion to their weights and the choice never depends on a pair's rank in the top-k
 * list. Weighted random choice is an option.
 *
 * The engines' own rule, used for the EPLB baseline as SGLang and vLLM apply it, picks instance
 * (token * topK + rank) mod count over all instances, whatever their locality.
 *
 * Cost per choice: O(instances of the expert).
 */
import { nodeOfGpu } from '../topology.js';
import { PrecomputedLocalityChooser } from './precomputed.js';
import type { CompiledTable } from './table.js';
import type { ReplicaChooser } from './types.js';

export type TierSelection = 'smooth-round-robin' | 'weighted-random';

export interface LocalityOptions {
  readonly selection?: TierSelection;
  /** Source of uniform floats in [0, 1) for weighted random selection. */
  readonly random?: () => number;
  /**
   * Skip the own-GPU or own-node tier when the mean predicted load of its GPUs exceeds `factor`
   * times the layer's mean GPU load. predictedGpuLoad[l][g] is in any consistent unit.
   */
  readonly spill?: { readonly factor: number; readonly predictedGpuLoad: readonly ArrayLike<number>[] };
}

/**
 * Smooth weighted round-robin state, one Float64Array of "current weights" per key. Selecting
 * among candidate instances adds each candidate's weight to its current weight, picks the largest
 * (ties to the lower instance index), and subtracts the candidates' total from the pick.
 */
class SmoothRoundRobin {
  private readonly state = new Map<number, Float64Array>();

  select(key: number, size: number, candidates: Int32Array, count: number, weights: Float64Array, base: number): number {
    let current = this.state.get(key);
    if (current === undefined) {
      current = new Float64Array(size);
      this.state.set(key, current);
    }
    let total = 0;
    let best = -1;
    let bestValue = -Infinity;
    for (let c = 0; c < count; c++) {
      const i = candidates[c] as number;
      const weight = weights[base + i] as number;
      total += weight;
      const value = (current[i] as number) + weight;
      current[i] = value;
      if (value > bestValue) {
        bestValue = value;
        best = i;
      }
    }
    current[best] = (current[best] as number) - total;
    return best;
  }
}

/** Own GPU, then own node, then everywhere; smooth weighted round-robin or weighted random in a tier. */
export class LocalityChooser implements ReplicaChooser {
  private readonly rotation = new SmoothRoundRobin();
  private readonly candidates: Int32Array;
  private readonly meanLoad: Float64Array;

  constructor(
    private readonly table: CompiledTable,
    private readonly options: LocalityOptions = {},
  ) {
    let maxInstances = 0;
    for (let i = 0; i + 1 < table.offsets.length; i++) {
      maxInstances = Math.max(maxInstances, (table.offsets[i + 1] as number) - (table.offsets[i] as number));
    }
    this.candidates = new Int32Array(maxInstances);
    this.meanLoad = new Float64Array(table.layers);
    const predicted = options.spill?.predictedGpuLoad;
    if (predicted) {
      for (let l = 0; l < table.layers; l++) {
        const loads = predicted[l];
        let sum = 0;
        for (let g = 0; g < table.gpus; g++) sum += loads ? Number(loads[g] ?? 0) : 0;
        this.meanLoad[l] = sum / table.gpus;
      }
    }
  }

  choose(sourceGpu: number, layer: number, expert: number, _token?: number, _rank?: number): number {
    const { table } = this;
    const slot = layer * table.experts + expert;
    const base = table.offsets[slot] as number;
    const size = (table.offsets[slot + 1] as number) - base;
    const gpus = table.instanceGpu;

    if (size === 1) return gpus[base] as number;

    for (let i = 0; i < size; i++) {
      if (gpus[base + i] === sourceGpu && !this.spills(layer, [sourceGpu])) return sourceGpu;
    }

    const node = nodeOfGpu(table.topology, sourceGpu);
    let count = 0;
    for (let i = 0; i < size; i++) {
      if (nodeOfGpu(table.topology, gpus[base + i] as number) === node) this.candidates[count++] = i;
    }
    if (count > 0 && this.spillsCandidates(layer, base, count)) count = 0;
    if (count === 0) {
      for (let i = 0; i < size; i++) this.candidates[i] = i;
      count = size;
    }
    if (count === 1) return gpus[base + (this.candidates[0] as number)] as number;

    const pick =
      this.options.selection === 'weighted-random'
        ? this.randomPick(base, count)
        : this.rotation.select(slot * table.gpus + sourceGpu, size, this.candidates, count, table.instanceWeight, base);
    return gpus[base + pick] as number;
  }

  private randomPick(base: number, count: number): number {
    const random = this.options.random ?? Math.random;
    let total = 0;
    for (let c = 0; c < count; c++) total += this.table.instanceWeight[base + (this.candidates[c] as number)] as number;
    let target = random() * total;
    for (let c = 0; c < count; c++) {
      const i = this.candidates[c] as number;
      target -= this.table.instanceWeight[base + i] as number;
      if (target < 0) return i;
    }
    return this.candidates[count - 1] as number;
  }

  private spills(layer: number, gpus: readonly number[]): boolean {
    const spill = this.options.spill;
    if (!spill) return false;
    const loads = spill.predictedGpuLoad[layer];
    if (!loads) return false;
    let sum = 0;
    for (const g of gpus) sum += Number(loads[g] ?? 0);
    return sum / gpus.length > spill.factor * (this.meanLoad[layer] as number);
  }

  private spillsCandidates(layer: number, base: number, count: number): boolean {
    if (!this.options.spill) return false;
    const gpus: number[] = [];
    for (let c = 0; c < count; c++) gpus.push(this.table.instanceGpu[base + (this.candidates[c] as number)] as number);
    return this.spills(layer, gpus);
  }
}

/** Smooth weighted round-robin over all instances, ignoring locality (an ablation of TAR). */
export class WeightedChooser implements ReplicaChooser {
  private readonly rotation = new SmoothRoundRobin();
  private readonly all: Int32Array;

  constructor(private readonly table: CompiledTable) {
    let maxInstances = 0;
    for (let i = 0; i + 1 < table.offsets.length; i++) {
      maxInstances = Math.max(maxInstances, (table.offsets[i + 1] as number) - (table.offsets[i] as number));
    }
    this.all = Int32Array.from({ length: maxInstances }, (_, i) => i);
  }

  choose(sourceGpu: number, layer: number, expert: number, _token?: number, _rank?: number): number {
    const { table } = this;
    const slot = layer * table.experts + expert;
    const base = table.offsets[slot] as number;
    const size = (table.offsets[slot + 1] as number) - base;
    if (size === 1) return table.instanceGpu[base] as number;
    const pick = this.rotation.select(slot * table.gpus + sourceGpu, size, this.all, size, table.instanceWeight, base);
    return table.instanceGpu[base + pick] as number;
  }
}

/** The engines' rule: instance (token * topK + rank) mod count, instances in physical slot order. */
export class PositionModuloChooser implements ReplicaChooser {
  constructor(
    private readonly table: CompiledTable,
    private readonly topK: number,
  ) {}

  choose(_sourceGpu: number, layer: number, expert: number, token: number, rank: number): number {
    const { table } = this;
    const slot = layer * table.experts + expert;
    const base = table.offsets[slot] as number;
    const size = (table.offsets[slot + 1] as number) - base;
    return table.instanceGpu[base + ((token * this.topK + rank) % size)] as number;
  }
}

export type RoutingPolicy = 'locality' | 'weighted' | 'position-modulo';

/**
 * Builds the chooser of a routing policy for a compiled table. Plain locality-aware routing uses
 * PrecomputedLocalityChooser, which returns the same choices faster, while the spill and weighted-random
 * options need LocalityChooser itself.
 */
export function createChooser(
  policy: RoutingPolicy,
  table: CompiledTable,
  topK: number,
  options: LocalityOptions = {},
): ReplicaChooser {
  switch (policy) {
    case 'locality':
      return options.spill === undefined && options.selection !== 'weighted-random'
        ? new PrecomputedLocalityChooser(table)
        : new LocalityChooser(table, options);
    case 'weighted':
      return new WeightedChooser(table);
    case 'position-modulo':
      return new PositionModuloChooser(table, topK);
  }
}

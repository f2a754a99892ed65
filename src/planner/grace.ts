/**
 * The GRACE-MoE planner (Grouping and Replication with locality-Aware routing, arXiv 2509.25041),
 * with the changes this product makes to it:
 *
 * - Node groups are bounded so a node never receives more experts than its slots hold.
 * - Candidates per layer: the h hottest experts get one instance on every node (h from 0 to the
 *   spare-slot budget), the other experts are grouped by node and then by GPU, and the remaining
 *   spare slots are filled by the iterative replication of replicate.ts; the paper's single
 *   replication pass is one more candidate. Every candidate is scored by replaying the profile's
 *   token sample through locality-aware routing and the cost model, and the fastest wins.
 * - GPU group sizes lie in [E' - d, E' + d] with d = max(1, round(E' x r)); r is chosen per layer at
 *   the knee of (size deviation, kept affinity) unless fixed.
 * - Routing weights come from the fixed-point load prediction of predict.ts.
 *
 * Pure and deterministic: plain data in, plain data out, no clock, no I/O.
 * Cost per layer: O(E^2 k) for the spectral embedding plus O(candidates x sample x topK) replay.
 */
import { createHash } from 'node:crypto';
import { StatsFormatError, TopologyError } from '../errors.js';
import { unitCosts, type CostModel } from '../evaluator/cost-model.js';
import { replayLayer } from '../evaluator/replay.js';
import type { DispatchScheme } from '../evaluator/types.js';
import { API_VERSION, type Plan, type PlanLayer, type PredictedMetrics } from '../plan/types.js';
import { LocalityChooser } from '../routing/policy.js';
import { compileRoutingTable } from '../routing/table.js';
import type { RouteInstance } from '../routing/types.js';
import type { ActivationStats } from '../stats/types.js';
import { gpuCount, type Topology } from '../topology.js';
import { kneeIndex } from './knee.js';
import { keptAffinity, kMeansCentres, partition, spectralEmbedding } from './partition.js';
import { LayerPlacement } from './placement.js';
import { LoadPredictor, type CostRates } from './predict.js';
import { fillSpareSlots, paperReplication } from './replicate.js';

export type ReplicationMode = 'auto' | 'fill' | 'paper' | 'none';

export interface GraceOptions {
  readonly topology: Topology;
  readonly cost: CostModel;
  /** Dispatch scheme the deployment uses; candidates are scored under it. */
  readonly dispatch?: DispatchScheme;
  /** Fixed non-uniformity r, or 'knee' to choose it per layer. */
  readonly nonUniformity?: number | 'knee';
  readonly nonUniformityGrid?: readonly number[];
  readonly replication?: ReplicationMode;
  /** Refine groups by single moves and swaps after the spectral split. */
  readonly refine?: boolean;
  /** Group load cap above the mean, as a fraction: 0.1 allows 10% above the mean. */
  readonly loadTolerance?: number;
  /**
   * Candidate counts of hot experts with an instance on every node, as fractions of the most the
   * spare slots allow. Default: 0, 1/4, 1/2, 3/4 and 1, or only 0 and 1 when experts x GPUs
   * exceeds 8192.
   */
  readonly hotFractions?: readonly number[];
  /** Sample tokens replayed to score each candidate; more tokens give steadier scores. */
  readonly scoringTokens?: number;
  /**
   * Highest max/mean GPU load a candidate may reach on the profile sample. Faster candidates above
   * it lose to any candidate below it; when none is below, the most balanced one wins.
   */
  readonly maxBalancedness?: number;
  readonly generation?: number;
  readonly strategy?: string;
}

type Settings = Required<Omit<GraceOptions, 'hotFractions'>> & Pick<GraceOptions, 'hotFractions'>;

export const GRACE_DEFAULTS: Readonly<Omit<Settings, 'topology' | 'cost'>> = Object.freeze({
  dispatch: 'hierarchical',
  nonUniformity: 'knee',
  nonUniformityGrid: Object.freeze([0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]),
  replication: 'auto',
  refine: true,
  loadTolerance: 0.1,
  maxBalancedness: 1.2,
  scoringTokens: 8192,
  generation: 1,
  strategy: 'grace',
});

/** Planner decisions for one layer, with the scores of every candidate. */
export interface LayerDiagnostics {
  readonly layer: number;
  readonly chosen: string;
  /** Hot experts given one instance per node. */
  readonly hotExperts: number;
  readonly nonUniformity: number;
  /** Share of the layer's co-activation kept inside nodes, and inside GPUs. */
  readonly nodeAffinityKept: number;
  readonly gpuAffinityKept: number;
  readonly replicasAdded: number;
  readonly weightRounds: number;
  readonly candidates: readonly { readonly name: string; readonly timeMs: number; readonly crossNodeCopiesPerToken: number }[];
}

export interface GraceResult {
  readonly plan: Plan;
  readonly layers: readonly LayerDiagnostics[];
}

interface Candidate {
  readonly name: string;
  readonly placement: LayerPlacement;
  readonly predictor: LoadPredictor;
  readonly hotExperts: number;
  readonly nonUniformity: number;
  readonly nodeAffinityKept: number;
  readonly gpuAffinityKept: number;
  readonly replicasAdded: number;
  readonly weightRounds: number;
}

interface Score {
  readonly timeMs: number;
  readonly crossNodeCopiesPerToken: number;
  readonly localHitRatio: number;
  readonly balancedness: number;
}

/** Computes a GRACE plan for the statistics. */
export function planGrace(stats: ActivationStats, options: GraceOptions): Plan {
  return planGraceDetailed(stats, options).plan;
}

/** Computes a GRACE plan and returns per-layer diagnostics with it. */
export function planGraceDetailed(stats: ActivationStats, options: GraceOptions): GraceResult {
  const settings: Settings = { ...GRACE_DEFAULTS, ...options };
  const { topology } = settings;
  checkInputs(stats, topology);

  const units = unitCosts(settings.cost);
  const rates: CostRates = {
    perPair: units.secondsPerPair,
    perInterCopy: units.bytesPerCopy * units.secondsPerInterByte,
    perIntraCopy: units.bytesPerCopy * units.secondsPerIntraByte,
    scheme: settings.dispatch,
  };

  const layers: PlanLayer[] = [];
  const diagnostics: LayerDiagnostics[] = [];
  const scores: Score[] = [];
  for (let layer = 0; layer < stats.layers; layer++) {
    const outcome = planLayer(stats, layer, settings, rates, units);
    layers.push(toPlanLayer(outcome.best.placement, outcome.best.predictor));
    scores.push(outcome.score);
    diagnostics.push({
      layer,
      chosen: outcome.best.name,
      hotExperts: outcome.best.hotExperts,
      nonUniformity: outcome.best.nonUniformity,
      nodeAffinityKept: outcome.best.nodeAffinityKept,
      gpuAffinityKept: outcome.best.gpuAffinityKept,
      replicasAdded: outcome.best.replicasAdded,
      weightRounds: outcome.best.weightRounds,
      candidates: outcome.candidates,
    });
  }

  const plan: Plan = {
    apiVersion: API_VERSION,
    kind: 'PlacementPlan',
    generation: settings.generation,
    strategy: settings.strategy,
    topology,
    model: { layers: stats.layers, experts: stats.experts, topK: stats.topK },
    layers,
    ...(stats.sample.tokens > 0 ? { predicted: averageScores(scores) } : {}),
    inputDigest: digestStats(stats),
  };
  return { plan, layers: diagnostics };
}

function checkInputs(stats: ActivationStats, topology: Topology): void {
  const gpus = gpuCount(topology);
  if (topology.slotsPerGpu * gpus < stats.experts) {
    throw new TopologyError(
      `${topology.nodes}x${topology.gpusPerNode} GPUs with ${topology.slotsPerGpu} slots each cannot hold ` +
        `${stats.experts} experts; use at least ${Math.ceil(stats.experts / gpus)} slots per GPU`,
    );
  }
  stats.perLayer.forEach((layer, l) => {
    if (layer.loads.length !== stats.experts) {
      throw new StatsFormatError(`perLayer[${l}].loads has ${layer.loads.length} entries; expected ${stats.experts}`);
    }
    layer.loads.forEach((value, e) => {
      if (!Number.isFinite(value) || value < 0) {
        throw new StatsFormatError(`perLayer[${l}].loads[${e}] is ${value}; loads must be finite and non-negative`);
      }
    });
    for (let i = 0; i < layer.coactivation.length; i++) {
      const value = layer.coactivation[i];
      if (!Number.isFinite(value) || value < 0) {
        const row = Math.floor(i / stats.experts);
        throw new StatsFormatError(
          `perLayer[${l}].coactivation[${row}][${i % stats.experts}] is ${value}; counts must be finite and non-negative`,
        );
      }
    }
  });
  if (stats.perLayer.length !== stats.layers) {
    throw new StatsFormatError(`perLayer has ${stats.perLayer.length} layers; expected ${stats.layers}`);
  }
}

function planLayer(
  stats: ActivationStats,
  layer: number,
  settings: Settings,
  rates: CostRates,
  units: ReturnType<typeof unitCosts>,
): { best: Candidate; score: Score; candidates: LayerDiagnostics['candidates'] } {
  const { topology } = settings;
  const experts = stats.experts;
  const { loads, coactivation } = stats.perLayer[layer];
  const gpus = gpuCount(topology);
  const spare = gpus * topology.slotsPerGpu - experts;
  const maxHot = topology.nodes > 1 ? Math.min(experts, Math.floor(spare / (topology.nodes - 1))) : 0;

  const builds: { name: string; hot: number; replication: 'fill' | 'paper' | 'none' }[] = [];
  const mode = settings.replication;
  if (mode === 'none') {
    builds.push({ name: 'grouping', hot: 0, replication: 'none' });
  } else {
    if (mode === 'auto' || mode === 'fill') {
      // Large layers get fewer candidates by default, to plan within seconds.
      const fractions = settings.hotFractions ?? (experts * gpus > 8192 ? [0, 1] : [0, 0.25, 0.5, 0.75, 1]);
      const hotCounts = [...new Set(fractions.map((f) => Math.round(f * maxHot)))];
      for (const hot of hotCounts) builds.push({ name: `spread-${hot}+fill`, hot, replication: 'fill' });
    }
    // The paper's single pass rarely wins once the fill is available; large layers skip it.
    if (mode === 'paper' || (mode === 'auto' && experts * gpus <= 8192)) builds.push({ name: 'paper', hot: 0, replication: 'paper' });
  }

  // The node-level embedding and k-means centres depend only on the layer, so every candidate
  // reuses them and takes the rows of the experts it groups.
  const dimensions = Math.min(topology.nodes, experts);
  const rows = spectralEmbedding(coactivation, experts, dimensions);
  const layerEmbedding = {
    rows,
    dimensions,
    centres: topology.nodes > 1 ? kMeansCentres(rows, experts, dimensions, topology.nodes) : new Float64Array(0),
  };
  const candidates: Candidate[] = [];
  for (const build of builds) {
    const candidate = buildCandidate(build, experts, loads, coactivation, layerEmbedding, settings, rates);
    if (candidate) candidates.push(candidate);
  }

  const scored = candidates.map((candidate) => ({ candidate, score: scoreCandidate(candidate, stats, layer, topology, units, settings) }));
  const balanced = scored.filter((entry) => entry.score.balancedness <= settings.maxBalancedness);
  let best = balanced.length > 0 ? balanced[0] : scored[0];
  for (const entry of balanced.length > 0 ? balanced : scored) {
    const a = entry.score;
    const b = best.score;
    const better =
      balanced.length === 0
        ? a.balancedness < b.balancedness - 1e-12
        : a.timeMs < b.timeMs - 1e-12 ||
          (Math.abs(a.timeMs - b.timeMs) <= 1e-12 && a.crossNodeCopiesPerToken < b.crossNodeCopiesPerToken);
    if (better) best = entry;
  }
  return {
    best: best.candidate,
    score: best.score,
    candidates: scored.map(({ candidate, score }) => ({
      name: candidate.name,
      timeMs: score.timeMs,
      crossNodeCopiesPerToken: score.crossNodeCopiesPerToken,
    })),
  };
}

function subMatrix(matrix: Float64Array, size: number, items: readonly number[]): Float64Array {
  const n = items.length;
  const sub = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) sub[i * n + j] = i === j ? 0 : matrix[items[i] * size + items[j]];
  }
  return sub;
}

function buildCandidate(
  build: { name: string; hot: number; replication: 'fill' | 'paper' | 'none' },
  experts: number,
  loads: Float64Array,
  coactivation: Float64Array,
  layerEmbedding: { readonly rows: Float64Array; readonly dimensions: number; readonly centres: Float64Array },
  settings: Settings,
  rates: CostRates,
): Candidate | null {
  const { topology } = settings;
  const { nodes, gpusPerNode, slotsPerGpu } = topology;
  const byLoad = Array.from({ length: experts }, (_, e) => e).sort((a, b) => loads[b] - loads[a] || a - b);
  const hot = byLoad.slice(0, build.hot).sort((a, b) => a - b);
  const hotSet = new Set(hot);
  const rest = Array.from({ length: experts }, (_, e) => e).filter((e) => !hotSet.has(e));

  // Node level: bounded so that a node's experts plus one instance of every hot expert fit its slots.
  const nodeCapacity = gpusPerNode * slotsPerGpu - hot.length;
  const lower = Math.floor(rest.length / nodes);
  const upper = Math.min(Math.ceil(rest.length / nodes), nodeCapacity);
  if (upper * nodes < rest.length || upper < 0) return null;
  const restAffinity = subMatrix(coactivation, experts, rest);
  const nodeRows = new Float64Array(rest.length * layerEmbedding.dimensions);
  rest.forEach((expert, i) => {
    for (let d = 0; d < layerEmbedding.dimensions; d++) {
      nodeRows[i * layerEmbedding.dimensions + d] = layerEmbedding.rows[expert * layerEmbedding.dimensions + d];
    }
  });
  const nodeSplit = partition({
    embedding: { rows: nodeRows, dimensions: layerEmbedding.dimensions },
    centres: layerEmbedding.centres,
    n: rest.length,
    affinity: restAffinity,
    loads: rest.map((e) => loads[e]),
    groups: nodes,
    minSize: Array(nodes).fill(lower),
    maxSize: Array(nodes).fill(upper),
    loadTolerance: settings.loadTolerance,
    refine: settings.refine,
  });
  const totalRest = keptAffinity(restAffinity, rest.length, new Int32Array(rest.length));

  // GPU level, per node, over the node's experts and its instance of every hot expert.
  const nodeItems: number[][] = Array.from({ length: nodes }, () => [...hot]);
  rest.forEach((expert, i) => nodeItems[nodeSplit.group[i]].push(expert));
  const itemLoad = (expert: number): number => (hotSet.has(expert) ? loads[expert] / nodes : loads[expert]);

  const grid = settings.nonUniformity === 'knee' ? settings.nonUniformityGrid : [settings.nonUniformity];
  const nodeAffinity = nodeItems.map((items) => subMatrix(coactivation, experts, items));
  // Computed once per node for every r; partition() deals small item sets by load instead.
  const nodeEmbeddings = nodeItems.map((items, node) =>
    gpusPerNode > 1 && items.length > 2 * gpusPerNode
      ? { rows: spectralEmbedding(nodeAffinity[node], items.length, gpusPerNode), dimensions: gpusPerNode }
      : undefined,
  );
  const options: { r: number; groups: Int32Array[]; deviation: number; kept: number }[] = [];
  const seenDeviation = new Set<string>();
  const deviationOf = (r: number, items: readonly number[]): number =>
    r > 0 || settings.nonUniformity === 'knee' ? Math.max(1, Math.round((items.length / gpusPerNode) * r)) : 0;
  for (const r of grid) {
    // Values of r that give every node the same size deviation d give the same partition.
    const key = nodeItems.map((items) => deviationOf(r, items)).join(',');
    if (seenDeviation.has(key)) continue;
    seenDeviation.add(key);
    const groups: Int32Array[] = [];
    let deviation = 0;
    let kept = 0;
    let feasible = true;
    for (let node = 0; node < nodes; node++) {
      const items = nodeItems[node];
      const mean = items.length / gpusPerNode;
      const d = deviationOf(r, items);
      const minSize = Math.max(0, Math.floor(mean) - d);
      const maxSize = Math.min(slotsPerGpu, Math.ceil(mean) + d);
      if (maxSize * gpusPerNode < items.length) {
        feasible = false;
        break;
      }
      const affinity = nodeAffinity[node];
      const embedding = nodeEmbeddings[node];
      const split = partition({
        ...(embedding ? { embedding } : {}),
        n: items.length,
        affinity,
        loads: items.map(itemLoad),
        groups: gpusPerNode,
        minSize: Array(gpusPerNode).fill(minSize),
        maxSize: Array(gpusPerNode).fill(maxSize),
        loadTolerance: settings.loadTolerance,
        refine: settings.refine,
      });
      groups.push(split.group);
      kept += split.keptAffinity;
      const sizes = new Array<number>(gpusPerNode).fill(0);
      for (const g of split.group) sizes[g]++;
      for (const size of sizes) deviation += mean > 0 ? Math.abs(size - mean) / mean : 0;
    }
    if (!feasible) continue;
    options.push({ r, groups, deviation: deviation / (nodes * gpusPerNode), kept });
  }
  if (options.length === 0) return null;
  const chosen = options[kneeIndex(options.map((o) => ({ x: o.deviation, y: o.kept })))];

  const placement = new LayerPlacement({ experts, nodes, gpusPerNode, slotsPerGpu });
  for (let node = 0; node < nodes; node++) {
    nodeItems[node].forEach((expert, i) => placement.add(node * gpusPerNode + chosen.groups[node][i], expert));
  }
  const predictor = new LoadPredictor(placement, loads, rates);
  let replicasAdded = 0;
  if (build.replication === 'fill') replicasAdded = fillSpareSlots(placement, predictor, loads);
  if (build.replication === 'paper') replicasAdded = paperReplication(placement, predictor, loads);
  const weightRounds = predictor.settleWeights();

  const total = keptAffinity(coactivation, experts, new Int32Array(experts));
  return {
    name: build.name,
    placement,
    predictor,
    hotExperts: hot.length,
    nonUniformity: chosen.r,
    nodeAffinityKept: total > 0 ? (nodeSplit.keptAffinity + (total - totalRest)) / total : 1,
    gpuAffinityKept: total > 0 ? chosen.kept / total : 1,
    replicasAdded: replicasAdded + hot.length * (nodes - 1),
    weightRounds,
  };
}

function routeInstances(placement: LayerPlacement, predictor: LoadPredictor): RouteInstance[][] {
  return Array.from({ length: placement.shape.experts }, (_, expert) => {
    const weights = predictor.weightsOf(expert);
    return placement.instancesOf(expert).map((gpu, i) => ({ gpu, node: placement.nodeOf(gpu), weight: weights[i] }));
  });
}

function toPlanLayer(placement: LayerPlacement, predictor: LoadPredictor): PlanLayer {
  const slots = placement.slots.map((list) => [...list]);
  const weights = slots.map((list, gpu) =>
    list.map((expert) => predictor.weightsOf(expert)[placement.instancesOf(expert).indexOf(gpu)]),
  );
  return { slots, weights };
}

function scoreCandidate(
  candidate: Candidate,
  stats: ActivationStats,
  layer: number,
  topology: Topology,
  units: ReturnType<typeof unitCosts>,
  settings: Settings,
): Score {
  const { sample } = stats;
  if (sample.tokens === 0) {
    const costs = candidate.predictor.costs();
    return { timeMs: Math.max(...costs) * 1000, crossNodeCopiesPerToken: 0, localHitRatio: 0, balancedness: 0 };
  }
  const limit = stats.experts * gpuCount(topology) > 8192 ? Math.min(2048, settings.scoringTokens) : settings.scoringTokens;
  const replayed = Math.min(sample.tokens, limit);
  const table = compileRoutingTable({
    apiVersion: API_VERSION,
    kind: 'RoutingTable',
    generation: 0,
    topology,
    experts: stats.experts,
    layers: [routeInstances(candidate.placement, candidate.predictor)],
  });
  const replay = replayLayer({
    selections: sample.selections,
    // Large layers replay fewer tokens per candidate to stay within the planning budget.
    tokens: replayed,
    layers: stats.layers,
    topK: stats.topK,
    layer,
    chooserLayer: 0,
    chooser: new LocalityChooser(table),
    nodes: topology.nodes,
    gpusPerNode: topology.gpusPerNode,
    units,
    batchTokensPerGpu: settings.cost.hardware.batchTokensPerGpu,
  });
  const totals = settings.dispatch === 'flat' ? replay.flat : replay.hierarchical;
  let max = 0;
  let sum = 0;
  for (const value of replay.gpuLoads) {
    max = Math.max(max, value);
    sum += value;
  }
  const mean = sum / replay.gpuLoads.length;
  return {
    timeMs: (totals.layerSeconds / Math.max(1, replay.batches)) * 1000,
    crossNodeCopiesPerToken: totals.crossNodeCopies / replayed,
    localHitRatio: replay.pairs > 0 ? replay.homeHits / replay.pairs : 0,
    balancedness: mean > 0 ? max / mean : 1,
  };
}

function averageScores(scores: readonly Score[]): PredictedMetrics {
  const n = Math.max(1, scores.length);
  const mean = (pick: (score: Score) => number): number => scores.reduce((sum, score) => sum + pick(score), 0) / n;
  return {
    moeLayerTimeMs: mean((s) => s.timeMs),
    crossNodeCopiesPerToken: mean((s) => s.crossNodeCopiesPerToken),
    localHitRatio: mean((s) => s.localHitRatio),
    balancedness: mean((s) => s.balancedness),
  };
}

/** SHA-256 over the statistics' shape, counts and token sample. */
export function digestStats(stats: ActivationStats): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ experts: stats.experts, layers: stats.layers, topK: stats.topK, tokens: stats.tokens }));
  for (const layer of stats.perLayer) {
    hash.update(new Uint8Array(layer.loads.buffer, layer.loads.byteOffset, layer.loads.byteLength));
    hash.update(new Uint8Array(layer.coactivation.buffer, layer.coactivation.byteOffset, layer.coactivation.byteLength));
  }
  const { selections } = stats.sample;
  hash.update(new Uint8Array(selections.buffer, selections.byteOffset, selections.byteLength));
  return hash.digest('hex');
}

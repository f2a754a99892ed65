import { PlanValidationError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import { compilePlan } from '../routing/table.js';
import { createChooser, type LocalityOptions, type RoutingPolicy } from '../routing/policy.js';
import type { Trace } from '../trace/types.js';
import { unitCosts, type CostModel } from './cost-model.js';
import { replayLayer, type LayerReplay, type SchemeTotals } from './replay.js';
import type { DispatchScheme, LayerDetail, Metrics } from './types.js';

/** Metrics the evaluator measures; planning time and duplicate counts come from the caller. */
export type ReplayMetrics = Omit<Metrics, 'planTimeMs' | 'duplicateInstances'>;

export interface SchemeEvaluation {
  readonly metrics: ReplayMetrics;
  readonly perLayer: LayerDetail;
}

export type PlanEvaluation = Readonly<Record<DispatchScheme, SchemeEvaluation>>;

export interface EvaluateOptions {
  readonly locality?: LocalityOptions;
  /** Called after each layer with the count of layers done. */
  readonly onLayer?: (layersDone: number) => void;
}

/** Max over mean of a layer's GPU loads, and their population standard deviation. */
export function loadBalance(loads: ArrayLike<number>): { balancedness: number; std: number } {
  const n = loads.length;
  let sum = 0;
  let max = 0;
  for (let g = 0; g < n; g++) {
    const value = loads[g] as number;
    sum += value;
    max = Math.max(max, value);
  }
  const mean = sum / n;
  let squares = 0;
  for (let g = 0; g < n; g++) squares += ((loads[g] as number) - mean) ** 2;
  return { balancedness: mean > 0 ? max / mean : 1, std: Math.sqrt(squares / n) };
}

/**
 * Replays every token of `trace` through `plan` with a routing policy and returns the metrics of
 * both dispatch schemes. Token i lives on GPU i mod GPUs.
 */
export function evaluatePlan(
  trace: Trace,
  plan: Plan,
  policy: RoutingPolicy,
  cost: CostModel,
  options: EvaluateOptions = {},
): PlanEvaluation {
  const { meta } = trace;
  for (const [field, planValue, traceValue] of [
    ['layers', plan.model.layers, meta.layers],
    ['experts', plan.model.experts, meta.experts],
    ['topK', plan.model.topK, meta.topK],
  ] as const) {
    if (planValue !== traceValue) {
      throw new PlanValidationError(
        `model.${field}`,
        `the plan has ${planValue} but the trace "${meta.name}" has ${traceValue}; plan and trace must describe the same model`,
      );
    }
  }
  const table = compilePlan(plan);
  const chooser = createChooser(policy, table, meta.topK, options.locality);
  const units = unitCosts(cost);

  const replays: LayerReplay[] = [];
  for (let layer = 0; layer < meta.layers; layer++) {
    replays.push(
      replayLayer({
        selections: trace.selections,
        tokens: trace.tokens,
        layers: meta.layers,
        topK: meta.topK,
        layer,
        chooserLayer: layer,
        chooser,
        nodes: plan.topology.nodes,
        gpusPerNode: plan.topology.gpusPerNode,
        units,
        batchTokensPerGpu: cost.hardware.batchTokensPerGpu,
      }),
    );
    options.onLayer?.(layer + 1);
  }

  return {
    flat: summarize(replays, (r) => r.flat, trace.tokens, units.bytesPerCopy),
    hierarchical: summarize(replays, (r) => r.hierarchical, trace.tokens, units.bytesPerCopy),
  };
}

/** Aggregates per-layer replays of one scheme into metrics; bytes count dispatch and combine. */
export function summarize(
  replays: readonly LayerReplay[],
  scheme: (replay: LayerReplay) => SchemeTotals,
  tokens: number,
  bytesPerCopy: number,
): SchemeEvaluation {
  const layers = replays.length;
  let crossNodeCopies = 0;
  let intraNodeCopies = 0;
  let layerMs = 0;
  let allToAllMs = 0;
  let idleMs = 0;
  let pairs = 0;
  let homeHits = 0;
  let balancedness = 0;
  let loadStd = 0;
  const perLayerCrossNodeBytes: number[] = [];
  const perLayerTimeMs: number[] = [];
  const gpuLoads: number[][] = [];

  for (const replay of replays) {
    const totals = scheme(replay);
    const batches = Math.max(1, replay.batches);
    crossNodeCopies += totals.crossNodeCopies;
    intraNodeCopies += totals.intraNodeCopies;
    layerMs += (totals.layerSeconds / batches) * 1000;
    allToAllMs += (totals.allToAllSeconds / batches) * 1000;
    idleMs += (totals.idleSeconds / batches) * 1000;
    pairs += replay.pairs;
    homeHits += replay.homeHits;
    const balance = loadBalance(replay.gpuLoads);
    balancedness += balance.balancedness;
    loadStd += balance.std;
    perLayerCrossNodeBytes.push(totals.crossNodeCopies * bytesPerCopy * 2);
    perLayerTimeMs.push((totals.layerSeconds / batches) * 1000);
    gpuLoads.push(Array.from(replay.gpuLoads));
  }

  const tokenLayers = Math.max(1, tokens * layers);
  const perLayer = Math.max(1, layers);
  return {
    metrics: {
      moeLayerTimeMs: layerMs / perLayer,
      allToAllTimeMs: allToAllMs / perLayer,
      crossNodeBytes: crossNodeCopies * bytesPerCopy * 2,
      intraNodeBytes: intraNodeCopies * bytesPerCopy * 2,
      crossNodeCopiesPerToken: crossNodeCopies / tokenLayers,
      crossGpuCopiesPerToken: (crossNodeCopies + intraNodeCopies) / tokenLayers,
      localHitRatio: pairs > 0 ? homeHits / pairs : 0,
      balancedness: balancedness / perLayer,
      loadStd: loadStd / perLayer,
      gpuIdleTimeMs: idleMs / perLayer,
    },
    perLayer: { crossNodeBytes: perLayerCrossNodeBytes, moeLayerTimeMs: perLayerTimeMs, gpuLoads },
  };
}

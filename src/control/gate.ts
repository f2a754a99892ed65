/**
 * Decides whether a candidate plan is worth a rollout. Both plans are replayed, layer by layer,
 * over the token sample of the smoothed statistics through locality-aware routing and the cost
 * model. Layers are adopted from the candidate in order of time saved per move while the total
 * moves stay within the cap; the result is rolled out only if its predicted MoE-layer time beats
 * the active plan's by at least the minimum gain.
 */
import { unitCosts, type CostModel } from '../evaluator/cost-model.js';
import { replayLayer } from '../evaluator/replay.js';
import type { DispatchScheme } from '../evaluator/types.js';
import type { Plan, PlanLayer } from '../plan/types.js';
import { LocalityChooser } from '../routing/policy.js';
import { compilePlan } from '../routing/table.js';
import type { ActivationStats } from '../stats/types.js';
import { diffPlans } from './diff.js';

export interface GateOptions {
  readonly cost: CostModel;
  readonly dispatch: DispatchScheme;
  /** Smallest relative improvement of the predicted MoE-layer time worth a rollout, e.g. 0.05. */
  readonly minGain: number;
  /** Most instances a rollout may add. */
  readonly maxMoves: number;
}

export interface GateDecision {
  /** The plan to roll out: the active plan with the adopted layers of the candidate. */
  readonly plan: Plan;
  readonly apply: boolean;
  /** Predicted mean MoE-layer time per batch, ms, of the active plan and of `plan`. */
  readonly activeTimeMs: number;
  readonly nextTimeMs: number;
  /** 1 - next / active. */
  readonly gain: number;
  readonly moves: number;
  readonly adoptedLayers: readonly number[];
  readonly reason: string;
}

/** Predicted MoE-layer time of every layer of `plan` on the statistics' token sample, ms. */
export function layerTimes(plan: Plan, stats: ActivationStats, cost: CostModel, dispatch: DispatchScheme): number[] {
  const table = compilePlan(plan);
  const chooser = new LocalityChooser(table);
  const units = unitCosts(cost);
  const times: number[] = [];
  for (let layer = 0; layer < stats.layers; layer++) {
    const replay = replayLayer({
      selections: stats.sample.selections,
      tokens: stats.sample.tokens,
      layers: stats.layers,
      topK: stats.topK,
      layer,
      chooserLayer: layer,
      chooser,
      nodes: plan.topology.nodes,
      gpusPerNode: plan.topology.gpusPerNode,
      units,
      batchTokensPerGpu: cost.hardware.batchTokensPerGpu,
    });
    const totals = dispatch === 'flat' ? replay.flat : replay.hierarchical;
    times.push((totals.layerSeconds / Math.max(1, replay.batches)) * 1000);
  }
  return times;
}

const mean = (values: readonly number[]): number => values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);

/** Gates a candidate against the active plan; see the module header. */
export function gatePlan(active: Plan, candidate: Plan, stats: ActivationStats, options: GateOptions): GateDecision {
  const before = layerTimes(active, stats, options.cost, options.dispatch);
  const after = layerTimes(candidate, stats, options.cost, options.dispatch);
  const { movesPerLayer } = diffPlans(active, candidate);

  const order = before
    .map((time, layer) => ({ layer, saved: time - after[layer], moves: movesPerLayer[layer] ?? 0 }))
    .filter((entry) => entry.saved > 0)
    .sort((a, b) => b.saved / Math.max(1, b.moves) - a.saved / Math.max(1, a.moves) || a.layer - b.layer);

  const adopted = new Set<number>();
  let moves = 0;
  for (const entry of order) {
    if (moves + entry.moves > options.maxMoves) continue;
    adopted.add(entry.layer);
    moves += entry.moves;
  }

  const layers: PlanLayer[] = active.layers.map((layer, index) => (adopted.has(index) ? candidate.layers[index] : layer));
  // The candidate's predicted metrics only hold when every layer was adopted.
  const { predicted: _predicted, ...rest } = candidate;
  const plan: Plan = adopted.size === candidate.layers.length ? candidate : { ...rest, layers };
  const activeTimeMs = mean(before);
  const nextTimeMs = mean(before.map((time, layer) => (adopted.has(layer) ? after[layer] : time)));
  const gain = activeTimeMs > 0 ? 1 - nextTimeMs / activeTimeMs : 0;
  const apply = adopted.size > 0 && gain >= options.minGain;
  const reason = apply
    ? `predicted MoE-layer time ${nextTimeMs.toFixed(3)} ms against ${activeTimeMs.toFixed(3)} ms (gain ${(100 * gain).toFixed(1)}%) with ${moves} moves`
    : adopted.size === 0
      ? 'no layer of the candidate is faster within the move cap'
      : `predicted gain ${(100 * gain).toFixed(1)}% is below the minimum ${(100 * options.minGain).toFixed(1)}%`;
  return { plan, apply, activeTimeMs, nextTimeMs, gain, moves, adoptedLayers: [...adopted].sort((a, b) => a - b), reason };
}

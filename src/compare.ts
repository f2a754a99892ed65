/**
 * Runs every placement strategy on one trace split and evaluates each under both dispatch schemes:
 * plans are fitted on the profile part and measured on the evaluation part. The grace planner is
 * told which dispatch scheme it is evaluated under, as a deployment would tell it.
 */
import { baselineStrategies } from './baselines/index.js';
import type { CostModel } from './evaluator/cost-model.js';
import { evaluatePlan, type PlanEvaluation } from './evaluator/evaluate.js';
import type { CompareResult, DispatchScheme, StrategyResult } from './evaluator/types.js';
import { TopologyError } from './errors.js';
import { countDuplicateInstances } from './plan/validate.js';
import type { Plan } from './plan/types.js';
import { planGraceDetailed, type GraceOptions } from './planner/grace.js';
import type { RoutingPolicy } from './routing/policy.js';
import { statsFromTrace } from './stats/activation.js';
import type { ActivationStats } from './stats/types.js';
import type { Topology } from './topology.js';
import type { TraceSplit } from './trace/types.js';

export const DISPATCH_SCHEMES: readonly DispatchScheme[] = ['flat', 'hierarchical'];

/** Progress of a comparison: one event per planned or evaluated strategy. */
export interface CompareProgress {
  readonly phase: 'profile' | 'plan' | 'evaluate';
  readonly strategy: string;
  readonly done: number;
  readonly total: number;
}

export interface CompareOptions {
  readonly split: TraceSplit;
  readonly topology: Topology;
  readonly cost: CostModel;
  readonly preset: string;
  /** Tokens of the profile kept for replay-based candidate scoring. */
  readonly sampleCapacity?: number;
  readonly grace?: Partial<Omit<GraceOptions, 'topology' | 'cost' | 'dispatch'>>;
  /** Expert groups of the model, for EPLB's hierarchical policy. */
  readonly groups?: number;
  readonly onProgress?: (progress: CompareProgress) => void;
  /** Milliseconds clock for planning times; defaults to performance.now. */
  readonly now?: () => number;
  /** Stops the comparison between two steps; the returned promise then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

interface Entry {
  readonly name: string;
  readonly description: string;
  readonly policy: RoutingPolicy;
  /** The plan per dispatch scheme; baselines use the same plan for both. */
  readonly plans: Readonly<Record<DispatchScheme, { plan: Plan; planTimeMs: number }>>;
}

/** Profile sample size used by default: enough tokens for stable candidate scores. */
export const DEFAULT_COMPARE_SAMPLE = 8192;

/** Lets signal handlers run between long synchronous steps, and stops when the signal aborted. */
async function checkpoint(signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  signal?.throwIfAborted();
}

/** Compares every strategy; see the module header. */
export async function compareStrategies(options: CompareOptions): Promise<CompareResult> {
  const { split, topology, cost } = options;
  const now = options.now ?? (() => performance.now());
  const report = options.onProgress ?? (() => undefined);
  const topK = split.profile.meta.topK;

  report({ phase: 'profile', strategy: 'statistics', done: 0, total: 1 });
  const stats: ActivationStats = statsFromTrace(split.profile, { sampleCapacity: options.sampleCapacity ?? DEFAULT_COMPARE_SAMPLE });
  const loads = stats.perLayer.map((layer) => layer.loads);

  const entries: Entry[] = [];
  const timed = (build: () => Plan): { plan: Plan; planTimeMs: number } => {
    const start = now();
    const plan = build();
    return { plan, planTimeMs: now() - start };
  };
  const same = (result: { plan: Plan; planTimeMs: number }): Entry['plans'] => ({ flat: result, hierarchical: result });

  const totalPlans = baselineStrategies.length + 3;
  const notes: string[] = [];
  let planned = 0;
  for (const baseline of baselineStrategies) {
    await checkpoint(options.signal);
    report({ phase: 'plan', strategy: baseline.name, done: planned, total: totalPlans });
    let result: { plan: Plan; planTimeMs: number };
    try {
      result = timed(() => baseline.build(loads, topology, { topK, groups: options.groups ?? 1 }));
    } catch (error) {
      // A baseline that does not apply to this shape (hierarchical EPLB needs experts and expert
      // groups that divide by the nodes) is left out rather than failing the comparison.
      if (!(error instanceof TopologyError)) throw error;
      notes.push(`${baseline.name} left out: ${error.message}`);
      planned++;
      continue;
    }
    planned++;
    if (baseline.name.startsWith('eplb')) {
      entries.push({
        name: baseline.name,
        description: `${baseline.description}; replicas chosen by the engines' rule (token x topK + rank) mod instances`,
        policy: 'position-modulo',
        plans: same(result),
      });
      entries.push({
        name: `${baseline.name}+locality`,
        description: `${baseline.description}; replicas chosen by the locality tiers`,
        policy: 'locality',
        plans: same(result),
      });
    } else {
      entries.push({ name: baseline.name, description: baseline.description, policy: 'locality', plans: same(result) });
    }
  }

  const graceFor = (dispatch: DispatchScheme, extra: Partial<GraceOptions>, strategy: string) =>
    timed(() => planGraceDetailed(stats, { ...options.grace, ...extra, topology, cost, dispatch, strategy }).plan);
  const perScheme = async (extra: Partial<GraceOptions>, strategy: string): Promise<Entry['plans']> => {
    await checkpoint(options.signal);
    report({ phase: 'plan', strategy, done: planned, total: totalPlans });
    const flat = graceFor('flat', extra, strategy);
    await checkpoint(options.signal);
    const plans = { flat, hierarchical: graceFor('hierarchical', extra, strategy) };
    planned++;
    return plans;
  };
  const grace = await perScheme({}, 'grace');
  entries.push({
    name: 'grace',
    description: 'co-activation grouping, hot-expert replication, locality-aware routing with predicted-load weights',
    policy: 'locality',
    plans: grace,
  });
  entries.push({
    name: 'grace-grouping',
    description: 'ablation: grouping only, no replicas',
    policy: 'locality',
    plans: await perScheme({ replication: 'none' }, 'grace-grouping'),
  });
  entries.push({
    name: 'grace-no-locality',
    description: 'ablation: grouping and replication, replicas chosen by weight without locality tiers',
    policy: 'weighted',
    plans: grace,
  });
  report({ phase: 'plan', strategy: 'done', done: totalPlans, total: totalPlans });

  const strategies: StrategyResult[] = [];
  let evaluated = 0;
  const evaluations = entries.length * DISPATCH_SCHEMES.length;
  for (const entry of entries) {
    const cache = new Map<Plan, PlanEvaluation>();
    for (const dispatch of DISPATCH_SCHEMES) {
      await checkpoint(options.signal);
      report({ phase: 'evaluate', strategy: `${entry.name} (${dispatch})`, done: evaluated, total: evaluations });
      const { plan, planTimeMs } = entry.plans[dispatch];
      let evaluation = cache.get(plan);
      if (evaluation === undefined) {
        evaluation = evaluatePlan(split.evaluation, plan, entry.policy, cost);
        cache.set(plan, evaluation);
      }
      const { metrics, perLayer } = evaluation[dispatch];
      strategies.push({
        name: entry.name,
        description: entry.description,
        dispatch,
        metrics: { ...metrics, planTimeMs, duplicateInstances: countDuplicateInstances(plan) },
        perLayer,
      });
      evaluated++;
    }
  }
  report({ phase: 'evaluate', strategy: 'done', done: evaluations, total: evaluations });

  return {
    topology,
    trace: {
      name: split.profile.meta.name,
      model: split.profile.meta.model,
      profileTokens: split.profile.tokens,
      evaluationTokens: split.evaluation.tokens,
      split: split.description,
    },
    preset: options.preset,
    strategies,
    ...(notes.length > 0 ? { notes } : {}),
  };
}

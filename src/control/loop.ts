/**
 * The control loop, independent of Kubernetes. Every interval it scrapes each worker's router,
 * merges the windows and smooths them with a half-life. It then plans with the GRACE planner,
 * gates the candidate against the active plan, and in Auto mode rolls the result out
 * make-before-break.
 * Observe mode plans and reports but never applies; Off does nothing. A failed rollout leaves the
 * old generation serving and the next round tries again. The operator and `grace-moe local` run
 * this same loop.
 */
import type { CostModel } from '../evaluator/cost-model.js';
import type { DispatchScheme } from '../evaluator/types.js';
import type { Plan } from '../plan/types.js';
import { planGrace, type GraceOptions } from '../planner/grace.js';
import { routingTableFromPlan } from '../routing/table.js';
import { mergeStats } from '../stats/activation.js';
import type { ActivationStats } from '../stats/types.js';
import { gatePlan } from './gate.js';
import type { ControlMetrics, RoundOutcome } from './metrics.js';
import { rollout, type RolloutOutcome } from './rollout.js';
import { smoothStats } from './smoothing.js';
import type { WorkerClient } from './worker-client.js';

export type RebalanceMode = 'Off' | 'Observe' | 'Auto';

export interface ControlLoopOptions {
  readonly mode: RebalanceMode;
  readonly intervalMs: number;
  readonly halfLifeMs: number;
  /** Smallest relative improvement of predicted MoE-layer time worth a rollout. */
  readonly minGain: number;
  readonly maxMovesPerRound: number;
  /** Fewest smoothed tokens to plan from. */
  readonly minTokens: number;
  readonly readinessTimeoutMs: number;
  readonly pollIntervalMs: number;
  readonly dispatch: DispatchScheme;
  readonly cost: CostModel;
  readonly planner?: Partial<Omit<GraceOptions, 'topology' | 'cost' | 'dispatch' | 'generation'>>;
}

export const CONTROL_DEFAULTS = Object.freeze({
  mode: 'Auto' as RebalanceMode,
  intervalMs: 30_000,
  halfLifeMs: 120_000,
  minGain: 0.05,
  maxMovesPerRound: 256,
  minTokens: 512,
  readinessTimeoutMs: 60_000,
  pollIntervalMs: 250,
  dispatch: 'hierarchical' as DispatchScheme,
});

/** The subset of a pino logger the loop uses. */
export interface LoopLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface ControlLoopDeps {
  /** Workers of the deployment, resolved anew every round. */
  readonly workers: () => readonly WorkerClient[];
  /** Wall clock, ms since the epoch. */
  readonly now: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly log: LoopLogger;
  readonly metrics?: ControlMetrics;
  /** Called after every round, for status updates and events. */
  readonly onRound?: (report: RoundReport) => void;
  /** Called when a rollout starts, before any worker is touched. */
  readonly onRolloutStart?: (generation: number) => void;
}

/** Outcome of one control round. */
export interface RoundReport {
  readonly round: number;
  readonly atMs: number;
  readonly outcome: RoundOutcome;
  readonly reason: string;
  readonly activeGeneration: number;
  readonly candidateGeneration: number | null;
  /** Predicted relative MoE-layer time saved, when a candidate was gated. */
  readonly predictedGain: number | null;
  readonly predictedTimeMs: { readonly active: number; readonly next: number } | null;
  readonly moves: number;
  readonly planTimeMs: number;
  /** Tokens in the smoothed statistics the round planned from. */
  readonly tokens: number;
  readonly rollout: RolloutOutcome | null;
}

export class ControlLoop {
  private active: Plan;
  private smoothed: ActivationStats | null = null;
  private lastWindowMs: number | null = null;
  private readonly cursors = new Map<number, number>();
  private nextGeneration: number;
  private rounds = 0;
  private readonly reports: RoundReport[] = [];

  constructor(
    initialPlan: Plan,
    private readonly options: ControlLoopOptions,
    private readonly deps: ControlLoopDeps,
  ) {
    this.active = initialPlan;
    this.nextGeneration = initialPlan.generation + 1;
    deps.metrics?.activeGeneration.set(initialPlan.generation);
  }

  get activePlan(): Plan {
    return this.active;
  }

  get history(): readonly RoundReport[] {
    return this.reports;
  }

  /** Runs rounds every intervalMs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.deps.log.info({ mode: this.options.mode, intervalMs: this.options.intervalMs }, 'control loop started');
    while (!signal.aborted) {
      await this.deps.sleep(this.options.intervalMs, signal).catch(() => undefined);
      if (signal.aborted) break;
      try {
        await this.round(signal);
      } catch (error) {
        this.deps.log.error({ err: error }, 'control loop round failed');
      }
    }
    this.deps.log.info({ rounds: this.rounds, generation: this.active.generation }, 'control loop stopped');
  }

  /** Runs one round; see the module header. Aborting `signal` cancels a rollout in progress. */
  async round(signal?: AbortSignal): Promise<RoundReport> {
    const round = ++this.rounds;
    const atMs = this.deps.now();
    const base = { round, atMs, activeGeneration: this.active.generation, candidateGeneration: null, predictedGain: null, predictedTimeMs: null, moves: 0, planTimeMs: 0, rollout: null };

    if (this.options.mode === 'Off') return this.finish({ ...base, outcome: 'off', reason: 'rebalancing is off', tokens: 0 });

    const window = await this.scrape();
    if (window !== null) {
      const elapsedMs = this.lastWindowMs === null ? 0 : atMs - this.lastWindowMs;
      this.smoothed = smoothStats(this.smoothed, window, { elapsedMs, halfLifeMs: this.options.halfLifeMs, seed: round });
      this.lastWindowMs = atMs;
    }
    const stats = this.smoothed;
    const tokens = stats?.tokens ?? 0;
    if (stats === null || tokens < this.options.minTokens || stats.sample.tokens === 0) {
      return this.finish({ ...base, outcome: 'no-data', reason: `${Math.floor(tokens)} smoothed tokens, fewer than the ${this.options.minTokens} needed to plan`, tokens });
    }

    const generation = this.nextGeneration;
    const planStart = this.deps.now();
    const candidate = planGrace(stats, {
      ...this.options.planner,
      topology: this.active.topology,
      cost: this.options.cost,
      dispatch: this.options.dispatch,
      generation,
    });
    const decision = gatePlan(this.active, candidate, stats, {
      cost: this.options.cost,
      dispatch: this.options.dispatch,
      minGain: this.options.minGain,
      maxMoves: this.options.maxMovesPerRound,
    });
    const planTimeMs = this.deps.now() - planStart;
    this.deps.metrics?.planDuration.observe(planTimeMs / 1000);
    this.deps.metrics?.predictedGain.set(decision.gain);
    const gated = {
      ...base,
      candidateGeneration: generation,
      predictedGain: decision.gain,
      predictedTimeMs: { active: decision.activeTimeMs, next: decision.nextTimeMs },
      moves: decision.moves,
      planTimeMs,
      tokens,
    };

    if (!decision.apply) return this.finish({ ...gated, outcome: 'no-gain', reason: decision.reason });
    if (this.options.mode === 'Observe') {
      return this.finish({ ...gated, outcome: 'observed', reason: `observe mode, not applied: ${decision.reason}` });
    }

    this.nextGeneration = generation + 1;
    const workers = this.deps.workers();
    this.deps.log.info({ generation, moves: decision.moves, gain: decision.gain, workers: workers.length }, 'rollout started');
    this.deps.onRolloutStart?.(generation);
    const outcome = await rollout(workers, routingTableFromPlan(decision.plan), this.options, {
      now: this.deps.now,
      sleep: (ms) => this.deps.sleep(ms, signal),
      ...(signal ? { signal } : {}),
      onStep: (step, stepGeneration) => {
        this.deps.metrics?.rolloutSteps.inc({ step });
        this.deps.log.info({ step, generation: stepGeneration }, 'rollout step');
      },
    });
    this.deps.metrics?.rolloutDuration.observe(outcome.durationMs / 1000);
    this.deps.metrics?.rollouts.inc({ outcome: outcome.ok ? 'succeeded' : 'aborted' });
    if (!outcome.ok) {
      this.deps.log.warn({ generation, step: outcome.failedStep, reason: outcome.reason }, 'rollout aborted');
      return this.finish({ ...gated, outcome: 'failed', reason: outcome.reason, rollout: outcome });
    }
    this.active = decision.plan;
    this.deps.metrics?.activeGeneration.set(generation);
    this.deps.log.info({ generation, durationMs: outcome.durationMs }, 'rollout finished');
    return this.finish({ ...gated, activeGeneration: generation, outcome: 'applied', reason: decision.reason, rollout: outcome });
  }

  /** Scrapes every worker since its cursor and merges the windows; null when none had data. */
  private async scrape(): Promise<ActivationStats | null> {
    const workers = this.deps.workers();
    const windows = await Promise.allSettled(workers.map((worker) => worker.scrapeStats(this.cursors.get(worker.endpoint.node) ?? null)));
    let merged: ActivationStats | null = null;
    windows.forEach((result, i) => {
      const node = workers[i].endpoint.node;
      if (result.status === 'rejected') {
        this.deps.metrics?.scrapeErrors.inc();
        this.deps.log.warn({ node, err: result.reason }, 'statistics scrape failed');
        return;
      }
      this.cursors.set(node, result.value.cursorMs);
      const stats = result.value.stats;
      if (stats === null || stats.tokens === 0) return;
      merged = merged === null ? stats : mergeStats(merged, stats, { seed: this.rounds * 1000 + node });
    });
    return merged;
  }

  private finish(report: RoundReport): RoundReport {
    this.reports.push(report);
    this.deps.metrics?.rounds.inc({ outcome: report.outcome });
    this.deps.log.info(
      { round: report.round, outcome: report.outcome, generation: report.activeGeneration, gain: report.predictedGain, reason: report.reason },
      'control round finished',
    );
    this.deps.onRound?.(report);
    return report;
  }
}

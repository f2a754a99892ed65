/**
 * Prometheus metrics of the control loop, on a registry the caller creates once. Labels are
 * bounded: `outcome` takes the ROUND_OUTCOMES or success/aborted values, `step` the rollout steps.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RolloutStep } from './rollout.js';

export const ROUND_OUTCOMES = ['off', 'no-data', 'no-gain', 'observed', 'applied', 'failed'] as const;
export type RoundOutcome = (typeof ROUND_OUTCOMES)[number];

export interface ControlMetrics {
  readonly rounds: Counter<'outcome'>;
  readonly rollouts: Counter<'outcome'>;
  readonly rolloutSteps: Counter<'step'>;
  readonly scrapeErrors: Counter;
  readonly activeGeneration: Gauge;
  readonly predictedGain: Gauge;
  readonly planDuration: Histogram;
  readonly rolloutDuration: Histogram;
}

export function createControlMetrics(registry: Registry): ControlMetrics {
  const rounds = new Counter({
    name: 'grace_moe_control_rounds_total',
    help: 'Control loop rounds by outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of ROUND_OUTCOMES) rounds.inc({ outcome }, 0);
  const rollouts = new Counter({
    name: 'grace_moe_control_rollouts_total',
    help: 'Rollouts by outcome (succeeded or aborted)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of ['succeeded', 'aborted']) rollouts.inc({ outcome }, 0);
  const rolloutSteps = new Counter({
    name: 'grace_moe_control_rollout_steps_total',
    help: 'Rollout steps started (stage, load, ready, switch, cleanup)',
    labelNames: ['step'] as const,
    registers: [registry],
  });
  for (const step of ['stage', 'load', 'ready', 'switch', 'cleanup'] satisfies RolloutStep[]) rolloutSteps.inc({ step }, 0);
  return {
    rounds,
    rollouts,
    rolloutSteps,
    scrapeErrors: new Counter({
      name: 'grace_moe_control_scrape_errors_total',
      help: 'Failed statistics scrapes of worker routers',
      registers: [registry],
    }),
    activeGeneration: new Gauge({
      name: 'grace_moe_control_active_generation',
      help: 'Generation of the plan the workers serve',
      registers: [registry],
    }),
    predictedGain: new Gauge({
      name: 'grace_moe_control_predicted_gain_ratio',
      help: 'Predicted relative MoE-layer time saved by the last candidate plan (1 - next / active)',
      registers: [registry],
    }),
    planDuration: new Histogram({
      name: 'grace_moe_control_plan_duration_seconds',
      help: 'Time to compute and gate a candidate plan',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    rolloutDuration: new Histogram({
      name: 'grace_moe_control_rollout_duration_seconds',
      help: 'Time from staging a generation to its switch or abort',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}

/**
 * Prometheus metrics of the operator's controller runtime, on a registry the caller creates once.
 * Label sets are bounded: `result` has four values, `reason` three, `verb` the eight of API_VERBS,
 * and `kind` the names of the watched kinds (a fixed list given at start).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { API_VERBS, type ApiVerb } from './kube-client.js';
import { WATCH_RESTART_REASONS, type WatchRestartReason } from './informer.js';

/** Outcomes of one reconcile: success, success with a timed requeue, a retried error, a terminal error. */
export const RECONCILE_RESULTS = ['success', 'requeue', 'error', 'terminal'] as const;
export type ReconcileResultLabel = (typeof RECONCILE_RESULTS)[number];

/** Point-in-time readings of the work queue, read when metrics are scraped. */
export interface QueueReadings {
  readonly depth: number;
  readonly inFlight: number;
}

export interface OperatorMetrics {
  readonly reconcileTotal: Counter<'result'>;
  readonly reconcileDuration: Histogram;
  readonly watchRestarts: Counter<'kind' | 'reason'>;
  readonly leader: Gauge;
  readonly apiRequests: Counter<'verb'>;
  /** Sets the source the queue gauges read; until then they read 0. */
  observeQueue(read: () => QueueReadings): void;
  countApiRequest(verb: ApiVerb): void;
  countWatchRestart(kind: string, reason: WatchRestartReason): void;
}

/** Registers the operator's metrics on `registry`; `kinds` are the watched kind names, for zero-valued series. */
export function createOperatorMetrics(registry: Registry, kinds: readonly string[]): OperatorMetrics {
  let readQueue: () => QueueReadings = () => ({ depth: 0, inFlight: 0 });

  const reconcileTotal = new Counter({
    name: 'grace_moe_operator_reconcile_total',
    help: 'Reconciles, by result: success, requeue (success with a timed requeue), error (retried with backoff), terminal (not retried)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of RECONCILE_RESULTS) reconcileTotal.inc({ result }, 0);

  const reconcileDuration = new Histogram({
    name: 'grace_moe_operator_reconcile_duration_seconds',
    help: 'Time of one reconcile call, whatever its result',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });

  new Gauge({
    name: 'grace_moe_operator_queue_depth',
    help: 'Keys waiting in the work queue to be reconciled, not counting keys in flight or waiting for a backoff',
    registers: [registry],
    collect() {
      this.set(readQueue().depth);
    },
  });

  new Gauge({
    name: 'grace_moe_operator_queue_in_flight',
    help: 'Keys being reconciled now',
    registers: [registry],
    collect() {
      this.set(readQueue().inFlight);
    },
  });

  const watchRestarts = new Counter({
    name: 'grace_moe_operator_watch_restarts_total',
    help: 'Informer restarts, by watched kind and reason: error (failed list or watch), gone (410, relisted), idle (no event for the idle timeout)',
    labelNames: ['kind', 'reason'] as const,
    registers: [registry],
  });
  for (const kind of kinds) {
    for (const reason of WATCH_RESTART_REASONS) watchRestarts.inc({ kind, reason }, 0);
  }

  const leader = new Gauge({
    name: 'grace_moe_operator_leader',
    help: '1 while this replica is the leader (or runs without leader election), else 0',
    registers: [registry],
  });
  leader.set(0);

  const apiRequests = new Counter({
    name: 'grace_moe_operator_api_requests_total',
    help: 'Requests sent to the Kubernetes API server, by verb (create and replace count as other)',
    labelNames: ['verb'] as const,
    registers: [registry],
  });
  for (const verb of API_VERBS) apiRequests.inc({ verb }, 0);

  return {
    reconcileTotal,
    reconcileDuration,
    watchRestarts,
    leader,
    apiRequests,
    observeQueue(read) {
      readQueue = read;
    },
    countApiRequest(verb) {
      apiRequests.inc({ verb });
    },
    countWatchRestart(kind, reason) {
      watchRestarts.inc({ kind, reason });
    },
  };
}

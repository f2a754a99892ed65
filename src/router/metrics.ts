/**
 * Prometheus metrics of the router, on a registry the caller creates once. Label sets are bounded:
 * `tier` has three values, `reason` the values of REJECTION_REASONS, and `route` the registered
 * route patterns plus "unmatched".
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RequestDurationLabels } from './http.js';
import type { Tier } from './activation-window.js';
import type { TableStore } from './table-store.js';

/** Reasons for rejecting a pushed routing table. */
export const REJECTION_REASONS = [
  'invalid',
  'stale_generation',
  'pending_mismatch',
  'malformed_json',
  'too_large',
  'persist_failed',
  'shape_mismatch',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export interface RouterMetrics {
  readonly tokensRouted: Counter<'tier'>;
  readonly tablesRejected: Counter<'reason'>;
  readonly tablesInstalled: Counter<'phase'>;
  readonly statsShapeResets: Counter;
  readonly requestDuration: Histogram<RequestDurationLabels>;
}

/** Registers the router's metrics on `registry`; gauges read the store when scraped. */
export function createRouterMetrics(registry: Registry, store: TableStore, now: () => number): RouterMetrics {
  const tokensRouted = new Counter({
    name: 'grace_moe_router_tokens_routed_total',
    help: 'Token-expert pairs routed, by locality tier of the chosen instance (gpu, node, remote)',
    labelNames: ['tier'] as const,
    registers: [registry],
  });
  for (const tier of ['gpu', 'node', 'remote'] satisfies Tier[]) tokensRouted.inc({ tier }, 0);

  const tablesRejected = new Counter({
    name: 'grace_moe_router_tables_rejected_total',
    help: 'Routing tables and activations rejected, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of REJECTION_REASONS) tablesRejected.inc({ reason }, 0);

  const tablesInstalled = new Counter({
    name: 'grace_moe_router_tables_installed_total',
    help: 'Routing tables installed, by phase (active or pending); the table installed at start-up counts as active',
    labelNames: ['phase'] as const,
    registers: [registry],
  });
  for (const phase of ['active', 'pending'] as const) tablesInstalled.inc({ phase }, 0);

  const statsShapeResets = new Counter({
    name: 'grace_moe_router_stats_shape_resets_total',
    help: 'Activation reports whose shape (experts, layers, top-k) differed from the window, which then started anew',
    registers: [registry],
  });

  new Gauge({
    name: 'grace_moe_router_table_generation',
    help: 'Generation of the active routing table, -1 when none is active',
    registers: [registry],
    collect() {
      this.set(store.active?.table.generation ?? -1);
    },
  });

  new Gauge({
    name: 'grace_moe_router_pending_table_generation',
    help: 'Generation of the pending routing table, -1 when none is pending',
    registers: [registry],
    collect() {
      this.set(store.pending?.table.generation ?? -1);
    },
  });

  new Gauge({
    name: 'grace_moe_router_table_age_seconds',
    help: 'Seconds since the active routing table was installed, 0 when none is active',
    registers: [registry],
    collect() {
      const active = store.active;
      this.set(active === null ? 0 : Math.max(0, (now() - active.installedAtMs) / 1000));
    },
  });

  const requestDuration = new Histogram({
    name: 'grace_moe_router_request_duration_seconds',
    help: 'Time to respond to an HTTP request, by route pattern, method and status code',
    labelNames: ['route', 'method', 'status_code'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
    registers: [registry],
  });

  return { tokensRouted, tablesRejected, tablesInstalled, statsShapeResets, requestDuration };
}

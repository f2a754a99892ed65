import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import type { ControllerReadiness } from './controller.js';
import { createOperatorMetrics } from './metrics.js';
import { buildOperatorApp } from './operator-app.js';

const silent = pino({ level: 'silent' });
const apps: FastifyInstance[] = [];

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

function harness(): { app: FastifyInstance; registry: Registry; state: { value: ControllerReadiness } } {
  const registry = new Registry();
  const state = { value: { synced: false, leader: false, identity: 'pod-a-0001' } as ControllerReadiness };
  const app = buildOperatorApp({ logger: silent, registry, readiness: () => state.value });
  apps.push(app);
  return { app, registry, state };
}

describe('operator app', () => {
  test('readyz is 503 until the caches sync', async () => {
    const { app, state } = harness();

    const before = await app.inject({ method: 'GET', url: '/readyz' });
    state.value = { synced: true, leader: false, identity: 'pod-a-0001' };
    const standby = await app.inject({ method: 'GET', url: '/readyz' });
    state.value = { synced: true, leader: true, identity: 'pod-a-0001' };
    const leading = await app.inject({ method: 'GET', url: '/readyz' });

    expect(before.statusCode).toBe(503);
    expect(before.json()).toEqual({ status: 'not ready: caches not synced', synced: false, leader: false, identity: 'pod-a-0001' });
    expect(standby.statusCode).toBe(200);
    expect(standby.json()).toEqual({ status: 'ready', synced: true, leader: false, identity: 'pod-a-0001' });
    expect(leading.json()).toMatchObject({ status: 'ready', leader: true });
  });

  test('healthz answers 200 before the caches synced', async () => {
    const { app } = harness();

    const response = await app.inject({ method: 'GET', url: '/healthz' });

    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ status: 'ok', synced: false, leader: false });
  });

  test('metrics shows the runtime series', async () => {
    const { app, registry } = harness();
    const metrics = createOperatorMetrics(registry, ['moedeployments', 'pods']);
    metrics.observeQueue(() => ({ depth: 3, inFlight: 2 }));
    metrics.reconcileTotal.inc({ result: 'success' }, 5);
    metrics.reconcileTotal.inc({ result: 'terminal' });
    metrics.countWatchRestart('pods', 'gone');
    metrics.countApiRequest('apply');
    metrics.countApiRequest('apply');
    metrics.leader.set(1);
    metrics.reconcileDuration.observe(0.02);

    const response = await app.inject({ method: 'GET', url: '/metrics' });
    const text = response.body;

    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/plain');
    expect(text).toContain('grace_moe_operator_reconcile_total{result="success"} 5');
    expect(text).toContain('grace_moe_operator_reconcile_total{result="terminal"} 1');
    expect(text).toContain('grace_moe_operator_reconcile_total{result="error"} 0');
    expect(text).toContain('grace_moe_operator_queue_depth 3');
    expect(text).toContain('grace_moe_operator_queue_in_flight 2');
    expect(text).toContain('grace_moe_operator_watch_restarts_total{kind="pods",reason="gone"} 1');
    expect(text).toContain('grace_moe_operator_watch_restarts_total{kind="moedeployments",reason="idle"} 0');
    expect(text).toContain('grace_moe_operator_api_requests_total{verb="apply"} 2');
    expect(text).toContain('grace_moe_operator_api_requests_total{verb="other"} 0');
    expect(text).toContain('grace_moe_operator_leader 1');
    expect(text).toContain('grace_moe_operator_reconcile_duration_seconds_bucket{le="0.025"} 1');
    expect(text).toContain('grace_moe_operator_reconcile_duration_seconds_count 1');
  });
});

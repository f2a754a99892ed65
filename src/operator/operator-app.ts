/**
 * The operator's HTTP endpoints: GET /metrics (Prometheus text), GET /healthz (the process is
 * alive) and GET /readyz (200 once every informer has listed once, 503 before). Readiness does
 * not depend on leadership, so standby replicas with warm caches count as ready. Both probe
 * bodies report the leader state.
 *
 * buildOperatorApp returns the fastify instance without listening; serve it with
 * serveUntilAborted from src/router/http.ts.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { createServiceApp } from '../router/http.js';
import type { ControllerReadiness } from './controller.js';

export interface OperatorAppDeps {
  readonly logger: FastifyBaseLogger;
  /** Registry served at /metrics: the one the controller runtime registered its metrics on. */
  readonly registry: Registry;
  /** Current state of the controller; ControllerHandle.readiness fits. */
  readonly readiness: () => ControllerReadiness;
}

const probeBody = {
  type: 'object',
  required: ['status', 'synced', 'leader', 'identity'],
  properties: {
    status: { type: 'string' },
    synced: { type: 'boolean' },
    leader: { type: 'boolean' },
    identity: { type: ['string', 'null'] },
  },
} as const;

const probeSchema = { response: { 200: probeBody, 503: probeBody } } as const;
const metricsSchema = { response: { 200: { type: 'string' } } } as const;

/** Largest request body; every route is a GET without a body. */
const BODY_LIMIT_BYTES = 1024;

/** Builds the operator's fastify app; see the module header. */
export function buildOperatorApp(deps: OperatorAppDeps): FastifyInstance {
  const app = createServiceApp({ logger: deps.logger, bodyLimitBytes: BODY_LIMIT_BYTES });

  app.get('/metrics', { schema: metricsSchema }, async (_request, reply) => {
    const text = await deps.registry.metrics();
    return reply.type(deps.registry.contentType).send(text);
  });

  app.get('/healthz', { schema: probeSchema }, async () => ({ status: 'ok', ...deps.readiness() }));

  app.get('/readyz', { schema: probeSchema }, async (_request, reply) => {
    const state = deps.readiness();
    if (!state.synced) {
      return reply.code(503).send({ status: 'not ready: caches not synced', ...state });
    }
    return { status: 'ready', ...state };
  });

  return app;
}

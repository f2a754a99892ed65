/**
 * The router sidecar's HTTP API (documented route by route in docs/router.md).
 *
 * buildRouterApp returns the fastify instance without listening. Its initial table is loaded in
 * an onReady hook, so `inject()` and `listen()` both serve it. A loader failure is logged and the
 * router starts unready (GET /readyz responds with 503) instead of crashing.
 *
 * Statistics windows roll as described in activation-window.ts: GET /v1/stats?since=T seals the
 * open bucket and returns every sealed bucket that ends after T, and the caller passes the
 * answer's window.endMs as its next `since`.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { RouterConfig } from '../config/router.js';
import type { RoutingTable } from '../routing/types.js';
import { parseTableDocument, routingTableToJson } from '../routing/validate.js';
import { statsToJson } from '../stats/json.js';
import { ActivationWindow, type TierCounts } from './activation-window.js';
import { checkActivationReport } from './activations.js';
import type { Clock } from './clock.js';
import { checkTableShape } from './deployment.js';
import { GenerationConflictError, NoActivationsError, NoActiveTableError, StateFileError, TableNotFoundError } from './errors.js';
import { createServiceApp } from './http.js';
import { createRouterMetrics, type RejectionReason } from './metrics.js';
import { checkRouteRequest, checkTokenCount, routeTokens, type RouteRequest } from './route.js';
import {
  activateSchema,
  activationsSchema,
  dropPendingSchema,
  getPendingSchema,
  getTableSchema,
  healthSchema,
  metricsSchema,
  putTableSchema,
  readySchema,
  routeBatchSchema,
  routeSchema,
  statsSchema,
} from './schemas.js';
import { TableStore, type InstalledTable, type TablePhase } from './table-store.js';
import { writeTableFile } from './table-files.js';

export interface RouterDeps {
  readonly logger: FastifyBaseLogger;
  /** Registry the router's metrics are registered on; create one per app. */
  readonly registry: Registry;
  readonly clock: Clock;
  /** Returns the table to serve at start, or null; see loadStartupTable. */
  readonly loadInitialTable: () => Promise<RoutingTable | null>;
  readonly options: RouterConfig;
}

type TokenLists = readonly (readonly number[])[];

interface RouteBody extends RouteRequest {
  readonly generation?: number;
}

interface RouteBatchBody {
  readonly generation?: number;
  readonly requests: readonly RouteRequest[];
}

interface ActivationsBody {
  readonly tokens?: readonly TokenLists[];
  readonly counts?: unknown;
  readonly dispatch?: TierCounts;
}

const TABLE_ROUTES = new Set(['/v1/routing-table', '/v1/routing-table/activate']);

const REASON_OF_CODE: Readonly<Record<string, RejectionReason>> = {
  GENERATION_CONFLICT: 'stale_generation',
  PENDING_MISMATCH: 'pending_mismatch',
  MALFORMED_JSON: 'malformed_json',
  BODY_TOO_LARGE: 'too_large',
  STATE_WRITE_FAILED: 'persist_failed',
  TABLE_SHAPE_MISMATCH: 'shape_mismatch',
};

/** Builds the router's fastify app; see the module header. */
export function buildRouterApp(deps: RouterDeps): FastifyInstance {
  const { options, clock, registry } = deps;
  const now = (): number => clock.now();
  const stateFile = options.stateFile;
  const store = new TableStore({
    now,
    ...(stateFile === null
      ? {}
      : {
          persist: async (table: RoutingTable) => {
            try {
              await writeTableFile(stateFile, table);
            } catch (error) {
              throw new StateFileError(
                `cannot write the state file ${stateFile}: ${error instanceof Error ? error.message : String(error)}; ` +
                  'the table was not installed',
                { cause: error },
              );
            }
          },
        }),
  });
  const metrics = createRouterMetrics(registry, store, now);
  const window = new ActivationWindow({
    now,
    bucketMs: options.statsBucketMs,
    retainedBuckets: options.statsRetainedBuckets,
    sampleCapacity: options.sampleCapacity,
    onShapeChange: (previous, next) => {
      metrics.statsShapeResets.inc();
      deps.logger.warn({ previous, next }, 'activation report has another shape; statistics window started anew');
    },
  });

  const app = createServiceApp({
    logger: deps.logger,
    bodyLimitBytes: options.bodyLimitBytes,
    requestDuration: metrics.requestDuration,
    onErrorAnswer: (request, statusCode, code) => {
      const route = request.routeOptions.url;
      if (route === undefined || !TABLE_ROUTES.has(route) || request.method === 'GET') return false;
      const reason = REASON_OF_CODE[code] ?? 'invalid';
      metrics.tablesRejected.inc({ reason });
      request.log.warn(
        { route, statusCode, code, reason, activeGeneration: store.active?.table.generation ?? null },
        'routing table rejected',
      );
      return statusCode < 500;
    },
  });

  app.addHook('onReady', async () => {
    let table: RoutingTable | null;
    try {
      table = await deps.loadInitialTable();
    } catch (error) {
      app.log.error({ err: error }, 'initial routing table not loaded; starting unready');
      return;
    }
    if (table === null) {
      app.log.warn('no initial routing table; starting unready until one is pushed');
      return;
    }
    const installed = await store.install(table, 'active', { persist: false });
    metrics.tablesInstalled.inc({ phase: 'active' });
    logInstall(app.log, installed, 'active', 'startup');
  });

  app.addHook('preClose', async () => {
    store.releaseWaiters();
  });

  app.put('/v1/routing-table', { schema: putTableSchema }, async (request) => {
    const query = request.query as { phase?: TablePhase };
    const phase = query.phase ?? 'active';
    const table = parseTableDocument(request.body);
    checkTableShape(table, options.deployment);
    const installed = await store.install(table, phase);
    metrics.tablesInstalled.inc({ phase });
    logInstall(request.log, installed, phase, 'push');
    return { generation: installed.table.generation, phase, installedAtMs: installed.installedAtMs };
  });

  app.get('/v1/routing-table', { schema: getTableSchema }, async (request, reply) => {
    const query = request.query as { waitMs?: string };
    const ifNoneMatch = request.headers['if-none-match'];
    // HTTP defines If-None-Match: * as matching any current representation, so it matches any active
    // table. Without an active table the condition holds and the GET proceeds as usual.
    if (ifNoneMatch === '*' && store.active !== null) {
      return reply.code(304).header('etag', store.active.etag).send();
    }
    const etag = ifNoneMatch === '*' ? undefined : ifNoneMatch;
    const waitMs = Math.min(Number(query.waitMs ?? '0'), options.longPollMaxMs);
    const aborted = new AbortController();
    reply.raw.once('close', () => aborted.abort());

    const changed = await store.waitForChange(etag, waitMs, aborted.signal);
    if (changed !== null) {
      return reply.header('etag', changed.etag).send(routingTableToJson(changed.table));
    }
    const active = store.active;
    if (active !== null && active.etag === etag) {
      return reply.code(304).header('etag', active.etag).send();
    }
    throw new TableNotFoundError('no routing table is active yet; push one with PUT /v1/routing-table');
  });

  app.get('/v1/routing-table/pending', { schema: getPendingSchema }, async (_request, reply) => {
    const pending = store.pending;
    if (pending === null) {
      throw new TableNotFoundError('no routing table is pending; stage one with PUT /v1/routing-table?phase=pending');
    }
    return reply.header('etag', pending.etag).send(routingTableToJson(pending.table));
  });

  app.post('/v1/routing-table/activate', { schema: activateSchema }, async (request) => {
    const { generation } = request.body as { generation: number };
    const installed = await store.activate(generation);
    metrics.tablesInstalled.inc({ phase: 'active' });
    logInstall(request.log, installed, 'active', 'activate');
    return { generation, phase: 'active', installedAtMs: installed.installedAtMs };
  });

  app.delete('/v1/routing-table/pending', { schema: dropPendingSchema }, async (request) => {
    const dropped = await store.dropPending();
    const generation = dropped?.table.generation ?? null;
    request.log.info({ generation }, 'pending routing table dropped');
    return { dropped: generation };
  });

  const routeOptions = { bodyLimit: options.routeBodyLimitBytes };

  app.post('/v1/route', { schema: routeSchema, ...routeOptions }, async (request) => {
    const body = request.body as RouteBody;
    checkTokenCount(body.tokens.length, options.routeMaxTokens);
    const active = requireGeneration(store.active, body.generation);
    checkRouteRequest(active, body, '');
    const tiers: TierCounts = { gpu: 0, node: 0, remote: 0 };
    const gpus = routeTokens(active, body, tiers);
    countTiers(tiers);
    return { generation: active.table.generation, gpus };
  });

  app.post('/v1/route/batch', { schema: routeBatchSchema, ...routeOptions }, async (request) => {
    const body = request.body as RouteBatchBody;
    checkTokenCount(
      body.requests.reduce((sum, entry) => sum + entry.tokens.length, 0),
      options.routeMaxTokens,
    );
    const active = requireGeneration(store.active, body.generation);
    body.requests.forEach((entry, index) => checkRouteRequest(active, entry, `requests[${index}].`));
    const tiers: TierCounts = { gpu: 0, node: 0, remote: 0 };
    const results = body.requests.map((entry) => ({ gpus: routeTokens(active, entry, tiers) }));
    countTiers(tiers);
    return { generation: active.table.generation, results };
  });

  app.post('/v1/activations', { schema: activationsSchema }, async (request) => {
    const body = request.body as ActivationsBody;
    const active = store.active;
    const report = checkActivationReport(body, active === null ? null : { experts: active.table.experts, layers: active.table.layers.length });
    let accepted = 0;
    if (report.tokens !== null) {
      window.addTokens(report.tokens.shape, report.tokens.selections, report.tokens.count);
      accepted += report.tokens.count;
    }
    if (report.counts !== null) {
      window.addStats(report.counts);
      accepted += report.counts.tokens;
    }
    if (body.dispatch !== undefined) {
      window.addTiers(body.dispatch);
      countTiers(body.dispatch, false);
    }
    return { acceptedTokens: accepted };
  });

  app.get('/v1/stats', { schema: statsSchema }, async (request) => {
    const query = request.query as { since?: string };
    const reading = window.read(query.since === undefined ? undefined : Number(query.since));
    if (reading.stats === null) {
      throw new NoActivationsError('no activations have been reported yet; engines report them with POST /v1/activations');
    }
    return { ...statsToJson(reading.stats), dispatch: reading.dispatch, complete: reading.complete, buckets: reading.buckets };
  });

  app.get('/metrics', { schema: metricsSchema }, async (_request, reply) => {
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });

  app.get('/healthz', { schema: healthSchema }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: readySchema }, async (_request, reply) => {
    const active = store.active;
    if (active === null) {
      return reply.code(503).send({ status: 'not ready', generation: null });
    }
    return { status: 'ready', generation: active.table.generation };
  });

  function countTiers(tiers: Readonly<TierCounts>, intoWindow = true): void {
    if (intoWindow) window.addTiers(tiers);
    if (tiers.gpu > 0) metrics.tokensRouted.inc({ tier: 'gpu' }, tiers.gpu);
    if (tiers.node > 0) metrics.tokensRouted.inc({ tier: 'node' }, tiers.node);
    if (tiers.remote > 0) metrics.tokensRouted.inc({ tier: 'remote' }, tiers.remote);
  }

  return app;
}

function requireActive(active: InstalledTable | null): InstalledTable {
  if (active === null) {
    throw new NoActiveTableError('no routing table is active yet; push one with PUT /v1/routing-table');
  }
  return active;
}

/** Returns the active table after checking it against the generation a request names. */
function requireGeneration(active: InstalledTable | null, generation: number | undefined): InstalledTable {
  const installed = requireActive(active);
  if (generation !== undefined && generation !== installed.table.generation) {
    throw new GenerationConflictError(
      `generation ${generation} is not active; the active generation is ${installed.table.generation}, ` +
        'so finish or restart the batch with it',
      installed.table.generation,
    );
  }
  return installed;
}

function logInstall(log: FastifyBaseLogger | FastifyRequest['log'], installed: InstalledTable, phase: TablePhase, source: string): void {
  const { table } = installed;
  log.info(
    { generation: table.generation, phase, source, layers: table.layers.length, experts: table.experts, topology: table.topology },
    'routing table installed',
  );
}

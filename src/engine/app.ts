/**
 * HTTP API of the reference engine (documented in docs/router.md). buildEngineApp returns the
 * fastify instance without listening; the engine starts following its router's table when the app
 * is ready and stops when it closes.
 *
 * POST /v1/experts/compute takes and returns the binary format of wire.ts, so it has no JSON body
 * schema: the decoder checks the layout and responds with WIRE_FORMAT errors.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { EngineConfig } from '../config/engine.js';
import type { Clock } from '../router/clock.js';
import { createServiceApp, errorResponses } from '../router/http.js';
import { Engine, type GenerateRequest, type InstanceSpec } from './engine.js';
import { createEngineMetrics } from './metrics.js';

export interface EngineDeps {
  readonly logger: FastifyBaseLogger;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly options: EngineConfig;
  /** Monotonic milliseconds; performance.now when omitted. */
  readonly monotonicNow?: () => number;
  /** Timer wait; setTimeout when omitted. */
  readonly sleep?: (ms: number) => Promise<void>;
}

const nonNegativeInteger = { type: 'integer', minimum: 0 } as const;
const integerText = { type: 'string', pattern: '^[0-9]{1,15}$' } as const;
const tierSchema = {
  type: 'object',
  required: ['gpu', 'node', 'remote'],
  properties: { gpu: { type: 'integer' }, node: { type: 'integer' }, remote: { type: 'integer' } },
} as const;
const instanceListSchema = {
  type: 'array',
  items: {
    type: 'object',
    required: ['gpu', 'expert'],
    additionalProperties: false,
    properties: { gpu: nonNegativeInteger, expert: nonNegativeInteger, layer: nonNegativeInteger },
  },
} as const;

const generateSchema = {
  body: {
    type: 'object',
    required: ['requestId', 'tokens'],
    additionalProperties: false,
    properties: {
      requestId: { type: 'string', minLength: 1, maxLength: 200 },
      tokens: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          required: ['layers'],
          additionalProperties: false,
          properties: { layers: { type: 'array', items: { type: 'array', minItems: 1, items: nonNegativeInteger } } },
        },
      },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['requestId', 'generation', 'attempts', 'tokens', 'layers', 'durationMs', 'pairs', 'crossNodeCopies', 'unloadedPairs', 'gpuPairs'],
      properties: {
        requestId: { type: 'string' },
        generation: { type: 'integer' },
        attempts: { type: 'integer' },
        tokens: { type: 'integer' },
        layers: { type: 'integer' },
        durationMs: { type: 'number' },
        pairs: tierSchema,
        crossNodeCopies: { type: 'integer' },
        unloadedPairs: { type: 'integer' },
        gpuPairs: { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
      },
    },
    ...errorResponses,
  },
} as const;

const trafficSchema = {
  response: {
    200: {
      type: 'object',
      required: ['node', 'generation', 'hiddenBytes', 'batches', 'unloadedPairs', 'peers'],
      properties: {
        node: { type: 'integer' },
        generation: { type: ['integer', 'null'] },
        hiddenBytes: { type: 'integer' },
        batches: {
          type: 'object',
          required: ['completed', 'failed'],
          properties: { completed: { type: 'integer' }, failed: { type: 'integer' } },
        },
        unloadedPairs: { type: 'integer' },
        peers: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              node: { type: 'integer' },
              dispatchSentBytes: { type: 'number' },
              combineReceivedBytes: { type: 'number' },
              dispatchReceivedBytes: { type: 'number' },
              combineSentBytes: { type: 'number' },
              requestsSent: { type: 'integer' },
              requestsReceived: { type: 'integer' },
            },
          },
        },
      },
    },
  },
} as const;

const loadSchema = {
  body: {
    type: 'object',
    required: ['generation'],
    additionalProperties: false,
    properties: { generation: nonNegativeInteger, instances: instanceListSchema },
  },
  response: {
    202: {
      type: 'object',
      required: ['generation', 'queued', 'present'],
      properties: { generation: { type: 'integer' }, queued: { type: 'integer' }, present: { type: 'integer' } },
    },
    ...errorResponses,
  },
} as const;

const dropSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { generation: nonNegativeInteger, instances: instanceListSchema },
  },
  response: {
    200: { type: 'object', required: ['dropped'], properties: { dropped: { type: 'integer' } } },
    ...errorResponses,
  },
} as const;

const readinessSchema = {
  querystring: {
    type: 'object',
    required: ['generation'],
    additionalProperties: false,
    properties: { generation: integerText },
  },
  response: {
    200: {
      type: 'object',
      required: ['generation', 'ready', 'required', 'missing', 'missingInstances'],
      properties: {
        generation: { type: 'integer' },
        ready: { type: 'boolean' },
        required: { type: 'integer' },
        missing: { type: 'integer' },
        missingInstances: {
          type: 'array',
          items: {
            type: 'object',
            properties: { layer: { type: 'integer' }, gpu: { type: 'integer' }, expert: { type: 'integer' } },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;

const computeSchema = {
  headers: {
    type: 'object',
    required: ['content-type'],
    properties: { 'content-type': { type: 'string', const: 'application/octet-stream' } },
  },
  response: { ...errorResponses },
} as const;

const statusBody = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, generation: { type: ['integer', 'null'] }, reason: { type: 'string' } },
} as const;
const statusSchema = { response: { 200: statusBody, 503: statusBody } } as const;

/** Builds the engine's fastify app and the engine behind it. */
export function buildEngineApp(deps: EngineDeps): { app: FastifyInstance; engine: Engine } {
  const { options, registry } = deps;
  let engine: Engine | null = null;
  const metrics = createEngineMetrics(registry, {
    generation: () => engine?.generation ?? -1,
    loadedInstances: () => engine?.instances.loadedCount ?? 0,
  });
  const app = createServiceApp({ logger: deps.logger, bodyLimitBytes: options.bodyLimitBytes, requestDuration: metrics.requestDuration });
  const ready = new Engine({
    config: options,
    log: app.log,
    metrics,
    now: () => deps.clock.now(),
    monotonicNow: deps.monotonicNow ?? (() => performance.now()),
    sleep: deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
  });
  engine = ready;

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
  app.addHook('onReady', async () => {
    ready.start();
    app.log.info({ node: options.node, nodes: options.nodes, gpusPerNode: options.gpusPerNode, routing: options.routing }, 'engine started');
  });
  app.addHook('preClose', async () => {
    await ready.stop();
  });

  app.post('/v1/generate', { schema: generateSchema }, async (request) => ready.generate(request.body as GenerateRequest));

  app.post('/v1/experts/compute', { schema: computeSchema }, async (request, reply) => {
    const answer = await ready.compute(request.body as Buffer);
    return reply.type('application/octet-stream').send(answer);
  });

  app.get('/v1/traffic', { schema: trafficSchema }, async () => ready.trafficReport());

  app.post('/v1/instances/load', { schema: loadSchema }, async (request, reply) => {
    const body = request.body as { generation: number; instances?: InstanceSpec[] };
    const result = await ready.load(body.generation, body.instances);
    return reply.code(202).send({ generation: body.generation, ...result });
  });

  app.post('/v1/instances/drop', { schema: dropSchema }, async (request) => {
    const body = request.body as { generation?: number; instances?: InstanceSpec[] };
    return { dropped: await ready.drop(body.generation, body.instances) };
  });

  app.get('/v1/readiness', { schema: readinessSchema }, async (request) => {
    const query = request.query as { generation: string };
    return ready.readiness(Number(query.generation));
  });

  app.get('/metrics', { schema: { response: { 200: { type: 'string' } } } }, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  app.get('/healthz', { schema: statusSchema }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: statusSchema }, async (_request, reply) => {
    const generation = ready.follower.current?.table.generation ?? null;
    const reason = ready.notReadyReason;
    return reason === null ? { status: 'ready', generation } : reply.code(503).send({ status: 'not ready', generation, reason });
  });

  return { app, engine: ready };
}

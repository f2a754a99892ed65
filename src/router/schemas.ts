/** JSON schemas of the router's requests and responses. Semantic checks happen in the handlers. */
import { errorResponses } from './http.js';

const nonNegativeInteger = { type: 'integer', minimum: 0 } as const;
const positiveInteger = { type: 'integer', minimum: 1 } as const;
/** Query-string integers arrive as text, and bodies are validated without coercion. */
const integerText = { type: 'string', pattern: '^[0-9]{1,15}$' } as const;

const instanceSchema = {
  type: 'object',
  required: ['gpu', 'node', 'weight'],
  additionalProperties: false,
  properties: { gpu: nonNegativeInteger, node: nonNegativeInteger, weight: { type: 'number' } },
} as const;

export const routingTableSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'generation', 'topology', 'experts', 'layers'],
  additionalProperties: false,
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    generation: nonNegativeInteger,
    topology: {
      type: 'object',
      required: ['nodes', 'gpusPerNode', 'slotsPerGpu'],
      additionalProperties: false,
      properties: { nodes: positiveInteger, gpusPerNode: positiveInteger, slotsPerGpu: positiveInteger },
    },
    experts: positiveInteger,
    layers: { type: 'array', items: { type: 'array', items: { type: 'array', items: instanceSchema } } },
  },
} as const;

const installedSchema = {
  type: 'object',
  required: ['generation', 'phase', 'installedAtMs'],
  properties: {
    generation: nonNegativeInteger,
    phase: { type: 'string', enum: ['active', 'pending'] },
    installedAtMs: { type: 'number' },
  },
} as const;

export const putTableSchema = {
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { phase: { type: 'string', enum: ['active', 'pending'] } },
  },
  // A PlacementPlan document is checked by parsePlan in the handler; anything else must be a table.
  body: {
    if: { type: 'object', required: ['kind'], properties: { kind: { const: 'PlacementPlan' } } },
    then: { type: 'object' },
    else: routingTableSchema,
  },
  response: { 200: installedSchema, ...errorResponses },
} as const;

export const getTableSchema = {
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { waitMs: integerText },
  },
  headers: {
    type: 'object',
    properties: { 'if-none-match': { type: 'string', maxLength: 64 } },
  },
  response: { 200: routingTableSchema, 304: { type: 'null' }, ...errorResponses },
} as const;

export const getPendingSchema = {
  response: { 200: routingTableSchema, ...errorResponses },
} as const;

export const activateSchema = {
  body: {
    type: 'object',
    required: ['generation'],
    additionalProperties: false,
    properties: { generation: nonNegativeInteger },
  },
  response: { 200: installedSchema, ...errorResponses },
} as const;

export const dropPendingSchema = {
  response: {
    200: {
      type: 'object',
      required: ['dropped'],
      properties: { dropped: { type: ['integer', 'null'] } },
    },
    ...errorResponses,
  },
} as const;

const tokenListsSchema = {
  type: 'array',
  items: { type: 'array', minItems: 1, items: nonNegativeInteger },
} as const;

const routeRequestSchema = {
  type: 'object',
  required: ['sourceGpu', 'layer', 'tokens'],
  additionalProperties: false,
  properties: { sourceGpu: nonNegativeInteger, layer: nonNegativeInteger, tokens: tokenListsSchema },
} as const;

const gpuListsSchema = { type: 'array', items: { type: 'array', items: { type: 'integer' } } } as const;

export const routeSchema = {
  body: {
    ...routeRequestSchema,
    properties: { ...routeRequestSchema.properties, generation: nonNegativeInteger },
  },
  response: {
    200: {
      type: 'object',
      required: ['generation', 'gpus'],
      properties: { generation: nonNegativeInteger, gpus: gpuListsSchema },
    },
    ...errorResponses,
  },
} as const;

export const routeBatchSchema = {
  body: {
    type: 'object',
    required: ['requests'],
    additionalProperties: false,
    properties: {
      generation: nonNegativeInteger,
      requests: { type: 'array', minItems: 1, items: routeRequestSchema },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['generation', 'results'],
      properties: {
        generation: nonNegativeInteger,
        results: {
          type: 'array',
          items: { type: 'object', required: ['gpus'], properties: { gpus: gpuListsSchema } },
        },
      },
    },
    ...errorResponses,
  },
} as const;

const tierCountsSchema = {
  type: 'object',
  required: ['gpu', 'node', 'remote'],
  additionalProperties: false,
  properties: { gpu: nonNegativeInteger, node: nonNegativeInteger, remote: nonNegativeInteger },
} as const;

export const activationsSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: {
      tokens: { type: 'array', items: tokenListsSchema },
      counts: { type: 'object' },
      dispatch: tierCountsSchema,
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['acceptedTokens'],
      properties: { acceptedTokens: { type: 'number' } },
    },
    ...errorResponses,
  },
} as const;

const statsDocumentProperties = {
  apiVersion: { type: 'string' },
  kind: { type: 'string' },
  experts: { type: 'integer' },
  layers: { type: 'integer' },
  topK: { type: 'integer' },
  tokens: { type: 'number' },
  window: {
    type: 'object',
    required: ['startMs', 'endMs'],
    properties: { startMs: { type: 'number' }, endMs: { type: 'number' } },
  },
  perLayer: {
    type: 'array',
    items: {
      type: 'object',
      required: ['tokens', 'loads', 'coactivation'],
      properties: {
        tokens: { type: 'number' },
        loads: { type: 'array', items: { type: 'number' } },
        coactivation: { type: 'array', items: { type: 'array', items: { type: 'number' } } },
      },
    },
  },
  sample: {
    type: 'object',
    required: ['capacity', 'seen', 'tokens'],
    properties: {
      capacity: { type: 'integer' },
      seen: { type: 'number' },
      tokens: { type: 'array', items: { type: 'array', items: { type: 'array', items: { type: 'integer' } } } },
    },
  },
} as const;

export const statsSchema = {
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { since: integerText },
  },
  response: {
    200: {
      type: 'object',
      required: [...Object.keys(statsDocumentProperties), 'dispatch', 'complete', 'buckets'],
      properties: {
        ...statsDocumentProperties,
        dispatch: tierCountsSchema,
        complete: { type: 'boolean' },
        buckets: { type: 'integer' },
      },
    },
    ...errorResponses,
  },
} as const;

export const healthSchema = {
  response: {
    200: { type: 'object', required: ['status'], properties: { status: { type: 'string' } } },
  },
} as const;

const readinessBody = {
  type: 'object',
  required: ['status', 'generation'],
  properties: { status: { type: 'string' }, generation: { type: ['integer', 'null'] } },
} as const;

export const readySchema = { response: { 200: readinessBody, 503: readinessBody } } as const;

export const metricsSchema = { response: { 200: { type: 'string' } } } as const;

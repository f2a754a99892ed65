import { createServer } from 'node:net';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { engineConfigWith, type EngineConfig, type RoutingMode } from '../config/engine.js';
import { routerConfigWith, type RouterConfig } from '../config/router.js';
import { buildRouterApp } from '../router/app.js';
import { systemClock } from '../router/clock.js';
import { smallTable } from '../router/test-tables.js';
import type { RoutingTable } from '../routing/types.js';
import { prepareTable } from '../router/table-store.js';
import { buildEngineApp } from './app.js';
import { ROUTE_CALL_MAX_TOKENS, splitRouteCalls, type Engine } from './engine.js';
import { encodeComputeRequest } from './wire.js';

const silent = pino({ level: 'silent' });
const HIDDEN_SIZE = 64;
const HIDDEN_BYTES = HIDDEN_SIZE * 2;

/** Binds 127.0.0.1:0, reads the port the kernel chose and releases it. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface Cluster {
  readonly router: FastifyInstance;
  readonly routerUrl: string;
  readonly engines: { app: FastifyInstance; engine: Engine; url: string }[];
}

const running: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of running.splice(0).reverse()) await app.close();
});

async function startCluster(
  table: RoutingTable,
  routing: RoutingMode,
  overrides: Partial<EngineConfig> = {},
  engineLogger: FastifyBaseLogger = silent,
  routerOverrides: Partial<RouterConfig> = {},
): Promise<Cluster> {
  const router = buildRouterApp({
    logger: silent,
    registry: new Registry(),
    clock: systemClock,
    options: routerConfigWith({ longPollMaxMs: 2_000, ...routerOverrides }),
    loadInitialTable: async () => table,
  });
  running.push(router);
  const routerUrl = await router.listen({ host: '127.0.0.1', port: 0 });

  const ports = [await freePort(), await freePort()];
  const peers = ports.map((port) => `http://127.0.0.1:${port}`);
  const engines = [];
  for (const node of [0, 1]) {
    const options = engineConfigWith(
      { node, nodes: 2, gpusPerNode: 2, peers, routerUrl },
      { routing, hiddenSize: HIDDEN_SIZE, computeMicrosPerPair: 1, longPollWaitMs: 1_000, requestTimeoutMs: 5_000, ...overrides },
    );
    const { app, engine } = buildEngineApp({ logger: engineLogger, registry: new Registry(), clock: systemClock, options });
    running.push(app);
    await app.listen({ host: '127.0.0.1', port: ports[node] as number });
    await engine.follower.waitForGeneration(table.generation, 5_000);
    engines.push({ app, engine, url: peers[node] as string });
  }
  return { router, routerUrl, engines };
}

/** A pino logger that keeps every line it writes, parsed. */
function capturingLogger(): { logger: FastifyBaseLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** Encodes a compute request from node 0 with one token and the given pairs. */
function computeBody(generation: number, layer: number, pairs: { token: number; gpu: number; expert: number }[]): Buffer {
  return encodeComputeRequest({ generation, layer, sourceNode: 0, tokens: 1, hiddenBytes: HIDDEN_BYTES, pairs, payload: new Uint8Array(HIDDEN_BYTES) });
}

/** Four tokens of one layer; from node 0 with homes 0, 1, 0, 1 three of them need node 1. */
const BATCH = {
  requestId: 'batch-1',
  tokens: [{ layers: [[0, 1]] }, { layers: [[2, 3]] }, { layers: [[0, 2]] }, { layers: [[1, 3]] }],
};

describe('engine batches', () => {
  test.each(['http', 'in-process'] as const)('moves one hidden state per token and remote node (%s routing)', async (routing) => {
    const cluster = await startCluster(smallTable(1), routing);
    const [first, second] = cluster.engines;

    const response = await first!.app.inject({ method: 'POST', url: '/v1/generate', payload: BATCH });

    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      requestId: 'batch-1',
      generation: 1,
      attempts: 1,
      tokens: 4,
      layers: 1,
      pairs: { gpu: 3, node: 1, remote: 4 },
      crossNodeCopies: 3,
      unloadedPairs: 0,
      // Expert 3 goes to GPU 2 twice: weights 3 and 1 on GPUs 2 and 3 start with two picks of GPU 2.
      gpuPairs: [[2, 2, 4, 0]],
    });
    const sent = (await first!.app.inject({ method: 'GET', url: '/v1/traffic' })).json();
    expect(sent.peers).toEqual([
      {
        node: 1,
        dispatchSentBytes: 3 * HIDDEN_BYTES,
        combineReceivedBytes: 3 * HIDDEN_BYTES,
        dispatchReceivedBytes: 0,
        combineSentBytes: 0,
        requestsSent: 1,
        requestsReceived: 0,
      },
    ]);
    const received = (await second!.app.inject({ method: 'GET', url: '/v1/traffic' })).json();
    expect(received.peers[0]).toMatchObject({ node: 0, dispatchReceivedBytes: 3 * HIDDEN_BYTES, combineSentBytes: 3 * HIDDEN_BYTES, requestsReceived: 1 });

    const stats = (await cluster.router.inject({ method: 'GET', url: '/v1/stats' })).json();
    expect(stats.tokens).toBe(4);
    expect(stats.perLayer[0].loads).toEqual([2, 2, 2, 2]);
    expect(stats.dispatch).toEqual({ gpu: 3, node: 1, remote: 4 });

    const metrics = (await first!.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain(`grace_moe_engine_bytes_sent_total{peer_node="1",phase="dispatch"} ${3 * HIDDEN_BYTES}`);
    expect(metrics).toContain(`grace_moe_engine_bytes_received_total{peer_node="1",phase="combine"} ${3 * HIDDEN_BYTES}`);
  });

  test('rejects tokens with the wrong layer count', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const response = await cluster.engines[0]!.app.inject({
      method: 'POST',
      url: '/v1/generate',
      payload: { requestId: 'bad', tokens: [{ layers: [[0], [1]] }] },
    });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.message).toContain('tokens[0].layers must list 1 top-k lists');
  });

  test('follows a new generation pushed to the router', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table', payload: smallTable(2) });

    const followed = await cluster.engines[0]!.engine.follower.waitForGeneration(2, 5_000);

    expect(followed?.table.generation).toBe(2);
    const response = await cluster.engines[0]!.app.inject({ method: 'POST', url: '/v1/generate', payload: BATCH });
    expect(response.json().generation).toBe(2);
  });
});

describe('expert compute endpoint', () => {
  test('rejects a body that is not the wire format', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const response = await cluster.engines[1]!.app.inject({
      method: 'POST',
      url: '/v1/experts/compute',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from('not a compute request at all'),
    });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe('WIRE_FORMAT');
  });

  test('rejects pairs for a GPU of another node', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const body = encodeComputeRequest({
      generation: 1,
      layer: 0,
      sourceNode: 0,
      tokens: 1,
      hiddenBytes: HIDDEN_BYTES,
      pairs: [{ token: 0, gpu: 1, expert: 1 }],
      payload: new Uint8Array(HIDDEN_BYTES),
    });
    const response = await cluster.engines[1]!.app.inject({
      method: 'POST',
      url: '/v1/experts/compute',
      headers: { 'content-type': 'application/octet-stream' },
      payload: body,
    });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.message).toContain('GPU 1, which is not on node 1');
  });
});

describe('expert instances', () => {
  /** Generation 2 moves expert 0's second instance from GPU 2 to GPU 3, which gets a fourth slot. */
  function movedTable(): RoutingTable {
    const table = smallTable(2);
    const layer = table.layers[0]!.map((instances) => [...instances]);
    layer[0] = [{ gpu: 0, node: 0, weight: 1 }, { gpu: 3, node: 1, weight: 1 }];
    return { ...table, topology: { ...table.topology, slotsPerGpu: 4 }, layers: [layer] };
  }

  test('loads the instances of a pending table with a delay, then reports ready', async () => {
    const cluster = await startCluster(smallTable(1), 'http', { expertBytes: 1_000, loadBytesPerSecond: 20_000 });
    const engine = cluster.engines[1]!.app;
    const staged = await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table?phase=pending', payload: movedTable() });
    expect(staged.statusCode).toBe(200);

    const before = (await engine.inject({ method: 'GET', url: '/v1/readiness?generation=2' })).json();
    expect(before).toEqual({ generation: 2, ready: false, required: 6, missing: 1, missingInstances: [{ layer: 0, gpu: 3, expert: 0 }] });

    const load = await engine.inject({ method: 'POST', url: '/v1/instances/load', payload: { generation: 2 } });
    expect(load.statusCode).toBe(202);
    expect(load.json()).toEqual({ generation: 2, queued: 1, present: 5 });
    const started = Date.now();
    let ready = false;
    while (!ready && Date.now() - started < 5_000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      ready = (await engine.inject({ method: 'GET', url: '/v1/readiness?generation=2' })).json().ready;
    }
    expect(ready).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);

    // Generation 1 is still active and keeps expert 0 on GPU 2, so nothing may go yet.
    const early = await engine.inject({ method: 'POST', url: '/v1/instances/drop', payload: { generation: 2 } });
    expect(early.json()).toEqual({ dropped: 0 });
    await cluster.router.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 2 } });
    await cluster.engines[1]!.engine.follower.waitForGeneration(2, 5_000);
    const drop = await engine.inject({ method: 'POST', url: '/v1/instances/drop', payload: { generation: 2 } });
    expect(drop.json()).toEqual({ dropped: 1 });
  });

  test('answers 404 for a generation the router does not hold', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const response = await cluster.engines[0]!.app.inject({ method: 'GET', url: '/v1/readiness?generation=9' });

    expect(response.statusCode).toBe(404);
    expect(response.json().error.code).toBe('TABLE_NOT_FOUND');
  });

  test('rejects instances on a GPU of another node', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const response = await cluster.engines[0]!.app.inject({
      method: 'POST',
      url: '/v1/instances/load',
      payload: { generation: 1, instances: [{ gpu: 2, expert: 0 }] },
    });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.message).toContain('instances[0].gpu must be a GPU of node 0');
  });
});

describe('batch selections', () => {
  const invalid = [
    ['top-k lists of two lengths', [{ layers: [[0, 1]] }, { layers: [[2]] }], 'BODY_INVALID', 'tokens[1].layers[0] lists 1 expert ids, but tokens[0].layers[0] lists 2; every top-k list of a batch must have the same length'],
    ['a repeated expert', [{ layers: [[0, 1]] }, { layers: [[3, 3]] }], 'BODY_INVALID', "tokens[1].layers[0] lists expert 3 twice; a token's top-k expert ids must be distinct"],
    ['an empty top-k list', [{ layers: [[0, 1]] }, { layers: [[]] }], 'BODY_INVALID', 'body/tokens/1/layers/0 must NOT have fewer than 1 items'],
  ] as const;

  test.each(invalid)('rejects %s before any work and reports nothing', async (_name, tokens, code, message) => {
    const cluster = await startCluster(smallTable(1), 'http');
    const engine = cluster.engines[0]!.app;

    const response = await engine.inject({ method: 'POST', url: '/v1/generate', payload: { requestId: 'bad', tokens } });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe(code);
    expect(response.json().error.message).toContain(message);
    expect((await cluster.router.inject({ method: 'GET', url: '/v1/stats' })).statusCode).toBe(404);
    const good = await engine.inject({ method: 'POST', url: '/v1/generate', payload: BATCH });
    expect(good.json().pairs).toEqual({ gpu: 3, node: 1, remote: 4 });
    const stats = (await cluster.router.inject({ method: 'GET', url: '/v1/stats' })).json();
    expect(stats.topK).toBe(2);
    expect(stats.tokens).toBe(4);
  });
});

describe('batch selections without the HTTP schema', () => {
  test('rejects an empty top-k list in a direct call', async () => {
    const cluster = await startCluster(smallTable(1), 'in-process');
    const batch = { requestId: 'direct', tokens: [{ layers: [[0, 1]] }, { layers: [[]] }] };

    await expect(cluster.engines[0]!.engine.generate(batch)).rejects.toThrow(
      "tokens[1].layers[0] is empty; list the token's top-k expert ids for every layer",
    );
    expect(cluster.engines[0]!.engine.trafficReport().batches).toEqual({ completed: 0, failed: 1 });
  });
});

describe('engine readiness', () => {
  test('is not ready while the active table has another topology, and warns once per generation', async () => {
    const { logger, lines } = capturingLogger();
    const cluster = await startCluster(smallTable(1), 'http', {}, logger);
    const engine = cluster.engines[0]!;
    const wide = smallTable(2);
    const oneNode: RoutingTable = {
      ...wide,
      topology: { nodes: 1, gpusPerNode: 4, slotsPerGpu: 3 },
      layers: wide.layers.map((layer) => layer.map((instances) => instances.map((instance) => ({ ...instance, node: 0 })))),
    };

    await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table', payload: oneNode });
    await engine.engine.follower.waitForGeneration(2, 5_000);
    const notReady = await engine.app.inject({ method: 'GET', url: '/readyz' });
    await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table', payload: smallTable(3) });
    await engine.engine.follower.waitForGeneration(3, 5_000);
    const ready = await engine.app.inject({ method: 'GET', url: '/readyz' });

    expect(notReady.statusCode).toBe(503);
    expect(notReady.json()).toEqual({
      status: 'not ready',
      generation: 2,
      reason: 'routing table generation 2 is for 1x4 GPUs, but this engine runs in 2x2',
    });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', generation: 3 });
    const warnings = lines.filter((line) => line.msg === 'routing table has another topology than this engine; not ready until a matching table is active');
    // Both engines share the logger; each warns once for generation 2.
    expect(warnings.map((line) => [line.level, line.generation, line.tableTopology, line.engineTopology])).toEqual([
      [40, 2, '1x4', '2x2'],
      [40, 2, '1x4', '2x2'],
    ]);
  });
});

describe('expert compute checks', () => {
  const rejected = [
    ['an older generation', computeBody(0, 0, [{ token: 0, gpu: 2, expert: 0 }]), 409, 'GENERATION_CONFLICT', 'compute request is for generation 0, which is neither'],
    ['a layer outside the table', computeBody(1, 3, [{ token: 0, gpu: 2, expert: 0 }]), 400, 'OUT_OF_RANGE', 'compute request names layer 3, but generation 1 has 1 layers'],
    ['an expert outside the table', computeBody(1, 0, [{ token: 0, gpu: 2, expert: 9 }]), 400, 'OUT_OF_RANGE', 'compute request pair 0 names expert 9, but generation 1 has 4 experts'],
    ['more pairs than the cap', computeBody(1, 0, [0, 1, 2].map((expert) => ({ token: 0, gpu: 2, expert }))), 400, 'TOO_MANY_PAIRS', 'compute request carries 3 token-expert pairs, more than the 2 this engine accepts'],
  ] as const;

  test.each(rejected)('rejects %s', async (_name, body, status, code, message) => {
    const cluster = await startCluster(smallTable(1), 'http', { maxComputePairs: 2 });
    const response = await cluster.engines[1]!.app.inject({
      method: 'POST',
      url: '/v1/experts/compute',
      headers: { 'content-type': 'application/octet-stream' },
      payload: body,
    });

    expect(response.statusCode).toBe(status);
    expect(response.json().error.code).toBe(code);
    expect(response.json().error.message).toContain(message);
  });

  test('accepts the generation pending at its router', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table?phase=pending', payload: smallTable(2) });

    const response = await cluster.engines[1]!.app.inject({
      method: 'POST',
      url: '/v1/experts/compute',
      headers: { 'content-type': 'application/octet-stream' },
      payload: computeBody(2, 0, [{ token: 0, gpu: 2, expert: 0 }]),
    });

    expect(response.statusCode).toBe(200);
    expect(response.rawPayload.length).toBe(12 + HIDDEN_BYTES);
  });

  test('restarts a batch that a peer rejects for its older generation', async () => {
    const cluster = await startCluster(smallTable(1), 'in-process');
    await cluster.router.inject({ method: 'PUT', url: '/v1/routing-table', payload: smallTable(2) });
    const [first, second] = cluster.engines;
    await second!.engine.follower.waitForGeneration(2, 5_000);
    await first!.engine.follower.waitForGeneration(2, 5_000);
    // Node 0 falls back to generation 1 until its follower polls again; node 1 stays at 2.
    first!.engine.follower.accept(prepareTable(smallTable(1), Date.now()));

    const result = await first!.engine.generate(BATCH);

    expect(result.generation).toBe(2);
    expect(result.attempts).toBe(2);
  });
});

describe('instance drops', () => {
  test('rejects dropping an instance the active table uses', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const engine = cluster.engines[1]!.app;

    const response = await engine.inject({ method: 'POST', url: '/v1/instances/drop', payload: { instances: [{ gpu: 2, expert: 0, layer: 0 }] } });

    expect(response.statusCode).toBe(409);
    expect(response.json().error).toEqual({
      code: 'INSTANCE_IN_USE',
      message: 'instance (layer 0, GPU 2, expert 0) is used by the active table, generation 1; drop it once no active or pending table uses it',
    });
    const readiness = (await engine.inject({ method: 'GET', url: '/v1/readiness?generation=1' })).json();
    expect(readiness.missing).toBe(0);
  });

  test('rejects dropping an instance only the pending table uses', async () => {
    const cluster = await startCluster(smallTable(1), 'http');
    const pending = smallTable(2);
    const layer = pending.layers[0]!.map((instances) => [...instances]);
    layer[0] = [{ gpu: 0, node: 0, weight: 1 }, { gpu: 3, node: 1, weight: 1 }];
    await cluster.router.inject({
      method: 'PUT',
      url: '/v1/routing-table?phase=pending',
      payload: { ...pending, topology: { ...pending.topology, slotsPerGpu: 4 }, layers: [layer] },
    });
    const engine = cluster.engines[1]!.app;
    await engine.inject({ method: 'POST', url: '/v1/instances/load', payload: { generation: 2 } });

    const response = await engine.inject({ method: 'POST', url: '/v1/instances/drop', payload: { instances: [{ gpu: 3, expert: 0 }] } });

    expect(response.statusCode).toBe(409);
    expect(response.json().error.message).toContain('instance (layer 0, GPU 3, expert 0) is used by the pending table, generation 2');
  });
});

describe('router calls of large batches', () => {
  test.each([
    ['one call for small groups', [{ sourceGpu: 0, tokens: [0, 2] }, { sourceGpu: 1, tokens: [1] }], 3, [[[0, [0, 2]], [1, [1]]]]],
    ['a group split across calls', [{ sourceGpu: 0, tokens: [0, 2, 4] }, { sourceGpu: 1, tokens: [1, 3] }], 2, [[[0, [0, 2]]], [[0, [4]], [1, [1]]], [[1, [3]]]]],
    ['no call without tokens', [], 2, []],
  ] as const)('splits %s', (_name, groups, maxTokens, expected) => {
    const calls = splitRouteCalls(groups, maxTokens).map((call) => call.map((group) => [group.sourceGpu, group.tokens]));

    expect(calls).toEqual(expected);
  });

  test('keeps a batch above the router token limit within it', async () => {
    const cluster = await startCluster(smallTable(1), 'http', {}, silent, { routeMaxTokens: ROUTE_CALL_MAX_TOKENS });
    const tokens = Array.from({ length: ROUTE_CALL_MAX_TOKENS + 904 }, () => ({ layers: [[0, 1]] }));

    const response = await cluster.engines[0]!.app.inject({ method: 'POST', url: '/v1/generate', payload: { requestId: 'large', tokens } });

    expect(response.statusCode).toBe(200);
    expect(response.json().pairs).toEqual({ gpu: tokens.length, node: tokens.length, remote: 0 });
    const metrics = (await cluster.router.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/grace_moe_router_request_duration_seconds_count\{route="\/v1\/route\/batch",method="POST",status_code="200"\} 2/);
  });
});

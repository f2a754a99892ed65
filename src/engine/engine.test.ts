import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { engineConfigWith, type EngineConfig, type RoutingMode } from '../config/engine.js';
import { routerConfigWith } from '../config/router.js';
import { buildRouterApp } from '../router/app.js';
import { systemClock } from '../router/clock.js';
import { smallTable } from '../router/test-tables.js';
import type { RoutingTable } from '../routing/types.js';
import { buildEngineApp } from './app.js';
import type { Engine } from './engine.js';
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

async function startCluster(table: RoutingTable, routing: RoutingMode, overrides: Partial<EngineConfig> = {}): Promise<Cluster> {
  const router = buildRouterApp({
    logger: silent,
    registry: new Registry(),
    clock: systemClock,
    options: routerConfigWith({ longPollMaxMs: 2_000 }),
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
    const { app, engine } = buildEngineApp({ logger: silent, registry: new Registry(), clock: systemClock, options });
    running.push(app);
    await app.listen({ host: '127.0.0.1', port: ports[node] as number });
    await engine.follower.waitForGeneration(table.generation, 5_000);
    engines.push({ app, engine, url: peers[node] as string });
  }
  return { router, routerUrl, engines };
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

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { contiguousPlan } from '../baselines/contiguous.js';
import { routerConfigWith } from '../config/router.js';
import { planToJson } from '../plan/json.js';
import type { RoutingTable } from '../routing/types.js';
import { parseStats } from '../stats/json.js';
import { statsToJson } from '../stats/json.js';
import { StatsAccumulator } from '../stats/activation.js';
import { buildRouterApp } from './app.js';
import type { RouterConfig } from '../config/router.js';
import { loadStartupTable } from './table-files.js';
import { smallTable } from './test-tables.js';

const silent = pino({ level: 'silent' });

interface Harness {
  readonly app: FastifyInstance;
  readonly clock: { t: number; now(): number };
}

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

function harness(options: Partial<RouterConfig> = {}, initial: RoutingTable | null = null, loader?: () => Promise<RoutingTable | null>): Harness {
  const clock = {
    t: 1_000_000,
    now() {
      return this.t;
    },
  };
  const app = buildRouterApp({
    logger: silent,
    registry: new Registry(),
    clock,
    options: routerConfigWith(options),
    loadInitialTable: loader ?? (async () => initial),
  });
  apps.push(app);
  return { app, clock };
}

async function putTable(app: FastifyInstance, table: unknown, phase?: string) {
  return app.inject({
    method: 'PUT',
    url: phase === undefined ? '/v1/routing-table' : `/v1/routing-table?phase=${phase}`,
    payload: table as object,
  });
}

async function activeGeneration(app: FastifyInstance): Promise<number | null> {
  const response = await app.inject({ method: 'GET', url: '/v1/routing-table' });
  return response.statusCode === 200 ? (response.json() as RoutingTable).generation : null;
}

/** Routes one token with experts 0 and 1 from GPU 0 at layer 0 and returns the response body. */
async function routeOnce(app: FastifyInstance): Promise<{ generation: number; gpus: number[][] }> {
  const response = await app.inject({
    method: 'POST',
    url: '/v1/route',
    payload: { sourceGpu: 0, layer: 0, tokens: [[0, 1]] },
  });
  expect(response.statusCode).toBe(200);
  return response.json();
}

/** A contiguous placement plan of smallTable's shape (2 x 2 GPUs, 4 experts, one layer) as JSON. */
function planDocument(generation: number): Record<string, unknown> {
  const plan = contiguousPlan([new Float64Array(4)], { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 }, { topK: 2, generation });
  return JSON.parse(JSON.stringify(planToJson(plan))) as Record<string, unknown>;
}

/** A pino logger that keeps every line it writes, parsed. */
function capturingLogger(): { logger: FastifyBaseLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** Returns smallTable(2) as raw JSON text with the weight 3 replaced by `weightJson`. */
function tableWithWeight(weightJson: string): string {
  const text = JSON.stringify(smallTable(2));
  return text.replace('"weight":3', `"weight":${weightJson}`);
}

describe('PUT /v1/routing-table', () => {
  test('installs a table and serves it with its generation as ETag', async () => {
    const { app } = harness();
    const put = await putTable(app, smallTable(1));

    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ generation: 1, phase: 'active' });
    const get = await app.inject({ method: 'GET', url: '/v1/routing-table' });
    expect(get.statusCode).toBe(200);
    expect(get.headers.etag).toBe('"1"');
    expect(get.json()).toEqual(smallTable(1));
  });

  const badTables = [
    ['missing expert', JSON.stringify({ ...smallTable(2), layers: [smallTable(2).layers[0]!.slice(0, 3)] }), 400, 'PLAN_INVALID', 'layers[0]'],
    ['expert without instance', JSON.stringify({ ...smallTable(2), layers: [[...smallTable(2).layers[0]!.slice(0, 3), []]] }), 400, 'PLAN_INVALID', 'layers[0][3]'],
    ['weight "NaN"', tableWithWeight('"NaN"'), 400, 'BODY_INVALID', '"NaN"'],
    ['weight null', tableWithWeight('null'), 400, 'BODY_INVALID', 'weight must be number, got null'],
    ['weight 0', tableWithWeight('0'), 400, 'PLAN_INVALID', 'layers[0][3][0].weight: must be a finite number greater than 0, got 0'],
    ['weight -1', tableWithWeight('-1'), 400, 'PLAN_INVALID', 'layers[0][3][0].weight: must be a finite number greater than 0, got -1'],
    ['weight 1e400', tableWithWeight('1e400'), 400, 'BODY_INVALID', 'weight must be number, got Infinity'],
    ['GPU out of range', JSON.stringify(smallTable(2)).replace('{"gpu":3,"node":1,"weight":1}', '{"gpu":4,"node":2,"weight":1}'), 400, 'PLAN_INVALID', 'layers[0][1][1].gpu'],
    ['node not the GPU node', JSON.stringify(smallTable(2)).replace('{"gpu":3,"node":1,"weight":1}', '{"gpu":3,"node":0,"weight":1}'), 400, 'PLAN_INVALID', 'layers[0][1][1].node'],
    ['GPU holding one expert twice', JSON.stringify(smallTable(2)).replace('{"gpu":3,"node":1,"weight":1}', '{"gpu":1,"node":0,"weight":1}'), 400, 'PLAN_INVALID', 'GPU 1 has two instances of expert 1'],
    ['unknown apiVersion', JSON.stringify({ ...smallTable(2), apiVersion: 'v9' }), 400, 'FORMAT_VERSION', '"v9"'],
    ['unknown field', JSON.stringify({ ...smallTable(2), extra: 1 }), 400, 'BODY_INVALID', 'unknown field "extra"'],
    ['malformed JSON', '{"apiVersion": ', 400, 'MALFORMED_JSON', 'not valid JSON'],
    ['stale generation', JSON.stringify(smallTable(1)), 409, 'GENERATION_CONFLICT', 'not newer than the active generation 1'],
    ['older generation', JSON.stringify(smallTable(0)), 409, 'GENERATION_CONFLICT', 'generation 0'],
    ['generation 2^32', JSON.stringify(smallTable(2 ** 32)), 400, 'PLAN_INVALID', 'generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got 4294967296'],
    ['generation 2^53', JSON.stringify(smallTable(2 ** 53)), 400, 'PLAN_INVALID', 'generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got 9007199254740992'],
    ['plan with an unknown field', JSON.stringify({ ...planDocument(2), extra: 1 }), 400, 'PLAN_INVALID', 'extra: is not a known field'],
    ['plan with a stale generation', JSON.stringify(planDocument(1)), 409, 'GENERATION_CONFLICT', 'generation 1 is not newer'],
  ] as const;

  test.each(badTables)('rejects %s and keeps the active table', async (_name, payload, status, code, fragment) => {
    const { app } = harness({}, smallTable(1));
    const before = await routeOnce(app);

    const response = await app.inject({
      method: 'PUT',
      url: '/v1/routing-table',
      headers: { 'content-type': 'application/json' },
      payload,
    });

    expect(response.statusCode).toBe(status);
    const body = response.json() as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toContain(fragment);
    expect(await activeGeneration(app)).toBe(1);
    expect(await routeOnce(app)).toEqual(before);
  });

  test('rejects an oversize body with 413', async () => {
    const { app } = harness({ bodyLimitBytes: 1024 }, smallTable(1));
    const big = { ...smallTable(2), layers: Array.from({ length: 20 }, () => smallTable(2).layers[0]) };

    const response = await putTable(app, big);

    expect(response.statusCode).toBe(413);
    expect(response.json().error.code).toBe('BODY_TOO_LARGE');
    expect(await activeGeneration(app)).toBe(1);
    expect((await routeOnce(app)).generation).toBe(1);
  });

  test('answers 409 with the active generation for a stale push', async () => {
    const { app } = harness({}, smallTable(5));
    const response = await putTable(app, smallTable(5));

    expect(response.statusCode).toBe(409);
    expect(response.json().error).toMatchObject({ code: 'GENERATION_CONFLICT', activeGeneration: 5 });
  });
});

describe('two-phase rollout', () => {
  test('stages, activates and drops pending tables', async () => {
    const { app } = harness({}, smallTable(1));

    const staged = await putTable(app, smallTable(2), 'pending');
    expect(staged.json()).toMatchObject({ generation: 2, phase: 'pending' });
    expect(await activeGeneration(app)).toBe(1);
    expect((await routeOnce(app)).generation).toBe(1);
    const pending = await app.inject({ method: 'GET', url: '/v1/routing-table/pending' });
    expect(pending.json().generation).toBe(2);

    const wrong = await app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 3 } });
    expect(wrong.statusCode).toBe(409);
    expect(wrong.json().error.code).toBe('PENDING_MISMATCH');
    expect(await activeGeneration(app)).toBe(1);

    const activated = await app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 2 } });
    expect(activated.statusCode).toBe(200);
    expect(await activeGeneration(app)).toBe(2);
    expect((await routeOnce(app)).generation).toBe(2);
    expect((await app.inject({ method: 'GET', url: '/v1/routing-table/pending' })).statusCode).toBe(404);

    await putTable(app, smallTable(3), 'pending');
    const dropped = await app.inject({ method: 'DELETE', url: '/v1/routing-table/pending' });
    expect(dropped.json()).toEqual({ dropped: 3 });
    const afterAbort = await app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 3 } });
    expect(afterAbort.statusCode).toBe(409);
    expect(await activeGeneration(app)).toBe(2);
  });

  test('rejects a pending table not newer than the active one', async () => {
    const { app } = harness({}, smallTable(4));
    const response = await putTable(app, smallTable(4), 'pending');

    expect(response.statusCode).toBe(409);
    expect((await app.inject({ method: 'GET', url: '/v1/routing-table/pending' })).statusCode).toBe(404);
  });

  test('activating with nothing pending answers 409', async () => {
    const { app } = harness({}, smallTable(1));
    const response = await app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 2 } });

    expect(response.statusCode).toBe(409);
    expect(response.json().error.message).toContain('no table is pending');
  });
});

describe('POST /v1/route', () => {
  test('chooses own GPU, then own node, then weighted remote instances', async () => {
    const { app } = harness({}, smallTable(1));
    const tokens = Array.from({ length: 8 }, () => [0, 1, 2, 3]);

    const response = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens } });

    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      generation: 1,
      gpus: [
        [0, 1, 2, 2],
        [0, 1, 3, 2],
        [0, 1, 2, 3],
        [0, 1, 3, 2],
        [0, 1, 2, 2],
        [0, 1, 3, 2],
        [0, 1, 2, 3],
        [0, 1, 3, 2],
      ],
    });
  });

  test('shares load 1:1 and 3:1 by weight', async () => {
    const { app } = harness({}, smallTable(1));
    const counts = new Map<string, number>();
    for (let call = 0; call < 8; call++) {
      const response = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 1, layer: 0, tokens: [[2, 3]] } });
      const [equal, weighted] = (response.json() as { gpus: number[][] }).gpus[0]!;
      counts.set(`2@${equal}`, (counts.get(`2@${equal}`) ?? 0) + 1);
      counts.set(`3@${weighted}`, (counts.get(`3@${weighted}`) ?? 0) + 1);
    }

    expect(counts.get('2@2')).toBe(4);
    expect(counts.get('2@3')).toBe(4);
    expect(counts.get('3@2')).toBe(6);
    expect(counts.get('3@3')).toBe(2);
  });

  test('answers 409 with the active generation for another generation', async () => {
    const { app } = harness({}, smallTable(3));
    const response = await app.inject({
      method: 'POST',
      url: '/v1/route',
      payload: { generation: 2, sourceGpu: 0, layer: 0, tokens: [[0]] },
    });

    expect(response.statusCode).toBe(409);
    expect(response.json().error).toMatchObject({ code: 'GENERATION_CONFLICT', activeGeneration: 3 });
  });

  const badRoutes = [
    ['layer out of range', { sourceGpu: 0, layer: 1, tokens: [[0]] }, 'OUT_OF_RANGE', 'layer must be a layer'],
    ['GPU out of range', { sourceGpu: 4, layer: 0, tokens: [[0]] }, 'OUT_OF_RANGE', 'sourceGpu'],
    ['expert out of range', { sourceGpu: 0, layer: 0, tokens: [[0], [1, 4]] }, 'OUT_OF_RANGE', 'tokens[1][1]'],
    ['expert as text', { sourceGpu: 0, layer: 0, tokens: [['1']] }, 'BODY_INVALID', 'body/tokens/0/0 must be integer'],
    ['missing layer', { sourceGpu: 0, tokens: [[0]] }, 'BODY_INVALID', "must have required property 'layer'"],
    ['a repeated expert', { sourceGpu: 0, layer: 0, tokens: [[0, 1], [3, 2, 3]] }, 'BODY_INVALID', 'tokens[1] lists expert 3 twice'],
    ['more ids than experts', { sourceGpu: 0, layer: 0, tokens: [[0, 1, 2, 3, 0]] }, 'OUT_OF_RANGE', 'tokens[0] lists 5 expert ids, more than the 4 experts of generation 1'],
  ] as const;

  test.each(badRoutes)('rejects %s and leaves the rotation unchanged', async (_name, payload, code, fragment) => {
    const { app } = harness({}, smallTable(1));
    const response = await app.inject({ method: 'POST', url: '/v1/route', payload });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe(code);
    expect(response.json().error.message).toContain(fragment);
    const next = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[2]] } });
    expect(next.json().gpus).toEqual([[2]]);
  });

  test('answers 503 without an active table', async () => {
    const { app } = harness();
    const response = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[0]] } });

    expect(response.statusCode).toBe(503);
    expect(response.json().error.code).toBe('NO_ACTIVE_TABLE');
  });

  test('routes several layers and GPUs in one batch', async () => {
    const { app } = harness({}, smallTable(1, 2));
    const response = await app.inject({
      method: 'POST',
      url: '/v1/route/batch',
      payload: {
        generation: 1,
        requests: [
          { sourceGpu: 2, layer: 0, tokens: [[0, 1, 3]] },
          { sourceGpu: 1, layer: 1, tokens: [[0, 1]] },
        ],
      },
    });

    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ generation: 1, results: [{ gpus: [[2, 3, 2]] }, { gpus: [[0, 1]] }] });
  });
});

describe('GET /v1/routing-table long-poll', () => {
  test('returns at once when a new generation is installed', async () => {
    const { app } = harness({}, smallTable(1));
    const started = Date.now();
    const poll = app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=10000', headers: { 'if-none-match': '"1"' } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await putTable(app, smallTable(2));

    const response = await poll;

    expect(response.statusCode).toBe(200);
    expect(response.headers.etag).toBe('"2"');
    expect(response.json().generation).toBe(2);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('answers 304 after the wait when nothing changed', async () => {
    const { app } = harness({}, smallTable(1));
    const started = Date.now();
    const response = await app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=100', headers: { 'if-none-match': '"1"' } });

    expect(response.statusCode).toBe(304);
    expect(response.headers.etag).toBe('"1"');
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });

  test('caps the wait at longPollMaxMs', async () => {
    const { app } = harness({ longPollMaxMs: 50 }, smallTable(1));
    const started = Date.now();
    const response = await app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=60000', headers: { 'if-none-match': '"1"' } });

    expect(response.statusCode).toBe(304);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test('answers a stale tag at once with the active table', async () => {
    const { app } = harness({}, smallTable(4));
    const response = await app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=10000', headers: { 'if-none-match': '"3"' } });

    expect(response.statusCode).toBe(200);
    expect(response.json().generation).toBe(4);
  });

  test('waits for the first table when none is active', async () => {
    const { app } = harness();
    const poll = app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=10000' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await putTable(app, smallTable(7));

    expect((await poll).json().generation).toBe(7);
  });

  test('releases waiting polls on close', async () => {
    const { app } = harness({}, smallTable(1));
    await app.ready();
    const started = Date.now();
    const poll = app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=20000', headers: { 'if-none-match': '"1"' } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await app.close();

    expect((await poll).statusCode).toBe(304);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('readiness', () => {
  test('answers 503 before a table and 200 after', async () => {
    const { app } = harness();
    const before = await app.inject({ method: 'GET', url: '/readyz' });
    expect(before.statusCode).toBe(503);
    expect(before.json()).toEqual({ status: 'not ready', generation: null });

    await putTable(app, smallTable(1));
    const after = await app.inject({ method: 'GET', url: '/readyz' });
    expect(after.statusCode).toBe(200);
    expect(after.json()).toEqual({ status: 'ready', generation: 1 });
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
  });
});

describe('activations and stats', () => {
  test('aggregates reported tokens and dispatch tiers into the window', async () => {
    const { app, clock } = harness({}, smallTable(1, 2));
    await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[0, 1, 2]] } });
    const report = await app.inject({
      method: 'POST',
      url: '/v1/activations',
      payload: {
        tokens: [
          [[0, 1], [2, 3]],
          [[0, 2], [2, 3]],
        ],
      },
    });
    expect(report.json()).toEqual({ acceptedTokens: 2 });
    clock.t += 500;

    const response = await app.inject({ method: 'GET', url: '/v1/stats?since=0' });

    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.dispatch).toEqual({ gpu: 1, node: 1, remote: 1 });
    expect(body.complete).toBe(true);
    expect(body.window).toEqual({ startMs: 1_000_000, endMs: 1_000_500 });
    const stats = parseStats(body);
    expect(stats.tokens).toBe(2);
    expect(Array.from(stats.perLayer[0]!.loads)).toEqual([2, 1, 1, 0]);
    expect(Array.from(stats.perLayer[1]!.loads)).toEqual([0, 0, 2, 2]);
    expect(stats.perLayer[1]!.coactivation[2 * 4 + 3]).toBe(2);
  });

  test('returns each report once to a scraper that follows the cursor', async () => {
    const { app, clock } = harness({}, smallTable(1));
    await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[0, 1]]] } });
    clock.t += 100;
    const first = (await app.inject({ method: 'GET', url: '/v1/stats?since=0' })).json();
    await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[2, 3]], [[1, 3]]] } });
    clock.t += 100;

    const second = (await app.inject({ method: 'GET', url: `/v1/stats?since=${first.window.endMs}` })).json();
    const third = (await app.inject({ method: 'GET', url: `/v1/stats?since=${second.window.endMs}` })).json();

    expect(first.tokens).toBe(1);
    expect(second.tokens).toBe(2);
    expect(second.window).toEqual({ startMs: first.window.endMs, endMs: first.window.endMs + 100 });
    expect(third.tokens).toBe(0);
  });

  test('merges pre-aggregated counts', async () => {
    const { app } = harness({}, smallTable(1));
    const accumulator = new StatsAccumulator({ experts: 4, layers: 1, topK: 2 });
    accumulator.add([0, 3]);
    accumulator.add([1, 3]);
    const counts = statsToJson(accumulator.snapshot());

    const report = await app.inject({ method: 'POST', url: '/v1/activations', payload: { counts, dispatch: { gpu: 5, node: 0, remote: 1 } } });
    expect(report.json()).toEqual({ acceptedTokens: 2 });
    const body = (await app.inject({ method: 'GET', url: '/v1/stats' })).json();

    expect(Array.from(parseStats(body).perLayer[0]!.loads)).toEqual([1, 1, 0, 2]);
    expect(body.dispatch).toEqual({ gpu: 5, node: 0, remote: 1 });
  });

  const badReports = [
    ['a token with too few layers', { tokens: [[[0, 1]], []] }, 'tokens[1] must list 1 top-k lists'],
    ['an expert out of range', { tokens: [[[0, 9]]] }, 'tokens[0][0][1] must be an expert id in [0, 4), got 9'],
    ['a repeated expert', { tokens: [[[2, 2]]] }, 'lists expert 2 twice'],
    ['counts of another shape', { counts: statsToJson(new StatsAccumulator({ experts: 5, layers: 1, topK: 2 }).snapshot()) }, 'counts has 1 layers x 5 experts'],
    ['top-k lists of two lengths', { tokens: [[[0, 1]], [[2]]] }, 'tokens[1][0] must list 2 expert ids, as many as tokens[0][0] (top-k), got 1'],
    ['tokens and counts of two top-k', { tokens: [[[0, 1]]], counts: statsToJson(new StatsAccumulator({ experts: 4, layers: 1, topK: 1 }).snapshot()) }, 'tokens list top-2 selections, but counts has topK 1'],
  ] as const;

  test.each(badReports)('rejects %s and counts nothing', async (_name, payload, fragment) => {
    const { app } = harness({}, smallTable(1));
    await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[0, 1]]] } });

    const response = await app.inject({ method: 'POST', url: '/v1/activations', payload });

    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe('STATS_FORMAT');
    expect(response.json().error.message).toContain(fragment);
    expect((await app.inject({ method: 'GET', url: '/v1/stats' })).json().tokens).toBe(1);
  });

  test('answers 404 before any report', async () => {
    const { app } = harness({}, smallTable(1));
    const response = await app.inject({ method: 'GET', url: '/v1/stats?since=0' });

    expect(response.statusCode).toBe(404);
    expect(response.json().error.code).toBe('NO_ACTIVATIONS');
  });
});

describe('GET /metrics', () => {
  test('exposes routing, generation, age and rejection metrics', async () => {
    const { app, clock } = harness({}, smallTable(1));
    const tokens = Array.from({ length: 8 }, () => [0, 1, 2, 3]);
    await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens } });
    await putTable(app, smallTable(1));
    await putTable(app, { ...smallTable(2), experts: 0 });
    await app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 9 } });
    clock.t += 5_000;

    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;

    expect(text).toContain('grace_moe_router_tokens_routed_total{tier="gpu"} 8');
    expect(text).toContain('grace_moe_router_tokens_routed_total{tier="node"} 8');
    expect(text).toContain('grace_moe_router_tokens_routed_total{tier="remote"} 16');
    expect(text).toContain('grace_moe_router_table_generation 1');
    expect(text).toContain('grace_moe_router_table_age_seconds 5');
    expect(text).toContain('grace_moe_router_tables_rejected_total{reason="stale_generation"} 1');
    expect(text).toContain('grace_moe_router_tables_rejected_total{reason="invalid"} 1');
    expect(text).toContain('grace_moe_router_tables_rejected_total{reason="pending_mismatch"} 1');
    expect(text).toMatch(/grace_moe_router_request_duration_seconds_count\{route="\/v1\/route",method="POST",status_code="200"\} 1/);
  });
});

describe('table and state files', () => {
  let folder = '';
  afterEach(async () => {
    if (folder !== '') await rm(folder, { recursive: true, force: true });
  });

  test('recovers the last accepted table from the state file', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const stateFile = join(folder, 'state.json');
    const first = harness({ stateFile }, smallTable(1));
    await putTable(first.app, smallTable(4));
    await putTable(first.app, smallTable(5), 'pending');
    await first.app.inject({ method: 'POST', url: '/v1/routing-table/activate', payload: { generation: 5 } });
    expect(JSON.parse(await readFile(stateFile, 'utf8')).generation).toBe(5);

    const second = harness({ stateFile }, null, () => loadStartupTable({ tableFile: null, stateFile }, silent));

    expect(await activeGeneration(second.app)).toBe(5);
    expect((await routeOnce(second.app)).generation).toBe(5);
  });

  test('serves a placement plan file converted to a routing table', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const tableFile = join(folder, 'plan.json');
    const loads = [new Float64Array(8)];
    const plan = contiguousPlan(loads, { nodes: 2, gpusPerNode: 2, slotsPerGpu: 2 }, { topK: 2, generation: 3 });
    await writeFile(tableFile, JSON.stringify(planToJson(plan)));

    const { app } = harness({ tableFile }, null, () => loadStartupTable({ tableFile, stateFile: null }, silent));
    const response = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[0, 2, 7]] } });

    expect(response.json()).toEqual({ generation: 3, gpus: [[0, 1, 3]] });
  });

  test('starts unready on a corrupt file instead of crashing', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const stateFile = join(folder, 'state.json');
    await writeFile(stateFile, '{"apiVersion": "grace-moe.io/v1alpha1", "kind": "Routing');

    const { app } = harness({ stateFile }, null, () => loadStartupTable({ tableFile: null, stateFile }, silent));

    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
    await putTable(app, smallTable(1));
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  test('prefers the newer of table file and state file', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const tableFile = join(folder, 'table.json');
    const stateFile = join(folder, 'state.json');
    await writeFile(tableFile, JSON.stringify(smallTable(2)));
    await writeFile(stateFile, JSON.stringify(smallTable(6)));

    expect((await loadStartupTable({ tableFile, stateFile }, silent))?.generation).toBe(6);
  });
});

describe('PUT /v1/routing-table with a placement plan', () => {
  test('converts the plan and serves it as a routing table', async () => {
    const { app } = harness({}, smallTable(1));
    const response = await putTable(app, planDocument(2));

    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ generation: 2, phase: 'active' });
    const table = (await app.inject({ method: 'GET', url: '/v1/routing-table' })).json() as RoutingTable;
    expect(table.kind).toBe('RoutingTable');
    expect(table.layers[0]!.map((instances) => instances.map((instance) => instance.gpu))).toEqual([[0], [1], [2], [3]]);
  });

  test('accepts two instances of one expert on one GPU as EPLB plans have them', async () => {
    const { app } = harness();
    const document = planDocument(3);
    document.layers = [{ slots: [[0, 0], [1], [2], [3]], weights: [[1, 1], [1], [1], [1]] }];

    const response = await putTable(app, document, 'pending');

    expect(response.statusCode).toBe(200);
    const pending = (await app.inject({ method: 'GET', url: '/v1/routing-table/pending' })).json() as RoutingTable;
    expect(pending.layers[0]![0]).toEqual([{ gpu: 0, node: 0, weight: 2 }]);
  });
});

describe('deployment shape', () => {
  const deployment = { topology: { nodes: 2, gpusPerNode: 2 }, layers: 1, experts: 4 };

  /** smallTable with its GPUs renumbered onto `nodes` x `gpusPerNode`. */
  function reshaped(nodes: number, gpusPerNode: number, generation: number): RoutingTable {
    const table = smallTable(generation);
    const layers = table.layers.map((layer) =>
      layer.map((instances) => instances.map((instance) => ({ ...instance, node: Math.floor(instance.gpu / gpusPerNode) }))),
    );
    return { ...table, topology: { ...table.topology, nodes, gpusPerNode }, layers };
  }

  const mismatches = [
    ['another topology', { ...deployment }, reshaped(1, 4, 2), 'routing table generation 2 has topology 1x4, but this router serves 2x2 (--topology); push a table for 2x2'],
    ['another layer count', { ...deployment }, smallTable(2, 3), 'routing table generation 2 has 3 layers, but this router serves 1 (--layers)'],
    ['another expert count', { ...deployment, experts: 8 }, smallTable(2), 'routing table generation 2 has 4 experts, but this router serves 8 (--experts)'],
  ] as const;

  test.each(mismatches)('rejects a table of %s with 409', async (_name, shape, table, message) => {
    const { app } = harness({ deployment: shape }, smallTable(1));

    for (const phase of ['active', 'pending']) {
      const response = await putTable(app, table, phase);

      expect(response.statusCode).toBe(409);
      expect(response.json().error).toEqual({ code: 'TABLE_SHAPE_MISMATCH', message });
    }
    expect(await activeGeneration(app)).toBe(1);
    expect((await app.inject({ method: 'GET', url: '/v1/routing-table/pending' })).statusCode).toBe(404);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('grace_moe_router_tables_rejected_total{reason="shape_mismatch"} 2');
  });

  test('accepts a table of the configured shape', async () => {
    const { app } = harness({ deployment }, smallTable(1));

    expect((await putTable(app, smallTable(2))).statusCode).toBe(200);
  });
});

describe('route request limits', () => {
  test('rejects a /v1/route body above the route limit with 413', async () => {
    const { app } = harness({ routeBodyLimitBytes: 1024 }, smallTable(1));
    const tokens = Array.from({ length: 200 }, () => [0, 1, 2, 3]);

    for (const [url, payload] of [
      ['/v1/route', { sourceGpu: 0, layer: 0, tokens }],
      ['/v1/route/batch', { requests: [{ sourceGpu: 0, layer: 0, tokens }] }],
    ] as const) {
      const response = await app.inject({ method: 'POST', url, payload });

      expect(response.statusCode).toBe(413);
      expect(response.json().error).toEqual({
        code: 'BODY_TOO_LARGE',
        message: 'request body is larger than the limit of this route, 1024 bytes; send smaller requests',
      });
    }
    expect((await putTable(app, smallTable(2, 20))).statusCode).toBe(200);
  });

  test('rejects more token lists than --route-max-tokens with 400', async () => {
    const { app } = harness({ routeMaxTokens: 3 }, smallTable(1));
    const single = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[0], [1], [2], [3]] } });
    const batch = await app.inject({
      method: 'POST',
      url: '/v1/route/batch',
      payload: { requests: [{ sourceGpu: 0, layer: 0, tokens: [[0], [1]] }, { sourceGpu: 1, layer: 0, tokens: [[2], [3]] }] },
    });
    const atLimit = await app.inject({ method: 'POST', url: '/v1/route', payload: { sourceGpu: 0, layer: 0, tokens: [[0], [1], [2]] } });

    expect(single.statusCode).toBe(400);
    expect(single.json().error.code).toBe('TOO_MANY_TOKENS');
    expect(single.json().error.message).toContain('the request carries 4 token lists, more than the 3 this router accepts');
    expect(batch.statusCode).toBe(400);
    expect(batch.json().error.code).toBe('TOO_MANY_TOKENS');
    expect(atLimit.statusCode).toBe(200);
  });

  test('answers 415 to a text/plain body', async () => {
    const { app } = harness({}, smallTable(1));
    const response = await app.inject({
      method: 'POST',
      url: '/v1/route',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ sourceGpu: 0, layer: 0, tokens: [[0]] }),
    });

    expect(response.statusCode).toBe(415);
    expect(response.json().error).toEqual({ code: 'UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type "text/plain" for POST /v1/route' });
  });

  test('names the batch entry of a repeated expert', async () => {
    const { app } = harness({}, smallTable(1));
    const response = await app.inject({
      method: 'POST',
      url: '/v1/route/batch',
      payload: { requests: [{ sourceGpu: 0, layer: 0, tokens: [[0, 1]] }, { sourceGpu: 1, layer: 0, tokens: [[2, 2]] }] },
    });

    expect(response.statusCode).toBe(400);
    expect(response.json().error).toEqual({ code: 'BODY_INVALID', message: "requests[1].tokens[0] lists expert 2 twice; a token's expert ids must be distinct" });
  });
});

describe('activation report shapes', () => {
  test('starts a new window when the top-k changes instead of rejecting every later report', async () => {
    const { logger, lines } = capturingLogger();
    const app = buildRouterApp({ logger, registry: new Registry(), clock: { now: () => 1_000 }, options: routerConfigWith(), loadInitialTable: async () => smallTable(1) });
    apps.push(app);

    const topOne = await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[3]]] } });
    const topTwo = await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[0, 1]], [[0, 2]]] } });
    const again = await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[1, 2]]] } });

    expect([topOne.statusCode, topTwo.statusCode, again.statusCode]).toEqual([200, 200, 200]);
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json();
    expect(stats.topK).toBe(2);
    expect(stats.tokens).toBe(3);
    expect(stats.perLayer[0].loads).toEqual([2, 2, 2, 0]);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('grace_moe_router_stats_shape_resets_total 1');
    const warnings = lines.filter((line) => line.msg === 'activation report has another shape; statistics window started anew');
    expect(warnings).toEqual([
      expect.objectContaining({ level: 40, previous: { experts: 4, layers: 1, topK: 1 }, next: { experts: 4, layers: 1, topK: 2 } }),
    ]);
  });

  test('starts a new window when a table with another layer count is active', async () => {
    const { app } = harness({}, smallTable(1));
    await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[0, 1]]] } });
    await putTable(app, smallTable(2, 2));

    const report = await app.inject({ method: 'POST', url: '/v1/activations', payload: { tokens: [[[0, 1], [2, 3]]] } });

    expect(report.statusCode).toBe(200);
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json();
    expect(stats.layers).toBe(2);
    expect(stats.tokens).toBe(1);
  });
});

describe('table metrics and conditional requests', () => {
  test('counts the table installed at start-up under phase active', async () => {
    const { app } = harness({}, smallTable(1));
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;

    expect(text).toContain('grace_moe_router_tables_installed_total{phase="active"} 1');
    expect(text).toContain('grace_moe_router_tables_installed_total{phase="pending"} 0');
  });

  test('exposes the installed-tables series at 0 before any table', async () => {
    const { app } = harness();
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;

    expect(text).toContain('grace_moe_router_tables_installed_total{phase="active"} 0');
    expect(text).toContain('grace_moe_router_stats_shape_resets_total 0');
  });

  test('answers If-None-Match: * with 304 while a table is active', async () => {
    const { app } = harness({}, smallTable(3));
    const started = Date.now();
    const response = await app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=10000', headers: { 'if-none-match': '*' } });

    expect(response.statusCode).toBe(304);
    expect(response.headers.etag).toBe('"3"');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('serves the first table to If-None-Match: * when none was active', async () => {
    const { app } = harness();
    const none = await app.inject({ method: 'GET', url: '/v1/routing-table', headers: { 'if-none-match': '*' } });
    const poll = app.inject({ method: 'GET', url: '/v1/routing-table?waitMs=10000', headers: { 'if-none-match': '*' } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await putTable(app, smallTable(4));

    expect(none.statusCode).toBe(404);
    expect((await poll).json().generation).toBe(4);
  });
});

describe('start-up files', () => {
  let folder = '';
  afterEach(async () => {
    if (folder !== '') await rm(folder, { recursive: true, force: true });
  });

  test('skips a state file whose generation does not fit in u32', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const tableFile = join(folder, 'table.json');
    const stateFile = join(folder, 'state.json');
    await writeFile(tableFile, JSON.stringify(smallTable(2)));
    await writeFile(stateFile, JSON.stringify(smallTable(2 ** 32)));
    const { logger, lines } = capturingLogger();

    const table = await loadStartupTable({ tableFile, stateFile }, logger);

    expect(table?.generation).toBe(2);
    expect(lines.filter((line) => line.msg === 'ignoring unusable routing table file')).toEqual([
      expect.objectContaining({
        file: stateFile,
        role: 'state',
        code: 'TABLE_FILE_INVALID',
        reason: `${stateFile}: invalid plan: generation: must be an integer in [0, 4294967295] (the engine wire format stores it as u32), got 4294967296`,
      }),
    ]);
  });

  test('skips a table file of another topology than the deployment', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const tableFile = join(folder, 'table.json');
    await writeFile(tableFile, JSON.stringify(smallTable(2)));
    const { logger, lines } = capturingLogger();

    const table = await loadStartupTable(
      { tableFile, stateFile: null, deployment: { topology: { nodes: 1, gpusPerNode: 8 }, layers: null, experts: null } },
      logger,
    );

    expect(table).toBeNull();
    expect(lines.find((line) => line.msg === 'ignoring unusable routing table file')?.code).toBe('TABLE_SHAPE_MISMATCH');
  });

  test('logs a missing table file with the cause once', async () => {
    folder = await mkdtemp(join(tmpdir(), 'grace-router-'));
    const tableFile = join(folder, 'missing.json');
    const { logger, lines } = capturingLogger();

    await loadStartupTable({ tableFile, stateFile: null }, logger);

    const line = lines.find((entry) => entry.msg === 'ignoring unusable routing table file');
    expect(line?.reason).toBe(`${tableFile}: cannot read the file: no such file or directory (ENOENT)`);
    expect(JSON.stringify(line).match(/ENOENT/g)).toHaveLength(1);
  });
});

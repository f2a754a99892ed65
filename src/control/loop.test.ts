import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { contiguousPlan } from '../baselines/contiguous.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from '../evaluator/cost-model.js';
import { clusteredTokens, statsOf } from '../planner/test-helpers.js';
import type { RoutingTable } from '../routing/types.js';
import type { ActivationStats } from '../stats/types.js';
import { ControlLoop, type ControlLoopOptions, type RebalanceMode, type RoundReport } from './loop.js';
import { createControlMetrics } from './metrics.js';
import type { Readiness, ScrapedWindow, WorkerClient, WorkerEndpoint } from './worker-client.js';

const cost: CostModel = { model: MODEL_SHAPES['deepseek-v2-lite']!, hardware: hardwarePreset('a100-25gbe') };
const topology = { nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 };
const shape = { experts: 16, layers: 3, topK: 2 };
const tokens = clusteredTokens({ ...shape, tokens: 800, clusterSize: 4, skew: 0.8, seed: 3 });

/** Statistics of tokens [start, end) of the clustered token set. */
const windowOf = (start: number, end: number): ActivationStats => statsOf(shape.experts, shape.topK, tokens.slice(start, end));
const FIRST_HALF = windowOf(0, 400);
const SECOND_HALF = windowOf(400, 800);
const FEW = windowOf(0, 40);

const INITIAL = contiguousPlan(FIRST_HALF.perLayer.map((layer) => layer.loads), topology, { topK: shape.topK, generation: 1 });

const HALF_LIFE_MS = 10_000;

function options(mode: RebalanceMode): ControlLoopOptions {
  return {
    mode,
    intervalMs: 1_000,
    halfLifeMs: HALF_LIFE_MS,
    minGain: 0.01,
    maxMovesPerRound: 1_000,
    minTokens: 100,
    readinessTimeoutMs: 1_000,
    pollIntervalMs: 100,
    dispatch: 'hierarchical',
    cost,
  };
}

/** A worker whose scrapes and staging return results from scripts. The last entry of a script repeats. */
class ScriptedWorker implements WorkerClient {
  readonly endpoint: WorkerEndpoint;
  readonly sinceArgs: (number | null)[] = [];
  readonly staged: number[] = [];
  readonly activated: number[] = [];
  dropPendingCalls = 0;
  dropUnusedCalls = 0;
  stageAnswers: (Error | undefined)[] = [undefined];

  constructor(
    node: number,
    public windows: (ScrapedWindow | Error)[],
  ) {
    this.endpoint = { node, routerUrl: `http://router-${node}`, engineUrl: `http://engine-${node}` };
  }

  scrapeStats(sinceMs: number | null): Promise<ScrapedWindow> {
    this.sinceArgs.push(sinceMs);
    const next = takeScripted(this.windows);
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }

  stageTable(table: RoutingTable): Promise<void> {
    this.staged.push(table.generation);
    const answer = takeScripted(this.stageAnswers);
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve();
  }

  activate(generation: number): Promise<void> {
    this.activated.push(generation);
    return Promise.resolve();
  }

  dropPending(): Promise<void> {
    this.dropPendingCalls += 1;
    return Promise.resolve();
  }

  loadInstances(): Promise<void> {
    return Promise.resolve();
  }

  readiness(): Promise<Readiness> {
    return Promise.resolve({ ready: true, missing: 0 });
  }

  dropUnused(): Promise<void> {
    this.dropUnusedCalls += 1;
    return Promise.resolve();
  }
}

/** Takes the first entry of a script, keeping the last one for every later call. */
function takeScripted<T>(script: T[]): T {
  return (script.length > 1 ? script.shift() : script[0]) as T;
}

const windowAt = (stats: ActivationStats | null, cursorMs: number): ScrapedWindow => ({ stats, cursorMs });

interface LogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly fields: object;
  readonly message: string;
}

function setup(mode: RebalanceMode, workers: ScriptedWorker[]) {
  const registry = new Registry();
  const metrics = createControlMetrics(registry);
  const logs: LogEntry[] = [];
  const reported: RoundReport[] = [];
  const clock = { nowMs: 1_700_000_000_000 };
  const loop = new ControlLoop(INITIAL, options(mode), {
    workers: () => workers,
    now: () => clock.nowMs,
    sleep: (ms) => {
      clock.nowMs += ms;
      return Promise.resolve();
    },
    log: {
      info: (fields, message) => logs.push({ level: 'info', fields, message }),
      warn: (fields, message) => logs.push({ level: 'warn', fields, message }),
      error: (fields, message) => logs.push({ level: 'error', fields, message }),
    },
    metrics,
    onRound: (report) => reported.push(report),
  });
  /** Reads the value of one sample line of the registry's text, or null when the line is missing. */
  const metric = async (sample: string): Promise<number | null> => {
    const text = await registry.metrics();
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `));
    return line === undefined ? null : Number(line.slice(sample.length + 1));
  };
  return { loop, clock, logs, reported, metric };
}

describe('ControlLoop', () => {
  test('Off mode never scrapes', async () => {
    const worker = new ScriptedWorker(0, [windowAt(FIRST_HALF, 1)]);
    const { loop, metric } = setup('Off', [worker]);

    const report = await loop.round();

    expect(report.outcome).toBe('off');
    expect(report.candidateGeneration).toBeNull();
    expect(worker.sinceArgs).toEqual([]);
    expect(worker.staged).toEqual([]);
    expect(await metric('grace_moe_control_rounds_total{outcome="off"}')).toBe(1);
  });

  test('too few tokens gives no-data', async () => {
    const workers = [new ScriptedWorker(0, [windowAt(FEW, 1)]), new ScriptedWorker(1, [windowAt(FEW, 1)])];
    const { loop, metric } = setup('Auto', workers);

    const report = await loop.round();

    expect(report.outcome).toBe('no-data');
    expect(report.tokens).toBe(80);
    expect(report.reason).toBe('80 smoothed tokens, fewer than the 100 needed to plan');
    expect(report.candidateGeneration).toBeNull();
    expect(report.predictedGain).toBeNull();
    for (const worker of workers) expect(worker.staged).toEqual([]);
    expect(await metric('grace_moe_control_rounds_total{outcome="no-data"}')).toBe(1);
  });

  test('no statistics yet gives no-data', async () => {
    const worker = new ScriptedWorker(0, [windowAt(null, 0)]);
    const { loop } = setup('Auto', [worker]);

    const report = await loop.round();

    expect(report.outcome).toBe('no-data');
    expect(report.tokens).toBe(0);
  });

  test('Observe mode plans without staging', async () => {
    const workers = [new ScriptedWorker(0, [windowAt(FIRST_HALF, 1)]), new ScriptedWorker(1, [windowAt(SECOND_HALF, 1)])];
    const { loop, metric } = setup('Observe', workers);

    const first = await loop.round();
    const second = await loop.round();

    expect(first.outcome).toBe('observed');
    expect(first.tokens).toBe(800);
    expect(first.candidateGeneration).toBe(2);
    expect(first.predictedGain).toBeGreaterThan(0);
    expect(first.predictedTimeMs?.next).toBeLessThan(first.predictedTimeMs?.active ?? 0);
    expect(first.moves).toBeGreaterThan(0);
    expect(first.rollout).toBeNull();
    // Observe rounds do not use up generation numbers.
    expect(second.outcome).toBe('observed');
    expect(second.candidateGeneration).toBe(2);
    expect(loop.activePlan.generation).toBe(1);
    for (const worker of workers) {
      expect(worker.staged).toEqual([]);
      expect(worker.activated).toEqual([]);
    }
    expect(await metric('grace_moe_control_rounds_total{outcome="observed"}')).toBe(2);
    expect(await metric('grace_moe_control_predicted_gain_ratio')).toBeCloseTo(second.predictedGain ?? NaN, 12);
  });

  test('Auto mode applies a better plan', async () => {
    const workers = [new ScriptedWorker(0, [windowAt(FIRST_HALF, 1)]), new ScriptedWorker(1, [windowAt(SECOND_HALF, 1)])];
    const { loop, reported, metric } = setup('Auto', workers);

    const report = await loop.round();

    expect(report.outcome).toBe('applied');
    expect(report.activeGeneration).toBe(2);
    expect(report.candidateGeneration).toBe(2);
    expect(report.rollout?.ok).toBe(true);
    expect(report.rollout?.switchedNodes).toEqual([0, 1]);
    expect(loop.activePlan.generation).toBe(2);
    expect(loop.activePlan.strategy).not.toBe('contiguous');
    for (const worker of workers) {
      expect(worker.staged).toEqual([2]);
      expect(worker.activated).toEqual([2]);
      expect(worker.dropUnusedCalls).toBe(1);
      expect(worker.dropPendingCalls).toBe(0);
    }
    expect(reported).toEqual([report]);
    expect(loop.history).toEqual([report]);
    expect(await metric('grace_moe_control_rounds_total{outcome="applied"}')).toBe(1);
    expect(await metric('grace_moe_control_rollouts_total{outcome="succeeded"}')).toBe(1);
    expect(await metric('grace_moe_control_active_generation')).toBe(2);
    expect(await metric('grace_moe_control_rollout_steps_total{step="cleanup"}')).toBe(1);
  });

  test('failed rollout keeps generation 1 and retries', async () => {
    const workers = [new ScriptedWorker(0, [windowAt(FIRST_HALF, 1)]), new ScriptedWorker(1, [windowAt(SECOND_HALF, 1)])];
    workers[1]!.stageAnswers = [new Error('router answered 500'), undefined];
    const { loop, logs, metric } = setup('Auto', workers);

    const failed = await loop.round();

    expect(failed.outcome).toBe('failed');
    expect(failed.activeGeneration).toBe(1);
    expect(failed.rollout?.generation).toBe(2);
    expect(failed.rollout?.failedStep).toBe('stage');
    expect(failed.reason).toBe('staging failed: node 1: router answered 500');
    expect(loop.activePlan.generation).toBe(1);
    for (const worker of workers) {
      expect(worker.dropPendingCalls).toBe(1);
      expect(worker.activated).toEqual([]);
    }
    expect(await metric('grace_moe_control_active_generation')).toBe(1);
    expect(await metric('grace_moe_control_rollouts_total{outcome="aborted"}')).toBe(1);
    expect(logs.some((entry) => entry.level === 'warn' && entry.message === 'rollout aborted')).toBe(true);

    const retried = await loop.round();

    expect(retried.outcome).toBe('applied');
    expect(retried.rollout?.generation).toBe(3);
    expect(retried.activeGeneration).toBe(3);
    expect(loop.activePlan.generation).toBe(3);
    for (const worker of workers) {
      expect(worker.staged).toEqual([2, 3]);
      expect(worker.activated).toEqual([3]);
    }
    expect(await metric('grace_moe_control_rounds_total{outcome="failed"}')).toBe(1);
    expect(await metric('grace_moe_control_rounds_total{outcome="applied"}')).toBe(1);
  });

  test('scrapes pass the previous cursor', async () => {
    const workers = [
      new ScriptedWorker(0, [windowAt(FEW, 1_000), windowAt(FEW, 2_000), windowAt(FEW, 3_000)]),
      new ScriptedWorker(1, [windowAt(FEW, 1_500), windowAt(null, 1_500), windowAt(FEW, 2_500)]),
    ];
    const { loop } = setup('Observe', workers);

    for (let round = 0; round < 3; round++) await loop.round();

    expect(workers[0]!.sinceArgs).toEqual([null, 1_000, 2_000]);
    expect(workers[1]!.sinceArgs).toEqual([null, 1_500, 1_500]);
  });

  test('failed scrape is skipped and counted', async () => {
    const workers = [
      new ScriptedWorker(0, [windowAt(FIRST_HALF, 1_000), windowAt(SECOND_HALF, 2_000)]),
      new ScriptedWorker(1, [new Error('connect ECONNREFUSED'), windowAt(SECOND_HALF, 5_000)]),
    ];
    const { loop, clock, logs, metric } = setup('Observe', workers);

    const first = await loop.round();

    expect(first.outcome).toBe('observed');
    expect(first.tokens).toBe(400);
    expect(await metric('grace_moe_control_scrape_errors_total')).toBe(1);
    const warning = logs.find((entry) => entry.message === 'statistics scrape failed');
    expect(warning?.level).toBe('warn');
    expect(warning?.fields).toMatchObject({ node: 1 });

    clock.nowMs += HALF_LIFE_MS;
    const second = await loop.round();

    // The failed worker has no cursor yet, so it is asked from the start again.
    expect(workers[1]!.sinceArgs).toEqual([null, null]);
    expect(workers[0]!.sinceArgs).toEqual([null, 1_000]);
    expect(second.tokens).toBeCloseTo(400 * 0.5 + 400 + 400, 9);
    expect(await metric('grace_moe_control_scrape_errors_total')).toBe(1);
  });

  test('smoothing decays from the last window', async () => {
    const worker = new ScriptedWorker(0, [windowAt(FIRST_HALF, 1), windowAt(null, 1), windowAt(SECOND_HALF, 2)]);
    const { loop, clock } = setup('Observe', [worker]);

    const first = await loop.round();
    clock.nowMs += HALF_LIFE_MS;
    const quiet = await loop.round();
    clock.nowMs += HALF_LIFE_MS;
    const third = await loop.round();

    expect(first.tokens).toBe(400);
    // A round without new tokens keeps the estimate as it was.
    expect(quiet.tokens).toBe(400);
    expect(third.tokens).toBeCloseTo(400 * 0.25 + 400, 9);
  });

  test('run stops when the signal aborts', async () => {
    const controller = new AbortController();
    const logs: string[] = [];
    const sleeps: number[] = [];
    const loop = new ControlLoop(INITIAL, options('Off'), {
      workers: () => [],
      now: () => 0,
      // The third sleep comes after two rounds, so aborting there must end the loop before a third.
      sleep: (ms) => {
        sleeps.push(ms);
        if (sleeps.length === 3) controller.abort();
        return Promise.resolve();
      },
      log: { info: (_fields, message) => logs.push(message), warn: () => undefined, error: () => undefined },
    });

    await loop.run(controller.signal);

    expect(loop.history.map((report) => report.round)).toEqual([1, 2]);
    expect(sleeps).toEqual([1_000, 1_000, 1_000]);
    expect(logs.at(-1)).toBe('control loop stopped');
  });
});

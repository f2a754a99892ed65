import { describe, expect, test } from 'vitest';
import { contiguousPlan } from '../baselines/contiguous.js';
import { routingTableFromPlan } from '../routing/table.js';
import type { RoutingTable } from '../routing/types.js';
import { rollout, type RolloutStep } from './rollout.js';
import type { Readiness, ScrapedWindow, WorkerClient, WorkerEndpoint } from './worker-client.js';

const GENERATION = 7;
const TABLE: RoutingTable = routingTableFromPlan(
  contiguousPlan([new Float64Array(4)], { nodes: 2, gpusPerNode: 1, slotsPerGpu: 3 }, { topK: 1, generation: GENERATION }),
);

/** One result of a scripted call: a value to return, or an error to throw. */
type Scripted<T> = T | Error;

/**
 * A worker that records every call in a log shared by all workers, as "call node", and returns
 * results from scripts. A script's last entry repeats once the earlier ones are used up.
 */
class FakeWorker implements WorkerClient {
  readonly endpoint: WorkerEndpoint;
  stageAnswers: Scripted<void>[] = [undefined];
  loadAnswers: Scripted<void>[] = [undefined];
  readinessAnswers: Scripted<Readiness>[] = [{ ready: true, missing: 0 }];
  activateAnswers: Scripted<void>[] = [undefined];
  readonly stagedTables: RoutingTable[] = [];

  constructor(
    node: number,
    private readonly log: string[],
  ) {
    this.endpoint = { node, routerUrl: `http://router-${node}`, engineUrl: `http://engine-${node}` };
  }

  scrapeStats(): Promise<ScrapedWindow> {
    return Promise.reject(new Error('a rollout never scrapes'));
  }

  stageTable(table: RoutingTable): Promise<void> {
    this.stagedTables.push(table);
    return this.answer('stage', this.stageAnswers);
  }

  activate(generation: number): Promise<void> {
    return this.answer(`activate ${generation}`, this.activateAnswers);
  }

  dropPending(): Promise<void> {
    return this.answer('dropPending', [undefined]);
  }

  loadInstances(generation: number): Promise<void> {
    return this.answer(`load ${generation}`, this.loadAnswers);
  }

  readiness(generation: number): Promise<Readiness> {
    return this.answer(`readiness ${generation}`, this.readinessAnswers);
  }

  dropUnused(generation: number): Promise<void> {
    return this.answer(`dropUnused ${generation}`, [undefined]);
  }

  /** Count of logged calls of this worker whose name starts with `call`. */
  calls(call: string): number {
    return this.log.filter((entry) => entry.startsWith(call) && entry.endsWith(` node ${this.endpoint.node}`)).length;
  }

  private async answer<T>(call: string, script: Scripted<T>[]): Promise<T> {
    this.log.push(`${call} node ${this.endpoint.node}`);
    const next = script.length > 1 ? script.shift() : script[0];
    if (next instanceof Error) throw next;
    return next as T;
  }
}

/** Creates a clock that moves only when the code under test sleeps, so timeouts pass in microseconds. */
function virtualTime(log: string[]) {
  let nowMs = 1_000_000;
  return {
    now: () => nowMs,
    sleep: (ms: number) => {
      log.push(`sleep ${ms}`);
      nowMs += ms;
      return Promise.resolve();
    },
  };
}

function setup(workerCount = 2) {
  const log: string[] = [];
  const workers = Array.from({ length: workerCount }, (_, node) => new FakeWorker(node, log));
  const steps: RolloutStep[] = [];
  const time = virtualTime(log);
  const deps = { ...time, onStep: (step: RolloutStep) => steps.push(step) };
  return { log, workers, steps, deps };
}

const OPTIONS = { readinessTimeoutMs: 1_000, pollIntervalMs: 100 };

/** Index of the first and last log entries that start with `prefix`. */
function span(log: readonly string[], prefix: string): { first: number; last: number } {
  const indices = log.flatMap((entry, index) => (entry.startsWith(prefix) ? [index] : []));
  return { first: indices[0] ?? -1, last: indices[indices.length - 1] ?? -1 };
}

describe('rollout', () => {
  test('runs every step on every worker in order', async () => {
    const { log, workers, steps, deps } = setup();
    workers[1]!.readinessAnswers = [{ ready: false, missing: 5 }, { ready: false, missing: 2 }, { ready: true, missing: 0 }];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(true);
    expect(outcome.failedStep).toBeNull();
    expect(outcome.generation).toBe(GENERATION);
    expect(outcome.switchedNodes).toEqual([0, 1]);
    expect(outcome.durationMs).toBe(200);
    expect(steps).toEqual(['stage', 'load', 'ready', 'switch', 'cleanup']);
    expect(log).toEqual([
      'stage node 0',
      'stage node 1',
      `load ${GENERATION} node 0`,
      `load ${GENERATION} node 1`,
      `readiness ${GENERATION} node 0`,
      `readiness ${GENERATION} node 1`,
      'sleep 100',
      `readiness ${GENERATION} node 1`,
      'sleep 100',
      `readiness ${GENERATION} node 1`,
      `activate ${GENERATION} node 0`,
      `activate ${GENERATION} node 1`,
      `dropUnused ${GENERATION} node 0`,
      `dropUnused ${GENERATION} node 1`,
    ]);
    for (const worker of workers) expect(worker.stagedTables).toEqual([TABLE]);
  });

  test('stage failure drops pending everywhere', async () => {
    const { log, workers, steps, deps } = setup(3);
    workers[1]!.stageAnswers = [new Error('router answered 400 PLAN_INVALID')];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(false);
    expect(outcome.failedStep).toBe('stage');
    expect(outcome.reason).toBe('staging failed: node 1: router answered 400 PLAN_INVALID');
    expect(outcome.switchedNodes).toEqual([]);
    expect(steps).toEqual(['stage']);
    for (const worker of workers) {
      expect(worker.calls('dropPending')).toBe(1);
      expect(worker.calls('load')).toBe(0);
      expect(worker.calls('activate')).toBe(0);
      expect(worker.calls('dropUnused')).toBe(0);
    }
    expect(span(log, 'dropPending').first).toBeGreaterThan(span(log, 'stage').last);
  });

  test('load failure aborts at load', async () => {
    const { workers, deps } = setup();
    workers[0]!.loadAnswers = [new Error('connect ECONNREFUSED')];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.failedStep).toBe('load');
    expect(outcome.reason).toBe('loading instances failed: node 0: connect ECONNREFUSED');
    for (const worker of workers) {
      expect(worker.calls('dropPending')).toBe(1);
      expect(worker.calls('readiness')).toBe(0);
      expect(worker.calls('activate')).toBe(0);
    }
  });

  test('worker never ready aborts after timeout', async () => {
    const { log, workers, steps, deps } = setup();
    workers[1]!.readinessAnswers = [{ ready: false, missing: 3 }];
    const started = performance.now();

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(performance.now() - started).toBeLessThan(500);
    expect(outcome.ok).toBe(false);
    expect(outcome.failedStep).toBe('ready');
    expect(outcome.reason).toBe(`workers not ready for generation ${GENERATION} within 1000 ms: node 1: 3 instances still loading`);
    expect(outcome.durationMs).toBe(1_000);
    expect(steps).toEqual(['stage', 'load', 'ready']);
    // Polled at 0, 100, ..., 1000 ms of virtual time: 11 times, the first one together with node 0.
    expect(workers[1]!.calls('readiness')).toBe(11);
    expect(workers[0]!.calls('readiness')).toBe(1);
    expect(log.filter((entry) => entry === 'sleep 100')).toHaveLength(10);
    for (const worker of workers) {
      expect(worker.calls('dropPending')).toBe(1);
      expect(worker.calls('activate')).toBe(0);
      expect(worker.calls('dropUnused')).toBe(0);
    }
  });

  test('shutdown cancels a rollout waiting for readiness', async () => {
    const { workers, deps } = setup();
    workers[1]!.readinessAnswers = [{ ready: false, missing: 3 }];
    const shutdown = new AbortController();
    let sleeps = 0;
    const sleep = async (ms: number) => {
      sleeps++;
      if (sleeps === 2) shutdown.abort();
      await deps.sleep(ms);
    };

    const outcome = await rollout(workers, TABLE, OPTIONS, { ...deps, sleep, signal: shutdown.signal });

    expect(outcome.ok).toBe(false);
    expect(outcome.failedStep).toBe('ready');
    expect(outcome.reason).toBe(`rollout of generation ${GENERATION} cancelled by shutdown`);
    expect(outcome.durationMs).toBe(200);
    for (const worker of workers) {
      expect(worker.calls('dropPending')).toBe(1);
      expect(worker.calls('activate')).toBe(0);
    }
  });

  test('throwing readiness counts as not ready', async () => {
    const { workers, deps } = setup();
    workers[0]!.readinessAnswers = [new Error('fetch failed'), new Error('fetch failed'), { ready: true, missing: 0 }];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(true);
    expect(outcome.durationMs).toBe(200);
    expect(workers[0]!.calls('readiness')).toBe(3);
    expect(workers[1]!.calls('readiness')).toBe(1);
    for (const worker of workers) expect(worker.calls('dropPending')).toBe(0);
  });

  test('readiness that always throws names the error', async () => {
    const { workers, deps } = setup();
    workers[0]!.readinessAnswers = [new Error('fetch failed')];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.failedStep).toBe('ready');
    expect(outcome.reason).toContain('node 0: fetch failed');
    expect(outcome.reason).not.toContain('node 1');
    for (const worker of workers) expect(worker.calls('activate')).toBe(0);
  });

  test('activate failing once still succeeds', async () => {
    const { log, workers, steps, deps } = setup();
    workers[1]!.activateAnswers = [new Error('answered 409 PENDING_MISMATCH'), undefined];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(true);
    expect(outcome.failedStep).toBeNull();
    expect(outcome.switchedNodes).toEqual([0, 1]);
    expect(steps).toEqual(['stage', 'load', 'ready', 'switch', 'cleanup']);
    expect(workers[0]!.calls('activate')).toBe(1);
    expect(workers[1]!.calls('activate')).toBe(2);
    expect(log.slice(span(log, 'activate').first)).toEqual([
      `activate ${GENERATION} node 0`,
      `activate ${GENERATION} node 1`,
      'sleep 100',
      `activate ${GENERATION} node 1`,
      `dropUnused ${GENERATION} node 0`,
      `dropUnused ${GENERATION} node 1`,
    ]);
    for (const worker of workers) expect(worker.calls('dropPending')).toBe(0);
  });

  test('switch that never completes keeps switched routers', async () => {
    const { workers, deps } = setup();
    workers[1]!.activateAnswers = [new Error('connect ECONNREFUSED')];

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(false);
    expect(outcome.failedStep).toBe('switch');
    expect(outcome.switchedNodes).toEqual([0]);
    expect(outcome.reason).toBe(
      `switch incomplete, 1 of 2 routers serve generation ${GENERATION}: node 1: connect ECONNREFUSED`,
    );
    for (const worker of workers) {
      expect(worker.calls('dropPending')).toBe(0);
      expect(worker.calls('dropUnused')).toBe(0);
    }
  });

  test('failed cleanup still succeeds with a note', async () => {
    const { workers, deps } = setup();
    workers[0]!.dropUnused = () => Promise.reject(new Error('engine answered 500'));

    const outcome = await rollout(workers, TABLE, OPTIONS, deps);

    expect(outcome.ok).toBe(true);
    expect(outcome.reason).toBe(
      `generation ${GENERATION} active on 2 workers; dropping unused instances failed (harmless, retried next rollout): node 0: engine answered 500`,
    );
  });
});

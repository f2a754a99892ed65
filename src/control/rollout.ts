/**
 * Make-before-break rollout of a routing table over every worker.
 *
 * 1. Stage: every router gets the table as pending; every engine loads the instances the table
 *    puts on its node into free (headroom) slots while the old generation keeps serving.
 * 2. Switch: once every engine reports ready for the generation, every router activates it.
 * 3. Clean up: every engine drops the instances the new generation no longer uses.
 *
 * A worker that fails to stage, or does not report ready within the timeout, aborts the rollout:
 * pending tables are dropped everywhere and the old generation stays active. A failed switch on
 * some routers is retried until the timeout; the routers already switched keep the new generation.
 */
import type { RoutingTable } from '../routing/types.js';
import type { WorkerClient } from './worker-client.js';

export type RolloutStep = 'stage' | 'load' | 'ready' | 'switch' | 'cleanup';

export interface RolloutOutcome {
  readonly generation: number;
  readonly ok: boolean;
  /** The step that failed, when not ok. */
  readonly failedStep: RolloutStep | null;
  readonly reason: string;
  readonly durationMs: number;
  /** Nodes whose router switched to the generation. */
  readonly switchedNodes: readonly number[];
}

export interface RolloutDeps {
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** Cancels the rollout at its next wait: pending tables are dropped and the old generation stays. */
  readonly signal?: AbortSignal;
  /** Called at the start of every step, for logs and metrics. */
  readonly onStep?: (step: RolloutStep, generation: number) => void;
}

export interface RolloutOptions {
  readonly readinessTimeoutMs: number;
  readonly pollIntervalMs: number;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs `step` on every worker in parallel; returns the failures as "node N: message". */
async function onAll(workers: readonly WorkerClient[], step: (worker: WorkerClient) => Promise<unknown>): Promise<string[]> {
  const results = await Promise.allSettled(workers.map(step));
  return results.flatMap((result, i) =>
    result.status === 'rejected' ? [`node ${workers[i].endpoint.node}: ${messageOf(result.reason)}`] : [],
  );
}

/** Rolls `table` out over `workers`; see the module header. */
export async function rollout(
  workers: readonly WorkerClient[],
  table: RoutingTable,
  options: RolloutOptions,
  deps: RolloutDeps,
): Promise<RolloutOutcome> {
  const started = deps.now();
  const generation = table.generation;
  const result = (ok: boolean, failedStep: RolloutStep | null, reason: string, switchedNodes: readonly number[] = []): RolloutOutcome => ({
    generation,
    ok,
    failedStep,
    reason,
    durationMs: deps.now() - started,
    switchedNodes,
  });
  const abort = async (step: RolloutStep, reason: string): Promise<RolloutOutcome> => {
    await onAll(workers, (worker) => worker.dropPending());
    return result(false, step, reason);
  };

  if (deps.signal?.aborted) return result(false, 'stage', `rollout of generation ${generation} cancelled by shutdown`);
  deps.onStep?.('stage', generation);
  const staged = await onAll(workers, (worker) => worker.stageTable(table));
  if (staged.length > 0) return abort('stage', `staging failed: ${staged.join('; ')}`);

  deps.onStep?.('load', generation);
  const loading = await onAll(workers, (worker) => worker.loadInstances(generation));
  if (loading.length > 0) return abort('load', `loading instances failed: ${loading.join('; ')}`);

  deps.onStep?.('ready', generation);
  const deadline = started + options.readinessTimeoutMs;
  let waiting = [...workers];
  let lastProblem = '';
  while (waiting.length > 0) {
    const checks = await Promise.allSettled(waiting.map((worker) => worker.readiness(generation)));
    const stillWaiting: WorkerClient[] = [];
    const problems: string[] = [];
    checks.forEach((check, i) => {
      const worker = waiting[i];
      if (check.status === 'rejected') {
        stillWaiting.push(worker);
        problems.push(`node ${worker.endpoint.node}: ${messageOf(check.reason)}`);
      } else if (!check.value.ready) {
        stillWaiting.push(worker);
        problems.push(`node ${worker.endpoint.node}: ${check.value.missing} instances still loading`);
      }
    });
    waiting = stillWaiting;
    lastProblem = problems.join('; ');
    if (waiting.length === 0) break;
    if (deps.now() >= deadline) {
      return abort('ready', `workers not ready for generation ${generation} within ${options.readinessTimeoutMs} ms: ${lastProblem}`);
    }
    if (deps.signal?.aborted) return abort('ready', `rollout of generation ${generation} cancelled by shutdown`);
    await deps.sleep(options.pollIntervalMs).catch(() => undefined);
    if (deps.signal?.aborted) return abort('ready', `rollout of generation ${generation} cancelled by shutdown`);
  }

  deps.onStep?.('switch', generation);
  const switched: number[] = [];
  let toSwitch = [...workers];
  while (toSwitch.length > 0) {
    const results = await Promise.allSettled(toSwitch.map((worker) => worker.activate(generation)));
    const failed: WorkerClient[] = [];
    const problems: string[] = [];
    results.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled') switched.push(toSwitch[i].endpoint.node);
      else {
        failed.push(toSwitch[i]);
        problems.push(`node ${toSwitch[i].endpoint.node}: ${messageOf(outcome.reason)}`);
      }
    });
    toSwitch = failed;
    if (toSwitch.length === 0) break;
    if (deps.now() >= deadline || deps.signal?.aborted) {
      return result(false, 'switch', `switch incomplete, ${switched.length} of ${workers.length} routers serve generation ${generation}: ${problems.join('; ')}`, switched);
    }
    await deps.sleep(options.pollIntervalMs).catch(() => undefined);
  }

  deps.onStep?.('cleanup', generation);
  const cleanup = await onAll(workers, (worker) => worker.dropUnused(generation));
  const note = cleanup.length > 0 ? `; dropping unused instances failed (harmless, retried next rollout): ${cleanup.join('; ')}` : '';
  return result(true, null, `generation ${generation} active on ${workers.length} workers${note}`, switched.sort((a, b) => a - b));
}

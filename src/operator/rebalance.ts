/**
 * One control loop per MoEDeployment whose rebalance mode is Observe or Auto and whose workers are
 * ready. The loop scrapes the deployment's routers through an endpoint resolver: pod DNS names in
 * a cluster, or an explicit map of loopback addresses in tests. It pushes new plans to the routers
 * and engines itself, and the reconciler then publishes the active plan in the ConfigMap, so a
 * restarted router recovers it. A loop restarts when its settings or the plan's topology change.
 */
import { ControlLoop, CONTROL_DEFAULTS, type LoopLogger, type RoundReport } from '../control/loop.js';
import type { ControlMetrics } from '../control/metrics.js';
import { HttpWorkerClient, type WorkerClient, type WorkerEndpoint } from '../control/worker-client.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from '../evaluator/cost-model.js';
import type { Plan } from '../plan/types.js';
import { childNames, contentHash } from './children.js';
import type { MoEDeployment } from './crd.js';
import type { RebalanceState } from './status.js';
import type { ResolvedSpec } from './validate.js';

/** Maps a deployment's worker pods to router and engine URLs. */
export type EndpointResolver = (owner: MoEDeployment, spec: ResolvedSpec) => readonly WorkerEndpoint[];

/** Pod DNS names behind the headless Service: <statefulset>-<ordinal>.<service>.<namespace>.svc. */
export function clusterDnsResolver(owner: MoEDeployment, spec: ResolvedSpec): readonly WorkerEndpoint[] {
  const names = childNames(owner.metadata.name);
  const namespace = owner.metadata.namespace ?? 'default';
  return Array.from({ length: spec.nodes }, (_, node) => {
    const host = `${names.statefulSet}-${node}.${names.service}.${namespace}.svc`;
    return { node, routerUrl: `http://${host}:${spec.routerPort}`, engineUrl: `http://${host}:${spec.enginePort}` };
  });
}

export interface RebalanceManagerDeps {
  readonly resolver: EndpointResolver;
  /** Asks for a reconcile of the deployment, after a round changed what its status shows. */
  readonly enqueue: (key: string) => void;
  readonly log: LoopLogger;
  readonly metrics?: ControlMetrics;
  readonly now: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly workerTimeoutMs?: number;
  /** Builds the worker clients; tests may wrap them. */
  readonly clientFor?: (endpoint: WorkerEndpoint) => WorkerClient;
}

interface Entry {
  readonly settingsHash: string;
  readonly loop: ControlLoop;
  readonly stop: AbortController;
  readonly done: Promise<void>;
  rolloutInProgress: boolean;
  lastReport: RoundReport | null;
}

function costFor(spec: ResolvedSpec): CostModel {
  const base = MODEL_SHAPES['deepseek-v2-lite'];
  return { model: { ...base, name: 'spec', hiddenSize: spec.hiddenSize }, hardware: hardwarePreset(spec.hardwarePreset) };
}

export class RebalanceManager {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly deps: RebalanceManagerDeps) {}

  /** Returns the plan the loop of `key` has rolled out, or null when no loop runs. */
  activePlan(key: string): Plan | null {
    return this.entries.get(key)?.loop.activePlan ?? null;
  }

  /** Starts, keeps or stops the loop of `key`; returns what the status should show. */
  sync(key: string, owner: MoEDeployment, spec: ResolvedSpec, plan: Plan, workersReady: boolean): RebalanceState {
    const settingsHash = contentHash({
      mode: spec.mode,
      intervalSeconds: spec.intervalSeconds,
      halfLifeSeconds: spec.halfLifeSeconds,
      minGain: spec.minGain,
      maxMovesPerRound: spec.maxMovesPerRound,
      dispatch: spec.dispatch,
      hardwarePreset: spec.hardwarePreset,
      topology: plan.topology,
      nodes: spec.nodes,
      uid: owner.metadata.uid,
    });
    const existing = this.entries.get(key);
    if (spec.mode === 'Off' || !workersReady) {
      if (existing) this.stop(key);
      return this.state(spec, null);
    }
    if (existing && existing.settingsHash === settingsHash) return this.state(spec, existing);
    if (existing) this.stop(key);

    const endpoints = this.deps.resolver(owner, spec);
    const clients = endpoints.map((endpoint) => this.deps.clientFor?.(endpoint) ?? new HttpWorkerClient(endpoint, { timeoutMs: this.deps.workerTimeoutMs ?? 10_000 }));
    const stop = new AbortController();
    const entry: Entry = {
      settingsHash,
      stop,
      rolloutInProgress: false,
      lastReport: null,
      loop: new ControlLoop(
        plan,
        {
          ...CONTROL_DEFAULTS,
          mode: spec.mode,
          intervalMs: spec.intervalSeconds * 1000,
          halfLifeMs: spec.halfLifeSeconds * 1000,
          minGain: spec.minGain,
          maxMovesPerRound: spec.maxMovesPerRound,
          dispatch: spec.dispatch,
          cost: costFor(spec),
        },
        {
          workers: () => clients,
          now: this.deps.now,
          sleep: this.deps.sleep,
          log: this.deps.log,
          ...(this.deps.metrics ? { metrics: this.deps.metrics } : {}),
          onRolloutStart: () => {
            entry.rolloutInProgress = true;
            this.deps.enqueue(key);
          },
          onRound: (report) => {
            entry.rolloutInProgress = false;
            entry.lastReport = report;
            this.deps.enqueue(key);
          },
        },
      ),
      done: Promise.resolve(),
    };
    (entry as { done: Promise<void> }).done = entry.loop.run(stop.signal);
    this.entries.set(key, entry);
    this.deps.log.info({ key, mode: spec.mode, workers: endpoints.length }, 'rebalance loop started');
    return this.state(spec, entry);
  }

  /** Runs one round of the loop of `key` now (tests and manual triggers). */
  async roundNow(key: string): Promise<RoundReport | null> {
    const entry = this.entries.get(key);
    return entry ? entry.loop.round() : null;
  }

  stop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.stop.abort();
    this.entries.delete(key);
    this.deps.log.info({ key }, 'rebalance loop stopped');
  }

  /** Stops every loop and waits for them to end. */
  async stopAll(): Promise<void> {
    const running = [...this.entries.values()];
    for (const entry of running) entry.stop.abort();
    this.entries.clear();
    await Promise.all(running.map((entry) => entry.done));
  }

  private state(spec: ResolvedSpec, entry: Entry | null): RebalanceState {
    const report = entry?.lastReport ?? null;
    const lastRebalance = report
      ? {
          time: new Date(report.atMs).toISOString(),
          outcome: report.outcome,
          reason: report.reason,
          ...(report.predictedGain !== null ? { predictedGain: report.predictedGain } : {}),
          generation: report.activeGeneration,
        }
      : undefined;
    return {
      mode: spec.mode,
      rolloutInProgress: entry?.rolloutInProgress ?? false,
      ...(lastRebalance ? { lastRebalance } : {}),
      lastFailed: report?.outcome === 'failed',
    };
  }
}

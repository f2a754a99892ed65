/**
 * `grace-moe local`: the whole system on this machine. It starts one router and one engine per
 * simulated node, serves a contiguous plan as generation 1, runs the control loop against the
 * routers and engines, and replays a trace through the engines for the run's duration. Every
 * batch result from the engines is measured per generation and per second.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contiguousPlan } from '../baselines/contiguous.js';
import { ControlLoop, type ControlLoopOptions, type LoopLogger, type RoundReport } from '../control/loop.js';
import type { ControlMetrics } from '../control/metrics.js';
import { HttpWorkerClient } from '../control/worker-client.js';
import { drive, type DriveReport } from '../driver/drive.js';
import { planToJson } from '../plan/json.js';
import { createRandom } from '../random.js';
import type { Topology } from '../topology.js';
import { domainOf, subsetTrace } from '../trace/split.js';
import type { Trace } from '../trace/types.js';
import { RunAccounting, type GenerationSummary, type TimelinePoint } from './accounting.js';
import { LocalCluster, type LocalClusterOptions } from './cluster.js';

export type TraceOrder = 'mixed' | 'file';

export interface LocalRunOptions {
  readonly trace: Trace;
  readonly topology: Topology;
  readonly durationMs: number;
  readonly rateTokensPerSecond: number;
  readonly batchTokens: number;
  readonly concurrency: number;
  readonly order: TraceOrder;
  readonly control: ControlLoopOptions;
  readonly cluster: Omit<LocalClusterOptions, 'nodes' | 'gpusPerNode' | 'tableFile' | 'stateDir'>;
  readonly signal: AbortSignal;
  readonly log: LoopLogger;
  readonly metrics?: ControlMetrics;
  /** Called about once per second with the measurements of the last few seconds. */
  readonly onProgress?: (progress: LocalProgress) => void;
  /** Called when the cluster is up, with it (fault tests kill processes through it). */
  readonly onClusterReady?: (cluster: LocalCluster, loop: ControlLoop) => void;
}

export interface LocalProgress {
  readonly elapsedMs: number;
  readonly durationMs: number;
  readonly generation: number;
  readonly recent: TimelinePoint | null;
  readonly tokensPerSecond: number;
  readonly requests: { readonly sent: number; readonly completed: number; readonly failed: number };
}

export interface LocalResult {
  readonly topology: Topology;
  readonly trace: { readonly name: string; readonly model: string; readonly order: TraceOrder };
  readonly durationMs: number;
  readonly generations: readonly GenerationSummary[];
  readonly requests: { readonly sent: number; readonly completed: number; readonly failed: number };
  readonly rounds: readonly RoundReport[];
  readonly timeline: readonly TimelinePoint[];
  readonly drive: DriveReport;
}

/**
 * Orders whole requests: 'file' keeps the trace order (its domains one after another, a workload
 * shift), 'mixed' shuffles requests with a fixed seed so every domain is present all along.
 */
export function orderTrace(trace: Trace, order: TraceOrder): Trace {
  if (order === 'file') return trace;
  const tokensOfRequest = new Map<number, number[]>();
  for (let t = 0; t < trace.tokens; t++) {
    const request = trace.requestOfToken[t];
    const list = tokensOfRequest.get(request);
    if (list) list.push(t);
    else tokensOfRequest.set(request, [t]);
  }
  const requests = [...tokensOfRequest.keys()];
  const random = createRandom(7);
  for (let i = requests.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [requests[i], requests[j]] = [requests[j], requests[i]];
  }
  return subsetTrace(trace, requests.flatMap((request) => tokensOfRequest.get(request) ?? []));
}

/** Domains in the order a trace presents them, for reports. */
export function domainsInOrder(trace: Trace): string[] {
  const seen: string[] = [];
  for (const id of trace.requestIds) {
    const domain = domainOf(id);
    if (!seen.includes(domain)) seen.push(domain);
  }
  return seen;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs a local deployment; see the module header. Always stops every process it started. */
export async function runLocal(options: LocalRunOptions): Promise<LocalResult> {
  const { topology } = options;
  const trace = orderTrace(options.trace, options.order);
  const dir = await mkdtemp(join(tmpdir(), 'grace-moe-local-'));
  const initial = contiguousPlan(
    Array.from({ length: trace.meta.layers }, () => new Float64Array(trace.meta.experts)),
    topology,
    { topK: trace.meta.topK, generation: 1 },
  );
  const tableFile = join(dir, 'plan.json');
  await writeFile(tableFile, JSON.stringify(planToJson(initial)));

  let cluster: LocalCluster | null = null;
  const stopLoop = new AbortController();
  const stopDrive = new AbortController();
  const onAbort = (): void => {
    stopDrive.abort();
    stopLoop.abort();
  };
  options.signal.addEventListener('abort', onAbort, { once: true });
  let progressTimer: NodeJS.Timeout | undefined;
  try {
    cluster = await LocalCluster.start({ ...options.cluster, nodes: topology.nodes, gpusPerNode: topology.gpusPerNode, tableFile, stateDir: dir });
    const workers = cluster.endpoints.map((endpoint) => new HttpWorkerClient(endpoint, { timeoutMs: 10_000 }));
    const startMs = Date.now();
    const accounting = new RunAccounting(options.cluster.hiddenSize * 2, startMs);
    accounting.nameGeneration(1, initial.strategy);
    const loop = new ControlLoop(initial, options.control, {
      workers: () => workers,
      now: () => Date.now(),
      sleep: abortableSleep,
      log: options.log,
      ...(options.metrics ? { metrics: options.metrics } : {}),
      onRound: (report) => {
        if (report.outcome === 'applied') accounting.nameGeneration(report.activeGeneration, loop.activePlan.strategy);
      },
    });
    options.onClusterReady?.(cluster, loop);

    const looping = loop.run(stopLoop.signal);
    progressTimer = setInterval(() => {
      const elapsedMs = Date.now() - startMs;
      const recent = accounting.recent(Date.now(), 5);
      options.onProgress?.({
        elapsedMs,
        durationMs: options.durationMs,
        generation: loop.activePlan.generation,
        recent,
        tokensPerSecond: recent ? recent.tokens / 6 : 0,
        requests: { ...accounting.requests },
      });
    }, 1000);

    const report = await drive(
      {
        engines: cluster.endpoints.map((endpoint) => endpoint.engineUrl),
        trace,
        offset: 0,
        tokens: Math.ceil((options.rateTokensPerSecond * options.durationMs) / 1000),
        rateTokensPerSecond: options.rateTokensPerSecond,
        batchTokens: options.batchTokens,
        concurrency: options.concurrency,
        maxDurationMs: options.durationMs,
        requestTimeoutMs: 60_000,
        signal: stopDrive.signal,
        wrap: true,
        runId: 'local',
        onBatch: (outcome) => accounting.add(outcome),
      },
      { now: () => Date.now() },
    );
    stopLoop.abort();
    await looping;

    return {
      topology,
      trace: { name: trace.meta.name, model: trace.meta.model, order: options.order },
      durationMs: Date.now() - startMs,
      generations: accounting.summaries(),
      requests: { ...accounting.requests },
      rounds: loop.history,
      timeline: accounting.timeline(),
      drive: report,
    };
  } finally {
    clearInterval(progressTimer);
    options.signal.removeEventListener('abort', onAbort);
    stopLoop.abort();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

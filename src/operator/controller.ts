/**
 * The controller runtime: it turns watches of the primary kind and its children into calls of
 * one Reconciler, in the manner of controller-runtime.
 *
 * Every replica runs the informers, so its caches stay warm. Every event is mapped to the key
 * "namespace/name" of a primary object: a primary event to its own key, a child event to its
 * owner's key. The key goes into a work queue, never the event. Only the leader runs workers, and
 * only after every informer has listed once. A worker calls `reconcile(key, signal)`. A result
 * with requeueAfterMs brings the key back after that delay. A TerminalReconcileError is logged
 * and the key is dropped until its next event. Any other error is logged and the key is retried
 * with per-key exponential backoff.
 *
 * When `signal` aborts, the runtime stops the informers, lets in-flight reconciles finish (for up
 * to shutdownTimeoutMs, then aborts their signals) and releases the lease. When leadership is
 * lost, it aborts in-flight reconciles at once, because another replica may already be
 * reconciling, and stops. The caller should then exit so that the pod restarts and campaigns again.
 */
import { performance } from 'node:perf_hooks';
import type { KubeConfig } from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import { OPERATOR_DEFAULTS, type OperatorConfig } from '../config/operator.js';
import { GROUP, KIND } from './crd.js';
import { Informer, kubeListWatch } from './informer.js';
import { KubeClient, RESOURCES, type ResourceDescriptor } from './kube-client.js';
import {
  keyString,
  TerminalReconcileError,
  type KubeObject,
  type KubeWriter,
  type ObjectCache,
  type ObjectKey,
  type Reconciler,
} from './kube-types.js';
import { kubeLeaseStore, LeaderElector, type LeaderElectorOptions } from './leader-election.js';
import { createOperatorMetrics } from './metrics.js';
import { systemScheduler, type BackoffPolicy, type Scheduler } from './timers.js';
import { WorkQueue, type WorkOutcome } from './work-queue.js';

/** One watched kind. `name` keys its cache in ControllerRuntime.caches and labels its metrics. */
export interface WatchedKind<N extends string = string> {
  readonly name: N;
  readonly resource: ResourceDescriptor;
  /** Restricts the watch, such as "app.kubernetes.io/managed-by=grace-moe". */
  readonly labelSelector?: string;
  /**
   * Returns the keys of the primary objects that an event on `object` concerns. Required for a
   * child kind; the primary kind maps every object to its own key and ignores it.
   */
  readonly mapToPrimary?: (object: KubeObject) => readonly ObjectKey[];
}

export interface LeaderElectionSettings {
  /** Namespace of the Lease: the operator's own. */
  readonly namespace: string;
  readonly leaseName: string;
  /** Unique per process; see leaderIdentity. */
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
}

/** Timings of the informers, the queue and shutdown; runtimeTuning derives them from the operator configuration. */
export interface RuntimeTuning {
  readonly idleTimeoutMs: number;
  readonly watchTimeoutSeconds: number;
  /** Backoff of a failed list or watch. */
  readonly watchBackoff: BackoffPolicy;
  /** Backoff of a failed reconcile, per key. */
  readonly retryBackoff: BackoffPolicy;
  readonly requestTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
}

type TuningSettings = Pick<
  OperatorConfig,
  'idleTimeoutMs' | 'watchTimeoutSeconds' | 'retryBaseMs' | 'retryCapMs' | 'watchRetryCapMs' | 'retryJitterRatio' | 'requestTimeoutMs' | 'shutdownTimeoutMs'
>;

/** Returns the runtime timings of an operator configuration; a failed watch retries from the same base delay as a reconcile. */
export function runtimeTuning(config: TuningSettings): RuntimeTuning {
  return Object.freeze({
    idleTimeoutMs: config.idleTimeoutMs,
    watchTimeoutSeconds: config.watchTimeoutSeconds,
    watchBackoff: Object.freeze({
      baseMs: Math.min(config.retryBaseMs, config.watchRetryCapMs),
      capMs: config.watchRetryCapMs,
      jitterRatio: config.retryJitterRatio,
    }),
    retryBackoff: Object.freeze({ baseMs: config.retryBaseMs, capMs: config.retryCapMs, jitterRatio: config.retryJitterRatio }),
    requestTimeoutMs: config.requestTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
  });
}

/** Timings used for any that ControllerOptions.tuning leaves out: those of OPERATOR_DEFAULTS. */
export const DEFAULT_TUNING: RuntimeTuning = runtimeTuning(OPERATOR_DEFAULTS);

/** Returns the leader-election settings of an operator configuration, or null when it is off. */
export function leaderElectionSettings(config: OperatorConfig, identity: string): LeaderElectionSettings | null {
  if (!config.leaderElection || config.leaseNamespace === null) return null;
  return {
    namespace: config.leaseNamespace,
    leaseName: config.leaseName,
    identity,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: config.renewDeadlineMs,
    retryPeriodMs: config.retryPeriodMs,
  };
}

/** Dependencies of a reconciler: a read-only cache per watched kind and the writer. */
export interface ControllerRuntime<K extends string> {
  readonly caches: Readonly<Record<K, ObjectCache>>;
  readonly writer: KubeWriter;
  /** The client behind the writer, for reads and writes the KubeWriter does not cover. */
  readonly client: KubeClient;
}

export interface ControllerOptions<P extends string, C extends string> {
  readonly kubeConfig: KubeConfig;
  /** Namespace to watch, or null for all namespaces. */
  readonly namespace: string | null;
  /** The reconciler, or a function that builds it from the caches and writer. */
  readonly reconciler: Reconciler | ((runtime: ControllerRuntime<P | C>) => Reconciler);
  readonly primary: WatchedKind<P>;
  readonly children: readonly WatchedKind<C>[];
  /** Reconciles that run at once. */
  readonly workers: number;
  /** null runs without leader election: this process reconciles as soon as its caches synced. */
  readonly leaderElection: LeaderElectionSettings | null;
  readonly logger: FastifyBaseLogger;
  /** Registry the runtime's metrics are registered on; register them once per registry. */
  readonly registry: Registry;
  /** Aborting it shuts the controller down gracefully. */
  readonly signal: AbortSignal;
  readonly tuning?: Partial<RuntimeTuning>;
  readonly scheduler?: Scheduler;
  readonly random?: () => number;
}

export type ControllerStopReason = 'shutdown' | 'leadership-lost';

export interface ControllerStop {
  readonly reason: ControllerStopReason;
  /** False when in-flight reconciles had to be aborted. */
  readonly drained: boolean;
}

export interface ControllerReadiness {
  /** True once every informer listed once. */
  readonly synced: boolean;
  /** True while this process holds the lease (always, without leader election). */
  readonly leader: boolean;
  /** Holder identity of this process, or null without leader election. */
  readonly identity: string | null;
}

export interface ControllerHandle<K extends string> extends ControllerRuntime<K> {
  readiness(): ControllerReadiness;
  /** Queues a reconcile of `key`, for work outside the watched objects (a control loop round). */
  enqueue(key: ObjectKey): void;
  /** Settles once the controller stopped: after `signal` aborted, or when leadership was lost. Never rejects. */
  readonly done: Promise<ControllerStop>;
}

/** Names of the kinds moeDeploymentKinds watches. */
export type MoEChildKindName = 'statefulsets' | 'services' | 'configmaps' | 'poddisruptionbudgets' | 'pods';

/**
 * Returns the key of the MoEDeployment that controls `object`: the target of its ownerReference
 * with controller=true and kind MoEDeployment in the grace-moe.io group, or else the value of the
 * label `ownerNameLabel` (a name in the object's namespace). Returns an empty list when neither exists.
 */
export function moeDeploymentOwnerKeys(object: KubeObject, ownerNameLabel?: string): readonly ObjectKey[] {
  const namespace = object.metadata.namespace ?? '';
  const owner = object.metadata.ownerReferences?.find(
    (reference) => reference.controller === true && reference.kind === KIND && reference.apiVersion.split('/')[0] === GROUP,
  );
  if (owner !== undefined) {
    return [{ namespace, name: owner.name }];
  }
  const labelled = ownerNameLabel === undefined ? undefined : object.metadata.labels?.[ownerNameLabel];
  return labelled === undefined || labelled === '' ? [] : [{ namespace, name: labelled }];
}

/**
 * Returns the primary kind (MoEDeployments) and the children the operator watches. A child event
 * maps to its controlling MoEDeployment, else to the one named by the label `ownerNameLabel`.
 * Pods are owned by their StatefulSet, not by the MoEDeployment, so they are mapped by the label
 * alone and only pods that carry it are watched.
 */
export function moeDeploymentKinds(ownerNameLabel: string): {
  readonly primary: WatchedKind<'moedeployments'>;
  readonly children: readonly WatchedKind<MoEChildKindName>[];
} {
  const mapToPrimary = (object: KubeObject): readonly ObjectKey[] => moeDeploymentOwnerKeys(object, ownerNameLabel);
  return {
    primary: { name: 'moedeployments', resource: RESOURCES.moeDeployments },
    children: [
      { name: 'statefulsets', resource: RESOURCES.statefulSets, mapToPrimary },
      { name: 'services', resource: RESOURCES.services, mapToPrimary },
      { name: 'configmaps', resource: RESOURCES.configMaps, mapToPrimary },
      { name: 'poddisruptionbudgets', resource: RESOURCES.podDisruptionBudgets, mapToPrimary },
      { name: 'pods', resource: RESOURCES.pods, labelSelector: ownerNameLabel, mapToPrimary },
    ],
  };
}

/**
 * Cluster nodes as a cache only (for GPU capacity checks): node events reconcile nothing. Watching
 * nodes needs cluster-wide list and watch permission on them.
 */
export const NODE_CACHE_KIND: WatchedKind<'nodes'> = Object.freeze({ name: 'nodes', resource: RESOURCES.nodes, mapToPrimary: () => [] });

/** Splits a queue key "namespace/name" into an ObjectKey. */
export function parseKey(key: string): ObjectKey {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/**
 * Starts the informers, leader election and workers described in the module header. Returns at
 * once with the caches and writer, and `done` settles when the controller has stopped.
 */
export function runController<P extends string, C extends string>(options: ControllerOptions<P, C>): ControllerHandle<P | C> {
  const tuning: RuntimeTuning = { ...DEFAULT_TUNING, ...options.tuning };
  const scheduler = options.scheduler ?? systemScheduler;
  const random = options.random ?? Math.random;
  const log = options.logger;
  const kinds: readonly WatchedKind<P | C>[] = [options.primary, ...options.children];
  checkKinds(kinds);

  const metrics = createOperatorMetrics(options.registry, kinds.map((kind) => kind.name));
  const identity = options.leaderElection?.identity ?? null;
  const client = new KubeClient({
    kubeConfig: options.kubeConfig,
    logger: log,
    resources: uniqueResources([...Object.values(RESOURCES), ...kinds.map((kind) => kind.resource)]),
    onRequest: (verb) => metrics.countApiRequest(verb),
    requestTimeoutMs: tuning.requestTimeoutMs,
    eventSource: { controller: `${GROUP}/operator`, instance: identity ?? 'grace-moe-operator' },
  });

  const queue = new WorkQueue({
    concurrency: options.workers,
    backoff: tuning.retryBackoff,
    scheduler,
    random,
    onUnexpectedError: (key, error) => log.error({ err: error, key }, 'reconcile worker failed; retrying'),
  });
  metrics.observeQueue(() => ({ depth: queue.depth, inFlight: queue.inFlight }));

  const informers = kinds.map(
    (kind) =>
      new Informer({
        name: kind.name,
        source: kubeListWatch(client, kind.resource, options.namespace ?? undefined, kind.labelSelector),
        logger: log,
        idleTimeoutMs: tuning.idleTimeoutMs,
        watchTimeoutSeconds: tuning.watchTimeoutSeconds,
        backoff: tuning.watchBackoff,
        scheduler,
        random,
        onRestart: (reason) => metrics.countWatchRestart(kind.name, reason),
      }),
  );
  informers.forEach((informer, index) => {
    const kind = kinds[index] as WatchedKind<P | C>;
    const mapToPrimary = index === 0 ? primaryKey : (kind.mapToPrimary ?? (() => []));
    informer.addHandler((event) => {
      const keys = new Set<string>();
      for (const key of mapToPrimary(event.object)) keys.add(keyString(key));
      if (event.type === 'update') {
        for (const key of mapToPrimary(event.oldObject)) keys.add(keyString(key));
      }
      for (const key of keys) queue.add(key);
    });
  });

  const caches = Object.fromEntries(kinds.map((kind, index) => [kind.name, informers[index]])) as unknown as Record<P | C, ObjectCache>;
  const runtime: ControllerRuntime<P | C> = { caches, writer: client, client };
  const reconciler = typeof options.reconciler === 'function' ? options.reconciler(runtime) : options.reconciler;

  const processKey = async (key: string, signal: AbortSignal): Promise<WorkOutcome> => {
    const objectKey = parseKey(key);
    const startedAt = performance.now();
    try {
      const result = await reconciler.reconcile(objectKey, signal);
      metrics.reconcileDuration.observe((performance.now() - startedAt) / 1000);
      const requeueAfterMs = result.requeueAfterMs;
      if (requeueAfterMs !== undefined && requeueAfterMs > 0) {
        metrics.reconcileTotal.inc({ result: 'requeue' });
        return { kind: 'requeue', delayMs: requeueAfterMs };
      }
      metrics.reconcileTotal.inc({ result: 'success' });
      return { kind: 'done' };
    } catch (error) {
      metrics.reconcileDuration.observe((performance.now() - startedAt) / 1000);
      if (signal.aborted) {
        log.warn({ err: error, ...objectKey }, 'reconcile aborted by shutdown');
        return { kind: 'drop' };
      }
      if (error instanceof TerminalReconcileError) {
        metrics.reconcileTotal.inc({ result: 'terminal' });
        log.error({ err: error, ...objectKey }, 'reconcile failed permanently; not retrying until the object changes');
        return { kind: 'drop' };
      }
      metrics.reconcileTotal.inc({ result: 'error' });
      log.error({ err: error, ...objectKey, failures: queue.failureCount(key) + 1 }, 'reconcile failed; retrying with backoff');
      return { kind: 'retry' };
    }
  };

  const electorOptions =
    options.leaderElection === null
      ? null
      : {
          store: kubeLeaseStore(client, options.leaderElection.namespace, options.leaderElection.leaseName),
          identity: options.leaderElection.identity,
          leaseDurationMs: options.leaderElection.leaseDurationMs,
          renewDeadlineMs: options.leaderElection.renewDeadlineMs,
          retryPeriodMs: options.leaderElection.retryPeriodMs,
          logger: log,
          scheduler,
          random,
        };

  let leading = false;
  const readiness = (): ControllerReadiness => ({
    synced: informers.every((informer) => informer.hasSynced()),
    leader: leading,
    identity,
  });

  const done = supervise({
    signal: options.signal,
    informers,
    queue,
    electorOptions,
    processKey,
    tuning,
    log,
    setLeader: (value) => {
      leading = value;
      metrics.leader.set(value ? 1 : 0);
    },
    workers: options.workers,
    namespace: options.namespace,
  });
  const enqueue = (key: ObjectKey): void => queue.add(keyString(key));
  return { ...runtime, readiness, enqueue, done };
}

interface SupervisorParts {
  readonly signal: AbortSignal;
  readonly informers: readonly Informer[];
  readonly queue: WorkQueue;
  /** Options of the leader elector without its callbacks, or null without leader election. */
  readonly electorOptions: Omit<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading'> | null;
  readonly processKey: (key: string, signal: AbortSignal) => Promise<WorkOutcome>;
  readonly tuning: RuntimeTuning;
  readonly log: FastifyBaseLogger;
  readonly setLeader: (leading: boolean) => void;
  readonly workers: number;
  readonly namespace: string | null;
}

/** Runs the controller until the signal aborts or leadership is lost, then shuts it down in order. */
async function supervise(parts: SupervisorParts): Promise<ControllerStop> {
  const { log, queue, informers } = parts;
  const stopInformers = new AbortController();
  const stopElection = new AbortController();
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  parts.signal.addEventListener('abort', onSignal, { once: true });
  if (parts.signal.aborted) stop.abort();

  log.info(
    {
      namespace: parts.namespace ?? 'all',
      kinds: informers.map((informer) => informer.name),
      workers: parts.workers,
      leaderElection: parts.electorOptions !== null,
    },
    'controller starting',
  );
  const informerRuns = Promise.all(informers.map((informer) => informer.run(stopInformers.signal)));

  const startWorkers = async (): Promise<void> => {
    const synced = await Promise.all(informers.map((informer) => informer.waitForSync(stop.signal)));
    if (!synced.every(Boolean) || stop.signal.aborted) return;
    log.info({ workers: parts.workers }, 'caches synced; workers starting');
    queue.start(parts.processKey);
  };

  let reason = 'shutdown' as ControllerStopReason;
  let electionRun: Promise<unknown> = Promise.resolve();
  if (parts.electorOptions === null) {
    parts.setLeader(true);
    void startWorkers();
  } else {
    const elector = new LeaderElector({
      ...parts.electorOptions,
      onStartedLeading: () => {
        parts.setLeader(true);
        void startWorkers();
      },
      onStoppedLeading: (end) => {
        parts.setLeader(false);
        if (end === 'lost') {
          reason = 'leadership-lost';
          stop.abort();
        }
      },
    });
    electionRun = elector.run(stopElection.signal);
  }

  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    else stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  parts.signal.removeEventListener('abort', onSignal);
  log.info({ reason }, 'controller stopping');

  stopInformers.abort();
  const drained = await queue.shutdown(reason === 'leadership-lost' ? { abortInFlight: true } : { timeoutMs: parts.tuning.shutdownTimeoutMs });
  await informerRuns;
  stopElection.abort();
  await electionRun;
  parts.setLeader(false);
  log.info({ reason, drained }, 'controller stopped');
  return { reason, drained };
}

function primaryKey(object: KubeObject): readonly ObjectKey[] {
  return [{ namespace: object.metadata.namespace ?? '', name: object.metadata.name }];
}

function checkKinds(kinds: readonly WatchedKind[]): void {
  const names = new Set<string>();
  kinds.forEach((kind, index) => {
    if (names.has(kind.name)) {
      throw new RangeError(`watched kind names must be unique, got "${kind.name}" twice`);
    }
    names.add(kind.name);
    if (index > 0 && kind.mapToPrimary === undefined) {
      throw new RangeError(`the child kind "${kind.name}" needs mapToPrimary to find the primary object its events concern`);
    }
  });
}

function uniqueResources(resources: readonly ResourceDescriptor[]): ResourceDescriptor[] {
  const byType = new Map<string, ResourceDescriptor>();
  for (const resource of resources) byType.set(`${resource.group}/${resource.version}/${resource.kind}`, resource);
  return [...byType.values()];
}

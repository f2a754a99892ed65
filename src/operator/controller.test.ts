import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { operatorConfigWith } from '../config/operator.js';
import {
  DEFAULT_TUNING,
  leaderElectionSettings,
  moeDeploymentKinds,
  moeDeploymentOwnerKeys,
  parseKey,
  runController,
  runtimeTuning,
  type ControllerHandle,
  type ControllerOptions,
  type MoEChildKindName,
} from './controller.js';
import { FakeApiServer } from './fake-api-server.js';
import { RESOURCES } from './kube-client.js';
import { keyString, TerminalReconcileError, type KubeObject, type ObjectKey, type ReconcileResult } from './kube-types.js';
import { ManualScheduler, settle, waitFor } from './manual-scheduler.js';

const OWNER_LABEL = 'grace-moe.io/deployment';
const KINDS = moeDeploymentKinds(OWNER_LABEL);

type Kind = 'moedeployments' | MoEChildKindName;
type ReconcileFunction = (key: ObjectKey, signal: AbortSignal) => Promise<ReconcileResult>;

function moe(name: string, namespace = 'ml'): KubeObject {
  return { apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', metadata: { name, namespace }, spec: { workers: { nodes: 2 } } };
}

function ownedStatefulSet(name: string, owner: string): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: {
      name,
      namespace: 'ml',
      ownerReferences: [{ apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', name: owner, uid: 'u', controller: true }],
    },
  };
}

interface Started {
  readonly handle: ControllerHandle<Kind>;
  readonly calls: string[];
  readonly logs: Record<string, unknown>[];
  readonly registry: Registry;
  readonly stop: AbortController;
}

let server: FakeApiServer;
let scheduler: ManualScheduler;
let started: Started[];

beforeEach(async () => {
  server = await FakeApiServer.start();
  scheduler = new ManualScheduler();
  started = [];
});

afterEach(async () => {
  for (const entry of started) entry.stop.abort();
  await Promise.all(started.map((entry) => entry.handle.done));
  await server.close();
});

function start(reconcile: ReconcileFunction, overrides: Partial<ControllerOptions<'moedeployments', MoEChildKindName>> = {}): Started {
  const calls: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const registry = new Registry();
  const stop = new AbortController();
  const handle = runController({
    kubeConfig: server.kubeConfig(),
    namespace: 'ml',
    reconciler: {
      reconcile: (key, signal) => {
        calls.push(keyString(key));
        return reconcile(key, signal);
      },
    },
    primary: KINDS.primary,
    children: KINDS.children,
    workers: 2,
    leaderElection: null,
    logger,
    registry,
    signal: stop.signal,
    scheduler,
    random: () => 0,
    ...overrides,
  });
  const entry = { handle, calls, logs, registry, stop };
  started.push(entry);
  return entry;
}

const succeed: ReconcileFunction = async () => ({});

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((entry) => entry.name === name);
  const value = metric?.values.find((entry) => Object.entries(labels).every(([label, expected]) => entry.labels[label] === expected));
  return value?.value;
}

describe('runController', () => {
  test('reconciles each primary once after sync', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    server.put(RESOURCES.moeDeployments, moe('b'));
    server.put(RESOURCES.moeDeployments, moe('elsewhere', 'other'));
    server.put(RESOURCES.statefulSets, ownedStatefulSet('a-workers', 'a'));
    const seen: { synced: boolean; statefulSets: number }[] = [];
    const ref: { handle?: ControllerHandle<Kind> } = {};
    const entry = start(async () => {
      seen.push({ synced: ref.handle?.readiness().synced ?? false, statefulSets: ref.handle?.caches.statefulsets.list().length ?? -1 });
      return {};
    });
    ref.handle = entry.handle;

    await waitFor('two reconciles', () => entry.calls.length === 2);
    await settle();

    expect(entry.calls.sort()).toEqual(['ml/a', 'ml/b']);
    expect(seen).toEqual([
      { synced: true, statefulSets: 1 },
      { synced: true, statefulSets: 1 },
    ]);
    expect(entry.handle.readiness()).toEqual({ synced: true, leader: true, identity: null });
    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'success' })).toBe(2);
    expect(await metricValue(entry.registry, 'grace_moe_operator_leader')).toBe(1);
  });

  test('maps child events to the owning MoEDeployment', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const entry = start(succeed);
    await waitFor('the first reconcile', () => entry.calls.length === 1);
    await waitFor('all watches', () => server.openWatches(RESOURCES.pods) === 1);

    server.put(RESOURCES.statefulSets, ownedStatefulSet('a-workers', 'a'));
    await waitFor('the reconcile for the StatefulSet', () => entry.calls.length === 2);
    server.put(RESOURCES.pods, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a-workers-0', namespace: 'ml', labels: { [OWNER_LABEL]: 'a' } } });
    await waitFor('the reconcile for the Pod', () => entry.calls.length === 3);
    server.put(RESOURCES.configMaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'ml' } });
    server.remove(RESOURCES.statefulSets, 'ml', 'a-workers');
    await waitFor('the reconcile for the deletion', () => entry.calls.length === 4);
    await settle();

    expect(entry.calls).toEqual(['ml/a', 'ml/a', 'ml/a', 'ml/a']);
    expect(entry.handle.caches.configmaps.get('ml', 'unrelated')).toBeDefined();
    expect(entry.handle.caches.pods.list('ml').map((pod) => pod.metadata.name)).toEqual(['a-workers-0']);
    expect(server.requestsTo('GET', '/api/v1/namespaces/ml/pods', true)[0]?.query.get('labelSelector')).toBe(OWNER_LABEL);
  });

  test('reconciles again after requeueAfterMs', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const entry = start(async () => ({ requeueAfterMs: 60_000 }));
    await waitFor('the first reconcile', () => entry.calls.length === 1);
    await settle();

    await scheduler.advance(59_999);
    expect(entry.calls).toHaveLength(1);
    await scheduler.advance(1);
    await waitFor('the second reconcile', () => entry.calls.length === 2);

    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'requeue' })).toBe(2);
  });

  test('retries a failed reconcile with backoff', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    let failures = 2;
    const entry = start(async () => {
      if (failures > 0) {
        failures -= 1;
        throw new Error('apply conflict');
      }
      return {};
    });
    await waitFor('the first reconcile', () => entry.calls.length === 1);
    await settle();

    await scheduler.advance(499);
    expect(entry.calls).toHaveLength(1);
    await scheduler.advance(1);
    await waitFor('the second reconcile', () => entry.calls.length === 2);
    await settle();
    await scheduler.advance(1_000);
    await waitFor('the third reconcile', () => entry.calls.length === 3);
    await settle();

    const failureLogs = entry.logs.filter((line) => line.msg === 'reconcile failed; retrying with backoff');
    expect(failureLogs.map((line) => [line.namespace, line.name, line.failures])).toEqual([
      ['ml', 'a', 1],
      ['ml', 'a', 2],
    ]);
    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'error' })).toBe(2);
    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'success' })).toBe(1);
  });

  test('does not retry a terminal error until the object changes', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const entry = start(async () => {
      throw new TerminalReconcileError('spec.model.experts must be positive, got 0');
    });
    await waitFor('the first reconcile', () => entry.calls.length === 1);
    await settle();

    await scheduler.advance(600_000);
    expect(entry.calls).toHaveLength(1);
    server.put(RESOURCES.moeDeployments, moe('a'));
    await waitFor('the reconcile after the change', () => entry.calls.length === 2);
    await settle();

    const terminalLogs = entry.logs.filter((line) => line.msg === 'reconcile failed permanently; not retrying until the object changes');
    expect(terminalLogs).toHaveLength(2);
    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'terminal' })).toBe(2);
    expect(await metricValue(entry.registry, 'grace_moe_operator_reconcile_total', { result: 'error' })).toBe(0);
  });

  test('builds the reconciler from its runtime', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const calls: string[] = [];
    const stop = new AbortController();
    const handle = runController({
      kubeConfig: server.kubeConfig(),
      namespace: 'ml',
      reconciler: ({ caches, writer }) => ({
        async reconcile(key) {
          calls.push(keyString(key));
          const owner = caches.moedeployments.get(key.namespace, key.name);
          if (owner === undefined) return {};
          await writer.apply(
            { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${key.name}-plan`, namespace: key.namespace }, data: { generation: '1' } },
            'grace-moe-operator',
          );
          return {};
        },
      }),
      primary: KINDS.primary,
      children: KINDS.children,
      workers: 1,
      leaderElection: null,
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
      signal: stop.signal,
      scheduler,
    });
    started.push({ handle, calls, logs: [], registry: new Registry(), stop });

    await waitFor('the plan ConfigMap', () => server.object(RESOURCES.configMaps, 'ml', 'a-plan') !== undefined);

    expect(server.object(RESOURCES.configMaps, 'ml', 'a-plan')?.data).toEqual({ generation: '1' });
    expect(server.requestsTo('PATCH', '/api/v1/namespaces/ml/configmaps/a-plan')[0]?.query.get('fieldManager')).toBe('grace-moe-operator');
  });

  test('lets an in-flight reconcile finish on shutdown', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    let finish: () => void = () => {};
    let abortedSignal: boolean | undefined;
    const entry = start(
      (_key, signal) =>
        new Promise((resolve) => {
          finish = () => {
            abortedSignal = signal.aborted;
            resolve({});
          };
        }),
    );
    await waitFor('the reconcile', () => entry.calls.length === 1);

    entry.stop.abort();
    let stopped = false;
    void entry.handle.done.then(() => {
      stopped = true;
    });
    await settle();
    expect(stopped).toBe(false);
    finish();

    await expect(entry.handle.done).resolves.toEqual({ reason: 'shutdown', drained: true });
    expect(abortedSignal).toBe(false);
    expect(server.openWatches(RESOURCES.moeDeployments)).toBe(0);
    expect(await metricValue(entry.registry, 'grace_moe_operator_leader')).toBe(0);
  });
});

describe('runController with leader election', () => {
  const election = (identity: string) => ({
    namespace: 'ops',
    leaseName: 'grace-moe-operator',
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
  });

  test('only the leader reconciles', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const first = start(succeed, { leaderElection: election('pod-a-0001') });
    await waitFor('the leader reconcile', () => first.calls.length === 1);
    const second = start(succeed, { leaderElection: election('pod-b-0002') });
    await waitFor('the standby sync', () => second.handle.readiness().synced);
    await scheduler.advance(4_000);

    expect(first.handle.readiness()).toEqual({ synced: true, leader: true, identity: 'pod-a-0001' });
    expect(second.handle.readiness()).toEqual({ synced: true, leader: false, identity: 'pod-b-0002' });
    expect(second.calls).toEqual([]);

    first.stop.abort();
    await expect(first.handle.done).resolves.toEqual({ reason: 'shutdown', drained: true });
    expect(server.object(RESOURCES.leases, 'ops', 'grace-moe-operator')?.spec).toMatchObject({ leaseDurationSeconds: 1 });
    await scheduler.advance(2_000);
    await waitFor('the new leader reconcile', () => second.calls.length === 1);

    expect(second.handle.readiness().leader).toBe(true);
    expect(server.object(RESOURCES.leases, 'ops', 'grace-moe-operator')?.spec).toMatchObject({ holderIdentity: 'pod-b-0002', leaseTransitions: 1 });
  });

  test('stops when another replica takes the lease', async () => {
    server.put(RESOURCES.moeDeployments, moe('a'));
    const entry = start(succeed, { leaderElection: election('pod-a-0001') });
    await waitFor('the reconcile', () => entry.calls.length === 1);
    const lease = server.object(RESOURCES.leases, 'ops', 'grace-moe-operator') as KubeObject;

    server.put(RESOURCES.leases, { ...lease, spec: { ...(lease.spec as object), holderIdentity: 'pod-z-9999' } });
    await scheduler.advance(2_000);

    await expect(entry.handle.done).resolves.toEqual({ reason: 'leadership-lost', drained: true });
    expect(entry.handle.readiness().leader).toBe(false);
  });
});

describe('moeDeploymentOwnerKeys', () => {
  const owner = (kind: string, apiVersion: string, controller: boolean) => ({ apiVersion, kind, name: 'ds', uid: 'u', controller });
  test.each([
    ['the controller reference', [owner('MoEDeployment', 'grace-moe.io/v1alpha1', true)], {}, ['ml/ds']],
    ['a non-controller reference', [owner('MoEDeployment', 'grace-moe.io/v1alpha1', false)], {}, []],
    ['a reference of another group', [owner('MoEDeployment', 'example.com/v1', true)], {}, []],
    ['the owner label', [owner('StatefulSet', 'apps/v1', true)], { [OWNER_LABEL]: 'from-label' }, ['ml/from-label']],
    ['neither', [], {}, []],
  ] as const)('follows %s', (_name, ownerReferences, labels, expected) => {
    const object: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'ml', ownerReferences, labels } };

    expect(moeDeploymentOwnerKeys(object, OWNER_LABEL).map(keyString)).toEqual(expected);
  });

  test('parseKey splits at the first slash', () => {
    expect(parseKey('ml/ds')).toEqual({ namespace: 'ml', name: 'ds' });
    expect(parseKey('/cluster-scoped')).toEqual({ namespace: '', name: 'cluster-scoped' });
  });
});

describe('settings from the operator configuration', () => {
  test('DEFAULT_TUNING follows the operator defaults', () => {
    expect(DEFAULT_TUNING).toEqual({
      idleTimeoutMs: 660_000,
      watchTimeoutSeconds: 300,
      watchBackoff: { baseMs: 500, capMs: 30_000, jitterRatio: 0.2 },
      retryBackoff: { baseMs: 500, capMs: 300_000, jitterRatio: 0.2 },
      requestTimeoutMs: 30_000,
      shutdownTimeoutMs: 30_000,
    });
  });

  test('runtimeTuning builds both backoff policies', () => {
    const tuning = runtimeTuning(operatorConfigWith({ retryBaseMs: 200, retryCapMs: 60_000, watchRetryCapMs: 100, retryJitterRatio: 0.1 }));

    expect(tuning.retryBackoff).toEqual({ baseMs: 200, capMs: 60_000, jitterRatio: 0.1 });
    expect(tuning.watchBackoff).toEqual({ baseMs: 100, capMs: 100, jitterRatio: 0.1 });
  });

  test('leaderElectionSettings is null with leader election off', () => {
    const on = operatorConfigWith({ leaseNamespace: 'grace-moe-system', leaseName: 'lease', leaseDurationMs: 20_000 });

    expect(leaderElectionSettings(operatorConfigWith({ leaderElection: false }), 'pod-a-1')).toBeNull();
    expect(leaderElectionSettings(on, 'pod-a-1')).toEqual({
      namespace: 'grace-moe-system',
      leaseName: 'lease',
      identity: 'pod-a-1',
      leaseDurationMs: 20_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
    });
  });
});

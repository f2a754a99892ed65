import { afterEach, describe, expect, test } from 'vitest';
import type { LoopLogger } from '../control/loop.js';
import { parsePlan } from '../plan/json.js';
import { HASH_ANNOTATION, PLAN_FILE } from './children.js';
import { API_VERSION, KIND, type MoEDeployment, type MoEDeploymentSpec } from './crd.js';
import type { KubeObject } from './kube-types.js';
import { MemoryStore } from './memory-store.js';
import { RebalanceManager } from './rebalance.js';
import { MoEDeploymentReconciler } from './reconcile.js';

/** The parts of a StatefulSet the tests read. */
interface StatefulSetView extends KubeObject {
  readonly spec: {
    readonly replicas: number;
    readonly template: {
      readonly spec: {
        readonly containers: readonly { readonly name: string; readonly image: string; readonly resources: { readonly limits: Record<string, string> } }[];
        readonly affinity: { readonly podAntiAffinity: { readonly requiredDuringSchedulingIgnoredDuringExecution: unknown[] } };
      };
    };
  };
}

const silent: LoopLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const NOW = Date.parse('2026-12-04T12:00:00Z');

const baseSpec: MoEDeploymentSpec = {
  model: { layers: 2, experts: 16, topK: 2 },
  engine: { image: 'engine:1' },
  workers: { nodes: 2, gpusPerNode: 2 },
  rebalance: { mode: 'Off' },
};

function gpuNode(name: string, gpus: number): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { allocatable: { 'nvidia.com/gpu': String(gpus) } } };
}

interface Fixture {
  store: MemoryStore;
  reconciler: MoEDeploymentReconciler;
  rebalance: RebalanceManager;
  deploy(spec: MoEDeploymentSpec): MoEDeployment;
  deployment(): MoEDeployment;
  child(kind: string, name: string): KubeObject | undefined;
  run(): Promise<void>;
  markWorkersReady(): void;
}

const managers: RebalanceManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((manager) => manager.stopAll()));
});

function fixture(nodeGpus = 8): Fixture {
  const store = new MemoryStore();
  store.put(gpuNode('gpu-a', nodeGpus));
  store.put(gpuNode('gpu-b', nodeGpus));
  const rebalance = new RebalanceManager({
    resolver: () => [],
    enqueue: () => undefined,
    log: silent,
    now: () => NOW,
    sleep: () => new Promise(() => undefined),
  });
  managers.push(rebalance);
  const reconciler = new MoEDeploymentReconciler({
    caches: {
      deployments: store.cache(KIND),
      statefulSets: store.cache('StatefulSet'),
      services: store.cache('Service'),
      configMaps: store.cache('ConfigMap'),
      podDisruptionBudgets: store.cache('PodDisruptionBudget'),
      nodes: store.cache('Node'),
    },
    writer: store,
    rebalance,
    children: { defaultRouterImage: 'grace-moe:test' },
    now: () => NOW,
  });
  const key = { namespace: 'models', name: 'demo' };
  return {
    store,
    reconciler,
    rebalance,
    deploy: (spec) => store.put({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'demo', namespace: 'models' }, spec }) as MoEDeployment,
    deployment: () => store.cache(KIND).get('models', 'demo') as MoEDeployment,
    child: (kind, name) => store.cache(kind).get('models', name),
    run: async () => {
      await reconciler.reconcile(key);
    },
    markWorkersReady: () => {
      const sts = store.cache('StatefulSet').get('models', 'demo') as KubeObject;
      const replicas = (sts.spec as { replicas: number }).replicas;
      store.setStatus('StatefulSet', 'models', 'demo', {
        observedGeneration: sts.metadata.generation,
        replicas,
        readyReplicas: replicas,
        updatedReplicas: replicas,
        currentRevision: 'r1',
        updateRevision: 'r1',
      });
    },
  };
}

function condition(deployment: MoEDeployment, type: string) {
  return deployment.status?.conditions?.find((entry) => entry.type === type);
}

describe('MoEDeploymentReconciler', () => {
  test('creates the four children with owner references', async () => {
    const f = fixture();
    const owner = f.deploy(baseSpec);
    await f.run();

    const applied = f.store.writes.filter((write) => write.verb === 'apply').map((write) => `${write.kind}/${write.name}`);
    expect(applied).toEqual(['ConfigMap/demo-plan', 'Service/demo-workers', 'StatefulSet/demo', 'PodDisruptionBudget/demo']);
    for (const [kind, name] of [['ConfigMap', 'demo-plan'], ['Service', 'demo-workers'], ['StatefulSet', 'demo'], ['PodDisruptionBudget', 'demo']] as const) {
      const child = f.child(kind, name) as KubeObject;
      expect(child.metadata.ownerReferences).toEqual([{ apiVersion: API_VERSION, kind: KIND, name: 'demo', uid: owner.metadata.uid, controller: true, blockOwnerDeletion: true }]);
      expect(child.metadata.annotations?.[HASH_ANNOTATION]).toMatch(/^[0-9a-f]{32}$/);
    }
  });

  test('worker pods request every GPU and avoid each other', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    const sts = f.child('StatefulSet', 'demo') as StatefulSetView;
    expect(sts.spec.replicas).toBe(2);
    const pod = sts.spec.template.spec;
    expect(pod.containers.map((container) => container.name)).toEqual(['engine', 'router']);
    expect(pod.containers[0]?.resources.limits['nvidia.com/gpu']).toBe('2');
    expect(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution).toEqual([
      { labelSelector: { matchLabels: { 'grace-moe.io/deployment': 'demo' } }, topologyKey: 'kubernetes.io/hostname' },
    ]);
    expect(pod.containers[1]?.image).toBe('grace-moe:test');
  });

  test('publishes a contiguous plan of generation 1', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    const configMap = f.child('ConfigMap', 'demo-plan') as KubeObject & { data: Record<string, string> };
    const plan = parsePlan(JSON.parse(configMap.data[PLAN_FILE] as string));
    expect(plan.generation).toBe(1);
    expect(plan.strategy).toBe('contiguous');
    expect(plan.topology).toEqual({ nodes: 2, gpusPerNode: 2, slotsPerGpu: 5 });
    expect(plan.layers[0]?.slots).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]);
    expect(f.deployment().status?.plan).toMatchObject({ generation: 1, strategy: 'contiguous', topology: '2x2x5' });
  });

  test('reports not ready until the workers are', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    expect(condition(f.deployment(), 'Ready')).toMatchObject({ status: 'False', reason: 'WorkersNotReady' });
    expect(condition(f.deployment(), 'Progressing')).toMatchObject({ status: 'True', reason: 'RollingOut' });

    f.markWorkersReady();
    await f.run();
    const status = f.deployment().status;
    expect(condition(f.deployment(), 'Ready')).toMatchObject({ status: 'True', reason: 'WorkersReady', message: '2 of 2 workers ready' });
    expect(status?.replicas).toBe(2);
    expect(status?.readyReplicas).toBe(2);
    expect(status?.selector).toBe('grace-moe.io/deployment=demo');
    expect(status?.observedGeneration).toBe(1);
  });

  test('a reconcile with nothing to change writes nothing', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    f.markWorkersReady();
    await f.run();
    const before = f.store.writes.length;
    await f.run();
    await f.run();
    expect(f.store.writes.slice(before)).toEqual([]);
  });

  test('keeps lastTransitionTime while a condition holds', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    const first = condition(f.deployment(), 'Degraded')?.lastTransitionTime;
    f.markWorkersReady();
    await f.run();
    expect(condition(f.deployment(), 'Degraded')?.lastTransitionTime).toBe(first);
  });

  test('a spec change is not ready before the new workers are', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    f.markWorkersReady();
    await f.run();
    expect(condition(f.deployment(), 'Ready')?.status).toBe('True');

    f.deploy({ ...baseSpec, engine: { image: 'engine:2' } });
    await f.run();
    const sts = f.child('StatefulSet', 'demo') as StatefulSetView;
    expect(sts.spec.template.spec.containers[0]?.image).toBe('engine:2');
    expect(condition(f.deployment(), 'Ready')).toMatchObject({ status: 'False', reason: 'WorkersNotReady' });
    expect(f.deployment().status?.observedGeneration).toBe(2);

    f.markWorkersReady();
    await f.run();
    expect(condition(f.deployment(), 'Ready')?.status).toBe('True');
  });

  test('scaling re-plans for the new topology', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    f.deploy({ ...baseSpec, workers: { nodes: 3, gpusPerNode: 2 } });
    await f.run();
    const configMap = f.child('ConfigMap', 'demo-plan') as KubeObject & { data: Record<string, string> };
    const plan = parsePlan(JSON.parse(configMap.data[PLAN_FILE] as string));
    expect(plan.generation).toBe(2);
    expect(plan.topology).toEqual({ nodes: 3, gpusPerNode: 2, slotsPerGpu: 4 });
    expect((f.child('StatefulSet', 'demo') as KubeObject & { spec: { replicas: number } }).spec.replicas).toBe(3);
    expect(f.store.writes.some((write) => write.verb === 'event' && (write.detail ?? '').includes('plan generation 2'))).toBe(true);
  });

  test.each([
    { name: 'zero experts', spec: { ...baseSpec, model: { layers: 2, experts: 0, topK: 2 } }, field: 'spec.model.experts must be a positive integer, got 0' },
    { name: 'fractional layers', spec: { ...baseSpec, model: { layers: 1.5, experts: 16, topK: 2 } }, field: 'spec.model.layers must be a positive integer, got 1.5' },
    { name: 'more GPUs than a node has', spec: { ...baseSpec, workers: { nodes: 2, gpusPerNode: 16 } }, field: 'spec.workers.gpusPerNode is 16 but no node offers more than 8' },
    { name: 'too few slots', spec: { ...baseSpec, placement: { slotsPerGpu: 3 } }, field: 'spec.placement.slotsPerGpu is 3' },
    { name: 'same ports', spec: { ...baseSpec, engine: { image: 'e', port: 8470 } }, field: 'spec.router.port must differ' },
  ] as const)('invalid spec ($name) becomes a condition', async ({ spec, field }) => {
    const f = fixture();
    f.deploy(spec as MoEDeploymentSpec);
    await f.run();
    expect(f.store.writes.filter((write) => write.verb === 'apply')).toEqual([]);
    const ready = condition(f.deployment(), 'Ready');
    expect(ready?.status).toBe('False');
    expect(ready?.reason).toBe('InvalidSpec');
    expect(ready?.message).toContain(field);
    expect(condition(f.deployment(), 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    const warnings = f.store.writes.filter((write) => write.verb === 'event' && (write.detail ?? '').startsWith('Warning InvalidSpec'));
    expect(warnings).toHaveLength(1);

    await f.run();
    expect(f.store.writes.filter((write) => write.verb === 'event')).toHaveLength(1);
  });

  test('refuses to adopt a child it does not control', async () => {
    const f = fixture();
    f.store.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'demo-workers', namespace: 'models' }, spec: {} });
    f.deploy(baseSpec);
    await f.run();
    expect(f.store.writes.filter((write) => write.verb === 'apply')).toEqual([]);
    expect(condition(f.deployment(), 'Ready')).toMatchObject({ status: 'False', reason: 'ChildConflict' });
    expect(condition(f.deployment(), 'Ready')?.message).toContain('Service demo-workers exists and is not controlled by this MoEDeployment');
  });

  test('a status conflict fails the reconcile for a retry', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    f.store.failNextStatusWith = 409;
    await expect(f.run()).rejects.toMatchObject({ statusCode: 409 });
    await f.run();
    expect(f.deployment().status?.plan?.generation).toBe(1);
  });

  test('a deleted deployment is left alone', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    f.store.delete(KIND, 'models', 'demo');
    await f.run();
    expect(f.store.writes).toEqual([]);
  });
});

describe('status writes', () => {
  test('a status with other key order is not rewritten', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    f.markWorkersReady();
    await f.run();
    // The API server returns keys sorted; here they are reversed, which also differs from ours.
    const current = f.deployment().status as Record<string, unknown>;
    const reordered = Object.fromEntries(Object.keys(current).sort().reverse().map((key) => [key, current[key]]));
    expect(Object.keys(reordered)).not.toEqual(Object.keys(current));
    f.store.setStatus(KIND, 'models', 'demo', reordered);
    const before = f.store.writes.length;
    await f.run();
    expect(f.store.writes.slice(before)).toEqual([]);
  });

  test('keeps the last rebalance across restarts', async () => {
    const f = fixture();
    f.deploy(baseSpec);
    await f.run();
    f.markWorkersReady();
    await f.run();
    const lastRebalance = { time: '2026-12-04T11:00:00.000Z', outcome: 'no-gain', reason: 'predicted gain 1.0%', generation: 1 };
    f.store.setStatus(KIND, 'models', 'demo', { ...f.deployment().status, lastRebalance });
    await f.run();
    expect(f.deployment().status?.lastRebalance).toEqual(lastRebalance);
  });
});

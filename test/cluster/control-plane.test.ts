/**
 * Smoke test of the control-plane harness: real etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler and kwok, driven with the real kubectl and helm.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GPU_RESOURCE, startControlPlane, type ControlPlane } from '../support/control-plane.js';

const NAMESPACE = 'harness-smoke';
const NODE_COUNT = 3;
const GPUS_PER_NODE = 8;
const RUNNING_TIMEOUT_MS = 60_000;

const STATEFUL_SET = `
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: gpu-workers
  namespace: ${NAMESPACE}
spec:
  serviceName: gpu-workers
  replicas: 2
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: gpu-workers
  template:
    metadata:
      labels:
        app: gpu-workers
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  app: gpu-workers
      containers:
        - name: worker
          image: example.invalid/never-pulled:1
          resources:
            limits:
              ${GPU_RESOURCE}: "${GPUS_PER_NODE}"
`;

interface PodSummary {
  readonly name: string;
  readonly phase: string;
  readonly nodeName: string;
  readonly podIP: string;
}

interface PodListJson {
  items: {
    metadata: { name: string };
    spec: { nodeName?: string };
    status: { phase?: string; podIP?: string };
  }[];
}

interface NodeJson {
  metadata: { labels: Record<string, string> };
  status: {
    capacity: Record<string, string>;
    allocatable: Record<string, string>;
    conditions: { type: string; status: string }[];
  };
}

let controlPlane: ControlPlane | undefined;
let nodeNames: string[] = [];

function cluster(): ControlPlane {
  if (controlPlane === undefined) {
    throw new Error('the control plane did not start; see the beforeAll error');
  }
  return controlPlane;
}

async function kubectlJson<T>(args: readonly string[]): Promise<T> {
  const run = await cluster().kubectl([...args, '--output=json']);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as T;
}

async function listPods(selector: string): Promise<PodSummary[]> {
  const list = await kubectlJson<PodListJson>(['get', 'pods', `--namespace=${NAMESPACE}`, `--selector=${selector}`]);
  return list.items.map((pod) => ({
    name: pod.metadata.name,
    phase: pod.status.phase ?? '',
    nodeName: pod.spec.nodeName ?? '',
    podIP: pod.status.podIP ?? '',
  }));
}

beforeAll(async () => {
  controlPlane = await startControlPlane();
  nodeNames = await controlPlane.createFakeGpuNodes(NODE_COUNT, GPUS_PER_NODE);
  const created = await controlPlane.kubectl(['create', 'namespace', NAMESPACE]);
  expect(created.code).toBe(0);
});

afterAll(async () => {
  await controlPlane?.stop();
});

describe('control-plane harness', () => {
  test('kubectl reports the built version', async () => {
    const expected = cluster().versions.kubernetes;
    const client = await kubectlJson<{ clientVersion: { gitVersion: string } }>(['version', '--client']);
    const server = await kubectlJson<{ serverVersion: { gitVersion: string } }>(['version']);

    expect(expected).toMatch(/^v1\.\d+\.\d+$/);
    expect(client.clientVersion.gitVersion).toBe(expected);
    expect(server.serverVersion.gitVersion).toBe(expected);
  });

  test('helm reports the built version', async () => {
    const run = await cluster().helm(['version', '--short']);

    expect(run.code).toBe(0);
    expect(run.stdout.trim().split('+')[0]).toBe(cluster().versions.helm);
  });

  test('helm reaches the apiserver', async () => {
    const run = await cluster().helm(['list', '--all-namespaces', '--output=json']);

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual([]);
  });

  test('fake nodes are Ready with GPUs', async () => {
    expect(nodeNames).toHaveLength(NODE_COUNT);
    for (const name of nodeNames) {
      const node = await kubectlJson<NodeJson>(['get', 'node', name]);
      const ready = node.status.conditions.find((condition) => condition.type === 'Ready');

      expect(ready?.status).toBe('True');
      expect(node.status.capacity[GPU_RESOURCE]).toBe(String(GPUS_PER_NODE));
      expect(node.status.allocatable[GPU_RESOURCE]).toBe(String(GPUS_PER_NODE));
      expect(node.metadata.labels['kubernetes.io/hostname']).toBe(name);
      expect(node.metadata.labels['type']).toBe('kwok');
    }
  });

  test('StatefulSet pods run on two distinct nodes', async () => {
    const applied = await cluster().kubectl(['apply', '--filename=-'], { stdin: STATEFUL_SET });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);

    const deadline = Date.now() + RUNNING_TIMEOUT_MS;
    let pods = await listPods('app=gpu-workers');
    while (!(pods.length === 2 && pods.every((pod) => pod.phase === 'Running')) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      pods = await listPods('app=gpu-workers');
    }

    expect(pods.map((pod) => pod.name).sort()).toEqual(['gpu-workers-0', 'gpu-workers-1']);
    expect(pods.map((pod) => pod.phase)).toEqual(['Running', 'Running']);
    const nodesUsed = new Set(pods.map((pod) => pod.nodeName));
    expect(nodesUsed.size).toBe(2);
    for (const nodeName of nodesUsed) {
      expect(nodeNames).toContain(nodeName);
    }
    for (const pod of pods) {
      expect(pod.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    }
  });

  test('ServiceAccount without RBAC rules is Forbidden', async () => {
    const serviceAccount = 'no-rules';
    const created = await cluster().kubectl(['create', 'serviceaccount', serviceAccount, `--namespace=${NAMESPACE}`]);
    expect(created.code).toBe(0);
    const token = await cluster().tokenFor(NAMESPACE, serviceAccount);
    const kubeconfig = await cluster().kubeconfigForToken(token);

    const whoami = await cluster().kubectl(['auth', 'whoami', '--output=jsonpath={.status.userInfo.username}'], { kubeconfig });
    const denied = await cluster().kubectl(['get', 'pods', `--namespace=${NAMESPACE}`], { kubeconfig });
    const admin = await cluster().kubectl(['get', 'pods', `--namespace=${NAMESPACE}`]);

    expect(whoami.code).toBe(0);
    expect(whoami.stdout).toBe(`system:serviceaccount:${NAMESPACE}:${serviceAccount}`);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('Forbidden');
    expect(denied.stderr).toContain(`User "system:serviceaccount:${NAMESPACE}:${serviceAccount}" cannot list resource "pods"`);
    expect(admin.code).toBe(0);
    expect(admin.stderr).not.toContain('Forbidden');
  });
});

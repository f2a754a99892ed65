/**
 * The grace-moe operator against a real control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, kwok with fake GPU nodes). The operator runs as a local
 * process from the compiled CLI and authenticates with a token minted for its own ServiceAccount,
 * so the RBAC rules of manifests/rbac.yaml are enforced on every request it makes.
 *
 * One control plane with three fake nodes of 8 GPUs serves the whole file. Every case works in its
 * own namespace and deletes its deployments at the end, so that later cases find free GPUs. Cases
 * run in order, and the scale case reuses the deployment of the first. Some cases stop and restart
 * the operator. Needs `npm run build` and the binaries of `.ci/control-plane/build.sh`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { CLI_PATH, requireBuiltCli, runCliProcess } from '../support/cli-process.js';
import { GPU_RESOURCE, startControlPlane, type ControlPlane, type ToolOptions, type ToolRun } from '../support/control-plane.js';
import { kubeApiReader, type KubeApiReader } from '../support/kube-api.js';
import { metricValue, startOperatorProcess, type OperatorProcess } from '../support/operator-process.js';

// ---- Fixtures and constants ------------------------------------------------------------------

const CRD_PATH = fileURLToPath(new URL('../../crds/moedeployments.grace-moe.io.yaml', import.meta.url));
const RBAC_PATH = fileURLToPath(new URL('../../manifests/rbac.yaml', import.meta.url));
const EXAMPLE_PATH = fileURLToPath(new URL('../../manifests/examples/deepseek-v2-lite.yaml', import.meta.url));

const OPERATOR_NAMESPACE = 'grace-moe-system';
const OPERATOR_ACCOUNT = 'grace-moe-operator';
const LEASE_NAME = 'grace-moe-operator';
const EXAMPLE_NAME = 'deepseek-v2-lite';
const EXAMPLE_IMAGE = 'vllm/vllm-openai:v0.11.0';
const DEPLOYMENT_LABEL = 'grace-moe.io/deployment';
const GROUP_VERSION = 'grace-moe.io/v1alpha1';

const NODE_COUNT = 3;
const GPUS_PER_NODE = 8;

const READY_TIMEOUT_MS = 90_000;
const GONE_TIMEOUT_MS = 60_000;
const POLL_MS = 200;
/** Time a case watches for something that must not happen. */
const QUIET_MS = 10_000;

// ---- Object shapes read back from the API ------------------------------------------------------

interface OwnerReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

interface Meta {
  readonly name: string;
  readonly namespace?: string;
  readonly uid: string;
  readonly generation?: number;
  readonly resourceVersion: string;
  readonly labels?: Record<string, string>;
  readonly ownerReferences?: OwnerReference[];
}

interface ConditionJson {
  readonly type: string;
  readonly status: string;
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration?: number;
}

interface MoEDeploymentJson {
  readonly metadata: Meta;
  readonly spec: { workers: { nodes: number }; engine: { image: string } };
  readonly status?: {
    observedGeneration?: number;
    conditions?: ConditionJson[];
    replicas?: number;
    readyReplicas?: number;
    selector?: string;
    plan?: { generation?: number; digest?: string; strategy?: string; topology?: string };
    lastRebalance?: { time?: string; outcome?: string; reason?: string; predictedGain?: number; generation?: number };
  };
}

interface ContainerJson {
  readonly name: string;
  readonly image: string;
  readonly resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
}

interface StatefulSetJson {
  readonly metadata: Meta;
  readonly spec: { replicas: number; serviceName: string; template: { spec: { containers: ContainerJson[] } } };
  readonly status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    currentRevision?: string;
    updateRevision?: string;
  };
}

interface ServiceJson {
  readonly metadata: Meta;
  readonly spec: { clusterIP: string; selector: Record<string, string>; ports: { name: string; port: number }[] };
}

interface ConfigMapJson {
  readonly metadata: Meta;
  readonly data?: Record<string, string>;
}

interface PodDisruptionBudgetJson {
  readonly metadata: Meta;
  readonly spec: { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } };
}

interface PodJson {
  readonly metadata: Meta;
  readonly spec: { nodeName?: string; containers: ContainerJson[] };
  readonly status: { phase?: string };
}

interface EventJson {
  readonly type: string;
  readonly reason: string;
  readonly note?: string;
  readonly regarding: { kind: string; name: string };
}

interface PlanJson {
  readonly generation: number;
  readonly strategy: string;
  readonly topology: { nodes: number; gpusPerNode: number; slotsPerGpu: number };
  readonly model: { layers: number; experts: number; topK: number };
}

interface ListJson<T> {
  readonly items: T[];
}

/** A MoEDeployment manifest as applied; the example file parsed, then edited per case. */
type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: {
    model: { layers: number; experts: number; topK: number; [field: string]: unknown };
    engine: { image: string; [field: string]: unknown };
    workers: { nodes: number; gpusPerNode?: number; [field: string]: unknown };
    placement?: { slotsPerGpu?: number; [field: string]: unknown };
    rebalance?: { mode?: string; intervalSeconds?: number; [field: string]: unknown };
  };
};

// ---- State shared by the cases ---------------------------------------------------------------

let controlPlane: ControlPlane | undefined;
let reader: KubeApiReader | undefined;
let workDir = '';
let nodeNames: string[] = [];
let operatorKubeconfig = '';
let emptyEndpointsFile = '';
let operator: OperatorProcess | undefined;
let operatorSerial = 0;
/** Every operator, router and engine process this file started, stopped by PID in afterAll. */
const operators: OperatorProcess[] = [];
const services: ChildProcess[] = [];

function cluster(): ControlPlane {
  if (controlPlane === undefined) throw new Error('the control plane did not start; see the beforeAll error');
  return controlPlane;
}

function api(): KubeApiReader {
  if (reader === undefined) throw new Error('the control plane did not start; see the beforeAll error');
  return reader;
}

function mainOperator(): OperatorProcess {
  if (operator === undefined) throw new Error('the operator is not running; an earlier case failed to restart it');
  return operator;
}

// ---- Helpers ---------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs kubectl and throws with its output unless it exits with 0. */
async function kubectl(args: readonly string[], options?: ToolOptions): Promise<ToolRun> {
  const run = await cluster().kubectl(args, options);
  if (run.code !== 0) {
    throw new Error(`"kubectl ${args.join(' ')}" failed (exit ${String(run.code)}):\n${run.stderr}${run.stdout}`);
  }
  return run;
}

async function createNamespace(name: string): Promise<void> {
  await kubectl(['create', 'namespace', name]);
}

function exampleManifest(): Manifest {
  return parseYaml(readFileSync(EXAMPLE_PATH, 'utf8')) as Manifest;
}

/**
 * The example with 2 nodes x `gpusPerNode` GPUs and rebalancing off, so that no control loop
 * round writes status while a case watches. slotsPerGpu leaves two spare slots per GPU.
 */
function smallManifest(name: string, gpusPerNode = 2): Manifest {
  const manifest = exampleManifest();
  manifest.metadata.name = name;
  manifest.spec.workers.gpusPerNode = gpusPerNode;
  manifest.spec.placement = { ...manifest.spec.placement, slotsPerGpu: Math.ceil(64 / (2 * gpusPerNode)) + 2 };
  manifest.spec.rebalance = { ...manifest.spec.rebalance, mode: 'Off' };
  return manifest;
}

async function applyManifest(namespace: string, manifest: Manifest): Promise<void> {
  await kubectl(['apply', `--namespace=${namespace}`, '--filename=-'], { stdin: JSON.stringify(manifest) });
}

function deploymentPath(namespace: string, name: string): string {
  return `/apis/grace-moe.io/v1alpha1/namespaces/${namespace}/moedeployments/${name}`;
}

/** API paths of the four children of deployment `name`, named as docs/operator.md lists them. */
function childPaths(namespace: string, name: string): Record<'StatefulSet' | 'Service' | 'ConfigMap' | 'PodDisruptionBudget', string> {
  return {
    StatefulSet: `/apis/apps/v1/namespaces/${namespace}/statefulsets/${name}`,
    Service: `/api/v1/namespaces/${namespace}/services/${name}-workers`,
    ConfigMap: `/api/v1/namespaces/${namespace}/configmaps/${name}-plan`,
    PodDisruptionBudget: `/apis/policy/v1/namespaces/${namespace}/poddisruptionbudgets/${name}`,
  };
}

/** GETs an object; undefined when it does not exist (404). */
async function getObject<T>(path: string): Promise<T | undefined> {
  const response = await api().get<T>(path);
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new Error(`GET ${path} returned ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

async function getDeployment(namespace: string, name: string): Promise<MoEDeploymentJson | undefined> {
  return getObject<MoEDeploymentJson>(deploymentPath(namespace, name));
}

function condition(deployment: MoEDeploymentJson | undefined, type: string): ConditionJson | undefined {
  return deployment?.status?.conditions?.find((candidate) => candidate.type === type);
}

/**
 * Polls `check` every POLL_MS until it returns a value other than undefined and returns that
 * value. On timeout it fails with `description`, the value `lastSeen` reads and the operator's
 * log tail.
 */
async function waitFor<T>(description: string, timeoutMs: number, check: () => Promise<T | undefined>, lastSeen?: () => Promise<unknown>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const last = lastSeen === undefined ? '' : `\nlast seen: ${JSON.stringify(await lastSeen(), null, 2)}`;
      const log = operator === undefined ? '' : `\noperator log tail:\n${operator.logTail()}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${last}${log}`);
    }
    await sleep(POLL_MS);
  }
}

/** Waits until the deployment reports Ready=True for its current generation with `replicas` ready workers. */
async function waitForReady(namespace: string, name: string, replicas: number, timeoutMs = READY_TIMEOUT_MS): Promise<MoEDeploymentJson> {
  return waitFor(
    `${namespace}/${name} to be Ready with ${replicas} workers`,
    timeoutMs,
    async () => {
      const deployment = await getDeployment(namespace, name);
      const ready = condition(deployment, 'Ready');
      const current = deployment?.status?.observedGeneration === deployment?.metadata.generation;
      return ready?.status === 'True' && current && deployment?.status?.readyReplicas === replicas ? deployment : undefined;
    },
    async () => (await getDeployment(namespace, name))?.status,
  );
}

/** Waits until none of the deployment's four children exists. */
async function waitForChildrenGone(namespace: string, name: string): Promise<void> {
  const paths = childPaths(namespace, name);
  await waitFor(
    `the children of ${namespace}/${name} to be deleted`,
    GONE_TIMEOUT_MS,
    async () => {
      for (const path of Object.values(paths)) {
        if ((await api().get(path)).status !== 404) return undefined;
      }
      return true;
    },
    async () => Promise.all(Object.entries(paths).map(async ([kind, path]) => [kind, (await api().get(path)).status])),
  );
}

async function listPods(namespace: string, name: string): Promise<PodJson[]> {
  const list = await getObject<ListJson<PodJson>>(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(`${DEPLOYMENT_LABEL}=${name}`)}`);
  return (list?.items ?? []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** Waits until exactly `count` worker pods exist, all Running, every one with engine image `image`. */
async function waitForRunningPods(namespace: string, name: string, count: number, image: string): Promise<PodJson[]> {
  return waitFor(
    `${count} Running worker pods of ${namespace}/${name} with image ${image}`,
    READY_TIMEOUT_MS,
    async () => {
      const pods = await listPods(namespace, name);
      const done =
        pods.length === count &&
        pods.every((pod) => pod.status.phase === 'Running' && pod.spec.containers.find((container) => container.name === 'engine')?.image === image);
      return done ? pods : undefined;
    },
    async () => (await listPods(namespace, name)).map((pod) => ({ name: pod.metadata.name, phase: pod.status.phase, node: pod.spec.nodeName })),
  );
}

async function listEvents(namespace: string): Promise<EventJson[]> {
  return (await getObject<ListJson<EventJson>>(`/apis/events.k8s.io/v1/namespaces/${namespace}/events`))?.items ?? [];
}

/** The controller owner reference every child must carry. */
function controllerReference(deployment: MoEDeploymentJson): OwnerReference {
  return {
    apiVersion: GROUP_VERSION,
    kind: 'MoEDeployment',
    name: deployment.metadata.name,
    uid: deployment.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

function planOf(configMap: ConfigMapJson | undefined): PlanJson {
  const text = configMap?.data?.['plan.json'];
  if (text === undefined) throw new Error(`ConfigMap ${configMap?.metadata.name ?? '(missing)'} has no plan.json`);
  return JSON.parse(text) as PlanJson;
}

/** Returns `count` distinct free TCP ports on 127.0.0.1. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

/** Flags of an operator that watches every namespace and elects a leader on the Lease in OPERATOR_NAMESPACE. */
function mainOperatorArgs(endpointsFile: string): string[] {
  return [
    `--kubeconfig=${operatorKubeconfig}`,
    `--lease-namespace=${OPERATOR_NAMESPACE}`,
    '--host=127.0.0.1',
    '--port=0',
    `--endpoints-file=${endpointsFile}`,
    '--pod-name=operator-under-test',
    // A lease shorter than the default 15 s, so that a restart after SIGKILL takes over sooner.
    '--lease-duration-ms=5000',
    '--renew-deadline-ms=4000',
    '--retry-period-ms=1000',
    '--shutdown-timeout-ms=5000',
  ];
}

async function startOperator(args: readonly string[]): Promise<OperatorProcess> {
  const started = await startOperatorProcess({ args, logPath: join(workDir, `operator-${operatorSerial++}.log`) });
  operators.push(started);
  return started;
}

/** Waits until the operator's /readyz reports synced caches and, when `leader`, the lease. */
async function waitUntilSynced(target: OperatorProcess, leader = true): Promise<void> {
  await waitFor(
    `operator ${target.pid} to report synced${leader ? ' and leader' : ''} on /readyz`,
    60_000,
    async () => {
      const probe = await target.readyz();
      return probe.status === 200 && probe.body.synced && (!leader || probe.body.leader) ? true : undefined;
    },
    async () => (await target.readyz()).body,
  );
}

/** Starts the main operator with `endpointsFile` and waits until it leads with synced caches. */
async function restartMainOperator(endpointsFile = emptyEndpointsFile): Promise<OperatorProcess> {
  if (operator?.running === true) {
    const exit = await operator.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
  }
  operator = await startOperator(mainOperatorArgs(endpointsFile));
  await waitUntilSynced(operator);
  return operator;
}

/** Starts the main operator again when a case stopped it and failed before restarting it. */
async function ensureMainOperator(): Promise<void> {
  if (operator === undefined || !operator.running) await restartMainOperator();
}

/**
 * Deletes the MoEDeployments of a case and waits until garbage collection removed their worker
 * pods. A later case then finds its GPUs free, and no pod of it waits in the scheduler's backoff.
 * The first call may wait up to 30 s: kube-controller-manager's garbage collector re-reads API
 * discovery every 30 s (cmd/kube-controller-manager/app/core.go in Kubernetes v1.37.2), and until
 * then it does not notice that a MoEDeployment, a kind added in beforeAll, was deleted.
 */
async function deleteDeployments(namespace: string): Promise<void> {
  await kubectl(['delete', 'moedeployments', '--all', `--namespace=${namespace}`]);
  const podsPath = `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(DEPLOYMENT_LABEL)}`;
  await waitFor(
    `the worker pods in ${namespace} to be deleted`,
    GONE_TIMEOUT_MS,
    async () => ((await getObject<ListJson<PodJson>>(podsPath))?.items.length === 0 ? true : undefined),
    async () => (await getObject<ListJson<PodJson>>(podsPath))?.items.map((pod) => pod.metadata.name),
  );
}

/** Sends SIGTERM to every router and engine still running and waits until they exited. */
async function stopServices(): Promise<void> {
  const running = services.filter((child) => child.exitCode === null && child.signalCode === null && child.pid !== undefined);
  const exits = running.map((child) => new Promise((resolve) => child.once('exit', resolve)));
  for (const child of running) process.kill(child.pid as number, 'SIGTERM');
  await Promise.all(exits);
}

/** Starts `grace-moe <args>` and resolves with the URL of its "service listening" log line. */
function startService(name: string, args: readonly string[]): Promise<string> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  services.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not listen within 30 s:\n${output}`)), 30_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      for (const line of output.split('\n')) {
        if (!line.includes('"service listening"')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${String(code)} before listening:\n${output}`));
    });
  });
}

// ---- Control plane, CRD, RBAC and the operator -----------------------------------------------

beforeAll(async () => {
  requireBuiltCli();
  workDir = await mkdtemp(join(tmpdir(), 'grace-moe-operator-test-'));
  emptyEndpointsFile = join(workDir, 'no-endpoints.json');
  await writeFile(emptyEndpointsFile, '{}\n');

  controlPlane = await startControlPlane();
  reader = kubeApiReader(controlPlane.kubeconfigPath);
  nodeNames = await controlPlane.createFakeGpuNodes(NODE_COUNT, GPUS_PER_NODE);

  await createNamespace(OPERATOR_NAMESPACE);
  await kubectl(['apply', `--filename=${CRD_PATH}`]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/moedeployments.grace-moe.io']);
  await kubectl(['apply', `--filename=${RBAC_PATH}`]);

  const token = await controlPlane.tokenFor(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT);
  operatorKubeconfig = await controlPlane.kubeconfigForToken(token);
  operator = await startOperator(mainOperatorArgs(emptyEndpointsFile));
  await waitUntilSynced(operator);
});

afterAll(async () => {
  for (const child of services) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }
  for (const started of operators) {
    await started.stop('SIGTERM', 10_000);
  }
  await controlPlane?.stop();
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

// ---- Cases -----------------------------------------------------------------------------------

describe('grace-moe operator on a real control plane', () => {
  test('example deployment becomes Ready with owned children', async () => {
    const whoami = await kubectl(['auth', 'whoami', '--output=jsonpath={.status.userInfo.username}'], { kubeconfig: operatorKubeconfig });
    expect(whoami.stdout).toBe(`system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_ACCOUNT}`);

    await createNamespace('models');
    await kubectl(['apply', '--namespace=models', `--filename=${EXAMPLE_PATH}`]);
    const deployment = await waitForReady('models', EXAMPLE_NAME, 2);
    const paths = childPaths('models', EXAMPLE_NAME);
    const owner = controllerReference(deployment);

    const statefulSet = await getObject<StatefulSetJson>(paths.StatefulSet);
    const service = await getObject<ServiceJson>(paths.Service);
    const configMap = await getObject<ConfigMapJson>(paths.ConfigMap);
    const budget = await getObject<PodDisruptionBudgetJson>(paths.PodDisruptionBudget);
    for (const child of [statefulSet, service, configMap, budget]) {
      expect(child?.metadata.ownerReferences).toEqual([owner]);
    }

    expect(statefulSet?.spec.replicas).toBe(2);
    expect(statefulSet?.spec.serviceName).toBe(`${EXAMPLE_NAME}-workers`);
    const engine = statefulSet?.spec.template.spec.containers.find((container) => container.name === 'engine');
    expect(engine?.image).toBe(EXAMPLE_IMAGE);
    expect(engine?.resources?.limits?.[GPU_RESOURCE]).toBe('4');
    expect(engine?.resources?.requests?.[GPU_RESOURCE]).toBe('4');
    expect(statefulSet?.spec.template.spec.containers.map((container) => container.name)).toEqual(['engine', 'router']);

    expect(service?.spec.clusterIP).toBe('None');
    expect(service?.spec.selector).toEqual({ [DEPLOYMENT_LABEL]: EXAMPLE_NAME });
    expect(service?.spec.ports.map((port) => [port.name, port.port])).toEqual([
      ['engine', 8000],
      ['router', 8470],
    ]);

    const plan = planOf(configMap);
    expect(plan.generation).toBe(1);
    expect(plan.strategy).toBe('contiguous');
    expect(plan.topology).toEqual({ nodes: 2, gpusPerNode: 4, slotsPerGpu: 10 });
    expect(plan.model).toEqual({ layers: 26, experts: 64, topK: 6 });

    expect(budget?.spec.maxUnavailable).toBe(1);
    expect(budget?.spec.selector.matchLabels).toEqual({ [DEPLOYMENT_LABEL]: EXAMPLE_NAME });

    const pods = await waitForRunningPods('models', EXAMPLE_NAME, 2, EXAMPLE_IMAGE);
    expect(pods.map((pod) => pod.metadata.name)).toEqual([`${EXAMPLE_NAME}-0`, `${EXAMPLE_NAME}-1`]);
    const podNodes = pods.map((pod) => pod.spec.nodeName ?? '');
    expect(new Set(podNodes).size).toBe(2);
    for (const node of podNodes) expect(nodeNames).toContain(node);

    const status = deployment.status;
    expect(condition(deployment, 'Ready')).toMatchObject({ status: 'True', reason: 'WorkersReady', message: '2 of 2 workers ready' });
    expect(condition(deployment, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutComplete' });
    expect(condition(deployment, 'Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(condition(deployment, 'Rebalancing')).toMatchObject({ status: 'False', reason: 'Observing' });
    expect(status?.replicas).toBe(2);
    expect(status?.readyReplicas).toBe(2);
    expect(status?.observedGeneration).toBe(deployment.metadata.generation);
    expect(status?.plan?.generation).toBe(1);
    expect(status?.plan?.topology).toBe('2x4x10');
    expect(status?.selector).toBe(`${DEPLOYMENT_LABEL}=${EXAMPLE_NAME}`);

    const published = (await listEvents('models')).filter((event) => event.reason === 'PlanPublished');
    expect(published.map((event) => [event.type, event.regarding.kind, event.regarding.name])).toEqual([['Normal', 'MoEDeployment', EXAMPLE_NAME]]);

    const table = await kubectl(['get', 'moedeployments', '--namespace=models']);
    const [header, row] = table.stdout.trimEnd().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'READY', 'WORKERS', 'PLAN', 'MODE', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 5)).toEqual([EXAMPLE_NAME, '2', '2', '1', 'Observe']);

    const lease = await getObject<{ spec: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/${LEASE_NAME}`);
    const probe = await mainOperator().readyz();
    expect(probe.body.leader).toBe(true);
    expect(lease?.spec.holderIdentity).toBe(probe.body.identity);
  });

  test('spec change reports Ready only after the rollout', async () => {
    const namespace = 'rollout';
    const name = 'rolling';
    const newImage = 'vllm/vllm-openai:v0.11.1';
    await createNamespace(namespace);
    onTestFinished(() => deleteDeployments(namespace));
    await applyManifest(namespace, smallManifest(name, 4));
    const before = await waitForReady(namespace, name, 2);
    const oldPods = await waitForRunningPods(namespace, name, 2, EXAMPLE_IMAGE);
    const statefulSetBefore = await getObject<StatefulSetJson>(childPaths(namespace, name).StatefulSet);
    if (statefulSetBefore === undefined) throw new Error(`the StatefulSet of ${namespace}/${name} is missing`);

    // kwok runs a replacement pod almost at once, and polling every 200 ms missed the rollout's
    // intermediate states in a trial run. So the case records every version of both objects with
    // watches. With one etcd, resourceVersions are its revisions and order all writes, so each
    // status is checked against the StatefulSet version current when the status was written.
    const deploymentWatch = await api().watch<MoEDeploymentJson>(
      `/apis/grace-moe.io/v1alpha1/namespaces/${namespace}/moedeployments`,
      name,
      before.metadata.resourceVersion,
    );
    const statefulSetWatch = await api().watch<StatefulSetJson>(
      `/apis/apps/v1/namespaces/${namespace}/statefulsets`,
      name,
      statefulSetBefore.metadata.resourceVersion,
    );
    try {
      await kubectl(['patch', 'moedeployment', name, `--namespace=${namespace}`, '--type=merge', `--patch=${JSON.stringify({ spec: { engine: { image: newImage } } })}`]);
      await waitForReady(namespace, name, 2);
      await waitForRunningPods(namespace, name, 2, newImage);
      await sleep(1_000);
    } finally {
      deploymentWatch.stop();
      statefulSetWatch.stop();
    }
    const events: { revision: number; deployment?: MoEDeploymentJson; statefulSet?: StatefulSetJson }[] = [
      ...deploymentWatch.events.map((event) => ({ revision: Number(event.object.metadata.resourceVersion), deployment: event.object })),
      ...statefulSetWatch.events.map((event) => ({ revision: Number(event.object.metadata.resourceVersion), statefulSet: event.object })),
    ].sort((a, b) => a.revision - b.revision);

    const newGeneration = (before.metadata.generation ?? 0) + 1;
    const rolledOut = (statefulSet: StatefulSetJson): boolean => {
      const status = statefulSet.status ?? {};
      return (
        statefulSet.spec.template.spec.containers.find((container) => container.name === 'engine')?.image === newImage &&
        (status.observedGeneration ?? 0) >= (statefulSet.metadata.generation ?? 1) &&
        status.updatedReplicas === 2 &&
        status.readyReplicas === 2 &&
        status.currentRevision === status.updateRevision
      );
    };
    let statefulSet: StatefulSetJson = statefulSetBefore;
    const violations: object[] = [];
    const newGenerationReadiness: string[] = [];
    for (const event of events) {
      if (event.statefulSet !== undefined) {
        statefulSet = event.statefulSet;
        continue;
      }
      const deployment = event.deployment as MoEDeploymentJson;
      if (deployment.status?.observedGeneration !== newGeneration) continue;
      const ready = condition(deployment, 'Ready');
      newGenerationReadiness.push(`${ready?.status ?? 'none'}:${ready?.reason ?? ''}`);
      if (ready?.status === 'True' && !rolledOut(statefulSet)) {
        violations.push({ revision: event.revision, ready, statefulSetGeneration: statefulSet.metadata.generation, statefulSetStatus: statefulSet.status });
      }
    }

    expect(violations).toEqual([]);
    expect(newGenerationReadiness[0]).toBe('False:WorkersNotReady');
    expect(newGenerationReadiness[newGenerationReadiness.length - 1]).toBe('True:WorkersReady');
    expect(rolledOut(statefulSet)).toBe(true);

    const after = await waitForReady(namespace, name, 2);
    expect(after.status?.observedGeneration).toBe(newGeneration);
    expect(after.status?.plan?.generation).toBe(1);
    const newPods = await waitForRunningPods(namespace, name, 2, newImage);
    const oldUids = new Set(oldPods.map((pod) => pod.metadata.uid));
    expect(newPods.filter((pod) => oldUids.has(pod.metadata.uid))).toEqual([]);
  });

  const invalidSpecs = [
    {
      name: 'zero-experts',
      edit: (manifest: Manifest) => {
        manifest.spec.model.experts = 0;
      },
      field: 'spec.model.experts',
      message: 'spec.model.experts must be a positive integer, got 0',
    },
    {
      name: 'too-many-gpus',
      edit: (manifest: Manifest) => {
        manifest.spec.workers.gpusPerNode = 16;
      },
      field: 'spec.workers.gpusPerNode',
      message: 'spec.workers.gpusPerNode is 16 but no node offers more than 8 nvidia.com/gpu; lower it or add nodes with more GPUs',
    },
    {
      name: 'too-few-slots',
      edit: (manifest: Manifest) => {
        manifest.spec.placement = { ...manifest.spec.placement, slotsPerGpu: 3 };
      },
      field: 'spec.placement.slotsPerGpu',
      message: 'spec.placement.slotsPerGpu is 3: 8 GPUs hold 24 expert instances, fewer than the 64 experts; use at least 8',
    },
  ] as const;

  test.each(invalidSpecs)('invalid spec $name gets InvalidSpec and no children', async (invalid) => {
    const namespace = `invalid-${invalid.name}`;
    await createNamespace(namespace);
    const manifest = exampleManifest();
    manifest.metadata.name = invalid.name;
    invalid.edit(manifest);
    await applyManifest(namespace, manifest);

    const deployment = await waitFor(
      `${namespace}/${invalid.name} to report InvalidSpec`,
      30_000,
      async () => {
        const found = await getDeployment(namespace, invalid.name);
        return condition(found, 'Ready')?.reason === 'InvalidSpec' ? found : undefined;
      },
      async () => (await getDeployment(namespace, invalid.name))?.status,
    );
    const ready = condition(deployment, 'Ready');
    expect(ready?.status).toBe('False');
    expect(ready?.message).toContain(invalid.field);
    expect(condition(deployment, 'Progressing')).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(condition(deployment, 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(deployment.status?.observedGeneration).toBe(deployment.metadata.generation);
    expect(deployment.status?.plan).toBeUndefined();

    // Reconciles of the deployment and of its (absent) children have settled by now.
    await sleep(2_000);
    for (const [kind, path] of Object.entries(childPaths(namespace, invalid.name))) {
      expect({ kind, status: (await api().get(path)).status }).toEqual({ kind, status: 404 });
    }
    const warnings = (await listEvents(namespace)).filter((event) => event.type === 'Warning');
    expect(warnings.map((event) => [event.reason, event.regarding.kind, event.regarding.name])).toEqual([['InvalidSpec', 'MoEDeployment', invalid.name]]);
    expect(warnings[0]?.note).toBe(ready?.message);

    // The whole message: every violation, each naming its field.
    expect(ready?.message).toBe(invalid.message);
  });

  test('deleting a deployment garbage-collects its children', async () => {
    const namespace = 'owner-gc';
    const name = 'collected';
    await createNamespace(namespace);
    await applyManifest(namespace, smallManifest(name));
    onTestFinished(() => deleteDeployments(namespace));
    const paths = childPaths(namespace, name);
    const deployment = await waitFor(`the children of ${namespace}/${name}`, READY_TIMEOUT_MS, async () => {
      for (const path of Object.values(paths)) {
        if ((await api().get(path)).status !== 200) return undefined;
      }
      return getDeployment(namespace, name);
    });
    for (const path of Object.values(paths)) {
      expect((await getObject<{ metadata: Meta }>(path))?.metadata.ownerReferences).toEqual([controllerReference(deployment)]);
    }
    await waitForRunningPods(namespace, name, 2, EXAMPLE_IMAGE);

    await kubectl(['delete', 'moedeployment', name, `--namespace=${namespace}`]);
    await waitForChildrenGone(namespace, name);
    await waitFor(`the worker pods of ${namespace}/${name} to be deleted`, GONE_TIMEOUT_MS, async () =>
      (await listPods(namespace, name)).length === 0 ? true : undefined,
    );

    // The operator has no delete permission and must not re-create what garbage collection removed.
    await sleep(2_000);
    for (const [kind, path] of Object.entries(paths)) {
      expect({ kind, status: (await api().get(path)).status }).toEqual({ kind, status: 404 });
    }
  });

  test('restart writes nothing when nothing changed', async () => {
    const namespace = 'restart-quiet';
    await createNamespace(namespace);
    onTestFinished(() => deleteDeployments(namespace));
    // One deployment without a control loop and one whose loop has run a round. The loop scrapes
    // no router here (the endpoints file is empty), so its rounds end with "no-data".
    const quiet = smallManifest('quiet', 1);
    const observed = smallManifest('observed', 1);
    observed.spec.rebalance = { ...observed.spec.rebalance, mode: 'Observe', intervalSeconds: 15 };
    await applyManifest(namespace, quiet);
    await applyManifest(namespace, observed);
    await waitForReady(namespace, 'quiet', 2);
    await waitForReady(namespace, 'observed', 2);
    const withRound = await waitFor(
      `the first control loop round of ${namespace}/observed`,
      60_000,
      async () => {
        const found = await getDeployment(namespace, 'observed');
        return found?.status?.lastRebalance === undefined ? undefined : found;
      },
    );
    expect(withRound.status?.lastRebalance?.outcome).toBe('no-data');

    const names = ['quiet', 'observed'] as const;
    const paths = Object.fromEntries(
      names.flatMap((name) => [
        [`${name} MoEDeployment`, deploymentPath(namespace, name)],
        ...Object.entries(childPaths(namespace, name)).map(([kind, path]) => [`${name} ${kind}`, path]),
      ]),
    ) as Record<string, string>;
    const readVersions = async (): Promise<Record<string, string | undefined>> =>
      Object.fromEntries(
        await Promise.all(Object.entries(paths).map(async ([label, path]) => [label, (await getObject<{ metadata: Meta }>(path))?.metadata.resourceVersion])),
      ) as Record<string, string | undefined>;
    const versionsBefore = await readVersions();
    const statusBefore = (await getDeployment(namespace, 'observed'))?.status;

    const restarted = await restartMainOperator();
    // Well inside every loop's interval (15 s here, 60 s for the example), so no round has run in the new process.
    await sleep(4_000);

    const metrics = await restarted.metrics();
    const versionsAfter = await readVersions();
    const statusAfter = (await getDeployment(namespace, 'observed'))?.status;

    expect(metricValue(metrics, 'grace_moe_operator_leader')).toBe(1);
    expect(metricValue(metrics, 'grace_moe_operator_reconcile_total', { result: 'success' })).toBeGreaterThan(0);
    expect(metricValue(metrics, 'grace_moe_operator_reconcile_total', { result: 'error' })).toBe(0);
    // Soft assertions, so that a failure lists every write and every rewritten object.
    expect.soft(statusAfter).toEqual(statusBefore);
    expect.soft(metricValue(metrics, 'grace_moe_operator_api_requests_total', { verb: 'apply' })).toBe(0);
    expect.soft(metricValue(metrics, 'grace_moe_operator_api_requests_total', { verb: 'apply_status' })).toBe(0);
    for (const [label, version] of Object.entries(versionsBefore)) {
      expect.soft({ object: label, resourceVersion: versionsAfter[label] }).toEqual({ object: label, resourceVersion: version });
    }
  });

  test('settled deployment gets no status apply', async () => {
    // The restart case above counts every deployment in the cluster, and a changed status is one
    // explanation for a write there. Here one operator scoped to one namespace reconciles a single
    // Ready deployment without a control loop, so that any apply it sends is redundant.
    const namespace = 'settled';
    const name = 'settled';
    await createNamespace(namespace);
    onTestFinished(async () => {
      await deleteDeployments(namespace);
      await ensureMainOperator();
    });
    await applyManifest(namespace, smallManifest(name, 1));
    await waitForReady(namespace, name, 2);
    const paths = { MoEDeployment: deploymentPath(namespace, name), ...childPaths(namespace, name) };
    const readVersions = async (): Promise<Record<string, string | undefined>> =>
      Object.fromEntries(
        await Promise.all(Object.entries(paths).map(async ([kind, path]) => [kind, (await getObject<{ metadata: Meta }>(path))?.metadata.resourceVersion])),
      ) as Record<string, string | undefined>;
    const versionsBefore = await readVersions();

    const exit = await mainOperator().stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    operator = undefined;
    const scoped = await startOperator([
      `--kubeconfig=${operatorKubeconfig}`,
      `--namespace=${namespace}`,
      '--leader-election=false',
      '--host=127.0.0.1',
      '--port=0',
      `--endpoints-file=${emptyEndpointsFile}`,
    ]);
    onTestFinished(async () => {
      await scoped.stop('SIGTERM');
    });
    await waitUntilSynced(scoped);
    await sleep(3_000);

    const metrics = await scoped.metrics();
    expect(metricValue(metrics, 'grace_moe_operator_reconcile_total', { result: 'success' })).toBeGreaterThan(0);
    expect(metricValue(metrics, 'grace_moe_operator_reconcile_total', { result: 'error' })).toBe(0);
    expect(await readVersions()).toEqual(versionsBefore);
    expect(metricValue(metrics, 'grace_moe_operator_api_requests_total', { verb: 'apply' })).toBe(0);
    expect(metricValue(metrics, 'grace_moe_operator_api_requests_total', { verb: 'apply_status' })).toBe(0);
  });

  test('missing RBAC rule blocks the deployment', async () => {
    const namespace = 'rbac-test';
    const account = 'grace-moe-operator-rbac-test';
    const roleName = 'grace-moe-operator-rbac-test';
    const name = 'limited';

    const rbacDocuments = parseAllDocuments(readFileSync(RBAC_PATH, 'utf8')).map((document) => document.toJS() as { kind: string; rules?: object[] });
    const clusterRole = rbacDocuments.find((document) => document.kind === 'ClusterRole');
    if (clusterRole?.rules === undefined) throw new Error(`${RBAC_PATH} has no ClusterRole with rules`);
    const fullRules = clusterRole.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    // The same rules without create and patch on configmaps; services keep theirs.
    const withoutConfigMapWrites = fullRules.flatMap((rule) => {
      if (!rule.resources.includes('configmaps')) return [rule];
      const others = rule.resources.filter((resource) => resource !== 'configmaps');
      return [
        ...(others.length > 0 ? [{ ...rule, resources: others }] : []),
        { ...rule, resources: ['configmaps'], verbs: rule.verbs.filter((verb) => verb !== 'create' && verb !== 'patch') },
      ];
    });
    expect(withoutConfigMapWrites).not.toEqual(fullRules);
    const role = (rules: object[]): object => ({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: roleName }, rules });

    await createNamespace(namespace);
    await kubectl(['create', 'serviceaccount', account, `--namespace=${namespace}`]);
    await kubectl(['apply', '--filename=-'], { stdin: JSON.stringify(role(withoutConfigMapWrites)) });
    await kubectl(['create', 'clusterrolebinding', roleName, `--clusterrole=${roleName}`, `--serviceaccount=${namespace}:${account}`]);
    const kubeconfig = await cluster().kubeconfigForToken(await cluster().tokenFor(namespace, account));
    const denied = await cluster().kubectl(['auth', 'can-i', 'create', 'configmaps', `--namespace=${namespace}`], { kubeconfig });
    expect(denied.stdout.trim()).toBe('no');

    // The main operator watches every namespace; it stays stopped so that only the limited one acts here.
    // onTestFinished callbacks run in reverse order: the limited operator stops before the main one restarts.
    onTestFinished(async () => {
      await deleteDeployments(namespace);
      await ensureMainOperator();
    });
    const exit = await mainOperator().stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    operator = undefined;
    const limited = await startOperator([
      `--kubeconfig=${kubeconfig}`,
      `--namespace=${namespace}`,
      '--leader-election=false',
      '--host=127.0.0.1',
      '--port=0',
      `--endpoints-file=${emptyEndpointsFile}`,
      '--retry-cap-ms=2000',
    ]);
    onTestFinished(async () => {
      await limited.stop('SIGTERM');
    });
    await waitUntilSynced(limited);
    await applyManifest(namespace, smallManifest(name));

    const paths = childPaths(namespace, name);
    const quietUntil = Date.now() + QUIET_MS;
    while (Date.now() < quietUntil) {
      expect((await api().get(paths.ConfigMap)).status).toBe(404);
      expect(condition(await getDeployment(namespace, name), 'Ready')?.status).not.toBe('True');
      await sleep(500);
    }
    expect((await api().get(paths.StatefulSet)).status).toBe(404);
    const failures = limited.logRecords().filter((record) => record.msg === 'reconcile failed; retrying with backoff');
    expect(failures.length).toBeGreaterThan(0);
    const message = String((failures[0]?.['err'] as { message?: unknown } | undefined)?.message);
    expect(message).toContain('403 Forbidden');
    expect(message).toContain(`cannot patch resource "configmaps"`);
    expect(metricValue(await limited.metrics(), 'grace_moe_operator_reconcile_total', { result: 'error' })).toBeGreaterThan(0);

    // With the full rules, the same process succeeds on its next retry.
    await kubectl(['apply', '--filename=-'], { stdin: JSON.stringify(role(fullRules)) });
    const ready = await waitForReady(namespace, name, 2);
    expect(planOf(await getObject<ConfigMapJson>(paths.ConfigMap)).generation).toBe(1);
    expect(ready.status?.plan?.generation).toBe(1);
    expect(await limited.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  test('scale subresource resizes workers and re-plans', async () => {
    const namespace = 'models';
    const name = EXAMPLE_NAME;
    await kubectl(['scale', `--namespace=${namespace}`, `moedeployment/${name}`, '--replicas=3']);

    const deployment = await waitForReady(namespace, name, 3);
    expect(deployment.spec.workers.nodes).toBe(3);
    expect(deployment.status?.replicas).toBe(3);
    expect(deployment.status?.readyReplicas).toBe(3);
    expect(deployment.status?.plan?.generation).toBe(2);
    expect(deployment.status?.plan?.topology).toBe('3x4x10');

    const paths = childPaths(namespace, name);
    const statefulSet = await getObject<StatefulSetJson>(paths.StatefulSet);
    expect(statefulSet?.spec.replicas).toBe(3);
    expect(statefulSet?.status?.readyReplicas).toBe(3);
    const plan = planOf(await getObject<ConfigMapJson>(paths.ConfigMap));
    expect(plan.generation).toBe(2);
    expect(plan.topology).toEqual({ nodes: 3, gpusPerNode: 4, slotsPerGpu: 10 });

    const pods = await waitForRunningPods(namespace, name, 3, EXAMPLE_IMAGE);
    expect(new Set(pods.map((pod) => pod.spec.nodeName)).size).toBe(3);

    const scale = await getObject<{ spec: { replicas: number }; status: { replicas: number; selector: string } }>(`${deploymentPath(namespace, name)}/scale`);
    expect(scale?.spec.replicas).toBe(3);
    expect(scale?.status.replicas).toBe(3);
    expect(scale?.status.selector).toBe(`${DEPLOYMENT_LABEL}=${name}`);

    const published = (await listEvents(namespace))
      .filter((event) => event.reason === 'PlanPublished')
      .map((event) => event.note)
      .sort();
    expect(published).toEqual([
      `plan generation 1 (contiguous) published in ConfigMap ${name}-plan`,
      `plan generation 2 (contiguous) published in ConfigMap ${name}-plan`,
    ]);
  });

  test('restart after SIGKILL catches up on missed changes', async () => {
    const namespace = 'restart-watch';
    await createNamespace(namespace);
    onTestFinished(async () => {
      await deleteDeployments(namespace);
      await ensureMainOperator();
    });
    await applyManifest(namespace, smallManifest('deleted-while-down', 1));
    await waitForReady(namespace, 'deleted-while-down', 2);

    const killed = await mainOperator().stop('SIGKILL');
    expect(killed).toEqual({ code: null, signal: 'SIGKILL' });
    operator = undefined;

    await kubectl(['delete', 'moedeployment', 'deleted-while-down', `--namespace=${namespace}`]);
    await applyManifest(namespace, smallManifest('created-while-down', 1));
    await waitForChildrenGone(namespace, 'deleted-while-down');

    // The killed process kept the lease; the new one takes it over once it expires.
    await restartMainOperator();
    const created = await waitForReady(namespace, 'created-while-down', 2);
    expect(created.status?.plan?.generation).toBe(1);
    for (const path of Object.values(childPaths(namespace, 'created-while-down'))) {
      expect((await getObject<{ metadata: Meta }>(path))?.metadata.ownerReferences).toEqual([controllerReference(created)]);
    }

    await sleep(2_000);
    for (const [kind, path] of Object.entries(childPaths(namespace, 'deleted-while-down'))) {
      expect({ kind, status: (await api().get(path)).status }).toEqual({ kind, status: 404 });
    }
  });

  test('Observe loop reports a round from live routers', async () => {
    const namespace = 'observe-loop';
    const name = 'loopback';
    const nodes = 2;
    const gpusPerNode = 4;
    await createNamespace(namespace);
    onTestFinished(() => deleteDeployments(namespace));
    onTestFinished(() => stopServices());
    const manifest = exampleManifest();
    manifest.metadata.name = name;
    manifest.spec.rebalance = { ...manifest.spec.rebalance, mode: 'Off' };
    await applyManifest(namespace, manifest);
    await waitForReady(namespace, name, nodes);

    // Routers serve the plan the operator published; engines replay tokens through them.
    const planText = (await getObject<ConfigMapJson>(childPaths(namespace, name).ConfigMap))?.data?.['plan.json'];
    if (planText === undefined) throw new Error('the plan ConfigMap has no plan.json');
    const planFile = join(workDir, 'observe-plan.json');
    await writeFile(planFile, planText);
    const routerUrls = await Promise.all(
      Array.from({ length: nodes }, (_, node) =>
        startService(`router ${node}`, ['router', '--host', '127.0.0.1', '--port', '0', '--table-file', planFile, '--long-poll-max-ms', '2000']),
      ),
    );
    const enginePorts = await freePorts(nodes);
    const engineUrls = enginePorts.map((port) => `http://127.0.0.1:${port}`);
    await Promise.all(
      engineUrls.map((_, node) =>
        startService(`engine ${node}`, [
          'engine',
          '--node', String(node),
          '--topology', `${nodes}x${gpusPerNode}`,
          '--peers', engineUrls.join(','),
          '--router-url', routerUrls[node] as string,
          '--host', '127.0.0.1',
          '--port', String(enginePorts[node]),
          '--hidden-size', '256',
          '--compute-micros-per-pair', '1',
          '--long-poll-wait-ms', '1000',
        ]),
      ),
    );
    const drive = await runCliProcess([
      'drive', '--engines', engineUrls.join(','), '--tokens', '1024', '--batch-tokens', '128', '--rate', '100000', '--concurrency', '2', '--format', 'json',
    ]);
    expect(drive.stderr).toBe('');
    expect(drive.code).toBe(0);
    expect((JSON.parse(drive.stdout) as { tokens: { completed: number } }).tokens.completed).toBe(1024);

    const endpointsFile = join(workDir, 'observe-endpoints.json');
    const endpoints = routerUrls.map((routerUrl, node) => ({ node, routerUrl, engineUrl: engineUrls[node] }));
    await writeFile(endpointsFile, JSON.stringify({ [`${namespace}/${name}`]: endpoints }));
    await restartMainOperator(endpointsFile);

    await kubectl(['patch', 'moedeployment', name, `--namespace=${namespace}`, '--type=merge', `--patch=${JSON.stringify({ spec: { rebalance: { mode: 'Observe', intervalSeconds: 5 } } })}`]);
    const observed = await waitFor(
      `a control loop round in the status of ${namespace}/${name}`,
      60_000,
      async () => {
        const found = await getDeployment(namespace, name);
        return found?.status?.lastRebalance === undefined ? undefined : found;
      },
      async () => (await getDeployment(namespace, name))?.status,
    );
    const last = observed.status?.lastRebalance;
    expect(['observed', 'no-gain']).toContain(last?.outcome);
    expect(last?.reason).toMatch(/\S/);
    expect(last?.generation).toBe(1);
    expect(typeof last?.predictedGain).toBe('number');
    expect(condition(observed, 'Rebalancing')).toMatchObject({ status: 'False', reason: 'Observing' });
    expect(observed.status?.plan?.generation).toBe(1);

    for (const routerUrl of routerUrls) {
      const table = (await (await fetch(`${routerUrl}/v1/routing-table`)).json()) as { generation: number };
      expect(table.generation).toBe(1);
    }
    const configMapPlan = planOf(await getObject<ConfigMapJson>(childPaths(namespace, name).ConfigMap));
    expect(configMapPlan.generation).toBe(1);

    const metrics = await mainOperator().metrics();
    expect(metricValue(metrics, 'grace_moe_control_scrape_errors_total')).toBe(0);
    expect(metricValue(metrics, 'grace_moe_control_rounds_total', { outcome: last?.outcome ?? '' })).toBeGreaterThan(0);
    expect(metricValue(metrics, 'grace_moe_control_rollouts_total', { outcome: 'succeeded' })).toBe(0);
  });
});

/**
 * The Helm chart and manifests/install.yaml on a real control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler and kwok; see test/support/control-plane.ts).
 *
 * No container runtime exists here: kwok marks pods Running and Ready without running them. So the
 * operator itself runs as a local process, authenticated with a token of the ServiceAccount that
 * the chart created, and the chart's RBAC is what the API server enforces on it.
 *
 * The tests share one cluster and run in order: install, upgrade, uninstall, then install.yaml on
 * the cluster emptied of the chart's objects and CRD.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { startControlPlane, type ControlPlane, type ToolOptions, type ToolRun } from '../support/control-plane.js';
import { CLI_PATH, requireBuiltCli } from '../support/cli-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHART_DIR = join(ROOT, 'charts', 'grace-moe');
const CRD_TEMPLATE = join('templates', 'crds', 'moedeployments.grace-moe.io.yaml');
const CRD_NAME = 'moedeployments.grace-moe.io';
const RELEASE = 'grace-moe';
// The chart's full name: the release name already contains the chart name.
const FULL_NAME = 'grace-moe';
const RELEASE_NAMESPACE = 'grace-moe-chart';
const MODEL_NAMESPACE = 'models';
const EXAMPLE_FILE = join(ROOT, 'manifests', 'examples', 'olmoe-1b-7b.yaml');
const EXAMPLE_NAME = 'olmoe-1b-7b';
const PROBE_NAME = 'notes-probe';
const NOTES = 'pinned to the spring release';
// The examples ask for 2 nodes of 2, 4 or 8 GPUs; nodes of 8 fit every example.
const NODE_COUNT = 2;
const GPUS_PER_NODE = 8;
const READY_TIMEOUT_SECONDS = 150;
const OPERATOR_READY_TIMEOUT_MS = 60_000;
const OPERATOR_STOP_TIMEOUT_MS = 45_000;
const POLL_INTERVAL_MS = 500;

interface Condition {
  readonly type: string;
  readonly status: string;
  readonly reason?: string;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  rules?: unknown[];
  subjects?: unknown[];
  roleRef?: unknown;
}

let controlPlane: ControlPlane | undefined;
let nodeNames: string[] = [];
let operator: LocalOperator | undefined;
let workDir = '';

function cluster(): ControlPlane {
  if (controlPlane === undefined) {
    throw new Error('the control plane did not start; see the beforeAll error');
  }
  return controlPlane;
}

function describeRun(args: readonly string[], run: ToolRun): string {
  return `"${args.join(' ')}" exited ${String(run.code)}:\n${run.stderr}${run.stdout}`;
}

async function kubectlOk(args: readonly string[], options?: ToolOptions): Promise<ToolRun> {
  const run = await cluster().kubectl(args, options);
  expect(run.code, describeRun(args, run)).toBe(0);
  return run;
}

async function helmOk(args: readonly string[]): Promise<ToolRun> {
  const run = await cluster().helm(args);
  expect(run.code, describeRun(args, run)).toBe(0);
  return run;
}

async function getJson<T = KubeObject>(args: readonly string[], options?: ToolOptions): Promise<T> {
  const run = await kubectlOk(['get', ...args, '--output=json'], options);
  return JSON.parse(run.stdout) as T;
}

/** Returns true when `kubectl get` finds the object and false on NotFound. Any other error fails the test. */
async function exists(args: readonly string[]): Promise<boolean> {
  const run = await cluster().kubectl(['get', ...args, '--output=name']);
  if (run.code === 0) return true;
  expect(run.stderr, describeRun(args, run)).toContain('NotFound');
  return false;
}

async function pollUntil(description: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

function conditionOf(object: KubeObject, type: string): Condition | undefined {
  return ((object.status?.['conditions'] ?? []) as Condition[]).find((condition) => condition.type === type);
}

/** Reads the first document of a manifest that has the given kind. */
function manifestObject(path: string, kind: string): KubeObject {
  const objects = parseAllDocuments(readFileSync(path, 'utf8')).map((document) => document.toJS() as KubeObject | null);
  const found = objects.find((object) => object?.kind === kind);
  if (found === undefined || found === null) throw new Error(`${path} contains no ${kind}`);
  return found;
}

/** Returns the example MoEDeployment as JSON, renamed to PROBE_NAME and with spec.notes set. */
function probeWithNotes(): string {
  const probe = parseYaml(readFileSync(EXAMPLE_FILE, 'utf8')) as KubeObject & { spec: Record<string, unknown> };
  probe.metadata = { name: PROBE_NAME, namespace: MODEL_NAMESPACE };
  probe.spec['notes'] = NOTES;
  return JSON.stringify(probe);
}

// ---- The operator as a local process ---------------------------------------------------------

interface LocalOperator {
  readonly port: number;
  readonly podName: string;
  readonly logPath: string;
  readonly exited: Promise<number | null>;
  log(): string;
  /** Sends SIGTERM and returns the exit code; SIGKILL after OPERATOR_STOP_TIMEOUT_MS. */
  stop(): Promise<number | null>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const probe = request(url, { timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    probe.on('timeout', () => probe.destroy());
    probe.on('error', () => resolve(0));
    probe.end();
  });
}

/**
 * Starts `grace-moe operator` with the given kubeconfig. The rebalance loop gets loopback router
 * and engine URLs on a closed port, so it never resolves pod DNS names or leaves the machine.
 */
async function startLocalOperator(kubeconfig: string, leaseNamespace: string): Promise<LocalOperator> {
  requireBuiltCli();
  const port = await freePort();
  const closedPort = await freePort();
  const endpointsFile = join(workDir, 'endpoints.json');
  const loopback = `http://127.0.0.1:${closedPort}`;
  const endpoints = Array.from({ length: NODE_COUNT }, (_, node) => ({ node, routerUrl: loopback, engineUrl: loopback }));
  await writeFile(endpointsFile, JSON.stringify({ [`${MODEL_NAMESPACE}/${EXAMPLE_NAME}`]: endpoints }));

  // Settings come from the flags alone: no GRACE_MOE_* or in-cluster variable of this shell leaks in.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('GRACE_MOE_') && !name.startsWith('KUBERNETES_')),
  );
  const podName = 'local-operator';
  const logPath = join(workDir, 'operator.log');
  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [
        CLI_PATH, 'operator',
        `--kubeconfig=${kubeconfig}`,
        `--lease-namespace=${leaseNamespace}`,
        `--pod-name=${podName}`,
        '--host=127.0.0.1',
        `--port=${port}`,
        `--endpoints-file=${endpointsFile}`,
        '--log-level=info',
      ],
      { stdio: ['ignore', logFd, logFd], env },
    );
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => resolve(code));
    child.on('error', () => resolve(null));
  });
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });

  return {
    port,
    podName,
    logPath,
    exited,
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      if (exitCode !== undefined) return exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), OPERATOR_STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'grace-moe-packaging-'));
  controlPlane = await startControlPlane();
  nodeNames = await controlPlane.createFakeGpuNodes(NODE_COUNT, GPUS_PER_NODE);
  await kubectlOk(['create', 'namespace', MODEL_NAMESPACE]);
});

afterAll(async () => {
  await operator?.stop();
  await controlPlane?.stop();
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

describe('helm chart on a real control plane', () => {
  test('helm install creates the operator objects', async () => {
    await helmOk(['install', RELEASE, CHART_DIR, `--namespace=${RELEASE_NAMESPACE}`, '--create-namespace']);
    await kubectlOk(['wait', '--for=condition=Established', `crd/${CRD_NAME}`, '--timeout=60s']);
    await kubectlOk(['wait', '--for=condition=Available', `deployment/${FULL_NAME}`, `--namespace=${RELEASE_NAMESPACE}`, '--timeout=120s'], {
      timeoutMs: 150_000,
    });

    const releases = JSON.parse((await helmOk(['list', `--namespace=${RELEASE_NAMESPACE}`, '--output=json'])).stdout) as { name: string; status: string; chart: string }[];
    expect(releases.map(({ name, status, chart }) => ({ name, status, chart }))).toEqual([{ name: RELEASE, status: 'deployed', chart: 'grace-moe-0.1.0' }]);

    const deployment = await getJson<KubeObject & { spec: { template: { spec: { serviceAccountName: string } } } }>([
      'deployment', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`,
    ]);
    expect(deployment.spec.template.spec.serviceAccountName).toBe(FULL_NAME);
    expect(deployment.status?.['readyReplicas']).toBe(1);
    expect(deployment.status?.['availableReplicas']).toBe(1);

    const pods = await getJson<{ items: (KubeObject & { spec: { nodeName: string; serviceAccountName: string } })[] }>([
      'pods', `--namespace=${RELEASE_NAMESPACE}`, `--selector=app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=operator`,
    ]);
    expect(pods.items).toHaveLength(1);
    const pod = pods.items[0] as (typeof pods.items)[number];
    expect(pod.status?.['phase']).toBe('Running');
    expect(conditionOf(pod, 'Ready')?.status).toBe('True');
    expect(nodeNames).toContain(pod.spec.nodeName);
    expect(pod.spec.serviceAccountName).toBe(FULL_NAME);

    const manifestRbac = join(ROOT, 'manifests', 'rbac.yaml');
    const clusterRole = await getJson(['clusterrole', FULL_NAME]);
    const role = await getJson(['role', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`]);
    expect(clusterRole.rules).toEqual(manifestObject(manifestRbac, 'ClusterRole').rules);
    expect(role.rules).toEqual(manifestObject(manifestRbac, 'Role').rules);
    const subjects = [{ kind: 'ServiceAccount', name: FULL_NAME, namespace: RELEASE_NAMESPACE }];
    expect((await getJson(['clusterrolebinding', FULL_NAME])).subjects).toEqual(subjects);
    expect((await getJson(['rolebinding', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`])).subjects).toEqual(subjects);
    expect(await exists(['serviceaccount', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`])).toBe(true);

    const service = await getJson<KubeObject & { spec: { ports: { name: string; port: number }[]; selector: Record<string, string> } }>([
      'service', `${FULL_NAME}-metrics`, `--namespace=${RELEASE_NAMESPACE}`,
    ]);
    expect(service.spec.ports.map(({ name, port }) => ({ name, port }))).toEqual([{ name: 'http-metrics', port: 8080 }]);
    expect(service.spec.selector['app.kubernetes.io/instance']).toBe(RELEASE);
  });

  test('chart ServiceAccount has least privilege', async () => {
    const kubeconfig = await cluster().kubeconfigForToken(await cluster().tokenFor(RELEASE_NAMESPACE, FULL_NAME));
    const canI = async (...args: string[]): Promise<string> => (await cluster().kubectl(['auth', 'can-i', ...args], { kubeconfig })).stdout.trim();

    expect(await canI('watch', 'moedeployments.grace-moe.io', '--all-namespaces')).toBe('yes');
    expect(await canI('patch', 'moedeployments.grace-moe.io', '--subresource=status', `--namespace=${MODEL_NAMESPACE}`)).toBe('yes');
    expect(await canI('patch', 'statefulsets.apps', `--namespace=${MODEL_NAMESPACE}`)).toBe('yes');
    expect(await canI('update', 'leases.coordination.k8s.io', `--namespace=${RELEASE_NAMESPACE}`)).toBe('yes');
    expect(await canI('update', 'leases.coordination.k8s.io', `--namespace=${MODEL_NAMESPACE}`)).toBe('no');
    expect(await canI('delete', 'statefulsets.apps', `--namespace=${MODEL_NAMESPACE}`)).toBe('no');
    expect(await canI('patch', 'moedeployments.grace-moe.io', `--namespace=${MODEL_NAMESPACE}`)).toBe('no');
    expect(await canI('get', 'secrets', `--namespace=${RELEASE_NAMESPACE}`)).toBe('no');
  });

  test('example becomes Ready under chart RBAC', async () => {
    const token = await cluster().tokenFor(RELEASE_NAMESPACE, FULL_NAME);
    const kubeconfig = await cluster().kubeconfigForToken(token);
    operator = await startLocalOperator(kubeconfig, RELEASE_NAMESPACE);
    const running = operator;
    await pollUntil('the local operator /readyz', OPERATOR_READY_TIMEOUT_MS, async () => (await httpStatus(`http://127.0.0.1:${running.port}/readyz`)) === 200);

    await kubectlOk(['apply', `--namespace=${MODEL_NAMESPACE}`, `--filename=${EXAMPLE_FILE}`]);
    const waited = await cluster().kubectl(
      ['wait', '--for=condition=Ready', `moedeployment/${EXAMPLE_NAME}`, `--namespace=${MODEL_NAMESPACE}`, `--timeout=${READY_TIMEOUT_SECONDS}s`],
      { timeoutMs: (READY_TIMEOUT_SECONDS + 30) * 1000 },
    );
    expect(waited.code, `${describeRun(['wait'], waited)}\noperator log:\n${running.log().slice(-4000)}`).toBe(0);

    const deployment = await getJson(['moedeployment', EXAMPLE_NAME, `--namespace=${MODEL_NAMESPACE}`]);
    const status = deployment.status ?? {};
    expect(conditionOf(deployment, 'Ready')).toMatchObject({ status: 'True', reason: 'WorkersReady' });
    expect(status['observedGeneration']).toBe(deployment.metadata.generation);
    expect(status['replicas']).toBe(2);
    expect(status['readyReplicas']).toBe(2);
    expect(status['plan']).toMatchObject({ generation: 1 });

    const statefulSet = await getJson(['statefulset', EXAMPLE_NAME, `--namespace=${MODEL_NAMESPACE}`]);
    expect(statefulSet.status?.['readyReplicas']).toBe(2);
    const pods = await getJson<{ items: (KubeObject & { spec: { nodeName: string } })[] }>([
      'pods', `--namespace=${MODEL_NAMESPACE}`, `--selector=${Object.entries((statefulSet.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels).map(([key, value]) => `${key}=${value}`).join(',')}`,
    ]);
    expect(new Set(pods.items.map((pod) => pod.spec.nodeName))).toEqual(new Set(nodeNames));
    expect(await exists(['service', `${EXAMPLE_NAME}-workers`, `--namespace=${MODEL_NAMESPACE}`])).toBe(true);
    expect(await exists(['poddisruptionbudget', EXAMPLE_NAME, `--namespace=${MODEL_NAMESPACE}`])).toBe(true);
    const planMap = await getJson<KubeObject & { data: Record<string, string> }>(['configmap', `${EXAMPLE_NAME}-plan`, `--namespace=${MODEL_NAMESPACE}`]);
    expect((JSON.parse(planMap.data['plan.json'] ?? '{}') as { generation?: number }).generation).toBe(1);

    // Events go through events.k8s.io, which the ClusterRole allows to create.
    const events = await getJson<{ items: { reason: string; regarding: { name: string } }[] }>([
      'events.events.k8s.io', `--namespace=${MODEL_NAMESPACE}`, '--field-selector=reason=PlanPublished',
    ]);
    expect(events.items.map((event) => event.regarding.name)).toEqual([EXAMPLE_NAME]);

    // The operator campaigned on the Lease in its own namespace, which only the chart's Role allows.
    const lease = await getJson<KubeObject & { spec: { holderIdentity: string } }>(['lease', 'grace-moe-operator', `--namespace=${RELEASE_NAMESPACE}`]);
    expect(lease.spec.holderIdentity.startsWith(`${running.podName}-`)).toBe(true);

    const log = running.log();
    expect(log).toContain('"msg":"rebalance loop started"');
    expect(log).not.toMatch(/forbidden/i);
    expect(log).not.toContain('"statusCode":403');
    expect(log).not.toContain('event not recorded');
    expect(await running.stop()).toBe(0);
  });

  test('helm upgrade applies a new CRD field', async () => {
    // Before the upgrade, the API server does not know spec.notes: strict validation rejects it
    // and, without validation, pruning drops it.
    const rejected = await cluster().kubectl(['apply', '--filename=-'], { stdin: probeWithNotes() });
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toContain('unknown field "spec.notes"');
    await kubectlOk(['apply', '--validate=false', '--filename=-'], { stdin: probeWithNotes() });
    const pruned = await getJson(['moedeployment', PROBE_NAME, `--namespace=${MODEL_NAMESPACE}`]);
    expect(pruned.spec?.['model']).toBeDefined();
    expect(pruned.spec?.['notes']).toBeUndefined();

    // A copy of the chart whose CRD template gains spec.notes, with the next patch version.
    const chartCopy = join(workDir, 'grace-moe');
    await cp(CHART_DIR, chartCopy, { recursive: true });
    const templatePath = join(chartCopy, CRD_TEMPLATE);
    const template = await readFile(templatePath, 'utf8');
    const specProperties = /^( {12})spec:\n(\1 {2}[^\n]*\n)*?(\1 {2})properties:\n/m;
    expect(template).toMatch(specProperties);
    await writeFile(templatePath, template.replace(specProperties, (block, _indent, _line, inner: string) => `${block}${inner}  notes:\n${inner}    type: string\n`));
    const chartYamlPath = join(chartCopy, 'Chart.yaml');
    const chartYaml = await readFile(chartYamlPath, 'utf8');
    expect(chartYaml).toMatch(/^version: 0\.1\.0$/m);
    await writeFile(chartYamlPath, chartYaml.replace(/^version: 0\.1\.0$/m, 'version: 0.1.1'));

    await helmOk(['upgrade', RELEASE, chartCopy, `--namespace=${RELEASE_NAMESPACE}`]);

    const history = JSON.parse((await helmOk(['history', RELEASE, `--namespace=${RELEASE_NAMESPACE}`, '--output=json'])).stdout) as { revision: number; chart: string; status: string }[];
    expect(history.map(({ revision, chart, status }) => ({ revision, chart, status }))).toEqual([
      { revision: 1, chart: 'grace-moe-0.1.0', status: 'superseded' },
      { revision: 2, chart: 'grace-moe-0.1.1', status: 'deployed' },
    ]);
    const crd = await getJson<KubeObject & { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, unknown> } } } } }[] } }>([
      'crd', CRD_NAME,
    ]);
    expect(crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties['notes']).toEqual({ type: 'string' });
    expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');

    // The apiserver serves the new schema shortly after the CRD update, so the apply is retried.
    let stored: unknown;
    await pollUntil('spec.notes to survive an apply', 30_000, async () => {
      const applied = await cluster().kubectl(['apply', '--filename=-'], { stdin: probeWithNotes() });
      if (applied.code !== 0) return false;
      stored = (await getJson(['moedeployment', PROBE_NAME, `--namespace=${MODEL_NAMESPACE}`])).spec?.['notes'];
      return stored !== undefined;
    });
    expect(stored).toBe(NOTES);
  });

  test('helm uninstall keeps the CRD and MoEDeployments', async () => {
    const uninstalled = await helmOk(['uninstall', RELEASE, `--namespace=${RELEASE_NAMESPACE}`]);
    expect(uninstalled.stdout).toContain(`release "${RELEASE}" uninstalled`);
    await kubectlOk(['wait', '--for=delete', `deployment/${FULL_NAME}`, `--namespace=${RELEASE_NAMESPACE}`, '--timeout=60s']);

    expect(await exists(['crd', CRD_NAME])).toBe(true);
    const kept = await getJson<{ items: KubeObject[] }>(['moedeployments', `--namespace=${MODEL_NAMESPACE}`]);
    expect(kept.items.map((item) => item.metadata.name).sort()).toEqual([EXAMPLE_NAME, PROBE_NAME].sort());
    expect(kept.items.find((item) => item.metadata.name === PROBE_NAME)?.spec?.['notes']).toBe(NOTES);

    expect(await exists(['serviceaccount', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`])).toBe(false);
    expect(await exists(['clusterrole', FULL_NAME])).toBe(false);
    expect(await exists(['clusterrolebinding', FULL_NAME])).toBe(false);
    expect(await exists(['role', FULL_NAME, `--namespace=${RELEASE_NAMESPACE}`])).toBe(false);
    expect(await exists(['service', `${FULL_NAME}-metrics`, `--namespace=${RELEASE_NAMESPACE}`])).toBe(false);
    const releases = JSON.parse((await helmOk(['list', '--all-namespaces', '--output=json'])).stdout) as unknown[];
    expect(releases).toEqual([]);
  });

  test('install.yaml applies server-side to an empty cluster', async () => {
    // Deleting the CRD deletes every MoEDeployment, which leaves no grace-moe object behind.
    await kubectlOk(['delete', 'crd', CRD_NAME, '--wait=true', '--timeout=60s']);
    expect(await exists(['crd', CRD_NAME])).toBe(false);
    expect(await exists(['namespace', 'grace-moe-system'])).toBe(false);
    expect(await exists(['clusterrole', 'grace-moe-operator'])).toBe(false);

    const applied = await kubectlOk(['apply', '--server-side', `--filename=${join(ROOT, 'manifests', 'install.yaml')}`]);
    expect(applied.stdout.trim().split('\n').sort()).toEqual([
      'clusterrole.rbac.authorization.k8s.io/grace-moe-operator serverside-applied',
      'clusterrolebinding.rbac.authorization.k8s.io/grace-moe-operator serverside-applied',
      `customresourcedefinition.apiextensions.k8s.io/${CRD_NAME} serverside-applied`,
      'deployment.apps/grace-moe-operator serverside-applied',
      'namespace/grace-moe-system serverside-applied',
      'role.rbac.authorization.k8s.io/grace-moe-operator serverside-applied',
      'rolebinding.rbac.authorization.k8s.io/grace-moe-operator serverside-applied',
      'serviceaccount/grace-moe-operator serverside-applied',
    ]);

    await kubectlOk(['wait', '--for=condition=Established', `crd/${CRD_NAME}`, '--timeout=60s']);
    const namespaced = ['--namespace=grace-moe-system'];
    for (const object of [
      ['namespace', 'grace-moe-system'],
      ['clusterrole', 'grace-moe-operator'],
      ['clusterrolebinding', 'grace-moe-operator'],
      ['serviceaccount', 'grace-moe-operator', ...namespaced],
      ['role', 'grace-moe-operator', ...namespaced],
      ['rolebinding', 'grace-moe-operator', ...namespaced],
      ['deployment', 'grace-moe-operator', ...namespaced],
    ]) {
      expect(await exists(object), object.join(' ')).toBe(true);
    }
    const installCrd = manifestObject(join(ROOT, 'manifests', 'install.yaml'), 'CustomResourceDefinition');
    const served = await getJson(['crd', CRD_NAME]);
    expect(served.spec?.['versions']).toEqual(installCrd.spec?.['versions']);
    await kubectlOk(['wait', '--for=condition=Available', 'deployment/grace-moe-operator', ...namespaced, '--timeout=120s'], { timeoutMs: 150_000 });
  });
});

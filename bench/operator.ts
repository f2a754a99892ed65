/**
 * Operator benchmark on a real control plane (the binaries of .ci/control-plane/build.sh):
 * 50 MoEDeployments of 4 workers each over 200 fake GPU nodes. It measures the time until every
 * deployment is Ready and the API requests per reconcile, and as a baseline in the same run the
 * time until 50 plain StatefulSets of the same shape (no operator) have every pod ready.
 * Prints Markdown for bench/RESULTS.md.
 *
 * Run: npm run bench:operator
 */
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { startControlPlane, type ControlPlane } from '../test/support/control-plane.js';

const DEPLOYMENTS = 50;
const WORKERS = 4;
const NODES = DEPLOYMENTS * WORKERS;
const GPUS = 8;
const TIMEOUT_MS = 15 * 60_000;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function log(text: string): void {
  process.stdout.write(`${text}\n`);
}
function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

async function kubectlOk(plane: ControlPlane, args: string[], stdin?: string): Promise<string> {
  const run = await plane.kubectl(args, stdin === undefined ? { timeoutMs: 300_000 } : { stdin, timeoutMs: 300_000 });
  if (run.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${run.code}): ${run.stderr}`);
  return run.stdout;
}

async function waitFor(what: string, check: () => Promise<number>, target: number): Promise<number> {
  const started = performance.now();
  let last = -1;
  while (performance.now() - started < TIMEOUT_MS) {
    const value = await check();
    if (value !== last) progress(`${what}: ${value}/${target}`);
    last = value;
    if (value >= target) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`${what} did not reach ${target} within ${TIMEOUT_MS} ms (last ${last})`);
}

function statefulSet(namespace: string, name: string): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace },
    spec: {
      replicas: WORKERS,
      serviceName: name,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          affinity: {
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: name } }, topologyKey: 'kubernetes.io/hostname' }],
            },
          },
          containers: [{ name: 'engine', image: 'engine:1', resources: { limits: { 'nvidia.com/gpu': String(GPUS) } } }],
        },
      },
    },
  };
}

function moeDeployment(namespace: string, name: string): object {
  return {
    apiVersion: 'grace-moe.io/v1alpha1',
    kind: 'MoEDeployment',
    metadata: { name, namespace },
    spec: {
      model: { layers: 26, experts: 64, topK: 6 },
      engine: { image: 'engine:1' },
      workers: { nodes: WORKERS, gpusPerNode: GPUS },
      rebalance: { mode: 'Off' },
    },
  };
}

async function metricSum(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
  return sum;
}

const plane = await startControlPlane();
const operators: ReturnType<typeof spawn>[] = [];
try {
  progress(`creating ${NODES} fake GPU nodes`);
  await plane.createFakeGpuNodes(NODES, GPUS);
  await kubectlOk(plane, ['apply', '--server-side', '-f', fileURLToPath(new URL('../../crds/moedeployments.grace-moe.io.yaml', import.meta.url))]);
  await kubectlOk(plane, ['create', 'namespace', 'baseline']);
  await kubectlOk(plane, ['create', 'namespace', 'models']);

  progress('baseline: plain StatefulSets');
  const baselineDocs = Array.from({ length: DEPLOYMENTS }, (_, i) => JSON.stringify(statefulSet('baseline', `plain-${i}`))).join('\n');
  const baselineStart = performance.now();
  await kubectlOk(plane, ['apply', '-f', '-'], baselineDocs);
  const readyPods = async (namespace: string): Promise<number> => {
    const out = await kubectlOk(plane, ['get', 'pods', '-n', namespace, '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    return out.split('\n').filter((line) => line === 'True').length;
  };
  await waitFor('baseline pods ready', () => readyPods('baseline'), NODES);
  const baselineMs = performance.now() - baselineStart;
  await kubectlOk(plane, ['delete', 'namespace', 'baseline', '--wait=true', '--timeout=300s']);
  await waitFor('baseline pods gone', async () => NODES - (await readyPods('baseline')), NODES);

  progress('operator: MoEDeployments');
  const port = 18_000 + Math.floor(Math.random() * 1000);
  const operator = spawn(process.execPath, [CLI, 'operator', '--kubeconfig', plane.kubeconfigPath, '--leader-election', 'false', '--port', String(port), '--workers', '4', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  operators.push(operator);
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  await waitFor('operator ready', async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? 1 : 0;
    } catch {
      return 0;
    }
  }, 1);
  const docs = Array.from({ length: DEPLOYMENTS }, (_, i) => JSON.stringify(moeDeployment('models', `model-${i}`))).join('\n');
  const operatorStart = performance.now();
  await kubectlOk(plane, ['apply', '-f', '-'], docs);
  const readyDeployments = async (): Promise<number> => {
    const out = await kubectlOk(plane, ['get', 'moedeployments', '-n', 'models', '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    return out.split('\n').filter((line) => line === 'True').length;
  };
  await waitFor('MoEDeployments ready', readyDeployments, DEPLOYMENTS);
  const operatorMs = performance.now() - operatorStart;
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const requests = await metricSum(metricsUrl, 'grace_moe_operator_api_requests_total{');
  const writes =
    (await metricSum(metricsUrl, 'grace_moe_operator_api_requests_total{verb="apply"}')) +
    (await metricSum(metricsUrl, 'grace_moe_operator_api_requests_total{verb="apply_status"}'));
  const reconciles = await metricSum(metricsUrl, 'grace_moe_operator_reconcile_total{');

  log(`Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node.js ${process.version}; Kubernetes ${plane.versions.kubernetes}, KWOK ${plane.versions.kwok}. Command: \`npm run bench:operator\`.`);
  log('');
  log(`| workload | seconds to Ready | ratio to baseline |`);
  log('|---|---|---|');
  log(`| baseline: ${DEPLOYMENTS} plain StatefulSets x ${WORKERS} pods, ${NODES} fake nodes | ${(baselineMs / 1000).toFixed(1)} | 1.00 |`);
  log(`| ${DEPLOYMENTS} MoEDeployments x ${WORKERS} workers through the operator | ${(operatorMs / 1000).toFixed(1)} | ${(operatorMs / baselineMs).toFixed(2)} |`);
  log('');
  log(`Operator API requests: ${requests} in all (watches and lists included), ${writes} writes (apply and status), over ${reconciles} reconciles: ${(requests / reconciles).toFixed(2)} requests and ${(writes / reconciles).toFixed(2)} writes per reconcile.`);
} finally {
  for (const operator of operators) operator.kill('SIGTERM');
  await plane.stop();
}

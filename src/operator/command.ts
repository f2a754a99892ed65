/**
 * `grace-moe operator`: wires the configuration, the Kubernetes client, the controller runtime
 * (informers, work queue, leader election), the MoEDeployment reconciler, the per-deployment
 * rebalance loops and the /metrics, /healthz and /readyz endpoints, then runs until SIGTERM.
 */
import { readFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseFlags } from '../cli/args.js';
import type { Command } from '../cli/command.js';
import { OPERATOR_DEFAULTS, OPERATOR_FLAGS, resolveOperatorConfig } from '../config/operator.js';
import { createControlMetrics } from '../control/metrics.js';
import type { WorkerEndpoint } from '../control/worker-client.js';
import { UsageError } from '../errors.js';
import { createLogger, serveUntilAborted } from '../router/http.js';
import { DEPLOYMENT_LABEL } from './children.js';
import { leaderElectionSettings, moeDeploymentKinds, NODE_CACHE_KIND, parseKey, runController, type ControllerHandle } from './controller.js';
import { keyString } from './kube-types.js';
import { leaderIdentity } from './leader-election.js';
import { buildOperatorApp } from './operator-app.js';
import { clusterDnsResolver, RebalanceManager, type EndpointResolver } from './rebalance.js';
import { MoEDeploymentReconciler } from './reconcile.js';

const d = OPERATOR_DEFAULTS;

const usage = `Usage: grace-moe operator [flags]

Runs the grace-moe operator: it reconciles MoEDeployments into worker StatefulSets, Services,
plan ConfigMaps and PodDisruptionBudgets, writes their status, and runs the rebalance loop of
every deployment in Observe or Auto mode. Every flag can also be set with GRACE_MOE_OPERATOR_<FLAG>.

Flags:
  --kubeconfig FILE            kubeconfig to use (default: in-cluster service account, else ~/.kube/config)
  --namespace NAME             reconcile only this namespace (default: all namespaces)
  --workers N                  reconciles that run at once (default ${d.workers})
  --leader-election true|false elect one active replica on a Lease (default ${d.leaderElection})
  --lease-namespace NAME       namespace of the Lease: the operator's own (required with leader election)
  --lease-name NAME            name of the Lease (default ${d.leaseName})
  --pod-name NAME              this pod's name, for the leader identity (default: the host name)
  --image IMAGE                router sidecar image when a MoEDeployment names none (default ${d.image})
  --endpoints-file FILE        JSON map "namespace/name" -> [{node, routerUrl, engineUrl}] used instead of pod DNS names
  --host ADDRESS               address of /metrics, /healthz and /readyz (default ${d.host})
  --port N                     port of /metrics, /healthz and /readyz (default ${d.portNumber})
  --shutdown-timeout-ms N      time to finish in-flight reconciles on SIGTERM (default ${d.shutdownTimeoutMs})
  --log-level LEVEL            trace, debug, info, warn, error, fatal or silent (default ${d.logLevel})
  Timing flags: --lease-duration-ms, --renew-deadline-ms, --retry-period-ms, --watch-timeout-seconds,
  --idle-timeout-ms, --retry-base-ms, --retry-cap-ms, --watch-retry-cap-ms, --retry-jitter-ratio,
  --request-timeout-ms, --field-manager.
`;

function loadKubeConfig(path: string | null): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (path !== null) kubeConfig.loadFromFile(path);
  else if (process.env.KUBERNETES_SERVICE_HOST) kubeConfig.loadFromCluster();
  else kubeConfig.loadFromDefault();
  return kubeConfig;
}

/** Reads the endpoints file: {"namespace/name": [{node, routerUrl, engineUrl}, ...]}. */
async function fileResolver(path: string): Promise<EndpointResolver> {
  let document: unknown;
  try {
    document = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new UsageError(`--endpoints-file ${path} could not be read as JSON: ${detail}`, { cause: error });
  }
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new UsageError(`--endpoints-file ${path} must hold an object mapping "namespace/name" to endpoint lists`);
  }
  const map = document as Record<string, WorkerEndpoint[]>;
  return (owner) => map[keyString({ namespace: owner.metadata.namespace ?? 'default', name: owner.metadata.name })] ?? [];
}

export const operatorCommand: Command = {
  name: 'operator',
  summary: 'run the Kubernetes operator for MoEDeployments',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('operator', argv, OPERATOR_FLAGS);
    const config = resolveOperatorConfig(values);
    const logger = createLogger('operator', config.logLevel);
    const kubeConfig = loadKubeConfig(config.kubeconfig);
    const resolver = config.endpointsFile === null ? clusterDnsResolver : await fileResolver(config.endpointsFile);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });

    let handle: ControllerHandle<string> | null = null;
    const rebalance = new RebalanceManager({
      resolver,
      enqueue: (key) => handle?.enqueue(parseKey(key)),
      log: {
        info: (fields, message) => logger.info(fields, message),
        warn: (fields, message) => logger.warn(fields, message),
        error: (fields, message) => logger.error(fields, message),
      },
      metrics: createControlMetrics(registry),
      now: () => Date.now(),
      sleep: (ms, signal) =>
        new Promise((resolve, reject) => {
          if (signal?.aborted) return reject(signal.reason);
          const timer = setTimeout(resolve, ms);
          signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
        }),
    });

    const kinds = moeDeploymentKinds(DEPLOYMENT_LABEL);
    const controller = runController({
      kubeConfig,
      namespace: config.namespace,
      primary: kinds.primary,
      children: [...kinds.children, NODE_CACHE_KIND],
      workers: config.workers,
      leaderElection: leaderElectionSettings(config, leaderIdentity(config.podName)),
      logger,
      registry,
      signal: io.signal,
      reconciler: (runtime) =>
        new MoEDeploymentReconciler({
          caches: {
            deployments: runtime.caches.moedeployments,
            statefulSets: runtime.caches.statefulsets,
            services: runtime.caches.services,
            configMaps: runtime.caches.configmaps,
            podDisruptionBudgets: runtime.caches.poddisruptionbudgets,
            nodes: runtime.caches.nodes,
          },
          writer: runtime.writer,
          rebalance,
          children: { defaultRouterImage: config.image },
          now: () => Date.now(),
        }),
    });
    handle = controller;

    const app = buildOperatorApp({ logger, registry, readiness: controller.readiness });
    const stopServing = new AbortController();
    const serving = serveUntilAborted(app, { ...config, exitOnDrainTimeout: (code) => process.exit(code) }, stopServing.signal);
    const stop = await controller.done;
    await rebalance.stopAll();
    stopServing.abort();
    await serving;
    logger.info({ reason: stop.reason, drained: stop.drained }, 'operator stopped');
    // Lost leadership ends the process so the pod restarts and campaigns again.
    return stop.reason === 'leadership-lost' ? 1 : 0;
  },
};

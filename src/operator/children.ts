/**
 * The Kubernetes objects a MoEDeployment owns, computed from its spec and active plan without any
 * I/O: a StatefulSet of worker pods (one per node, each requesting all GPUs of its node, engine plus
 * router sidecar), a headless Service for stable peer names, the plan ConfigMap the routers read at
 * start, and a PodDisruptionBudget. Every child carries a controller owner reference, so deleting
 * the MoEDeployment garbage-collects them, and a hash of its own content, so an unchanged child is
 * never written again.
 */
import { createHash } from 'node:crypto';
import { planToJson } from '../plan/json.js';
import type { Plan } from '../plan/types.js';
import { API_VERSION, KIND, type MoEDeployment } from './crd.js';
import type { KubeObject } from './kube-types.js';
import type { ResolvedSpec } from './validate.js';

export const FIELD_MANAGER = 'grace-moe-operator';
export const HASH_ANNOTATION = 'grace-moe.io/content-hash';
export const DEPLOYMENT_LABEL = 'grace-moe.io/deployment';
export const PLAN_FILE = 'plan.json';
export const PLAN_MOUNT = '/etc/grace-moe/plan';

export interface ChildNames {
  readonly statefulSet: string;
  readonly service: string;
  readonly configMap: string;
  readonly podDisruptionBudget: string;
}

export function childNames(name: string): ChildNames {
  return { statefulSet: name, service: `${name}-workers`, configMap: `${name}-plan`, podDisruptionBudget: name };
}

/** Labels on every child and worker pod. */
export function childLabels(name: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'grace-moe-worker',
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/managed-by': 'grace-moe',
    [DEPLOYMENT_LABEL]: name,
  };
}

/** Returns the label selector of the worker pods, for the scale subresource. */
export function selectorString(name: string): string {
  return `${DEPLOYMENT_LABEL}=${name}`;
}

/** SHA-256 of a canonical JSON form (keys sorted), hex. */
export function contentHash(value: unknown): string {
  const canonical = (input: unknown): unknown => {
    if (Array.isArray(input)) return input.map(canonical);
    if (input !== null && typeof input === 'object') {
      return Object.fromEntries(
        Object.keys(input as object)
          .sort()
          .map((key) => [key, canonical((input as Record<string, unknown>)[key])]),
      );
    }
    return input;
  };
  return createHash('sha256').update(JSON.stringify(canonical(value))).digest('hex').slice(0, 32);
}

function ownerReference(owner: MoEDeployment) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: owner.metadata.name,
    uid: owner.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Adds the metadata every child shares, including the hash of the rest of the object. */
function child(owner: MoEDeployment, apiVersion: string, kind: string, name: string, body: Record<string, unknown>): KubeObject {
  const labels = childLabels(owner.metadata.name);
  const hash = contentHash({ apiVersion, kind, name, labels, body });
  return {
    apiVersion,
    kind,
    metadata: {
      name,
      namespace: owner.metadata.namespace ?? 'default',
      labels,
      annotations: { [HASH_ANNOTATION]: hash },
      ownerReferences: [ownerReference(owner)],
    },
    ...body,
  };
}

export interface ChildOptions {
  /** Image of the router sidecar when the spec names none: the operator's own image. */
  readonly defaultRouterImage: string;
}

function statefulSet(owner: MoEDeployment, spec: ResolvedSpec, names: ChildNames, options: ChildOptions): KubeObject {
  const name = owner.metadata.name;
  const labels = childLabels(name);
  const user = owner.spec;
  const gpuQuantity = String(spec.gpusPerNode);
  const userResources = (user.engine.resources ?? {}) as { limits?: Record<string, unknown>; requests?: Record<string, unknown> };
  const resources = {
    ...userResources,
    limits: { ...(userResources.limits ?? {}), [spec.gpuResourceName]: gpuQuantity },
    requests: { ...(userResources.requests ?? {}), [spec.gpuResourceName]: gpuQuantity },
  };
  const userAffinity = (user.workers.affinity ?? {}) as Record<string, unknown> & { podAntiAffinity?: Record<string, unknown> };
  const userAntiAffinity = (userAffinity.podAntiAffinity ?? {}) as { requiredDuringSchedulingIgnoredDuringExecution?: unknown[] };
  const affinity = {
    ...userAffinity,
    podAntiAffinity: {
      ...userAntiAffinity,
      requiredDuringSchedulingIgnoredDuringExecution: [
        ...(userAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution ?? []),
        { labelSelector: { matchLabels: { [DEPLOYMENT_LABEL]: name } }, topologyKey: 'kubernetes.io/hostname' },
      ],
    },
  };
  const topology = `${spec.nodes}x${spec.gpusPerNode}`;
  const podEnv = [
    { name: 'GRACE_MOE_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'GRACE_MOE_TOPOLOGY', value: topology },
    { name: 'GRACE_MOE_SLOTS_PER_GPU', value: String(spec.slotsPerGpu + spec.migrationHeadroomSlots) },
    { name: 'GRACE_MOE_PEER_SERVICE', value: names.service },
  ];

  return child(owner, 'apps/v1', 'StatefulSet', names.statefulSet, {
    spec: {
      replicas: spec.nodes,
      serviceName: names.service,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: { [DEPLOYMENT_LABEL]: name } },
      template: {
        metadata: { labels },
        spec: {
          affinity,
          ...(user.workers.nodeSelector ? { nodeSelector: user.workers.nodeSelector } : {}),
          ...(user.workers.tolerations ? { tolerations: user.workers.tolerations } : {}),
          containers: [
            {
              name: 'engine',
              image: user.engine.image,
              ...(user.engine.args ? { args: user.engine.args } : {}),
              env: [...podEnv, ...((user.engine.env as unknown[] | undefined) ?? [])],
              ports: [{ name: 'engine', containerPort: spec.enginePort }],
              resources,
            },
            {
              name: 'router',
              image: user.router?.image ?? options.defaultRouterImage,
              args: [
                'router',
                '--host',
                '0.0.0.0',
                '--port',
                String(spec.routerPort),
                '--table-file',
                `${PLAN_MOUNT}/${PLAN_FILE}`,
                '--state-file',
                '/var/lib/grace-moe/router-state.json',
              ],
              ports: [{ name: 'router', containerPort: spec.routerPort }],
              readinessProbe: { httpGet: { path: '/readyz', port: 'router' }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'router' }, periodSeconds: 10 },
              volumeMounts: [
                { name: 'plan', mountPath: PLAN_MOUNT, readOnly: true },
                { name: 'router-state', mountPath: '/var/lib/grace-moe' },
              ],
            },
          ],
          volumes: [
            { name: 'plan', configMap: { name: names.configMap } },
            { name: 'router-state', emptyDir: {} },
          ],
        },
      },
    },
  });
}

/** Returns every child of a deployment with a valid spec and its active plan. */
export function desiredChildren(owner: MoEDeployment, spec: ResolvedSpec, plan: Plan, options: ChildOptions): KubeObject[] {
  const names = childNames(owner.metadata.name);
  const selector = { matchLabels: { [DEPLOYMENT_LABEL]: owner.metadata.name } };
  return [
    child(owner, 'v1', 'ConfigMap', names.configMap, { data: { [PLAN_FILE]: JSON.stringify(planToJson(plan)) } }),
    child(owner, 'v1', 'Service', names.service, {
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: true,
        selector: { [DEPLOYMENT_LABEL]: owner.metadata.name },
        ports: [
          { name: 'engine', port: spec.enginePort, targetPort: 'engine' },
          { name: 'router', port: spec.routerPort, targetPort: 'router' },
        ],
      },
    }),
    statefulSet(owner, spec, names, options),
    child(owner, 'policy/v1', 'PodDisruptionBudget', names.podDisruptionBudget, { spec: { maxUnavailable: 1, selector } }),
  ];
}

/** True when `existing` is controlled by `owner` (same uid). */
export function isControlledBy(existing: KubeObject, owner: MoEDeployment): boolean {
  return (existing.metadata.ownerReferences ?? []).some((reference) => reference.controller === true && reference.uid === owner.metadata.uid);
}

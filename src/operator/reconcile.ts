/**
 * The MoEDeployment reconciler. Level-based: every call reads the cached deployment and children,
 * computes what should exist, writes only the differences with server-side apply under one field
 * manager, and writes the status through the status subresource only when it changed. It never
 * branches on what kind of event triggered it.
 *
 * Steps: get the deployment (gone or deleting: stop its loop, done); validate the spec (invalid: a
 * condition naming the field, nothing created); check that existing children are ours; choose the
 * active plan (the loop's, else the ConfigMap's when its topology still matches, else a new
 * contiguous plan for the new topology with the next generation); apply changed children; sync the
 * rebalance loop; write the status if it differs.
 */
import { contiguousPlan } from '../baselines/contiguous.js';
import { digestOf, parsePlan, planToJson } from '../plan/json.js';
import type { Plan } from '../plan/types.js';
import { childNames, contentHash, desiredChildren, FIELD_MANAGER, HASH_ANNOTATION, isControlledBy, PLAN_FILE, selectorString, type ChildOptions } from './children.js';
import { API_VERSION, KIND, type MoEDeployment, type MoEDeploymentStatus } from './crd.js';
import { keyString, type KubeObject, type KubeWriter, type ObjectCache, type ObjectKey, type Reconciler, type ReconcileResult } from './kube-types.js';
import type { RebalanceManager } from './rebalance.js';
import { failedStatus, healthyStatus, rolloutState, type PlanStatus } from './status.js';
import { validateSpec, type NodeCapacity, type ResolvedSpec } from './validate.js';

export interface ReconcilerCaches {
  readonly deployments: ObjectCache;
  readonly statefulSets: ObjectCache;
  readonly services: ObjectCache;
  readonly configMaps: ObjectCache;
  readonly podDisruptionBudgets: ObjectCache;
  /** Cluster nodes, for the GPU capacity check; null skips the check. */
  readonly nodes: ObjectCache | null;
}

export interface ReconcilerDeps {
  readonly caches: ReconcilerCaches;
  readonly writer: KubeWriter;
  readonly rebalance: RebalanceManager;
  readonly children: ChildOptions;
  /** Wall clock, ms since the epoch. */
  readonly now: () => number;
}

/** Compares two JSON values whatever their key order (the API server returns keys sorted). */
function sameJson(a: unknown, b: unknown): boolean {
  return contentHash(a) === contentHash(b);
}

/** Returns the largest allocatable count of `resource` over the cluster's nodes, or null when unknown. */
export function nodeCapacity(nodes: ObjectCache | null, resource: string): NodeCapacity {
  if (nodes === null) return { maxGpusPerNode: null };
  let max = 0;
  for (const node of nodes.list()) {
    const allocatable = ((node.status as { allocatable?: Record<string, string> } | undefined)?.allocatable ?? {})[resource];
    const count = allocatable === undefined ? 0 : Number.parseInt(allocatable, 10);
    if (Number.isFinite(count)) max = Math.max(max, count);
  }
  return { maxGpusPerNode: max };
}

function planFromConfigMap(configMap: KubeObject | undefined): Plan | null {
  const text = (configMap?.data as Record<string, string> | undefined)?.[PLAN_FILE];
  if (text === undefined) return null;
  try {
    return parsePlan(JSON.parse(text), { allowDuplicateInstances: true });
  } catch {
    return null;
  }
}

function fits(plan: Plan | null, spec: ResolvedSpec): boolean {
  return (
    plan !== null &&
    plan.topology.nodes === spec.nodes &&
    plan.topology.gpusPerNode === spec.gpusPerNode &&
    plan.topology.slotsPerGpu === spec.slotsPerGpu &&
    plan.model.layers === spec.layers &&
    plan.model.experts === spec.experts &&
    plan.model.topK === spec.topK
  );
}

function planStatus(plan: Plan): PlanStatus {
  return {
    generation: plan.generation,
    digest: digestOf(planToJson(plan)),
    strategy: plan.strategy,
    topology: `${plan.topology.nodes}x${plan.topology.gpusPerNode}x${plan.topology.slotsPerGpu}`,
    ...(plan.predicted ? { predictedMoeLayerTimeMs: plan.predicted.moeLayerTimeMs, predictedCrossNodeCopiesPerToken: plan.predicted.crossNodeCopiesPerToken } : {}),
  };
}

export class MoEDeploymentReconciler implements Reconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(key: ObjectKey): Promise<ReconcileResult> {
    const { caches, writer, rebalance } = this.deps;
    const id = keyString(key);
    const owner = caches.deployments.get(key.namespace, key.name) as MoEDeployment | undefined;
    if (owner === undefined || owner.metadata.deletionTimestamp !== undefined) {
      rebalance.stop(id);
      return {};
    }
    const nowIso = new Date(this.deps.now()).toISOString();
    const selector = selectorString(owner.metadata.name);

    const checked = validateSpec(owner.spec, nodeCapacity(caches.nodes, owner.spec.workers.gpuResourceName ?? 'nvidia.com/gpu'));
    if (!checked.ok) {
      rebalance.stop(id);
      const message = checked.violations.map((violation) => violation.message).join('; ');
      await this.writeStatus(owner, failedStatus(owner, 'InvalidSpec', message, selector, nowIso), 'InvalidSpec', message);
      return {};
    }
    const spec = checked.resolved;

    const names = childNames(owner.metadata.name);
    const existing = {
      ConfigMap: caches.configMaps.get(key.namespace, names.configMap),
      Service: caches.services.get(key.namespace, names.service),
      StatefulSet: caches.statefulSets.get(key.namespace, names.statefulSet),
      PodDisruptionBudget: caches.podDisruptionBudgets.get(key.namespace, names.podDisruptionBudget),
    } as Record<string, KubeObject | undefined>;
    const foreign = Object.entries(existing).find(([, child]) => child !== undefined && !isControlledBy(child, owner));
    if (foreign) {
      rebalance.stop(id);
      const message = `${foreign[0]} ${foreign[1]?.metadata.name} exists and is not controlled by this MoEDeployment; delete or rename it`;
      await this.writeStatus(owner, failedStatus(owner, 'ChildConflict', message, selector, nowIso), 'ChildConflict', message);
      return {};
    }

    const plan = this.activePlan(id, owner, spec, existing.ConfigMap);
    let statefulSet = existing.StatefulSet;
    for (const child of desiredChildren(owner, spec, plan, this.deps.children)) {
      const current = existing[child.kind];
      if (current?.metadata.annotations?.[HASH_ANNOTATION] === child.metadata.annotations?.[HASH_ANNOTATION]) continue;
      const applied = await writer.apply(child, FIELD_MANAGER);
      if (child.kind === 'StatefulSet') statefulSet = applied;
      if (child.kind === 'ConfigMap') {
        await writer.event(owner, 'Normal', 'PlanPublished', `plan generation ${plan.generation} (${plan.strategy}) published in ConfigMap ${child.metadata.name}`);
      }
    }

    const workersReady = rolloutState(statefulSet, spec.nodes).done;
    const synced = rebalance.sync(id, owner, spec, plan, workersReady);
    // A loop that has not finished a round in this process (after a restart, or while stopped)
    // keeps the last rebalance the status already shows.
    const lastRebalance = synced.lastRebalance ?? owner.status?.lastRebalance;
    const rebalanceState = { ...synced, ...(lastRebalance ? { lastRebalance } : {}), lastFailed: synced.lastRebalance ? synced.lastFailed : lastRebalance?.outcome === 'failed' };
    const status = healthyStatus(
      owner,
      { statefulSet, desiredReplicas: spec.nodes, selector, plan: planStatus(plan), rebalance: rebalanceState },
      nowIso,
    );
    await this.writeStatus(owner, status, null, '');
    return {};
  }

  private activePlan(id: string, owner: MoEDeployment, spec: ResolvedSpec, configMap: KubeObject | undefined): Plan {
    const fromLoop = this.deps.rebalance.activePlan(id);
    const published = planFromConfigMap(configMap);
    if (fromLoop !== null && fits(fromLoop, spec) && (published === null || fromLoop.generation >= published.generation)) return fromLoop;
    if (published !== null && fits(published, spec)) return published;
    const previousGeneration = Math.max(published?.generation ?? 0, owner.status?.plan?.generation ?? 0);
    return contiguousPlan(
      Array.from({ length: spec.layers }, () => new Float64Array(spec.experts)),
      { nodes: spec.nodes, gpusPerNode: spec.gpusPerNode, slotsPerGpu: spec.slotsPerGpu },
      { topK: spec.topK, generation: previousGeneration + 1 },
    );
  }

  /** Writes the status when it differs from the current one; emits a warning event on a new failure. */
  private async writeStatus(owner: MoEDeployment, status: MoEDeploymentStatus, warning: string | null, message: string): Promise<void> {
    if (sameJson(owner.status ?? {}, status)) return;
    await this.deps.writer.applyStatus(
      { apiVersion: API_VERSION, kind: KIND, metadata: { name: owner.metadata.name, namespace: owner.metadata.namespace ?? 'default' }, status },
      FIELD_MANAGER,
    );
    const wasFailing = owner.status?.conditions?.some((condition) => condition.type === 'Degraded' && condition.status === 'True' && condition.reason === warning);
    if (warning !== null && !wasFailing) await this.deps.writer.event(owner, 'Warning', warning, message);
  }
}

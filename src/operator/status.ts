/**
 * Status of a MoEDeployment, computed from its spec, its StatefulSet and the control loop's last
 * round. Conditions keep their lastTransitionTime unless their status changes, so an unchanged
 * world computes an identical status and no write happens.
 *
 * Condition types and reasons (docs/operator.md gives what to do about each):
 * - Ready: WorkersReady | WorkersNotReady | InvalidSpec | ChildConflict
 * - Progressing: RollingOut | RolloutComplete | InvalidSpec
 * - Degraded: AsExpected | InvalidSpec | ChildConflict | RebalanceFailed
 * - Rebalancing: Idle | Disabled | Observing | PlanRollout
 */
import type { Condition, MoEDeployment, MoEDeploymentStatus } from './crd.js';
import type { KubeObject } from './kube-types.js';

export type ConditionInput = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

/** Sets lastTransitionTime to now only for conditions whose status changed. */
export function mergeConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  nowIso: string,
  observedGeneration: number,
): Condition[] {
  return next.map((condition) => {
    const before = previous?.find((candidate) => candidate.type === condition.type);
    const lastTransitionTime = before && before.status === condition.status ? before.lastTransitionTime : nowIso;
    return { ...condition, lastTransitionTime, observedGeneration };
  });
}

interface StatefulSetStatus {
  readonly observedGeneration?: number;
  readonly replicas?: number;
  readonly readyReplicas?: number;
  readonly updatedReplicas?: number;
  readonly currentRevision?: string;
  readonly updateRevision?: string;
}

/** Reports whether a StatefulSet has rolled out its latest spec to `desired` ready pods, and how many are ready. */
export function rolloutState(statefulSet: KubeObject | undefined, desired: number): { done: boolean; ready: number; replicas: number; message: string } {
  if (!statefulSet) return { done: false, ready: 0, replicas: 0, message: 'the worker StatefulSet does not exist yet' };
  const status = (statefulSet.status ?? {}) as StatefulSetStatus;
  const ready = status.readyReplicas ?? 0;
  const replicas = status.replicas ?? 0;
  const generation = statefulSet.metadata.generation ?? 0;
  if ((status.observedGeneration ?? 0) < generation) {
    return { done: false, ready, replicas, message: `the StatefulSet controller has not yet seen generation ${generation}` };
  }
  const updated = status.updatedReplicas ?? 0;
  const revisionsMatch = status.updateRevision === undefined || status.currentRevision === status.updateRevision;
  const done = ready === desired && updated === desired && replicas === desired && revisionsMatch;
  return {
    done,
    ready,
    replicas,
    message: done ? `${ready} of ${desired} workers ready` : `${ready} of ${desired} workers ready, ${updated} updated to the latest spec`,
  };
}

export interface RebalanceState {
  readonly mode: 'Off' | 'Observe' | 'Auto';
  readonly rolloutInProgress: boolean;
  readonly lastRebalance?: NonNullable<MoEDeploymentStatus['lastRebalance']>;
  readonly lastFailed: boolean;
}

export interface PlanStatus {
  readonly generation: number;
  readonly digest: string;
  readonly strategy: string;
  readonly topology: string;
  readonly predictedMoeLayerTimeMs?: number;
  readonly predictedCrossNodeCopiesPerToken?: number;
}

/** Status of a deployment whose spec passed validation. */
export function healthyStatus(
  owner: MoEDeployment,
  input: { statefulSet: KubeObject | undefined; desiredReplicas: number; selector: string; plan: PlanStatus; rebalance: RebalanceState },
  nowIso: string,
): MoEDeploymentStatus {
  const rollout = rolloutState(input.statefulSet, input.desiredReplicas);
  const rebalanceCondition: ConditionInput =
    input.rebalance.mode === 'Off'
      ? { type: 'Rebalancing', status: 'False', reason: 'Disabled', message: 'spec.rebalance.mode is Off' }
      : input.rebalance.rolloutInProgress
        ? { type: 'Rebalancing', status: 'True', reason: 'PlanRollout', message: 'a new plan is being rolled out' }
        : input.rebalance.mode === 'Observe'
          ? { type: 'Rebalancing', status: 'False', reason: 'Observing', message: 'plans are computed and reported, never applied' }
          : { type: 'Rebalancing', status: 'False', reason: 'Idle', message: 'no rollout in progress' };
  const conditions: ConditionInput[] = [
    rollout.done
      ? { type: 'Ready', status: 'True', reason: 'WorkersReady', message: rollout.message }
      : { type: 'Ready', status: 'False', reason: 'WorkersNotReady', message: rollout.message },
    rollout.done
      ? { type: 'Progressing', status: 'False', reason: 'RolloutComplete', message: rollout.message }
      : { type: 'Progressing', status: 'True', reason: 'RollingOut', message: rollout.message },
    input.rebalance.lastFailed
      ? { type: 'Degraded', status: 'True', reason: 'RebalanceFailed', message: input.rebalance.lastRebalance?.reason ?? 'the last rebalance failed' }
      : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no known problem' },
    rebalanceCondition,
  ];
  const generation = owner.metadata.generation ?? 0;
  return {
    observedGeneration: generation,
    conditions: mergeConditions(owner.status?.conditions, conditions, nowIso, generation),
    replicas: rollout.replicas,
    readyReplicas: rollout.ready,
    selector: input.selector,
    plan: input.plan,
    ...(input.rebalance.lastRebalance ? { lastRebalance: input.rebalance.lastRebalance } : {}),
  };
}

/** Status of a deployment with a spec the operator rejects, or a child it does not control. */
export function failedStatus(
  owner: MoEDeployment,
  reason: 'InvalidSpec' | 'ChildConflict',
  message: string,
  selector: string,
  nowIso: string,
): MoEDeploymentStatus {
  const generation = owner.metadata.generation ?? 0;
  const conditions: ConditionInput[] = [
    { type: 'Ready', status: 'False', reason, message },
    { type: 'Progressing', status: 'False', reason, message },
    { type: 'Degraded', status: 'True', reason, message },
    { type: 'Rebalancing', status: 'False', reason: 'Disabled', message: 'nothing is deployed' },
  ];
  return {
    observedGeneration: generation,
    conditions: mergeConditions(owner.status?.conditions, conditions, nowIso, generation),
    replicas: owner.status?.replicas ?? 0,
    readyReplicas: owner.status?.readyReplicas ?? 0,
    selector,
    ...(owner.status?.plan ? { plan: owner.status.plan } : {}),
  };
}

import type { Topology } from '../topology.js';

export const API_VERSION = 'grace-moe.io/v1alpha1';

/** Placement of one MoE layer. */
export interface PlanLayer {
  /**
   * slots[g] lists the logical experts whose instances GPU g holds, at most slotsPerGpu of them.
   * A valid plan never lists one expert twice on one GPU; published EPLB can, and its baseline plans
   * are kept as produced so the duplicates can be counted.
   */
  readonly slots: readonly (readonly number[])[];
  /** weights[g][i] is the routing weight of the instance slots[g][i]: finite and positive. */
  readonly weights: readonly (readonly number[])[];
}

/** Metrics a planner predicts for its plan on its profile data. */
export interface PredictedMetrics {
  readonly moeLayerTimeMs: number;
  readonly crossNodeCopiesPerToken: number;
  readonly localHitRatio: number;
  readonly balancedness: number;
}

export interface PlanModel {
  readonly layers: number;
  readonly experts: number;
  readonly topK: number;
}

/** A placement plan: every layer's instances per GPU slot plus routing weights. */
export interface Plan {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: 'PlacementPlan';
  readonly generation: number;
  readonly strategy: string;
  readonly topology: Topology;
  readonly model: PlanModel;
  readonly layers: readonly PlanLayer[];
  readonly predicted?: PredictedMetrics;
  /** SHA-256 of the statistics the plan was computed from, hex. */
  readonly inputDigest: string;
}

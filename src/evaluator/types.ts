import type { Topology } from '../topology.js';

export type DispatchScheme = 'flat' | 'hierarchical';

/** Aggregated metrics of one strategy under one dispatch scheme; copies are per token per layer. */
export interface Metrics {
  /** Mean modelled MoE-layer time per batch (dispatch + expert compute + combine), ms. */
  readonly moeLayerTimeMs: number;
  /** Mean modelled dispatch plus combine time per batch and layer, ms. */
  readonly allToAllTimeMs: number;
  /** Bytes that crossed nodes over the evaluated part, dispatch and combine. */
  readonly crossNodeBytes: number;
  /** Bytes that moved between GPUs of one node over the evaluated part, dispatch and combine. */
  readonly intraNodeBytes: number;
  readonly crossNodeCopiesPerToken: number;
  readonly crossGpuCopiesPerToken: number;
  /** Share of token-expert pairs served on the token's home GPU. */
  readonly localHitRatio: number;
  /** Max over mean GPU load within a layer, averaged over layers. */
  readonly balancedness: number;
  /** Standard deviation of GPU loads (token-expert pairs) within a layer, averaged over layers. */
  readonly loadStd: number;
  /** Mean time a GPU waits for the slowest one per batch and layer, ms. */
  readonly gpuIdleTimeMs: number;
  readonly planTimeMs: number;
  /** Slots that hold a second instance of an expert already on the same GPU. */
  readonly duplicateInstances: number;
}

/** Per-layer detail kept for reports. */
export interface LayerDetail {
  readonly crossNodeBytes: readonly number[];
  readonly moeLayerTimeMs: readonly number[];
  /** gpuLoads[l][g]: token-expert pairs GPU g served at layer l. */
  readonly gpuLoads: readonly (readonly number[])[];
}

export interface StrategyResult {
  readonly name: string;
  readonly description: string;
  readonly dispatch: DispatchScheme;
  readonly metrics: Metrics;
  readonly perLayer: LayerDetail;
}

export interface CompareResult {
  readonly topology: Topology;
  readonly trace: {
    readonly name: string;
    readonly model: string;
    readonly profileTokens: number;
    readonly evaluationTokens: number;
    readonly split: string;
  };
  readonly preset: string;
  readonly strategies: readonly StrategyResult[];
  /** Strategies left out and why, for example a baseline that does not apply to the topology. */
  readonly notes?: readonly string[];
}

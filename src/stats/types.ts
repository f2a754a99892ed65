/** Expert loads and co-activation of one MoE layer over a window of tokens. */
export interface LayerActivation {
  /** Tokens that passed this layer in the window. */
  readonly tokens: number;
  /** loads[e]: tokens that selected expert e. */
  readonly loads: Float64Array;
  /**
   * Dense symmetric E x E matrix, row-major: coactivation[i * E + j] counts tokens whose top-k set
   * holds both i and j. The diagonal is zero.
   */
  readonly coactivation: Float64Array;
}

/**
 * A bounded uniform sample of tokens (reservoir sampling), kept so a planner can replay real
 * selections through the cost model. selections[(t * layers + l) * topK + k] as in a Trace.
 */
export interface TokenSample {
  readonly capacity: number;
  /** Tokens offered to the reservoir so far; the sample is uniform over them. */
  readonly seen: number;
  readonly tokens: number;
  readonly selections: Uint16Array;
}

/** Activation statistics over a window: what routers export and the planner consumes. */
export interface ActivationStats {
  readonly experts: number;
  readonly layers: number;
  readonly topK: number;
  readonly tokens: number;
  /** Covered time window in milliseconds since the epoch, or null for offline traces. */
  readonly window: { readonly startMs: number; readonly endMs: number } | null;
  readonly perLayer: readonly LayerActivation[];
  readonly sample: TokenSample;
}

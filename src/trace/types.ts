/** Model facts a trace records; the JSONL records must agree with them. */
export interface TraceMeta {
  readonly name: string;
  readonly model: string;
  /** MoE layers recorded per token. */
  readonly layers: number;
  /** Routed experts per layer; ids run from 0 to experts - 1. */
  readonly experts: number;
  /** Experts the gate selects per token and layer. */
  readonly topK: number;
  /** Model layer index of every recorded MoE layer, when the source gives it. */
  readonly moeLayerIds?: readonly number[];
  /** Shared experts every token uses; they are not listed in the trace and are never planned. */
  readonly sharedExperts?: number;
}

/**
 * A trace held in memory in compact form. `selections` stores, for token t, layer l and rank k, the
 * selected expert at index (t * layers + l) * topK + k, in the order the source logged them.
 */
export interface Trace {
  readonly meta: TraceMeta;
  readonly tokens: number;
  readonly selections: Uint16Array;
  /** Distinct request ids ("domain/sequence") in first-seen order. */
  readonly requestIds: readonly string[];
  /** Index into requestIds of every token. */
  readonly requestOfToken: Uint32Array;
  /** Position of every token inside its request. */
  readonly positions: Uint32Array;
}

/** The part a plan is fitted on and the part it is evaluated on. */
export interface TraceSplit {
  readonly profile: Trace;
  readonly evaluation: Trace;
  /** Human-readable description of how the split was made, for reports. */
  readonly description: string;
}

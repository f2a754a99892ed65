/**
 * Traffic counters and Prometheus metrics of the reference engine. The label `peer_node` is bounded
 * by the node count and `gpu` by the GPUs of the node. The label `phase` is dispatch (hidden states
 * towards the experts) or combine (expert output back to the token's node).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RequestDurationLabels } from '../router/http.js';

export type TrafficPhase = 'dispatch' | 'combine';

/** Hidden-state payload bytes exchanged with one peer node, headers not included. */
export interface PeerTraffic {
  readonly node: number;
  /** Hidden states of this node's tokens sent to the peer's experts. */
  dispatchSentBytes: number;
  /** Expert output for this node's tokens received back from the peer. */
  combineReceivedBytes: number;
  /** Hidden states of the peer's tokens received for this node's experts. */
  dispatchReceivedBytes: number;
  /** Expert output for the peer's tokens sent back to it. */
  combineSentBytes: number;
  /** Compute requests this engine sent to the peer, and received from it. */
  requestsSent: number;
  requestsReceived: number;
}

export interface EngineMetrics {
  readonly bytesSent: Counter<'peer_node' | 'phase'>;
  readonly bytesReceived: Counter<'peer_node' | 'phase'>;
  readonly batches: Counter<'outcome'>;
  readonly batchDuration: Histogram;
  readonly pairsComputed: Counter<'gpu'>;
  readonly unloadedPairs: Counter;
  readonly activationReports: Counter<'outcome'>;
  readonly requestDuration: Histogram<RequestDurationLabels>;
}

/** Registers the engine's metrics on `registry`; gauges call the given readers when scraped. */
export function createEngineMetrics(
  registry: Registry,
  readers: { generation: () => number; loadedInstances: () => number },
): EngineMetrics {
  new Gauge({
    name: 'grace_moe_engine_table_generation',
    help: 'Generation of the routing table the engine follows, -1 before the first',
    registers: [registry],
    collect() {
      this.set(readers.generation());
    },
  });
  new Gauge({
    name: 'grace_moe_engine_instances_loaded',
    help: 'Expert instances (layer, GPU, expert) loaded on the GPUs of this node',
    registers: [registry],
    collect() {
      this.set(readers.loadedInstances());
    },
  });
  return {
    bytesSent: new Counter({
      name: 'grace_moe_engine_bytes_sent_total',
      help: 'Hidden-state payload bytes sent to each peer node, by phase (dispatch or combine)',
      labelNames: ['peer_node', 'phase'] as const,
      registers: [registry],
    }),
    bytesReceived: new Counter({
      name: 'grace_moe_engine_bytes_received_total',
      help: 'Hidden-state payload bytes received from each peer node, by phase (dispatch or combine)',
      labelNames: ['peer_node', 'phase'] as const,
      registers: [registry],
    }),
    batches: new Counter({
      name: 'grace_moe_engine_batches_total',
      help: 'Token batches processed, by outcome (ok or failed)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'grace_moe_engine_batch_duration_seconds',
      help: 'Time to run a token batch through every MoE layer',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    pairsComputed: new Counter({
      name: 'grace_moe_engine_pairs_computed_total',
      help: 'Token-expert pairs computed, by GPU of this node',
      labelNames: ['gpu'] as const,
      registers: [registry],
    }),
    unloadedPairs: new Counter({
      name: 'grace_moe_engine_unloaded_pairs_total',
      help: 'Token-expert pairs routed to a GPU of this node that had not loaded the expert instance',
      registers: [registry],
    }),
    activationReports: new Counter({
      name: 'grace_moe_engine_activation_reports_total',
      help: 'Activation reports sent to the router, by outcome (ok or failed)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'grace_moe_engine_request_duration_seconds',
      help: 'Time to respond to an HTTP request, by route pattern, method and status code',
      labelNames: ['route', 'method', 'status_code'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30],
      registers: [registry],
    }),
  };
}

/** Bytes per peer node, mirrored into the Prometheus counters. */
export class TrafficCounters {
  private readonly peers = new Map<number, PeerTraffic>();

  constructor(
    readonly node: number,
    nodes: number,
    private readonly metrics: Pick<EngineMetrics, 'bytesSent' | 'bytesReceived'>,
  ) {
    for (let peer = 0; peer < nodes; peer++) {
      if (peer === node) continue;
      this.peers.set(peer, {
        node: peer,
        dispatchSentBytes: 0,
        combineReceivedBytes: 0,
        dispatchReceivedBytes: 0,
        combineSentBytes: 0,
        requestsSent: 0,
        requestsReceived: 0,
      });
      for (const phase of ['dispatch', 'combine'] as const) {
        metrics.bytesSent.inc({ peer_node: String(peer), phase }, 0);
        metrics.bytesReceived.inc({ peer_node: String(peer), phase }, 0);
      }
    }
  }

  /** Counts one compute request this engine sent and the response it received. */
  recordOutgoing(peer: number, dispatchBytes: number, combineBytes: number): void {
    const traffic = this.peerOf(peer);
    traffic.requestsSent += 1;
    traffic.dispatchSentBytes += dispatchBytes;
    traffic.combineReceivedBytes += combineBytes;
    this.metrics.bytesSent.inc({ peer_node: String(peer), phase: 'dispatch' }, dispatchBytes);
    this.metrics.bytesReceived.inc({ peer_node: String(peer), phase: 'combine' }, combineBytes);
  }

  /** Counts one compute request a peer sent to this engine and the response it received. */
  recordIncoming(peer: number, dispatchBytes: number, combineBytes: number): void {
    const traffic = this.peerOf(peer);
    traffic.requestsReceived += 1;
    traffic.dispatchReceivedBytes += dispatchBytes;
    traffic.combineSentBytes += combineBytes;
    this.metrics.bytesReceived.inc({ peer_node: String(peer), phase: 'dispatch' }, dispatchBytes);
    this.metrics.bytesSent.inc({ peer_node: String(peer), phase: 'combine' }, combineBytes);
  }

  /** Returns a copy of the counters, by peer node in ascending order. */
  snapshot(): PeerTraffic[] {
    return [...this.peers.values()].map((traffic) => ({ ...traffic }));
  }

  private peerOf(peer: number): PeerTraffic {
    const traffic = this.peers.get(peer);
    if (traffic === undefined) {
      throw new RangeError(`node ${peer} is not a peer of node ${this.node}`);
    }
    return traffic;
  }
}

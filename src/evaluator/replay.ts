/**
 * Replays the tokens of one MoE layer through a replica chooser and accounts the traffic, load and
 * modelled time of both dispatch schemes in one pass (the replica choice does not depend on the
 * scheme). See cost-model.ts for the model.
 *
 * Flat dispatch sends one copy per (token, destination GPU other than home). Hierarchical dispatch
 * sends one copy per (token, destination node other than home) across the network, to the GPU of
 * the same local index on that node (rail-aligned), which forwards it over NVLink to the other
 * destination GPUs of its node; destinations on the home node get a direct NVLink copy.
 *
 * Cost: O(tokens x topK x instances per expert) plus O(GPUs^2) per batch for peer counting.
 */
import type { ReplicaChooser } from '../routing/types.js';
import type { UnitCosts } from './cost-model.js';

export interface ReplayInput {
  /** Trace layout: selections[(t * layers + l) * topK + k]. */
  readonly selections: ArrayLike<number>;
  readonly tokens: number;
  readonly layers: number;
  readonly topK: number;
  /** Layer of `selections` to replay. */
  readonly layer: number;
  /** Layer index passed to the chooser (differs from `layer` when a one-layer table is scored). */
  readonly chooserLayer: number;
  readonly chooser: ReplicaChooser;
  readonly nodes: number;
  readonly gpusPerNode: number;
  readonly units: UnitCosts;
  readonly batchTokensPerGpu: number;
}

/** Totals of one dispatch scheme over all batches of a layer; times in seconds, summed over batches. */
export interface SchemeTotals {
  crossNodeCopies: number;
  intraNodeCopies: number;
  layerSeconds: number;
  allToAllSeconds: number;
  idleSeconds: number;
}

export interface LayerReplay {
  readonly pairs: number;
  readonly homeHits: number;
  readonly batches: number;
  /** Token-expert pairs each GPU served. */
  readonly gpuLoads: Float64Array;
  readonly flat: SchemeTotals;
  readonly hierarchical: SchemeTotals;
}

/** Per-GPU copy counts and peer sets of one scheme within one batch. */
class BatchTraffic {
  readonly intraSend: Float64Array;
  readonly intraReceive: Float64Array;
  readonly interSend: Float64Array;
  readonly interReceive: Float64Array;
  private readonly peerStamp: Int32Array;
  readonly intraPeersOut: Int32Array;
  readonly intraPeersIn: Int32Array;
  readonly interPeersOut: Int32Array;
  readonly interPeersIn: Int32Array;
  intraCopies = 0;
  interCopies = 0;

  constructor(private readonly gpus: number) {
    this.intraSend = new Float64Array(gpus);
    this.intraReceive = new Float64Array(gpus);
    this.interSend = new Float64Array(gpus);
    this.interReceive = new Float64Array(gpus);
    this.peerStamp = new Int32Array(gpus * gpus).fill(-1);
    this.intraPeersOut = new Int32Array(gpus);
    this.intraPeersIn = new Int32Array(gpus);
    this.interPeersOut = new Int32Array(gpus);
    this.interPeersIn = new Int32Array(gpus);
  }

  reset(): void {
    this.intraSend.fill(0);
    this.intraReceive.fill(0);
    this.interSend.fill(0);
    this.interReceive.fill(0);
    this.intraPeersOut.fill(0);
    this.intraPeersIn.fill(0);
    this.interPeersOut.fill(0);
    this.interPeersIn.fill(0);
  }

  intra(from: number, to: number, batch: number): void {
    this.intraSend[from]++;
    this.intraReceive[to]++;
    this.intraCopies++;
    const key = from * this.gpus + to;
    if (this.peerStamp[key] !== batch) {
      this.peerStamp[key] = batch;
      this.intraPeersOut[from]++;
      this.intraPeersIn[to]++;
    }
  }

  inter(from: number, to: number, batch: number): void {
    this.interSend[from]++;
    this.interReceive[to]++;
    this.interCopies++;
    const key = from * this.gpus + to;
    if (this.peerStamp[key] !== batch) {
      this.peerStamp[key] = batch;
      this.interPeersOut[from]++;
      this.interPeersIn[to]++;
    }
  }

  /** Adds this batch's modelled times to `totals`; `computeSeconds[g]` is GPU g's expert compute. */
  close(totals: SchemeTotals, units: UnitCosts, computeSeconds: Float64Array): void {
    const { gpus } = this;
    let dispatch = 0;
    let compute = 0;
    const comm = new Float64Array(gpus);
    for (let g = 0; g < gpus; g++) {
      const intraCopies = Math.max(this.intraSend[g] as number, this.intraReceive[g] as number);
      const interCopies = Math.max(this.interSend[g] as number, this.interReceive[g] as number);
      const intraPeers = Math.max(this.intraPeersOut[g] as number, this.intraPeersIn[g] as number);
      const interPeers = Math.max(this.interPeersOut[g] as number, this.interPeersIn[g] as number);
      const intraTime = intraCopies * units.bytesPerCopy * units.secondsPerIntraByte + intraPeers * units.intraLatency;
      const interTime = interCopies * units.bytesPerCopy * units.secondsPerInterByte + interPeers * units.interLatency;
      const time = Math.max(intraTime, interTime);
      comm[g] = time;
      dispatch = Math.max(dispatch, time);
      compute = Math.max(compute, computeSeconds[g] as number);
    }
    // Combine moves the same volume in the opposite direction; max(send, receive) is symmetric.
    const layer = 2 * dispatch + compute;
    let idle = 0;
    for (let g = 0; g < gpus; g++) idle += layer - 2 * (comm[g] as number) - (computeSeconds[g] as number);
    totals.layerSeconds += layer;
    totals.allToAllSeconds += 2 * dispatch;
    totals.idleSeconds += idle / gpus;
    totals.crossNodeCopies += this.interCopies;
    totals.intraNodeCopies += this.intraCopies;
    this.interCopies = 0;
    this.intraCopies = 0;
  }
}

function emptyTotals(): SchemeTotals {
  return { crossNodeCopies: 0, intraNodeCopies: 0, layerSeconds: 0, allToAllSeconds: 0, idleSeconds: 0 };
}

/** Replays one layer; the chooser's state advances, so pass a fresh chooser per evaluation. */
export function replayLayer(input: ReplayInput): LayerReplay {
  const { selections, tokens, layers, topK, layer, chooserLayer, chooser, nodes, gpusPerNode, units } = input;
  const gpus = nodes * gpusPerNode;
  const batchTokens = Math.max(1, input.batchTokensPerGpu * gpus);

  const gpuLoads = new Float64Array(gpus);
  const batchPairs = new Float64Array(gpus);
  const computeSeconds = new Float64Array(gpus);
  const flat = new BatchTraffic(gpus);
  const hierarchical = new BatchTraffic(gpus);
  const flatTotals = emptyTotals();
  const hierarchicalTotals = emptyTotals();

  const destinationStamp = new Int32Array(gpus).fill(-1);
  const destinations = new Int32Array(topK);
  const expertsOfToken = new Int32Array(topK);
  const nodeFirstDestination = new Int32Array(nodes);
  let pairs = 0;
  let homeHits = 0;
  let batches = 0;

  for (let start = 0; start < tokens; start += batchTokens) {
    const end = Math.min(tokens, start + batchTokens);
    const batch = batches++;
    batchPairs.fill(0);
    flat.reset();
    hierarchical.reset();

    for (let t = start; t < end; t++) {
      const home = t % gpus;
      const homeNode = Math.floor(home / gpusPerNode);
      const base = (t * layers + layer) * topK;
      for (let k = 0; k < topK; k++) expertsOfToken[k] = selections[base + k] as number;

      let destinationCount = 0;
      for (let k = 0; k < topK; k++) {
        const expert = expertsOfToken[k] as number;
        let rank = 0;
        for (let j = 0; j < topK; j++) if ((expertsOfToken[j] as number) < expert) rank++;
        const gpu = chooser.choose(home, chooserLayer, expert, t, rank);
        gpuLoads[gpu]++;
        batchPairs[gpu]++;
        pairs++;
        if (gpu === home) {
          homeHits++;
        } else if (destinationStamp[gpu] !== t) {
          destinationStamp[gpu] = t;
          destinations[destinationCount++] = gpu;
        }
      }

      nodeFirstDestination.fill(0);
      for (let i = 0; i < destinationCount; i++) {
        const gpu = destinations[i] as number;
        const node = Math.floor(gpu / gpusPerNode);
        if (node === homeNode) {
          flat.intra(home, gpu, batch);
          hierarchical.intra(home, gpu, batch);
          continue;
        }
        flat.inter(home, gpu, batch);
        const proxy = node * gpusPerNode + (home % gpusPerNode);
        if (nodeFirstDestination[node] === 0) {
          nodeFirstDestination[node] = 1;
          hierarchical.inter(home, proxy, batch);
        }
        if (gpu !== proxy) hierarchical.intra(proxy, gpu, batch);
      }
    }

    for (let g = 0; g < gpus; g++) computeSeconds[g] = (batchPairs[g] as number) * units.secondsPerPair;
    flat.close(flatTotals, units, computeSeconds);
    hierarchical.close(hierarchicalTotals, units, computeSeconds);
  }

  return { pairs, homeHits, batches, gpuLoads, flat: flatTotals, hierarchical: hierarchicalTotals };
}

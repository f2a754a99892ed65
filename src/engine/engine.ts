/**
 * The reference engine of one worker node, a stand-in for vLLM or SGLang. It runs token batches
 * through every MoE layer with locality-aware routing. Real hidden-state bytes go to the peer
 * engines that serve remote experts with hierarchical dispatch: one payload per destination node,
 * each token once. Every token-expert pair costs compute time on the serving GPU's queue, and the
 * batch's activations are reported to the router at the end.
 *
 * A batch uses one routing-table generation from its first layer to its last. With HTTP routing,
 * the router responds with 409 when the generation changed mid-batch. The engine then waits for the
 * new table and restarts the batch from the first layer, up to batchAttempts times. Bytes of an
 * abandoned attempt stay counted, because they did cross the network.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { EngineConfig } from '../config/engine.js';
import type { TierCounts } from '../router/activation-window.js';
import { GenerationConflictError, InvalidBodyError, NoActiveTableError, TableNotFoundError } from '../router/errors.js';
import { renderValue } from '../router/http.js';
import { parseRoutingTable } from '../routing/validate.js';
import type { RoutingTable } from '../routing/types.js';
import type { InstalledTable } from '../router/table-store.js';
import { groupByNode, type NodeDispatch } from './dispatch.js';
import { EngineRangeError, GenerationMovedError, InstanceInUseError, UpstreamError } from './errors.js';
import { GpuQueues } from './gpu-queue.js';
import { InstanceManager, instancesOnGpus, type InstanceKey } from './instances.js';
import type { EngineMetrics } from './metrics.js';
import { TrafficCounters } from './metrics.js';
import { TableFollower } from './table-follower.js';
import { decodeComputeRequest, decodeComputeResponse, encodeComputeRequest, encodeComputeResponse } from './wire.js';

/** Bytes per hidden-state element (bf16). */
export const BYTES_PER_ELEMENT = 2;

/**
 * Longest wait of a compute request for this engine's follower to reach the peer's newer
 * generation. The follower long-polls, so it normally hears of a new table within milliseconds.
 */
const FOLLOWER_CATCH_UP_MS = 2_000;

/**
 * Most tokens per POST /v1/route/batch call, a quarter of the router's default --route-max-tokens,
 * so a large batch becomes several calls that each stay under the router's default limits.
 */
export const ROUTE_CALL_MAX_TOKENS = 4_096;

export interface GenerateRequest {
  readonly requestId: string;
  /** tokens[t].layers[l] lists the token's selected experts at MoE layer l. */
  readonly tokens: readonly { readonly layers: readonly (readonly number[])[] }[];
}

export interface GenerateResult {
  readonly requestId: string;
  readonly generation: number;
  readonly attempts: number;
  readonly tokens: number;
  readonly layers: number;
  readonly durationMs: number;
  /** Pairs by tier of the serving GPU relative to the token's home GPU. */
  readonly pairs: TierCounts;
  /** Hidden states sent to another node (one per token and destination node), summed over layers. */
  readonly crossNodeCopies: number;
  /** Pairs of this batch computed on this node's GPUs without a loaded instance (peers count their own). */
  readonly unloadedPairs: number;
  /** gpuPairs[l][g]: pairs of this batch served by GPU g (any node) at layer l, for balance metrics. */
  readonly gpuPairs: readonly (readonly number[])[];
}

export interface EngineOptions {
  readonly config: EngineConfig;
  readonly log: FastifyBaseLogger;
  readonly metrics: EngineMetrics;
  /** Wall clock in ms since the epoch. */
  readonly now: () => number;
  /** Monotonic clock in ms, for compute queues and durations. */
  readonly monotonicNow: () => number;
  readonly sleep: (ms: number) => Promise<void>;
}

/** Instances named in a load or drop request; `layer` absent means every layer. */
export interface InstanceSpec {
  readonly gpu: number;
  readonly expert: number;
  readonly layer?: number;
}

export interface Readiness {
  readonly generation: number;
  readonly ready: boolean;
  readonly required: number;
  readonly missing: number;
  /** Up to 20 missing instances. */
  readonly missingInstances: readonly InstanceKey[];
}

export class Engine {
  readonly follower: TableFollower;
  readonly traffic: TrafficCounters;
  readonly instances: InstanceManager;
  private readonly queues: GpuQueues;
  private readonly gpus: readonly number[];
  private readonly hiddenBytes: number;
  private nextHome = 0;
  private readonly knownTables = new Map<number, RoutingTable>();
  private batchesCompleted = 0;
  private batchesFailed = 0;
  private unloadedPairCount = 0;
  /** Whether the instances of a table of this engine's topology were marked loaded at start. */
  private preloaded = false;

  constructor(private readonly options: EngineOptions) {
    const { config } = options;
    this.gpus = Array.from({ length: config.gpusPerNode }, (_, i) => config.node * config.gpusPerNode + i);
    this.hiddenBytes = config.hiddenSize * BYTES_PER_ELEMENT;
    this.queues = new GpuQueues({
      gpus: this.gpus,
      microsPerPair: config.computeMicrosPerPair,
      now: options.monotonicNow,
      sleep: options.sleep,
    });
    this.instances = new InstanceManager({
      gpus: this.gpus,
      expertBytes: config.expertBytes,
      loadBytesPerSecond: config.loadBytesPerSecond,
      sleep: options.sleep,
    });
    this.traffic = new TrafficCounters(config.node, config.nodes, options.metrics);
    this.follower = new TableFollower({
      routerUrl: config.routerUrl,
      waitMs: config.longPollWaitMs,
      requestTimeoutMs: config.requestTimeoutMs,
      log: options.log,
      now: options.now,
      onTable: (installed) => this.onTable(installed),
    });
  }

  /** Generation of the followed table, or -1 before the first. */
  get generation(): number {
    return this.follower.current?.table.generation ?? -1;
  }

  start(): void {
    this.follower.start();
  }

  async stop(): Promise<void> {
    await this.follower.stop();
  }

  /**
   * Why the engine cannot serve batches, or null when it can: it has no table yet, or the followed
   * table has another topology than the engine runs.
   */
  get notReadyReason(): string | null {
    const current = this.follower.current;
    if (current === null) return 'no routing table yet; its router has none active';
    return this.topologyMismatch(current.table);
  }

  /** Runs a batch through every layer; see the module header for generations and restarts. */
  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const started = this.options.monotonicNow();
    const attempts = this.options.config.batchAttempts;
    let attempt = 0;
    try {
      checkSelections(request);
      const homes = request.tokens.map(() => this.nextHomeGpu());
      for (;;) {
        attempt += 1;
        const installed = this.follower.current;
        if (installed === null) {
          throw new NoActiveTableError('the engine has no routing table yet; its router has none active');
        }
        try {
          const result = await this.runBatch(installed, request, homes);
          const durationMs = this.options.monotonicNow() - started;
          await this.reportActivations(request, result.inProcessTiers);
          this.batchesCompleted += 1;
          this.options.metrics.batches.inc({ outcome: 'ok' });
          this.options.metrics.batchDuration.observe(durationMs / 1000);
          return { requestId: request.requestId, generation: installed.table.generation, attempts: attempt, durationMs, ...result.summary };
        } catch (error) {
          if (!(error instanceof GenerationMovedError) || attempt >= attempts) throw error;
          this.options.log.info(
            { requestId: request.requestId, generation: installed.table.generation, activeGeneration: error.activeGeneration, attempt },
            'generation changed during a batch; restarting it',
          );
          await this.follower.waitForGeneration(error.activeGeneration ?? installed.table.generation + 1, this.options.config.requestTimeoutMs);
        }
      }
    } catch (error) {
      this.batchesFailed += 1;
      this.options.metrics.batches.inc({ outcome: 'failed' });
      throw error;
    }
  }

  /**
   * Serves a peer's compute request: charges the pairs on this node's GPUs and returns the output.
   * The request's generation must be this engine's active or its router's pending one (409
   * otherwise), and its layer and experts must exist in that table.
   */
  async compute(body: Buffer): Promise<Buffer> {
    const { config } = this.options;
    const request = decodeComputeRequest(body, config.maxComputePairs);
    if (request.sourceNode >= config.nodes || request.sourceNode === config.node) {
      throw new EngineRangeError(`compute request names source node ${request.sourceNode}, not a peer of node ${config.node}`);
    }
    if (request.hiddenBytes !== this.hiddenBytes) {
      throw new EngineRangeError(
        `compute request carries ${request.hiddenBytes}-byte hidden states, but this engine uses ${this.hiddenBytes} (hidden size ${config.hiddenSize} x ${BYTES_PER_ELEMENT})`,
      );
    }
    const table = await this.tableForCompute(request.generation);
    if (request.layer >= table.layers.length) {
      throw new EngineRangeError(
        `compute request names layer ${request.layer}, but generation ${table.generation} has ${table.layers.length} layers`,
      );
    }
    request.pairs.forEach((pair, index) => {
      if (!this.queues.has(pair.gpu)) {
        throw new EngineRangeError(`compute request sends a pair to GPU ${pair.gpu}, which is not on node ${config.node}`);
      }
      if (pair.expert >= table.experts) {
        throw new EngineRangeError(
          `compute request pair ${index} names expert ${pair.expert}, but generation ${table.generation} has ${table.experts} experts`,
        );
      }
    });
    await this.computeLocally(request.layer, request.pairs);
    const output = Buffer.from(request.payload);
    const bytes = request.tokens * request.hiddenBytes;
    this.traffic.recordIncoming(request.sourceNode, bytes, bytes);
    return encodeComputeResponse(request.tokens, request.hiddenBytes, output);
  }

  /** Counters for GET /v1/traffic. */
  trafficReport() {
    return {
      node: this.options.config.node,
      generation: this.follower.current?.table.generation ?? null,
      hiddenBytes: this.hiddenBytes,
      batches: { completed: this.batchesCompleted, failed: this.batchesFailed },
      unloadedPairs: this.unloadedPairCount,
      peers: this.traffic.snapshot(),
    };
  }

  /** Queues instances for loading; without a list, every instance table `generation` puts on this node. */
  async load(generation: number, specs: readonly InstanceSpec[] | undefined): Promise<{ queued: number; present: number }> {
    const table = await this.tableOf(generation);
    const wanted = specs === undefined ? instancesOnGpus(table, this.gpus) : this.expandSpecs(table, specs);
    const { queued, present, done } = this.instances.load(wanted);
    this.options.log.info({ generation, queued, present }, 'loading expert instances');
    void done.then(() => this.options.log.info({ generation, loaded: queued }, 'expert instances loaded'));
    return { queued, present };
  }

  /**
   * Drops the listed instances, or, without a list, every instance that neither table `generation`
   * nor the active or pending table uses. Throws InstanceInUseError, dropping nothing, when a listed
   * instance is used by the active table or by the router's pending table.
   */
  async drop(generation: number | undefined, specs: readonly InstanceSpec[] | undefined): Promise<number> {
    let dropped: number;
    if (specs !== undefined) {
      const table = generation === undefined ? this.follower.current?.table : await this.tableOf(generation);
      if (table === undefined) throw new NoActiveTableError('the engine has no routing table yet to check instances against');
      const requested = this.expandSpecs(table, specs);
      const inUse = await this.tablesInUse();
      for (const instance of requested) {
        const user = inUse.find((entry) => entry.keys.has(instanceKey(instance)));
        if (user !== undefined) {
          throw new InstanceInUseError(
            `instance (layer ${instance.layer}, GPU ${instance.gpu}, expert ${instance.expert}) is used by the ${user.role} table, ` +
              `generation ${user.table.generation}; drop it once no active or pending table uses it`,
          );
        }
      }
      dropped = this.instances.drop(requested);
    } else if (generation !== undefined) {
      const keep = instancesOnGpus(await this.tableOf(generation), this.gpus);
      for (const entry of await this.tablesInUse()) keep.push(...instancesOnGpus(entry.table, this.gpus));
      dropped = this.instances.dropAllExcept(keep);
    } else {
      throw new EngineRangeError('a drop request needs instances, a generation, or both');
    }
    this.options.log.info({ generation: generation ?? null, dropped }, 'expert instances dropped');
    return dropped;
  }

  /** Reports whether every instance that table `generation` puts on this node is loaded. */
  async readiness(generation: number): Promise<Readiness> {
    const required = instancesOnGpus(await this.tableOf(generation), this.gpus);
    const missing = this.instances.missing(required);
    return {
      generation,
      ready: missing.length === 0,
      required: required.length,
      missing: missing.length,
      missingInstances: missing.slice(0, 20),
    };
  }

  private async runBatch(installed: InstalledTable, request: GenerateRequest, homes: readonly number[]) {
    const { table } = installed;
    const layers = table.layers.length;
    this.checkTokens(table, request);
    const hidden = Buffer.alloc(request.tokens.length * this.hiddenBytes);
    for (let t = 0; t < request.tokens.length; t++) {
      hidden.fill(t & 0xff, t * this.hiddenBytes, (t + 1) * this.hiddenBytes);
    }
    const pairs: TierCounts = { gpu: 0, node: 0, remote: 0 };
    const inProcessTiers: TierCounts | null = this.options.config.routing === 'in-process' ? { gpu: 0, node: 0, remote: 0 } : null;
    let crossNodeCopies = 0;
    let unloadedPairs = 0;
    const gpuCount = table.topology.nodes * table.topology.gpusPerNode;
    const gpuPairs: number[][] = [];

    for (let layer = 0; layer < layers; layer++) {
      const experts = request.tokens.map((token) => token.layers[layer] ?? []);
      const gpus = await this.route(installed, layer, experts, homes, inProcessTiers);
      countTiers(pairs, gpus, homes, table.topology.gpusPerNode);
      const served = new Array<number>(gpuCount).fill(0);
      for (const list of gpus) for (const gpu of list) served[gpu] += 1;
      gpuPairs.push(served);
      const dispatches = groupByNode(experts, gpus, table.topology.gpusPerNode);
      await Promise.all(
        dispatches.map(async (dispatch) => {
          if (dispatch.node === this.options.config.node) {
            unloadedPairs += await this.computeLocally(layer, dispatch.pairs);
          } else {
            crossNodeCopies += dispatch.tokens.length;
            await this.sendToPeer(installed, layer, dispatch, hidden);
          }
        }),
      );
    }
    return {
      summary: { tokens: request.tokens.length, layers, pairs, crossNodeCopies, unloadedPairs, gpuPairs },
      inProcessTiers,
    };
  }

  /** Chooses the serving GPU of every pair of one layer: gpus[t][k]. */
  private async route(
    installed: InstalledTable,
    layer: number,
    experts: readonly (readonly number[])[],
    homes: readonly number[],
    tiers: TierCounts | null,
  ): Promise<number[][]> {
    if (tiers !== null) {
      const gpus = experts.map((list, t) => list.map((expert) => installed.chooser.choose(homes[t] as number, layer, expert)));
      countTiers(tiers, gpus, homes, installed.table.topology.gpusPerNode);
      return gpus;
    }

    const groups = this.gpus
      .map((sourceGpu) => ({ sourceGpu, tokens: experts.flatMap((_, t) => (homes[t] === sourceGpu ? [t] : [])) }))
      .filter((group) => group.tokens.length > 0);
    const generation = installed.table.generation;
    const gpus: number[][] = new Array(experts.length);
    // Calls go one after another, so the router's round-robin receives the pairs in batch order.
    for (const call of splitRouteCalls(groups, ROUTE_CALL_MAX_TOKENS)) {
      const response = await this.callRouter('/v1/route/batch', {
        generation,
        requests: call.map((group) => ({ sourceGpu: group.sourceGpu, layer, tokens: group.tokens.map((t) => experts[t]) })),
      });
      if (response.status === 409) {
        const body = (await response.json()) as { error?: { activeGeneration?: number | null } };
        throw new GenerationMovedError(
          `the router moved from generation ${generation} to ${renderValue(body.error?.activeGeneration)} during the batch`,
          body.error?.activeGeneration ?? null,
        );
      }
      if (response.status !== 200) {
        throw new UpstreamError(`router responded with ${response.status} to POST /v1/route/batch: ${(await response.text()).slice(0, 300)}`);
      }
      const body = (await response.json()) as { results: { gpus: number[][] }[] };
      call.forEach((group, index) => {
        const result = body.results[index]?.gpus ?? [];
        group.tokens.forEach((t, row) => {
          gpus[t] = result[row] ?? [];
        });
      });
    }
    return gpus;
  }

  /** Charges pairs on this node's GPUs; returns how many hit an instance that is not loaded. */
  private async computeLocally(layer: number, pairs: readonly { gpu: number; expert: number }[]): Promise<number> {
    const perGpu = new Map<number, number>();
    let unloaded = 0;
    for (const pair of pairs) {
      perGpu.set(pair.gpu, (perGpu.get(pair.gpu) ?? 0) + 1);
      if (!this.instances.has({ layer, gpu: pair.gpu, expert: pair.expert })) unloaded += 1;
    }
    if (unloaded > 0) {
      this.unloadedPairCount += unloaded;
      this.options.metrics.unloadedPairs.inc(unloaded);
    }
    await Promise.all(
      [...perGpu.entries()].map(async ([gpu, count]) => {
        this.options.metrics.pairsComputed.inc({ gpu: String(gpu) }, count);
        await this.queues.charge(gpu, count);
      }),
    );
    return unloaded;
  }

  /** Sends one destination node its tokens' hidden states and waits for the expert output. */
  private async sendToPeer(installed: InstalledTable, layer: number, dispatch: NodeDispatch, hidden: Buffer): Promise<void> {
    const { config } = this.options;
    const rows = dispatch.tokens.length;
    const payload = Buffer.allocUnsafe(rows * this.hiddenBytes);
    dispatch.tokens.forEach((token, row) => {
      hidden.copy(payload, row * this.hiddenBytes, token * this.hiddenBytes, (token + 1) * this.hiddenBytes);
    });
    const body = encodeComputeRequest({
      generation: installed.table.generation,
      layer,
      sourceNode: config.node,
      tokens: rows,
      hiddenBytes: this.hiddenBytes,
      pairs: dispatch.pairs,
      payload,
    });

    const url = `${config.peers[dispatch.node]}/v1/experts/compute`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
        signal: AbortSignal.timeout(config.requestTimeoutMs),
      });
    } catch (error) {
      throw new UpstreamError(`peer engine of node ${dispatch.node} at ${url} failed: ${messageOf(error)}`, { cause: error });
    }
    const responseBody = Buffer.from(await response.arrayBuffer());
    if (response.status === 409) {
      const answer = parseErrorBody(responseBody);
      if (answer?.code === 'GENERATION_CONFLICT') {
        throw new GenerationMovedError(
          `peer engine of node ${dispatch.node} does not serve generation ${installed.table.generation}: ${answer.message}`,
          answer.activeGeneration ?? null,
        );
      }
    }
    if (response.status !== 200) {
      throw new UpstreamError(
        `peer engine of node ${dispatch.node} responded with ${response.status}: ${responseBody.toString('utf8', 0, 300)}`,
      );
    }

    const output = decodeComputeResponse(responseBody, rows, this.hiddenBytes);
    dispatch.tokens.forEach((token, row) => {
      hidden.set(output.subarray(row * this.hiddenBytes, (row + 1) * this.hiddenBytes), token * this.hiddenBytes);
    });
    this.traffic.recordOutgoing(dispatch.node, payload.length, output.length);
  }

  private async reportActivations(request: GenerateRequest, tiers: TierCounts | null): Promise<void> {
    const body = {
      tokens: request.tokens.map((token) => token.layers),
      ...(tiers === null ? {} : { dispatch: tiers }),
    };
    try {
      const response = await this.callRouter('/v1/activations', body);
      const text = await response.text();
      if (response.status !== 200) {
        throw new Error(`router responded with ${response.status} to POST /v1/activations: ${text.slice(0, 300)}`);
      }
      this.options.metrics.activationReports.inc({ outcome: 'ok' });
    } catch (error) {
      this.options.metrics.activationReports.inc({ outcome: 'failed' });
      this.options.log.warn({ requestId: request.requestId, err: error }, 'activation report failed; the batch still succeeded');
    }
  }

  private async callRouter(path: string, body: unknown): Promise<Response> {
    const { routerUrl, requestTimeoutMs } = this.options.config;
    try {
      return await fetch(`${routerUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
    } catch (error) {
      throw new UpstreamError(`router at ${routerUrl} failed on ${path}: ${messageOf(error)}`, { cause: error });
    }
  }

  /**
   * Returns the tables whose instances must stay: the followed (active) one and the router's pending
   * one. Throws UpstreamError when the router does not report what is pending, so nothing is dropped blind.
   */
  private async tablesInUse(): Promise<{ role: 'active' | 'pending'; table: RoutingTable; keys: Set<string> }[]> {
    const tables: { role: 'active' | 'pending'; table: RoutingTable }[] = [];
    const active = this.follower.current?.table;
    if (active !== undefined) tables.push({ role: 'active', table: active });
    const pending = await this.pendingTable();
    if (pending !== null) tables.push({ role: 'pending', table: pending });
    return tables.map((entry) => ({ ...entry, keys: new Set(instancesOnGpus(entry.table, this.gpus).map(instanceKey)) }));
  }

  /** Fetches the router's pending table, or null when none is pending. */
  private async pendingTable(): Promise<RoutingTable | null> {
    const { routerUrl, requestTimeoutMs } = this.options.config;
    let response: Response;
    try {
      response = await fetch(`${routerUrl}/v1/routing-table/pending`, { signal: AbortSignal.timeout(requestTimeoutMs) });
    } catch (error) {
      throw new UpstreamError(`router at ${routerUrl} failed on /v1/routing-table/pending: ${messageOf(error)}`, { cause: error });
    }
    if (response.status === 404) {
      await response.arrayBuffer();
      return null;
    }
    if (response.status !== 200) {
      throw new UpstreamError(
        `router at ${routerUrl} responded with ${response.status} to GET /v1/routing-table/pending: ${(await response.text()).slice(0, 300)}`,
      );
    }
    return parseRoutingTable(await response.json());
  }

  /**
   * Returns the table a peer's compute request names: this engine's active one, or, for a newer
   * generation, the router's pending one or the active one once the follower has caught up.
   * Throws GenerationConflictError otherwise.
   */
  private async tableForCompute(generation: number): Promise<RoutingTable> {
    const current = this.follower.current;
    if (current !== null && current.table.generation === generation) return current.table;
    const known = this.knownTables.get(generation);
    if (known !== undefined) return known;

    if (current === null || generation > current.table.generation) {
      try {
        return await this.tableOf(generation);
      } catch (error) {
        if (!(error instanceof TableNotFoundError)) throw error;
      }
      const reached = await this.follower.waitForGeneration(generation, FOLLOWER_CATCH_UP_MS);
      if (reached !== null && reached.table.generation === generation) return reached.table;
    }
    throw new GenerationConflictError(
      `compute request is for generation ${generation}, which is neither this engine's active generation ` +
        `(${this.generation}) nor pending at its router; restart the batch with the active generation`,
      this.follower.current?.table.generation ?? null,
    );
  }

  /** Returns the table of `generation`: the followed one, or the router's pending one. */
  private async tableOf(generation: number): Promise<RoutingTable> {
    const current = this.follower.current;
    if (current !== null && current.table.generation === generation) return current.table;
    const known = this.knownTables.get(generation);
    if (known !== undefined) return known;

    const { routerUrl, requestTimeoutMs } = this.options.config;
    let response: Response;
    try {
      response = await fetch(`${routerUrl}/v1/routing-table/pending`, { signal: AbortSignal.timeout(requestTimeoutMs) });
    } catch (error) {
      throw new UpstreamError(`router at ${routerUrl} failed on /v1/routing-table/pending: ${messageOf(error)}`, { cause: error });
    }
    if (response.status === 200) {
      const table = parseRoutingTable(await response.json());
      if (table.generation === generation) {
        this.knownTables.clear();
        this.knownTables.set(generation, table);
        return table;
      }
    } else {
      await response.arrayBuffer();
    }
    throw new TableNotFoundError(
      `generation ${generation} is neither the engine's active table (${this.generation}) nor pending at its router`,
    );
  }

  private expandSpecs(table: RoutingTable, specs: readonly InstanceSpec[]): InstanceKey[] {
    const layers = table.layers.length;
    return specs.flatMap((spec, index) => {
      if (!this.gpus.includes(spec.gpu)) {
        throw new EngineRangeError(`instances[${index}].gpu must be a GPU of node ${this.options.config.node} (${this.gpus.join(', ')}), got ${spec.gpu}`);
      }
      if (spec.expert >= table.experts) {
        throw new EngineRangeError(`instances[${index}].expert must be an expert id in [0, ${table.experts}), got ${spec.expert}`);
      }
      if (spec.layer !== undefined && spec.layer >= layers) {
        throw new EngineRangeError(`instances[${index}].layer must be a layer in [0, ${layers}), got ${spec.layer}`);
      }
      const layerList = spec.layer === undefined ? Array.from({ length: layers }, (_, l) => l) : [spec.layer];
      return layerList.map((layer) => ({ layer, gpu: spec.gpu, expert: spec.expert }));
    });
  }

  /** Describes how `table`'s topology differs from the engine's, or returns null when it does not. */
  private topologyMismatch(table: RoutingTable): string | null {
    const { config } = this.options;
    const { nodes, gpusPerNode } = table.topology;
    if (nodes === config.nodes && gpusPerNode === config.gpusPerNode) return null;
    return `routing table generation ${table.generation} is for ${nodes}x${gpusPerNode} GPUs, but this engine runs in ${config.nodes}x${config.gpusPerNode}`;
  }

  private checkTokens(table: RoutingTable, request: GenerateRequest): void {
    const mismatch = this.topologyMismatch(table);
    if (mismatch !== null) {
      throw new EngineRangeError(mismatch);
    }
    const layers = table.layers.length;
    request.tokens.forEach((token, t) => {
      if (token.layers.length !== layers) {
        throw new EngineRangeError(
          `tokens[${t}].layers must list ${layers} top-k lists (the layers of generation ${table.generation}), got ${token.layers.length}`,
        );
      }
      token.layers.forEach((list, layer) => {
        list.forEach((expert, rank) => {
          if (expert >= table.experts) {
            throw new EngineRangeError(`tokens[${t}].layers[${layer}][${rank}] must be an expert id in [0, ${table.experts}), got ${expert}`);
          }
        });
      });
    });
  }

  private nextHomeGpu(): number {
    const gpu = this.gpus[this.nextHome % this.gpus.length] as number;
    this.nextHome += 1;
    return gpu;
  }

  /** Called once for every new generation the follower receives. */
  private onTable(installed: InstalledTable): void {
    const { table } = installed;
    const mismatch = this.topologyMismatch(table);
    if (mismatch !== null) {
      const { config } = this.options;
      this.options.log.warn(
        {
          generation: table.generation,
          tableTopology: `${table.topology.nodes}x${table.topology.gpusPerNode}`,
          engineTopology: `${config.nodes}x${config.gpusPerNode}`,
        },
        'routing table has another topology than this engine; not ready until a matching table is active',
      );
      return;
    }
    const required = instancesOnGpus(table, this.gpus);
    if (!this.preloaded) {
      this.preloaded = true;
      this.instances.preload(required);
      this.options.log.info({ generation: table.generation, instances: required.length }, 'expert instances of the first table loaded at start');
      return;
    }
    const missing = this.instances.missing(required);
    if (missing.length > 0) {
      this.options.log.warn(
        { generation: installed.table.generation, missing: missing.length },
        'active table uses instances that were not loaded beforehand; loading them now',
      );
      this.instances.load(missing);
    }
  }
}

/**
 * Checks every token's top-k lists before any work: none empty, all as long as the batch's first
 * list, and no expert listed twice in one list. Throws InvalidBodyError naming the token and layer.
 */
function checkSelections(request: GenerateRequest): void {
  const firstToken = request.tokens.findIndex((token) => token.layers.length > 0);
  const first = request.tokens[firstToken]?.layers[0];
  request.tokens.forEach((token, t) => {
    token.layers.forEach((list, layer) => {
      const path = `tokens[${t}].layers[${layer}]`;
      if (list.length === 0) {
        throw new InvalidBodyError(`${path} is empty; list the token's top-k expert ids for every layer`);
      }
      if (first !== undefined && list.length !== first.length) {
        throw new InvalidBodyError(
          `${path} lists ${list.length} expert ids, but tokens[${firstToken}].layers[0] lists ${first.length}; ` +
            'every top-k list of a batch must have the same length',
        );
      }
      const seen = new Set<number>();
      for (const expert of list) {
        if (seen.has(expert)) {
          throw new InvalidBodyError(`${path} lists expert ${expert} twice; a token's top-k expert ids must be distinct`);
        }
        seen.add(expert);
      }
    });
  });
}

/**
 * Splits the per-source-GPU token groups of one layer into router calls of at most `maxTokens`
 * tokens each, keeping group and token order. A group larger than that spans several calls.
 */
export function splitRouteCalls(
  groups: readonly { readonly sourceGpu: number; readonly tokens: readonly number[] }[],
  maxTokens: number,
): { sourceGpu: number; tokens: readonly number[] }[][] {
  const calls: { sourceGpu: number; tokens: readonly number[] }[][] = [];
  let call: { sourceGpu: number; tokens: readonly number[] }[] = [];
  let size = 0;
  for (const group of groups) {
    for (let start = 0; start < group.tokens.length; ) {
      if (size === maxTokens) {
        calls.push(call);
        call = [];
        size = 0;
      }
      const end = Math.min(group.tokens.length, start + maxTokens - size);
      call.push({ sourceGpu: group.sourceGpu, tokens: group.tokens.slice(start, end) });
      size += end - start;
      start = end;
    }
  }
  if (call.length > 0) calls.push(call);
  return calls;
}

function instanceKey(instance: InstanceKey): string {
  return `${instance.layer}/${instance.gpu}/${instance.expert}`;
}

/** Reads the `error` object of a service's JSON error body, or returns null when it has none. */
function parseErrorBody(body: Buffer): { code?: string; message?: string; activeGeneration?: number | null } | null {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: string; message?: string; activeGeneration?: number | null } };
    return parsed.error ?? null;
  } catch {
    return null;
  }
}

/** Adds each pair's tier, relative to the token's home GPU, to `tiers`. */
function countTiers(tiers: TierCounts, gpus: readonly (readonly number[])[], homes: readonly number[], gpusPerNode: number): void {
  gpus.forEach((list, t) => {
    const home = homes[t] as number;
    for (const gpu of list) {
      if (gpu === home) tiers.gpu += 1;
      else if (Math.floor(gpu / gpusPerNode) === Math.floor(home / gpusPerNode)) tiers.node += 1;
      else tiers.remote += 1;
    }
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Configuration of the reference engine, resolved once at start-up from command-line flags and
 * GRACE_MOE_ENGINE_* environment variables (a flag wins over its variable).
 */
import { parseTopologyShape } from '../topology.js';
import { ConfigError } from './errors.js';
import {
  choiceSetting,
  hostSetting,
  httpUrl,
  integerSetting,
  logLevelSetting,
  numberSetting,
  requiredTextSetting,
  urlListSetting,
  type Environment,
  type LogLevel,
} from './resolve.js';

export const ROUTING_MODES = ['http', 'in-process'] as const;
export type RoutingMode = (typeof ROUTING_MODES)[number];

export const ENGINE_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  portNumber: 8480,
  /** Largest request body; a 256-token batch of 26 layers is about 60 KiB of JSON. */
  bodyLimitBytes: 64 * 1024 * 1024,
  /** Hidden size of the model (DeepSeek-V2-Lite); a hidden state is hiddenSize x 2 bytes (bf16). */
  hiddenSize: 2048,
  /** Time charged per token-expert pair on the GPU that serves it. */
  computeMicrosPerPair: 20,
  /** Bytes of one routed expert's weights: 3 x 2048 x 1408 x 2 for DeepSeek-V2-Lite. */
  expertBytes: 3 * 2048 * 1408 * 2,
  /** Rate at which a GPU loads expert weights; an assumed host-to-GPU figure, not a measurement. */
  loadBytesPerSecond: 2_000_000_000,
  routing: 'http' as RoutingMode,
  /** Wait the engine requests when long-polling its router for a new table (the router caps it). */
  longPollWaitMs: 25_000,
  /** Timeout of one request to the router or a peer engine. */
  requestTimeoutMs: 30_000,
  /** Times a batch restarts when the router's generation changes under it. */
  batchAttempts: 3,
  /**
   * Most token-expert pairs in one POST /v1/experts/compute request (8 bytes each on the wire). A
   * batch of 65,536 tokens (the driver's largest) with top-8 sends at most 524,288 pairs to one node.
   */
  maxComputePairs: 1_048_576,
  shutdownTimeoutMs: 10_000,
  logLevel: 'info' as LogLevel,
});

export interface EngineConfig {
  readonly host: string;
  readonly portNumber: number;
  readonly bodyLimitBytes: number;
  /** Index of this engine's node in the topology. */
  readonly node: number;
  readonly nodes: number;
  readonly gpusPerNode: number;
  /** Base URL of the engine of every node, in node order; this node's entry is not called. */
  readonly peers: readonly string[];
  /** Base URL of this node's router sidecar. */
  readonly routerUrl: string;
  readonly routing: RoutingMode;
  readonly hiddenSize: number;
  readonly computeMicrosPerPair: number;
  readonly expertBytes: number;
  readonly loadBytesPerSecond: number;
  readonly longPollWaitMs: number;
  readonly requestTimeoutMs: number;
  readonly batchAttempts: number;
  readonly maxComputePairs: number;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
}

/** Flag definitions of `grace-moe engine`, for parseFlags. */
export const ENGINE_FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  'body-limit-bytes': { type: 'string' },
  node: { type: 'string' },
  topology: { type: 'string' },
  peers: { type: 'string' },
  'router-url': { type: 'string' },
  router: { type: 'string' },
  'hidden-size': { type: 'string' },
  'compute-micros-per-pair': { type: 'string' },
  'expert-bytes': { type: 'string' },
  'load-bytes-per-second': { type: 'string' },
  'long-poll-wait-ms': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'batch-attempts': { type: 'string' },
  'max-compute-pairs': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export type EngineFlags = Partial<Record<keyof typeof ENGINE_FLAGS, string>>;

const name = (flag: string, suffix: string) => ({ flag, env: `GRACE_MOE_ENGINE_${suffix}` });

/** Resolves and validates the engine configuration; throws ConfigError naming the bad setting. */
export function resolveEngineConfig(flags: EngineFlags, env: Environment = process.env): EngineConfig {
  const d = ENGINE_DEFAULTS;
  const topologyName = name('--topology', 'TOPOLOGY');
  const topologyText = requiredTextSetting(topologyName, flags.topology, env, 'nodes x GPUs per node, for example 3x2');
  let shape: { nodes: number; gpusPerNode: number };
  try {
    shape = parseTopologyShape(topologyText, flags.topology !== undefined ? topologyName.flag : topologyName.env);
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error), { cause: error });
  }

  const nodeName = name('--node', 'NODE');
  requiredTextSetting(nodeName, flags.node, env, "the index of this engine's node, from 0");
  const node = integerSetting(nodeName, flags.node, env, 0, { min: 0, max: shape.nodes - 1 });
  const peersName = name('--peers', 'PEERS');
  const peers = urlListSetting(peersName, flags.peers, env, 'the engine URL of every node, comma-separated in node order');
  if (peers.length !== shape.nodes) {
    throw new ConfigError(
      `${flags.peers !== undefined ? peersName.flag : peersName.env} must list one engine URL per node (${shape.nodes}), got ${peers.length}`,
    );
  }
  const routerName = name('--router-url', 'ROUTER_URL');
  const routerUrl = httpUrl(
    requiredTextSetting(routerName, flags['router-url'], env, "the URL of this node's router sidecar"),
    flags['router-url'] !== undefined ? routerName.flag : routerName.env,
  );

  return Object.freeze({
    host: hostSetting(name('--host', 'HOST'), flags.host, env, d.host),
    portNumber: integerSetting(name('--port', 'PORT'), flags.port, env, d.portNumber, { min: 0, max: 65_535 }),
    bodyLimitBytes: integerSetting(name('--body-limit-bytes', 'BODY_LIMIT_BYTES'), flags['body-limit-bytes'], env, d.bodyLimitBytes, {
      min: 1024,
      max: 1024 * 1024 * 1024,
    }),
    node,
    nodes: shape.nodes,
    gpusPerNode: shape.gpusPerNode,
    peers,
    routerUrl,
    routing: choiceSetting(name('--router', 'ROUTER'), flags.router, env, d.routing, ROUTING_MODES),
    hiddenSize: integerSetting(name('--hidden-size', 'HIDDEN_SIZE'), flags['hidden-size'], env, d.hiddenSize, { min: 1, max: 65_536 }),
    computeMicrosPerPair: numberSetting(
      name('--compute-micros-per-pair', 'COMPUTE_MICROS_PER_PAIR'),
      flags['compute-micros-per-pair'],
      env,
      d.computeMicrosPerPair,
      { min: 0, max: 1_000_000 },
    ),
    expertBytes: integerSetting(name('--expert-bytes', 'EXPERT_BYTES'), flags['expert-bytes'], env, d.expertBytes, {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
    }),
    loadBytesPerSecond: numberSetting(
      name('--load-bytes-per-second', 'LOAD_BYTES_PER_SECOND'),
      flags['load-bytes-per-second'],
      env,
      d.loadBytesPerSecond,
      { min: 1, max: 1e15 },
    ),
    longPollWaitMs: integerSetting(name('--long-poll-wait-ms', 'LONG_POLL_WAIT_MS'), flags['long-poll-wait-ms'], env, d.longPollWaitMs, {
      min: 0,
      max: 10 * 60_000,
    }),
    requestTimeoutMs: integerSetting(name('--request-timeout-ms', 'REQUEST_TIMEOUT_MS'), flags['request-timeout-ms'], env, d.requestTimeoutMs, {
      min: 1,
      max: 10 * 60_000,
    }),
    batchAttempts: integerSetting(name('--batch-attempts', 'BATCH_ATTEMPTS'), flags['batch-attempts'], env, d.batchAttempts, { min: 1, max: 100 }),
    maxComputePairs: integerSetting(name('--max-compute-pairs', 'MAX_COMPUTE_PAIRS'), flags['max-compute-pairs'], env, d.maxComputePairs, {
      min: 1,
      max: 100_000_000,
    }),
    shutdownTimeoutMs: integerSetting(
      name('--shutdown-timeout-ms', 'SHUTDOWN_TIMEOUT_MS'),
      flags['shutdown-timeout-ms'],
      env,
      d.shutdownTimeoutMs,
      { min: 0, max: 10 * 60_000 },
    ),
    logLevel: logLevelSetting(flags['log-level'], env, d.logLevel),
  });
}

/** Builds an engine configuration from the defaults and the required fields, without reading the environment. */
export function engineConfigWith(
  required: Pick<EngineConfig, 'node' | 'nodes' | 'gpusPerNode' | 'peers' | 'routerUrl'>,
  overrides: Partial<EngineConfig> = {},
): EngineConfig {
  return Object.freeze({ ...ENGINE_DEFAULTS, ...required, ...overrides });
}

/**
 * Configuration of the router sidecar: one frozen defaults object, resolved once at start-up from
 * command-line flags and GRACE_MOE_ROUTER_* environment variables (a flag wins over its variable).
 */
import { DEFAULT_SAMPLE_CAPACITY } from '../stats/activation.js';
import { parseTopologyShape } from '../topology.js';
import { ConfigError } from './errors.js';
import {
  hostSetting,
  integerSetting,
  logLevelSetting,
  optionalTextSetting,
  type Environment,
  type LogLevel,
  type SettingName,
} from './resolve.js';

export const ROUTER_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  portNumber: 8470,
  /** Largest request body; a routing table of 60 layers x 256 experts x 4 instances is about 3 MiB. */
  bodyLimitBytes: 8 * 1024 * 1024,
  /**
   * Largest body of POST /v1/route and /v1/route/batch. Parsing, validating and routing a body
   * blocks the event loop for a time that grows with its size, so the hot path gets a tighter limit.
   */
  routeBodyLimitBytes: 1024 * 1024,
  /** Most token lists in one /v1/route or /v1/route/batch request (summed over batch entries). */
  routeMaxTokens: 16_384,
  /** Maximum wait of a GET /v1/routing-table long-poll, whatever waitMs the client requests. */
  longPollMaxMs: 30_000,
  /** Age at which the open statistics bucket is sealed even without a scrape. */
  statsBucketMs: 60_000,
  /**
   * Sealed buckets kept for scrapers. Each contains layers x experts^2 x 8 bytes of co-activation
   * counts (850 KiB for 26 layers of 64 experts).
   */
  statsRetainedBuckets: 15,
  /** Tokens in the reservoir sample of each statistics bucket. */
  sampleCapacity: DEFAULT_SAMPLE_CAPACITY,
  /** Time allowed to drain in-flight requests on shutdown. */
  shutdownTimeoutMs: 10_000,
  logLevel: 'info' as LogLevel,
});

export interface RouterConfig {
  readonly host: string;
  readonly portNumber: number;
  readonly bodyLimitBytes: number;
  readonly routeBodyLimitBytes: number;
  readonly routeMaxTokens: number;
  readonly longPollMaxMs: number;
  readonly statsBucketMs: number;
  readonly statsRetainedBuckets: number;
  readonly sampleCapacity: number;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
  /** Routing table or placement plan to serve at start (the mounted plan), or null. */
  readonly tableFile: string | null;
  /** File that every accepted table is written to and recovered from, or null. */
  readonly stateFile: string | null;
  /** Shape of the deployment the router serves; a table of another shape is rejected. */
  readonly deployment: DeploymentShape;
}

/** What the engines run; each field is null when not configured, and then not checked. */
export interface DeploymentShape {
  readonly topology: { readonly nodes: number; readonly gpusPerNode: number } | null;
  readonly layers: number | null;
  readonly experts: number | null;
}

/** A deployment shape that checks nothing. */
export const ANY_DEPLOYMENT: DeploymentShape = Object.freeze({ topology: null, layers: null, experts: null });

/** Flag definitions of `grace-moe router`, for parseFlags. */
export const ROUTER_FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  'body-limit-bytes': { type: 'string' },
  'route-body-limit-bytes': { type: 'string' },
  'route-max-tokens': { type: 'string' },
  'long-poll-max-ms': { type: 'string' },
  'stats-bucket-ms': { type: 'string' },
  'stats-retained-buckets': { type: 'string' },
  'sample-capacity': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  'log-level': { type: 'string' },
  'table-file': { type: 'string' },
  'state-file': { type: 'string' },
  topology: { type: 'string' },
  layers: { type: 'string' },
  experts: { type: 'string' },
} as const;

export type RouterFlags = Partial<Record<keyof typeof ROUTER_FLAGS, string>>;

const DAY_MS = 86_400_000;

/** Resolves and validates the router configuration; throws ConfigError naming the bad setting. */
export function resolveRouterConfig(flags: RouterFlags, env: Environment = process.env): RouterConfig {
  const d = ROUTER_DEFAULTS;
  return Object.freeze({
    host: hostSetting({ flag: '--host', env: 'GRACE_MOE_ROUTER_HOST' }, flags.host, env, d.host),
    portNumber: integerSetting({ flag: '--port', env: 'GRACE_MOE_ROUTER_PORT' }, flags.port, env, d.portNumber, {
      min: 0,
      max: 65_535,
    }),
    bodyLimitBytes: integerSetting(
      { flag: '--body-limit-bytes', env: 'GRACE_MOE_ROUTER_BODY_LIMIT_BYTES' },
      flags['body-limit-bytes'],
      env,
      d.bodyLimitBytes,
      { min: 1024, max: 1024 * 1024 * 1024 },
    ),
    routeBodyLimitBytes: integerSetting(
      { flag: '--route-body-limit-bytes', env: 'GRACE_MOE_ROUTER_ROUTE_BODY_LIMIT_BYTES' },
      flags['route-body-limit-bytes'],
      env,
      d.routeBodyLimitBytes,
      { min: 1024, max: 1024 * 1024 * 1024 },
    ),
    routeMaxTokens: integerSetting(
      { flag: '--route-max-tokens', env: 'GRACE_MOE_ROUTER_ROUTE_MAX_TOKENS' },
      flags['route-max-tokens'],
      env,
      d.routeMaxTokens,
      { min: 1, max: 10_000_000 },
    ),
    longPollMaxMs: integerSetting(
      { flag: '--long-poll-max-ms', env: 'GRACE_MOE_ROUTER_LONG_POLL_MAX_MS' },
      flags['long-poll-max-ms'],
      env,
      d.longPollMaxMs,
      { min: 0, max: 10 * 60_000 },
    ),
    statsBucketMs: integerSetting(
      { flag: '--stats-bucket-ms', env: 'GRACE_MOE_ROUTER_STATS_BUCKET_MS' },
      flags['stats-bucket-ms'],
      env,
      d.statsBucketMs,
      { min: 1, max: DAY_MS },
    ),
    statsRetainedBuckets: integerSetting(
      { flag: '--stats-retained-buckets', env: 'GRACE_MOE_ROUTER_STATS_RETAINED_BUCKETS' },
      flags['stats-retained-buckets'],
      env,
      d.statsRetainedBuckets,
      { min: 1, max: 1000 },
    ),
    sampleCapacity: integerSetting(
      { flag: '--sample-capacity', env: 'GRACE_MOE_ROUTER_SAMPLE_CAPACITY' },
      flags['sample-capacity'],
      env,
      d.sampleCapacity,
      { min: 0, max: 1_000_000 },
    ),
    shutdownTimeoutMs: integerSetting(
      { flag: '--shutdown-timeout-ms', env: 'GRACE_MOE_ROUTER_SHUTDOWN_TIMEOUT_MS' },
      flags['shutdown-timeout-ms'],
      env,
      d.shutdownTimeoutMs,
      { min: 0, max: 10 * 60_000 },
    ),
    logLevel: logLevelSetting(flags['log-level'], env, d.logLevel),
    tableFile: optionalTextSetting({ flag: '--table-file', env: 'GRACE_MOE_ROUTER_TABLE_FILE' }, flags['table-file'], env),
    stateFile: optionalTextSetting({ flag: '--state-file', env: 'GRACE_MOE_ROUTER_STATE_FILE' }, flags['state-file'], env),
    deployment: resolveDeployment(flags, env),
  });
}

function resolveDeployment(flags: RouterFlags, env: Environment): DeploymentShape {
  const topologyName: SettingName = { flag: '--topology', env: 'GRACE_MOE_ROUTER_TOPOLOGY' };
  const topologyText = optionalTextSetting(topologyName, flags.topology, env);
  let topology: DeploymentShape['topology'] = null;
  if (topologyText !== null) {
    try {
      topology = parseTopologyShape(topologyText, flags.topology !== undefined ? topologyName.flag : topologyName.env);
    } catch (error) {
      throw new ConfigError(error instanceof Error ? error.message : String(error), { cause: error });
    }
  }
  const layersName: SettingName = { flag: '--layers', env: 'GRACE_MOE_ROUTER_LAYERS' };
  const expertsName: SettingName = { flag: '--experts', env: 'GRACE_MOE_ROUTER_EXPERTS' };
  const layersSet = flags.layers !== undefined || optionalTextSetting(layersName, undefined, env) !== null;
  const expertsSet = flags.experts !== undefined || optionalTextSetting(expertsName, undefined, env) !== null;
  return Object.freeze({
    topology: topology === null ? null : Object.freeze(topology),
    layers: layersSet ? integerSetting(layersName, flags.layers, env, 0, { min: 1, max: 10_000 }) : null,
    experts: expertsSet ? integerSetting(expertsName, flags.experts, env, 0, { min: 1, max: 65_536 }) : null,
  });
}

/** Builds a router configuration from the defaults with some settings replaced, without reading the environment. */
export function routerConfigWith(overrides: Partial<RouterConfig> = {}): RouterConfig {
  return Object.freeze({ ...ROUTER_DEFAULTS, tableFile: null, stateFile: null, deployment: ANY_DEPLOYMENT, ...overrides });
}

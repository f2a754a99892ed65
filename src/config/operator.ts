/**
 * Configuration of the operator: one frozen defaults object, resolved once at start-up from
 * command-line flags and GRACE_MOE_OPERATOR_* environment variables (a flag wins over its
 * variable). The log level is shared with the other services (--log-level, GRACE_MOE_LOG_LEVEL).
 */
import { hostname } from 'node:os';
import { ConfigError } from './errors.js';
import {
  choiceSetting,
  hostSetting,
  integerSetting,
  logLevelSetting,
  numberSetting,
  optionalTextSetting,
  type Environment,
  type LogLevel,
  type SettingName,
} from './resolve.js';

export const OPERATOR_DEFAULTS = Object.freeze({
  /** All interfaces, because the kubelet's probes and Prometheus reach the pod on its own IP. */
  host: '0.0.0.0',
  portNumber: 8080,
  /** Reconciles that run at once; each works on a different MoEDeployment. */
  workers: 2,
  leaderElection: true,
  leaseName: 'grace-moe-operator',
  /** A lease not renewed for this long may be taken over by another replica. */
  leaseDurationMs: 15_000,
  /** The leader stops reconciling when no renewal succeeded for this long; below leaseDurationMs. */
  renewDeadlineMs: 10_000,
  /** Pause between lease acquisition attempts and between renewals. */
  retryPeriodMs: 2_000,
  /** Server-side watch timeout. Every watch requests a random value from this to twice this. */
  watchTimeoutSeconds: 300,
  /**
   * A watch that sends nothing, not even a bookmark, for this long is restarted. It exceeds the
   * longest server-side watch timeout (2 x 300 s), after which a healthy server closes the watch.
   */
  idleTimeoutMs: 660_000,
  /** First delay before retrying a failed reconcile; it doubles with every failure of the same key. */
  retryBaseMs: 500,
  /** Maximum delay before retrying a failed reconcile. */
  retryCapMs: 300_000,
  /** Maximum delay before restarting a failed list or watch. */
  watchRetryCapMs: 30_000,
  /** Fraction by which jitter may shorten a retry delay. */
  retryJitterRatio: 0.2,
  /** Timeout of one API request other than a watch. */
  requestTimeoutMs: 30_000,
  /** Time allowed to finish in-flight reconciles on SIGTERM before they are aborted. */
  shutdownTimeoutMs: 30_000,
  /** Field manager of every server-side apply. */
  fieldManager: 'grace-moe-operator',
  /** Image of the router sidecar when a MoEDeployment names none: the operator's own image. */
  image: 'grace-moe:0.1.0',
  logLevel: 'info' as LogLevel,
});

export interface OperatorConfig {
  readonly host: string;
  readonly portNumber: number;
  /** Namespace whose MoEDeployments are reconciled, or null for all namespaces. */
  readonly namespace: string | null;
  /** Kubeconfig file; null loads the in-cluster service account, else the default kubeconfig. */
  readonly kubeconfig: string | null;
  readonly workers: number;
  readonly leaderElection: boolean;
  /** Namespace of the leader Lease (the operator's own); null only without leader election. */
  readonly leaseNamespace: string | null;
  readonly leaseName: string;
  /** Pod name; the leader identity is this name plus a random suffix. */
  readonly podName: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly watchTimeoutSeconds: number;
  readonly idleTimeoutMs: number;
  readonly retryBaseMs: number;
  readonly retryCapMs: number;
  readonly watchRetryCapMs: number;
  readonly retryJitterRatio: number;
  readonly requestTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  readonly fieldManager: string;
  readonly image: string;
  /**
   * JSON file mapping "namespace/name" to the worker endpoints ([{node, routerUrl, engineUrl}]),
   * used instead of the pods' cluster DNS names; for tests and for operators outside the cluster.
   */
  readonly endpointsFile: string | null;
  readonly logLevel: LogLevel;
}

/** Flag definitions of the operator command, for parseFlags. */
export const OPERATOR_FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
  workers: { type: 'string' },
  'leader-election': { type: 'string' },
  'lease-namespace': { type: 'string' },
  'lease-name': { type: 'string' },
  'pod-name': { type: 'string' },
  'lease-duration-ms': { type: 'string' },
  'renew-deadline-ms': { type: 'string' },
  'retry-period-ms': { type: 'string' },
  'watch-timeout-seconds': { type: 'string' },
  'idle-timeout-ms': { type: 'string' },
  'retry-base-ms': { type: 'string' },
  'retry-cap-ms': { type: 'string' },
  'watch-retry-cap-ms': { type: 'string' },
  'retry-jitter-ratio': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  'field-manager': { type: 'string' },
  image: { type: 'string' },
  'endpoints-file': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export type OperatorFlags = Partial<Record<keyof typeof OPERATOR_FLAGS, string>>;

const HOUR_MS = 3_600_000;

/** Names the flag --x-y and the variable GRACE_MOE_OPERATOR_X_Y. */
function name(flag: string): SettingName {
  return { flag: `--${flag}`, env: `GRACE_MOE_OPERATOR_${flag.toUpperCase().replaceAll('-', '_')}` };
}

/**
 * Resolves and validates the operator configuration; throws ConfigError naming the bad setting.
 * `defaultPodName` is used when neither --pod-name nor its variable is set (in a pod, the host
 * name is the pod name).
 */
export function resolveOperatorConfig(flags: OperatorFlags, env: Environment = process.env, defaultPodName: string = hostname()): OperatorConfig {
  const d = OPERATOR_DEFAULTS;
  const ms = (flag: keyof OperatorFlags, fallback: number, min: number, max: number): number =>
    integerSetting(name(flag), flags[flag], env, fallback, { min, max });

  const leaderElection = choiceSetting(name('leader-election'), flags['leader-election'], env, d.leaderElection ? 'true' : 'false', ['true', 'false']) === 'true';
  const leaseNamespace = optionalTextSetting(name('lease-namespace'), flags['lease-namespace'], env);
  if (leaderElection && leaseNamespace === null) {
    throw new ConfigError(
      '--lease-namespace (or GRACE_MOE_OPERATOR_LEASE_NAMESPACE) is required with leader election: set it to the operator\'s own namespace, ' +
        'or turn leader election off with --leader-election false when a single replica runs',
    );
  }

  const config: OperatorConfig = Object.freeze({
    host: hostSetting(name('host'), flags.host, env, d.host),
    portNumber: integerSetting(name('port'), flags.port, env, d.portNumber, { min: 0, max: 65_535 }),
    namespace: optionalTextSetting(name('namespace'), flags.namespace, env),
    kubeconfig: optionalTextSetting(name('kubeconfig'), flags.kubeconfig, env),
    workers: integerSetting(name('workers'), flags.workers, env, d.workers, { min: 1, max: 64 }),
    leaderElection,
    leaseNamespace,
    leaseName: optionalTextSetting(name('lease-name'), flags['lease-name'], env) ?? d.leaseName,
    podName: optionalTextSetting(name('pod-name'), flags['pod-name'], env) ?? defaultPodName,
    leaseDurationMs: ms('lease-duration-ms', d.leaseDurationMs, 2_000, HOUR_MS),
    renewDeadlineMs: ms('renew-deadline-ms', d.renewDeadlineMs, 1_000, HOUR_MS),
    retryPeriodMs: ms('retry-period-ms', d.retryPeriodMs, 100, HOUR_MS),
    watchTimeoutSeconds: integerSetting(name('watch-timeout-seconds'), flags['watch-timeout-seconds'], env, d.watchTimeoutSeconds, {
      min: 1,
      max: 3_600,
    }),
    idleTimeoutMs: ms('idle-timeout-ms', d.idleTimeoutMs, 1_000, 4 * HOUR_MS),
    retryBaseMs: ms('retry-base-ms', d.retryBaseMs, 1, HOUR_MS),
    retryCapMs: ms('retry-cap-ms', d.retryCapMs, 1, 24 * HOUR_MS),
    watchRetryCapMs: ms('watch-retry-cap-ms', d.watchRetryCapMs, 1, HOUR_MS),
    retryJitterRatio: numberSetting(name('retry-jitter-ratio'), flags['retry-jitter-ratio'], env, d.retryJitterRatio, { min: 0, max: 1 }),
    requestTimeoutMs: ms('request-timeout-ms', d.requestTimeoutMs, 100, HOUR_MS),
    shutdownTimeoutMs: ms('shutdown-timeout-ms', d.shutdownTimeoutMs, 0, HOUR_MS),
    fieldManager: optionalTextSetting(name('field-manager'), flags['field-manager'], env) ?? d.fieldManager,
    image: optionalTextSetting(name('image'), flags.image, env) ?? d.image,
    endpointsFile: optionalTextSetting(name('endpoints-file'), flags['endpoints-file'], env),
    logLevel: logLevelSetting(flags['log-level'], env, d.logLevel),
  });
  checkOperatorConfig(config);
  return config;
}

/** Checks the rules that tie settings together; throws ConfigError naming both settings. */
function checkOperatorConfig(config: OperatorConfig): void {
  if (config.leaderElection && !(config.retryPeriodMs < config.renewDeadlineMs && config.renewDeadlineMs < config.leaseDurationMs)) {
    throw new ConfigError(
      `leader election needs --retry-period-ms < --renew-deadline-ms < --lease-duration-ms, got ${config.retryPeriodMs}, ` +
        `${config.renewDeadlineMs} and ${config.leaseDurationMs}; a leader must stop before its lease can expire`,
    );
  }
  if (config.idleTimeoutMs <= 2 * config.watchTimeoutSeconds * 1000) {
    throw new ConfigError(
      `--idle-timeout-ms must exceed twice --watch-timeout-seconds (${2 * config.watchTimeoutSeconds * 1000} ms), ` +
        `got ${config.idleTimeoutMs}; otherwise a quiet but healthy watch is restarted`,
    );
  }
  if (config.retryBaseMs > config.retryCapMs) {
    throw new ConfigError(`--retry-base-ms must not exceed --retry-cap-ms, got ${config.retryBaseMs} and ${config.retryCapMs}`);
  }
}

/** Builds an operator configuration from the defaults with some settings replaced, without reading the environment. */
export function operatorConfigWith(overrides: Partial<OperatorConfig> = {}): OperatorConfig {
  return Object.freeze({
    ...OPERATOR_DEFAULTS,
    namespace: null,
    kubeconfig: null,
    leaseNamespace: 'default',
    podName: 'grace-moe-operator',
    endpointsFile: null,
    ...overrides,
  });
}

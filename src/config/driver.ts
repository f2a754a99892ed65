/**
 * Configuration of the load driver (`grace-moe drive`), resolved once from command-line flags and
 * GRACE_MOE_DRIVE_* environment variables (a flag wins over its variable).
 */
import {
  choiceSetting,
  integerSetting,
  numberSetting,
  optionalTextSetting,
  urlListSetting,
  type Environment,
} from './resolve.js';

export const DRIVER_DEFAULTS = Object.freeze({
  /** Tokens replayed from the trace. */
  tokens: 4096,
  /** Index of the first replayed token in the trace. */
  offset: 0,
  rateTokensPerSecond: 2_000,
  batchTokens: 256,
  /** Batches in flight at once over all engines. */
  concurrency: 4,
  /** No batch is sent after this much time; in-flight ones still finish or time out. */
  maxDurationMs: 60_000,
  requestTimeoutMs: 30_000,
  format: 'table' as 'table' | 'json',
});

export interface DriverConfig {
  readonly engines: readonly string[];
  /** Trace file, or null for the shipped one. */
  readonly trace: string | null;
  readonly tokens: number;
  readonly offset: number;
  readonly rateTokensPerSecond: number;
  readonly batchTokens: number;
  readonly concurrency: number;
  readonly maxDurationMs: number;
  readonly requestTimeoutMs: number;
  readonly format: 'table' | 'json';
}

export const DRIVER_FLAGS = {
  engines: { type: 'string' },
  trace: { type: 'string' },
  tokens: { type: 'string' },
  offset: { type: 'string' },
  rate: { type: 'string' },
  'batch-tokens': { type: 'string' },
  concurrency: { type: 'string' },
  'max-duration-ms': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  format: { type: 'string' },
} as const;

export type DriverFlags = Partial<Record<keyof typeof DRIVER_FLAGS, string>>;

const name = (flag: string, suffix: string) => ({ flag, env: `GRACE_MOE_DRIVE_${suffix}` });
const HOUR_MS = 3_600_000;

/** Resolves and validates the driver configuration; throws ConfigError naming the bad setting. */
export function resolveDriverConfig(flags: DriverFlags, env: Environment = process.env): DriverConfig {
  const d = DRIVER_DEFAULTS;
  return Object.freeze({
    engines: urlListSetting(name('--engines', 'ENGINES'), flags.engines, env, 'the base URL of every engine, comma-separated'),
    trace: optionalTextSetting(name('--trace', 'TRACE'), flags.trace, env),
    tokens: integerSetting(name('--tokens', 'TOKENS'), flags.tokens, env, d.tokens, { min: 1, max: 100_000_000 }),
    offset: integerSetting(name('--offset', 'OFFSET'), flags.offset, env, d.offset, { min: 0, max: 100_000_000 }),
    rateTokensPerSecond: numberSetting(name('--rate', 'RATE'), flags.rate, env, d.rateTokensPerSecond, { min: 0.001, max: 1e9 }),
    batchTokens: integerSetting(name('--batch-tokens', 'BATCH_TOKENS'), flags['batch-tokens'], env, d.batchTokens, { min: 1, max: 65_536 }),
    concurrency: integerSetting(name('--concurrency', 'CONCURRENCY'), flags.concurrency, env, d.concurrency, { min: 1, max: 1024 }),
    maxDurationMs: integerSetting(name('--max-duration-ms', 'MAX_DURATION_MS'), flags['max-duration-ms'], env, d.maxDurationMs, {
      min: 1,
      max: 24 * HOUR_MS,
    }),
    requestTimeoutMs: integerSetting(name('--request-timeout-ms', 'REQUEST_TIMEOUT_MS'), flags['request-timeout-ms'], env, d.requestTimeoutMs, {
      min: 1,
      max: HOUR_MS,
    }),
    format: choiceSetting(name('--format', 'FORMAT'), flags.format, env, d.format, ['table', 'json'] as const),
  });
}

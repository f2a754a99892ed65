/**
 * Helpers that turn one setting into a typed value. A setting comes from its command-line flag,
 * else from its GRACE_MOE_* environment variable, else from the service's defaults object. Every
 * invalid value raises ConfigError naming the flag or variable, the value and what is accepted.
 */
import { ConfigError } from './errors.js';

/** Environment variables in the form of process.env. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** Flag and environment variable of one setting. */
export interface SettingName {
  /** Command-line flag, with the leading dashes. */
  readonly flag: string;
  /** Environment variable, read only when the flag is absent. */
  readonly env: string;
}

/** A raw text value and the flag or variable it came from, for error messages. */
interface RawSetting {
  readonly text: string;
  readonly source: string;
}

function rawSetting(name: SettingName, flagValue: string | undefined, env: Environment): RawSetting | undefined {
  if (flagValue !== undefined) {
    return { text: flagValue, source: name.flag };
  }
  const envValue = env[name.env];
  if (envValue !== undefined && envValue !== '') {
    return { text: envValue, source: name.env };
  }
  return undefined;
}

function invalid(raw: RawSetting, accepted: string): ConfigError {
  return new ConfigError(`${raw.source} must be ${accepted}, got "${raw.text}"`);
}

/** Resolves an integer setting within [min, max]. */
export function integerSetting(
  name: SettingName,
  flagValue: string | undefined,
  env: Environment,
  fallback: number,
  bounds: { readonly min: number; readonly max: number },
): number {
  const raw = rawSetting(name, flagValue, env);
  if (raw === undefined) {
    return fallback;
  }
  const value = /^\s*-?\d+\s*$/.test(raw.text) ? Number(raw.text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < bounds.min || value > bounds.max) {
    throw invalid(raw, `an integer from ${bounds.min} to ${bounds.max}`);
  }
  return value;
}

/** Resolves a finite number setting within [min, max]. */
export function numberSetting(
  name: SettingName,
  flagValue: string | undefined,
  env: Environment,
  fallback: number,
  bounds: { readonly min: number; readonly max: number },
): number {
  const raw = rawSetting(name, flagValue, env);
  if (raw === undefined) {
    return fallback;
  }
  const value = raw.text.trim() === '' ? Number.NaN : Number(raw.text);
  if (!Number.isFinite(value) || value < bounds.min || value > bounds.max) {
    throw invalid(raw, `a number from ${bounds.min} to ${bounds.max}`);
  }
  return value;
}

/** Resolves a setting that must be one of `choices`. */
export function choiceSetting<const C extends string>(
  name: SettingName,
  flagValue: string | undefined,
  env: Environment,
  fallback: C,
  choices: readonly C[],
): C {
  const raw = rawSetting(name, flagValue, env);
  if (raw === undefined) {
    return fallback;
  }
  if (!(choices as readonly string[]).includes(raw.text)) {
    throw invalid(raw, `one of ${choices.join(', ')}`);
  }
  return raw.text as C;
}

/** Resolves an optional non-empty text setting such as a file path; null when unset. */
export function optionalTextSetting(name: SettingName, flagValue: string | undefined, env: Environment): string | null {
  const raw = rawSetting(name, flagValue, env);
  if (raw === undefined) {
    return null;
  }
  if (raw.text.trim() === '') {
    throw invalid(raw, 'a non-empty value');
  }
  return raw.text;
}

/** Resolves a required setting. `what` describes the expected value for the message when it is missing. */
export function requiredTextSetting(
  name: SettingName,
  flagValue: string | undefined,
  env: Environment,
  what: string,
): string {
  const value = optionalTextSetting(name, flagValue, env);
  if (value === null) {
    throw new ConfigError(`${name.flag} (or ${name.env}) is required: ${what}`);
  }
  return value;
}

/** Resolves the listen address; only an IP address literal or "localhost" is accepted. */
export function hostSetting(name: SettingName, flagValue: string | undefined, env: Environment, fallback: string): string {
  const raw = rawSetting(name, flagValue, env);
  if (raw === undefined) {
    return fallback;
  }
  const ipv4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(raw.text);
  const ipv4Valid = ipv4 !== null && ipv4.slice(1).every((part) => Number(part) <= 255);
  const ipv6Valid = /^[0-9a-fA-F:]+$/.test(raw.text) && raw.text.includes(':');
  if (!ipv4Valid && !ipv6Valid && raw.text !== 'localhost') {
    throw invalid(raw, 'an IP address such as 127.0.0.1 or ::1, or localhost');
  }
  return raw.text;
}

/** Checks that text is an http(s) URL without a query or fragment and returns it without a trailing slash. */
export function httpUrl(text: string, source: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${source} must be an http:// or https:// URL, got "${text}"`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new ConfigError(`${source} must be an http:// or https:// URL without a query or fragment, got "${text}"`);
  }
  return text.replace(/\/+$/, '');
}

/** Resolves a required comma-separated list of http(s) URLs. */
export function urlListSetting(
  name: SettingName,
  flagValue: string | undefined,
  env: Environment,
  what: string,
): readonly string[] {
  const text = requiredTextSetting(name, flagValue, env, what);
  const source = flagValue !== undefined ? name.flag : name.env;
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) {
    throw new ConfigError(`${source} must be a comma-separated list of URLs without empty entries, got "${text}"`);
  }
  return Object.freeze(items.map((item) => httpUrl(item, source)));
}

/** Log levels pino accepts, lowest first, plus "silent". */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Resolves the log level that every service shares: --log-level or GRACE_MOE_LOG_LEVEL. */
export function logLevelSetting(flagValue: string | undefined, env: Environment, fallback: LogLevel): LogLevel {
  return choiceSetting({ flag: '--log-level', env: 'GRACE_MOE_LOG_LEVEL' }, flagValue, env, fallback, LOG_LEVELS);
}

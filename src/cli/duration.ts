import { UsageError } from '../errors.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "60s", "1.5m", "500ms" or a plain number of seconds into milliseconds. */
export function parseDuration(flag: string, value: string | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!match) throw new UsageError(`${flag} must be a duration such as 60s, 2m or 500ms, got "${value}"`);
  const ms = Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000);
  if (!(ms > 0)) throw new UsageError(`${flag} must be longer than zero, got "${value}"`);
  return ms;
}

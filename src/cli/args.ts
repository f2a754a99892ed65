import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses a subcommand's flags with node:util parseArgs in strict mode; an unknown flag, a missing
 * value or a stray positional argument becomes a UsageError that names it and points at --help.
 */
export function parseFlags<T extends Options>(command: string, argv: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${detail}; run "grace-moe ${command} --help" for the accepted flags`, { cause: error });
  }
}

/** Parses a positive integer flag value; throws UsageError naming the flag otherwise. */
export function positiveInteger(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(parsed) || parsed < 1) {
    throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  }
  return parsed;
}

/** Parses a non-negative integer flag value; throws UsageError naming the flag otherwise. */
export function nonNegativeInteger(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(parsed) || parsed < 0) {
    throw new UsageError(`${flag} must be a non-negative integer, got "${value}"`);
  }
  return parsed;
}

/** Checks that a flag's value is one of `choices`; throws UsageError listing them otherwise. */
export function oneOf<const C extends string>(flag: string, value: string | undefined, choices: readonly C[], fallback: C): C {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got "${value}"`);
  }
  return value as C;
}

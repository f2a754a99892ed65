/**
 * Error catalogue. Every error the product raises on purpose is one of these classes, with a stable
 * `code` that tests and callers match on. Messages name the input at fault, show the value and say
 * what is accepted. `exitCode` is what the CLI exits with: 2 for usage and input errors.
 */
export abstract class GraceMoeError extends Error {
  abstract readonly code: string;
  readonly exitCode: number = 2;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A command-line flag is missing, unknown or has an invalid value. */
export class UsageError extends GraceMoeError {
  readonly code = 'USAGE';
}

/** A trace file is malformed; `line` is 1-based, or 0 when the file as a whole is at fault. */
export class TraceFormatError extends GraceMoeError {
  readonly code = 'TRACE_FORMAT';

  constructor(
    readonly file: string,
    readonly line: number,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(line > 0 ? `${file}:${line}: ${detail}` : `${file}: ${detail}`, options);
  }
}

/** Activation statistics are malformed or inconsistent (NaN, negative or missing counts). */
export class StatsFormatError extends GraceMoeError {
  readonly code = 'STATS_FORMAT';
}

/** A topology or slot budget cannot hold the model, or is not a valid shape. */
export class TopologyError extends GraceMoeError {
  readonly code = 'TOPOLOGY_INVALID';
}

/** A placement plan or routing table breaks an invariant; it is rejected whole. */
export class PlanValidationError extends GraceMoeError {
  readonly code = 'PLAN_INVALID';

  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid plan: ${field}: ${detail}`);
  }
}

/** A plan, routing table or statistics document has an unknown apiVersion or kind. */
export class FormatVersionError extends GraceMoeError {
  readonly code = 'FORMAT_VERSION';
}

/** Returns the exit code for any thrown value: the catalogue's code for known errors, else 1. */
export function exitCodeOf(error: unknown): number {
  return error instanceof GraceMoeError ? error.exitCode : 1;
}

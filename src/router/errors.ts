/**
 * Errors of the router and the services built like it. Each carries the HTTP status of its
 * response, and the stable `code` goes into the `{ "error": { "code", "message" } }` body.
 */
import { GraceMoeError } from '../errors.js';

/** An error that a service responds to with a 4xx or 5xx status instead of treating it as a crash. */
export abstract class HttpError extends GraceMoeError {
  abstract readonly statusCode: number;
}

/**
 * A request names a generation other than the one it must match: an older or equal table was
 * pushed, or a route request names a generation that is not active.
 */
export class GenerationConflictError extends HttpError {
  readonly code = 'GENERATION_CONFLICT';
  readonly statusCode = 409;

  constructor(
    message: string,
    readonly activeGeneration: number | null,
  ) {
    super(message);
  }
}

/** An activation names a generation that is not the pending one, or nothing is pending. */
export class PendingMismatchError extends HttpError {
  readonly code = 'PENDING_MISMATCH';
  readonly statusCode = 409;
}

/** No routing table is active yet, so nothing can be routed. */
export class NoActiveTableError extends HttpError {
  readonly code = 'NO_ACTIVE_TABLE';
  readonly statusCode = 503;
}

/** The requested table or generation does not exist. */
export class TableNotFoundError extends HttpError {
  readonly code = 'TABLE_NOT_FOUND';
  readonly statusCode = 404;
}

/** A well-formed request refers to a layer, GPU or expert outside the active table. */
export class RequestRangeError extends HttpError {
  readonly code = 'OUT_OF_RANGE';
  readonly statusCode = 400;
}

/** The state file could not be written, so the table was not installed. */
export class StateFileError extends HttpError {
  readonly code = 'STATE_WRITE_FAILED';
  readonly statusCode = 500;
}

/** A table file or state file cannot be read or contains no valid routing table or plan. */
export class TableFileError extends GraceMoeError {
  readonly code = 'TABLE_FILE_INVALID';

  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${detail}`, options);
  }
}

/** No activation report has arrived yet, so there are no statistics to serve. */
export class NoActivationsError extends HttpError {
  readonly code = 'NO_ACTIVATIONS';
  readonly statusCode = 404;
}

/** A routing table is valid but has another topology, layer count or expert count than the deployment. */
export class TableShapeMismatchError extends HttpError {
  readonly code = 'TABLE_SHAPE_MISMATCH';
  readonly statusCode = 409;
}

/** A well-formed body breaks a rule its JSON schema cannot express, such as distinct expert ids per token. */
export class InvalidBodyError extends HttpError {
  readonly code = 'BODY_INVALID';
  readonly statusCode = 400;
}

/** A route request carries more token lists than the router accepts in one request. */
export class TooManyTokensError extends HttpError {
  readonly code = 'TOO_MANY_TOKENS';
  readonly statusCode = 400;
}

/** A server could not listen on its address and port; the message names the flag to change. */
export class ListenError extends GraceMoeError {
  readonly code = 'LISTEN_FAILED';
}

/** Errors of the reference engine. Each carries the HTTP status of its response. */
import { HttpError } from '../router/errors.js';

/** A binary compute request or response does not follow the wire format. */
export class WireFormatError extends HttpError {
  readonly code = 'WIRE_FORMAT';
  readonly statusCode = 400;
}

/** A call to the router or a peer engine failed; the batch failed with it. */
export class UpstreamError extends HttpError {
  readonly code = 'UPSTREAM_FAILED';
  readonly statusCode = 502;
}

/** The router responded that the batch's generation is no longer active. */
export class GenerationMovedError extends HttpError {
  readonly code = 'GENERATION_MOVED';
  readonly statusCode = 409;

  constructor(
    message: string,
    readonly activeGeneration: number | null,
  ) {
    super(message);
  }
}

/** A request names a GPU, layer or expert that is not on this node or not in the table. */
export class EngineRangeError extends HttpError {
  readonly code = 'OUT_OF_RANGE';
  readonly statusCode = 400;
}

/** A drop request names an instance that the active or the pending routing table still uses. */
export class InstanceInUseError extends HttpError {
  readonly code = 'INSTANCE_IN_USE';
  readonly statusCode = 409;
}

/** A compute request carries more token-expert pairs than --max-compute-pairs. */
export class TooManyPairsError extends HttpError {
  readonly code = 'TOO_MANY_PAIRS';
  readonly statusCode = 400;
}

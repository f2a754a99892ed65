/**
 * Plumbing shared by the router and the reference engine: a fastify instance with strict JSON
 * schema validation, one error shape for every 4xx and 5xx response, request-duration metrics, and
 * serving until an abort signal with a drain of in-flight requests.
 *
 * Error bodies look like {"error": {"code": "GENERATION_CONFLICT", "message": "..."}}. Request
 * bodies are validated without type coercion, so `"weight": "NaN"` or `null` is rejected instead
 * of turned into a number. Query-string values therefore are declared as strings with a pattern.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { pino } from 'pino';
import type { Histogram } from 'prom-client';
import type { LogLevel } from '../config/resolve.js';
import { GraceMoeError } from '../errors.js';
import { GenerationConflictError, HttpError, ListenError } from './errors.js';

/** Body of every error response. */
export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    /** Set on GENERATION_CONFLICT: the generation the caller should use, or null when none is active. */
    readonly activeGeneration?: number | null;
  };
}

export const errorBodySchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        activeGeneration: { type: ['integer', 'null'] },
      },
    },
  },
} as const;

/** Response schemas for the error statuses, to spread into every route's `response`. */
export const errorResponses = { '4xx': errorBodySchema, '5xx': errorBodySchema } as const;

/** Labels of the request-duration histogram: the route pattern (bounded), method and status. */
export type RequestDurationLabels = 'route' | 'method' | 'status_code';

export interface ServiceAppOptions {
  readonly logger: FastifyBaseLogger;
  readonly bodyLimitBytes: number;
  readonly requestDuration?: Histogram<RequestDurationLabels>;
  /**
   * Called for every error response once its status and code are fixed (for rejection counters).
   * Returning true means the callback logged the rejection itself, so the generic log line is skipped.
   */
  readonly onErrorAnswer?: (request: FastifyRequest, statusCode: number, code: string) => boolean;
}

/** Creates a fastify instance with the shared validation, error handling and metrics. */
export function createServiceApp(options: ServiceAppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    // Per-request lines would dominate the log at route-call rates; errors are logged by the handler.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, verbose: true } },
    schemaErrorFormatter: (errors, dataVariable) => new Error(formatSchemaError(errors[0], dataVariable)),
  });
  // Every body these services read is JSON or the engine's binary format, so a text/plain body gets
  // 415 instead of reaching the body schema as a string.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const answer = describeHttpError(error, request.routeOptions.bodyLimit);
    if (answer.code === 'UNSUPPORTED_MEDIA_TYPE') {
      answer.message = `unsupported content type ${renderValue(request.headers['content-type'])} for ${request.method} ${request.routeOptions.url ?? request.url}`;
    }
    const logged = options.onErrorAnswer?.(request, answer.statusCode, answer.code) ?? false;
    if (answer.statusCode >= 500) {
      request.log.error({ err: error, route: request.routeOptions.url, code: answer.code }, 'request failed');
    } else if (!logged) {
      request.log.info(
        { route: request.routeOptions.url, statusCode: answer.statusCode, code: answer.code, detail: answer.message },
        'request rejected',
      );
    }

    const body: ErrorBody = {
      error: {
        code: answer.code,
        message: answer.message,
        ...(error instanceof GenerationConflictError ? { activeGeneration: error.activeGeneration } : {}),
      },
    };
    return reply.code(answer.statusCode).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = {
      error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}` },
    };
    return reply.code(404).send(body);
  });

  const histogram = options.requestDuration;
  if (histogram !== undefined) {
    app.addHook('onResponse', async (request, reply) => {
      histogram.observe(
        {
          route: request.routeOptions.url ?? 'unmatched',
          method: request.method,
          status_code: String(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
    });
  }
  return app;
}

/**
 * Maps any error to the status, stable code and message of its response. `bodyLimitBytes` is the
 * limit of the route that failed, for the message of a 413.
 */
export function describeHttpError(error: unknown, bodyLimitBytes?: number): { statusCode: number; code: string; message: string } {
  if (error instanceof HttpError) {
    return { statusCode: error.statusCode, code: error.code, message: error.message };
  }
  if (error instanceof GraceMoeError) {
    return { statusCode: 400, code: error.code, message: error.message };
  }
  const fastifyError = error as Partial<FastifyError> & { validationContext?: string };
  const message = error instanceof Error ? error.message : String(error);
  if (fastifyError.validation !== undefined) {
    const part = fastifyError.validationContext === 'querystring' ? 'QUERY_INVALID' : 'BODY_INVALID';
    return { statusCode: 400, code: fastifyError.validationContext === 'headers' ? 'HEADERS_INVALID' : part, message };
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { statusCode: 400, code: 'MALFORMED_JSON', message: `request body is not valid JSON: ${message}` };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { statusCode: 400, code: 'MALFORMED_JSON', message: 'request body is empty; send a JSON document' };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        statusCode: 413,
        code: 'BODY_TOO_LARGE',
        message:
          bodyLimitBytes === undefined
            ? `request body is larger than the limit: ${message}`
            : `request body is larger than the limit of this route, ${bodyLimitBytes} bytes; send smaller requests`,
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message };
    default:
      break;
  }
  if (error instanceof SyntaxError) {
    return { statusCode: 400, code: 'MALFORMED_JSON', message: `request body is not valid JSON: ${message}` };
  }
  const statusCode = fastifyError.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { statusCode, code: 'BAD_REQUEST', message };
  }
  return { statusCode: 500, code: 'INTERNAL', message: 'internal error; see the service log' };
}

interface SchemaErrorLike {
  readonly instancePath?: string;
  readonly message?: string;
  readonly data?: unknown;
  readonly params?: Record<string, unknown>;
}

/** Formats an ajv error as `body/layers/0/1/0/weight must be number, got "NaN"`. */
function formatSchemaError(error: SchemaErrorLike | undefined, dataVariable: string): string {
  if (error === undefined) {
    return `${dataVariable} is invalid`;
  }
  const path = `${dataVariable}${error.instancePath ?? ''}`;
  const extra = error.params?.additionalProperty;
  if (typeof extra === 'string') {
    return `${path} has the unknown field "${extra}"`;
  }
  return `${path} ${error.message ?? 'is invalid'}, got ${renderValue(error.data)}`;
}

/** Renders a value for a message: numbers as themselves (Infinity stays readable), JSON clipped. */
export function renderValue(value: unknown): string {
  if (typeof value === 'number') {
    return String(value);
  }
  if (value === undefined) {
    return 'nothing';
  }
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/** Creates the JSON logger of a service, writing to standard output. */
export function createLogger(service: string, level: LogLevel): FastifyBaseLogger {
  return pino({ level, base: { service, pid: process.pid } });
}

export interface ServeOptions {
  readonly host: string;
  readonly portNumber: number;
  readonly shutdownTimeoutMs: number;
  /**
   * Ends the process when the drain outlasts shutdownTimeoutMs; commands pass process.exit. Work
   * still in flight (a slow batch, its timers and sockets) would otherwise keep the process alive.
   */
  readonly exitOnDrainTimeout?: (code: number) => void;
}

/** Interval at which a draining server closes connections that became idle. */
const IDLE_SWEEP_MS = 50;

/** Socket errors of listen() that a person fixes with --host or --port, with what to say about them. */
const LISTEN_PROBLEMS: Readonly<Record<string, (host: string, port: number) => string>> = {
  EADDRINUSE: (host, port) => `--port ${port} is already in use on ${host} (EADDRINUSE); choose another --port or stop the process that uses it`,
  EACCES: (host, port) => `--port ${port} on ${host} needs privileges this process lacks (EACCES); choose a port above 1023`,
  EADDRNOTAVAIL: (host, port) => `--host ${host} is not an address of this machine (EADDRNOTAVAIL), so port ${port} cannot be bound; choose another --host`,
};

/**
 * Listens, logs "service listening" with the bound URL and port, waits for `signal`, then stops
 * accepting connections and drains in-flight requests. Returns 0 after a clean drain. When the drain
 * outlasts shutdownTimeoutMs, closes every connection, calls exitOnDrainTimeout(1) and returns 1.
 * A port in use or an address that cannot be bound closes the app and throws ListenError (exit code 2).
 */
export async function serveUntilAborted(
  app: FastifyInstance,
  options: ServeOptions,
  signal: AbortSignal,
  onListening?: (url: string) => void,
): Promise<number> {
  try {
    await app.listen({ host: options.host, port: options.portNumber });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const describe = code === undefined ? undefined : LISTEN_PROBLEMS[code];
    if (describe === undefined) throw error;
    // onReady hooks have run (the engine follows its router from there), so close to stop them.
    await app.close();
    throw new ListenError(`cannot listen: ${describe(options.host, options.portNumber)}`, { cause: error });
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  app.log.info({ url, port: address.port }, 'service listening');
  onListening?.(url);

  if (!signal.aborted) {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  app.log.info({ shutdownTimeoutMs: options.shutdownTimeoutMs }, 'service stopping');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.shutdownTimeoutMs);
  });
  // A keep-alive connection whose request finishes during the drain turns idle but stays open until
  // the client's or server's keep-alive timeout, so idle connections are closed as they appear.
  const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
  const outcome = await Promise.race([app.close().then(() => 'closed' as const), timedOut]);
  clearTimeout(timer);
  clearInterval(sweep);
  if (outcome === 'timeout') {
    app.log.error({ shutdownTimeoutMs: options.shutdownTimeoutMs }, 'drain timed out; exiting with requests in flight');
    app.server.closeAllConnections();
    options.exitOnDrainTimeout?.(1);
    return 1;
  }
  app.log.info('service stopped');
  return 0;
}

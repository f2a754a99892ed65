/**
 * A small Kubernetes API client over node:http(s): list, watch, get, server-side apply, status
 * apply, events, delete, create and replace, plus `request` for anything else. TLS settings and
 * credentials come from a KubeConfig (@kubernetes/client-node 1.x, `applyToHTTPSOptions`), which
 * is called again for every request so that rotated tokens and exec credentials are picked up.
 *
 * Every response outside 2xx becomes a KubeApiError with the HTTP status and the `reason` of the
 * Status object the API server returns. A request that gets no HTTP response at all (connection
 * refused, reset, timed out) becomes a KubeApiError with statusCode 0 and reason "NetworkError"
 * or "Timeout". A request whose caller's signal aborts rejects with the signal's reason instead.
 */
import * as http from 'node:http';
import type { IncomingMessage } from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import { GraceMoeError } from '../errors.js';
import { GROUP, KIND, PLURAL, VERSION } from './crd.js';
import { KubeApiError, type KubeObject, type KubeWriter } from './kube-types.js';

/** Location of a kind in the API; `group` is '' for the core group, which is served under /api/v1. */
export interface ResourceDescriptor {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** The kinds the operator reads and writes. */
export const RESOURCES = Object.freeze({
  moeDeployments: { group: GROUP, version: VERSION, plural: PLURAL, kind: KIND, namespaced: true },
  statefulSets: { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  podDisruptionBudgets: { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  events: { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
} satisfies Record<string, ResourceDescriptor>);

/** Labels of grace_moe_operator_api_requests_total; create and replace count as "other". */
export const API_VERBS = ['get', 'list', 'watch', 'apply', 'apply_status', 'event', 'delete', 'other'] as const;
export type ApiVerb = (typeof API_VERBS)[number];

/** An object names an apiVersion and kind that the client has no ResourceDescriptor for. */
export class UnknownKindError extends GraceMoeError {
  readonly code = 'KUBE_UNKNOWN_KIND';
}

/** Returns the apiVersion of a resource: "v1" for the core group, "group/version" otherwise. */
export function apiVersionOf(resource: ResourceDescriptor): string {
  return resource.group === '' ? resource.version : `${resource.group}/${resource.version}`;
}

/**
 * Builds the URL path of a collection or, with `name`, of one object. A namespaced resource
 * without a namespace gives the all-namespaces collection (valid for list and watch only).
 */
export function resourcePath(resource: ResourceDescriptor, namespace?: string, name?: string, subresource?: string): string {
  const root = resource.group === '' ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  const scope = resource.namespaced && namespace !== undefined && namespace !== '' ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  let path = `${root}${scope}/${resource.plural}`;
  if (name !== undefined) {
    path += `/${encodeURIComponent(name)}`;
    if (subresource !== undefined) {
      path += `/${subresource}`;
    }
  }
  return path;
}

export interface ListResult {
  readonly items: KubeObject[];
  /** The collection's resourceVersion, from which a watch continues. */
  readonly resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** One line of a watch stream. For ERROR the object is a Status (kind "Status", numeric `code`). */
export interface WatchEvent {
  readonly type: WatchEventType;
  readonly object: KubeObject;
}

export interface WatchOptions {
  readonly allowWatchBookmarks?: boolean;
  /** Asks the server to end the watch after this many seconds; the caller then starts a new one. */
  readonly timeoutSeconds?: number;
  readonly labelSelector?: string;
  /** Aborting ends the stream: the iterator rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface RawRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  /** Sent as JSON. */
  readonly body?: unknown;
  readonly contentType?: string;
  /** Metric label; "other" when absent. */
  readonly verb?: ApiVerb;
  readonly signal?: AbortSignal;
}

export interface KubeClientOptions {
  readonly kubeConfig: KubeConfig;
  readonly logger: FastifyBaseLogger;
  /** Kinds that apply, applyStatus and event can resolve from an object's apiVersion and kind; default: RESOURCES. */
  readonly resources?: readonly ResourceDescriptor[];
  /** Called once per request with its verb, for the request counter. */
  readonly onRequest?: (verb: ApiVerb) => void;
  /** Limit of every request except watches; default 30 s. */
  readonly requestTimeoutMs?: number;
  /** reportingController and reportingInstance of the events this client records. */
  readonly eventSource?: { readonly controller: string; readonly instance: string };
  /** Clock for event times; default Date.now. */
  readonly now?: () => number;
}

/** Reasons used when an error response has no Status body, as the API server would name them. */
const REASON_OF_STATUS: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** A watch line longer than this ends the stream with an error instead of growing the buffer without bound. */
const MAX_WATCH_LINE_CHARS = 64 * 1024 * 1024;

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Maximum length of an object name (a DNS subdomain). */
const MAX_NAME_LENGTH = 253;
const TCP_KEEPALIVE_DELAY_MS = 30_000;

/** True when `error` is a KubeApiError with status 404. */
export function isNotFound(error: unknown): boolean {
  return error instanceof KubeApiError && error.statusCode === 404;
}

/** True when `error` is a KubeApiError with status 409 (a resourceVersion or create conflict). */
export function isConflict(error: unknown): boolean {
  return error instanceof KubeApiError && error.statusCode === 409;
}

/** True when `error` is a KubeApiError with status 410: the requested resourceVersion is too old. */
export function isGone(error: unknown): boolean {
  return error instanceof KubeApiError && error.statusCode === 410;
}

export class KubeClient implements KubeWriter {
  private readonly kubeConfig: KubeConfig;
  private readonly logger: FastifyBaseLogger;
  private readonly resourcesByType: ReadonlyMap<string, ResourceDescriptor>;
  private readonly onRequest: (verb: ApiVerb) => void;
  private readonly requestTimeoutMs: number;
  private readonly eventSource: { readonly controller: string; readonly instance: string };
  private readonly now: () => number;
  /** Added to event names so that events within one millisecond get different names. */
  private eventSequence = 0;

  constructor(options: KubeClientOptions) {
    this.kubeConfig = options.kubeConfig;
    this.logger = options.logger;
    const resources = options.resources ?? Object.values(RESOURCES);
    this.resourcesByType = new Map(resources.map((resource) => [`${apiVersionOf(resource)}/${resource.kind}`, resource]));
    this.onRequest = options.onRequest ?? (() => {});
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.eventSource = options.eventSource ?? { controller: `${GROUP}/operator`, instance: 'grace-moe-operator' };
    this.now = options.now ?? Date.now;
  }

  /** Returns the descriptor of an object's kind; throws UnknownKindError for a kind the client was not given. */
  resourceOf(object: Pick<KubeObject, 'apiVersion' | 'kind'>): ResourceDescriptor {
    const resource = this.resourcesByType.get(`${object.apiVersion}/${object.kind}`);
    if (resource === undefined) {
      const known = [...this.resourcesByType.keys()].join(', ');
      throw new UnknownKindError(`no API resource is known for apiVersion "${object.apiVersion}" kind "${object.kind}"; known: ${known}`);
    }
    return resource;
  }

  /** Lists a collection (all namespaces when `namespace` is undefined or ''); items get apiVersion and kind filled in. */
  async list(resource: ResourceDescriptor, namespace?: string, labelSelector?: string, signal?: AbortSignal): Promise<ListResult> {
    const body = (await this.request({
      method: 'GET',
      path: resourcePath(resource, namespace),
      query: { labelSelector },
      verb: 'list',
      ...(signal === undefined ? {} : { signal }),
    })) as { metadata?: { resourceVersion?: string }; items?: Record<string, unknown>[] | null };
    const apiVersion = apiVersionOf(resource);
    // Items of a typed list carry no apiVersion and kind of their own.
    const items = (body.items ?? []).map((item) => ({ apiVersion, kind: resource.kind, ...item }) as KubeObject);
    return { items, resourceVersion: body.metadata?.resourceVersion ?? '' };
  }

  /**
   * Watches a collection from `resourceVersion`, yielding one event per line of the stream. A
   * response outside 2xx (410 when the version is too old) rejects on the first iteration. The
   * iterator ends when the server closes the stream, and rejects when `options.signal` aborts.
   */
  async *watch(
    resource: ResourceDescriptor,
    namespace: string | undefined,
    resourceVersion: string,
    options: WatchOptions = {},
  ): AsyncGenerator<WatchEvent, void, undefined> {
    const query: Record<string, string | undefined> = {
      watch: '1',
      resourceVersion: resourceVersion === '' ? undefined : resourceVersion,
      allowWatchBookmarks: options.allowWatchBookmarks === true ? 'true' : undefined,
      timeoutSeconds: options.timeoutSeconds === undefined ? undefined : String(options.timeoutSeconds),
      labelSelector: options.labelSelector,
    };
    const path = resourcePath(resource, namespace);
    this.onRequest('watch');
    const response = await this.send('GET', path, query, undefined, undefined, options.signal);
    if (response.statusCode === undefined || response.statusCode < 200 || response.statusCode > 299) {
      throw await this.errorOf('GET', path, response);
    }

    response.setEncoding('utf8');
    let buffer = '';
    try {
      for await (const chunk of response as AsyncIterable<string>) {
        buffer += chunk;
        let newline = buffer.indexOf('\n');
        while (newline >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line !== '') {
            yield parseWatchLine(line, path);
          }
          newline = buffer.indexOf('\n');
        }
        if (buffer.length > MAX_WATCH_LINE_CHARS) {
          throw new KubeApiError(0, 'NetworkError', `watch ${path}: a line exceeds ${MAX_WATCH_LINE_CHARS} characters`);
        }
      }
    } catch (error) {
      if (options.signal?.aborted === true) {
        throw options.signal.reason;
      }
      if (error instanceof KubeApiError) {
        throw error;
      }
      throw new KubeApiError(0, 'NetworkError', `watch ${path} broke: ${messageOf(error)}`, { cause: error });
    } finally {
      response.destroy();
    }
    const rest = buffer.trim();
    if (rest !== '') {
      yield parseWatchLine(rest, path);
    }
  }

  /** Reads one object; a missing object is a KubeApiError with statusCode 404. */
  async get(resource: ResourceDescriptor, namespace: string | undefined, name: string, signal?: AbortSignal): Promise<KubeObject> {
    return (await this.request({
      method: 'GET',
      path: resourcePath(resource, namespace, name),
      verb: 'get',
      ...(signal === undefined ? {} : { signal }),
    })) as KubeObject;
  }

  /** Server-side apply of a whole object with force, which creates the object when it is absent. */
  async apply(object: KubeObject, fieldManager: string, signal?: AbortSignal): Promise<KubeObject> {
    return this.applyTo(object, fieldManager, undefined, signal);
  }

  /** Server-side apply of the status subresource; `object` carries apiVersion, kind, metadata.name/namespace and status. */
  async applyStatus(object: KubeObject, fieldManager: string, signal?: AbortSignal): Promise<KubeObject> {
    return this.applyTo(object, fieldManager, 'status', signal);
  }

  /**
   * Records an events.k8s.io/v1 Event about `regarding` in its namespace. A failure is logged at
   * warn and swallowed, because an event is a report and never a reason to fail a reconcile.
   */
  async event(regarding: KubeObject, type: 'Normal' | 'Warning', reason: string, note: string): Promise<void> {
    const meta = regarding.metadata;
    const namespace = meta.namespace ?? 'default';
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: this.eventName(meta.name), namespace },
      eventTime: microTime(this.now()),
      reportingController: this.eventSource.controller,
      reportingInstance: this.eventSource.instance,
      action: reason,
      reason,
      // The API server rejects notes longer than 1 kB.
      note: note.length > 1024 ? `${note.slice(0, 1021)}...` : note,
      type,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
    };
    try {
      await this.request({ method: 'POST', path: resourcePath(RESOURCES.events, namespace), body, verb: 'event' });
    } catch (error) {
      this.logger.warn({ err: error, kind: regarding.kind, namespace, name: meta.name, reason }, 'event not recorded');
    }
  }

  /**
   * Returns a unique event name: the object's name, a dot and the event time in nanoseconds in hex.
   * A generateName of "name." would be rejected because a generated prefix may not end with a dot.
   */
  private eventName(objectName: string): string {
    const nanoseconds = BigInt(this.now()) * 1_000_000n + BigInt(this.eventSequence % 1_000_000);
    this.eventSequence += 1;
    const suffix = nanoseconds.toString(16);
    return `${objectName.slice(0, MAX_NAME_LENGTH - suffix.length - 1)}.${suffix}`;
  }

  /** Deletes one object; with `resourceVersion` the deletion is conditional on it. */
  async delete(
    resource: ResourceDescriptor,
    namespace: string | undefined,
    name: string,
    options: { propagationPolicy?: 'Foreground' | 'Background' | 'Orphan'; resourceVersion?: string; signal?: AbortSignal } = {},
  ): Promise<void> {
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      ...(options.propagationPolicy === undefined ? {} : { propagationPolicy: options.propagationPolicy }),
      ...(options.resourceVersion === undefined ? {} : { preconditions: { resourceVersion: options.resourceVersion } }),
    };
    await this.request({
      method: 'DELETE',
      path: resourcePath(resource, namespace, name),
      body,
      verb: 'delete',
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  /** Creates an object (POST); 409 when it exists. */
  async create(resource: ResourceDescriptor, object: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    return (await this.request({
      method: 'POST',
      path: resourcePath(resource, object.metadata.namespace),
      body: object,
      ...(signal === undefined ? {} : { signal }),
    })) as KubeObject;
  }

  /** Replaces an object (PUT); with metadata.resourceVersion set, 409 when it changed since it was read. */
  async replace(resource: ResourceDescriptor, object: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    return (await this.request({
      method: 'PUT',
      path: resourcePath(resource, object.metadata.namespace, object.metadata.name),
      body: object,
      ...(signal === undefined ? {} : { signal }),
    })) as KubeObject;
  }

  /** Sends any request and returns the parsed JSON body (undefined when the body is empty). */
  async request(options: RawRequest): Promise<unknown> {
    this.onRequest(options.verb ?? 'other');
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    try {
      const response = await this.send(options.method, options.path, options.query ?? {}, payload, options.contentType, signal);
      if (response.statusCode === undefined || response.statusCode < 200 || response.statusCode > 299) {
        throw await this.errorOf(options.method, options.path, response);
      }
      const text = await readBody(response);
      return text.trim() === '' ? undefined : JSON.parse(text);
    } catch (error) {
      if (options.signal?.aborted === true) {
        throw options.signal.reason;
      }
      if (timeout.aborted) {
        throw new KubeApiError(0, 'Timeout', `${options.method} ${options.path} timed out after ${this.requestTimeoutMs} ms`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  private async applyTo(object: KubeObject, fieldManager: string, subresource: 'status' | undefined, signal?: AbortSignal): Promise<KubeObject> {
    const resource = this.resourceOf(object);
    // JSON is valid YAML, so the apply patch is sent as JSON under the apply content type.
    return (await this.request({
      method: 'PATCH',
      path: resourcePath(resource, object.metadata.namespace, object.metadata.name, subresource),
      query: { fieldManager, force: 'true' },
      body: object,
      contentType: 'application/apply-patch+yaml',
      verb: subresource === undefined ? 'apply' : 'apply_status',
      ...(signal === undefined ? {} : { signal }),
    })) as KubeObject;
  }

  /** Opens a request and resolves with the response once its headers arrived. */
  private async send(
    method: string,
    path: string,
    query: Readonly<Record<string, string | undefined>>,
    payload: string | undefined,
    contentType: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<IncomingMessage> {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (cluster === null) {
      throw new KubeApiError(0, 'NoCluster', 'the kubeconfig has no current cluster; set a current context');
    }
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(name, value);
    }

    // NOTE: applyToHTTPSOptions builds a new agent without keep-alive on every call, so every
    // request opens its own connection (and TLS handshake). That costs little at an operator's
    // request rate and lets rotated credentials take effect at once.
    const options: https.RequestOptions = { method, headers: {} };
    try {
      await this.kubeConfig.applyToHTTPSOptions(options);
    } catch (error) {
      throw new KubeApiError(0, 'NoCredentials', `cannot prepare credentials for ${method} ${path}: ${messageOf(error)}`, { cause: error });
    }
    options.headers = {
      ...options.headers,
      accept: 'application/json',
      ...(payload === undefined ? {} : { 'content-type': contentType ?? 'application/json', 'content-length': Buffer.byteLength(payload) }),
    };
    if (signal !== undefined) options.signal = signal;
    const transport = url.protocol === 'http:' ? http : https;

    return new Promise<IncomingMessage>((resolve, reject) => {
      const request = transport.request(url, options, resolve);
      // Keepalive probes let the kernel notice a peer that vanished while a watch is quiet.
      request.on('socket', (socket) => socket.setKeepAlive(true, TCP_KEEPALIVE_DELAY_MS));
      request.on('error', (error: Error) => {
        if (signal?.aborted === true) {
          reject(signal.reason);
          return;
        }
        reject(new KubeApiError(0, 'NetworkError', `${method} ${path} failed: ${messageOf(error)}`, { cause: error }));
      });
      request.end(payload);
    });
  }

  /** Reads an error response into a KubeApiError with the Status reason and message. */
  private async errorOf(method: string, path: string, response: IncomingMessage): Promise<KubeApiError> {
    const statusCode = response.statusCode ?? 0;
    let text = '';
    try {
      text = await readBody(response);
    } catch {
      // The status code alone still describes the failure.
    }
    let status: { reason?: unknown; message?: unknown } = {};
    try {
      status = JSON.parse(text) as typeof status;
    } catch {
      // Not a Status object; proxies in front of the API server respond with text.
    }
    const reason = typeof status.reason === 'string' && status.reason !== '' ? status.reason : (REASON_OF_STATUS[statusCode] ?? 'Unknown');
    const detail = typeof status.message === 'string' && status.message !== '' ? status.message : text.trim().slice(0, 200);
    return new KubeApiError(statusCode, reason, `${method} ${path} failed with ${statusCode} ${reason}${detail === '' ? '' : `: ${detail}`}`);
  }
}

function parseWatchLine(line: string, path: string): WatchEvent {
  let event: { type?: unknown; object?: unknown };
  try {
    event = JSON.parse(line) as typeof event;
  } catch (error) {
    throw new KubeApiError(0, 'NetworkError', `watch ${path} sent a line that is not JSON: ${line.slice(0, 100)}`, { cause: error });
  }
  const types: readonly unknown[] = ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'];
  if (!types.includes(event.type) || typeof event.object !== 'object' || event.object === null) {
    throw new KubeApiError(0, 'NetworkError', `watch ${path} sent an event without a known type and an object: ${line.slice(0, 100)}`);
  }
  return event as WatchEvent;
}

async function readBody(response: IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let text = '';
  for await (const chunk of response as AsyncIterable<string>) {
    text += chunk;
  }
  return text;
}

/** Formats a time as a Kubernetes MicroTime (RFC 3339 with six fractional digits). */
export function microTime(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

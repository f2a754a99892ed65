/**
 * An in-memory stand-in for the Kubernetes API server, for unit tests of the controller runtime.
 * It listens on 127.0.0.1 and serves list, watch, get, create, replace (with resourceVersion
 * conflicts), server-side apply (merging top-level fields only), status apply and delete for any
 * resource path, and records every request. Tests steer the watch stream: respond with HTTP 410,
 * send an in-stream ERROR 410, hang without a response, end open watches, send bookmarks, and
 * change objects without telling watchers (as if the watch had been broken meanwhile).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { apiVersionOf, resourcePath, type ResourceDescriptor } from './kube-client.js';
import type { KubeObject } from './kube-types.js';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  readonly body: unknown;
}

/** Response to the next watch request: as the server would, HTTP 410, an ERROR 410 event, or none at all. */
export type WatchMode = 'normal' | 'gone-http' | 'gone-event' | 'hang';

/** A canned response that replaces the normal handling of a request. */
export interface CannedAnswer {
  readonly status: number;
  readonly body?: unknown;
  readonly text?: string;
}

interface Watcher {
  readonly response: ServerResponse;
  readonly namespace: string | undefined;
  readonly labelSelector: string | null;
}

interface Collection {
  readonly objects: Map<string, KubeObject>;
  readonly history: { readonly resourceVersion: number; readonly type: string; readonly object: KubeObject }[];
  /** Watches from a resourceVersion below this get 410. */
  compactedBelow: number;
  readonly watchers: Set<Watcher>;
}

const PATH_PATTERN = /^\/(api\/v1|apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status))?$/;

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  /** When set and returning a response, that response replaces the normal handling of the request. */
  intercept: ((request: RecordedRequest) => CannedAnswer | undefined) | null = null;
  private readonly server: Server;
  private readonly collections = new Map<string, Collection>();
  private readonly watchModes: WatchMode[] = [];
  private readonly hanging = new Set<ServerResponse>();
  private revision = 100;
  private uidSequence = 0;
  private port = 0;

  private constructor() {
    this.server = createServer((request, response) => {
      void this.handle(request, response);
    });
  }

  static async start(): Promise<FakeApiServer> {
    const fake = new FakeApiServer();
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Returns a KubeConfig for this server with the bearer token "test-token". */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'tester', token: 'test-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tester' }],
      currentContext: 'fake',
    });
    return kc;
  }

  async close(): Promise<void> {
    for (const response of this.hanging) response.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Makes the next watch requests, in order, behave as `modes`; later ones are normal. */
  queueWatchModes(...modes: WatchMode[]): void {
    this.watchModes.push(...modes);
  }

  /** Creates or replaces an object, assigns it a new resourceVersion and sends the event to watchers. */
  put(resource: ResourceDescriptor, object: KubeObject): KubeObject {
    const collection = this.collection(resource);
    const key = `${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    const existing = collection.objects.get(key);
    const stored = this.stamp(resource, object, existing);
    collection.objects.set(key, stored);
    this.publish(collection, existing === undefined ? 'ADDED' : 'MODIFIED', stored);
    return stored;
  }

  /** Deletes an object and sends the event to watchers; returns false when it did not exist. */
  remove(resource: ResourceDescriptor, namespace: string, name: string): boolean {
    const collection = this.collection(resource);
    const existing = collection.objects.get(`${namespace}/${name}`);
    if (existing === undefined) return false;
    collection.objects.delete(`${namespace}/${name}`);
    this.revision += 1;
    this.publish(collection, 'DELETED', { ...existing, metadata: { ...existing.metadata, resourceVersion: String(this.revision) } });
    return true;
  }

  /**
   * Deletes an object without telling anyone and forgets the history, as happens while a client's
   * watch is broken for longer than the server keeps events: its next watch gets 410.
   */
  removeQuietly(resource: ResourceDescriptor, namespace: string, name: string): void {
    const collection = this.collection(resource);
    collection.objects.delete(`${namespace}/${name}`);
    this.revision += 1;
    this.compact(resource);
  }

  /** Forgets the history up to now: a watch from any earlier resourceVersion gets 410. */
  compact(resource: ResourceDescriptor): void {
    const collection = this.collection(resource);
    collection.history.length = 0;
    collection.compactedBelow = this.revision;
  }

  /** Sends a BOOKMARK with the current resourceVersion to the open watches of `resource`. */
  bookmark(resource: ResourceDescriptor): void {
    const object = { apiVersion: apiVersionOf(resource), kind: resource.kind, metadata: { resourceVersion: String(this.revision) } };
    for (const watcher of this.collection(resource).watchers) {
      watcher.response.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`);
    }
  }

  /** Ends every open watch of `resource`, as the server does when a watch's timeout passes. */
  endWatches(resource: ResourceDescriptor): void {
    const collection = this.collection(resource);
    for (const watcher of collection.watchers) watcher.response.end();
    collection.watchers.clear();
  }

  /** Open watches of `resource`. */
  openWatches(resource: ResourceDescriptor): number {
    return this.collection(resource).watchers.size;
  }

  /** Requests made so far that match `method` and a path starting with `pathPrefix`, optionally only watches. */
  requestsTo(method: string, pathPrefix: string, watch?: boolean): RecordedRequest[] {
    return this.requests.filter(
      (request) =>
        request.method === method &&
        request.path.startsWith(pathPrefix) &&
        (watch === undefined || (request.query.get('watch') === '1') === watch),
    );
  }

  /** Returns the stored object, or undefined. */
  object(resource: ResourceDescriptor, namespace: string, name: string): KubeObject | undefined {
    return this.collection(resource).objects.get(`${namespace}/${name}`);
  }

  private collectionByPrefix(prefix: string, plural: string): Collection {
    const key = `/${prefix}/${plural}`;
    let collection = this.collections.get(key);
    if (collection === undefined) {
      collection = { objects: new Map(), history: [], compactedBelow: 0, watchers: new Set() };
      this.collections.set(key, collection);
    }
    return collection;
  }

  private collection(resource: ResourceDescriptor): Collection {
    const prefix = resourcePath(resource).slice(1, -(resource.plural.length + 1));
    return this.collectionByPrefix(prefix, resource.plural);
  }

  private stamp(resource: ResourceDescriptor | { apiVersion: string; kind: string }, object: KubeObject, existing: KubeObject | undefined): KubeObject {
    this.revision += 1;
    const typeMeta = 'plural' in resource ? { apiVersion: apiVersionOf(resource), kind: resource.kind } : resource;
    return {
      ...typeMeta,
      ...object,
      metadata: {
        ...object.metadata,
        uid: existing?.metadata.uid ?? object.metadata.uid ?? `uid-${++this.uidSequence}`,
        creationTimestamp: existing?.metadata.creationTimestamp ?? '2025-01-01T00:00:00Z',
        resourceVersion: String(this.revision),
      },
    };
  }

  private publish(collection: Collection, type: string, object: KubeObject): void {
    collection.history.push({ resourceVersion: this.revision, type, object });
    for (const watcher of collection.watchers) {
      if (matches(object, watcher.namespace, watcher.labelSelector)) {
        watcher.response.write(`${JSON.stringify({ type, object })}\n`);
      }
    }
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const recorded: RecordedRequest = {
      method: request.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      body: text === '' ? undefined : JSON.parse(text),
    };
    this.requests.push(recorded);

    const canned = this.intercept?.(recorded);
    if (canned !== undefined) {
      response.writeHead(canned.status, { 'content-type': canned.text === undefined ? 'application/json' : 'text/plain' });
      response.end(canned.text ?? JSON.stringify(canned.body ?? {}));
      return;
    }

    const match = PATH_PATTERN.exec(url.pathname);
    if (match === null) {
      sendStatus(response, 404, 'NotFound', `no route ${url.pathname}`);
      return;
    }
    const [, prefix = '', namespace, plural = '', name, subresource] = match;
    const collection = this.collectionByPrefix(prefix, plural);
    const key = `${namespace ?? ''}/${name ?? ''}`;

    if (name === undefined) {
      this.handleCollection(recorded, response, collection, prefix, namespace);
      return;
    }
    const existing = collection.objects.get(key);
    switch (recorded.method) {
      case 'GET':
        if (existing === undefined) sendStatus(response, 404, 'NotFound', `${plural} "${name}" not found`);
        else sendJson(response, 200, existing);
        return;
      case 'PUT': {
        const body = recorded.body as KubeObject;
        if (existing === undefined) {
          sendStatus(response, 404, 'NotFound', `${plural} "${name}" not found`);
        } else if (body.metadata.resourceVersion !== undefined && body.metadata.resourceVersion !== existing.metadata.resourceVersion) {
          sendStatus(response, 409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified`);
        } else {
          sendJson(response, 200, this.store(collection, key, body, existing));
        }
        return;
      }
      case 'PATCH': {
        if (request.headers['content-type'] !== 'application/apply-patch+yaml') {
          sendStatus(response, 415, 'UnsupportedMediaType', `unsupported patch type ${String(request.headers['content-type'])}`);
          return;
        }
        const body = recorded.body as KubeObject;
        if (subresource === 'status') {
          if (existing === undefined) sendStatus(response, 404, 'NotFound', `${plural} "${name}" not found`);
          else sendJson(response, 200, this.store(collection, key, { ...existing, status: body.status }, existing));
          return;
        }
        const merged = { ...existing, ...body, metadata: { ...existing?.metadata, ...body.metadata } } as KubeObject;
        sendJson(response, existing === undefined ? 201 : 200, this.store(collection, key, merged, existing));
        return;
      }
      case 'DELETE':
        if (existing === undefined) {
          sendStatus(response, 404, 'NotFound', `${plural} "${name}" not found`);
          return;
        }
        collection.objects.delete(key);
        this.revision += 1;
        this.publish(collection, 'DELETED', existing);
        sendJson(response, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success', code: 200 });
        return;
      default:
        sendStatus(response, 405, 'MethodNotAllowed', `${recorded.method} is not allowed on an object`);
    }
  }

  private handleCollection(recorded: RecordedRequest, response: ServerResponse, collection: Collection, prefix: string, namespace: string | undefined): void {
    const labelSelector = recorded.query.get('labelSelector');
    if (recorded.method === 'POST') {
      const body = recorded.body as KubeObject;
      const key = `${namespace ?? ''}/${body.metadata.name}`;
      if (collection.objects.has(key)) {
        sendStatus(response, 409, 'AlreadyExists', `object "${body.metadata.name}" already exists`);
        return;
      }
      sendJson(response, 201, this.store(collection, key, body, undefined));
      return;
    }
    if (recorded.method !== 'GET') {
      sendStatus(response, 405, 'MethodNotAllowed', `${recorded.method} is not allowed on a collection`);
      return;
    }

    if (recorded.query.get('watch') !== '1') {
      const items = [...collection.objects.values()]
        .filter((object) => matches(object, namespace, labelSelector))
        // Items of a typed list carry no apiVersion and kind.
        .map(({ apiVersion: _apiVersion, kind: _kind, ...rest }) => rest);
      sendJson(response, 200, { kind: 'List', apiVersion: prefix.replace(/^apis?\//, ''), metadata: { resourceVersion: String(this.revision) }, items });
      return;
    }

    const mode = this.watchModes.shift() ?? 'normal';
    if (mode === 'hang') {
      this.hanging.add(response);
      return;
    }
    if (mode === 'gone-http') {
      sendStatus(response, 410, 'Expired', 'too old resource version');
      return;
    }
    const from = Number(recorded.query.get('resourceVersion') ?? '0');
    response.writeHead(200, { 'content-type': 'application/json' });
    if (mode === 'gone-event' || from < collection.compactedBelow) {
      const status = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${from}` };
      response.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      return;
    }
    for (const event of collection.history) {
      if (event.resourceVersion > from && matches(event.object, namespace, labelSelector)) {
        response.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
      }
    }
    const watcher: Watcher = { response, namespace, labelSelector };
    collection.watchers.add(watcher);
    response.on('close', () => collection.watchers.delete(watcher));
  }

  private store(collection: Collection, key: string, object: KubeObject, existing: KubeObject | undefined): KubeObject {
    const stored = this.stamp({ apiVersion: object.apiVersion, kind: object.kind }, object, existing);
    collection.objects.set(key, stored);
    this.publish(collection, existing === undefined ? 'ADDED' : 'MODIFIED', stored);
    return stored;
  }
}

function matches(object: KubeObject, namespace: string | undefined, labelSelector: string | null): boolean {
  if (namespace !== undefined && object.metadata.namespace !== namespace) return false;
  if (labelSelector === null || labelSelector === '') return true;
  return labelSelector.split(',').every((term) => {
    const [label = '', value] = term.split('=');
    const actual = object.metadata.labels?.[label];
    return value === undefined ? actual !== undefined : actual === value;
  });
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

function sendStatus(response: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(response, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code });
}

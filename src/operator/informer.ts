/**
 * A list-then-watch informer: it lists a collection, watches it from the list's resourceVersion,
 * keeps every object in a cache keyed "namespace/name" and calls handlers on add, update and
 * delete.
 *
 * The watch is supervised. After any failure it restarts with jittered exponential backoff, from
 * the last resourceVersion it saw (an event's or a bookmark's). A 410 Gone, whether it comes as
 * the HTTP status of the watch request or as an ERROR event in the stream, means that version is
 * too old: the informer lists again. A relist replaces the cache and emits what the difference
 * implies: a delete for every cached object missing from the new list (deleted while the watch was
 * broken), an add for every new object and an update for every object whose resourceVersion
 * changed. A watch that sends nothing, not even a bookmark, for idleTimeoutMs is aborted and
 * restarted, because a half-open connection can otherwise stall the informer forever.
 *
 * Cached objects are deeply frozen: the cache hands out the objects themselves, so a caller that
 * wants to change one clones it first.
 */
import type { FastifyBaseLogger } from 'fastify';
import { isGone, type KubeClient, type ListResult, type ResourceDescriptor, type WatchEvent } from './kube-client.js';
import { KubeApiError, type KubeObject, type ObjectCache } from './kube-types.js';
import { backoffDelayMs, sleep, systemScheduler, type BackoffPolicy, type Scheduler } from './timers.js';

export type InformerEvent<T extends KubeObject> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly object: T; readonly oldObject: T }
  | { readonly type: 'delete'; readonly object: T };

export type InformerHandler<T extends KubeObject> = (event: InformerEvent<T>) => void;

/** Cause of a watch restart, and the label values of grace_moe_operator_watch_restarts_total. */
export type WatchRestartReason = 'error' | 'gone' | 'idle';
export const WATCH_RESTART_REASONS: readonly WatchRestartReason[] = ['error', 'gone', 'idle'];

/** The two calls an informer makes; kubeListWatch builds them from a KubeClient. */
export interface ListWatchSource {
  list(signal: AbortSignal): Promise<ListResult>;
  watch(resourceVersion: string, options: { readonly timeoutSeconds: number; readonly signal: AbortSignal }): AsyncIterable<WatchEvent>;
}

/** Lists and watches `resource` in `namespace` (all namespaces when undefined), with bookmarks. */
export function kubeListWatch(client: KubeClient, resource: ResourceDescriptor, namespace: string | undefined, labelSelector?: string): ListWatchSource {
  return {
    list: (signal) => client.list(resource, namespace, labelSelector, signal),
    watch: (resourceVersion, options) =>
      client.watch(resource, namespace, resourceVersion, {
        allowWatchBookmarks: true,
        timeoutSeconds: options.timeoutSeconds,
        signal: options.signal,
        ...(labelSelector === undefined ? {} : { labelSelector }),
      }),
  };
}

export interface InformerOptions {
  /** Name of the watched kind in logs and metrics, such as "statefulsets". */
  readonly name: string;
  readonly source: ListWatchSource;
  readonly logger: FastifyBaseLogger;
  /** A watch that delivers no event or bookmark for this long is aborted and restarted. */
  readonly idleTimeoutMs: number;
  /** Server-side watch timeout. Each watch requests a random value from this to twice this, so replicas spread their reconnects. */
  readonly watchTimeoutSeconds: number;
  readonly backoff: BackoffPolicy;
  readonly scheduler?: Scheduler;
  readonly random?: () => number;
  /** Called once per restart, for the restart counter. */
  readonly onRestart?: (reason: WatchRestartReason) => void;
}

/**
 * A watch that ends without an event sooner than this is counted as a failure, so a server that
 * closes every watch at once is retried with backoff instead of in a tight loop.
 */
const MIN_HEALTHY_WATCH_MS = 1000;

class IdleWatchError extends Error {
  constructor(idleTimeoutMs: number) {
    super(`the watch sent nothing for ${idleTimeoutMs} ms`);
    this.name = 'IdleWatchError';
  }
}

export class Informer<T extends KubeObject = KubeObject> implements ObjectCache<T> {
  private readonly options: InformerOptions;
  private readonly scheduler: Scheduler;
  private readonly random: () => number;
  private readonly handlers: InformerHandler<T>[] = [];
  private store = new Map<string, T>();
  private resourceVersion = '';
  private synced = false;
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: InformerOptions) {
    this.options = options;
    this.scheduler = options.scheduler ?? systemScheduler;
    this.random = options.random ?? Math.random;
  }

  get name(): string {
    return this.options.name;
  }

  /** Registers a handler; handlers run synchronously, in registration order, after the cache changed. */
  addHandler(handler: InformerHandler<T>): void {
    this.handlers.push(handler);
  }

  get(namespace: string, name: string): T | undefined {
    return this.store.get(`${namespace}/${name}`);
  }

  list(namespace?: string): readonly T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((object) => (object.metadata.namespace ?? '') === namespace);
  }

  /** True once the first list completed. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Returns the resourceVersion the next watch starts from. */
  lastResourceVersion(): string {
    return this.resourceVersion;
  }

  /** Resolves true once synced, or false if `signal` aborts first. */
  waitForSync(signal: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => resolve(false);
      signal.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      });
    });
  }

  /** Lists and watches until `signal` aborts; never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.options.logger;
    let failures = 0;
    let needList = true;
    log.info({ kind: this.name }, 'informer starting');

    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
        }
        const watch = await this.watchOnce(signal);
        if (signal.aborted) break;
        if (watch.events > 0 || watch.durationMs >= MIN_HEALTHY_WATCH_MS) {
          failures = 0;
          continue;
        }
        throw new KubeApiError(0, 'NetworkError', `the watch closed after ${watch.durationMs} ms without an event`);
      } catch (error) {
        if (signal.aborted) break;
        const reason: WatchRestartReason = error instanceof IdleWatchError ? 'idle' : isGone(error) ? 'gone' : 'error';
        if (reason === 'gone') needList = true;
        this.options.onRestart?.(reason);
        const delayMs = backoffDelayMs(this.options.backoff, failures, this.random);
        failures += 1;
        const fields = { kind: this.name, reason, resourceVersion: this.resourceVersion, failures, retryInMs: Math.round(delayMs) };
        if (reason === 'error') {
          log.warn({ ...fields, err: error }, needList ? 'list failed; retrying' : 'watch failed; restarting');
        } else {
          log.info(fields, reason === 'gone' ? 'watch resourceVersion expired; listing again' : 'watch idle; restarting');
        }
        await sleep(this.scheduler, delayMs, signal);
      }
    }
    log.info({ kind: this.name }, 'informer stopped');
  }

  /** Lists the collection, replaces the cache and emits the changes the new list implies. */
  private async relist(signal: AbortSignal): Promise<void> {
    const result = await this.options.source.list(signal);
    const fresh = new Map<string, T>();
    for (const item of result.items) {
      const object = deepFreeze(item) as T;
      fresh.set(objectKey(object), object);
    }
    const previous = this.store;
    this.store = fresh;
    this.resourceVersion = result.resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const wake of this.syncWaiters.splice(0)) wake();
    }
    this.options.logger.info({ kind: this.name, objects: fresh.size, resourceVersion: result.resourceVersion }, 'informer listed');

    for (const [key, object] of previous) {
      if (!fresh.has(key)) this.emit({ type: 'delete', object });
    }
    for (const [key, object] of fresh) {
      const old = previous.get(key);
      if (old === undefined) {
        this.emit({ type: 'add', object });
      } else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) {
        this.emit({ type: 'update', object, oldObject: old });
      }
    }
  }

  /** Runs one watch until the server ends it; rejects on a failure, an idle timeout or an ERROR event. */
  private async watchOnce(signal: AbortSignal): Promise<{ events: number; durationMs: number }> {
    const controller = new AbortController();
    const stop = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    let idle = false;
    let cancelIdle = (): void => {};
    const armIdleTimer = (): void => {
      cancelIdle();
      cancelIdle = this.scheduler.setTimer(this.options.idleTimeoutMs, () => {
        idle = true;
        controller.abort(new IdleWatchError(this.options.idleTimeoutMs));
      });
    };

    const startedAt = this.scheduler.now();
    const timeoutSeconds = Math.floor(this.options.watchTimeoutSeconds * (1 + this.random()));
    let events = 0;
    armIdleTimer();
    try {
      const stream = this.options.source.watch(this.resourceVersion, { timeoutSeconds, signal: controller.signal });
      for await (const event of stream) {
        armIdleTimer();
        events += 1;
        this.applyWatchEvent(event);
      }
    } catch (error) {
      if (idle) throw new IdleWatchError(this.options.idleTimeoutMs);
      throw error;
    } finally {
      cancelIdle();
      signal.removeEventListener('abort', stop);
    }
    if (idle) throw new IdleWatchError(this.options.idleTimeoutMs);
    return { events, durationMs: this.scheduler.now() - startedAt };
  }

  private applyWatchEvent(event: WatchEvent): void {
    if (event.type === 'ERROR') {
      const status = event.object as { code?: unknown; reason?: unknown; message?: unknown };
      const code = typeof status.code === 'number' ? status.code : 0;
      let reason = code === 410 ? 'Expired' : 'Unknown';
      if (typeof status.reason === 'string') reason = status.reason;
      const message = typeof status.message === 'string' ? status.message : 'no message';
      throw new KubeApiError(code, reason, `watch of ${this.name} sent an ERROR event: ${code} ${reason}: ${message}`);
    }

    const version = event.object.metadata?.resourceVersion;
    if (event.type === 'BOOKMARK') {
      if (version !== undefined) this.resourceVersion = version;
      return;
    }

    const object = deepFreeze(event.object) as T;
    const key = objectKey(object);
    const old = this.store.get(key);
    if (event.type === 'DELETED') {
      this.store.delete(key);
    } else {
      this.store.set(key, object);
    }
    if (version !== undefined) this.resourceVersion = version;

    if (event.type === 'DELETED') {
      this.emit({ type: 'delete', object });
    } else if (old === undefined) {
      this.emit({ type: 'add', object });
    } else {
      this.emit({ type: 'update', object, oldObject: old });
    }
  }

  private emit(event: InformerEvent<T>): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (error) {
        this.options.logger.error(
          { err: error, kind: this.name, event: event.type, namespace: event.object.metadata.namespace, name: event.object.metadata.name },
          'informer handler failed',
        );
      }
    }
  }
}

/** Returns the cache key "namespace/name"; cluster-scoped objects have an empty namespace. */
export function objectKey(object: KubeObject): string {
  return `${object.metadata.namespace ?? ''}/${object.metadata.name}`;
}

/** Freezes an object and everything reachable from it, and returns it. */
export function deepFreeze<V>(value: V): V {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

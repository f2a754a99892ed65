/**
 * An in-memory object store with the cache and writer interfaces of kube-types.ts, for fast unit
 * tests of the reconciler. Apply replaces the object (no field-level merge), bumps
 * metadata.generation when anything but metadata and status changed, and records every write.
 */
import { KubeApiError, type KubeObject, type KubeWriter, type ObjectCache } from './kube-types.js';

export interface RecordedWrite {
  readonly verb: 'apply' | 'applyStatus' | 'event';
  readonly kind: string;
  readonly name: string;
  readonly detail?: string;
}

export class MemoryStore implements KubeWriter {
  private readonly objects = new Map<string, KubeObject>();
  readonly writes: RecordedWrite[] = [];
  private nextUid = 1;
  private nextVersion = 1;
  /** Makes the next status write fail with this HTTP status (for conflict tests). */
  failNextStatusWith: number | null = null;

  private static key(kind: string, namespace: string | undefined, name: string): string {
    return `${kind}/${namespace ?? ''}/${name}`;
  }

  cache(kind: string): ObjectCache {
    return {
      get: (namespace, name) => this.objects.get(MemoryStore.key(kind, namespace, name)),
      list: (namespace) =>
        [...this.objects.values()].filter((object) => object.kind === kind && (namespace === undefined || object.metadata.namespace === namespace)),
    };
  }

  /** Stores an object as if created by a user; returns it with uid, generation and resourceVersion. */
  put(object: KubeObject): KubeObject {
    const key = MemoryStore.key(object.kind, object.metadata.namespace, object.metadata.name);
    const previous = this.objects.get(key);
    const { metadata, status: _status, ...rest } = object;
    const previousRest = previous === undefined ? null : (({ metadata: _m, status: _s, ...others }) => others)(previous);
    const changed = previousRest === null || JSON.stringify(rest) !== JSON.stringify(previousRest);
    const stored: KubeObject = {
      ...object,
      metadata: {
        ...metadata,
        uid: previous?.metadata.uid ?? `uid-${this.nextUid++}`,
        generation: (previous?.metadata.generation ?? 0) + (changed ? 1 : 0),
        resourceVersion: String(this.nextVersion++),
      },
      ...(previous?.status !== undefined && object.status === undefined ? { status: previous.status } : {}),
    };
    this.objects.set(key, Object.freeze(stored));
    return stored;
  }

  /** Replaces the status of a stored object, as a controller of that kind would. */
  setStatus(kind: string, namespace: string, name: string, status: unknown): void {
    const key = MemoryStore.key(kind, namespace, name);
    const current = this.objects.get(key);
    if (!current) throw new Error(`${key} not found`);
    this.objects.set(key, Object.freeze({ ...current, status, metadata: { ...current.metadata, resourceVersion: String(this.nextVersion++) } }));
  }

  delete(kind: string, namespace: string, name: string): void {
    this.objects.delete(MemoryStore.key(kind, namespace, name));
  }

  async apply(object: KubeObject): Promise<KubeObject> {
    this.writes.push({ verb: 'apply', kind: object.kind, name: object.metadata.name });
    return this.put(object);
  }

  async applyStatus(object: KubeObject): Promise<KubeObject> {
    this.writes.push({ verb: 'applyStatus', kind: object.kind, name: object.metadata.name });
    if (this.failNextStatusWith !== null) {
      const code = this.failNextStatusWith;
      this.failNextStatusWith = null;
      throw new KubeApiError(code, 'Conflict', `status write of ${object.metadata.name} failed with ${code}`);
    }
    this.setStatus(object.kind, object.metadata.namespace ?? 'default', object.metadata.name, object.status);
    return this.objects.get(MemoryStore.key(object.kind, object.metadata.namespace, object.metadata.name)) as KubeObject;
  }

  async event(regarding: KubeObject, type: 'Normal' | 'Warning', reason: string, note: string): Promise<void> {
    this.writes.push({ verb: 'event', kind: regarding.kind, name: regarding.metadata.name, detail: `${type} ${reason}: ${note}` });
  }
}

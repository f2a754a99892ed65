/**
 * Minimal shapes of Kubernetes objects and the client and cache interfaces the reconciler needs.
 * The runtime (informers, work queue, leader election, HTTP client) implements them; unit tests
 * implement them in memory.
 */

export interface KubeObjectMeta {
  readonly name: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly generation?: number;
  readonly resourceVersion?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly ownerReferences?: readonly OwnerReference[];
  readonly deletionTimestamp?: string;
  readonly creationTimestamp?: string;
}

export interface OwnerReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object; kind-specific fields stay untyped here. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: KubeObjectMeta;
  readonly [field: string]: unknown;
}

/** Identifies one namespaced object; the work queue carries these. */
export interface ObjectKey {
  readonly namespace: string;
  readonly name: string;
}

export function keyString(key: ObjectKey): string {
  return `${key.namespace}/${key.name}`;
}

/** Read-only view of an informer's cache. Returned objects must not be mutated. */
export interface ObjectCache<T extends KubeObject = KubeObject> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): readonly T[];
}

/** Writes the reconciler makes. Every method throws KubeApiError on a non-2xx response. */
export interface KubeWriter {
  /** Server-side apply of a whole object under `fieldManager`, with force. Returns the result. */
  apply(object: KubeObject, fieldManager: string): Promise<KubeObject>;
  /** Server-side apply of the status subresource: `object` carries apiVersion, kind, metadata.name/namespace and status. */
  applyStatus(object: KubeObject, fieldManager: string): Promise<KubeObject>;
  /** Records an event (events.k8s.io/v1) about `regarding`. Failures are logged, not thrown. */
  event(regarding: KubeObject, type: 'Normal' | 'Warning', reason: string, note: string): Promise<void>;
}

/** A Kubernetes API call that got an error status in response. */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KubeApiError';
  }
}

/** A reconcile failure that retrying cannot fix; it is recorded and the key is not requeued. */
export class TerminalReconcileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalReconcileError';
  }
}

export interface ReconcileResult {
  /** Reconcile again after this many ms even without a change (level-based polling). */
  readonly requeueAfterMs?: number;
}

/** One reconcile function per primary kind; errors other than TerminalReconcileError are retried with backoff. */
export interface Reconciler {
  reconcile(key: ObjectKey, signal: AbortSignal): Promise<ReconcileResult>;
}

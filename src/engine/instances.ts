/**
 * Expert instances loaded on the GPUs of one node. An instance is (layer, GPU, expert). Loading
 * one takes expertBytes / loadBytesPerSecond; each GPU loads one instance at a time and the GPUs
 * of the node load in parallel. Instances of the first table the engine receives count as loaded at
 * start, like an engine started with that plan's expert-location file.
 */
import type { RoutingTable } from '../routing/types.js';

export interface InstanceKey {
  readonly layer: number;
  readonly gpu: number;
  readonly expert: number;
}

export interface InstanceManagerOptions {
  /** Global indices of the node's GPUs. */
  readonly gpus: readonly number[];
  readonly expertBytes: number;
  readonly loadBytesPerSecond: number;
  readonly sleep: (ms: number) => Promise<void>;
}

function keyOf(instance: InstanceKey): string {
  return `${instance.layer}/${instance.gpu}/${instance.expert}`;
}

/** Lists the instances a table places on the given GPUs. */
export function instancesOnGpus(table: RoutingTable, gpus: readonly number[]): InstanceKey[] {
  const wanted = new Set(gpus);
  const result: InstanceKey[] = [];
  table.layers.forEach((layer, layerIndex) => {
    layer.forEach((instances, expert) => {
      for (const instance of instances) {
        if (wanted.has(instance.gpu)) result.push({ layer: layerIndex, gpu: instance.gpu, expert });
      }
    });
  });
  return result;
}

export class InstanceManager {
  private readonly loaded = new Set<string>();
  private readonly loading = new Set<string>();
  /** Tail of each GPU's load queue. */
  private readonly queues = new Map<number, Promise<void>>();

  constructor(private readonly options: InstanceManagerOptions) {}

  get loadedCount(): number {
    return this.loaded.size;
  }

  has(instance: InstanceKey): boolean {
    return this.loaded.has(keyOf(instance));
  }

  /** Marks instances loaded at once (start-up). */
  preload(instances: readonly InstanceKey[]): void {
    for (const instance of instances) this.loaded.add(keyOf(instance));
  }

  /**
   * Queues the instances that are neither loaded nor loading. Returns how many were queued and
   * how many were already there; `done` resolves when the queued ones are loaded.
   */
  load(instances: readonly InstanceKey[]): { queued: number; present: number; done: Promise<void> } {
    const seconds = this.options.expertBytes / this.options.loadBytesPerSecond;
    const jobs: Promise<void>[] = [];
    let present = 0;
    for (const instance of instances) {
      const key = keyOf(instance);
      if (this.loaded.has(key) || this.loading.has(key)) {
        present += 1;
        continue;
      }
      this.loading.add(key);
      const previous = this.queues.get(instance.gpu) ?? Promise.resolve();
      const job = previous.then(async () => {
        await this.options.sleep(seconds * 1000);
        if (this.loading.delete(key)) this.loaded.add(key);
      });
      this.queues.set(instance.gpu, job);
      jobs.push(job);
    }
    return { queued: jobs.length, present, done: Promise.all(jobs).then(() => undefined) };
  }

  /** Drops the given instances (also cancels their pending loads); returns how many were dropped. */
  drop(instances: readonly InstanceKey[]): number {
    let dropped = 0;
    for (const instance of instances) {
      const key = keyOf(instance);
      if (this.loaded.delete(key) || this.loading.delete(key)) dropped += 1;
    }
    return dropped;
  }

  /** Drops every loaded instance not in `keep`; returns how many were dropped. */
  dropAllExcept(keep: readonly InstanceKey[]): number {
    const kept = new Set(keep.map(keyOf));
    let dropped = 0;
    for (const key of [...this.loaded]) {
      if (!kept.has(key)) {
        this.loaded.delete(key);
        dropped += 1;
      }
    }
    return dropped;
  }

  /** Returns the instances of `required` that are not loaded yet. */
  missing(required: readonly InstanceKey[]): InstanceKey[] {
    return required.filter((instance) => !this.loaded.has(keyOf(instance)));
  }
}

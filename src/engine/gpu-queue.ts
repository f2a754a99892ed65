/**
 * Expert compute time of the GPUs of one node. Each GPU is a FIFO queue: a job of n token-expert
 * pairs starts when the GPU is free and ends n x microsPerPair later, and the caller waits until
 * then with a timer. Waits shorter than 1 ms resolve at once (timers are not finer), but the time
 * still counts against the GPU, so queueing delay adds up correctly.
 */
export interface GpuQueueOptions {
  /** Global indices of the node's GPUs. */
  readonly gpus: readonly number[];
  readonly microsPerPair: number;
  /** Monotonic clock in milliseconds. */
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
}

export class GpuQueues {
  private readonly busyUntilMs = new Map<number, number>();
  private readonly pairsComputed = new Map<number, number>();

  constructor(private readonly options: GpuQueueOptions) {
    for (const gpu of options.gpus) {
      this.busyUntilMs.set(gpu, 0);
      this.pairsComputed.set(gpu, 0);
    }
  }

  /** Reports whether `gpu` is one of this node's GPUs. */
  has(gpu: number): boolean {
    return this.busyUntilMs.has(gpu);
  }

  /** Queues `pairs` pairs on `gpu` and resolves when they are computed. */
  async charge(gpu: number, pairs: number): Promise<void> {
    const busyUntil = this.busyUntilMs.get(gpu);
    if (busyUntil === undefined) {
      throw new RangeError(`GPU ${gpu} is not on this node (GPUs ${this.options.gpus.join(', ')})`);
    }
    const now = this.options.now();
    const end = Math.max(now, busyUntil) + (pairs * this.options.microsPerPair) / 1000;
    this.busyUntilMs.set(gpu, end);
    this.pairsComputed.set(gpu, (this.pairsComputed.get(gpu) ?? 0) + pairs);
    const wait = end - now;
    if (wait >= 1) {
      await this.options.sleep(wait);
    }
  }

  /** Pairs computed so far per GPU. */
  computed(): ReadonlyMap<number, number> {
    return this.pairsComputed;
  }
}

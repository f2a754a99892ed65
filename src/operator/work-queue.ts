/**
 * A rate-limited work queue of string keys, with the guarantees controllers rely on:
 *
 * - A key waits in the queue at most once, however often it is added.
 * - A key is never processed by two workers at once. Adding a key while it is processed marks it
 *   dirty, and it runs once more after the current run ends.
 * - A failed run is retried after a per-key exponential backoff with a cap and jitter; the count
 *   resets when the key succeeds or is forgotten.
 * - At most `concurrency` keys are processed at a time.
 *
 * Keys wait until `start` is called with the processing function, so informers can fill the
 * queue before the process becomes the leader. `shutdown` stops taking work and waits for the
 * runs in flight.
 */
import { backoffDelayMs, systemScheduler, type BackoffPolicy, type Scheduler } from './timers.js';

/** Outcome of one run, which decides when the key runs again. */
export type WorkOutcome =
  /** Done; the key's failure count resets. */
  | { readonly kind: 'done' }
  /** Done, and the key comes back after `delayMs` (periodic resync); the failure count resets. */
  | { readonly kind: 'requeue'; readonly delayMs: number }
  /** Failed; the key comes back after its backoff delay, which grows with every failure. */
  | { readonly kind: 'retry' }
  /** Failed for good; the failure count resets and the key is not retried. */
  | { readonly kind: 'drop' };

export type ProcessKey = (key: string, signal: AbortSignal) => Promise<WorkOutcome>;

export interface WorkQueueOptions {
  /** Maximum keys processed at once. */
  readonly concurrency: number;
  readonly backoff: BackoffPolicy;
  readonly scheduler?: Scheduler;
  readonly random?: () => number;
  /** Called when the processing function throws instead of returning an outcome; the key is retried. */
  readonly onUnexpectedError?: (key: string, error: unknown) => void;
}

export class WorkQueue {
  private readonly options: WorkQueueOptions;
  private readonly scheduler: Scheduler;
  private readonly random: () => number;
  /** Keys ready to run, in order. */
  private readonly ready: string[] = [];
  /** Keys that need a run: waiting in `ready`, or added again while processing. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Map<string, AbortController>();
  private readonly delayed = new Map<string, { readonly dueMs: number; readonly cancel: () => void }>();
  private readonly failures = new Map<string, number>();
  private process: ProcessKey | null = null;
  private shuttingDown = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(options: WorkQueueOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`concurrency must be a positive integer, got ${options.concurrency}`);
    }
    this.options = options;
    this.scheduler = options.scheduler ?? systemScheduler;
    this.random = options.random ?? Math.random;
  }

  /** Keys waiting to run (not counting keys in flight or waiting for a delay). */
  get depth(): number {
    return this.ready.length;
  }

  /** Keys being processed now. */
  get inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delay (backoff or requeue) to pass. */
  get delayedCount(): number {
    return this.delayed.size;
  }

  /** Failures of `key` since its last success. */
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Queues `key` now; a pending delayed add of it is cancelled, since this run covers it. */
  add(key: string): void {
    if (this.shuttingDown) return;
    this.cancelDelayed(key);
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.ready.push(key);
    this.dispatch();
  }

  /**
   * Queues `key` after `delayMs`. When the key already waits for an earlier time, the earlier one
   * wins. A key that is already queued to run now stays queued.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    if (this.dirty.has(key) && !this.processing.has(key)) return;
    const dueMs = this.scheduler.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending !== undefined && pending.dueMs <= dueMs) return;
    pending?.cancel();
    const cancel = this.scheduler.setTimer(delayMs, () => {
      this.delayed.delete(key);
      this.add(key);
    });
    this.delayed.set(key, { dueMs, cancel });
  }

  /** Clears the failure count of `key`. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Starts processing with `process`; call once. */
  start(process: ProcessKey): void {
    if (this.process !== null) {
      throw new Error('the work queue is already started');
    }
    this.process = process;
    this.dispatch();
  }

  /**
   * Stops taking work: queued and delayed keys are dropped and later adds are ignored. Resolves
   * when the runs in flight have ended. With `abortInFlight`, their signals abort at once; with
   * `timeoutMs`, they abort when the drain takes longer. Returns true when every run ended before
   * its signal aborted.
   */
  async shutdown(options: { readonly abortInFlight?: boolean; readonly timeoutMs?: number } = {}): Promise<boolean> {
    this.shuttingDown = true;
    this.ready.length = 0;
    this.dirty.clear();
    for (const pending of this.delayed.values()) pending.cancel();
    this.delayed.clear();
    if (this.processing.size === 0) return true;

    let drained = true;
    const abortAll = (): void => {
      drained = false;
      for (const controller of this.processing.values()) controller.abort(new Error('the work queue is shutting down'));
    };
    if (options.abortInFlight === true) abortAll();
    const cancelTimeout = options.timeoutMs === undefined || options.abortInFlight === true ? () => {} : this.scheduler.setTimer(options.timeoutMs, abortAll);
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    cancelTimeout();
    return drained;
  }

  private dispatch(): void {
    const process = this.process;
    if (process === null || this.shuttingDown) return;
    while (this.processing.size < this.options.concurrency && this.ready.length > 0) {
      const key = this.ready.shift() as string;
      this.dirty.delete(key);
      const controller = new AbortController();
      this.processing.set(key, controller);
      void this.runKey(process, key, controller);
    }
  }

  private async runKey(process: ProcessKey, key: string, controller: AbortController): Promise<void> {
    let outcome: WorkOutcome;
    try {
      outcome = await process(key, controller.signal);
    } catch (error) {
      this.options.onUnexpectedError?.(key, error);
      outcome = { kind: 'retry' };
    }
    this.processing.delete(key);

    if (!this.shuttingDown) {
      this.settle(key, outcome);
      if (this.dirty.has(key)) {
        // Added while it ran: run again now, which also covers any delay just scheduled.
        this.cancelDelayed(key);
        this.ready.push(key);
      }
      this.dispatch();
    }
    if (this.processing.size === 0) {
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private settle(key: string, outcome: WorkOutcome): void {
    switch (outcome.kind) {
      case 'done':
      case 'drop':
        this.failures.delete(key);
        return;
      case 'requeue':
        this.failures.delete(key);
        this.addAfter(key, outcome.delayMs);
        return;
      case 'retry': {
        const failures = this.failures.get(key) ?? 0;
        this.failures.set(key, failures + 1);
        this.addAfter(key, backoffDelayMs(this.options.backoff, failures, this.random));
        return;
      }
    }
  }

  private cancelDelayed(key: string): void {
    const pending = this.delayed.get(key);
    if (pending !== undefined) {
      pending.cancel();
      this.delayed.delete(key);
    }
  }
}

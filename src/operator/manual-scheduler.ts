/**
 * A Scheduler for tests: time does not move until `advance` moves it, and timers fire in due order
 * as it passes them.
 */
import type { Scheduler } from './timers.js';

interface Timer {
  readonly dueMs: number;
  readonly sequence: number;
  readonly callback: () => void;
}

export class ManualScheduler implements Scheduler {
  private time: number;
  private sequence = 0;
  private readonly timers = new Map<number, Timer>();

  constructor(startMs = 1_700_000_000_000) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, callback: () => void): () => void {
    const id = this.sequence++;
    this.timers.set(id, { dueMs: this.time + Math.max(0, delayMs), sequence: id, callback });
    return () => {
      this.timers.delete(id);
    };
  }

  /** Delays from now of the pending timers, shortest first. */
  pendingDelays(): number[] {
    return [...this.timers.values()].map((timer) => timer.dueMs - this.time).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing every timer due on the way and letting promise chains settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    await settle();
    for (;;) {
      const next = this.nextDue(target);
      if (next === undefined) break;
      const [id, timer] = next;
      this.timers.delete(id);
      this.time = timer.dueMs;
      timer.callback();
      await settle();
    }
    this.time = target;
    await settle();
  }

  private nextDue(target: number): [number, Timer] | undefined {
    let best: [number, Timer] | undefined;
    for (const entry of this.timers) {
      const timer = entry[1];
      if (timer.dueMs > target) continue;
      if (best === undefined || timer.dueMs < best[1].dueMs || (timer.dueMs === best[1].dueMs && timer.sequence < best[1].sequence)) {
        best = entry;
      }
    }
    return best;
  }
}

/** Lets pending promise callbacks and immediate I/O callbacks run. */
export async function settle(rounds = 5): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Polls `predicate` in real time until it holds; throws after `timeoutMs` with `what` in the message. */
export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

import { describe, expect, test } from 'vitest';
import { ManualScheduler, settle } from './manual-scheduler.js';
import { backoffDelayMs } from './timers.js';
import { WorkQueue, type WorkOutcome } from './work-queue.js';

const BACKOFF = { baseMs: 500, capMs: 5_000, jitterRatio: 0.2 } as const;

/** A processing function whose runs the test finishes one by one. */
class ControlledProcess {
  readonly started: string[] = [];
  readonly pending = new Map<string, { resolve: (outcome: WorkOutcome) => void; signal: AbortSignal }[]>();
  running = 0;
  maxRunning = 0;
  /** Highest number of simultaneous runs of one key. */
  maxRunningPerKey = 0;
  private readonly runningPerKey = new Map<string, number>();

  readonly process = (key: string, signal: AbortSignal): Promise<WorkOutcome> => {
    this.started.push(key);
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    const perKey = (this.runningPerKey.get(key) ?? 0) + 1;
    this.runningPerKey.set(key, perKey);
    this.maxRunningPerKey = Math.max(this.maxRunningPerKey, perKey);
    return new Promise((resolve) => {
      const list = this.pending.get(key) ?? [];
      list.push({
        signal,
        resolve: (outcome) => {
          this.running -= 1;
          this.runningPerKey.set(key, (this.runningPerKey.get(key) ?? 1) - 1);
          resolve(outcome);
        },
      });
      this.pending.set(key, list);
    });
  };

  /** Ends the oldest run of `key` with `outcome`. */
  async finish(key: string, outcome: WorkOutcome = { kind: 'done' }): Promise<void> {
    const run = this.pending.get(key)?.shift();
    if (run === undefined) throw new Error(`no run of ${key} is pending`);
    run.resolve(outcome);
    await settle();
  }
}

function queueWith(concurrency: number, random: () => number = () => 0): { queue: WorkQueue; scheduler: ManualScheduler } {
  const scheduler = new ManualScheduler();
  return { queue: new WorkQueue({ concurrency, backoff: BACKOFF, scheduler, random }), scheduler };
}

describe('WorkQueue', () => {
  test('runs a key added many times before it starts once', async () => {
    const { queue } = queueWith(2);
    const work = new ControlledProcess();
    queue.add('ml/a');
    queue.add('ml/a');
    queue.add('ml/b');
    queue.add('ml/a');
    expect(queue.depth).toBe(2);

    queue.start(work.process);
    await settle();

    expect(work.started).toEqual(['ml/a', 'ml/b']);
    expect(queue.depth).toBe(0);
    expect(queue.inFlight).toBe(2);
  });

  test('reruns a key added during its run', async () => {
    const { queue } = queueWith(4);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();

    queue.add('ml/a');
    queue.add('ml/a');
    await settle();
    expect(work.started).toEqual(['ml/a']);
    expect(queue.depth).toBe(0);

    await work.finish('ml/a');
    expect(work.started).toEqual(['ml/a', 'ml/a']);
    await work.finish('ml/a');
    await settle();

    expect(work.started).toEqual(['ml/a', 'ml/a']);
    expect(work.maxRunningPerKey).toBe(1);
    expect(queue.inFlight).toBe(0);
  });

  test('never runs more keys at once than its concurrency', async () => {
    const { queue } = queueWith(2);
    const work = new ControlledProcess();
    queue.start(work.process);
    for (const key of ['ml/a', 'ml/b', 'ml/c', 'ml/d', 'ml/e']) queue.add(key);
    await settle();
    expect(work.started).toEqual(['ml/a', 'ml/b']);
    expect(queue.depth).toBe(3);

    await work.finish('ml/b');
    expect(work.started).toEqual(['ml/a', 'ml/b', 'ml/c']);
    await work.finish('ml/a');
    await work.finish('ml/c');
    await work.finish('ml/d');
    await work.finish('ml/e');

    expect(work.started).toEqual(['ml/a', 'ml/b', 'ml/c', 'ml/d', 'ml/e']);
    expect(work.maxRunning).toBe(2);
  });

  test('retries a failing key after doubling delays up to the cap', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();
    const delays: number[] = [];

    for (let failure = 0; failure < 6; failure++) {
      await work.finish('ml/a', { kind: 'retry' });
      const [delay = -1] = scheduler.pendingDelays();
      delays.push(delay);
      await scheduler.advance(delay - 1);
      expect(work.started).toHaveLength(failure + 1);
      await scheduler.advance(1);
      expect(work.started).toHaveLength(failure + 2);
    }

    expect(delays).toEqual([500, 1_000, 2_000, 4_000, 5_000, 5_000]);
    expect(queue.failureCount('ml/a')).toBe(6);
  });

  test('resets the backoff of a key after a success', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();
    await work.finish('ml/a', { kind: 'retry' });
    await scheduler.advance(500);
    await work.finish('ml/a', { kind: 'retry' });
    await scheduler.advance(1_000);
    await work.finish('ml/a', { kind: 'done' });
    expect(queue.failureCount('ml/a')).toBe(0);

    queue.add('ml/a');
    await settle();
    await work.finish('ml/a', { kind: 'retry' });

    expect(scheduler.pendingDelays()).toEqual([500]);
  });

  test.each([
    ['no jitter', 0, [500, 1_000, 5_000]],
    ['full jitter', 1, [400, 800, 4_000]],
    ['half jitter', 0.5, [450, 900, 4_500]],
  ] as const)('backoff delays with %s stay within the cap', (_name, random, expected) => {
    const delays = [0, 1, 10].map((attempt) => backoffDelayMs(BACKOFF, attempt, () => random));

    expect(delays).toEqual(expected);
  });

  test('failure before a queued rerun skips backoff', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();
    queue.add('ml/a');

    // The failed run is followed at once by the queued one, and no backoff timer is left behind.
    await work.finish('ml/a', { kind: 'retry' });

    expect(work.started).toEqual(['ml/a', 'ml/a']);
    expect(scheduler.pendingDelays()).toEqual([]);
    expect(queue.failureCount('ml/a')).toBe(1);
  });

  test('requeue brings a key back after the delay and resets its failures', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();
    await work.finish('ml/a', { kind: 'retry' });
    await scheduler.advance(500);

    await work.finish('ml/a', { kind: 'requeue', delayMs: 60_000 });

    expect(queue.failureCount('ml/a')).toBe(0);
    expect(queue.delayedCount).toBe(1);
    await scheduler.advance(59_999);
    expect(work.started).toHaveLength(2);
    await scheduler.advance(1);
    expect(work.started).toHaveLength(3);
  });

  test('addAfter keeps the earliest due time and add cancels the delay', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);

    queue.addAfter('ml/a', 10_000);
    queue.addAfter('ml/a', 3_000);
    queue.addAfter('ml/a', 7_000);
    expect(scheduler.pendingDelays()).toEqual([3_000]);

    queue.add('ml/a');
    await settle();
    expect(scheduler.pendingDelays()).toEqual([]);
    expect(work.started).toEqual(['ml/a']);
  });

  test('drop forgets a failing key without retrying it', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();
    await work.finish('ml/a', { kind: 'retry' });
    await scheduler.advance(500);

    await work.finish('ml/a', { kind: 'drop' });

    expect(scheduler.pendingDelays()).toEqual([]);
    expect(queue.failureCount('ml/a')).toBe(0);
    expect(work.started).toHaveLength(2);
  });

  test('retries a key whose processing function throws', async () => {
    const scheduler = new ManualScheduler();
    const errors: string[] = [];
    const throwing = new WorkQueue({
      concurrency: 1,
      backoff: BACKOFF,
      scheduler,
      random: () => 0,
      onUnexpectedError: (key, error) => errors.push(`${key}: ${(error as Error).message}`),
    });
    throwing.start(async () => {
      throw new Error('bug');
    });

    throwing.add('ml/a');
    await settle();

    expect(errors).toEqual(['ml/a: bug']);
    expect(scheduler.pendingDelays()).toEqual([500]);
  });

  test('shutdown waits for runs in flight and takes no more work', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    queue.add('ml/b');
    queue.addAfter('ml/c', 1_000);
    await settle();

    let finished: boolean | undefined;
    const shutdown = queue.shutdown().then((drained) => {
      finished = drained;
    });
    queue.add('ml/d');
    await settle();
    expect(finished).toBeUndefined();
    expect(work.pending.get('ml/a')?.[0]?.signal.aborted).toBe(false);

    await work.finish('ml/a');
    await shutdown;
    await scheduler.advance(1_000);

    expect(finished).toBe(true);
    expect(work.started).toEqual(['ml/a']);
    expect(queue.depth).toBe(0);
  });

  test('shutdown aborts runs that outlast its timeout', async () => {
    const { queue, scheduler } = queueWith(1);
    const work = new ControlledProcess();
    queue.start(work.process);
    queue.add('ml/a');
    await settle();

    const shutdown = queue.shutdown({ timeoutMs: 2_000 });
    await scheduler.advance(1_999);
    const run = work.pending.get('ml/a')?.[0];
    expect(run?.signal.aborted).toBe(false);
    await scheduler.advance(1);
    expect(run?.signal.aborted).toBe(true);
    await work.finish('ml/a', { kind: 'drop' });

    await expect(shutdown).resolves.toBe(false);
  });
});

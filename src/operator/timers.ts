/**
 * Time and randomness of the controller runtime. The informers, the work queue and the leader
 * elector receive a Scheduler and a random source, so tests drive them with a manual clock and
 * fixed jitter instead of waiting in real time.
 */

/** A clock with cancellable one-shot timers. */
export interface Scheduler {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` once after `delayMs`; the returned function cancels the timer. */
  setTimer(delayMs: number, callback: () => void): () => void;
}

/** The wall clock and node:timers. Timers are unref'd so a pending retry never keeps the process alive. */
export const systemScheduler: Scheduler = Object.freeze({
  now: () => Date.now(),
  setTimer(delayMs: number, callback: () => void): () => void {
    const timer = setTimeout(callback, Math.max(0, delayMs));
    timer.unref();
    return () => clearTimeout(timer);
  },
});

/** Resolves after `delayMs` on `scheduler`, or as soon as `signal` aborts (it never rejects). */
export function sleep(scheduler: Scheduler, delayMs: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const onAbort = (): void => {
      cancel();
      resolve();
    };
    const cancel = scheduler.setTimer(delayMs, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with a cap; jitter shortens a delay by up to `jitterRatio` of itself. */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
  /** Fraction in [0, 1]; 0.2 turns a 1000 ms delay into one from 800 to 1000 ms. */
  readonly jitterRatio: number;
}

/**
 * Returns the delay before retry number `attempt` (0 for the first retry): min(cap, base x 2^attempt),
 * shortened by jitterRatio x random() of itself. Jitter only shortens, so the cap is a true maximum
 * and `random = () => 0` gives the exact exponential series.
 */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number): number {
  const exponent = Math.min(Math.max(0, attempt), 52);
  const delay = Math.min(policy.capMs, policy.baseMs * 2 ** exponent);
  return delay * (1 - policy.jitterRatio * random());
}

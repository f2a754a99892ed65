/** Wall-clock time in milliseconds since the epoch; services take it as a parameter so tests can fix it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

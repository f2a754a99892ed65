import { describe, expect, test } from 'vitest';
import type { StatsShape } from '../stats/activation.js';
import { ActivationWindow } from './activation-window.js';

const shape = { experts: 4, layers: 1, topK: 2 };

function windowWith(options: { bucketMs?: number; retainedBuckets?: number } = {}) {
  const clock = { t: 0 };
  const changes: { previous: StatsShape; next: StatsShape }[] = [];
  const window = new ActivationWindow({
    now: () => clock.t,
    bucketMs: options.bucketMs ?? 1_000,
    retainedBuckets: options.retainedBuckets ?? 10,
    sampleCapacity: 16,
    onShapeChange: (previous, next) => changes.push({ previous, next }),
  });
  return { clock, window, changes };
}

describe('ActivationWindow', () => {
  test('seals the open bucket by age and keeps counting', () => {
    const { clock, window } = windowWith({ bucketMs: 1_000 });
    window.addTokens(shape, [0, 1], 1);
    clock.t = 1_500;
    window.addTokens(shape, [2, 3, 1, 2], 2);
    clock.t = 1_600;

    const reading = window.read(0);

    expect(reading.stats?.tokens).toBe(3);
    expect(reading.buckets).toBe(2);
    expect(reading.window).toEqual({ startMs: 0, endMs: 1_600 });
  });

  test('reports an incomplete window when retention dropped buckets', () => {
    const { clock, window } = windowWith({ retainedBuckets: 2 });
    for (let bucket = 0; bucket < 4; bucket++) {
      window.addTokens(shape, [0, 1], 1);
      clock.t += 100;
      window.read(clock.t - 100);
    }

    const reading = window.read(0);

    expect(reading.complete).toBe(false);
    expect(reading.stats?.tokens).toBe(2);
    expect(reading.window.startMs).toBe(200);
  });

  test('leaves the open bucket open on a read without since', () => {
    const { clock, window } = windowWith();
    window.addTokens(shape, [0, 1], 1);
    clock.t = 10;
    expect(window.read().stats?.tokens).toBe(1);
    window.addTokens(shape, [0, 2], 1);
    clock.t = 20;

    const reading = window.read(0);

    expect(reading.stats?.tokens).toBe(2);
    expect(reading.buckets).toBe(1);
  });

  test('counts dispatch tiers per bucket', () => {
    const { clock, window } = windowWith();
    window.addTiers({ gpu: 1, node: 2, remote: 3 });
    clock.t = 5;
    const first = window.read(0);
    window.addTiers({ gpu: 0, node: 0, remote: 4 });
    clock.t = 9;

    expect(first.dispatch).toEqual({ gpu: 1, node: 2, remote: 3 });
    expect(window.read(first.window.endMs).dispatch).toEqual({ gpu: 0, node: 0, remote: 4 });
    expect(first.stats).toBeNull();
  });

  test('starts a new window for a report of another top-k', () => {
    const { clock, window, changes } = windowWith();
    window.addTokens({ ...shape, topK: 1 }, [0], 1);
    window.addTiers({ gpu: 1, node: 0, remote: 0 });
    clock.t = 100;
    window.read(0);
    clock.t = 200;

    window.addTokens(shape, [0, 1, 2, 3], 2);
    clock.t = 300;
    const reading = window.read(0);

    expect(changes).toEqual([{ previous: { experts: 4, layers: 1, topK: 1 }, next: shape }]);
    expect(window.shape).toEqual(shape);
    expect(reading.stats?.topK).toBe(2);
    expect(reading.stats?.tokens).toBe(2);
    expect(reading.dispatch).toEqual({ gpu: 0, node: 0, remote: 0 });
    expect(reading.complete).toBe(false);
    expect(reading.window).toEqual({ startMs: 200, endMs: 300 });
  });

  test('keeps counting into one window while the shape stays', () => {
    const { window, changes } = windowWith();
    window.addTokens(shape, [0, 1], 1);
    window.addTokens(shape, [2, 3], 1);

    expect(changes).toEqual([]);
    expect(window.read().stats?.tokens).toBe(2);
    expect(window.read().complete).toBe(true);
  });
});

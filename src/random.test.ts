import { describe, expect, test } from 'vitest';
import { createRandom, randomInt } from './random.js';

function draw(seed: number, count: number): number[] {
  const random = createRandom(seed);
  return Array.from({ length: count }, () => random());
}

describe('createRandom', () => {
  test('same seed gives the same sequence', () => {
    expect(draw(42, 100)).toEqual(draw(42, 100));
  });

  test.each([
    [0, 1],
    [1, 2],
    [-1, 1],
    [0, 2 ** 32],
    [7, 7 + 2 ** 40],
  ] as const)('seeds %d and %d give different sequences', (a, b) => {
    expect(draw(a, 8)).not.toEqual(draw(b, 8));
  });

  test('values lie in [0, 1)', () => {
    for (const value of draw(3, 10_000)) {
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
    }
  });

  test('values spread evenly over ten buckets', () => {
    const buckets = new Array<number>(10).fill(0);
    for (const value of draw(9, 100_000)) {
      buckets[Math.floor(value * 10)]! += 1;
    }
    for (const count of buckets) {
      expect(count).toBeGreaterThan(9_500);
      expect(count).toBeLessThan(10_500);
    }
  });

  test.each([0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])('rejects seed %d', (seed) => {
    expect(() => createRandom(seed)).toThrow(RangeError);
  });
});

describe('randomInt', () => {
  test('returns every integer below the bound and nothing else', () => {
    const random = createRandom(5);
    const seen = new Set<number>();
    for (let i = 0; i < 1_000; i += 1) {
      const value = randomInt(random, 7);
      expect(Number.isInteger(value)).toBe(true);
      seen.add(value);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  test('bound 1 always gives 0', () => {
    const random = createRandom(11);
    expect(Array.from({ length: 20 }, () => randomInt(random, 1))).toEqual(new Array(20).fill(0));
  });

  test.each([0, -3, 2.5, Number.NaN])('rejects bound %d', (bound) => {
    expect(() => randomInt(createRandom(1), bound)).toThrow(RangeError);
  });
});

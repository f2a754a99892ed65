import { describe, expect, test } from 'vitest';
import { createRandom } from '../random.js';
import { keptAffinity, partition, type PartitionProblem } from './partition.js';

/** Affinity with `blocks` planted groups of `size` items: `inside` within a group, `noise` scaled randomness across. */
function planted(blocks: number, size: number, inside: number, noise: number, seed: number): Float64Array {
  const n = blocks * size;
  const random = createRandom(seed);
  const matrix = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const same = Math.floor(i / size) === Math.floor(j / size);
      const value = (same ? inside : 0) + noise * random();
      matrix[i * n + j] = value;
      matrix[j * n + i] = value;
    }
  }
  return matrix;
}

/** Shuffles item labels so the planted groups are not contiguous ids. */
function permute(matrix: Float64Array, n: number, order: readonly number[]): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[order[i] * n + order[j]] = matrix[i * n + j];
  return out;
}

function problem(overrides: Partial<PartitionProblem> & Pick<PartitionProblem, 'n' | 'affinity' | 'groups'>): PartitionProblem {
  const size = Math.ceil(overrides.n / overrides.groups);
  return {
    loads: new Float64Array(overrides.n).fill(1),
    minSize: Array(overrides.groups).fill(Math.floor(overrides.n / overrides.groups)),
    maxSize: Array(overrides.groups).fill(size),
    loadTolerance: Infinity,
    refine: true,
    ...overrides,
  };
}

describe('partition', () => {
  test('recovers planted groups under shuffled ids', () => {
    const n = 16;
    const order = [5, 12, 0, 9, 14, 3, 7, 1, 10, 15, 2, 8, 13, 4, 11, 6];
    const affinity = permute(planted(4, 4, 10, 1, 3), n, order);
    const { group } = partition(problem({ n, affinity, groups: 4 }));
    for (let block = 0; block < 4; block++) {
      const members = [0, 1, 2, 3].map((k) => order[block * 4 + k]);
      expect(new Set(members.map((item) => group[item])).size).toBe(1);
    }
    expect(new Set(group).size).toBe(4);
  });

  test.each([
    { n: 10, groups: 3, min: 3, max: 4 },
    { n: 12, groups: 4, min: 2, max: 4 },
    { n: 7, groups: 2, min: 3, max: 4 },
  ] as const)('keeps sizes of $n items in [$min, $max]', ({ n, groups, min, max }) => {
    const affinity = planted(1, n, 0, 5, n);
    const { group } = partition(problem({ n, affinity, groups, minSize: Array(groups).fill(min), maxSize: Array(groups).fill(max) }));
    const sizes = new Array<number>(groups).fill(0);
    for (const g of group) sizes[g]++;
    for (const size of sizes) {
      expect(size).toBeGreaterThanOrEqual(min);
      expect(size).toBeLessThanOrEqual(max);
    }
  });

  test('load cap splits two heavy items apart', () => {
    // Items 0 and 1 attract each other strongly but carry most of the load.
    const n = 6;
    const affinity = new Float64Array(n * n);
    affinity[0 * n + 1] = affinity[1 * n + 0] = 100;
    const loads = [10, 10, 1, 1, 1, 1];
    const { group } = partition(problem({ n, affinity, groups: 2, loads, loadTolerance: 0.1 }));
    expect(group[0]).not.toBe(group[1]);
  });

  test('refinement never lowers kept affinity', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const n = 24;
      const affinity = planted(4, 6, 3, 4, seed);
      const plain = partition(problem({ n, affinity, groups: 4, refine: false }));
      const refined = partition(problem({ n, affinity, groups: 4, refine: true }));
      expect(refined.keptAffinity).toBeGreaterThanOrEqual(plain.keptAffinity - 1e-9);
    }
  });

  test('all-zero affinity still fills every group', () => {
    const n = 8;
    const { group, keptAffinity: kept } = partition(problem({ n, affinity: new Float64Array(n * n), groups: 4 }));
    const sizes = new Array<number>(4).fill(0);
    for (const g of group) sizes[g]++;
    expect(sizes).toEqual([2, 2, 2, 2]);
    expect(kept).toBe(0);
  });

  test('is deterministic', () => {
    const n = 20;
    const affinity = planted(4, 5, 2, 3, 11);
    const a = partition(problem({ n, affinity, groups: 4 }));
    const b = partition(problem({ n, affinity, groups: 4 }));
    expect(Array.from(a.group)).toEqual(Array.from(b.group));
  });

  test('keptAffinity counts each same-group pair once', () => {
    const affinity = new Float64Array([0, 2, 3, 2, 0, 5, 3, 5, 0]);
    expect(keptAffinity(affinity, 3, [0, 0, 1])).toBe(2);
    expect(keptAffinity(affinity, 3, [0, 0, 0])).toBe(10);
  });
});

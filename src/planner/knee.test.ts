import { expect, test } from 'vitest';
import { kneeIndex } from './knee.js';

test.each([
  { name: 'sharp knee at the second point', points: [[0, 0], [0.1, 0.9], [0.5, 0.95], [1, 1]], knee: 1 },
  { name: 'straight line keeps the first point', points: [[0, 0], [0.5, 0.5], [1, 1]], knee: 0 },
  { name: 'flat benefit keeps the first point', points: [[0, 1], [0.5, 1], [1, 1]], knee: 0 },
  { name: 'late knee', points: [[0, 0], [0.2, 0.1], [0.4, 0.8], [1, 1]], knee: 2 },
] as const)('kneeIndex: $name', ({ points, knee }) => {
  expect(kneeIndex(points.map(([x, y]) => ({ x, y })))).toBe(knee);
});

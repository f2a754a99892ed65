import { describe, expect, test } from 'vitest';
import { createRandom } from '../random.js';
import { jacobiEigen, leadingEigenvectors, tridiagonalEigen } from './eigen.js';

function randomSymmetric(n: number, seed: number): Float64Array {
  const random = createRandom(seed);
  const matrix = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const value = random() * 2 - 1;
      matrix[i * n + j] = value;
      matrix[j * n + i] = value;
    }
  }
  return matrix;
}

function residual(matrix: Float64Array, n: number, value: number, vector: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = 0; j < n; j++) sum += matrix[i * n + j] * vector[j];
    worst = Math.max(worst, Math.abs(sum - value * vector[i]));
  }
  return worst;
}

describe('eigen solvers', () => {
  test('tridiagonal QL matches Jacobi on a tridiagonal matrix', () => {
    const m = 12;
    const random = createRandom(7);
    const diagonal = Array.from({ length: m }, () => random() * 4 - 2);
    const off = Array.from({ length: m - 1 }, () => random() * 2 - 1);
    const dense = new Float64Array(m * m);
    for (let i = 0; i < m; i++) {
      dense[i * m + i] = diagonal[i];
      if (i + 1 < m) {
        dense[i * m + i + 1] = off[i];
        dense[(i + 1) * m + i] = off[i];
      }
    }
    const ql = [...tridiagonalEigen(diagonal, off, m).values].sort((a, b) => a - b);
    const jacobi = [...jacobiEigen(dense, m).values].sort((a, b) => a - b);
    for (let i = 0; i < m; i++) expect(ql[i]).toBeCloseTo(jacobi[i], 9);
  });

  test.each([
    { n: 10, count: 3 },
    { n: 64, count: 4 },
    { n: 150, count: 4 },
  ] as const)('leading eigenpairs of a random $n x $n matrix satisfy A v = lambda v', ({ n, count }) => {
    const matrix = randomSymmetric(n, n);
    const { values, vectors } = leadingEigenvectors(matrix, n, count);
    const reference = [...jacobiEigen(matrix, n).values].sort((a, b) => b - a);
    for (let c = 0; c < count; c++) {
      expect(values[c]).toBeCloseTo(reference[c], 6);
      // Random matrices have small eigenvalue gaps, so the truncated Lanczos run converges to about 1e-5.
      expect(residual(matrix, n, values[c], vectors[c])).toBeLessThan(1e-4);
    }
  });

  test('block-diagonal affinity separates its blocks in the second eigenvector', () => {
    const n = 6;
    const matrix = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i !== j && Math.floor(i / 3) === Math.floor(j / 3)) matrix[i * n + j] = 1;
      }
    }
    matrix[2 * n + 3] = 0.01;
    matrix[3 * n + 2] = 0.01;
    const { vectors } = leadingEigenvectors(matrix, n, 2);
    const second = vectors[1];
    const signs = Array.from(second, (value) => Math.sign(value));
    expect(new Set(signs.slice(0, 3)).size).toBe(1);
    expect(new Set(signs.slice(3)).size).toBe(1);
    expect(signs[0]).not.toBe(signs[3]);
  });
});

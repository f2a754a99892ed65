/**
 * Leading eigenvectors of a dense symmetric matrix: Lanczos iteration with full
 * re-orthogonalisation (Golub and Van Loan, Matrix Computations, 4th ed., section 10.1), then the
 * implicit QL method with shifts on the small tridiagonal matrix (section 8.3). A cyclic Jacobi
 * solver (section 8.5) serves as an independent check in tests. Deterministic: the start vector
 * comes from a fixed-seed generator and every tie is broken by index.
 *
 * Cost: O(m n^2 + m^2 n) for m Lanczos steps on an n x n matrix, plus O(m^3) for the QL step.
 */
import { createRandom } from '../random.js';

export interface EigenResult {
  /** Eigenvalues, largest first. */
  readonly values: Float64Array;
  /** vectors[c] is the unit eigenvector of values[c], length n. */
  readonly vectors: Float64Array[];
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** Eigen-decomposes a small dense symmetric matrix (row-major, m x m) by cyclic Jacobi rotations. */
export function jacobiEigen(matrix: Float64Array, m: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(m * m);
  for (let i = 0; i < m; i++) v[i * m + i] = 1;

  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += a[p * m + q] * a[p * m + q];
    if (off < 1e-22) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = a[p * m + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = a[k * m + p];
          const akq = a[k * m + q];
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = a[p * m + k];
          const aqk = a[q * m + k];
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = v[k * m + p];
          const vkq = v[k * m + q];
          v[k * m + p] = c * vkp - s * vkq;
          v[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(m);
  for (let i = 0; i < m; i++) values[i] = a[i * m + i];
  return { values, vectors: v };
}

/**
 * Eigen-decomposes a symmetric tridiagonal matrix by implicit QL iterations with shifts.
 * `diagonal` has m entries and `offDiagonal[i]` couples rows i and i + 1 (m - 1 entries used).
 * Returns the eigenvalues and the m x m row-major matrix whose column c is the eigenvector of
 * values[c].
 */
export function tridiagonalEigen(
  diagonal: ArrayLike<number>,
  offDiagonal: ArrayLike<number>,
  m: number,
): { values: Float64Array; vectors: Float64Array } {
  const d = Float64Array.from({ length: m }, (_, i) => diagonal[i]);
  const e = new Float64Array(m);
  for (let i = 0; i + 1 < m; i++) e[i] = offDiagonal[i];
  const z = new Float64Array(m * m);
  for (let i = 0; i < m; i++) z[i * m + i] = 1;

  for (let l = 0; l < m; l++) {
    for (let iteration = 0; ; iteration++) {
      let split = l;
      for (; split < m - 1; split++) {
        const scale = Math.abs(d[split]) + Math.abs(d[split + 1]);
        if (Math.abs(e[split]) <= Number.EPSILON * scale) break;
      }
      if (split === l) break;
      if (iteration >= 100) throw new Error('tridiagonal QL did not converge in 100 iterations');

      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[split] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = split - 1;
      let deflated = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          e[split] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        for (let k = 0; k < m; k++) {
          const zk = z[k * m + i + 1];
          z[k * m + i + 1] = s * z[k * m + i] + c * zk;
          z[k * m + i] = c * z[k * m + i] - s * zk;
        }
      }
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[split] = 0;
    }
  }
  return { values: d, vectors: z };
}

/**
 * Returns the `count` largest eigenpairs of the symmetric n x n matrix `matrix` (row-major).
 * Eigenvector signs are fixed so that the entry of largest magnitude is positive.
 */
export function leadingEigenvectors(matrix: Float64Array, n: number, count: number, seed = 1): EigenResult {
  const k = Math.min(count, n);
  const steps = Math.min(n, Math.max(k + 28, 60));
  const random = createRandom(seed);
  const basis: Float64Array[] = [];
  const alpha = new Float64Array(steps);
  const beta = new Float64Array(steps);

  // Modified Gram-Schmidt against the whole basis, twice for large bases where rounding piles up.
  const orthogonalize = (w: Float64Array): void => {
    const passes = basis.length > 40 ? 2 : 1;
    for (let pass = 0; pass < passes; pass++) {
      for (const q of basis) {
        const projection = dot(q, w);
        for (let i = 0; i < n; i++) w[i] -= projection * q[i];
      }
    }
  };
  const freshVector = (): Float64Array | null => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const w = new Float64Array(n);
      for (let i = 0; i < n; i++) w[i] = random() - 0.5;
      orthogonalize(w);
      const norm = Math.sqrt(dot(w, w));
      if (norm > 1e-8) {
        for (let i = 0; i < n; i++) w[i] /= norm;
        return w;
      }
    }
    return null;
  };

  let q = freshVector();
  let used = 0;
  while (q !== null && used < steps) {
    basis.push(q);
    const w = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) sum += matrix[row + j] * q[j];
      w[i] = sum;
    }
    alpha[used] = dot(q, w);
    orthogonalize(w);
    const norm = Math.sqrt(dot(w, w));
    used++;
    if (used >= steps) break;
    if (norm > 1e-10) {
      beta[used - 1] = norm;
      for (let i = 0; i < n; i++) w[i] /= norm;
      q = w;
    } else {
      // An invariant subspace was found: continue from a new orthogonal direction, with a zero
      // coupling so the tridiagonal matrix splits into blocks.
      beta[used - 1] = 0;
      q = freshVector();
    }
  }

  const m = used;
  const small = tridiagonalEigen(alpha, beta, m);
  const order = Array.from({ length: m }, (_, i) => i).sort((a, b) => small.values[b] - small.values[a] || a - b);

  const values = new Float64Array(k);
  const vectors: Float64Array[] = [];
  for (let c = 0; c < k; c++) {
    const column = order[c];
    values[c] = small.values[column];
    const vector = new Float64Array(n);
    for (let j = 0; j < m; j++) {
      const coefficient = small.vectors[j * m + column];
      const qj = basis[j];
      for (let i = 0; i < n; i++) vector[i] += coefficient * qj[i];
    }
    let largest = 0;
    for (let i = 0; i < n; i++) if (Math.abs(vector[i]) > Math.abs(vector[largest])) largest = i;
    const sign = vector[largest] < 0 ? -1 : 1;
    const norm = Math.sqrt(dot(vector, vector)) || 1;
    for (let i = 0; i < n; i++) vector[i] = (sign * vector[i]) / norm;
    vectors.push(vector);
  }
  return { values, vectors };
}

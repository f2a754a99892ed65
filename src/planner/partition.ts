/**
 * Bounded spectral partitioning of experts by co-activation affinity.
 *
 * 1. Spectral embedding (Ng, Jordan and Weiss, "On Spectral Clustering", NIPS 2001): the leading k
 *    eigenvectors of D^-1/2 A D^-1/2 (the smallest of the symmetric normalised Laplacian), rows
 *    scaled to unit length.
 * 2. k-means on the rows with farthest-point seeding and a fixed iteration cap.
 * 3. Assignment to the centres under per-group size bounds: cheapest (item, group) pairs first,
 *    then items moved into groups below their minimum at the least extra distance.
 * 4. Load repair and refinement (Kernighan-Lin style single moves and pair swaps) that raise the
 *    affinity kept inside groups while no group's load exceeds the load cap.
 *
 * Everything is deterministic: ties are broken by lower item index, then lower group index.
 * Cost: O(n^2 k) for the embedding, O(n k) per k-means round, O(n^2) per refinement pass.
 */
import { leadingEigenvectors } from './eigen.js';

export interface PartitionProblem {
  /** Items to partition. */
  readonly n: number;
  /** Symmetric n x n affinity, row-major, zero diagonal. */
  readonly affinity: Float64Array;
  /** Load of every item, used by the load cap. */
  readonly loads: ArrayLike<number>;
  readonly groups: number;
  readonly minSize: readonly number[];
  readonly maxSize: readonly number[];
  /** Group load cap as a multiple of the mean group load above 1; Infinity disables it. */
  readonly loadTolerance: number;
  /** Run the refinement pass (load repair always runs). */
  readonly refine: boolean;
  /**
   * Precomputed spectral rows (n x dimensions, row-major), for callers that partition one item set
   * several times or take a subset of a larger embedding.
   */
  readonly embedding?: { readonly rows: Float64Array; readonly dimensions: number };
  /** Precomputed k-means centres in the embedding (groups x dimensions, row-major). */
  readonly centres?: Float64Array;
}

export interface PartitionResult {
  /** group[i] is the group of item i; groups are numbered by their lowest item. */
  readonly group: Int32Array;
  /** Affinity kept inside groups (each pair once). */
  readonly keptAffinity: number;
  /** Refinement moves and swaps applied. */
  readonly refinementSteps: number;
}

/** Sum of affinity over pairs in the same group, each pair once. */
export function keptAffinity(affinity: Float64Array, n: number, group: ArrayLike<number>): number {
  let kept = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) if (group[i] === group[j]) kept += affinity[i * n + j];
  }
  return kept;
}

/** Spectral rows of the items: n x k, row-major, each row of unit length (or zero). */
export function spectralEmbedding(affinity: Float64Array, n: number, k: number): Float64Array {
  const degree = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = 0; j < n; j++) sum += affinity[i * n + j];
    degree[i] = sum;
  }
  const normalized = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    if (degree[i] <= 0) continue;
    for (let j = 0; j < n; j++) {
      if (degree[j] <= 0) continue;
      normalized[i * n + j] = affinity[i * n + j] / Math.sqrt(degree[i] * degree[j]);
    }
  }
  const { vectors } = leadingEigenvectors(normalized, n, k);
  const rows = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let c = 0; c < vectors.length; c++) norm += vectors[c][i] ** 2;
    norm = Math.sqrt(norm);
    for (let c = 0; c < vectors.length; c++) rows[i * k + c] = norm > 1e-12 ? vectors[c][i] / norm : 0;
  }
  return rows;
}

function squaredDistance(rows: Float64Array, i: number, centres: Float64Array, c: number, k: number): number {
  let sum = 0;
  for (let d = 0; d < k; d++) {
    const diff = rows[i * k + d] - centres[c * k + d];
    sum += diff * diff;
  }
  return sum;
}

/** k-means with farthest-point seeding; returns the centres (groups x k). */
export function kMeansCentres(rows: Float64Array, n: number, k: number, groups: number): Float64Array {
  const centres = new Float64Array(groups * k);
  const mean = new Float64Array(k);
  for (let i = 0; i < n; i++) for (let d = 0; d < k; d++) mean[d] += rows[i * k + d] / n;

  let first = 0;
  let firstDistance = -1;
  for (let i = 0; i < n; i++) {
    let distance = 0;
    for (let d = 0; d < k; d++) distance += (rows[i * k + d] - mean[d]) ** 2;
    if (distance > firstDistance + 1e-12) {
      firstDistance = distance;
      first = i;
    }
  }
  const nearest = new Float64Array(n).fill(Infinity);
  let chosen = first;
  for (let c = 0; c < groups; c++) {
    for (let d = 0; d < k; d++) centres[c * k + d] = rows[chosen * k + d];
    let farthest = 0;
    let farthestDistance = -1;
    for (let i = 0; i < n; i++) {
      nearest[i] = Math.min(nearest[i], squaredDistance(rows, i, centres, c, k));
      if (nearest[i] > farthestDistance + 1e-12) {
        farthestDistance = nearest[i];
        farthest = i;
      }
    }
    chosen = farthest;
  }

  const label = new Int32Array(n);
  for (let round = 0; round < 30; round++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestDistance = Infinity;
      for (let c = 0; c < groups; c++) {
        const distance = squaredDistance(rows, i, centres, c, k);
        if (distance < bestDistance - 1e-12) {
          bestDistance = distance;
          best = c;
        }
      }
      if (label[i] !== best) changed = true;
      label[i] = best;
    }
    const sums = new Float64Array(groups * k);
    const counts = new Float64Array(groups);
    for (let i = 0; i < n; i++) {
      counts[label[i]]++;
      for (let d = 0; d < k; d++) sums[label[i] * k + d] += rows[i * k + d];
    }
    for (let c = 0; c < groups; c++) {
      if (counts[c] === 0) continue;
      for (let d = 0; d < k; d++) centres[c * k + d] = sums[c * k + d] / counts[c];
    }
    if (!changed && round > 0) break;
  }
  return centres;
}

/** Assigns items to the nearest centres that still have room, then fills groups below minimum. */
function boundedAssignment(
  rows: Float64Array,
  n: number,
  k: number,
  centres: Float64Array,
  minSize: readonly number[],
  maxSize: readonly number[],
): Int32Array {
  const groups = minSize.length;
  // Cheapest (item, group) pairs first. Squared distances between unit rows are at most 4, so a
  // distance quantised to 1e-9 times 2^21 plus the pair index fits a double exactly, and a plain
  // numeric sort orders by distance with ties to the lower item, then the lower group.
  const pairCount = n * groups;
  if (pairCount >= 2 ** 21) throw new RangeError(`bounded assignment supports fewer than 2^21 item-group pairs, got ${pairCount}`);
  const keys = new Float64Array(pairCount);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < groups; c++) {
      const pair = i * groups + c;
      keys[pair] = Math.round(squaredDistance(rows, i, centres, c, k) * 1e9) * 2 ** 21 + pair;
    }
  }
  keys.sort();

  const group = new Int32Array(n).fill(-1);
  const size = new Int32Array(groups);
  // Reserve room for the minimum of every group: a group may only take an item beyond its minimum
  // while the other groups' unmet minimums can still be covered by the unassigned items.
  let unmet = minSize.reduce((sum, value) => sum + value, 0);
  let unassigned = n;
  for (let p = 0; p < pairCount; p++) {
    const pair = keys[p] % 2 ** 21;
    const item = Math.floor(pair / groups);
    const c = pair % groups;
    if (group[item] !== -1 || size[c] >= maxSize[c]) continue;
    const fillsMinimum = size[c] < minSize[c];
    if (!fillsMinimum && unassigned - 1 < unmet) continue;
    group[item] = c;
    size[c]++;
    unassigned--;
    if (fillsMinimum) unmet--;
  }
  for (let i = 0; i < n; i++) {
    if (group[i] !== -1) continue;
    let best = -1;
    for (let c = 0; c < groups; c++) if (size[c] < maxSize[c] && (best === -1 || size[c] < size[best])) best = c;
    group[i] = best;
    size[best]++;
  }
  return group;
}

/**
 * Deals items by load, heaviest first, to groups 0..k-1 then k-1..0 and so on, skipping full
 * groups, then tops up groups below their minimum from the largest groups.
 */
function serpentineDeal(problem: PartitionProblem): Int32Array {
  const { n, groups, loads, minSize, maxSize } = problem;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => loads[b] - loads[a] || a - b);
  const group = new Int32Array(n);
  const size = new Int32Array(groups);
  let cursor = 0;
  let direction = 1;
  for (const item of order) {
    for (let tries = 0; tries < 2 * groups && size[cursor] >= maxSize[cursor]; tries++) {
      cursor += direction;
      if (cursor === groups || cursor < 0) {
        direction = -direction;
        cursor += direction;
      }
    }
    group[item] = cursor;
    size[cursor]++;
    cursor += direction;
    if (cursor === groups || cursor < 0) {
      direction = -direction;
      cursor += direction;
    }
  }
  for (let c = 0; c < groups; c++) {
    while (size[c] < minSize[c]) {
      let donor = -1;
      for (let d = 0; d < groups; d++) if (size[d] > minSize[d] && (donor < 0 || size[d] > size[donor])) donor = d;
      if (donor < 0) break;
      let item = -1;
      for (let i = n - 1; i >= 0; i--) {
        if (group[order[i]] === donor) {
          item = order[i];
          break;
        }
      }
      group[item] = c;
      size[donor]--;
      size[c]++;
    }
  }
  return group;
}

/** Mutable partition state with per-item connectivity to every group. */
class PartitionState {
  readonly connection: Float64Array;
  readonly size: Int32Array;
  readonly load: Float64Array;

  constructor(
    readonly problem: PartitionProblem,
    readonly group: Int32Array,
  ) {
    const { n, groups, affinity, loads } = problem;
    this.connection = new Float64Array(n * groups);
    this.size = new Int32Array(groups);
    this.load = new Float64Array(groups);
    for (let i = 0; i < n; i++) {
      this.size[group[i]]++;
      this.load[group[i]] += loads[i];
      for (let j = 0; j < n; j++) this.connection[i * groups + group[j]] += affinity[i * n + j];
    }
  }

  move(item: number, to: number): void {
    const { n, groups, affinity, loads } = this.problem;
    const from = this.group[item];
    this.group[item] = to;
    this.size[from]--;
    this.size[to]++;
    this.load[from] -= loads[item];
    this.load[to] += loads[item];
    for (let j = 0; j < n; j++) {
      const a = affinity[item * n + j];
      if (a === 0) continue;
      this.connection[j * groups + from] -= a;
      this.connection[j * groups + to] += a;
    }
  }

  maxLoad(): number {
    let max = 0;
    for (const value of this.load) max = Math.max(max, value);
    return max;
  }
}

function loadCap(problem: PartitionProblem): number {
  let total = 0;
  let largest = 0;
  for (let i = 0; i < problem.n; i++) {
    total += problem.loads[i];
    largest = Math.max(largest, problem.loads[i]);
  }
  if (total <= 0 || !Number.isFinite(problem.loadTolerance)) return Infinity;
  return Math.max(largest, (total / problem.groups) * (1 + problem.loadTolerance));
}

/** Moves or swaps items out of the heaviest group until every group is under the cap. */
function repairLoad(state: PartitionState, cap: number): number {
  const { problem } = state;
  const { n, groups, affinity, loads, minSize, maxSize } = problem;
  let steps = 0;
  for (let guard = 0; guard < 4 * n; guard++) {
    let heavy = 0;
    for (let c = 1; c < groups; c++) if (state.load[c] > state.load[heavy]) heavy = c;
    if (state.load[heavy] <= cap) break;

    let best: { item: number; other: number; to: number; peak: number; gain: number } | null = null;
    const consider = (item: number, other: number, to: number, peak: number, gain: number): void => {
      if (best === null || peak < best.peak - 1e-9 || (Math.abs(peak - best.peak) <= 1e-9 && gain > best.gain + 1e-9)) {
        best = { item, other, to, peak, gain };
      }
    };
    for (let i = 0; i < n; i++) {
      if (state.group[i] !== heavy) continue;
      for (let c = 0; c < groups; c++) {
        if (c === heavy) continue;
        if (state.size[heavy] - 1 >= minSize[heavy] && state.size[c] + 1 <= maxSize[c]) {
          const peak = Math.max(state.load[heavy] - loads[i], state.load[c] + loads[i]);
          consider(i, -1, c, peak, state.connection[i * groups + c] - state.connection[i * groups + heavy]);
        }
      }
      for (let j = 0; j < n; j++) {
        const c = state.group[j];
        if (c === heavy || loads[j] >= loads[i]) continue;
        const peak = Math.max(state.load[heavy] - loads[i] + loads[j], state.load[c] + loads[i] - loads[j]);
        const gain =
          state.connection[i * groups + c] -
          state.connection[i * groups + heavy] +
          state.connection[j * groups + heavy] -
          state.connection[j * groups + c] -
          2 * affinity[i * n + j];
        consider(i, j, c, peak, gain);
      }
    }
    const chosen = best as { item: number; other: number; to: number; peak: number; gain: number } | null;
    if (chosen === null || chosen.peak >= state.load[heavy] - 1e-9) break;
    state.move(chosen.item, chosen.to);
    if (chosen.other >= 0) state.move(chosen.other, heavy);
    steps++;
  }
  return steps;
}

/** Applies improving moves and swaps until none raises the kept affinity within the bounds. */
function refineAffinity(state: PartitionState, cap: number): number {
  const { problem } = state;
  const { n, groups, affinity, loads, minSize, maxSize } = problem;
  let steps = 0;
  // Each pass costs O(n^2); large item sets get fewer passes, which keeps most of the gain.
  const passes = n > 128 ? 4 : 10;
  for (let pass = 0; pass < passes; pass++) {
    let improved = false;
    const ceiling = Math.max(cap, state.maxLoad());
    for (let i = 0; i < n; i++) {
      const from = state.group[i];
      let bestGain = 1e-9;
      let bestTo = -1;
      let bestSwap = -1;
      if (state.size[from] - 1 >= minSize[from]) {
        for (let c = 0; c < groups; c++) {
          if (c === from || state.size[c] + 1 > maxSize[c] || state.load[c] + loads[i] > ceiling) continue;
          const gain = state.connection[i * groups + c] - state.connection[i * groups + from];
          if (gain > bestGain) {
            bestGain = gain;
            bestTo = c;
            bestSwap = -1;
          }
        }
      }
      for (let j = i + 1; j < n; j++) {
        const to = state.group[j];
        if (to === from) continue;
        if (state.load[from] - loads[i] + loads[j] > ceiling || state.load[to] + loads[i] - loads[j] > ceiling) continue;
        const gain =
          state.connection[i * groups + to] -
          state.connection[i * groups + from] +
          state.connection[j * groups + from] -
          state.connection[j * groups + to] -
          2 * affinity[i * n + j];
        if (gain > bestGain) {
          bestGain = gain;
          bestTo = to;
          bestSwap = j;
        }
      }
      if (bestTo === -1) continue;
      state.move(i, bestTo);
      if (bestSwap >= 0) state.move(bestSwap, from);
      steps++;
      improved = true;
    }
    if (!improved) break;
  }
  return steps;
}

/** Renumbers groups by their lowest item so equal partitions get equal labels. */
function canonicalLabels(group: Int32Array, groups: number): Int32Array {
  const rename = new Int32Array(groups).fill(-1);
  let next = 0;
  for (let i = 0; i < group.length; i++) if (rename[group[i]] === -1) rename[group[i]] = next++;
  for (let c = 0; c < groups; c++) if (rename[c] === -1) rename[c] = next++;
  return group.map((c) => rename[c]);
}

/** Partitions items into groups within the size bounds, keeping affinity inside groups. */
export function partition(problem: PartitionProblem): PartitionResult {
  const { n, groups, affinity, minSize, maxSize } = problem;
  if (groups === 1 || n === 0) {
    const group = new Int32Array(n);
    return { group, keptAffinity: keptAffinity(affinity, n, group), refinementSteps: 0 };
  }

  let initial: Int32Array;
  if (n <= 2 * groups && problem.embedding === undefined) {
    // With two items or fewer per group an embedding carries no cluster structure: start from a
    // load-balanced deal and let refinement pair the items by affinity.
    initial = serpentineDeal(problem);
  } else {
    const k = problem.embedding?.dimensions ?? Math.min(groups, n);
    const rows = problem.embedding?.rows ?? spectralEmbedding(affinity, n, k);
    const centres = problem.centres ?? kMeansCentres(rows, n, k, groups);
    initial = boundedAssignment(rows, n, k, centres, minSize, maxSize);
  }

  const state = new PartitionState(problem, initial);
  const cap = loadCap(problem);
  let steps = repairLoad(state, cap);
  if (problem.refine) steps += refineAffinity(state, cap);

  // Renumbering is only safe when every group has the same bounds.
  const uniform = minSize.every((value) => value === minSize[0]) && maxSize.every((value) => value === maxSize[0]);
  const group = uniform ? canonicalLabels(state.group, groups) : state.group;
  return { group, keptAffinity: keptAffinity(affinity, n, group), refinementSteps: steps };
}

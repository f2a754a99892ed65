import { HARDWARE_PRESETS, MODEL_SHAPES, type CostModel } from '../evaluator/cost-model.js';
import { StatsAccumulator } from '../stats/activation.js';
import type { ActivationStats } from '../stats/types.js';
import { createRandom } from '../random.js';

/** The cost model the planner tests score with. */
export const TEST_COST: CostModel = {
  model: MODEL_SHAPES['deepseek-v2-lite'],
  hardware: HARDWARE_PRESETS['a100-25gbe'],
};

/** Statistics of explicit tokens: tokens[t][l] is the top-k list of token t at layer l. */
export function statsOf(experts: number, topK: number, tokens: readonly (readonly (readonly number[])[])[], sampleCapacity = 4096): ActivationStats {
  const layers = tokens[0]?.length ?? 1;
  const accumulator = new StatsAccumulator({ experts, layers, topK }, { sampleCapacity, seed: 1 });
  for (const token of tokens) accumulator.add(token.flat());
  return accumulator.snapshot(null);
}

/**
 * Random tokens whose top-k sets come mostly from planted clusters of `clusterSize` experts, with
 * expert popularity skewed by `skew` (0 is uniform).
 */
export function clusteredTokens(options: {
  experts: number;
  layers: number;
  topK: number;
  tokens: number;
  clusterSize: number;
  skew: number;
  seed: number;
  /** Probability that a selection comes from the token's cluster (default 0.8). */
  cohesion?: number;
}): number[][][] {
  const cohesion = options.cohesion ?? 0.8;
  const random = createRandom(options.seed);
  const { experts, topK, clusterSize } = options;
  const weights = Array.from({ length: experts }, (_, e) => 1 / (1 + e) ** options.skew);
  const pick = (pool: readonly number[], taken: Set<number>): number => {
    let total = 0;
    for (const e of pool) if (!taken.has(e)) total += weights[e];
    let target = random() * total;
    for (const e of pool) {
      if (taken.has(e)) continue;
      target -= weights[e];
      if (target <= 0) return e;
    }
    return pool.find((e) => !taken.has(e)) as number;
  };
  const all = Array.from({ length: experts }, (_, e) => e);
  return Array.from({ length: options.tokens }, () =>
    Array.from({ length: options.layers }, () => {
      const cluster = Math.floor(random() * (experts / clusterSize));
      const pool = all.filter((e) => Math.floor(e / clusterSize) === cluster);
      const taken = new Set<number>();
      while (taken.size < topK) taken.add(random() < cohesion && taken.size < pool.length ? pick(pool, taken) : pick(all, taken));
      return [...taken];
    }),
  );
}

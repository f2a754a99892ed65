/**
 * Synthetic routing traces shaped like DeepSeek-V3: 58 MoE layers, 256 routed experts, top-8.
 * A token picks 60% of its experts from one of 32 affinity clusters of 8 experts and the rest from
 * the whole layer with Zipf-like popularity (exponent 0.6), so loads are skewed and co-activation
 * is sparse and clustered. Cluster membership is relabelled per layer (fixed by `layoutSeed`), so
 * clusters do not line up with contiguous ids; `seed` draws the tokens. Deterministic.
 */
import { createRandom } from '../src/random.js';
import type { Trace } from '../src/trace/types.js';

export interface SyntheticShape {
  readonly layers: number;
  readonly experts: number;
  readonly topK: number;
  readonly clusterSize: number;
}

export const DEEPSEEK_V3_SHAPE: SyntheticShape = { layers: 58, experts: 256, topK: 8, clusterSize: 8 };

export function syntheticTrace(shape: SyntheticShape, tokens: number, seed: number, layoutSeed = 1): Trace {
  const { layers, experts, topK, clusterSize } = shape;
  const layout = createRandom(layoutSeed);
  const labels = Array.from({ length: layers }, () => {
    const order = Array.from({ length: experts }, (_, e) => e);
    for (let i = experts - 1; i > 0; i--) {
      const j = Math.floor(layout() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  });
  const popularity = Array.from({ length: experts }, (_, e) => 1 / (1 + e) ** 0.6);
  const popularityTotal = popularity.reduce((sum, value) => sum + value, 0);
  const clusters = experts / clusterSize;

  const random = createRandom(seed);
  const selections = new Uint16Array(tokens * layers * topK);
  const chosen = new Set<number>();
  for (let t = 0; t < tokens; t++) {
    for (let l = 0; l < layers; l++) {
      chosen.clear();
      const cluster = Math.floor(random() * clusters);
      while (chosen.size < topK) {
        let raw: number;
        if (random() < 0.6) {
          raw = cluster * clusterSize + Math.floor(random() * clusterSize);
        } else {
          let target = random() * popularityTotal;
          raw = 0;
          while (raw < experts - 1 && target > popularity[raw]) target -= popularity[raw++];
        }
        chosen.add(labels[l][raw]);
      }
      let k = (t * layers + l) * topK;
      for (const expert of chosen) selections[k++] = expert;
    }
  }
  return {
    meta: { name: `synthetic-deepseek-v3-seed${seed}`, model: 'synthetic DeepSeek-V3 shape', layers, experts, topK },
    tokens,
    selections,
    requestIds: ['synthetic/0'],
    requestOfToken: new Uint32Array(tokens),
    positions: Uint32Array.from({ length: tokens }, (_, t) => t),
  };
}

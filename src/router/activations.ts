/** Checks of activation reports before anything is counted, so a bad report adds nothing. */
import { StatsFormatError } from '../errors.js';
import type { StatsShape } from '../stats/activation.js';
import type { ActivationStats } from '../stats/types.js';

/**
 * Flattens tokens given as tokens[t][layer] = top-k expert ids into one array in trace order
 * ((t * layers + layer) * topK + rank). Throws StatsFormatError naming the JSON path when a token
 * has the wrong number of layers or ids, an id is not an expert, or a top-k list repeats an id.
 */
export function flattenTokens(tokens: readonly (readonly (readonly number[])[])[], shape: StatsShape): Uint16Array {
  const { experts, layers, topK } = shape;
  const selections = new Uint16Array(tokens.length * layers * topK);
  tokens.forEach((token, t) => {
    if (token.length !== layers) {
      throw new StatsFormatError(`tokens[${t}] must list ${layers} top-k lists, one per layer, got ${token.length}`);
    }
    token.forEach((list, layer) => {
      if (list.length !== topK) {
        throw new StatsFormatError(`tokens[${t}][${layer}] must list ${topK} expert ids (top-k), got ${list.length}`);
      }
      const base = (t * layers + layer) * topK;
      list.forEach((expert, rank) => {
        if (!Number.isInteger(expert) || expert < 0 || expert >= experts) {
          throw new StatsFormatError(
            `tokens[${t}][${layer}][${rank}] must be an expert id in [0, ${experts}), got ${expert}`,
          );
        }
        for (let earlier = 0; earlier < rank; earlier += 1) {
          if (selections[base + earlier] === expert) {
            throw new StatsFormatError(`tokens[${t}][${layer}] lists expert ${expert} twice; top-k ids must be distinct`);
          }
        }
        selections[base + rank] = expert;
      });
    });
  });
  return selections;
}

/** Throws StatsFormatError unless pre-aggregated statistics match the routing table's experts and layers. */
export function checkStatsAgainstTable(stats: ActivationStats, table: { experts: number; layers: number }): void {
  if (stats.experts !== table.experts || stats.layers !== table.layers) {
    throw new StatsFormatError(
      `counts has ${stats.layers} layers x ${stats.experts} experts, but the active routing table has ` +
        `${table.layers} layers x ${table.experts} experts`,
    );
  }
}

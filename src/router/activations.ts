/** Checks of activation reports before anything is counted, so a bad report adds nothing. */
import { StatsFormatError } from '../errors.js';
import type { StatsShape } from '../stats/activation.js';
import { parseStats } from '../stats/json.js';
import type { ActivationStats } from '../stats/types.js';
import { NoActiveTableError } from './errors.js';

type TokenLists = readonly (readonly number[])[];

/** A validated report: flattened raw tokens, pre-aggregated counts, or both, of one shape. */
export interface CheckedReport {
  readonly tokens: { readonly shape: StatsShape; readonly selections: Uint16Array; readonly count: number } | null;
  readonly counts: ActivationStats | null;
}

/**
 * Validates both parts of an activation report before any of it is counted. Raw tokens take experts
 * and layers from the active table and top-k from the report's first list, and need an active table
 * (NoActiveTableError otherwise). Counts are checked against the table when one is active. Throws
 * StatsFormatError naming the path, also when the two parts disagree on top-k.
 */
export function checkActivationReport(
  report: { readonly tokens?: readonly TokenLists[]; readonly counts?: unknown },
  table: { readonly experts: number; readonly layers: number } | null,
): CheckedReport {
  let tokens: CheckedReport['tokens'] = null;
  if (report.tokens !== undefined && report.tokens.length > 0) {
    if (table === null) {
      throw new NoActiveTableError('no routing table is active yet, so raw tokens have no layer and expert counts; push a table first');
    }
    const { experts, layers } = table;
    const shape = { experts, layers, topK: report.tokens[0]?.[0]?.length ?? 0 };
    tokens = { shape, selections: flattenTokens(report.tokens, shape), count: report.tokens.length };
  }
  let counts: ActivationStats | null = null;
  if (report.counts !== undefined) {
    counts = parseStats(report.counts);
    if (table !== null) checkStatsAgainstTable(counts, table);
  }
  if (tokens !== null && counts !== null && tokens.shape.topK !== counts.topK) {
    throw new StatsFormatError(
      `tokens list top-${tokens.shape.topK} selections, but counts has topK ${counts.topK}; send one top-k per report`,
    );
  }
  return { tokens, counts };
}

/**
 * Flattens tokens given as tokens[t][layer] = top-k expert ids into one array in trace order
 * ((t * layers + layer) * topK + rank). Throws StatsFormatError naming the JSON path when a token
 * has the wrong number of layers or ids, an id is not an expert, or a top-k list repeats an id.
 * `shape.topK` is the length of tokens[0][0] when called from checkActivationReport.
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
        throw new StatsFormatError(
          `tokens[${t}][${layer}] must list ${topK} expert ids, as many as tokens[0][0] (top-k), got ${list.length}`,
        );
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

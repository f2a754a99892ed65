/**
 * Hierarchical dispatch of one layer: the token-expert pairs of a batch grouped by the node of the
 * GPU that serves them, with each token listed once per destination node however many of its
 * experts that node serves. Pure: O(tokens x topK).
 */
import type { ComputePair } from './wire.js';

/** Tokens (batch indices, ascending) and pairs that one destination node receives. */
export interface NodeDispatch {
  readonly node: number;
  readonly tokens: readonly number[];
  /** Pairs with `token` as a row index into `tokens`. */
  readonly pairs: readonly ComputePair[];
}

/**
 * Groups pairs by destination node. experts[t][k] is token t's k-th selected expert and gpus[t][k]
 * the GPU chosen for it. The result is sorted by node.
 */
export function groupByNode(
  experts: readonly (readonly number[])[],
  gpus: readonly (readonly number[])[],
  gpusPerNode: number,
): NodeDispatch[] {
  const byNode = new Map<number, { tokens: number[]; pairs: ComputePair[] }>();
  experts.forEach((tokenExperts, token) => {
    const tokenGpus = gpus[token] ?? [];
    tokenExperts.forEach((expert, rank) => {
      const gpu = tokenGpus[rank];
      if (gpu === undefined) {
        throw new RangeError(`token ${token} has no GPU for rank ${rank}`);
      }
      const node = Math.floor(gpu / gpusPerNode);
      let group = byNode.get(node);
      if (group === undefined) {
        group = { tokens: [], pairs: [] };
        byNode.set(node, group);
      }
      if (group.tokens[group.tokens.length - 1] !== token) group.tokens.push(token);
      group.pairs.push({ token: group.tokens.length - 1, gpu, expert });
    });
  });
  return [...byNode.entries()]
    .sort(([a], [b]) => a - b)
    .map(([node, group]) => ({ node, tokens: group.tokens, pairs: group.pairs }));
}

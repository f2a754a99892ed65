/**
 * Route decisions for one request: the GPU that serves every token-expert pair, chosen by the
 * generation's locality chooser, and the count of decisions per locality tier. A request is checked
 * whole before any choice is made, so a rejected request leaves the round-robin state unchanged.
 */
import { nodeOfGpu } from '../topology.js';
import type { TierCounts } from './activation-window.js';
import { InvalidBodyError, RequestRangeError, TooManyTokensError } from './errors.js';
import type { InstalledTable } from './table-store.js';

/** Tokens of one source GPU at one layer; tokens[t] lists the token's selected expert ids. */
export interface RouteRequest {
  readonly sourceGpu: number;
  readonly layer: number;
  readonly tokens: readonly (readonly number[])[];
}

/**
 * Throws RequestRangeError, naming the JSON path, when a GPU, layer or expert is outside the table
 * or a token lists more ids than the table has experts, and InvalidBodyError when a token lists one
 * expert twice (a top-k selection is a set).
 */
export function checkRouteRequest(installed: InstalledTable, request: RouteRequest, path: string): void {
  const { compiled } = installed;
  if (request.sourceGpu >= compiled.gpus) {
    throw new RequestRangeError(
      `${path}sourceGpu must be a GPU of generation ${compiled.generation}, an integer in [0, ${compiled.gpus}), got ${request.sourceGpu}`,
    );
  }
  if (request.layer >= compiled.layers) {
    throw new RequestRangeError(
      `${path}layer must be a layer of generation ${compiled.generation}, an integer in [0, ${compiled.layers}), got ${request.layer}`,
    );
  }
  // seenBy[e] is 1 + the index of the last token that listed expert e, so one array serves every token.
  const seenBy = new Uint32Array(compiled.experts);
  request.tokens.forEach((experts, token) => {
    if (experts.length > compiled.experts) {
      throw new RequestRangeError(
        `${path}tokens[${token}] lists ${experts.length} expert ids, more than the ${compiled.experts} experts of generation ${compiled.generation}`,
      );
    }
    experts.forEach((expert, rank) => {
      if (expert >= compiled.experts) {
        throw new RequestRangeError(
          `${path}tokens[${token}][${rank}] must be an expert id in [0, ${compiled.experts}), got ${expert}`,
        );
      }
      if (seenBy[expert] === token + 1) {
        throw new InvalidBodyError(`${path}tokens[${token}] lists expert ${expert} twice; a token's expert ids must be distinct`);
      }
      seenBy[expert] = token + 1;
    });
  });
}

/** Throws TooManyTokensError when a request carries more token lists than `maxTokens`. */
export function checkTokenCount(tokens: number, maxTokens: number): void {
  if (tokens > maxTokens) {
    throw new TooManyTokensError(
      `the request carries ${tokens} token lists, more than the ${maxTokens} this router accepts in one request ` +
        '(--route-max-tokens); split it into several requests',
    );
  }
}

/** Chooses the serving GPU of every pair and adds each decision to `tiers`. */
export function routeTokens(installed: InstalledTable, request: RouteRequest, tiers: TierCounts): number[][] {
  const { chooser, compiled } = installed;
  const { sourceGpu, layer } = request;
  const sourceNode = nodeOfGpu(compiled.topology, sourceGpu);
  return request.tokens.map((experts) =>
    experts.map((expert) => {
      const gpu = chooser.choose(sourceGpu, layer, expert);
      if (gpu === sourceGpu) {
        tiers.gpu += 1;
      } else if (nodeOfGpu(compiled.topology, gpu) === sourceNode) {
        tiers.node += 1;
      } else {
        tiers.remote += 1;
      }
      return gpu;
    }),
  );
}

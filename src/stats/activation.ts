/**
 * Activation statistics: per-layer expert loads, co-activation counts and a reservoir sample of
 * whole tokens, built from a trace or online from routed tokens.
 *
 * Counting costs O(layers x topK^2) per token. The sample is Vitter's algorithm R ("Random Sampling
 * with a Reservoir", ACM TOMS 11(1), 1985): after n tokens every token is in the sample with
 * probability capacity / n.
 */
import { StatsFormatError } from '../errors.js';
import { createRandom, randomInt, type RandomSource } from '../random.js';
import type { Trace } from '../trace/types.js';
import type { ActivationStats, LayerActivation, TokenSample } from './types.js';

export const DEFAULT_SAMPLE_CAPACITY = 4096;
export const DEFAULT_SAMPLE_SEED = 0;

/** Model dimensions that statistics are counted over. */
export interface StatsShape {
  readonly experts: number;
  readonly layers: number;
  readonly topK: number;
}

export type StatsWindow = ActivationStats['window'];

export interface StatsAccumulatorOptions {
  /** Maximum tokens in the reservoir sample (0 disables sampling). */
  readonly sampleCapacity?: number;
  /** Seed of the reservoir's random source. */
  readonly seed?: number;
  /** Window reported by snapshot() unless it is given one. */
  readonly window?: StatsWindow;
}

/**
 * Counts tokens one at a time, so routers can aggregate a window online. A token is given as its
 * layers x topK selected expert ids, layer-major as in a Trace.
 */
export class StatsAccumulator {
  readonly shape: StatsShape;
  readonly sampleCapacity: number;
  private readonly stride: number;
  private readonly window: StatsWindow;
  private readonly random: RandomSource;
  private readonly loads: Float64Array[];
  private readonly coactivation: Float64Array[];
  private tokenCount = 0;
  private sampleSelections = new Uint16Array(0);
  private sampleTokens = 0;

  constructor(shape: StatsShape, options: StatsAccumulatorOptions = {}) {
    validateShape(shape);
    const sampleCapacity = options.sampleCapacity ?? DEFAULT_SAMPLE_CAPACITY;
    if (!Number.isSafeInteger(sampleCapacity) || sampleCapacity < 0) {
      throw new RangeError(`sample capacity must be a non-negative integer, got ${sampleCapacity}`);
    }

    this.shape = { experts: shape.experts, layers: shape.layers, topK: shape.topK };
    this.sampleCapacity = sampleCapacity;
    this.stride = shape.layers * shape.topK;
    this.window = options.window ?? null;
    this.random = createRandom(options.seed ?? DEFAULT_SAMPLE_SEED);
    this.loads = Array.from({ length: shape.layers }, () => new Float64Array(shape.experts));
    this.coactivation = Array.from({ length: shape.layers }, () => new Float64Array(shape.experts * shape.experts));
  }

  /** Tokens added so far. */
  get tokens(): number {
    return this.tokenCount;
  }

  /**
   * Adds one token whose selections start at `offset` in `selections`. Throws StatsFormatError,
   * and counts nothing, when an id is not an expert of the shape or a top-k list repeats an id.
   */
  add(selections: ArrayLike<number>, offset = 0): void {
    this.validateToken(selections, offset);

    const { experts, layers, topK } = this.shape;
    for (let layer = 0; layer < layers; layer += 1) {
      const loads = this.loads[layer]!;
      const pairs = this.coactivation[layer]!;
      const base = offset + layer * topK;
      for (let rank = 0; rank < topK; rank += 1) {
        const expert = selections[base + rank]!;
        loads[expert]! += 1;
        for (let earlier = 0; earlier < rank; earlier += 1) {
          const other = selections[base + earlier]!;
          pairs[expert * experts + other]! += 1;
          pairs[other * experts + expert]! += 1;
        }
      }
    }
    this.tokenCount += 1;
    this.offerToSample(selections, offset);
  }

  /** Returns a copy of the counts so far. Later adds do not change it. */
  snapshot(window: StatsWindow = this.window): ActivationStats {
    const perLayer: LayerActivation[] = this.loads.map((loads, layer) => ({
      tokens: this.tokenCount,
      loads: loads.slice(),
      coactivation: this.coactivation[layer]!.slice(),
    }));
    const sample: TokenSample = {
      capacity: this.sampleCapacity,
      seen: this.tokenCount,
      tokens: this.sampleTokens,
      selections: this.sampleSelections.slice(0, this.sampleTokens * this.stride),
    };
    return { ...this.shape, tokens: this.tokenCount, window: copyWindow(window), perLayer, sample };
  }

  /** Algorithm R: fill the reservoir, then replace a uniform slot with probability capacity / seen. */
  private offerToSample(selections: ArrayLike<number>, offset: number): void {
    let slot: number;
    if (this.sampleTokens < this.sampleCapacity) {
      slot = this.sampleTokens;
      this.sampleTokens += 1;
      this.reserveSample(this.sampleTokens);
    } else {
      slot = randomInt(this.random, this.tokenCount);
      if (slot >= this.sampleCapacity) {
        return;
      }
    }

    const target = slot * this.stride;
    for (let i = 0; i < this.stride; i += 1) {
      this.sampleSelections[target + i] = selections[offset + i]!;
    }
  }

  /** Grows the sample buffer by doubling, up to the capacity. */
  private reserveSample(tokens: number): void {
    if (tokens * this.stride <= this.sampleSelections.length) {
      return;
    }
    const heldTokens = this.sampleSelections.length / this.stride;
    const grownTokens = Math.min(this.sampleCapacity, Math.max(64, 2 * heldTokens));
    const grown = new Uint16Array(grownTokens * this.stride);
    grown.set(this.sampleSelections);
    this.sampleSelections = grown;
  }

  private validateToken(selections: ArrayLike<number>, offset: number): void {
    const { experts, layers, topK } = this.shape;
    if (!Number.isSafeInteger(offset) || offset < 0 || selections.length < offset + this.stride) {
      throw new StatsFormatError(
        `a token needs ${this.stride} expert ids (${layers} layers x top-${topK}) from offset ${offset}, ` +
          `but the selections hold ${selections.length}`,
      );
    }

    for (let layer = 0; layer < layers; layer += 1) {
      const base = offset + layer * topK;
      for (let rank = 0; rank < topK; rank += 1) {
        const expert = selections[base + rank]!;
        if (!Number.isInteger(expert) || expert < 0 || expert >= experts) {
          throw new StatsFormatError(
            `token layer ${layer} rank ${rank}: expert id must be an integer in [0, ${experts}), got ${expert}`,
          );
        }
        for (let earlier = 0; earlier < rank; earlier += 1) {
          if (selections[base + earlier] === expert) {
            throw new StatsFormatError(
              `token layer ${layer}: duplicate expert id ${expert}, but the ids of a top-k list must be distinct`,
            );
          }
        }
      }
    }
  }
}

/** Statistics of no tokens, with an empty sample of the given capacity. */
export function emptyStats(shape: StatsShape, sampleCapacity = DEFAULT_SAMPLE_CAPACITY): ActivationStats {
  return new StatsAccumulator(shape, { sampleCapacity }).snapshot();
}

/** Counts every token of a trace. The sample is seeded, so the result is deterministic. */
export function statsFromTrace(trace: Trace, options: StatsAccumulatorOptions = {}): ActivationStats {
  const accumulator = new StatsAccumulator(trace.meta, options);
  const stride = trace.meta.layers * trace.meta.topK;
  for (let token = 0; token < trace.tokens; token += 1) {
    accumulator.add(trace.selections, token * stride);
  }
  return accumulator.snapshot();
}

/**
 * Merges two windows: counts add, the window becomes the span of both, and the sample stays a
 * uniform sample of a.seen + b.seen tokens. Throws StatsFormatError when the shapes differ.
 *
 * The merged sample has capacity min(a, b), or the other side's capacity when one side has seen no
 * token. It is drawn without replacement from the union: each draw comes from a side with
 * probability proportional to that side's tokens not yet drawn (seen minus drawn), then from a
 * uniform unused token of that side's sample. Because each side's sample is itself uniform, every
 * subset of the union is equally likely.
 */
export function mergeStats(a: ActivationStats, b: ActivationStats, options: { seed: number }): ActivationStats {
  for (const field of ['experts', 'layers', 'topK'] as const) {
    if (a[field] !== b[field]) {
      throw new StatsFormatError(
        `cannot merge activation statistics with different ${field}: ${a[field]} and ${b[field]}`,
      );
    }
  }
  if (a.perLayer.length !== a.layers || b.perLayer.length !== b.layers) {
    throw new StatsFormatError(
      `cannot merge activation statistics: perLayer has ${a.perLayer.length} and ${b.perLayer.length} ` +
        `entries, expected ${a.layers}`,
    );
  }

  const perLayer = a.perLayer.map((left, layer) => {
    const right = b.perLayer[layer]!;
    return {
      tokens: left.tokens + right.tokens,
      loads: addArrays(left.loads, right.loads, `perLayer[${layer}].loads`),
      coactivation: addArrays(left.coactivation, right.coactivation, `perLayer[${layer}].coactivation`),
    };
  });

  return {
    experts: a.experts,
    layers: a.layers,
    topK: a.topK,
    tokens: a.tokens + b.tokens,
    window: spanOf(a.window, b.window),
    perLayer,
    sample: mergeSamples(a.sample, b.sample, a.layers * a.topK, createRandom(options.seed)),
  };
}

/**
 * Multiplies token counts, loads, co-activation and the sample's seen count by `factor`, for
 * exponential smoothing: merging scaled old statistics with a new window weights the old tokens,
 * and the old sample, by `factor`. The sampled tokens themselves are kept.
 */
export function scaleStats(stats: ActivationStats, factor: number): ActivationStats {
  if (!Number.isFinite(factor) || factor < 0) {
    throw new RangeError(`scale factor must be a finite number >= 0, got ${factor}`);
  }

  return {
    experts: stats.experts,
    layers: stats.layers,
    topK: stats.topK,
    tokens: stats.tokens * factor,
    window: copyWindow(stats.window),
    perLayer: stats.perLayer.map((layer) => ({
      tokens: layer.tokens * factor,
      loads: layer.loads.map((value) => value * factor),
      coactivation: layer.coactivation.map((value) => value * factor),
    })),
    sample: { ...stats.sample, seen: stats.sample.seen * factor, selections: stats.sample.selections.slice() },
  };
}

function mergeSamples(a: TokenSample, b: TokenSample, stride: number, random: RandomSource): TokenSample {
  const capacity = mergedCapacity(a, b);
  const target = Math.min(capacity, a.tokens + b.tokens);
  const selections = new Uint16Array(target * stride);
  const left = sampleSide(a);
  const right = sampleSide(b);

  for (let drawn = 0; drawn < target; drawn += 1) {
    let side: SampleSide;
    if (left.unusedCount === 0) {
      side = right;
    } else if (right.unusedCount === 0) {
      side = left;
    } else {
      // With scaled (fractional) seen counts the weights can run out before the samples do. Then
      // the sizes of the unused samples decide.
      const totalWeight = left.undrawnWeight + right.undrawnWeight;
      const leftShare =
        totalWeight > 0
          ? left.undrawnWeight / totalWeight
          : left.unusedCount / (left.unusedCount + right.unusedCount);
      side = random() < leftShare ? left : right;
    }

    // Partial Fisher-Yates: move a uniform unused index to the end of the unused prefix.
    const pick = randomInt(random, side.unusedCount);
    const token = side.unused[pick]!;
    side.unused[pick] = side.unused[side.unusedCount - 1]!;
    side.unusedCount -= 1;
    side.undrawnWeight = Math.max(0, side.undrawnWeight - 1);

    selections.set(side.sample.selections.subarray(token * stride, (token + 1) * stride), drawn * stride);
  }

  return { capacity, seen: a.seen + b.seen, tokens: target, selections };
}

/** Capacity of a merged sample: the smaller one, ignoring a side that has seen no token. */
function mergedCapacity(a: TokenSample, b: TokenSample): number {
  if (a.seen === 0) {
    return b.capacity;
  }
  if (b.seen === 0) {
    return a.capacity;
  }
  return Math.min(a.capacity, b.capacity);
}

/** One input of a sample merge: its tokens not yet drawn and its population weight left. */
interface SampleSide {
  readonly sample: TokenSample;
  /** The first unusedCount entries are the sample indices not drawn yet. */
  readonly unused: Uint32Array;
  unusedCount: number;
  undrawnWeight: number;
}

function sampleSide(sample: TokenSample): SampleSide {
  const unused = new Uint32Array(sample.tokens);
  for (let i = 0; i < unused.length; i += 1) {
    unused[i] = i;
  }
  return { sample, unused, unusedCount: sample.tokens, undrawnWeight: sample.seen };
}

function addArrays(left: Float64Array, right: Float64Array, field: string): Float64Array {
  if (left.length !== right.length) {
    throw new StatsFormatError(`cannot merge ${field}: lengths ${left.length} and ${right.length} differ`);
  }
  const sum = new Float64Array(left.length);
  for (let i = 0; i < sum.length; i += 1) {
    sum[i] = left[i]! + right[i]!;
  }
  return sum;
}

function spanOf(a: StatsWindow, b: StatsWindow): StatsWindow {
  if (a === null) {
    return copyWindow(b);
  }
  if (b === null) {
    return copyWindow(a);
  }
  return { startMs: Math.min(a.startMs, b.startMs), endMs: Math.max(a.endMs, b.endMs) };
}

function copyWindow(window: StatsWindow): StatsWindow {
  return window === null ? null : { startMs: window.startMs, endMs: window.endMs };
}

function validateShape(shape: StatsShape): void {
  for (const field of ['experts', 'layers', 'topK'] as const) {
    if (!Number.isSafeInteger(shape[field]) || shape[field] < 1) {
      throw new RangeError(`statistics shape: ${field} must be a positive integer, got ${shape[field]}`);
    }
  }
  if (shape.topK > shape.experts) {
    throw new RangeError(`statistics shape: topK ${shape.topK} exceeds the ${shape.experts} experts`);
  }
  if (shape.experts > 0x1_0000) {
    throw new RangeError(`statistics shape: at most 65536 experts fit the Uint16 sample, got ${shape.experts}`);
  }
}

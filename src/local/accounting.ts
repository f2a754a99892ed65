/**
 * Measurements of a local run from the engines' batch answers: per generation (tokens, cross-node
 * bytes, local hits, balance, latency) and per second of the run for the timeline.
 */
import type { BatchOutcome } from '../driver/drive.js';
import { percentile } from '../driver/drive.js';
import { loadBalance } from '../evaluator/evaluate.js';

/** Summary of the batches served by one generation. */
export interface GenerationSummary {
  readonly generation: number;
  readonly strategy: string;
  readonly tokens: number;
  readonly batches: number;
  /** Hidden-state bytes that crossed nodes, dispatch and combine. */
  readonly crossNodeBytes: number;
  readonly crossNodeBytesPerToken: number;
  /** Share of token-expert pairs served on the token's home GPU. */
  readonly localHitRatio: number;
  /** Max over mean GPU load within a layer, averaged over layers. */
  readonly balancedness: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** One second of the run. */
export interface TimelinePoint {
  readonly second: number;
  readonly generation: number;
  readonly tokens: number;
  readonly crossNodeBytesPerToken: number;
  readonly localHitRatio: number;
  readonly balancedness: number;
  readonly p99Ms: number;
}

interface Bucket {
  generation: number;
  tokens: number;
  batches: number;
  crossNodeCopies: number;
  homePairs: number;
  pairs: number;
  gpuPairs: number[][];
  latencies: number[];
}

function emptyBucket(generation: number): Bucket {
  return { generation, tokens: 0, batches: 0, crossNodeCopies: 0, homePairs: 0, pairs: 0, gpuPairs: [], latencies: [] };
}

function addTo(bucket: Bucket, outcome: BatchOutcome): void {
  const result = outcome.result;
  if (result === null) return;
  const pairs = result.pairs;
  mergeInto(bucket, {
    generation: bucket.generation,
    tokens: outcome.tokens,
    batches: 1,
    crossNodeCopies: result.crossNodeCopies ?? 0,
    homePairs: pairs?.gpu ?? 0,
    pairs: pairs ? pairs.gpu + pairs.node + pairs.remote : 0,
    gpuPairs: (result.gpuPairs ?? []).map((row) => [...row]),
    latencies: [outcome.latencyMs],
  });
}

/** Adds the counts of `source` to `target`; GPU loads add up per layer and GPU. */
function mergeInto(target: Bucket, source: Bucket): void {
  target.tokens += source.tokens;
  target.batches += source.batches;
  target.crossNodeCopies += source.crossNodeCopies;
  target.homePairs += source.homePairs;
  target.pairs += source.pairs;
  target.latencies.push(...source.latencies);
  source.gpuPairs.forEach((row, layer) => {
    const sums = target.gpuPairs[layer] ?? (target.gpuPairs[layer] = new Array<number>(row.length).fill(0));
    row.forEach((count, gpu) => (sums[gpu] = (sums[gpu] ?? 0) + count));
  });
}

function balanceOf(bucket: Bucket): number {
  if (bucket.gpuPairs.length === 0) return Number.NaN;
  return bucket.gpuPairs.reduce((sum, loads) => sum + loadBalance(loads).balancedness, 0) / bucket.gpuPairs.length;
}

export class RunAccounting {
  private readonly generations = new Map<number, Bucket>();
  private readonly seconds = new Map<number, Bucket>();
  readonly requests = { sent: 0, completed: 0, failed: 0 };
  private readonly strategies = new Map<number, string>();

  constructor(
    private readonly hiddenBytes: number,
    private readonly startMs: number,
  ) {}

  /** Records which strategy produced a generation. */
  nameGeneration(generation: number, strategy: string): void {
    this.strategies.set(generation, strategy);
  }

  add(outcome: BatchOutcome): void {
    this.requests.sent += 1;
    if (outcome.result === null) {
      this.requests.failed += 1;
      return;
    }
    this.requests.completed += 1;
    const generation = outcome.result.generation;
    if (!this.generations.has(generation)) this.generations.set(generation, emptyBucket(generation));
    addTo(this.generations.get(generation) as Bucket, outcome);
    const second = Math.max(0, Math.floor((outcome.sentAtMs + outcome.latencyMs - this.startMs) / 1000));
    if (!this.seconds.has(second)) this.seconds.set(second, emptyBucket(generation));
    const bucket = this.seconds.get(second) as Bucket;
    bucket.generation = Math.max(bucket.generation, generation);
    addTo(bucket, outcome);
  }

  private bytesPerToken(bucket: Bucket): number {
    return bucket.tokens > 0 ? (bucket.crossNodeCopies * this.hiddenBytes * 2) / bucket.tokens : 0;
  }

  summaries(): GenerationSummary[] {
    return [...this.generations.values()]
      .sort((a, b) => a.generation - b.generation)
      .map((bucket) => {
        const sorted = [...bucket.latencies].sort((a, b) => a - b);
        return {
          generation: bucket.generation,
          strategy: this.strategies.get(bucket.generation) ?? 'unknown',
          tokens: bucket.tokens,
          batches: bucket.batches,
          crossNodeBytes: bucket.crossNodeCopies * this.hiddenBytes * 2,
          crossNodeBytesPerToken: this.bytesPerToken(bucket),
          localHitRatio: bucket.pairs > 0 ? bucket.homePairs / bucket.pairs : 0,
          balancedness: balanceOf(bucket),
          p50Ms: percentile(sorted, 0.5),
          p99Ms: percentile(sorted, 0.99),
        };
      });
  }

  timeline(): TimelinePoint[] {
    return [...this.seconds.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([second, bucket]) => ({
        second,
        generation: bucket.generation,
        tokens: bucket.tokens,
        crossNodeBytesPerToken: this.bytesPerToken(bucket),
        localHitRatio: bucket.pairs > 0 ? bucket.homePairs / bucket.pairs : 0,
        balancedness: balanceOf(bucket),
        p99Ms: percentile([...bucket.latencies].sort((a, b) => a - b), 0.99),
      }));
  }

  /** Measurements of the last `seconds` seconds before `nowMs`, for live progress. */
  recent(nowMs: number, seconds: number): TimelinePoint | null {
    const last = Math.floor((nowMs - this.startMs) / 1000);
    const merged = emptyBucket(0);
    for (let second = last - seconds; second <= last; second++) {
      const bucket = this.seconds.get(second);
      if (!bucket) continue;
      merged.generation = Math.max(merged.generation, bucket.generation);
      mergeInto(merged, bucket);
    }
    if (merged.batches === 0) return null;
    return {
      second: last,
      generation: merged.generation,
      tokens: merged.tokens,
      crossNodeBytesPerToken: this.bytesPerToken(merged),
      localHitRatio: merged.pairs > 0 ? merged.homePairs / merged.pairs : 0,
      balancedness: balanceOf(merged),
      p99Ms: percentile([...merged.latencies].sort((a, b) => a - b), 0.99),
    };
  }
}

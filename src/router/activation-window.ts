/**
 * Activation statistics a router aggregates from its engines' reports, in time buckets that
 * scrapers read with a cursor.
 *
 * Reports go into the open bucket. The open bucket is sealed when it is `bucketMs` old (checked on
 * every report and read) and whenever a scraper reads with `since`. A read with `since` = T returns
 * the merge of every sealed bucket that ends after T, and its window ends at the moment of the
 * read. A control loop that passes the previous answer's `window.endMs` as the next `since`
 * therefore gets every report exactly once, with no gap and no overlap, and several scrapers with
 * their own cursors do not disturb each other. A read without `since` seals nothing and returns
 * every retained bucket plus the open one, for people looking.
 *
 * Only the newest `retainedBuckets` sealed buckets are kept. When a read asks for time that has
 * been dropped, its answer says `complete: false` and its window starts later than `since`.
 *
 * The statistics shape is set by the first report: experts and layers from the routing table,
 * top-k from the report. A report of another shape starts a new window with its own shape: every
 * retained bucket is dropped, dispatch counts included, as if retention had dropped them, so reads
 * that reach back before that moment say `complete: false`. Rejecting such reports instead would let
 * one malformed report fix the shape until a restart.
 */
import { emptyStats, mergeStats, StatsAccumulator, type StatsShape } from '../stats/activation.js';
import type { ActivationStats } from '../stats/types.js';

/** Token-expert pairs dispatched per locality tier: own GPU, another GPU of the own node, another node. */
export interface TierCounts {
  gpu: number;
  node: number;
  remote: number;
}

export type Tier = keyof TierCounts;

export interface ActivationWindowOptions {
  readonly now: () => number;
  readonly bucketMs: number;
  readonly retainedBuckets: number;
  readonly sampleCapacity: number;
  /** Called when a report of another shape starts a new window, before the report is counted. */
  readonly onShapeChange?: (previous: StatsShape, next: StatsShape) => void;
}

/** Result of a read. `stats` is null until a report has fixed the shape. */
export interface WindowReading {
  readonly stats: ActivationStats | null;
  readonly window: { readonly startMs: number; readonly endMs: number };
  readonly dispatch: Readonly<TierCounts>;
  /** False when buckets inside the asked-for time were dropped by retention. */
  readonly complete: boolean;
  readonly buckets: number;
}

interface SealedBucket {
  readonly startMs: number;
  readonly endMs: number;
  readonly stats: ActivationStats | null;
  readonly tiers: Readonly<TierCounts>;
}

interface OpenBucket {
  startMs: number;
  accumulator: StatsAccumulator | null;
  reported: ActivationStats | null;
  tiers: TierCounts;
}

function zeroTiers(): TierCounts {
  return { gpu: 0, node: 0, remote: 0 };
}

function addTiers(target: TierCounts, source: Readonly<TierCounts>): void {
  target.gpu += source.gpu;
  target.node += source.node;
  target.remote += source.remote;
}

export class ActivationWindow {
  private fixedShape: StatsShape | null = null;
  private readonly sealed: SealedBucket[] = [];
  private open: OpenBucket;
  /** End of the newest bucket dropped by retention, or the creation time when none was dropped. */
  private retainedFromMs: number;
  private droppedAny = false;
  private mergeSeed = 0;

  constructor(private readonly options: ActivationWindowOptions) {
    const now = options.now();
    this.retainedFromMs = now;
    this.open = { startMs: now, accumulator: null, reported: null, tiers: zeroTiers() };
  }

  /** The statistics shape, or null before the first report. */
  get shape(): StatsShape | null {
    return this.fixedShape;
  }

  /**
   * Adds tokens given as one flat array of `count` tokens, layers x topK ids each, in trace order.
   * The caller validates the ids first, so that a bad report adds nothing.
   */
  addTokens(shape: StatsShape, selections: ArrayLike<number>, count: number): void {
    this.sealIfOld();
    this.requireShape(shape);
    const open = this.open;
    if (open.accumulator === null) {
      open.accumulator = new StatsAccumulator(shape, { sampleCapacity: this.options.sampleCapacity, seed: this.nextSeed() });
    }
    const stride = shape.layers * shape.topK;
    for (let token = 0; token < count; token += 1) {
      open.accumulator.add(selections, token * stride);
    }
  }

  /** Adds pre-aggregated statistics; their own window is replaced by the bucket's. */
  addStats(stats: ActivationStats): void {
    this.sealIfOld();
    this.requireShape(stats);
    const open = this.open;
    open.reported = open.reported === null ? stats : mergeStats(open.reported, stats, { seed: this.nextSeed() });
  }

  /** Adds dispatch counts per locality tier. */
  addTiers(tiers: Readonly<TierCounts>): void {
    this.sealIfOld();
    addTiers(this.open.tiers, tiers);
  }

  /** Reads the window as described in the module header. */
  read(since?: number): WindowReading {
    const now = this.options.now();
    this.sealIfOld();
    let buckets: SealedBucket[];
    let startMs: number;
    let complete: boolean;
    if (since === undefined) {
      buckets = [...this.sealed, this.snapshotOpen(now)];
      startMs = this.retainedFromMs;
      complete = !this.droppedAny;
    } else {
      this.seal(now);
      buckets = this.sealed.filter((bucket) => bucket.endMs > since);
      const first = buckets[0];
      startMs = first === undefined ? Math.max(since, this.retainedFromMs) : first.startMs;
      complete = since >= this.retainedFromMs || !this.droppedAny;
    }

    const dispatch = zeroTiers();
    let stats: ActivationStats | null = null;
    for (const bucket of buckets) {
      addTiers(dispatch, bucket.tiers);
      if (bucket.stats !== null) {
        stats = stats === null ? bucket.stats : mergeStats(stats, bucket.stats, { seed: this.nextSeed() });
      }
    }
    const window = { startMs, endMs: now };
    if (stats === null && this.fixedShape !== null) {
      stats = emptyStats(this.fixedShape, this.options.sampleCapacity);
    }
    return {
      stats: stats === null ? null : { ...stats, window },
      window,
      dispatch,
      complete,
      buckets: buckets.filter((bucket) => bucket.stats !== null || bucket.tiers.gpu + bucket.tiers.node + bucket.tiers.remote > 0).length,
    };
  }

  /** Sets the shape on the first report and starts a new window when a report has another one. */
  private requireShape(shape: StatsShape): void {
    const next = { experts: shape.experts, layers: shape.layers, topK: shape.topK };
    const previous = this.fixedShape;
    this.fixedShape = next;
    if (previous === null || (previous.experts === next.experts && previous.layers === next.layers && previous.topK === next.topK)) {
      return;
    }
    const now = this.options.now();
    this.sealed.length = 0;
    this.open = { startMs: now, accumulator: null, reported: null, tiers: zeroTiers() };
    this.retainedFromMs = now;
    this.droppedAny = true;
    this.options.onShapeChange?.(previous, next);
  }

  private sealIfOld(): void {
    const now = this.options.now();
    if (now - this.open.startMs >= this.options.bucketMs) {
      this.seal(now);
    }
  }

  /** Seals the open bucket at `now` unless it is empty, and opens the next one. */
  private seal(now: number): void {
    const open = this.open;
    const tiers = open.tiers;
    const empty = open.accumulator === null && open.reported === null && tiers.gpu + tiers.node + tiers.remote === 0;
    if (!empty) {
      this.sealed.push(this.snapshotOpen(now));
      while (this.sealed.length > this.options.retainedBuckets) {
        const dropped = this.sealed.shift();
        if (dropped !== undefined) {
          this.retainedFromMs = dropped.endMs;
          this.droppedAny = true;
        }
      }
    }
    this.open = { startMs: now, accumulator: null, reported: null, tiers: zeroTiers() };
  }

  private snapshotOpen(now: number): SealedBucket {
    const open = this.open;
    const window = { startMs: open.startMs, endMs: now };
    let stats: ActivationStats | null = open.accumulator === null ? null : open.accumulator.snapshot(window);
    if (open.reported !== null) {
      stats = stats === null ? open.reported : mergeStats(stats, open.reported, { seed: this.nextSeed() });
    }
    return {
      startMs: open.startMs,
      endMs: now,
      stats: stats === null ? null : { ...stats, window },
      tiers: { ...open.tiers },
    };
  }

  private nextSeed(): number {
    this.mergeSeed += 1;
    return this.mergeSeed;
  }
}

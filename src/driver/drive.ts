/**
 * Load driver: replays a slice of a trace through a set of engines at a fixed token rate.
 *
 * The slice is cut into batches of batchTokens tokens. Batch b is due b x batchTokens / rate
 * seconds after the start. It goes to engine b mod engines, so the assignment does not depend on timing.
 * At most `concurrency` batches are in flight. A batch that finds no free slot waits, so a slow
 * cluster lowers the achieved rate instead of piling up requests. No batch starts after
 * maxDurationMs; every request times out after requestTimeoutMs, so a run ends within
 * maxDurationMs + requestTimeoutMs.
 */
import type { Trace } from '../trace/types.js';

export interface DriveOptions {
  readonly engines: readonly string[];
  readonly trace: Trace;
  readonly offset: number;
  readonly tokens: number;
  readonly rateTokensPerSecond: number;
  readonly batchTokens: number;
  readonly concurrency: number;
  readonly maxDurationMs: number;
  readonly requestTimeoutMs: number;
  /** Ends the run early: no new batches, in-flight ones are aborted. */
  readonly signal?: AbortSignal;
  /** Prefix of request ids; batch b is `${runId}-${b}`. */
  readonly runId?: string;
  /** Replay the trace from its start again when the slice runs past its end. */
  readonly wrap?: boolean;
  /** Called once per finished batch, completed or failed. */
  readonly onBatch?: (outcome: BatchOutcome) => void;
}

/** The engine's response to one batch, as far as the driver reads it. */
export interface BatchResult {
  readonly generation: number;
  readonly tokens: number;
  readonly pairs?: { readonly gpu: number; readonly node: number; readonly remote: number };
  readonly crossNodeCopies?: number;
  readonly gpuPairs?: readonly (readonly number[])[];
}

export interface BatchOutcome {
  readonly batch: number;
  readonly engine: string;
  readonly tokens: number;
  /** Milliseconds of the driver's clock when the batch was sent, and its latency. */
  readonly sentAtMs: number;
  readonly latencyMs: number;
  readonly result: BatchResult | null;
  readonly error: string | null;
}

export interface DriveDeps {
  /** Monotonic milliseconds; performance.now when omitted. */
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly fetch?: typeof fetch;
}

export interface LatencySummary {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export interface EngineCounts {
  readonly url: string;
  sent: number;
  completed: number;
  failed: number;
}

/** Why planned batches were not sent: the run hit maxDurationMs or its signal aborted it. */
export type NotSentReason = 'max duration reached' | 'aborted';

export interface DriveReport {
  readonly batches: { readonly planned: number; readonly sent: number; readonly completed: number; readonly failed: number; readonly notSent: number };
  /** Null when every planned batch was sent. */
  readonly notSentReason: NotSentReason | null;
  readonly tokens: { readonly sent: number; readonly completed: number };
  /**
   * The replayed slice of the trace. `planned` is below `requested` when the trace ends before
   * offset + requested tokens and the run does not wrap.
   */
  readonly slice: { readonly offset: number; readonly requested: number; readonly planned: number; readonly traceTokens: number };
  readonly elapsedMs: number;
  /** Completed tokens per second of elapsed time. */
  readonly throughputTokensPerSecond: number;
  /** Batch latency in milliseconds over completed batches, or null when none completed. */
  readonly latencyMs: LatencySummary | null;
  /** Hidden states the engines sent to other nodes, as their responses report them. */
  readonly crossNodeCopies: number;
  readonly perEngine: readonly EngineCounts[];
  /** Distinct failure messages with their counts, at most 10. */
  readonly errors: readonly { readonly message: string; readonly count: number }[];
}

/** Nearest-rank percentile of ascending values; q in (0, 1]. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

/** Latency summary of unsorted samples, or null when there are none. */
export function summarizeLatencies(samples: readonly number[]): LatencySummary | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((total, value) => total + value, 0);
  return {
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] as number,
    mean: sum / sorted.length,
  };
}

/** Builds the request body of trace tokens [start, end), wrapping indices past the trace's end. */
export function batchBody(trace: Trace, start: number, end: number, requestId: string) {
  const { layers, topK } = trace.meta;
  const tokens = [];
  for (let index = start; index < end; index++) {
    const t = index % trace.tokens;
    const lists: number[][] = [];
    for (let layer = 0; layer < layers; layer++) {
      const base = (t * layers + layer) * topK;
      lists.push(Array.from(trace.selections.subarray(base, base + topK)));
    }
    tokens.push({ layers: lists });
  }
  return { requestId, tokens };
}

/**
 * Describes a request that got no response, with the URL and the cause: "POST URL failed: connect
 * ECONNREFUSED 127.0.0.1:9" in place of fetch's bare "fetch failed", or a timeout with its length.
 */
export function describeRequestFailure(url: string, error: unknown, timeoutMs: number): string {
  if (error instanceof Error && error.name === 'TimeoutError') {
    return `POST ${url} timed out after ${timeoutMs} ms`;
  }
  if (error instanceof Error && error.name === 'AbortError') {
    return `POST ${url} was aborted`;
  }
  const cause = error instanceof Error ? error.cause : undefined;
  return `POST ${url} failed: ${describeCause(cause instanceof Error ? cause : error)}`;
}

/** A connection error's message; an AggregateError (one error per address tried) has an empty one. */
function describeCause(error: unknown): string {
  if (error instanceof AggregateError && error.message === '') {
    return error.errors.map((inner: unknown) => (inner instanceof Error ? inner.message : String(inner))).join('; ');
  }
  return error instanceof Error ? error.message : String(error);
}

/** Runs the replay described in the module header and reports what happened. */
export async function drive(options: DriveOptions, deps: DriveDeps = {}): Promise<DriveReport> {
  const now = deps.now ?? (() => performance.now());
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const fetchImpl = deps.fetch ?? fetch;
  if (options.engines.length === 0) throw new RangeError('drive needs at least one engine URL');
  if (!options.wrap && options.offset >= options.trace.tokens) {
    throw new RangeError(
      `offset ${options.offset} is at or past the end of the trace (${options.trace.tokens} tokens); choose an offset below ${options.trace.tokens}`,
    );
  }

  const first = options.wrap ? options.offset : Math.min(options.offset, options.trace.tokens);
  const last = options.wrap ? options.offset + options.tokens : Math.min(options.trace.tokens, options.offset + options.tokens);
  const planned = Math.ceil((last - first) / options.batchTokens);
  const perEngine: EngineCounts[] = options.engines.map((url) => ({ url, sent: 0, completed: 0, failed: 0 }));
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  const runId = options.runId ?? `drive-${Date.now().toString(36)}`;
  let sentTokens = 0;
  let completedTokens = 0;
  let crossNodeCopies = 0;
  let sent = 0;
  let notSentReason: NotSentReason | null = null;

  const aborted = (): boolean => options.signal?.aborted === true;
  const started = now();
  for (let batch = 0; batch < planned; batch++) {
    if (aborted()) {
      notSentReason = 'aborted';
      break;
    }
    const due = started + (batch * options.batchTokens * 1000) / options.rateTokensPerSecond;
    if (due - started >= options.maxDurationMs) {
      notSentReason = 'max duration reached';
      break;
    }
    const wait = due - now();
    if (wait > 0) await sleep(wait);
    while (inFlight.size >= options.concurrency) await Promise.race(inFlight);
    if (aborted()) {
      notSentReason = 'aborted';
      break;
    }
    if (now() - started >= options.maxDurationMs) {
      notSentReason = 'max duration reached';
      break;
    }

    const start = first + batch * options.batchTokens;
    const end = Math.min(last, start + options.batchTokens);
    const engine = perEngine[batch % perEngine.length] as EngineCounts;
    const body = JSON.stringify(batchBody(options.trace, start, end, `${runId}-${batch}`));
    engine.sent += 1;
    sent += 1;
    sentTokens += end - start;

    const signal = options.signal === undefined
      ? AbortSignal.timeout(options.requestTimeoutMs)
      : AbortSignal.any([options.signal, AbortSignal.timeout(options.requestTimeoutMs)]);
    const sentAt = now();
    const index = batch;
    const request = (async () => {
      try {
        let response: Response;
        try {
          response = await fetchImpl(`${engine.url}/v1/generate`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
            signal,
          });
        } catch (error) {
          throw new Error(describeRequestFailure(`${engine.url}/v1/generate`, error, options.requestTimeoutMs), { cause: error });
        }
        const text = await response.text();
        if (response.status !== 200) {
          throw new Error(`${engine.url} responded with ${response.status}: ${text.slice(0, 200)}`);
        }
        const result = JSON.parse(text) as BatchResult;
        const latency = now() - sentAt;
        latencies.push(latency);
        engine.completed += 1;
        completedTokens += end - start;
        crossNodeCopies += result.crossNodeCopies ?? 0;
        options.onBatch?.({ batch: index, engine: engine.url, tokens: end - start, sentAtMs: sentAt, latencyMs: latency, result, error: null });
      } catch (error) {
        engine.failed += 1;
        const message = error instanceof Error ? error.message : String(error);
        errors.set(message, (errors.get(message) ?? 0) + 1);
        options.onBatch?.({ batch: index, engine: engine.url, tokens: end - start, sentAtMs: sentAt, latencyMs: now() - sentAt, result: null, error: message });
      }
    })();
    const tracked: Promise<void> = request.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }
  await Promise.all(inFlight);

  const elapsedMs = now() - started;
  const completed = perEngine.reduce((sum, engine) => sum + engine.completed, 0);
  const failed = perEngine.reduce((sum, engine) => sum + engine.failed, 0);
  return {
    batches: { planned, sent, completed, failed, notSent: planned - sent },
    notSentReason: planned > sent ? notSentReason : null,
    tokens: { sent: sentTokens, completed: completedTokens },
    slice: { offset: options.offset, requested: options.tokens, planned: last - first, traceTokens: options.trace.tokens },
    elapsedMs,
    throughputTokensPerSecond: elapsedMs > 0 ? (completedTokens * 1000) / elapsedMs : 0,
    latencyMs: summarizeLatencies(latencies),
    crossNodeCopies,
    perEngine,
    errors: [...errors.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([message, count]) => ({ message, count })),
  };
}

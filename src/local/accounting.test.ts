import { describe, expect, test } from 'vitest';
import type { BatchOutcome, BatchResult } from '../driver/drive.js';
import { RunAccounting } from './accounting.js';

const HIDDEN_BYTES = 4096;
const START_MS = 50_000;

/** Builds a completed batch: sent `sentAfterMs` after the run started, completed `latencyMs` later. */
function completed(result: Partial<BatchResult> & { generation: number; tokens: number }, sentAfterMs: number, latencyMs: number): BatchOutcome {
  return {
    batch: 0,
    engine: 'http://127.0.0.1:1',
    tokens: result.tokens,
    sentAtMs: START_MS + sentAfterMs,
    latencyMs,
    result,
    error: null,
  };
}

function failed(tokens: number, sentAfterMs: number, latencyMs: number): BatchOutcome {
  return {
    batch: 0,
    engine: 'http://127.0.0.1:1',
    tokens,
    sentAtMs: START_MS + sentAfterMs,
    latencyMs,
    result: null,
    error: 'responded with 502',
  };
}

describe('RunAccounting', () => {
  test('sums batches per generation', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    accounting.nameGeneration(1, 'contiguous');
    accounting.nameGeneration(2, 'grace');
    accounting.add(completed({ generation: 1, tokens: 64, crossNodeCopies: 100, pairs: { gpu: 30, node: 50, remote: 20 } }, 0, 10));
    accounting.add(completed({ generation: 1, tokens: 36, crossNodeCopies: 50, pairs: { gpu: 20, node: 20, remote: 10 } }, 100, 20));
    accounting.add(completed({ generation: 2, tokens: 64, crossNodeCopies: 16, pairs: { gpu: 60, node: 20, remote: 0 } }, 200, 30));

    const [first, second, ...rest] = accounting.summaries();

    expect(rest).toEqual([]);
    expect(first).toMatchObject({ generation: 1, strategy: 'contiguous', tokens: 100, batches: 2 });
    expect(first?.crossNodeBytes).toBe(150 * HIDDEN_BYTES * 2);
    expect(first?.crossNodeBytesPerToken).toBeCloseTo((150 * HIDDEN_BYTES * 2) / 100, 9);
    expect(first?.localHitRatio).toBeCloseTo(50 / 150, 12);
    expect(second).toMatchObject({ generation: 2, strategy: 'grace', tokens: 64, batches: 1 });
    expect(second?.crossNodeBytes).toBe(16 * HIDDEN_BYTES * 2);
    expect(second?.crossNodeBytesPerToken).toBe(2048);
    expect(second?.localHitRatio).toBe(0.75);
    expect(accounting.requests).toEqual({ sent: 3, completed: 3, failed: 0 });
  });

  test('unnamed generation has strategy unknown', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    accounting.add(completed({ generation: 4, tokens: 8 }, 0, 1));

    expect(accounting.summaries()[0]?.strategy).toBe('unknown');
  });

  test.each([
    { name: 'steady 2:1 split', batches: [[[2, 1]], [[4, 2]]], balancedness: 4 / 3 },
    { name: 'even split', batches: [[[5, 5]]], balancedness: 1 },
    { name: 'mean over layers', batches: [[[1, 1], [3, 1]]], balancedness: (1 + 1.5) / 2 },
    { name: 'batches summed before the ratio', batches: [[[2, 0]], [[0, 2]]], balancedness: 1 },
    { name: 'four GPUs', batches: [[[4, 0, 0, 0]]], balancedness: 4 },
  ] as const)('balancedness of $name is $balancedness', ({ batches, balancedness }) => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    for (const gpuPairs of batches) accounting.add(completed({ generation: 1, tokens: 1, gpuPairs }, 0, 1));

    expect(accounting.summaries()[0]?.balancedness).toBeCloseTo(balancedness, 12);
  });

  test('balancedness without gpuPairs is NaN', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    accounting.add(completed({ generation: 1, tokens: 1 }, 0, 1));

    expect(accounting.summaries()[0]?.balancedness).toBeNaN();
  });

  test('latency percentiles use nearest rank', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    // Latencies 100, 99, ..., 1 ms, added out of order.
    for (let latency = 100; latency >= 1; latency--) accounting.add(completed({ generation: 1, tokens: 1 }, 0, latency));

    const summary = accounting.summaries()[0];

    expect(summary?.p50Ms).toBe(50);
    expect(summary?.p99Ms).toBe(99);
  });

  test('failed batches are counted and excluded', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    accounting.add(completed({ generation: 1, tokens: 10, crossNodeCopies: 5, pairs: { gpu: 1, node: 1, remote: 0 } }, 0, 10));
    accounting.add(failed(64, 0, 5_000));
    accounting.add(failed(64, 1_500, 5_000));

    expect(accounting.requests).toEqual({ sent: 3, completed: 1, failed: 2 });
    const summaries = accounting.summaries();
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ tokens: 10, batches: 1, crossNodeBytes: 5 * HIDDEN_BYTES * 2, p99Ms: 10 });
    expect(accounting.timeline().map((point) => point.second)).toEqual([0]);
  });

  test('timeline buckets by completion second', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    // Sent in second 0, completed in second 1.
    accounting.add(completed({ generation: 1, tokens: 10, crossNodeCopies: 10 }, 500, 700));
    // Sent and completed in second 0.
    accounting.add(completed({ generation: 1, tokens: 20, crossNodeCopies: 0 }, 100, 100));
    // Generation 2 completes in second 1 too, so that second shows generation 2.
    accounting.add(completed({ generation: 2, tokens: 30, crossNodeCopies: 30 }, 900, 900));
    accounting.add(completed({ generation: 2, tokens: 5, crossNodeCopies: 5 }, 3_000, 10));

    const timeline = accounting.timeline();

    expect(timeline.map(({ second, generation, tokens }) => ({ second, generation, tokens }))).toEqual([
      { second: 0, generation: 1, tokens: 20 },
      { second: 1, generation: 2, tokens: 40 },
      { second: 3, generation: 2, tokens: 5 },
    ]);
    expect(timeline[1]?.crossNodeBytesPerToken).toBe((40 * HIDDEN_BYTES * 2) / 40);
    expect(timeline[1]?.p99Ms).toBe(900);
    expect(timeline[0]?.crossNodeBytesPerToken).toBe(0);
  });

  test('recent merges the last seconds', () => {
    const accounting = new RunAccounting(HIDDEN_BYTES, START_MS);
    accounting.add(completed({ generation: 1, tokens: 10, crossNodeCopies: 10 }, 0, 100));
    accounting.add(completed({ generation: 2, tokens: 30, crossNodeCopies: 0 }, 7_000, 100));
    accounting.add(completed({ generation: 2, tokens: 10, crossNodeCopies: 10 }, 9_000, 100));

    const recent = accounting.recent(START_MS + 9_500, 5);

    expect(recent).toMatchObject({ second: 9, generation: 2, tokens: 40 });
    expect(recent?.crossNodeBytesPerToken).toBe((10 * HIDDEN_BYTES * 2) / 40);
    expect(accounting.recent(START_MS + 60_000, 5)).toBeNull();
  });
});

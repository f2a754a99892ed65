import { describe, expect, test } from 'vitest';
import type { Trace } from '../trace/types.js';
import { createServer } from 'node:net';
import { batchBody, describeRequestFailure, drive, percentile, summarizeLatencies } from './drive.js';
import { formatReport } from './command.js';

function trace(tokens: number): Trace {
  const selections = new Uint16Array(tokens * 2);
  for (let t = 0; t < tokens; t++) {
    selections[2 * t] = t % 4;
    selections[2 * t + 1] = (t + 1) % 4;
  }
  return {
    meta: { name: 'test', model: 'test', layers: 1, experts: 4, topK: 2 },
    tokens,
    selections,
    requestIds: ['r'],
    requestOfToken: new Uint32Array(tokens),
    positions: new Uint32Array(tokens),
  };
}

interface Call {
  readonly url: string;
  readonly body: { requestId: string; tokens: { layers: number[][] }[] };
}

/** A fetch that records calls and responds to each batch with crossNodeCopies equal to its size. */
function recordingFetch(calls: Call[], fail: (url: string) => boolean = () => false): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    const body = JSON.parse(String(init?.body)) as Call['body'];
    calls.push({ url, body });
    if (fail(url)) return new Response('{"error":{"code":"X","message":"boom"}}', { status: 502 });
    return new Response(JSON.stringify({ crossNodeCopies: body.tokens.length }), { status: 200 });
  }) as typeof fetch;
}

const base = { offset: 2, tokens: 10, rateTokensPerSecond: 1e6, batchTokens: 4, concurrency: 2, maxDurationMs: 10_000, requestTimeoutMs: 1_000 };

describe('drive', () => {
  test('spreads batches over engines round-robin', async () => {
    const calls: Call[] = [];
    const report = await drive({ ...base, engines: ['http://a', 'http://b'], trace: trace(20), runId: 'run' }, { fetch: recordingFetch(calls) });

    expect(calls.map((call) => [call.url, call.body.requestId, call.body.tokens.length])).toEqual([
      ['http://a/v1/generate', 'run-0', 4],
      ['http://b/v1/generate', 'run-1', 4],
      ['http://a/v1/generate', 'run-2', 2],
    ]);
    expect(calls[0]!.body.tokens[0]).toEqual({ layers: [[2, 3]] });
    expect(report.batches).toEqual({ planned: 3, sent: 3, completed: 3, failed: 0, notSent: 0 });
    expect(report.tokens).toEqual({ sent: 10, completed: 10 });
    expect(report.crossNodeCopies).toBe(10);
    expect(report.perEngine).toEqual([
      { url: 'http://a', sent: 2, completed: 2, failed: 0 },
      { url: 'http://b', sent: 1, completed: 1, failed: 0 },
    ]);
  });

  test('counts failed batches and their messages', async () => {
    const calls: Call[] = [];
    const report = await drive(
      { ...base, engines: ['http://a', 'http://b'], trace: trace(20) },
      { fetch: recordingFetch(calls, (url) => url.startsWith('http://b')) },
    );

    expect(report.batches.failed).toBe(1);
    expect(report.batches.completed).toBe(2);
    expect(report.errors).toEqual([{ message: 'http://b responded with 502: {"error":{"code":"X","message":"boom"}}', count: 1 }]);
  });

  test('paces batches at the token rate and stops at the maximum duration', async () => {
    let clock = 0;
    const calls: Call[] = [];
    const report = await drive(
      { ...base, offset: 0, tokens: 40, rateTokensPerSecond: 4, batchTokens: 4, maxDurationMs: 2_500, engines: ['http://a'], trace: trace(40) },
      {
        now: () => clock,
        sleep: async (ms) => {
          clock += ms;
        },
        fetch: recordingFetch(calls),
      },
    );

    expect(report.batches.sent).toBe(3);
    expect(report.batches.notSent).toBe(7);
    expect(report.notSentReason).toBe('max duration reached');
    expect(report.elapsedMs).toBe(2_000);
    expect(formatReport(report)).toMatch(/batches not sent +7 \(max duration reached\)/);
  });

  test('reports batches not sent after an abort', async () => {
    const controller = new AbortController();
    controller.abort();
    const report = await drive({ ...base, engines: ['http://a'], trace: trace(20), signal: controller.signal }, { fetch: recordingFetch([]) });

    expect(report.batches).toEqual({ planned: 3, sent: 0, completed: 0, failed: 0, notSent: 3 });
    expect(report.notSentReason).toBe('aborted');
    expect(formatReport(report)).toMatch(/batches not sent +3 \(aborted\)/);
  });

  test('reports the slice that the trace cut short', async () => {
    const report = await drive({ ...base, offset: 16, tokens: 10, engines: ['http://a'], trace: trace(20) }, { fetch: recordingFetch([]) });

    expect(report.slice).toEqual({ offset: 16, requested: 10, planned: 4, traceTokens: 20 });
    expect(report.tokens).toEqual({ sent: 4, completed: 4 });
    expect(report.notSentReason).toBeNull();
  });

  test('rejects an offset at the end of the trace', async () => {
    await expect(drive({ ...base, offset: 20, engines: ['http://a'], trace: trace(20) }, { fetch: recordingFetch([]) })).rejects.toThrow(
      'offset 20 is at or past the end of the trace (20 tokens); choose an offset below 20',
    );
  });

  test('names the URL and the cause when an engine is unreachable', async () => {
    const port = await closedPort();
    const report = await drive({ ...base, tokens: 4, engines: [`http://127.0.0.1:${port}`], trace: trace(20) });

    expect(report.errors).toEqual([
      { message: `POST http://127.0.0.1:${port}/v1/generate failed: connect ECONNREFUSED 127.0.0.1:${port}`, count: 1 },
    ]);
  });

  test('names the timeout of a batch that got no response', async () => {
    const hangingFetch = ((_url: string, init?: RequestInit) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason as Error));
      })) as unknown as typeof fetch;
    const report = await drive({ ...base, tokens: 4, requestTimeoutMs: 30, engines: ['http://a'], trace: trace(20) }, { fetch: hangingFetch });

    expect(report.errors).toEqual([{ message: 'POST http://a/v1/generate timed out after 30 ms', count: 1 }]);
  });

  test('bounds the batches in flight', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const slowFetch = (async () => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight -= 1;
      return new Response('{}', { status: 200 });
    }) as unknown as typeof fetch;

    const report = await drive({ ...base, offset: 0, tokens: 40, batchTokens: 2, concurrency: 3, engines: ['http://a'], trace: trace(40) }, { fetch: slowFetch });

    expect(report.batches.completed).toBe(20);
    expect(maxInFlight).toBe(3);
  });
});

/** A loopback port that nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

describe('request failure messages', () => {
  test('joins the errors of every address tried', () => {
    const cause = new AggregateError([new Error('connect ECONNREFUSED ::1:9'), new Error('connect ECONNREFUSED 127.0.0.1:9')], '');
    const error = new TypeError('fetch failed', { cause });

    expect(describeRequestFailure('http://localhost:9/v1/generate', error, 1_000)).toBe(
      'POST http://localhost:9/v1/generate failed: connect ECONNREFUSED ::1:9; connect ECONNREFUSED 127.0.0.1:9',
    );
  });
});

describe('latency summary', () => {
  test('uses nearest-rank percentiles', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    const summary = summarizeLatencies(samples);

    expect(summary).toEqual({ p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(percentile([7], 0.99)).toBe(7);
    expect(summarizeLatencies([])).toBeNull();
  });

  test('batch bodies list every layer of every token', () => {
    expect(batchBody(trace(3), 1, 3, 'x')).toEqual({ requestId: 'x', tokens: [{ layers: [[1, 2]] }, { layers: [[2, 3]] }] });
  });
});

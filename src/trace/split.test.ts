import { beforeAll, describe, expect, test } from 'vitest';
import { UsageError } from '../errors.js';
import { defaultTracePath } from './default.js';
import { readTrace } from './read.js';
import { domainOf, parseSplit, splitTrace, subsetTrace, type SplitSpec } from './split.js';
import type { Trace } from './types.js';

/**
 * Builds a trace with one layer and top-1 whose only selected expert is the token's index, so the
 * selections of a part list exactly which tokens it holds.
 */
function traceOfRequests(requests: readonly string[]): Trace {
  const requestIds: string[] = [];
  const requestOfToken = new Uint32Array(requests.length);
  const positions = new Uint32Array(requests.length);
  const lengths = new Map<string, number>();
  requests.forEach((request, token) => {
    if (!requestIds.includes(request)) {
      requestIds.push(request);
    }
    requestOfToken[token] = requestIds.indexOf(request);
    positions[token] = lengths.get(request) ?? 0;
    lengths.set(request, (lengths.get(request) ?? 0) + 1);
  });
  return {
    meta: { name: 'toy', model: 'toy', layers: 1, experts: requests.length, topK: 1 },
    tokens: requests.length,
    selections: Uint16Array.from(requests, (_, token) => token),
    requestIds,
    requestOfToken,
    positions,
  };
}

/** Domains a: tokens 0, 1, 3, 6; b: 2, 4, 7; c: 5, 8, 9. */
const TOY = traceOfRequests(['a/0', 'a/0', 'b/0', 'a/1', 'b/0', 'c/0', 'a/1', 'b/1', 'c/0', 'c/0']);

function tokensOf(trace: Trace): number[] {
  return Array.from(trace.selections);
}

function usageErrorOf(action: () => unknown): UsageError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(UsageError);
  return thrown as UsageError;
}

describe('parseSplit', () => {
  test.each([
    ['0.5', { kind: 'fraction', fraction: 0.5 }],
    [' .25 ', { kind: 'fraction', fraction: 0.25 }],
    ['domain:0.5', { kind: 'domain-fraction', fraction: 0.5 }],
    ['domain:0.75', { kind: 'domain-fraction', fraction: 0.75 }],
    ['req:intent,law', { kind: 'domains', profileDomains: ['intent', 'law'] }],
    ['req: intent , law,intent', { kind: 'domains', profileDomains: ['intent', 'law'] }],
  ] as const)('parses %j', (text, expected) => {
    expect(parseSplit(text)).toEqual(expected);
  });

  test.each(['', '0', '1', '1.0', '1.5', '-0.5', 'abc', '0.5x', '1e-1', 'domain:', 'domain:1', 'domain:x', 'req:', 'req:a,,b'])(
    'rejects %j',
    (text) => {
      const error = usageErrorOf(() => parseSplit(text));

      expect(error.message).toContain(`--split "${text}"`);
      expect(error.message).toContain('accepted forms: a fraction such as 0.5');
      expect(error.message).toContain('req:intent,law');
    },
  );
});

describe('domainOf', () => {
  test.each([
    ['intent/0', 'intent'],
    ['law/12/3', 'law'],
    ['plain', 'plain'],
  ] as const)('%s is in domain %s', (request, domain) => {
    expect(domainOf(request)).toBe(domain);
  });
});

describe('splitTrace on a toy trace', () => {
  test.each([
    { text: '0.5', profile: [0, 1, 2, 3, 4], evaluation: [5, 6, 7, 8, 9] },
    { text: '0.3', profile: [0, 1, 2], evaluation: [3, 4, 5, 6, 7, 8, 9] },
    { text: '0.29', profile: [0, 1], evaluation: [2, 3, 4, 5, 6, 7, 8, 9] },
    { text: 'domain:0.5', profile: [0, 1, 2, 5], evaluation: [3, 4, 6, 7, 8, 9] },
    { text: 'domain:0.7', profile: [0, 1, 2, 4, 5, 8], evaluation: [3, 6, 7, 9] },
    { text: 'req:a,c', profile: [0, 1, 3, 5, 6, 8, 9], evaluation: [2, 4, 7] },
    { text: 'req:b', profile: [2, 4, 7], evaluation: [0, 1, 3, 5, 6, 8, 9] },
  ] as const)('$text puts the expected tokens in each part', ({ text, profile, evaluation }) => {
    const split = splitTrace(TOY, parseSplit(text));

    expect(tokensOf(split.profile)).toEqual(profile);
    expect(tokensOf(split.evaluation)).toEqual(evaluation);
    expect(split.profile.tokens).toBe(profile.length);
    expect(split.evaluation.tokens).toBe(evaluation.length);
    expect(split.description).toContain(`${profile.length} profile tokens, ${evaluation.length} evaluation tokens`);
  });

  test.each([
    ['0.29', 29],
    ['0.57', 57],
    ['0.58', 58],
  ] as const)('%s of 100 tokens takes %d despite binary rounding', (text, expected) => {
    const trace = traceOfRequests(Array.from({ length: 100 }, () => 'x/0'));

    expect(splitTrace(trace, parseSplit(text)).profile.tokens).toBe(expected);
  });

  test('renumbers requests and keeps positions', () => {
    const split = splitTrace(TOY, parseSplit('req:b'));

    expect(split.profile.requestIds).toEqual(['b/0', 'b/1']);
    expect(Array.from(split.profile.requestOfToken)).toEqual([0, 0, 1]);
    expect(Array.from(split.profile.positions)).toEqual([0, 1, 0]);
    expect(split.evaluation.requestIds).toEqual(['a/0', 'a/1', 'c/0']);
    expect(Array.from(split.evaluation.requestOfToken)).toEqual([0, 0, 1, 2, 1, 2, 2]);
    expect(Array.from(split.evaluation.positions)).toEqual([0, 1, 0, 0, 1, 1, 2]);
    expect(split.profile.meta).toBe(TOY.meta);
  });

  test('describes the split', () => {
    expect(splitTrace(TOY, parseSplit('domain:0.5')).description).toBe(
      "first 50% of every domain's tokens in file order: 4 profile tokens, 6 evaluation tokens",
    );
    expect(splitTrace(TOY, parseSplit('req:a,c')).description).toBe(
      'profile on domains a, c; evaluation on b: 7 profile tokens, 3 evaluation tokens',
    );
  });

  test('rejects an unknown domain and lists the known ones', () => {
    const error = usageErrorOf(() => splitTrace(TOY, parseSplit('req:a,zz')));

    expect(error.message).toBe('--split names unknown domain "zz"; the trace has domains a, b, c');
  });

  test.each([
    { spec: { kind: 'fraction', fraction: 0.05 }, part: 'profile' },
    { spec: { kind: 'domain-fraction', fraction: 0.2 }, part: 'profile' },
    { spec: { kind: 'domains', profileDomains: ['a', 'b', 'c'] }, part: 'evaluation' },
  ] as const satisfies readonly { spec: SplitSpec; part: string }[])(
    'rejects $spec.kind leaving the $part empty',
    ({ spec, part }) => {
      const error = usageErrorOf(() => splitTrace(TOY, spec));

      expect(error.message).toContain(`leaves the ${part} part empty for a trace of 10 tokens`);
    },
  );
});

describe('subsetTrace', () => {
  test('keeps the given order', () => {
    const subset = subsetTrace(TOY, Uint32Array.from([9, 0, 5]));

    expect(tokensOf(subset)).toEqual([9, 0, 5]);
    expect(subset.requestIds).toEqual(['c/0', 'a/0']);
    expect(Array.from(subset.requestOfToken)).toEqual([0, 1, 0]);
    expect(Array.from(subset.positions)).toEqual([2, 0, 0]);
  });

  test.each([-1, 10, 1.5])('rejects token index %d', (index) => {
    expect(() => subsetTrace(TOY, [0, index])).toThrow(RangeError);
  });
});

describe('splitTrace on the shipped trace', () => {
  let trace: Trace;

  beforeAll(async () => {
    trace = await readTrace(defaultTracePath());
  });

  function countByDomain(part: Trace): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const request of part.requestOfToken) {
      const domain = domainOf(part.requestIds[request]!);
      counts[domain] = (counts[domain] ?? 0) + 1;
    }
    return counts;
  }

  test('domain:0.5 puts the first half of every domain in the profile', () => {
    const split = splitTrace(trace, parseSplit('domain:0.5'));

    expect(countByDomain(split.profile)).toEqual({ intent: 4111, law: 4163, summary: 4239, translation: 4125 });
    expect(countByDomain(split.evaluation)).toEqual({ intent: 4111, law: 4164, summary: 4240, translation: 4126 });
    expect(Array.from(split.profile.selections.subarray(0, 6))).toEqual([8, 26, 56, 57, 60, 11]);
  });

  test('req:intent,law profiles on those two domains', () => {
    const split = splitTrace(trace, parseSplit('req:intent,law'));

    expect(split.profile.tokens).toBe(16_549);
    expect(split.evaluation.tokens).toBe(33_279 - 16_549);
    expect(countByDomain(split.evaluation)).toEqual({ summary: 8479, translation: 8251 });
  });

  test('0.5 cuts the file in the middle', () => {
    const split = splitTrace(trace, parseSplit('0.5'));
    const stride = 26 * 6;

    expect(split.profile.tokens).toBe(16_639);
    expect(split.evaluation.tokens).toBe(16_640);
    expect(Array.from(split.evaluation.selections.subarray(0, stride))).toEqual(
      Array.from(trace.selections.subarray(16_639 * stride, 16_640 * stride)),
    );
  });
});

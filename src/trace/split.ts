/**
 * Splitting a trace into the part a plan is fitted on (profile) and the part it is evaluated on,
 * so results are never reported on the tokens the plan was fitted to.
 */
import { UsageError } from '../errors.js';
import type { Trace, TraceSplit } from './types.js';

/** Parsed `--split` flag: the rule that divides a trace into profile and evaluation parts. */
export type SplitSpec =
  /** The first `fraction` of all tokens in file order. */
  | { readonly kind: 'fraction'; readonly fraction: number }
  /** The first `fraction` of every domain's tokens in file order. */
  | { readonly kind: 'domain-fraction'; readonly fraction: number }
  /** Every token of the listed domains, with the other domains evaluated. */
  | { readonly kind: 'domains'; readonly profileDomains: readonly string[] };

const ACCEPTED_FORMS =
  'accepted forms: a fraction such as 0.5 (first half of the tokens), domain:0.5 (first half of ' +
  "every domain's tokens) or req:intent,law (profile on those domains, evaluate on the rest)";

const FRACTION_PATTERN = /^(?:\d+\.?\d*|\.\d+)$/;

/** Parses the `--split` flag. Throws UsageError naming the flag, the value and the accepted forms. */
export function parseSplit(text: string): SplitSpec {
  const trimmed = text.trim();

  if (trimmed.startsWith('domain:')) {
    return { kind: 'domain-fraction', fraction: parseFraction(text, trimmed.slice('domain:'.length)) };
  }

  if (trimmed.startsWith('req:')) {
    const domains = trimmed
      .slice('req:'.length)
      .split(',')
      .map((domain) => domain.trim());
    if (domains.some((domain) => domain === '')) {
      throw new UsageError(`--split "${text}" has an empty domain name; ${ACCEPTED_FORMS}`);
    }
    return { kind: 'domains', profileDomains: [...new Set(domains)] };
  }

  return { kind: 'fraction', fraction: parseFraction(text, trimmed) };
}

function parseFraction(flagValue: string, text: string): number {
  const fraction = FRACTION_PATTERN.test(text) ? Number(text) : Number.NaN;
  if (!(fraction > 0 && fraction < 1)) {
    throw new UsageError(
      `--split "${flagValue}" is invalid: the fraction must be a decimal number between 0 and 1 ` +
        `(exclusive); ${ACCEPTED_FORMS}`,
    );
  }
  return fraction;
}

/** Domain of a request id: the part before the first "/", or the whole id when it has none. */
export function domainOf(requestId: string): string {
  const slash = requestId.indexOf('/');
  return slash < 0 ? requestId : requestId.slice(0, slash);
}

/**
 * Splits a trace. Both parts keep file order and the trace's meta. Throws UsageError for an
 * unknown domain and for a split that leaves a part empty.
 */
export function splitTrace(trace: Trace, spec: SplitSpec): TraceSplit {
  const domainOfRequest = trace.requestIds.map(domainOf);
  const inProfile = new Uint8Array(trace.tokens);
  let description: string;

  switch (spec.kind) {
    case 'fraction': {
      const cut = takenCount(trace.tokens, spec.fraction);
      inProfile.fill(1, 0, cut);
      description = `first ${formatPercent(spec.fraction)} of the tokens in file order`;
      break;
    }
    case 'domain-fraction': {
      const totals = new Map<string, number>();
      for (let token = 0; token < trace.tokens; token += 1) {
        const domain = domainOfRequest[trace.requestOfToken[token]!]!;
        totals.set(domain, (totals.get(domain) ?? 0) + 1);
      }
      const remaining = new Map<string, number>();
      for (const [domain, total] of totals) {
        remaining.set(domain, takenCount(total, spec.fraction));
      }
      for (let token = 0; token < trace.tokens; token += 1) {
        const domain = domainOfRequest[trace.requestOfToken[token]!]!;
        const quota = remaining.get(domain) ?? 0;
        if (quota > 0) {
          inProfile[token] = 1;
          remaining.set(domain, quota - 1);
        }
      }
      description = `first ${formatPercent(spec.fraction)} of every domain's tokens in file order`;
      break;
    }
    case 'domains': {
      const known = [...new Set(domainOfRequest)];
      const unknown = spec.profileDomains.filter((domain) => !known.includes(domain));
      if (unknown.length > 0) {
        throw new UsageError(
          `--split names unknown domain ${unknown.map((domain) => `"${domain}"`).join(', ')}; ` +
            `the trace has domains ${known.join(', ')}`,
        );
      }
      const profileDomains = new Set(spec.profileDomains);
      for (let token = 0; token < trace.tokens; token += 1) {
        if (profileDomains.has(domainOfRequest[trace.requestOfToken[token]!]!)) {
          inProfile[token] = 1;
        }
      }
      const evaluated = known.filter((domain) => !profileDomains.has(domain));
      description = `profile on domains ${spec.profileDomains.join(', ')}; evaluation on ${evaluated.join(', ')}`;
      break;
    }
  }

  const profileIndices: number[] = [];
  const evaluationIndices: number[] = [];
  for (let token = 0; token < trace.tokens; token += 1) {
    (inProfile[token] === 1 ? profileIndices : evaluationIndices).push(token);
  }
  if (profileIndices.length === 0 || evaluationIndices.length === 0) {
    const emptyPart = profileIndices.length === 0 ? 'profile' : 'evaluation';
    throw new UsageError(
      `--split (${description}) leaves the ${emptyPart} part empty for a trace of ${trace.tokens} tokens; ` +
        'choose a split that puts tokens in both parts',
    );
  }

  return {
    profile: subsetTrace(trace, profileIndices),
    evaluation: subsetTrace(trace, evaluationIndices),
    description:
      `${description}: ${profileIndices.length} profile tokens, ` +
      `${evaluationIndices.length} evaluation tokens`,
  };
}

/**
 * Returns a trace of the given tokens in the given order, with the same meta. Request ids are
 * renumbered in first-seen order of the subset, and positions are kept. Throws RangeError for an
 * index that is not a token of the trace.
 */
export function subsetTrace(trace: Trace, tokenIndices: Uint32Array | readonly number[]): Trace {
  const stride = trace.meta.layers * trace.meta.topK;
  const count = tokenIndices.length;
  const selections = new Uint16Array(count * stride);
  const requestOfToken = new Uint32Array(count);
  const positions = new Uint32Array(count);
  const requestIds: string[] = [];
  const newRequestOf = new Map<number, number>();

  for (let i = 0; i < count; i += 1) {
    const token = tokenIndices[i]!;
    if (!Number.isInteger(token) || token < 0 || token >= trace.tokens) {
      throw new RangeError(`token index ${token} is outside the trace's ${trace.tokens} tokens`);
    }

    selections.set(trace.selections.subarray(token * stride, (token + 1) * stride), i * stride);
    positions[i] = trace.positions[token]!;

    const oldRequest = trace.requestOfToken[token]!;
    let newRequest = newRequestOf.get(oldRequest);
    if (newRequest === undefined) {
      newRequest = requestIds.length;
      requestIds.push(trace.requestIds[oldRequest]!);
      newRequestOf.set(oldRequest, newRequest);
    }
    requestOfToken[i] = newRequest;
  }

  return { meta: trace.meta, tokens: count, selections, requestIds, requestOfToken, positions };
}

/**
 * floor(count x fraction), robust to binary rounding: 0.29 x 100 evaluates to 28.999999999999996
 * in floating point. The relative nudge (8.9e-16) exceeds the rounding error of the product but
 * stays below the gap to the next integer for decimal fractions of up to 6 digits and counts up
 * to 1e9.
 */
function takenCount(count: number, fraction: number): number {
  return Math.floor(count * fraction * (1 + 4 * Number.EPSILON));
}

function formatPercent(fraction: number): string {
  return `${Number((fraction * 100).toPrecision(6))}%`;
}

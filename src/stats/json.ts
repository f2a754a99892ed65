/**
 * The versioned JSON form of activation statistics, which routers serve and the planner reads.
 *
 * Co-activation is sparse: one [i, j, count] triple per pair with i < j and a non-zero count.
 * Counts may be fractional because smoothed statistics are scaled (see scaleStats). Expert ids,
 * pair ids and the shape are integers.
 */
import { FormatVersionError, StatsFormatError } from '../errors.js';
import { API_VERSION } from '../plan/types.js';
import type { ActivationStats, LayerActivation, TokenSample } from './types.js';

export const STATS_KIND = 'ActivationStats';

/**
 * Largest expert count a document may declare. Parsing allocates a dense experts x experts matrix
 * per layer (8 MiB per layer at 1024), so the bound keeps a small document from claiming gigabytes.
 */
export const MAX_DOCUMENT_EXPERTS = 1024;

export interface StatsDocument {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: typeof STATS_KIND;
  readonly experts: number;
  readonly layers: number;
  readonly topK: number;
  readonly tokens: number;
  readonly window: { readonly startMs: number; readonly endMs: number } | null;
  readonly perLayer: readonly LayerDocument[];
  readonly sample: SampleDocument;
}

export interface LayerDocument {
  readonly tokens: number;
  readonly loads: readonly number[];
  /** [i, j, count] with i < j and count > 0. */
  readonly coactivation: readonly (readonly [number, number, number])[];
}

export interface SampleDocument {
  readonly capacity: number;
  readonly seen: number;
  /** tokens[t][layer] is the top-k list of sampled token t at that layer. */
  readonly tokens: readonly (readonly (readonly number[])[])[];
}

/** Converts statistics to their JSON document, plain data ready for JSON.stringify. */
export function statsToJson(stats: ActivationStats): StatsDocument {
  const { experts, layers, topK } = stats;

  const perLayer = stats.perLayer.map((layer): LayerDocument => {
    const pairs: [number, number, number][] = [];
    for (let i = 0; i < experts; i += 1) {
      for (let j = i + 1; j < experts; j += 1) {
        const count = layer.coactivation[i * experts + j]!;
        if (count > 0) {
          pairs.push([i, j, count]);
        }
      }
    }
    return { tokens: layer.tokens, loads: Array.from(layer.loads), coactivation: pairs };
  });

  const tokens: number[][][] = [];
  for (let token = 0; token < stats.sample.tokens; token += 1) {
    const lists: number[][] = [];
    for (let layer = 0; layer < layers; layer += 1) {
      const start = (token * layers + layer) * topK;
      lists.push(Array.from(stats.sample.selections.subarray(start, start + topK)));
    }
    tokens.push(lists);
  }

  return {
    apiVersion: API_VERSION,
    kind: STATS_KIND,
    experts,
    layers,
    topK,
    tokens: stats.tokens,
    window: stats.window === null ? null : { startMs: stats.window.startMs, endMs: stats.window.endMs },
    perLayer,
    sample: { capacity: stats.sample.capacity, seen: stats.sample.seen, tokens },
  };
}

/**
 * Validates a parsed JSON document and returns the statistics. Throws FormatVersionError for an
 * unknown apiVersion or kind, and StatsFormatError naming the JSON path, the value and what is
 * accepted for anything else.
 */
export function parseStats(value: unknown): ActivationStats {
  const root = objectAt(value, '(root)');

  if (root['apiVersion'] !== API_VERSION) {
    throw new FormatVersionError(
      `activation statistics: apiVersion must be "${API_VERSION}", got ${describeValue(root['apiVersion'])}`,
    );
  }
  if (root['kind'] !== STATS_KIND) {
    throw new FormatVersionError(
      `activation statistics: kind must be "${STATS_KIND}", got ${describeValue(root['kind'])}`,
    );
  }

  const experts = integerAt(root['experts'], 'experts', 1, MAX_DOCUMENT_EXPERTS);
  const layers = integerAt(root['layers'], 'layers', 1, Number.MAX_SAFE_INTEGER);
  const topK = integerAt(root['topK'], 'topK', 1, experts);
  const tokens = countAt(root['tokens'], 'tokens');
  const window = parseWindow(root['window']);

  const perLayerValue = arrayAt(root['perLayer'], 'perLayer', `${layers} entries, one per layer`);
  if (perLayerValue.length !== layers) {
    fail('perLayer', perLayerValue, `an array of ${layers} entries, one per layer`);
  }
  const perLayer = perLayerValue.map((entry, layer) => parseLayer(entry, `perLayer[${layer}]`, experts));

  const sample = parseSample(root['sample'], { experts, layers, topK });

  return { experts, layers, topK, tokens, window, perLayer, sample };
}

function parseWindow(value: unknown): ActivationStats['window'] {
  if (value === null) {
    return null;
  }
  if (value === undefined) {
    fail('window', value, 'null or {"startMs": number, "endMs": number}');
  }
  const window = objectAt(value, 'window');
  const startMs = finiteAt(window['startMs'], 'window.startMs');
  const endMs = finiteAt(window['endMs'], 'window.endMs');
  if (endMs < startMs) {
    fail('window.endMs', endMs, `a time no earlier than window.startMs (${startMs})`);
  }
  return { startMs, endMs };
}

function parseLayer(value: unknown, path: string, experts: number): LayerActivation {
  const layer = objectAt(value, path);
  const tokens = countAt(layer['tokens'], `${path}.tokens`);

  const loadsValue = arrayAt(layer['loads'], `${path}.loads`, `${experts} counts, one per expert`);
  if (loadsValue.length !== experts) {
    fail(`${path}.loads`, loadsValue, `an array of ${experts} counts, one per expert`);
  }
  const loads = new Float64Array(experts);
  loadsValue.forEach((load, expert) => {
    const loadPath = `${path}.loads[${expert}]`;
    loads[expert] = countAt(load, loadPath);
    if (loads[expert]! > tokens) {
      fail(loadPath, load, `a count no larger than ${path}.tokens (${tokens})`);
    }
  });

  const pairsValue = arrayAt(layer['coactivation'], `${path}.coactivation`, '[i, j, count] triples');
  const coactivation = new Float64Array(experts * experts);
  const listed = new Uint8Array(experts * experts);
  pairsValue.forEach((pairValue, index) => {
    const pairPath = `${path}.coactivation[${index}]`;
    const pair = arrayAt(pairValue, pairPath, '[i, j, count] with expert ids i < j');
    if (pair.length !== 3) {
      fail(pairPath, pairValue, '[i, j, count] with expert ids i < j');
    }
    const i = integerAt(pair[0], `${pairPath}[0]`, 0, experts - 1);
    const j = integerAt(pair[1], `${pairPath}[1]`, 0, experts - 1);
    if (i >= j) {
      fail(pairPath, pairValue, 'a pair with i < j (each pair is listed once, diagonal excluded)');
    }
    const count = countAt(pair[2], `${pairPath}[2]`);
    if (count > Math.min(loads[i]!, loads[j]!)) {
      fail(`${pairPath}[2]`, count, `a count no larger than the loads of experts ${i} and ${j}`);
    }
    if (listed[i * experts + j] === 1) {
      fail(pairPath, pairValue, `a pair listed once, but (${i}, ${j}) appears earlier`);
    }
    listed[i * experts + j] = 1;
    coactivation[i * experts + j] = count;
    coactivation[j * experts + i] = count;
  });

  return { tokens, loads, coactivation };
}

function parseSample(value: unknown, shape: { experts: number; layers: number; topK: number }): TokenSample {
  const { experts, layers, topK } = shape;
  const sample = objectAt(value, 'sample');
  const capacity = integerAt(sample['capacity'], 'sample.capacity', 0, Number.MAX_SAFE_INTEGER);
  const seen = countAt(sample['seen'], 'sample.seen');

  const tokensValue = arrayAt(sample['tokens'], 'sample.tokens', 'an array of sampled tokens');
  if (tokensValue.length > capacity) {
    throw new StatsFormatError(
      `invalid activation statistics: sample.tokens must hold at most sample.capacity (${capacity}) tokens, ` +
        `got ${tokensValue.length}`,
    );
  }

  const stride = layers * topK;
  const selections = new Uint16Array(tokensValue.length * stride);
  tokensValue.forEach((tokenValue, token) => {
    const tokenPath = `sample.tokens[${token}]`;
    const lists = arrayAt(tokenValue, tokenPath, `${layers} top-k lists, one per layer`);
    if (lists.length !== layers) {
      fail(tokenPath, tokenValue, `an array of ${layers} top-k lists, one per layer`);
    }
    lists.forEach((listValue, layer) => {
      const listPath = `${tokenPath}[${layer}]`;
      const list = arrayAt(listValue, listPath, `${topK} distinct expert ids`);
      if (list.length !== topK) {
        fail(listPath, listValue, `an array of ${topK} distinct expert ids`);
      }
      const base = token * stride + layer * topK;
      list.forEach((id, rank) => {
        const expert = integerAt(id, `${listPath}[${rank}]`, 0, experts - 1);
        for (let earlier = 0; earlier < rank; earlier += 1) {
          if (selections[base + earlier] === expert) {
            fail(listPath, listValue, `distinct expert ids, but ${expert} appears twice`);
          }
        }
        selections[base + rank] = expert;
      });
    });
  });

  return { capacity, seen, tokens: tokensValue.length, selections };
}

function fail(path: string, value: unknown, accepted: string): never {
  throw new StatsFormatError(
    `invalid activation statistics: ${path} must be ${accepted}, got ${describeValue(value)}`,
  );
}

function objectAt(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(path, value, 'a JSON object');
  }
  return value as Record<string, unknown>;
}

function arrayAt(value: unknown, path: string, accepted: string): unknown[] {
  if (!Array.isArray(value)) {
    fail(path, value, `an array (${accepted})`);
  }
  return value;
}

function integerAt(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(path, value, `an integer from ${min} to ${max}`);
  }
  return value;
}

function finiteAt(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    fail(path, value, 'a finite number');
  }
  return value;
}

/** Token counts: finite and non-negative, fractional only in smoothed statistics. */
function countAt(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    fail(path, value, 'a finite number >= 0');
  }
  return value;
}

/**
 * Renders a value for an error message. NaN and Infinity print as themselves, not as JSON null, and
 * a long array is clipped with its length added.
 */
function describeValue(value: unknown): string {
  if (value === undefined) {
    return 'nothing (field missing)';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  const text = JSON.stringify(value);
  if (text.length <= 80) {
    return text;
  }
  const length = Array.isArray(value) ? ` (${value.length} entries)` : '';
  return `${text.slice(0, 80)}...${length}`;
}

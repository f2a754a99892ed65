/**
 * Plan documents as JSON: parsing with structural checks, serialisation in a fixed key order, and
 * the SHA-256 digest of a canonical JSON form used for `inputDigest`.
 */
import { createHash, type Hash } from 'node:crypto';

import { FormatVersionError, PlanValidationError } from '../errors.js';
import { API_VERSION, type Plan, type PlanLayer, type PredictedMetrics } from './types.js';
import { rejectUnknownFields, requireArray, requireNumber, requireObject, type JsonObject } from './json-fields.js';
import { describeValue, validatePlan, type ValidateOptions } from './validate.js';


const PLAN_FIELDS = [
  'apiVersion',
  'kind',
  'generation',
  'strategy',
  'inputDigest',
  'topology',
  'model',
  'predicted',
  'layers',
] as const;
const TOPOLOGY_FIELDS = ['nodes', 'gpusPerNode', 'slotsPerGpu'] as const;
const MODEL_FIELDS = ['layers', 'experts', 'topK'] as const;
const PREDICTED_FIELDS = ['moeLayerTimeMs', 'crossNodeCopiesPerToken', 'localHitRatio', 'balancedness'] as const;
const LAYER_FIELDS = ['slots', 'weights'] as const;

/**
 * Parses a decoded JSON value into a plan and validates it with validatePlan.
 * Unknown fields are rejected, so a misspelt field is reported instead of silently dropped.
 * Throws FormatVersionError for an unknown apiVersion or kind and PlanValidationError otherwise.
 * The result shares no arrays with `value`.
 */
export function parsePlan(value: unknown, options: ValidateOptions = {}): Plan {
  const document = requireObject('plan', value);

  if (document.apiVersion !== API_VERSION) {
    throw new FormatVersionError(
      `plan apiVersion must be "${API_VERSION}", got ${describeValue(document.apiVersion)}`,
    );
  }
  if (document.kind !== 'PlacementPlan') {
    throw new FormatVersionError(`plan kind must be "PlacementPlan", got ${describeValue(document.kind)}`);
  }
  rejectUnknownFields('', document, PLAN_FIELDS);

  const topologyObject = requireObject('topology', document.topology);
  rejectUnknownFields('topology.', topologyObject, TOPOLOGY_FIELDS);
  const modelObject = requireObject('model', document.model);
  rejectUnknownFields('model.', modelObject, MODEL_FIELDS);

  const plan: Plan = {
    apiVersion: API_VERSION,
    kind: 'PlacementPlan',
    generation: requireNumber('generation', document.generation),
    strategy: requireString('strategy', document.strategy),
    topology: {
      nodes: requireNumber('topology.nodes', topologyObject.nodes),
      gpusPerNode: requireNumber('topology.gpusPerNode', topologyObject.gpusPerNode),
      slotsPerGpu: requireNumber('topology.slotsPerGpu', topologyObject.slotsPerGpu),
    },
    model: {
      layers: requireNumber('model.layers', modelObject.layers),
      experts: requireNumber('model.experts', modelObject.experts),
      topK: requireNumber('model.topK', modelObject.topK),
    },
    layers: requireArray('layers', document.layers).map((layer, index) => parseLayer(layer, index)),
    ...(document.predicted === undefined ? {} : { predicted: parsePredicted(document.predicted) }),
    inputDigest: requireString('inputDigest', document.inputDigest),
  };

  validatePlan(plan, options);
  return plan;
}

/**
 * Converts a plan to a plain JSON-ready object with a fixed key order, copying every array.
 * `predicted` is left out when the plan has none.
 */
export function planToJson(plan: Plan): Plan {
  return {
    apiVersion: plan.apiVersion,
    kind: plan.kind,
    generation: plan.generation,
    strategy: plan.strategy,
    inputDigest: plan.inputDigest,
    topology: {
      nodes: plan.topology.nodes,
      gpusPerNode: plan.topology.gpusPerNode,
      slotsPerGpu: plan.topology.slotsPerGpu,
    },
    model: { layers: plan.model.layers, experts: plan.model.experts, topK: plan.model.topK },
    ...(plan.predicted === undefined
      ? {}
      : {
          predicted: {
            moeLayerTimeMs: plan.predicted.moeLayerTimeMs,
            crossNodeCopiesPerToken: plan.predicted.crossNodeCopiesPerToken,
            localHitRatio: plan.predicted.localHitRatio,
            balancedness: plan.predicted.balancedness,
          },
        }),
    layers: plan.layers.map((layer) => ({
      slots: layer.slots.map((experts) => Array.from(experts)),
      weights: layer.weights.map((weights) => Array.from(weights)),
    })),
  };
}

/**
 * Returns the SHA-256 hex digest of the canonical JSON form of `value`: object keys sorted by UTF-16
 * code unit, no whitespace, typed arrays written as JSON arrays. Everything else follows
 * JSON.stringify: `toJSON` is honoured, undefined and function properties are dropped, NaN and
 * infinities become null. A bigint, including an element of a BigInt64Array, throws TypeError.
 */
export function digestOf(value: unknown): string {
  const hash = createHash('sha256');
  const writer = new BufferedHashWriter(hash);
  writeCanonical(writer, value);
  writer.flush();
  return hash.digest('hex');
}

function parseLayer(value: unknown, index: number): PlanLayer {
  const path = `layers[${index}]`;
  const layer = requireObject(path, value);
  rejectUnknownFields(`${path}.`, layer, LAYER_FIELDS);

  return {
    slots: parseMatrix(`${path}.slots`, layer.slots),
    weights: parseMatrix(`${path}.weights`, layer.weights),
  };
}

function parseMatrix(path: string, value: unknown): number[][] {
  return requireArray(path, value).map((row, gpu) =>
    requireArray(`${path}[${gpu}]`, row).map((entry, slot) => requireNumber(`${path}[${gpu}][${slot}]`, entry)),
  );
}

function parsePredicted(value: unknown): PredictedMetrics {
  const predicted = requireObject('predicted', value);
  rejectUnknownFields('predicted.', predicted, PREDICTED_FIELDS);

  return {
    moeLayerTimeMs: requireNumber('predicted.moeLayerTimeMs', predicted.moeLayerTimeMs),
    crossNodeCopiesPerToken: requireNumber('predicted.crossNodeCopiesPerToken', predicted.crossNodeCopiesPerToken),
    localHitRatio: requireNumber('predicted.localHitRatio', predicted.localHitRatio),
    balancedness: requireNumber('predicted.balancedness', predicted.balancedness),
  };
}




function requireString(field: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new PlanValidationError(field, `must be a string, got ${describeValue(value)}`);
  }
  return value;
}


/** Feeds text to a hash in chunks of about 64 KiB, so large inputs never build one huge string. */
class BufferedHashWriter {
  private parts: string[] = [];
  private length = 0;

  constructor(private readonly hash: Hash) {}

  write(text: string): void {
    this.parts.push(text);
    this.length += text.length;
    if (this.length >= 65_536) {
      this.flush();
    }
  }

  flush(): void {
    if (this.parts.length > 0) {
      this.hash.update(this.parts.join(''), 'utf8');
      this.parts = [];
      this.length = 0;
    }
  }
}

function writeCanonical(writer: BufferedHashWriter, value: unknown): void {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') {
    writer.write(JSON.stringify(value));
    return;
  }
  if (typeof value === 'bigint') {
    throw new TypeError('digestOf cannot encode a bigint; convert it to a number or string first');
  }
  if (typeof value !== 'object') {
    // undefined, functions and symbols at the top level or inside arrays, as JSON.stringify does.
    writer.write('null');
    return;
  }

  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    writeCanonicalArray(writer, value as unknown as ArrayLike<unknown>);
    return;
  }

  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    writeCanonical(writer, (withToJson.toJSON as () => unknown).call(value));
    return;
  }

  if (Array.isArray(value)) {
    writeCanonicalArray(writer, value as unknown[]);
    return;
  }

  const object = value as JsonObject;
  const keys = Object.keys(object)
    .filter((key) => isJsonValue(object[key]))
    .sort();
  writer.write('{');
  keys.forEach((key, index) => {
    if (index > 0) {
      writer.write(',');
    }
    writer.write(JSON.stringify(key));
    writer.write(':');
    writeCanonical(writer, object[key]);
  });
  writer.write('}');
}

/** Writes every index, holes included, so a sparse array encodes as JSON.stringify encodes it. */
function writeCanonicalArray(writer: BufferedHashWriter, items: ArrayLike<unknown>): void {
  writer.write('[');
  for (let index = 0; index < items.length; index++) {
    if (index > 0) {
      writer.write(',');
    }
    writeCanonical(writer, items[index]);
  }
  writer.write(']');
}

function isJsonValue(value: unknown): boolean {
  return value !== undefined && typeof value !== 'function' && typeof value !== 'symbol';
}

/**
 * Streaming reader for routing traces: JSON Lines, one object per token, optionally gzipped.
 *
 * Each record looks like {"req": "domain/sequence", "pos": 0, "layers": [[e, ...topK], ...layers]}.
 * `pos` is optional, and other fields (such as `phase`) are ignored. The text is read line by line
 * and the selections go straight into typed arrays, so memory stays near 2 bytes per selected expert.
 */
import { readFile, open } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GraceMoeError, TraceFormatError } from '../errors.js';
import type { Trace, TraceMeta } from './types.js';

export interface ReadTraceOptions {
  /** Model facts to validate against. Without them, `<base>.meta.json` beside the trace is read. */
  readonly meta?: TraceMeta;
  /** Called with the tokens read so far after every 4096 tokens, and once at the end. */
  readonly onProgress?: (tokensRead: number) => void;
  /** Stop after this many tokens. */
  readonly maxTokens?: number;
}

export const PROGRESS_INTERVAL_TOKENS = 4096;

/** Expert ids are stored as Uint16, so a trace can name at most 65,536 experts per layer. */
const MAX_EXPERTS = 0x1_0000;
const MAX_POSITION = 0xffff_ffff;
const TRACE_SUFFIXES = ['.jsonl.gz', '.jsonl', '.json.gz'] as const;

/**
 * Reads a trace file into its compact in-memory form.
 *
 * Gzip is detected from the first two bytes (0x1f 0x8b), whatever the file name. Every malformed
 * record, a missing file, an empty file and a truncated gzip stream raise TraceFormatError with
 * the 1-based line number (0 when the file as a whole is at fault).
 */
export async function readTrace(path: string, options: ReadTraceOptions = {}): Promise<Trace> {
  const maxTokens = options.maxTokens ?? Number.POSITIVE_INFINITY;
  if (!(maxTokens >= 1) || (Number.isFinite(maxTokens) && !Number.isInteger(maxTokens))) {
    throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  }

  const meta = options.meta ?? (await readMetaBeside(path));
  const input = await openTraceStream(path);
  const builder = new TraceBuilder(path, meta);
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;

  try {
    for await (const line of lines) {
      lineNumber += 1;
      builder.addRecord(parseRecordLine(path, lineNumber, line), lineNumber);

      if (builder.tokens % PROGRESS_INTERVAL_TOKENS === 0) {
        options.onProgress?.(builder.tokens);
      }
      if (builder.tokens >= maxTokens) {
        break;
      }
    }
  } catch (error) {
    // A decompression error that has already happened explains a bad record better than the record.
    // NOTE: corrupt (not truncated) gzip data can decode into a garbled line long before zlib fails
    // its checksum at the end of the stream, and is then reported as invalid JSON on that line.
    const fromStream = hasErrorCode(error) && !(error instanceof GraceMoeError);
    const streamFault = input.errored ?? (fromStream ? error : null);
    if (streamFault !== null) {
      throw streamError(path, lineNumber, streamFault);
    }
    throw error;
  } finally {
    lines.close();
    input.destroy();
  }

  if (builder.tokens === 0) {
    throw new TraceFormatError(path, 0, 'contains no token records; expected one JSON object per line');
  }
  if (builder.tokens % PROGRESS_INTERVAL_TOKENS !== 0) {
    options.onProgress?.(builder.tokens);
  }
  return builder.finish(traceNameOf(path));
}

/**
 * Validates a parsed meta document (the `<base>.meta.json` format) and maps it to TraceMeta.
 * `file` names the document in error messages, and `name` defaults to the file name without
 * `.meta.json`.
 */
export function parseTraceMeta(json: unknown, file: string): TraceMeta {
  if (!isPlainObject(json)) {
    throw new TraceFormatError(file, 0, `meta must be a JSON object, got ${describeValue(json)}`);
  }

  const layers = metaPositiveInteger(json, 'num_moe_layers', file, Number.MAX_SAFE_INTEGER);
  const experts = metaPositiveInteger(json, 'num_experts', file, MAX_EXPERTS);
  const topK = metaPositiveInteger(json, 'top_k', file, experts);
  const name = metaOptionalString(json, 'name', file) ?? basename(file).replace(/\.meta\.json$/, '');
  const model = metaOptionalString(json, 'model', file) ?? 'unknown';

  let meta: TraceMeta = { name, model, layers, experts, topK };

  const layerIds = json['moe_layer_ids'];
  if (layerIds !== undefined) {
    if (
      !Array.isArray(layerIds) ||
      layerIds.length !== layers ||
      !layerIds.every((id) => Number.isSafeInteger(id) && id >= 0)
    ) {
      throw new TraceFormatError(
        file,
        0,
        `field "moe_layer_ids" must list ${layers} non-negative integers (one per MoE layer), ` +
          `got ${describeValue(layerIds)}`,
      );
    }
    meta = { ...meta, moeLayerIds: layerIds as number[] };
  }

  const shared = json['shared_experts_not_listed'];
  if (shared !== undefined) {
    if (!Number.isSafeInteger(shared) || (shared as number) < 0) {
      throw new TraceFormatError(
        file,
        0,
        `field "shared_experts_not_listed" must be a non-negative integer, got ${describeValue(shared)}`,
      );
    }
    meta = { ...meta, sharedExperts: shared as number };
  }

  return meta;
}

/** Path of the meta file beside a trace: the base name without a trace suffix, plus `.meta.json`. */
export function metaPathFor(tracePath: string): string {
  return `${stripTraceSuffix(tracePath)}.meta.json`;
}

function stripTraceSuffix(path: string): string {
  const suffix = TRACE_SUFFIXES.find((candidate) => path.endsWith(candidate));
  return suffix === undefined ? path : path.slice(0, -suffix.length);
}

function traceNameOf(path: string): string {
  return basename(stripTraceSuffix(path));
}

/** Reads `<base>.meta.json` beside the trace; returns undefined when there is none. */
async function readMetaBeside(tracePath: string): Promise<TraceMeta | undefined> {
  const metaPath = metaPathFor(tracePath);
  let text: string;
  try {
    text = await readFile(metaPath, 'utf8');
  } catch (error) {
    if (isErrnoCode(error, 'ENOENT')) {
      return undefined;
    }
    throw new TraceFormatError(metaPath, 0, `cannot read the meta file: ${errorMessage(error)}`, {
      cause: error,
    });
  }

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TraceFormatError(metaPath, 0, `meta file is not valid JSON: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  return parseTraceMeta(json, metaPath);
}

/** Opens the file and returns its decoded byte stream, gunzipping when the gzip magic is present. */
async function openTraceStream(path: string): Promise<Readable> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isErrnoCode(error, 'ENOENT')) {
      throw new TraceFormatError(path, 0, 'trace file not found; pass the path of a .jsonl or .jsonl.gz trace', {
        cause: error,
      });
    }
    throw new TraceFormatError(path, 0, `cannot open the trace file: ${errorMessage(error)}`, { cause: error });
  }

  let gzipped: boolean;
  try {
    const magic = Buffer.alloc(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    gzipped = bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } catch (error) {
    await handle.close();
    throw new TraceFormatError(path, 0, `cannot read the trace file: ${errorMessage(error)}`, { cause: error });
  }

  const raw = handle.createReadStream({ start: 0 });
  if (!gzipped) {
    return raw;
  }

  const gunzip = createGunzip();
  raw.on('error', (error) => gunzip.destroy(error));
  gunzip.on('close', () => raw.destroy());
  return raw.pipe(gunzip);
}

/** Wraps an error from the file or gzip stream, which ends the records after `lastLine`. */
function streamError(path: string, lastLine: number, error: unknown): TraceFormatError {
  const reason = errorMessage(error);
  if (isZlibError(error)) {
    return new TraceFormatError(
      path,
      lastLine,
      `gzip stream failed after line ${lastLine} (${reason}); the file looks truncated or corrupt`,
      { cause: error },
    );
  }
  return new TraceFormatError(path, lastLine, `reading failed after line ${lastLine}: ${reason}`, {
    cause: error,
  });
}

interface TraceRecord {
  readonly req: string;
  readonly pos: number | undefined;
  readonly layers: readonly unknown[];
}

/** Parses one line into a record with a valid `req`, `pos` and a `layers` array (not yet checked). */
function parseRecordLine(path: string, lineNumber: number, line: string): TraceRecord {
  if (line.trim() === '') {
    throw new TraceFormatError(path, lineNumber, 'empty line; every line must be one JSON object for one token');
  }

  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch (error) {
    throw new TraceFormatError(
      path,
      lineNumber,
      `invalid JSON (${errorMessage(error)}) in ${clip(line)}; every line must be one JSON object`,
      { cause: error },
    );
  }

  if (!isPlainObject(record)) {
    throw new TraceFormatError(
      path,
      lineNumber,
      `record must be a JSON object like {"req": ..., "layers": [...]}, got ${describeValue(record)}`,
    );
  }

  const req = record['req'];
  if (typeof req !== 'string' || req === '') {
    throw new TraceFormatError(
      path,
      lineNumber,
      `field "req" must be a non-empty string such as "intent/0", got ${describeValue(req)}`,
    );
  }

  const pos = record['pos'];
  if (pos !== undefined && (!Number.isSafeInteger(pos) || (pos as number) < 0 || (pos as number) > MAX_POSITION)) {
    throw new TraceFormatError(
      path,
      lineNumber,
      `field "pos" must be an integer from 0 to ${MAX_POSITION}, or absent, got ${describeValue(pos)}`,
    );
  }

  const layers = record['layers'];
  if (!Array.isArray(layers)) {
    throw new TraceFormatError(
      path,
      lineNumber,
      `field "layers" must be an array with one top-k list per MoE layer, got ${describeValue(layers)}`,
    );
  }

  return { req, pos: pos as number | undefined, layers };
}

interface TraceShape {
  readonly layers: number;
  readonly topK: number;
  /** Exclusive upper bound of expert ids. */
  readonly experts: number;
  /** Origins of layers and top-k, quoted in error messages. */
  readonly layersSource: string;
  readonly topKSource: string;
}

/** Validates records against the trace shape and appends them to growing typed arrays. */
class TraceBuilder {
  tokens = 0;
  private shape: TraceShape | undefined;
  private selections = new Uint16Array(0);
  private requestOfToken = new Uint32Array(0);
  private positions = new Uint32Array(0);
  private readonly requestIds: string[] = [];
  private readonly requestIndex = new Map<string, number>();
  /** Tokens seen so far per request: the default position of the next one. */
  private readonly requestLengths: number[] = [];
  private maxExpert = -1;

  constructor(
    private readonly path: string,
    private readonly meta: TraceMeta | undefined,
  ) {
    if (meta !== undefined) {
      this.shape = {
        layers: meta.layers,
        topK: meta.topK,
        experts: meta.experts,
        layersSource: 'num_moe_layers in the meta file',
        topKSource: 'top_k in the meta file',
      };
    }
  }

  addRecord(record: TraceRecord, lineNumber: number): void {
    const shape = this.shape ?? this.inferShape(record, lineNumber);
    const { layers, topK, experts } = shape;

    if (record.layers.length !== layers) {
      throw new TraceFormatError(
        this.path,
        lineNumber,
        `field "layers" has ${record.layers.length} entries, expected ${layers} MoE layers (${shape.layersSource})`,
      );
    }

    this.reserve(this.tokens + 1, layers * topK);
    const base = this.tokens * layers * topK;

    for (let layer = 0; layer < layers; layer += 1) {
      const list = record.layers[layer];
      if (!Array.isArray(list) || list.length !== topK) {
        throw new TraceFormatError(
          this.path,
          lineNumber,
          `layers[${layer}] must list ${topK} expert ids (${shape.topKSource}), got ${describeValue(list)}`,
        );
      }

      const offset = base + layer * topK;
      for (let rank = 0; rank < topK; rank += 1) {
        const expert: unknown = list[rank];
        if (typeof expert !== 'number' || !Number.isInteger(expert) || expert < 0 || expert >= experts) {
          throw new TraceFormatError(
            this.path,
            lineNumber,
            `layers[${layer}][${rank}] must be an integer expert id in [0, ${experts}), got ${describeValue(expert)}`,
          );
        }
        for (let earlier = 0; earlier < rank; earlier += 1) {
          if (this.selections[offset + earlier] === expert) {
            throw new TraceFormatError(
              this.path,
              lineNumber,
              `layers[${layer}] lists expert ${expert} twice; a top-k list holds distinct expert ids`,
            );
          }
        }
        this.selections[offset + rank] = expert;
        if (expert > this.maxExpert) {
          this.maxExpert = expert;
        }
      }
    }

    let request = this.requestIndex.get(record.req);
    if (request === undefined) {
      request = this.requestIds.length;
      this.requestIds.push(record.req);
      this.requestIndex.set(record.req, request);
      this.requestLengths.push(0);
    }
    const runningPosition = this.requestLengths[request] ?? 0;
    this.requestLengths[request] = runningPosition + 1;
    this.requestOfToken[this.tokens] = request;
    this.positions[this.tokens] = record.pos ?? runningPosition;
    this.tokens += 1;
  }

  finish(fallbackName: string): Trace {
    const shape = this.shape;
    if (shape === undefined) {
      throw new Error('TraceBuilder.finish called before any record');
    }

    const meta: TraceMeta = this.meta ?? {
      name: fallbackName,
      model: 'unknown',
      layers: shape.layers,
      topK: shape.topK,
      experts: this.maxExpert + 1,
    };
    return {
      meta,
      tokens: this.tokens,
      selections: this.selections.slice(0, this.tokens * shape.layers * shape.topK),
      requestIds: this.requestIds,
      requestOfToken: this.requestOfToken.slice(0, this.tokens),
      positions: this.positions.slice(0, this.tokens),
    };
  }

  /** Without a meta file, the first record fixes layers and top-k, and only Uint16 bounds the ids. */
  private inferShape(record: TraceRecord, lineNumber: number): TraceShape {
    const first = record.layers[0];
    if (!Array.isArray(first) || first.length === 0) {
      throw new TraceFormatError(
        this.path,
        lineNumber,
        `layers[0] must be a non-empty list of expert ids, got ${describeValue(first)}`,
      );
    }
    this.shape = {
      layers: record.layers.length,
      topK: first.length,
      experts: MAX_EXPERTS,
      layersSource: 'as in the first record, since no meta file was found',
      topKSource: 'as in the first record, since no meta file was found',
    };
    return this.shape;
  }

  /** Grows the buffers by doubling until they hold `tokens` tokens. */
  private reserve(tokens: number, idsPerToken: number): void {
    if (tokens <= this.positions.length) {
      return;
    }
    const capacity = Math.max(1024, this.positions.length * 2);

    const selections = new Uint16Array(capacity * idsPerToken);
    selections.set(this.selections);
    this.selections = selections;

    const requestOfToken = new Uint32Array(capacity);
    requestOfToken.set(this.requestOfToken);
    this.requestOfToken = requestOfToken;

    const positions = new Uint32Array(capacity);
    positions.set(this.positions);
    this.positions = positions;
  }
}

function metaPositiveInteger(json: Record<string, unknown>, field: string, file: string, max: number): number {
  const value = json[field];
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > max) {
    throw new TraceFormatError(
      file,
      0,
      `field "${field}" must be an integer from 1 to ${max}, got ${describeValue(value)}`,
    );
  }
  return value as number;
}

function metaOptionalString(json: Record<string, unknown>, field: string, file: string): string | undefined {
  const value = json[field];
  if (value === undefined) {
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new TraceFormatError(file, 0, `field "${field}" must be a string, got ${describeValue(value)}`);
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isErrnoCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/** Tells stream errors apart: those of node:fs and node:zlib carry a string `code`. */
function hasErrorCode(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

/** zlib errors carry an errno and a Z_* code (Z_BUF_ERROR for a truncated stream). */
function isZlibError(error: unknown): boolean {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && code.startsWith('Z_');
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Renders a value for an error message: JSON, clipped, with "nothing" for a missing field. */
function describeValue(value: unknown): string {
  if (value === undefined) {
    return 'nothing (field missing)';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  return clip(JSON.stringify(value));
}

function clip(text: string, maxLength = 80): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength)}...`;
}

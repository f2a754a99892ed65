/**
 * Binary format of expert compute between engines (POST /v1/experts/compute, content type
 * application/octet-stream). All integers are little-endian.
 *
 * Request: a 28-byte header, then one 8-byte entry per token-expert pair, then the hidden states.
 *   0  "GMC1"           magic and version
 *   4  u32 generation   routing-table generation of the batch
 *   8  u32 layer
 *   12 u32 sourceNode   node of the sending engine
 *   16 u32 tokens       hidden states in the payload, each token once (hierarchical dispatch)
 *   20 u32 hiddenBytes  bytes of one hidden state (hidden size x 2 for bf16)
 *   24 u32 pairs
 *   28 pairs x { u32 token (row in the payload), u16 gpu (global index), u16 expert }
 *   .. tokens x hiddenBytes payload
 * Response: "GMR1", u32 tokens, u32 hiddenBytes, then tokens x hiddenBytes of combined expert
 * output, one row per token of the request, so the response carries as many payload bytes as the request.
 */
import { TooManyPairsError, WireFormatError } from './errors.js';

const REQUEST_MAGIC = 0x31434d47; // "GMC1" read as little-endian u32
const RESPONSE_MAGIC = 0x31524d47; // "GMR1"
export const REQUEST_HEADER_BYTES = 28;
export const PAIR_BYTES = 8;
export const RESPONSE_HEADER_BYTES = 12;

/** One token-expert pair of a compute request. */
export interface ComputePair {
  readonly token: number;
  readonly gpu: number;
  readonly expert: number;
}

export interface ComputeRequest {
  readonly generation: number;
  readonly layer: number;
  readonly sourceNode: number;
  readonly tokens: number;
  readonly hiddenBytes: number;
  readonly pairs: readonly ComputePair[];
  /** tokens x hiddenBytes bytes. */
  readonly payload: Uint8Array;
}

/** Encodes a compute request; the payload must hold tokens x hiddenBytes bytes. */
export function encodeComputeRequest(request: ComputeRequest): Buffer {
  const { tokens, hiddenBytes, pairs, payload } = request;
  if (payload.length !== tokens * hiddenBytes) {
    throw new RangeError(`payload has ${payload.length} bytes, expected ${tokens} tokens x ${hiddenBytes} bytes`);
  }
  const buffer = Buffer.allocUnsafe(REQUEST_HEADER_BYTES + pairs.length * PAIR_BYTES + payload.length);
  buffer.writeUInt32LE(REQUEST_MAGIC, 0);
  buffer.writeUInt32LE(request.generation, 4);
  buffer.writeUInt32LE(request.layer, 8);
  buffer.writeUInt32LE(request.sourceNode, 12);
  buffer.writeUInt32LE(tokens, 16);
  buffer.writeUInt32LE(hiddenBytes, 20);
  buffer.writeUInt32LE(pairs.length, 24);
  let at = REQUEST_HEADER_BYTES;
  for (const pair of pairs) {
    buffer.writeUInt32LE(pair.token, at);
    buffer.writeUInt16LE(pair.gpu, at + 4);
    buffer.writeUInt16LE(pair.expert, at + 6);
    at += PAIR_BYTES;
  }
  buffer.set(payload, at);
  return buffer;
}

/**
 * Decodes a compute request; throws WireFormatError naming what is wrong, and TooManyPairsError,
 * before any pair is read, when the header announces more than `maxPairs` pairs.
 */
export function decodeComputeRequest(buffer: Buffer, maxPairs = Number.POSITIVE_INFINITY): ComputeRequest {
  if (buffer.length < REQUEST_HEADER_BYTES) {
    throw new WireFormatError(`compute request has ${buffer.length} bytes, fewer than the ${REQUEST_HEADER_BYTES}-byte header`);
  }
  if (buffer.readUInt32LE(0) !== REQUEST_MAGIC) {
    throw new WireFormatError('compute request does not start with the magic "GMC1"; send the engine wire format');
  }
  const tokens = buffer.readUInt32LE(16);
  const hiddenBytes = buffer.readUInt32LE(20);
  const pairCount = buffer.readUInt32LE(24);
  if (pairCount > maxPairs) {
    throw new TooManyPairsError(
      `compute request carries ${pairCount} token-expert pairs, more than the ${maxPairs} this engine accepts in one request (--max-compute-pairs)`,
    );
  }
  const payloadStart = REQUEST_HEADER_BYTES + pairCount * PAIR_BYTES;
  const expected = payloadStart + tokens * hiddenBytes;
  if (buffer.length !== expected) {
    throw new WireFormatError(
      `compute request has ${buffer.length} bytes, but its header announces ${expected} ` +
        `(${pairCount} pairs, ${tokens} tokens x ${hiddenBytes} bytes)`,
    );
  }

  const pairs: ComputePair[] = new Array(pairCount);
  for (let i = 0; i < pairCount; i++) {
    const at = REQUEST_HEADER_BYTES + i * PAIR_BYTES;
    const token = buffer.readUInt32LE(at);
    if (token >= tokens) {
      throw new WireFormatError(`compute request pair ${i} names token ${token}, but the payload contains ${tokens} tokens`);
    }
    pairs[i] = { token, gpu: buffer.readUInt16LE(at + 4), expert: buffer.readUInt16LE(at + 6) };
  }
  return {
    generation: buffer.readUInt32LE(4),
    layer: buffer.readUInt32LE(8),
    sourceNode: buffer.readUInt32LE(12),
    tokens,
    hiddenBytes,
    pairs,
    payload: buffer.subarray(payloadStart),
  };
}

/** Encodes a compute response around `payload` (tokens x hiddenBytes bytes). */
export function encodeComputeResponse(tokens: number, hiddenBytes: number, payload: Uint8Array): Buffer {
  const buffer = Buffer.allocUnsafe(RESPONSE_HEADER_BYTES + payload.length);
  buffer.writeUInt32LE(RESPONSE_MAGIC, 0);
  buffer.writeUInt32LE(tokens, 4);
  buffer.writeUInt32LE(hiddenBytes, 8);
  buffer.set(payload, RESPONSE_HEADER_BYTES);
  return buffer;
}

/** Decodes a compute response and checks it carries `tokens` x `hiddenBytes` bytes. */
export function decodeComputeResponse(buffer: Buffer, tokens: number, hiddenBytes: number): Uint8Array {
  const expected = RESPONSE_HEADER_BYTES + tokens * hiddenBytes;
  if (buffer.length !== expected || buffer.readUInt32LE(0) !== RESPONSE_MAGIC) {
    throw new WireFormatError(
      `compute response has ${buffer.length} bytes, expected "GMR1" and ${expected} bytes for ${tokens} tokens x ${hiddenBytes} bytes`,
    );
  }
  if (buffer.readUInt32LE(4) !== tokens || buffer.readUInt32LE(8) !== hiddenBytes) {
    throw new WireFormatError(
      `compute response announces ${buffer.readUInt32LE(4)} tokens x ${buffer.readUInt32LE(8)} bytes, expected ${tokens} x ${hiddenBytes}`,
    );
  }
  return buffer.subarray(RESPONSE_HEADER_BYTES);
}

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TraceFormatError } from '../errors.js';
import { defaultTracePath } from './default.js';
import { metaPathFor, parseTraceMeta, readTrace } from './read.js';

/** Meta of the small fixtures: 2 MoE layers, 4 experts, top-2. */
const SMALL_META = { name: 'small', model: 'test-model', num_moe_layers: 2, num_experts: 4, top_k: 2 };

function line(req: string, layers: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ req, ...extra, layers });
}

const GOOD_LINE = line('a/0', [
  [0, 1],
  [2, 3],
]);

let directory: string;
let fileCounter = 0;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'grace-moe-trace-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** Writes a trace (and a meta file unless `meta` is null) and returns the trace path. */
async function writeTrace(
  content: string | Buffer,
  options: { meta?: object | null; name?: string } = {},
): Promise<string> {
  fileCounter += 1;
  const path = join(directory, options.name ?? `trace-${fileCounter}.jsonl`);
  await writeFile(path, content);
  const meta = options.meta === undefined ? SMALL_META : options.meta;
  if (meta !== null) {
    await writeFile(metaPathFor(path), JSON.stringify(meta));
  }
  return path;
}

async function readError(path: string): Promise<TraceFormatError> {
  const error: unknown = await readTrace(path).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(TraceFormatError);
  return error as TraceFormatError;
}

describe('readTrace on small fixtures', () => {
  test('reads records into the compact form', async () => {
    const path = await writeTrace(
      [
        line('intent/0', [
          [0, 1],
          [2, 3],
        ]),
        line('intent/0', [
          [3, 2],
          [1, 0],
        ]),
        line('law/7', [
          [1, 3],
          [0, 2],
        ]),
      ].join('\n') + '\n',
    );

    const trace = await readTrace(path);

    expect(trace.tokens).toBe(3);
    expect(Array.from(trace.selections)).toEqual([0, 1, 2, 3, 3, 2, 1, 0, 1, 3, 0, 2]);
    expect(trace.requestIds).toEqual(['intent/0', 'law/7']);
    expect(Array.from(trace.requestOfToken)).toEqual([0, 0, 1]);
    expect(Array.from(trace.positions)).toEqual([0, 1, 0]);
    expect(trace.meta).toEqual({ name: 'small', model: 'test-model', layers: 2, experts: 4, topK: 2 });
  });

  test('positions default to the running count', async () => {
    const layers = [
      [0, 1],
      [2, 3],
    ];
    const path = await writeTrace(
      [
        line('a/0', layers),
        line('b/0', layers),
        line('a/0', layers),
        line('a/0', layers, { pos: 40 }),
        line('b/0', layers),
      ].join('\n'),
    );

    const trace = await readTrace(path);

    expect(Array.from(trace.positions)).toEqual([0, 0, 1, 40, 1]);
    expect(Array.from(trace.requestOfToken)).toEqual([0, 1, 0, 0, 1]);
  });

  test('detects gzip by content, not by file name', async () => {
    const text = `${GOOD_LINE}\n${GOOD_LINE}\n`;
    const gzippedPlainName = await writeTrace(gzipSync(text), { name: 'gzipped-content.jsonl' });
    const plainGzName = await writeTrace(text, { name: 'plain-content.jsonl.gz' });

    expect((await readTrace(gzippedPlainName)).tokens).toBe(2);
    expect((await readTrace(plainGzName)).tokens).toBe(2);
  });

  test('accepts CRLF line endings', async () => {
    const path = await writeTrace(`${GOOD_LINE}\r\n${GOOD_LINE}\r\n`);

    expect((await readTrace(path)).tokens).toBe(2);
  });

  test('meta option overrides the file', async () => {
    const path = await writeTrace(GOOD_LINE, { meta: { ...SMALL_META, num_experts: 2 } });

    const trace = await readTrace(path, {
      meta: { name: 'given', model: 'm', layers: 2, experts: 8, topK: 2 },
    });

    expect(trace.meta.name).toBe('given');
    expect(trace.meta.experts).toBe(8);
  });

  test('infers the shape without meta', async () => {
    const path = await writeTrace(
      [
        line('x/0', [
          [0, 5, 2],
          [9, 1, 3],
        ]),
        line('x/0', [
          [4, 2, 11],
          [0, 1, 2],
        ]),
      ].join('\n'),
      { meta: null, name: 'inferred.jsonl.gz' },
    );

    const trace = await readTrace(path);

    expect(trace.meta).toEqual({ name: 'inferred', model: 'unknown', layers: 2, experts: 12, topK: 3 });
  });

  test('rejects a record unlike the first', async () => {
    const path = await writeTrace(
      [
        line('x/0', [
          [0, 1],
          [2, 3],
        ]),
        line('x/0', [[0, 1]]),
      ].join('\n'),
      { meta: null },
    );

    const error = await readError(path);

    expect(error.line).toBe(2);
    expect(error.message).toContain('expected 2 MoE layers (as in the first record');
  });

  test('passes a progress callback error through', async () => {
    const path = await writeTrace(gzipSync(Array.from({ length: 5000 }, () => GOOD_LINE).join('\n')));
    const failure = new Error('progress sink closed');

    const thrown: unknown = await readTrace(path, {
      onProgress: () => {
        throw failure;
      },
    }).catch((error: unknown) => error);

    expect(thrown).toBe(failure);
  });

  test('maxTokens stops early', async () => {
    const path = await writeTrace(Array.from({ length: 10 }, () => GOOD_LINE).join('\n'));

    const trace = await readTrace(path, { maxTokens: 4 });

    expect(trace.tokens).toBe(4);
    expect(trace.positions.length).toBe(4);
    expect(trace.selections.length).toBe(16);
  });

  test('reports progress every 4096 tokens', async () => {
    const path = await writeTrace(gzipSync(Array.from({ length: 10_000 }, () => GOOD_LINE).join('\n')));
    const calls: number[] = [];

    const trace = await readTrace(path, { onProgress: (tokens) => calls.push(tokens) });

    expect(trace.tokens).toBe(10_000);
    expect(calls).toEqual([4096, 8192, 10_000]);
  });
});

describe('readTrace rejects malformed records', () => {
  const layers = (...lists: unknown[]): string => line('a/0', lists);

  test.each([
    { case: 'invalid JSON', bad: '{"req": "a/0", "layers": [', fragment: 'invalid JSON' },
    { case: 'an empty line', bad: '', fragment: 'empty line' },
    { case: 'a blank line', bad: '   \t', fragment: 'empty line' },
    { case: 'an array record', bad: '[1, 2]', fragment: 'record must be a JSON object' },
    { case: 'a null record', bad: 'null', fragment: 'record must be a JSON object like {"req": ..., "layers": [...]}, got null' },
    { case: 'a missing req', bad: '{"layers": [[0, 1], [2, 3]]}', fragment: 'field "req"' },
    { case: 'a numeric req', bad: '{"req": 5, "layers": [[0, 1], [2, 3]]}', fragment: 'field "req" must be a non-empty string such as "intent/0", got 5' },
    { case: 'an empty req', bad: '{"req": "", "layers": [[0, 1], [2, 3]]}', fragment: 'field "req" must be a non-empty string' },
    { case: 'a negative pos', bad: '{"req": "a/0", "pos": -1, "layers": [[0, 1], [2, 3]]}', fragment: 'field "pos" must be an integer from 0 to 4294967295, or absent, got -1' },
    { case: 'a fractional pos', bad: '{"req": "a/0", "pos": 1.5, "layers": [[0, 1], [2, 3]]}', fragment: 'field "pos"' },
    { case: 'missing layers', bad: '{"req": "a/0"}', fragment: 'field "layers" must be an array' },
    { case: 'layers as a number', bad: '{"req": "a/0", "layers": 3}', fragment: 'field "layers" must be an array with one top-k list per MoE layer, got 3' },
    { case: 'too few layers', bad: layers([0, 1]), fragment: 'field "layers" has 1 entries, expected 2 MoE layers (num_moe_layers in the meta file)' },
    { case: 'too many layers', bad: layers([0, 1], [2, 3], [0, 2]), fragment: 'has 3 entries, expected 2' },
    { case: 'a short top-k list', bad: layers([0, 1], [2]), fragment: 'layers[1] must list 2 expert ids (top_k in the meta file), got [2]' },
    { case: 'a long top-k list', bad: layers([0, 1, 2], [2, 3]), fragment: 'layers[0] must list 2 expert ids' },
    { case: 'a top-k list that is not an array', bad: layers([0, 1], 'x'), fragment: 'layers[1] must list 2 expert ids (top_k in the meta file), got "x"' },
    { case: 'a fractional expert id', bad: layers([0, 1.5], [2, 3]), fragment: 'layers[0][1] must be an integer expert id in [0, 4), got 1.5' },
    { case: 'an expert id at the bound', bad: layers([0, 1], [4, 3]), fragment: 'layers[1][0] must be an integer expert id in [0, 4), got 4' },
    { case: 'a negative expert id', bad: layers([-1, 1], [2, 3]), fragment: 'got -1' },
    { case: 'a string expert id', bad: layers([0, 1], [2, '3']), fragment: 'layers[1][1] must be an integer expert id in [0, 4), got "3"' },
    { case: 'a duplicate expert id', bad: layers([0, 1], [3, 3]), fragment: 'layers[1] lists expert 3 twice' },
  ] as const)('rejects $case on its line', async ({ bad, fragment }) => {
    const path = await writeTrace(`${GOOD_LINE}\n${bad}\n${GOOD_LINE}\n`);

    const error = await readError(path);

    expect(error.code).toBe('TRACE_FORMAT');
    expect(error.file).toBe(path);
    expect(error.line).toBe(2);
    expect(error.message).toContain(`${path}:2: `);
    expect(error.message).toContain(fragment);
  });

  test.each([
    { case: 'an empty file', content: '', fragment: 'contains no token records' },
    { case: 'an empty gzip file', content: gzipSync(''), fragment: 'contains no token records' },
  ] as const)('rejects $case as a whole', async ({ content, fragment }) => {
    const path = await writeTrace(content);

    const error = await readError(path);

    expect(error.line).toBe(0);
    expect(error.message).toContain(fragment);
  });

  test('rejects a missing file', async () => {
    const path = join(directory, 'does-not-exist.jsonl.gz');

    const error = await readError(path);

    expect(error.line).toBe(0);
    expect(error.message).toBe(`${path}: trace file not found; pass the path of a .jsonl or .jsonl.gz trace`);
  });

  test('rejects a truncated gzip file', async () => {
    const records = Array.from({ length: 3000 }, (_, index) =>
      line(`a/${index % 7}`, [
        [index % 4, (index + 1) % 4],
        [(index + 2) % 4, (index + 3) % 4],
      ]),
    );
    const gzipped = gzipSync(records.join('\n') + '\n');
    const truncated = gzipped.subarray(0, gzipped.length >> 1);
    const decodable = gunzipSync(truncated, { finishFlush: constants.Z_SYNC_FLUSH }).toString('utf8');
    const completeLines = decodable.split('\n').length - 1;
    const path = await writeTrace(truncated);

    const error = await readError(path);

    expect(completeLines).toBeGreaterThan(0);
    expect(error.line).toBe(completeLines);
    expect(error.message).toContain(`gzip stream failed after line ${completeLines}`);
    expect(error.message).toContain('the file looks truncated or corrupt');
    expect((error.cause as NodeJS.ErrnoException).code).toBe('Z_BUF_ERROR');
  });

  test('rejects a meta file that is not JSON', async () => {
    const path = await writeTrace(GOOD_LINE, { meta: null });
    await writeFile(metaPathFor(path), '{ "num_experts": ');

    const error = await readError(path);

    expect(error.file).toBe(metaPathFor(path));
    expect(error.line).toBe(0);
    expect(error.message).toContain('meta file is not valid JSON');
  });
});

describe('parseTraceMeta', () => {
  test('maps the meta fields', () => {
    const meta = parseTraceMeta(
      {
        name: 'ds',
        model: 'DeepSeek-V2-Lite',
        moe_layer_ids: [1, 2],
        num_moe_layers: 2,
        num_experts: 64,
        top_k: 6,
        shared_experts_not_listed: 2,
        datasets: {},
      },
      'ds.meta.json',
    );

    expect(meta).toEqual({
      name: 'ds',
      model: 'DeepSeek-V2-Lite',
      layers: 2,
      experts: 64,
      topK: 6,
      moeLayerIds: [1, 2],
      sharedExperts: 2,
    });
  });

  test('defaults name to the file name', () => {
    const meta = parseTraceMeta({ num_moe_layers: 1, num_experts: 8, top_k: 2 }, '/tmp/mixtral.meta.json');

    expect(meta).toEqual({ name: 'mixtral', model: 'unknown', layers: 1, experts: 8, topK: 2 });
  });

  const valid = { num_moe_layers: 2, num_experts: 8, top_k: 2 };

  test.each([
    { case: 'an array', json: [], fragment: 'meta must be a JSON object, got []' },
    { case: 'missing num_moe_layers', json: { num_experts: 8, top_k: 2 }, fragment: 'field "num_moe_layers" must be an integer from 1 to 9007199254740991, got nothing (field missing)' },
    { case: 'zero experts', json: { ...valid, num_experts: 0 }, fragment: 'field "num_experts" must be an integer from 1 to 65536, got 0' },
    { case: 'too many experts', json: { ...valid, num_experts: 70_000 }, fragment: 'field "num_experts" must be an integer from 1 to 65536, got 70000' },
    { case: 'top_k above experts', json: { ...valid, top_k: 9 }, fragment: 'field "top_k" must be an integer from 1 to 8, got 9' },
    { case: 'a string top_k', json: { ...valid, top_k: '2' }, fragment: 'field "top_k" must be an integer from 1 to 8, got "2"' },
    { case: 'layer ids of the wrong length', json: { ...valid, moe_layer_ids: [1] }, fragment: 'field "moe_layer_ids" must list 2 non-negative integers' },
    { case: 'negative shared experts', json: { ...valid, shared_experts_not_listed: -2 }, fragment: 'field "shared_experts_not_listed" must be a non-negative integer, got -2' },
    { case: 'a numeric name', json: { ...valid, name: 3 }, fragment: 'field "name" must be a string, got 3' },
  ] as const)('rejects $case', ({ json, fragment }) => {
    let thrown: unknown;
    try {
      parseTraceMeta(json, 'x.meta.json');
    } catch (error) {
      thrown = error;
    }

    expect(thrown).toBeInstanceOf(TraceFormatError);
    expect((thrown as TraceFormatError).line).toBe(0);
    expect((thrown as TraceFormatError).message).toContain(`x.meta.json: ${fragment}`);
  });
});

describe('metaPathFor', () => {
  test.each([
    ['data/t.jsonl.gz', 'data/t.meta.json'],
    ['data/t.jsonl', 'data/t.meta.json'],
    ['data/t.json.gz', 'data/t.meta.json'],
    ['data/t.bin', 'data/t.bin.meta.json'],
  ] as const)('%s has meta %s', (trace, meta) => {
    expect(metaPathFor(trace)).toBe(meta);
  });
});

describe('readTrace on the shipped trace', () => {
  test('reads every token with the meta shape', async () => {
    const trace = await readTrace(defaultTracePath());

    expect(trace.tokens).toBe(33_279);
    expect(trace.meta.layers).toBe(26);
    expect(trace.meta.experts).toBe(64);
    expect(trace.meta.topK).toBe(6);
    expect(trace.meta.sharedExperts).toBe(2);
    expect(trace.meta.moeLayerIds?.[0]).toBe(1);
    expect(trace.requestIds.length).toBe(213);
    expect(trace.requestIds[0]).toBe('intent/0');
    expect(trace.selections.length).toBe(33_279 * 26 * 6);
    expect(Array.from(trace.selections.subarray(0, 6))).toEqual([8, 26, 56, 57, 60, 11]);
    expect(trace.positions[0]).toBe(0);
    expect(trace.positions[1]).toBe(1);
  });
});

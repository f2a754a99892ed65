/**
 * The CLI in-process through runCli: exit codes, where output goes, and the messages of usage and
 * input errors. Most cases read a small trace written to a temporary folder: 64 experts, 2 MoE
 * layers, top-2, 48 tokens in the domains alpha and beta.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { exitCodeOf, PlanValidationError, TraceFormatError, UsageError } from '../errors.js';
import type { CommandIo } from './command.js';
import { runCli } from './main.js';

/** A stream that collects everything written to it as text. */
class TextSink extends Writable {
  text = '';

  constructor(readonly isTTY = false) {
    super();
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text += chunk.toString();
    callback();
  }
}

interface CliOutcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function run(argv: readonly string[], stdout: Writable & { isTTY?: boolean } = new TextSink()): Promise<CliOutcome> {
  const stderr = new TextSink();
  const io: CommandIo = { stdout, stderr, signal: new AbortController().signal };
  const code = await runCli(argv, io);
  return { code, stdout: stdout instanceof TextSink ? stdout.text : '', stderr: stderr.text };
}

const TINY_META = { name: 'tiny', model: 'deepseek-v2-lite test trace', num_moe_layers: 2, num_experts: 64, top_k: 2 };

/** Two distinct expert ids per token and layer, spread over all 64 experts. */
function tinyRecord(token: number): string {
  const domain = token < 24 ? 'alpha' : 'beta';
  const layers = [0, 1].map((layer) => {
    const first = (token * 7 + layer * 3) % 64;
    const second = (token * 11 + layer * 5 + 1) % 64;
    return [first, second === first ? (second + 1) % 64 : second];
  });
  return JSON.stringify({ req: `${domain}/${token % 3}`, layers });
}

/** A valid plan: 1 layer, 1 node x 2 GPUs with 2 slots each, 4 experts. */
const SMALL_PLAN = {
  apiVersion: 'grace-moe.io/v1alpha1',
  kind: 'PlacementPlan',
  generation: 3,
  strategy: 'grace',
  inputDigest: '',
  topology: { nodes: 1, gpusPerNode: 2, slotsPerGpu: 2 },
  model: { layers: 1, experts: 4, topK: 2 },
  layers: [{ slots: [[3, 1], [0, 2]], weights: [[1, 1], [1, 1]] }],
};

let workDir = '';
let tinyTrace = '';
let badTrace = '';
let smallPlan = '';
let planMissingExpert = '';

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'grace-moe-cli-'));

  tinyTrace = join(workDir, 'tiny.jsonl');
  await writeFile(join(workDir, 'tiny.meta.json'), JSON.stringify(TINY_META));
  await writeFile(tinyTrace, `${Array.from({ length: 48 }, (_, token) => tinyRecord(token)).join('\n')}\n`);

  // Line 2 selects expert 64 in its second layer, one past the highest id of a 64-expert model.
  badTrace = join(workDir, 'bad.jsonl');
  await writeFile(join(workDir, 'bad.meta.json'), JSON.stringify(TINY_META));
  await writeFile(
    badTrace,
    [
      JSON.stringify({ req: 'alpha/0', layers: [[0, 1], [2, 3]] }),
      JSON.stringify({ req: 'alpha/0', layers: [[4, 5], [64, 6]] }),
    ].join('\n'),
  );

  smallPlan = join(workDir, 'plan.json');
  await writeFile(smallPlan, JSON.stringify(SMALL_PLAN));

  planMissingExpert = join(workDir, 'plan-missing-expert.json');
  await writeFile(
    planMissingExpert,
    JSON.stringify({ ...SMALL_PLAN, layers: [{ slots: [[3, 1], [0]], weights: [[1, 1], [1]] }] }),
  );
});

afterAll(async () => {
  if (workDir !== '') {
    await rm(workDir, { recursive: true, force: true });
  }
});

describe('help and commands', () => {
  test('--help prints the usage with exit 0', async () => {
    const outcome = await run(['--help']);

    expect(outcome.code).toBe(0);
    expect(outcome.stdout).toContain('Usage: grace-moe <command> [flags]');
    for (const command of ['compare', 'plan', 'export']) {
      expect(outcome.stdout).toContain(`  ${command} `);
    }
    expect(outcome.stderr).toBe('');
  });

  test('no command prints the usage with exit 2', async () => {
    const outcome = await run([]);

    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toContain('Usage: grace-moe <command> [flags]');
    expect(outcome.stdout).toBe('');
  });

  test.each(['compare', 'plan', 'export'])('%s --help prints its flags', async (command) => {
    const outcome = await run([command, '--help']);

    expect(outcome.code).toBe(0);
    expect(outcome.stdout.startsWith(`Usage: grace-moe ${command}`)).toBe(true);
    expect(outcome.stdout).toContain('Flags:');
    expect(outcome.stderr).toBe('');
  });

  test('unknown command exits 2 with the usage', async () => {
    const outcome = await run(['frobnicate']);

    expect(outcome.code).toBe(2);
    expect(outcome.stdout).toBe('');
    expect(outcome.stderr).toContain('unknown command "frobnicate"');
    expect(outcome.stderr).toContain('Usage: grace-moe <command> [flags]');
  });
});

describe('usage and input errors exit 2', () => {
  // Each row: the arguments after the command, and texts the message on stderr must contain.
  const cases: readonly { readonly argv: () => readonly string[]; readonly message: readonly string[] }[] = [
    { argv: () => ['compare', '--bogus'], message: ['--bogus', 'grace-moe compare --help'] },
    { argv: () => ['compare', '--trace', tinyTrace, '--topology', '2by4'], message: ['--topology', '"2by4"'] },
    { argv: () => ['compare', '--trace', tinyTrace, '--topology', '0x4'], message: ['--topology', '"0x4"'] },
    { argv: () => ['compare', '--trace', tinyTrace, '--split', '1.5'], message: ['--split', '"1.5"', 'between 0 and 1'] },
    {
      argv: () => ['compare', '--trace', tinyTrace, '--split', 'req:nosuchdomain'],
      message: ['--split', '"nosuchdomain"', 'alpha, beta'],
    },
    { argv: () => ['compare', '--trace', tinyTrace, '--format', 'xml'], message: ['--format', '"xml"', 'table, json'] },
    {
      argv: () => ['compare', '--trace', tinyTrace, '--topology', '2x4', '--slots-per-gpu', '3'],
      message: ['--slots-per-gpu', 'at least 8 slots per GPU'],
    },
    {
      argv: () => ['compare', '--trace', tinyTrace, '--slots-per-gpu', '9', '--redundant-slots', '1'],
      message: ['--slots-per-gpu', '--redundant-slots'],
    },
    {
      argv: () => ['compare', '--trace', tinyTrace, '--split', '0.5', '--profile', tinyTrace],
      message: ['--split', '--profile'],
    },
    { argv: () => ['compare', '--trace', join(workDir, 'missing.jsonl')], message: ['missing.jsonl', 'not found'] },
    { argv: () => ['compare', '--trace', tinyTrace, '--sample', '0'], message: ['--sample', '"0"'] },
    { argv: () => ['compare', '--trace', tinyTrace, '--preset', 'tpu'], message: ['--preset', '"tpu"'] },
    { argv: () => ['plan', '--trace', tinyTrace, '--strategy', 'random'], message: ['--strategy', '"random"'] },
    { argv: () => ['export', '--format', 'sglang'], message: ['--plan FILE is required'] },
    { argv: () => ['export', '--plan', smallPlan, '--format', 'vllm'], message: ['--format', '"vllm"'] },
    { argv: () => ['export', '--plan', join(workDir, 'missing-plan.json')], message: ['--plan', 'missing-plan.json'] },
    { argv: () => ['export', '--plan', planMissingExpert], message: ['layers[0].slots', 'expert 2 has no instance'] },
  ];

  test.each(cases.map((row) => ({ ...row, name: row.message.join(' ') })))('message names $name', async ({ argv, message }) => {
    const args = argv();
    const outcome = await run(args);

    expect(outcome.code).toBe(2);
    expect(outcome.stdout).toBe('');
    expect(outcome.stderr).toContain(`grace-moe ${args[0] ?? ''}: `);
    for (const text of message) {
      expect(outcome.stderr).toContain(text);
    }
    expect(outcome.stderr).not.toContain('internal error');
  });

  test('expert id out of range names the line', async () => {
    const outcome = await run(['compare', '--trace', badTrace]);

    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toContain(
      `grace-moe compare: ${badTrace}:2: layers[1][0] must be an integer expert id in [0, 64), got 64\n`,
    );
  });

  test('unknown domain lists the shipped trace domains', async () => {
    const outcome = await run(['compare', '--split', 'req:nosuchdomain']);

    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toContain('the trace has domains intent, law, summary, translation');
  });
});

describe('successful runs exit 0', () => {
  test('compare writes JSON to stdout and progress to stderr', async () => {
    const outcome = await run(['compare', '--trace', tinyTrace, '--split', 'req:alpha', '--format', 'json']);

    expect(outcome.code).toBe(0);
    const document = JSON.parse(outcome.stdout) as {
      topology: unknown;
      trace: { profileTokens: number; evaluationTokens: number };
      strategies: { name: string; dispatch: string }[];
    };
    expect(document.topology).toEqual({ nodes: 2, gpusPerNode: 4, slotsPerGpu: 9 });
    expect(document.trace.profileTokens).toBe(24);
    expect(document.trace.evaluationTokens).toBe(24);
    expect(document.strategies).toHaveLength(18);
    expect(document.strategies.filter((entry) => entry.name === 'grace').map((entry) => entry.dispatch)).toEqual([
      'flat',
      'hierarchical',
    ]);
    expect(outcome.stderr).toContain(`reading ${tinyTrace}: 48`);
    expect(outcome.stderr).toContain('evaluating: 18/18 (100%)');
  });

  test('compare prints a table on a terminal', async () => {
    const outcome = await run(['compare', '--trace', tinyTrace, '--split', '0.5'], new TextSink(true));

    expect(outcome.code).toBe(0);
    expect(outcome.stdout.startsWith('trace tiny: 24 profile tokens, 24 evaluation tokens')).toBe(true);
    expect(outcome.stdout).toContain('\nflat dispatch\nstrategy ');
    expect(outcome.stdout).toContain('\nhierarchical dispatch\nstrategy ');
    expect(outcome.stdout).toMatch(/\ngrace-no-locality +\d/);
  });

  test('export writes the SGLang map to stdout', async () => {
    const outcome = await run(['export', '--plan', smallPlan, '--first-moe-layer', '1']);

    expect(outcome.code).toBe(0);
    expect(JSON.parse(outcome.stdout)).toEqual({
      physical_to_logical_map: [
        [0, 1, 2, 3],
        [3, 1, 0, 2],
      ],
    });
  });
});

describe('internal errors exit 1', () => {
  test('a failing stdout is an internal error', async () => {
    const brokenStdout = Object.assign(new TextSink(), {
      write: (): boolean => {
        throw new Error('stdout is closed');
      },
    });

    const outcome = await run(['export', '--plan', smallPlan], brokenStdout);

    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toContain('grace-moe export: internal error: Error: stdout is closed');
  });

  test.each([
    { kind: 'UsageError', error: new UsageError('bad flag'), code: 2 },
    { kind: 'TraceFormatError', error: new TraceFormatError('t.jsonl', 3, 'bad record'), code: 2 },
    { kind: 'PlanValidationError', error: new PlanValidationError('layers', 'missing'), code: 2 },
    { kind: 'Error', error: new Error('bug'), code: 1 },
    { kind: 'TypeError', error: new TypeError('bug'), code: 1 },
    { kind: 'string', error: 'a thrown string', code: 1 },
  ])('exitCodeOf($kind) is $code', ({ error, code }) => {
    expect(exitCodeOf(error)).toBe(code);
  });
});

describe('version and help topics', () => {
  test('--version matches package.json', async () => {
    const { readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { packageRoot } = await import('../trace/default.js');
    const manifest = JSON.parse(await readFile(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    const outcome = await run(['--version']);
    expect(outcome.code).toBe(0);
    expect(outcome.stdout).toBe(`grace-moe ${manifest.version}\n`);
  });

  test('help compare prints the compare usage', async () => {
    const outcome = await run(['help', 'compare']);
    expect(outcome.code).toBe(0);
    expect(outcome.stdout).toContain('Usage: grace-moe compare');
  });
});

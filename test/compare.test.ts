/**
 * Acceptance suite of `grace-moe compare` on the shipped DeepSeek-V2-Lite trace (64 experts,
 * 26 MoE layers, top-6, 33,279 tokens in the domains intent, law, summary and translation). Every
 * case runs the compiled CLI with `--format json` and reads the document from stdout.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireBuiltCli, runCliProcess, type CliRun } from './support/cli-process.js';

/** A full comparison on the shipped trace takes about 5 s on one core. */
const RUN_TIMEOUT_MS = 120_000;

const METRIC_KEYS = [
  'moeLayerTimeMs',
  'allToAllTimeMs',
  'crossNodeBytes',
  'intraNodeBytes',
  'crossNodeCopiesPerToken',
  'crossGpuCopiesPerToken',
  'localHitRatio',
  'balancedness',
  'loadStd',
  'gpuIdleTimeMs',
  'planTimeMs',
  'duplicateInstances',
] as const;

type MetricKey = (typeof METRIC_KEYS)[number];
type Dispatch = 'flat' | 'hierarchical';

const DISPATCH_SCHEMES: readonly Dispatch[] = ['flat', 'hierarchical'];

/** Every strategy the comparison reports: baselines, EPLB under both replica choices, grace and its ablations. */
const STRATEGY_NAMES = [
  'contiguous',
  'round-robin',
  'eplb',
  'eplb+locality',
  'eplb-hierarchical',
  'eplb-hierarchical+locality',
  'grace',
  'grace-grouping',
  'grace-no-locality',
] as const;

interface StrategyEntry {
  readonly name: string;
  readonly dispatch: Dispatch;
  readonly metrics: Readonly<Record<MetricKey, number>>;
}

interface CompareDocument {
  readonly topology: { readonly nodes: number; readonly gpusPerNode: number; readonly slotsPerGpu: number };
  readonly trace?: { readonly profileTokens?: number; readonly evaluationTokens?: number };
  readonly strategies: readonly StrategyEntry[];
}

/** Parses stdout as one JSON document and checks the documented shape key by key. */
function parseCompareDocument(run: CliRun): CompareDocument {
  const document = JSON.parse(run.stdout) as CompareDocument;

  for (const key of ['nodes', 'gpusPerNode', 'slotsPerGpu'] as const) {
    expect(Number.isInteger(document.topology[key]), `topology.${key}`).toBe(true);
  }
  expect(Array.isArray(document.strategies)).toBe(true);
  for (const entry of document.strategies) {
    expect(typeof entry.name, 'strategy name').toBe('string');
    expect(DISPATCH_SCHEMES, `${entry.name} dispatch`).toContain(entry.dispatch);
    for (const key of METRIC_KEYS) {
      expect(Number.isFinite(entry.metrics[key]), `${entry.name} (${entry.dispatch}) metrics.${key}`).toBe(true);
    }
    expect(Object.keys(entry.metrics).sort(), `${entry.name} (${entry.dispatch}) metric keys`).toEqual(
      [...METRIC_KEYS].sort(),
    );
  }
  return document;
}

/** Checks that the document lists every strategy exactly once under every dispatch scheme. */
function expectOneEntryPerStrategyAndScheme(document: CompareDocument): void {
  expect(document.strategies).toHaveLength(STRATEGY_NAMES.length * DISPATCH_SCHEMES.length);
  for (const name of STRATEGY_NAMES) {
    for (const dispatch of DISPATCH_SCHEMES) {
      const matches = document.strategies.filter((entry) => entry.name === name && entry.dispatch === dispatch);
      expect(matches, `${name} (${dispatch})`).toHaveLength(1);
    }
  }
}

function metricsOf(document: CompareDocument, name: string, dispatch: Dispatch): Readonly<Record<MetricKey, number>> {
  const entry = document.strategies.find((candidate) => candidate.name === name && candidate.dispatch === dispatch);
  if (entry === undefined) {
    throw new Error(`the comparison has no entry for ${name} under ${dispatch} dispatch`);
  }
  return entry.metrics;
}

let workDir = '';

beforeAll(async () => {
  requireBuiltCli();
  workDir = await mkdtemp(join(tmpdir(), 'grace-moe-compare-'));
});

afterAll(async () => {
  if (workDir !== '') {
    await rm(workDir, { recursive: true, force: true });
  }
});

describe('compare --split 0.5 at 2x4', () => {
  let run: CliRun;
  let document: CompareDocument;
  let reportPath = '';

  beforeAll(async () => {
    reportPath = join(workDir, 'report.html');
    run = await runCliProcess(['compare', '--split', '0.5', '--topology', '2x4', '--format', 'json', '--report', reportPath]);
    expect(run.stderr).not.toContain('internal error');
    expect(run.code).toBe(0);
    document = parseCompareDocument(run);
  }, RUN_TIMEOUT_MS);

  test('stdout holds only the JSON document', () => {
    expect(run.stdout.startsWith('{')).toBe(true);
    expect(run.stdout.endsWith('}\n')).toBe(true);
    expect(() => JSON.parse(run.stdout)).not.toThrow();
  });

  test('progress goes to stderr', () => {
    expect(run.stderr).toContain('reading ');
    expect(run.stderr).toContain('deepseek_v2_lite_esft.jsonl.gz');
    expect(run.stderr).toContain('evaluating: 18/18 (100%)');
    expect(run.stderr).toContain(`report written to ${reportPath}`);
  });

  test('reports the topology with one redundant slot', () => {
    expect(document.topology).toEqual({ nodes: 2, gpusPerNode: 4, slotsPerGpu: 9 });
  });

  test('reports every strategy under both schemes', () => {
    expectOneEntryPerStrategyAndScheme(document);
  });

  test('splits the tokens in half', () => {
    expect(document.trace?.profileTokens).toBe(16_639);
    expect(document.trace?.evaluationTokens).toBe(16_640);
  });

  // Reference figures of contiguous placement from an independent evaluation of the same trace,
  // split and cost-model rules (token i on GPU i mod 8).
  test('contiguous matches the independent figures', () => {
    const flat = metricsOf(document, 'contiguous', 'flat');
    const hierarchical = metricsOf(document, 'contiguous', 'hierarchical');

    expect(flat.crossNodeCopiesPerToken).toBeCloseTo(2.28, 2);
    expect(hierarchical.crossNodeCopiesPerToken).toBeCloseTo(0.99, 2);
    for (const metrics of [flat, hierarchical]) {
      expect(metrics.localHitRatio).toBeCloseTo(0.125, 3);
      expect(metrics.balancedness).toBeCloseTo(1.426, 3);
      expect(metrics.duplicateInstances).toBe(0);
    }
  });

  test('HTML report has charts and every strategy', async () => {
    const html = await readFile(reportPath, 'utf8');

    expect(html).toContain('<svg');
    expect(html.toLowerCase()).not.toContain('<script');
    for (const name of STRATEGY_NAMES) {
      expect(html, name).toContain(name);
    }
  });
});

describe('grace against the baselines', () => {
  test.each([
    { topology: '2x4', redundantSlots: 1, slotsPerGpu: 9 },
    { topology: '2x4', redundantSlots: 2, slotsPerGpu: 10 },
    { topology: '4x8', redundantSlots: 1, slotsPerGpu: 3 },
    { topology: '4x8', redundantSlots: 2, slotsPerGpu: 4 },
  ] as const)(
    'grace wins at $topology, $redundantSlots redundant slots per GPU',
    async ({ topology, redundantSlots, slotsPerGpu }) => {
      const run = await runCliProcess([
        'compare',
        '--split',
        'domain:0.5',
        '--topology',
        topology,
        '--redundant-slots',
        String(redundantSlots),
        '--format',
        'json',
      ]);
      expect(run.stderr).not.toContain('internal error');
      expect(run.code).toBe(0);
      const document = parseCompareDocument(run);
      expect(document.topology.slotsPerGpu).toBe(slotsPerGpu);
      expectOneEntryPerStrategyAndScheme(document);

      const rivals = [...new Set(document.strategies.map((entry) => entry.name))].filter(
        (name) => name === 'contiguous' || name.startsWith('eplb'),
      );
      expect(rivals).toHaveLength(5);
      for (const dispatch of DISPATCH_SCHEMES) {
        const grace = metricsOf(document, 'grace', dispatch);
        for (const rival of rivals) {
          const other = metricsOf(document, rival, dispatch);
          expect(grace.moeLayerTimeMs, `${dispatch}: MoE-layer time of grace vs ${rival}`).toBeLessThan(
            other.moeLayerTimeMs,
          );
          expect(grace.crossNodeCopiesPerToken, `${dispatch}: cross-node copies of grace vs ${rival}`).toBeLessThan(
            other.crossNodeCopiesPerToken,
          );
        }
        expect(grace.balancedness, `${dispatch}: balancedness of grace`).toBeLessThanOrEqual(1.3);
      }
    },
    RUN_TIMEOUT_MS,
  );
});

describe('compare --split req:intent,law', () => {
  test(
    'profiles two domains and evaluates the others',
    async () => {
      const run = await runCliProcess(['compare', '--split', 'req:intent,law', '--format', 'json']);
      expect(run.stderr).not.toContain('internal error');
      expect(run.code).toBe(0);
      const document = parseCompareDocument(run);

      expectOneEntryPerStrategyAndScheme(document);
      // intent 8,222 + law 8,327 profile; summary 8,479 + translation 8,251 evaluate.
      expect(document.trace?.profileTokens).toBe(16_549);
      expect(document.trace?.evaluationTokens).toBe(16_730);
    },
    RUN_TIMEOUT_MS,
  );
});

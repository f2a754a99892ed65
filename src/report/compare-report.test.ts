import { describe, expect, test } from 'vitest';
import type { CompareResult, DispatchScheme, Metrics, StrategyResult } from '../evaluator/types.js';
import { renderCompareReport } from './compare-report.js';

const baseMetrics: Metrics = {
  moeLayerTimeMs: 1,
  allToAllTimeMs: 0.5,
  crossNodeBytes: 3e6,
  intraNodeBytes: 1e6,
  crossNodeCopiesPerToken: 0.75,
  crossGpuCopiesPerToken: 1.25,
  localHitRatio: 0.25,
  balancedness: 1.2,
  loadStd: 3,
  gpuIdleTimeMs: 0.1,
  planTimeMs: 12.34,
  duplicateInstances: 0,
};

function strategy(
  name: string,
  dispatch: DispatchScheme,
  metrics: Partial<Metrics>,
  gpuLoads: number[][] = [
    [10, 20, 30, 40],
    [25, 25, 25, 25],
    [40, 30, 20, 10],
  ],
  crossNodeBytes: number[] = [1e6, 2e6, 1.5e6],
): StrategyResult {
  return {
    name,
    description: `${name} placement`,
    dispatch,
    metrics: { ...baseMetrics, ...metrics },
    perLayer: {
      crossNodeBytes,
      moeLayerTimeMs: crossNodeBytes.map((bytes) => bytes / 1e6 + 0.5),
      gpuLoads,
    },
  };
}

/** Two strategies under two dispatch schemes, 3 layers, 2 nodes x 2 GPUs. */
function fixture(graceName = 'grace'): CompareResult {
  return {
    topology: { nodes: 2, gpusPerNode: 2, slotsPerGpu: 3 },
    trace: {
      name: 'tiny-trace',
      model: 'toy-moe',
      profileTokens: 12000,
      evaluationTokens: 3456,
      split: 'first 80% profile, last 20% evaluation',
    },
    preset: 'paper-testbed',
    strategies: [
      strategy('eplb-locality', 'flat', { moeLayerTimeMs: 4, localHitRatio: 0.2, duplicateInstances: 2 }),
      strategy(graceName, 'flat', { moeLayerTimeMs: 3.2, localHitRatio: 0.4 }, undefined, [0.5e6, 1e6, 0.75e6]),
      strategy('eplb-locality', 'hierarchical', { moeLayerTimeMs: 2, crossNodeCopiesPerToken: 0.5, duplicateInstances: 2 }),
      strategy(graceName, 'hierarchical', { moeLayerTimeMs: 1.5, crossNodeCopiesPerToken: 0.625 }, [
        [25, 25, 25, 25],
        [20, 30, 25, 25],
        [0, 0, 0, 0],
      ], [0.5e6, 1e6, 0.75e6]),
    ],
  };
}

/** Cell texts of every body row of the table with this id. */
function tableRows(html: string, id: string): string[][] {
  const table = new RegExp(`<table id="${id}">([\\s\\S]*?)</table>`).exec(html)?.[1] ?? '';
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(table)?.[1] ?? '';
  return [...body.matchAll(/<tr>(.*?)<\/tr>/g)].map((row) =>
    [...(row[1] ?? '').matchAll(/<t[hd][^>]*>(.*?)<\/t[hd]>/g)].map((cell) => cell[1] ?? ''),
  );
}

function headers(html: string, id: string): string[] {
  const table = new RegExp(`<table id="${id}">([\\s\\S]*?)</table>`).exec(html)?.[1] ?? '';
  const head = /<thead>([\s\S]*?)<\/thead>/.exec(table)?.[1] ?? '';
  return [...head.matchAll(/<th[^>]*>(.*?)<\/th>/g)].map((cell) => cell[1] ?? '');
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

describe('renderCompareReport', () => {
  const html = renderCompareReport(fixture());

  test('is self-contained', () => {
    expect(html).not.toContain('<script');
    expect(html).not.toContain('http://');
    expect(html).not.toContain('https://');
    expect(html).not.toContain('NaN');
    expect(html).not.toContain('Infinity');
  });

  test('names every strategy', () => {
    expect(html).toContain('eplb-locality');
    expect(html).toContain('grace');
  });

  test('header states the setup', () => {
    expect(html).toContain('<dt>Trace</dt><dd>tiny-trace</dd>');
    expect(html).toContain('<dt>Model</dt><dd>toy-moe</dd>');
    expect(html).toContain('<dd>first 80% profile, last 20% evaluation</dd>');
    expect(html).toContain('<dd>12,000 (the plans are fitted on these)</dd>');
    expect(html).toContain('<dd>3,456 (all metrics are measured on these)</dd>');
    expect(html).toContain('<dd>2 nodes × 2 GPUs per node = 4 GPUs, 3 slots per GPU</dd>');
    expect(html).toContain('<dt>Cost model preset</dt><dd>paper-testbed</dd>');
  });

  test('has one summary table per dispatch scheme', () => {
    expect(headers(html, 'summary-flat')).toEqual([
      'Strategy',
      'MoE layer (ms)',
      'vs best EPLB',
      'All-to-All (ms)',
      'Cross-node copies/token',
      'Cross-GPU copies/token',
      'Local hits (%)',
      'Balancedness',
      'GPU idle (ms)',
      'Plan (ms)',
      'Duplicate instances',
    ]);
    expect(tableRows(html, 'summary-flat').map((row) => row[0])).toEqual(['eplb-locality', 'grace']);
    expect(tableRows(html, 'summary-hierarchical').map((row) => row[0])).toEqual(['eplb-locality', 'grace']);
  });

  test.each([
    { scheme: 'hierarchical', strategyRow: 1, column: 1, text: '1.500' },
    { scheme: 'hierarchical', strategyRow: 1, column: 2, text: '0.750' },
    { scheme: 'hierarchical', strategyRow: 0, column: 2, text: '1.000' },
    { scheme: 'flat', strategyRow: 1, column: 2, text: '0.800' },
    { scheme: 'flat', strategyRow: 1, column: 6, text: '40.0' },
    { scheme: 'hierarchical', strategyRow: 1, column: 4, text: '0.625' },
    { scheme: 'flat', strategyRow: 0, column: 10, text: '2' },
    { scheme: 'flat', strategyRow: 0, column: 9, text: '12.3' },
  ] as const)('$scheme row $strategyRow column $column shows $text', ({ scheme, strategyRow, column, text }) => {
    expect(tableRows(html, `summary-${scheme}`)[strategyRow]?.[column]).toBe(text);
  });

  test('highlights the best value per column', () => {
    const flat = html.slice(html.indexOf('<table id="summary-flat">'));
    const graceRow = /<tr><th scope="row"[^>]*>grace<\/th>(.*?)<\/tr>/.exec(flat)?.[1] ?? '';
    const eplbRow = /<tr><th scope="row"[^>]*>eplb-locality<\/th>(.*?)<\/tr>/.exec(flat)?.[1] ?? '';
    expect(graceRow).toContain('<td class="num best">3.200</td>');
    expect(graceRow).toContain('<td class="num best">40.0</td>');
    expect(graceRow).toContain('<td class="num best">0</td>');
    expect(eplbRow).toContain('<td class="num">2</td>');
    expect(eplbRow).toContain('<td class="num">4.000</td>');
  });

  test('leaves tied columns unmarked', () => {
    const flat = html.slice(html.indexOf('<table id="summary-flat">'), html.indexOf('</table>', html.indexOf('<table id="summary-flat">')));
    expect(flat).not.toContain('<td class="num best">1.200</td>');
    expect(count(flat, '<td class="num">1.200</td>')).toBe(2);
  });

  test('escapes strategy names', () => {
    const escaped = renderCompareReport(fixture('grace <b>&"x'));
    expect(escaped).toContain('grace &lt;b&gt;&amp;&quot;x');
    expect(escaped).not.toContain('<b>&"');
    expect(escaped).not.toContain('<b>');
  });

  test('draws one line per strategy in every per-layer chart', () => {
    const charts = html.match(/<svg [\s\S]*?<\/svg>/g) ?? [];
    const lineCharts = charts.filter((svg) => svg.includes('<path class="series"'));
    expect(lineCharts).toHaveLength(4);
    for (const svg of lineCharts) {
      expect(count(svg, '<path class="series"')).toBe(2);
    }
  });

  test('draws a layers x GPUs heatmap per strategy', () => {
    const charts = html.match(/<svg [\s\S]*?<\/svg>/g) ?? [];
    const heatmaps = charts.filter((svg) => svg.includes('<rect class="cell"'));
    expect(heatmaps).toHaveLength(2);
    for (const svg of heatmaps) {
      expect(count(svg, '<rect class="cell"')).toBe(3 * 4);
    }
  });

  test('heatmap cells show the share of the layer load', () => {
    expect(html).toContain('<title>layer 0, GPU 3: 40.0%</title>');
    expect(html).toContain('<title>layer 1, GPU 1: 30.0%</title>');
  });

  test('layer without load shows no data', () => {
    expect(count(html, '<title>layer 2, GPU 0: no data</title>')).toBe(1);
  });

  test('per-layer traffic is in MB', () => {
    expect(html).toContain('<title>eplb-locality: 1, 2</title>');
    expect(html).toContain('<title>grace: 1, 1</title>');
  });

  test('explains how to read the metrics', () => {
    expect(html).toContain('How to read this');
    expect(html).toContain('modelled by the cost model');
    expect(html).toContain('Maximum over mean GPU load (token-expert pairs) within a layer, averaged over layers');
  });

  test('output is deterministic', () => {
    expect(renderCompareReport(fixture())).toBe(html);
  });
});

describe('renderCompareReport edge cases', () => {
  test('without EPLB the ratio column shows dashes', () => {
    const result = fixture();
    const withoutEplb = { ...result, strategies: result.strategies.filter((s) => s.name === 'grace') };
    const html = renderCompareReport(withoutEplb);
    expect(tableRows(html, 'summary-flat')[0]?.[2]).toBe('–');
    expect(html).toContain('No strategy name starts with &quot;eplb&quot;');
  });

  test('non-finite metrics render as dashes', () => {
    const result = fixture();
    const broken = {
      ...result,
      strategies: result.strategies.map((s) => ({
        ...s,
        metrics: { ...s.metrics, gpuIdleTimeMs: Number.NaN, balancedness: Number.POSITIVE_INFINITY },
        perLayer: { ...s.perLayer, crossNodeBytes: [Number.NaN, 1e6, Number.NaN] },
      })),
    };
    const html = renderCompareReport(broken);
    expect(html).not.toContain('NaN');
    expect(html).not.toContain('Infinity');
    expect(tableRows(html, 'summary-flat')[0]?.[8]).toBe('–');
  });

  test('empty result still renders the setup', () => {
    const html = renderCompareReport({ ...fixture(), strategies: [] });
    expect(html).toContain('nothing to compare');
    expect(html).toContain('<dt>Trace</dt><dd>tiny-trace</dd>');
    expect(html).not.toContain('NaN');
  });

  test('a scheme without results gets no table', () => {
    const result = fixture();
    const flatOnly = { ...result, strategies: result.strategies.filter((s) => s.dispatch === 'flat') };
    const html = renderCompareReport(flatOnly);
    expect(html).toContain('<table id="summary-flat">');
    expect(html).not.toContain('<table id="summary-hierarchical">');
    expect(html).toContain('(flat dispatch)');
  });
});

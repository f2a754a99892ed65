/**
 * HTML report of `grace-moe compare`: the setup, one summary table per dispatch scheme, per-layer
 * traffic and time charts, and per-GPU load heatmaps, in one self-contained page.
 */
import type { CompareResult, DispatchScheme, StrategyResult } from '../evaluator/types.js';
import { gpuCount } from '../topology.js';
import {
  formatFixed,
  formatNumber,
  htmlFacts,
  htmlFigure,
  htmlPage,
  htmlParagraph,
  htmlTable,
  MISSING_VALUE,
  type HtmlSection,
  type TableCellSpec,
} from './html.js';
import { barChart, heatmap, lineChart, type LineSeries } from './svg.js';

/** Order of the dispatch schemes in the report. A scheme is shown only if the result contains it. */
const SCHEME_ORDER: readonly DispatchScheme[] = ['flat', 'hierarchical'];
/** Bytes per MB in the charts (decimal megabytes). */
const BYTES_PER_MB = 1e6;

/** Renders the compare result as one self-contained HTML document (see htmlPage()). */
export function renderCompareReport(result: CompareResult): string {
  const names = strategyNames(result);
  const schemes = schemesOf(result);
  const { nodes, gpusPerNode } = result.topology;

  const sections: HtmlSection[] = [setupSection(result, names, schemes), howToReadSection(result)];
  if (result.strategies.length === 0) {
    sections.push({ heading: 'Results', body: htmlParagraph('The result contains no strategies, so there is nothing to compare.') });
  } else {
    sections.push(strategiesSection(result, names));
    sections.push(overviewSection(result, names, schemes));
    for (const scheme of schemes) {
      sections.push(summarySection(result, scheme));
    }
    sections.push(perLayerSection(result, names, schemes, 'traffic'));
    sections.push(perLayerSection(result, names, schemes, 'time'));
    sections.push(loadSection(result, names));
  }

  return htmlPage({
    title: `grace-moe compare: ${result.trace.name}`,
    subtitle: `${result.trace.model} on ${nodes} × ${gpusPerNode} GPUs, cost model preset "${result.preset}"`,
    sections,
  });
}

/** Distinct strategy names in first-seen order. A name's position fixes its colour in every chart. */
function strategyNames(result: CompareResult): string[] {
  return [...new Set(result.strategies.map((strategy) => strategy.name))];
}

function schemesOf(result: CompareResult): DispatchScheme[] {
  const present = new Set(result.strategies.map((strategy) => strategy.dispatch));
  return SCHEME_ORDER.filter((scheme) => present.has(scheme));
}

function strategiesOf(result: CompareResult, scheme: DispatchScheme): StrategyResult[] {
  return result.strategies.filter((strategy) => strategy.dispatch === scheme);
}

function setupSection(result: CompareResult, names: readonly string[], schemes: readonly DispatchScheme[]): HtmlSection {
  const { nodes, gpusPerNode, slotsPerGpu } = result.topology;
  const facts: [string, string][] = [
    ['Trace', result.trace.name],
    ['Model', result.trace.model],
    ['Split', result.trace.split],
    ['Profile tokens', `${formatNumber(result.trace.profileTokens)} (the plans are fitted on these)`],
    ['Evaluation tokens', `${formatNumber(result.trace.evaluationTokens)} (all metrics are measured on these)`],
    [
      'Topology',
      `${nodes} nodes × ${gpusPerNode} GPUs per node = ${gpuCount(result.topology)} GPUs, ${slotsPerGpu} slots per GPU`,
    ],
    ['Cost model preset', result.preset],
    ['Strategies', `${names.length}, each under ${schemes.length === 0 ? 'no' : schemes.join(' and ')} dispatch`],
  ];
  return { heading: 'Setup', body: htmlFacts(facts) };
}

function howToReadSection(result: CompareResult): HtmlSection {
  const intro =
    `Every time below is modelled by the cost model (preset "${result.preset}") from the replayed routing ` +
    'decisions, and nothing was measured on GPUs. Only the planning time is measured wall-clock time. ' +
    'Placements are compared under the same dispatch scheme: flat dispatch sends a token once to every ' +
    'destination GPU, hierarchical dispatch once to every destination node and then fans out inside it. ' +
    'In the tables, the best value of each column is bold on a green background.';
  const metrics: [string, string][] = [
    ['MoE layer (ms)', 'Modelled time of one MoE layer per batch (dispatch, expert compute and combine), averaged over layers and batches.'],
    [
      'vs best EPLB',
      'MoE-layer time divided by that of the fastest EPLB variant (names starting with "eplb") under the same dispatch scheme. Below 1 is faster.',
    ],
    ['All-to-All (ms)', 'Modelled dispatch plus combine time per batch and layer.'],
    [
      'Copies per token',
      'Hidden-state copies that one token sends to other nodes (cross-node) or to other GPUs (cross-GPU) in one MoE layer, averaged over tokens and layers.',
    ],
    ['Local hits (%)', "Share of token-expert pairs served on the token's home GPU."],
    ['Balancedness', 'Maximum over mean GPU load (token-expert pairs) within a layer, averaged over layers. A value of 1 is perfect balance.'],
    ['GPU idle (ms)', 'Mean time a GPU waits for the slowest GPU, per batch and layer.'],
    ['Plan (ms)', 'Wall-clock time the strategy took to compute its placement.'],
    [
      'Duplicate instances',
      'Slots that hold a second instance of an expert already on the same GPU. Such a slot is wasted, because the GPU already serves that expert.',
    ],
  ];
  return { heading: 'How to read this', body: `${htmlParagraph(intro)}\n${htmlFacts(metrics)}` };
}

function strategiesSection(result: CompareResult, names: readonly string[]): HtmlSection {
  const facts = names.map((name): [string, string] => [name, descriptionOf(result, name)]);
  return { heading: 'Strategies', body: htmlFacts(facts) };
}

function descriptionOf(result: CompareResult, name: string): string {
  return result.strategies.find((strategy) => strategy.name === name)?.description ?? '';
}

function overviewSection(result: CompareResult, names: readonly string[], schemes: readonly DispatchScheme[]): HtmlSection {
  const series = schemes.map((scheme, index) => ({
    name: `${scheme} dispatch`,
    colorIndex: index,
    values: names.map(
      (name) =>
        result.strategies.find((strategy) => strategy.name === name && strategy.dispatch === scheme)?.metrics
          .moeLayerTimeMs ?? Number.NaN,
    ),
  }));
  const chart = barChart({
    title: 'Modelled MoE-layer time per batch',
    categories: names,
    series,
    yLabel: 'ms',
    width: 760,
    valueFormat: (value) => `${formatFixed(value, decimalsForColumn([value]))} ms`,
  });
  return { heading: 'Overview', body: htmlFigure(chart, 'Lower is better. Hover over a bar for its value.') };
}

// ---------------------------------------------------------------------------------------------
// Summary tables.

interface SummaryColumn {
  readonly header: string;
  readonly better: 'lower' | 'higher';
  readonly value: (strategy: StrategyResult) => number;
  /** Chooses the formatter once per column, so that all its cells have the same decimals. */
  readonly formatter: (values: readonly number[]) => (value: number) => string;
}

/** Decimals that give the largest absolute value of a column four significant digits, 0 to 4. */
function decimalsForColumn(values: readonly number[]): number {
  const largest = values.reduce((max, value) => (Number.isFinite(value) ? Math.max(max, Math.abs(value)) : max), 0);
  if (largest === 0) {
    return 0;
  }
  return Math.min(4, Math.max(0, 3 - Math.floor(Math.log10(largest))));
}

const adaptive = (values: readonly number[]) => {
  const decimals = decimalsForColumn(values);
  return (value: number): string => formatFixed(value, decimals);
};
const fixedDecimals = (decimals: number) => () => (value: number): string => formatFixed(value, decimals);

function summaryColumns(bestEplbTimeMs: number): SummaryColumn[] {
  return [
    { header: 'MoE layer (ms)', better: 'lower', value: (s) => s.metrics.moeLayerTimeMs, formatter: adaptive },
    {
      header: 'vs best EPLB',
      better: 'lower',
      value: (s) => (bestEplbTimeMs > 0 ? s.metrics.moeLayerTimeMs / bestEplbTimeMs : Number.NaN),
      formatter: fixedDecimals(3),
    },
    { header: 'All-to-All (ms)', better: 'lower', value: (s) => s.metrics.allToAllTimeMs, formatter: adaptive },
    {
      header: 'Cross-node copies/token',
      better: 'lower',
      value: (s) => s.metrics.crossNodeCopiesPerToken,
      formatter: fixedDecimals(3),
    },
    {
      header: 'Cross-GPU copies/token',
      better: 'lower',
      value: (s) => s.metrics.crossGpuCopiesPerToken,
      formatter: fixedDecimals(3),
    },
    { header: 'Local hits (%)', better: 'higher', value: (s) => s.metrics.localHitRatio * 100, formatter: fixedDecimals(1) },
    { header: 'Balancedness', better: 'lower', value: (s) => s.metrics.balancedness, formatter: fixedDecimals(3) },
    { header: 'GPU idle (ms)', better: 'lower', value: (s) => s.metrics.gpuIdleTimeMs, formatter: adaptive },
    { header: 'Plan (ms)', better: 'lower', value: (s) => s.metrics.planTimeMs, formatter: fixedDecimals(1) },
    { header: 'Duplicate instances', better: 'lower', value: (s) => s.metrics.duplicateInstances, formatter: fixedDecimals(0) },
  ];
}

/** Lowest MoE-layer time among the strategies whose names start with "eplb" (any case), or NaN if there are none. */
function bestEplbTime(strategies: readonly StrategyResult[]): number {
  const times = strategies
    .filter((strategy) => strategy.name.toLowerCase().startsWith('eplb'))
    .map((strategy) => strategy.metrics.moeLayerTimeMs)
    .filter((time) => Number.isFinite(time));
  return times.length > 0 ? Math.min(...times) : Number.NaN;
}

/**
 * Formats one column and marks its best cells. Cells are compared as displayed, so values that
 * print the same are all marked, and a column whose values all print the same marks nothing.
 */
function summaryColumnCells(column: SummaryColumn, strategies: readonly StrategyResult[]): TableCellSpec[] {
  const values = strategies.map(column.value);
  const format = column.formatter(values);
  const texts = values.map((value) => (Number.isFinite(value) ? format(value) : MISSING_VALUE));
  const finite = values.filter((value) => Number.isFinite(value));
  const best = column.better === 'lower' ? Math.min(...finite) : Math.max(...finite);
  const bestText = finite.length > 0 ? format(best) : undefined;
  const distinct = new Set(texts.filter((text) => text !== MISSING_VALUE));

  return texts.map((text) => ({ text, numeric: true, highlight: distinct.size > 1 && text === bestText }));
}

function summarySection(result: CompareResult, scheme: DispatchScheme): HtmlSection {
  const strategies = strategiesOf(result, scheme);
  const bestEplb = bestEplbTime(strategies);
  const columns = summaryColumns(bestEplb);
  const cellsByColumn = columns.map((column) => summaryColumnCells(column, strategies));
  const rows = strategies.map((strategy, row) => [
    { text: strategy.name, title: strategy.description },
    ...cellsByColumn.map((cells) => cells[row] ?? { text: MISSING_VALUE, numeric: true }),
  ]);

  const table = htmlTable(
    ['Strategy', ...columns.map((column) => column.header)],
    rows,
    { rowHeaders: true, id: `summary-${scheme}`, caption: `${capitalise(scheme)} dispatch, ${strategies.length} strategies` },
  );
  const note = Number.isFinite(bestEplb)
    ? ''
    : `\n${htmlParagraph('No strategy name starts with "eplb" under this scheme, so the EPLB ratio is not available.', 'note')}`;
  return { heading: `Summary: ${scheme} dispatch`, id: `summary-${scheme}-section`, body: `${table}${note}` };
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// ---------------------------------------------------------------------------------------------
// Per-layer charts.

function perLayerSection(
  result: CompareResult,
  names: readonly string[],
  schemes: readonly DispatchScheme[],
  kind: 'traffic' | 'time',
): HtmlSection {
  const charts = schemes.map((scheme) => {
    const series: LineSeries[] = strategiesOf(result, scheme).map((strategy) => {
      const perLayer = kind === 'traffic' ? strategy.perLayer.crossNodeBytes : strategy.perLayer.moeLayerTimeMs;
      const scale = kind === 'traffic' ? 1 / BYTES_PER_MB : 1;
      return {
        name: strategy.name,
        colorIndex: names.indexOf(strategy.name),
        points: perLayer.map((value, layer): [number, number] => [layer, value * scale]),
      };
    });
    const title =
      kind === 'traffic' ? `Cross-node traffic, ${scheme} dispatch` : `Modelled MoE-layer time, ${scheme} dispatch`;
    return lineChart({
      title,
      xLabel: 'MoE layer index',
      yLabel: kind === 'traffic' ? 'MB (dispatch + combine)' : 'ms per batch',
      series,
      width: 540,
      xIntegerTicks: true,
    });
  });

  if (kind === 'traffic') {
    return {
      heading: 'Cross-node traffic per layer',
      body:
        htmlParagraph(
          'Bytes that crossed nodes in each MoE layer over all evaluation tokens, dispatch and combine together. 1 MB is 10^6 bytes.',
        ) + `\n<div class="figures">${charts.map((chart) => htmlFigure(chart)).join('')}</div>`,
    };
  }
  return {
    heading: 'MoE-layer time per layer',
    body:
      htmlParagraph('Modelled time of each MoE layer per batch: dispatch, expert compute and combine.') +
      `\n<div class="figures">${charts.map((chart) => htmlFigure(chart)).join('')}</div>`,
  };
}

// ---------------------------------------------------------------------------------------------
// Load heatmaps.

/** shares[l][g]: GPU g's share of layer l's token-expert pairs, or NaN for a layer without load. */
function loadShares(gpuLoads: readonly (readonly number[])[], gpus: number): number[][] {
  return gpuLoads.map((loads) => {
    const total = loads.reduce((sum, load) => sum + (Number.isFinite(load) ? load : 0), 0);
    return Array.from({ length: gpus }, (_, gpu) => {
      const load = loads[gpu];
      return total > 0 && load !== undefined && Number.isFinite(load) ? load / total : Number.NaN;
    });
  });
}

/** Picks the hierarchical result of a strategy, else its first one. Loads do not depend on the dispatch scheme. */
function loadSource(result: CompareResult, name: string): StrategyResult | undefined {
  const own = result.strategies.filter((strategy) => strategy.name === name);
  return own.find((strategy) => strategy.dispatch === 'hierarchical') ?? own[0];
}

function loadSection(result: CompareResult, names: readonly string[]): HtmlSection {
  const gpus = gpuCount(result.topology);
  const sources = names
    .map((name) => loadSource(result, name))
    .filter((source): source is StrategyResult => source !== undefined);
  const sharesOf = sources.map((source) => loadShares(source.perLayer.gpuLoads, gpus));
  const allShares = sharesOf.flat(2).filter((share) => Number.isFinite(share));
  const low = allShares.length > 0 ? Math.min(...allShares) : 0;
  const high = allShares.length > 0 ? Math.max(...allShares) : 0;
  const percent = (value: number): string => `${formatFixed(value * 100, 1)}%`;

  const figures = sources.map((source, index) => {
    const shares = sharesOf[index] ?? [];
    const chart = heatmap({
      title: source.name,
      rows: shares.map((_, layer) => String(layer)),
      columns: Array.from({ length: gpus }, (_, gpu) => String(gpu)),
      rowAxisLabel: 'layer',
      columnAxisLabel: 'GPU',
      values: shares,
      valueLabel: 'share of the layer load',
      min: low,
      max: high,
      columnGroupSize: result.topology.gpusPerNode,
      valueFormat: percent,
      cellWidth: Math.max(10, Math.min(40, Math.floor(280 / Math.max(1, gpus)))),
      cellHeight: Math.max(6, Math.min(16, Math.floor(420 / Math.max(1, shares.length)))),
    });
    const caption = `Balancedness ${formatFixed(source.metrics.balancedness, 3)} (${source.dispatch} dispatch).`;
    return htmlFigure(chart, caption);
  });

  const intro =
    "Each cell is a GPU's share of the token-expert pairs of one MoE layer, so darker cells are hotter GPUs. " +
    `With perfect balance every cell is ${percent(1 / Math.max(1, gpus))}. ` +
    `All heatmaps share one colour scale, from ${percent(low)} to ${percent(high)}, and thick lines separate the nodes. ` +
    'The loads come from the hierarchical run of each strategy where there is one, because the dispatch scheme does not change which GPU serves a token-expert pair.';
  return {
    heading: 'Load per GPU',
    body: `${htmlParagraph(intro)}\n<div class="figures">${figures.join('')}</div>`,
  };
}

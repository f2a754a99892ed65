/**
 * HTML report of `grace-moe local`: the generations the run went through, the control loop's
 * rounds, and a per-second timeline of cross-node traffic, local hits, balance and latency.
 */
import type { LocalResult } from '../local/run.js';
import { formatFixed, htmlFacts, htmlFigure, htmlPage, htmlParagraph, htmlTable, type HtmlSection } from './html.js';
import { lineChart, type LineSeries } from './svg.js';

const KB = 1024;

/** Splits a per-second metric into one series per generation, so a switch shows as a colour change. */
function seriesByGeneration(result: LocalResult, pick: (point: LocalResult['timeline'][number]) => number): LineSeries[] {
  const generations = [...new Set(result.timeline.map((point) => point.generation))].sort((a, b) => a - b);
  return generations.map((generation, index) => ({
    name: `generation ${generation}`,
    colorIndex: index,
    points: result.timeline.filter((point) => point.generation === generation).map((point) => [point.second, pick(point)] as const),
  }));
}

export function renderLocalReport(result: LocalResult): string {
  const { topology } = result;
  const setup: HtmlSection = {
    heading: 'Setup',
    body: htmlFacts([
      ['trace', `${result.trace.name} (${result.trace.model}), requests in ${result.trace.order === 'mixed' ? 'shuffled' : 'file'} order`],
      ['topology', `${topology.nodes} nodes × ${topology.gpusPerNode} GPUs, ${topology.slotsPerGpu} slots per GPU`],
      ['duration', `${formatFixed(result.durationMs / 1000, 1)} s`],
      ['requests', `${result.requests.sent} sent, ${result.requests.completed} completed, ${result.requests.failed} failed`],
    ]),
  };

  const generations: HtmlSection = {
    heading: 'Generations',
    body:
      htmlTable(
        ['generation', 'strategy', 'tokens', 'cross-node KB/token', 'cross-node MB', 'local hits', 'balancedness', 'p50 ms', 'p99 ms'],
        result.generations.map((g) => [
          g.generation,
          g.strategy,
          g.tokens,
          { text: formatFixed(g.crossNodeBytesPerToken / KB, 2), numeric: true },
          { text: formatFixed(g.crossNodeBytes / 1e6, 1), numeric: true },
          { text: `${formatFixed(100 * g.localHitRatio, 1)}%`, numeric: true },
          { text: formatFixed(g.balancedness, 3), numeric: true },
          { text: formatFixed(g.p50Ms, 1), numeric: true },
          { text: formatFixed(g.p99Ms, 1), numeric: true },
        ]),
      ) +
      htmlParagraph(
        'Measured from the engines: cross-node bytes are hidden states sent to other nodes and their results sent back; local hits are token-expert pairs served on the token\'s home GPU; balancedness is the max over mean GPU load within a layer, averaged over layers; latency is per batch, as the load driver saw it.',
      ),
  };

  const timeline: HtmlSection = {
    heading: 'Timeline',
    body: [
      lineChart({
        title: 'Cross-node traffic per token',
        xLabel: 'second of the run',
        yLabel: 'KB per token',
        series: seriesByGeneration(result, (p) => p.crossNodeBytesPerToken / KB),
      }),
      lineChart({
        title: 'Pairs served on the home GPU',
        xLabel: 'second of the run',
        yLabel: 'share of pairs',
        series: seriesByGeneration(result, (p) => p.localHitRatio),
      }),
      lineChart({
        title: 'Balancedness (max / mean GPU load)',
        xLabel: 'second of the run',
        yLabel: 'max / mean',
        series: seriesByGeneration(result, (p) => p.balancedness),
      }),
      lineChart({
        title: 'Batch latency p99',
        xLabel: 'second of the run',
        yLabel: 'ms',
        series: seriesByGeneration(result, (p) => p.p99Ms),
      }),
    ]
      .map((chart) => htmlFigure(chart))
      .join('\n'),
  };

  const rounds: HtmlSection = {
    heading: 'Control loop rounds',
    body: htmlTable(
      ['round', 'second', 'outcome', 'active generation', 'predicted gain', 'moves', 'plan ms', 'reason'],
      result.rounds.map((round) => [
        round.round,
        { text: formatFixed((round.atMs - (result.rounds[0]?.atMs ?? round.atMs)) / 1000, 0), numeric: true },
        round.outcome,
        round.activeGeneration,
        { text: round.predictedGain === null ? '–' : `${formatFixed(100 * round.predictedGain, 1)}%`, numeric: true },
        round.moves,
        { text: formatFixed(round.planTimeMs, 0), numeric: true },
        round.reason,
      ]),
    ),
  };

  return htmlPage({
    title: `grace-moe local: ${result.trace.name}`,
    subtitle: `${topology.nodes} × ${topology.gpusPerNode} GPUs on this machine, ${result.generations.length} generations`,
    sections: [setup, generations, timeline, rounds],
  });
}

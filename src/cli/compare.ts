import { compareStrategies, DEFAULT_COMPARE_SAMPLE } from '../compare.js';
import { UsageError } from '../errors.js';
import { HARDWARE_PRESETS } from '../evaluator/cost-model.js';
import type { CompareResult } from '../evaluator/types.js';
import { renderCompareReport } from '../report/compare-report.js';
import { parseSplit, splitTrace } from '../trace/split.js';
import { oneOf, parseFlags, positiveInteger } from './args.js';
import type { Command } from './command.js';
import { checkTopologyFlags, costModelFor, loadTrace, TOPOLOGY_FLAGS, topologyFromFlags, writeOutput } from './inputs.js';
import { ProgressReporter } from './progress.js';
import { readTrace } from '../trace/read.js';
import { formatTable } from './table.js';

const usage = `Usage: grace-moe compare [flags]

Plans every strategy on the profile part of a trace and evaluates it on the rest, under flat and
hierarchical dispatch, with the cost model of a hardware preset.

Flags:
  --trace FILE            routing trace, JSON Lines, plain or gzip (default: the shipped DeepSeek-V2-Lite trace)
  --topology NxG          nodes x GPUs per node (default 2x4)
  --slots-per-gpu S       expert slots per GPU and layer (default: primaries per GPU + 1)
  --redundant-slots R     spare slots per GPU beyond the primaries (default 1)
  --split SPEC            0.5: the first half of the tokens profiles, the rest evaluates;
                          domain:0.5: the first half of every domain (request prefix before "/");
                          req:intent,law: those domains profile, the others evaluate (default domain:0.5)
  --profile FILE          plan on all of this trace and evaluate on all of --trace (instead of --split)
  --preset NAME           hardware preset: ${Object.keys(HARDWARE_PRESETS).join(', ')} (default a100-25gbe)
  --sample N              profile tokens replayed to score planner candidates (default ${DEFAULT_COMPARE_SAMPLE})
  --format table|json     output format (default: table on a terminal, json otherwise)
  --report FILE.html      also write a self-contained HTML report with per-layer charts
`;

const PHASE_LABELS = { profile: 'counting profile statistics', plan: 'planning', evaluate: 'evaluating' } as const;

export const compareCommand: Command = {
  name: 'compare',
  summary: 'compare grace with contiguous, round-robin and EPLB placements on a trace',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('compare', argv, {
      ...TOPOLOGY_FLAGS,
      split: { type: 'string' },
      profile: { type: 'string' },
      sample: { type: 'string' },
      format: { type: 'string' },
      report: { type: 'string' },
    });
    if (values.split !== undefined && values.profile !== undefined) {
      throw new UsageError('--split and --profile both choose the profile data; give only one of them');
    }
    const format = oneOf('--format', values.format, ['table', 'json'] as const, io.stdout.isTTY ? 'table' : 'json');
    const sampleCapacity = positiveInteger('--sample', values.sample, DEFAULT_COMPARE_SAMPLE);
    const splitSpec = values.profile === undefined ? parseSplit(values.split ?? 'domain:0.5') : null;

    checkTopologyFlags(values);
    const progress = new ProgressReporter(io.stderr);
    const trace = await loadTrace(values.trace, progress, io.stderr);
    let split;
    if (splitSpec !== null) {
      split = splitTrace(trace, splitSpec);
    } else {
      const profile = await readTrace(values.profile as string);
      if (profile.meta.layers !== trace.meta.layers || profile.meta.experts !== trace.meta.experts || profile.meta.topK !== trace.meta.topK) {
        throw new UsageError(
          `--profile ${values.profile} has ${profile.meta.layers} layers x ${profile.meta.experts} experts, top-${profile.meta.topK}; ` +
            `--trace has ${trace.meta.layers} x ${trace.meta.experts}, top-${trace.meta.topK}; both must record the same model`,
        );
      }
      split = { profile, evaluation: trace, description: `profile: all of ${values.profile}; evaluation: all of the trace` };
    }
    const topology = topologyFromFlags(values, trace.meta.experts);
    const { cost, preset } = costModelFor(trace, values.preset);

    const result = await compareStrategies({
      signal: io.signal,
      split,
      topology,
      cost,
      preset,
      sampleCapacity,
      onProgress: (event) => progress.update(PHASE_LABELS[event.phase], event.done, event.total),
    });
    progress.finish();

    io.stdout.write(format === 'json' ? `${JSON.stringify(compareJson(result), null, 2)}\n` : compareTable(result));
    if (values.report !== undefined) {
      await writeOutput('--report', values.report, renderCompareReport(result));
      io.stderr.write(`report written to ${values.report}\n`);
    }
    return 0;
  },
};

/** The JSON document of `compare --format json`. */
export function compareJson(result: CompareResult): object {
  return {
    topology: result.topology,
    trace: result.trace,
    preset: result.preset,
    strategies: result.strategies.map(({ name, dispatch, metrics }) => ({ name, dispatch, metrics })),
    ...(result.notes ? { notes: result.notes } : {}),
  };
}

function compareTable(result: CompareResult): string {
  const { topology, trace } = result;
  const lines = [
    `trace ${trace.name}: ${trace.profileTokens} profile tokens, ${trace.evaluationTokens} evaluation tokens (${trace.split})`,
    `topology ${topology.nodes}x${topology.gpusPerNode}, ${topology.slotsPerGpu} slots per GPU; cost model ${result.preset}`,
    '',
  ];
  for (const dispatch of ['flat', 'hierarchical'] as const) {
    const rows = result.strategies.filter((s) => s.dispatch === dispatch);
    const eplbTimes = rows.filter((s) => s.name.startsWith('eplb')).map((s) => s.metrics.moeLayerTimeMs);
    const bestEplb = eplbTimes.length > 0 ? Math.min(...eplbTimes) : NaN;
    lines.push(`${dispatch} dispatch`);
    lines.push(
      formatTable(
        ['strategy', 'MoE ms', 'vs best EPLB', 'A2A ms', 'x-node copies', 'x-GPU copies', 'local hits', 'balance', 'idle ms', 'plan ms', 'dups'],
        rows.map(({ name, metrics: m }) => [
          name,
          m.moeLayerTimeMs.toFixed(3),
          Number.isFinite(bestEplb) ? (m.moeLayerTimeMs / bestEplb).toFixed(3) : '-',
          m.allToAllTimeMs.toFixed(3),
          m.crossNodeCopiesPerToken.toFixed(3),
          m.crossGpuCopiesPerToken.toFixed(3),
          `${(100 * m.localHitRatio).toFixed(1)}%`,
          m.balancedness.toFixed(3),
          m.gpuIdleTimeMs.toFixed(3),
          m.planTimeMs.toFixed(0),
          String(m.duplicateInstances),
        ]),
      ),
    );
    lines.push('');
  }
  for (const note of result.notes ?? []) lines.push(`note: ${note}`);
  lines.push('Copies are per token per layer; times are modelled per batch and layer by the cost model.');
  return `${lines.join('\n')}\n`;
}

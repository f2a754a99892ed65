import { CONTROL_DEFAULTS, type LoopLogger, type RebalanceMode, type RoundReport } from '../control/loop.js';
import { UsageError } from '../errors.js';
import { renderLocalReport } from '../report/local-report.js';
import { runLocal, type LocalProgress, type LocalResult, type TraceOrder } from '../local/run.js';
import { fileURLToPath } from 'node:url';
import { oneOf, parseFlags, positiveInteger } from './args.js';
import type { Command, CommandIo } from './command.js';
import { parseDuration } from './duration.js';
import { checkTopologyFlags, costModelFor, loadTrace, TOPOLOGY_FLAGS, topologyFromFlags, writeOutput } from './inputs.js';
import { ProgressReporter } from './progress.js';
import { formatTable } from './table.js';

const usage = `Usage: grace-moe local [flags]

Runs the whole system on this machine: one router and one reference engine process per simulated
node on loopback ports, the control loop, and a replay of a routing trace through the engines.
The deployment starts on a contiguous plan (generation 1); the control loop re-plans from the
routers' statistics and rolls better plans out while traffic flows. Ctrl-C stops everything.

Flags:
  --trace FILE                 routing trace (default: the shipped DeepSeek-V2-Lite trace)
  --topology NxG               nodes x GPUs per node (default 2x4)
  --slots-per-gpu S            expert slots per GPU and layer (default: primaries per GPU + 1)
  --redundant-slots R          spare slots per GPU beyond the primaries (default 1)
  --duration D                 how long to send traffic, e.g. 60s or 2m (default 60s)
  --rate N                     tokens per second sent to the engines (default 600)
  --batch-tokens N             tokens per request (default 64)
  --concurrency N              requests in flight at most (default 8)
  --order mixed|file           mixed: requests shuffled so every domain is present all along;
                               file: the trace order, its domains one after another (default mixed)
  --mode Auto|Observe|Off      Auto rolls better plans out, Observe only plans and reports (default Auto)
  --interval D                 time between control rounds (default 10s)
  --half-life D                half-life of the statistics smoothing (default 30s)
  --min-gain X                 smallest predicted relative gain worth a rollout (default 0.05)
  --max-moves N                most expert instances added per rollout (default 1024)
  --dispatch SCHEME            flat or hierarchical: the dispatch the planner scores for (default hierarchical)
  --preset NAME                hardware preset of the planner's cost model (default a100-25gbe)
  --compute-micros N           engine compute time per token-expert pair in microseconds (default 2)
  --router http|in-process     engines ask their router over HTTP or choose in process (default http)
  --format table|json          summary format (default: table on a terminal, json otherwise)
  --report FILE.html           write a self-contained HTML report with the timeline
`;

const FLAGS = {
  ...TOPOLOGY_FLAGS,
  duration: { type: 'string' },
  rate: { type: 'string' },
  'batch-tokens': { type: 'string' },
  concurrency: { type: 'string' },
  order: { type: 'string' },
  mode: { type: 'string' },
  interval: { type: 'string' },
  'half-life': { type: 'string' },
  'min-gain': { type: 'string' },
  'max-moves': { type: 'string' },
  dispatch: { type: 'string' },
  'compute-micros': { type: 'string' },
  router: { type: 'string' },
  format: { type: 'string' },
  report: { type: 'string' },
} as const;

function fraction(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
  if (!(parsed >= 0 && parsed < 1)) throw new UsageError(`${flag} must be a number in [0, 1), got "${value}"`);
  return parsed;
}

/** Logger for the control loop: warnings and errors as one line each on stderr. */
function stderrLogger(io: CommandIo, clear: () => void): LoopLogger {
  const line = (level: string, fields: object, message: string): void => {
    clear();
    const detail = Object.entries(fields)
      .map(([key, value]) => `${key}=${value instanceof Error ? value.message : typeof value === 'object' ? JSON.stringify(value) : String(value)}`)
      .join(' ');
    io.stderr.write(`${level}: ${message}${detail ? ` (${detail})` : ''}\n`);
  };
  return {
    info: () => undefined,
    warn: (fields, message) => line('warning', fields, message),
    error: (fields, message) => line('error', fields, message),
  };
}

function describeRound(report: RoundReport): string {
  const gain = report.predictedGain === null ? '' : `, predicted gain ${(100 * report.predictedGain).toFixed(1)}%`;
  return `round ${report.round}: ${report.outcome}${gain} - ${report.reason}`;
}

function progressLine(progress: LocalProgress): string {
  const elapsed = `${Math.floor(progress.elapsedMs / 1000)}s/${Math.round(progress.durationMs / 1000)}s`;
  const recent = progress.recent;
  const parts = [elapsed, `generation ${progress.generation}`, `${Math.round(progress.tokensPerSecond)} tokens/s`];
  if (recent) {
    parts.push(
      `local hits ${(100 * recent.localHitRatio).toFixed(1)}%`,
      `cross-node ${(recent.crossNodeBytesPerToken / 1024).toFixed(1)} KB/token (${((recent.crossNodeBytesPerToken * progress.tokensPerSecond) / 1e6).toFixed(1)} MB/s)`,
      `balance ${recent.balancedness.toFixed(2)}`,
      `p99 ${recent.p99Ms.toFixed(0)} ms`,
    );
  }
  parts.push(`requests ${progress.requests.completed} ok, ${progress.requests.failed} failed`);
  return parts.join(' | ');
}

/** The JSON document of `local --format json`. */
export function localJson(result: LocalResult): object {
  return {
    generations: result.generations.map((g) => ({
      generation: g.generation,
      strategy: g.strategy,
      crossNodeBytes: g.crossNodeBytes,
      crossNodeBytesPerToken: g.crossNodeBytesPerToken,
      localHitRatio: g.localHitRatio,
      balancedness: g.balancedness,
      p50Ms: g.p50Ms,
      p99Ms: g.p99Ms,
      tokens: g.tokens,
    })),
    requests: result.requests,
    rounds: result.rounds.map((r) => ({
      round: r.round,
      outcome: r.outcome,
      activeGeneration: r.activeGeneration,
      predictedGain: r.predictedGain,
      moves: r.moves,
      planTimeMs: r.planTimeMs,
      reason: r.reason,
    })),
  };
}

function summaryTable(result: LocalResult): string {
  const lines = [
    `${result.trace.name} on ${result.topology.nodes}x${result.topology.gpusPerNode} GPUs, ${result.topology.slotsPerGpu} slots per GPU, ` +
      `${(result.durationMs / 1000).toFixed(0)} s; requests: ${result.requests.sent} sent, ${result.requests.completed} completed, ${result.requests.failed} failed`,
    '',
    formatTable(
      ['generation', 'strategy', 'tokens', 'x-node KB/token', 'x-node MB', 'local hits', 'balance', 'p50 ms', 'p99 ms'],
      result.generations.map((g) => [
        String(g.generation),
        g.strategy,
        String(g.tokens),
        (g.crossNodeBytesPerToken / 1024).toFixed(2),
        (g.crossNodeBytes / 1e6).toFixed(1),
        `${(100 * g.localHitRatio).toFixed(1)}%`,
        g.balancedness.toFixed(3),
        g.p50Ms.toFixed(1),
        g.p99Ms.toFixed(1),
      ]),
    ),
    '',
    ...result.rounds.map(describeRound),
  ];
  return `${lines.join('\n')}\n`;
}

export const localCommand: Command = {
  name: 'local',
  summary: 'run routers, engines and the control loop on this machine with a real trace',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('local', argv, FLAGS);
    checkTopologyFlags(values);
    const durationMs = parseDuration('--duration', values.duration, 60_000);
    const rate = positiveInteger('--rate', values.rate, 600);
    const batchTokens = positiveInteger('--batch-tokens', values['batch-tokens'], 64);
    const concurrency = positiveInteger('--concurrency', values.concurrency, 8);
    const order = oneOf('--order', values.order, ['mixed', 'file'] as const, 'mixed') as TraceOrder;
    const mode = oneOf('--mode', values.mode, ['Auto', 'Observe', 'Off'] as const, 'Auto') as RebalanceMode;
    const intervalMs = parseDuration('--interval', values.interval, 10_000);
    const halfLifeMs = parseDuration('--half-life', values['half-life'], 30_000);
    const minGain = fraction('--min-gain', values['min-gain'], 0.05);
    const maxMoves = positiveInteger('--max-moves', values['max-moves'], 1024);
    const dispatch = oneOf('--dispatch', values.dispatch, ['flat', 'hierarchical'] as const, 'hierarchical');
    const computeMicros = positiveInteger('--compute-micros', values['compute-micros'], 2);
    const routing = oneOf('--router', values.router, ['http', 'in-process'] as const, 'http');
    const format = oneOf('--format', values.format, ['table', 'json'] as const, io.stdout.isTTY ? 'table' : 'json');

    const reading = new ProgressReporter(io.stderr);
    const trace = await loadTrace(values.trace, reading, io.stderr);
    reading.finish();
    const topology = topologyFromFlags(values, trace.meta.experts);
    const { cost } = costModelFor(trace, values.preset);

    const live = new ProgressReporter(io.stderr, () => performance.now(), 5000);
    const clear = (): void => live.finish();
    const log = stderrLogger(io, clear);
    const cliPath = fileURLToPath(new URL('./main.js', import.meta.url));
    io.stderr.write(`starting ${topology.nodes} routers and ${topology.nodes} engines on loopback\n`);

    const result = await runLocal({
      trace,
      topology,
      durationMs,
      rateTokensPerSecond: rate,
      batchTokens,
      concurrency,
      order,
      control: {
        ...CONTROL_DEFAULTS,
        mode,
        intervalMs,
        halfLifeMs,
        minGain,
        maxMovesPerRound: maxMoves,
        minTokens: 1024,
        readinessTimeoutMs: 30_000,
        dispatch,
        cost,
      },
      cluster: {
        cliPath,
        hiddenSize: cost.model.hiddenSize,
        computeMicrosPerPair: computeMicros,
        expertBytes: 3 * cost.model.hiddenSize * cost.model.expertIntermediateSize * cost.model.bytesPerElement,
        loadBytesPerSecond: 2e9,
        routing,
        startTimeoutMs: 30_000,
      },
      signal: io.signal,
      log: {
        ...log,
        info: (fields: object, message: string) => {
          if (message === 'control round finished' || message === 'rollout finished') return;
          if (message === 'rollout started') {
            clear();
            io.stderr.write(`rollout of generation ${(fields as { generation?: number }).generation} started\n`);
          }
        },
      },
      onProgress: (progress) => live.status(progressLine(progress)),
      onClusterReady: (_cluster, loop) => {
        io.stderr.write(`deployment ready, serving generation ${loop.activePlan.generation} (${loop.activePlan.strategy}); sending ${rate} tokens/s for ${durationMs / 1000} s\n`);
      },
    });
    live.finish();

    io.stdout.write(format === 'json' ? `${JSON.stringify(localJson(result), null, 2)}\n` : summaryTable(result));
    if (values.report !== undefined) {
      await writeOutput('--report', values.report, renderLocalReport(result));
      io.stderr.write(`report written to ${values.report}\n`);
    }
    if (io.signal.aborted) {
      io.stderr.write('stopped by signal; every process was stopped\n');
      return 130;
    }
    return result.requests.failed > 0 ? 1 : 0;
  },
};

import { parseFlags } from '../cli/args.js';
import type { Command } from '../cli/command.js';
import { formatTable } from '../cli/table.js';
import { DRIVER_DEFAULTS, DRIVER_FLAGS, resolveDriverConfig } from '../config/driver.js';
import { UsageError } from '../errors.js';
import { defaultTracePath } from '../trace/default.js';
import { readTrace } from '../trace/read.js';
import { drive, type DriveReport } from './drive.js';

const d = DRIVER_DEFAULTS;

const usage = `Usage: grace-moe drive --engines URL,... [flags]

Replays a slice of a routing trace through reference engines at a fixed token rate and reports
throughput, batch latency percentiles and request counts. Every flag can also be set with
GRACE_MOE_DRIVE_<FLAG>.

Flags:
  --engines URL,...        engine base URLs; batches go to them round-robin (required)
  --trace FILE             routing trace (default: the shipped DeepSeek-V2-Lite trace)
  --tokens N               tokens to replay (default ${d.tokens})
  --offset N               index of the first replayed token (default ${d.offset})
  --rate N                 tokens per second to send (default ${d.rateTokensPerSecond})
  --batch-tokens N         tokens per batch (default ${d.batchTokens})
  --concurrency N          batches in flight at once (default ${d.concurrency})
  --max-duration-ms N      no batch is sent after this time (default ${d.maxDurationMs})
  --request-timeout-ms N   timeout of one batch (default ${d.requestTimeoutMs})
  --format FORMAT          table or json (default ${d.format})
`;

export const driveCommand: Command = {
  name: 'drive',
  summary: 'replay a trace through reference engines and report throughput and latency',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('drive', argv, DRIVER_FLAGS);
    const config = resolveDriverConfig(values);
    const tracePath = config.trace ?? defaultTracePath();
    const trace = await readTrace(tracePath, { maxTokens: config.offset + config.tokens });
    if (config.offset >= trace.tokens) {
      throw new UsageError(
        `--offset ${config.offset} is at or past the end of the trace ${tracePath}, which has ${trace.tokens} tokens; ` +
          `choose an offset below ${trace.tokens}`,
      );
    }
    const report = await drive({ ...config, trace, signal: io.signal });

    const { slice } = report;
    if (slice.planned < slice.requested) {
      io.stderr.write(
        `grace-moe drive: warning: the trace ${tracePath} ends at token ${slice.traceTokens}, so --tokens ${slice.requested} from ` +
          `--offset ${slice.offset} was cut to ${slice.planned} tokens; ${report.tokens.sent} tokens were sent\n`,
      );
    }
    if (config.format === 'json') {
      io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      io.stdout.write(`${formatReport(report)}\n`);
    }
    return report.batches.failed === 0 ? 0 : 1;
  },
};

/** Renders a drive report as aligned text tables. */
export function formatReport(report: DriveReport): string {
  const latency = report.latencyMs;
  const ms = (value: number | undefined): string => (value === undefined ? '-' : value.toFixed(1));
  const summary = formatTable(
    ['metric', 'value'],
    [
      ['batches planned', String(report.batches.planned)],
      ['batches sent', String(report.batches.sent)],
      ['batches completed', String(report.batches.completed)],
      ['batches failed', String(report.batches.failed)],
      ['batches not sent', report.notSentReason === null ? String(report.batches.notSent) : `${report.batches.notSent} (${report.notSentReason})`],
      ['tokens sent', String(report.tokens.sent)],
      ['tokens completed', String(report.tokens.completed)],
      ['elapsed (s)', (report.elapsedMs / 1000).toFixed(2)],
      ['throughput (tokens/s)', report.throughputTokensPerSecond.toFixed(1)],
      ['latency p50 (ms)', ms(latency?.p50)],
      ['latency p90 (ms)', ms(latency?.p90)],
      ['latency p99 (ms)', ms(latency?.p99)],
      ['latency max (ms)', ms(latency?.max)],
      ['cross-node copies', String(report.crossNodeCopies)],
    ],
  );
  const engines = formatTable(
    ['engine', 'sent', 'completed', 'failed'],
    report.perEngine.map((engine) => [engine.url, String(engine.sent), String(engine.completed), String(engine.failed)]),
  );
  const errors = report.errors.map((error) => `error (${error.count}x): ${error.message}`);
  return [summary, '', engines, ...(errors.length > 0 ? ['', ...errors] : [])].join('\n');
}

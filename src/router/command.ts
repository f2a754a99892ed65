import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseFlags } from '../cli/args.js';
import type { Command } from '../cli/command.js';
import { ROUTER_DEFAULTS, ROUTER_FLAGS, resolveRouterConfig } from '../config/router.js';
import { buildRouterApp } from './app.js';
import { systemClock } from './clock.js';
import { createLogger, serveUntilAborted } from './http.js';
import { checkStateFileFolder, loadStartupTable } from './table-files.js';

const d = ROUTER_DEFAULTS;

const usage = `Usage: grace-moe router [flags]

Runs the router sidecar: it keeps the active routing table, chooses replicas for token-expert
pairs, aggregates activation statistics and serves Prometheus metrics. Logs are JSON lines on standard output.
Every flag can also be set with the environment variable named after it.

Flags:
  --host ADDRESS               address to listen on (GRACE_MOE_ROUTER_HOST, default ${d.host})
  --port N                     TCP port, 0 for any free port (GRACE_MOE_ROUTER_PORT, default ${d.portNumber})
  --table-file FILE            routing table or placement plan JSON served at start (GRACE_MOE_ROUTER_TABLE_FILE)
  --state-file FILE            file every accepted table is written to and recovered from (GRACE_MOE_ROUTER_STATE_FILE)
  --topology NxG               nodes x GPUs per node of the engines; a table of another topology is rejected (GRACE_MOE_ROUTER_TOPOLOGY)
  --layers N                   MoE layers of the model; a table with another layer count is rejected (GRACE_MOE_ROUTER_LAYERS)
  --experts N                  logical experts per layer; a table with another count is rejected (GRACE_MOE_ROUTER_EXPERTS)
  --body-limit-bytes N         largest request body in bytes (default ${d.bodyLimitBytes})
  --route-body-limit-bytes N   largest body of POST /v1/route and /v1/route/batch in bytes (default ${d.routeBodyLimitBytes})
  --route-max-tokens N         most token lists in one /v1/route or /v1/route/batch request (default ${d.routeMaxTokens})
  --long-poll-max-ms N         longest wait of a GET /v1/routing-table long-poll in ms (default ${d.longPollMaxMs})
  --stats-bucket-ms N          age in ms at which the open statistics bucket is sealed (default ${d.statsBucketMs})
  --stats-retained-buckets N   sealed statistics buckets kept for scrapers (default ${d.statsRetainedBuckets})
  --sample-capacity N          tokens in each bucket's reservoir sample (default ${d.sampleCapacity})
  --shutdown-timeout-ms N      time allowed to drain requests on SIGTERM in ms (default ${d.shutdownTimeoutMs})
  --log-level LEVEL            trace, debug, info, warn, error, fatal or silent (GRACE_MOE_LOG_LEVEL, default ${d.logLevel})
`;

export const routerCommand: Command = {
  name: 'router',
  summary: 'run the router sidecar (routing table, replica choice, statistics, metrics)',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('router', argv, ROUTER_FLAGS);
    const config = resolveRouterConfig(values);
    if (config.stateFile !== null) await checkStateFileFolder(config.stateFile);
    const logger = createLogger('router', config.logLevel);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });

    const app = buildRouterApp({
      logger,
      registry,
      clock: systemClock,
      options: config,
      loadInitialTable: () => loadStartupTable(config, logger),
    });
    return serveUntilAborted(app, { ...config, exitOnDrainTimeout: (code) => process.exit(code) }, io.signal);
  },
};

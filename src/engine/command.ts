import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseFlags } from '../cli/args.js';
import type { Command } from '../cli/command.js';
import { ENGINE_DEFAULTS, ENGINE_FLAGS, resolveEngineConfig } from '../config/engine.js';
import { systemClock } from '../router/clock.js';
import { createLogger, serveUntilAborted } from '../router/http.js';
import { buildEngineApp } from './app.js';

const d = ENGINE_DEFAULTS;

const usage = `Usage: grace-moe engine --node I --topology NxG --peers URL,... --router-url URL [flags]

Runs the reference engine of one worker node: replays token batches through the routers, moves
hidden-state bytes to peer engines and charges compute time per token-expert pair. Logs are JSON
lines on standard output. Every flag can also be set with GRACE_MOE_ENGINE_<FLAG>.

Flags:
  --node I                      index of this engine's node, from 0 (required)
  --topology NxG                nodes x GPUs per node (required)
  --peers URL,...               engine URL of every node in node order, this one included (required)
  --router-url URL              URL of this node's router sidecar (required)
  --router MODE                 http (ask the router per layer) or in-process (default ${d.routing})
  --host ADDRESS                address to listen on (default ${d.host})
  --port N                      TCP port, 0 for any free port (default ${d.portNumber})
  --hidden-size N               model hidden size; a hidden state is N x 2 bytes (default ${d.hiddenSize})
  --compute-micros-per-pair N   compute time per token-expert pair in microseconds (default ${d.computeMicrosPerPair})
  --expert-bytes N              bytes of one expert's weights (default ${d.expertBytes})
  --load-bytes-per-second N     rate at which a GPU loads expert weights (default ${d.loadBytesPerSecond})
  --long-poll-wait-ms N         wait asked for when long-polling the router's table (default ${d.longPollWaitMs})
  --request-timeout-ms N        timeout of one call to the router or a peer (default ${d.requestTimeoutMs})
  --batch-attempts N            restarts of a batch when the generation changes under it (default ${d.batchAttempts})
  --max-compute-pairs N         most token-expert pairs in one compute request from a peer (default ${d.maxComputePairs})
  --body-limit-bytes N          largest request body in bytes (default ${d.bodyLimitBytes})
  --shutdown-timeout-ms N       time allowed to drain requests on SIGTERM in ms (default ${d.shutdownTimeoutMs})
  --log-level LEVEL             trace, debug, info, warn, error, fatal or silent (default ${d.logLevel})
`;

export const engineCommand: Command = {
  name: 'engine',
  summary: 'run the reference engine of one worker node',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('engine', argv, ENGINE_FLAGS);
    const config = resolveEngineConfig(values);
    const logger = createLogger('engine', config.logLevel);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });

    const { app } = buildEngineApp({ logger, registry, clock: systemClock, options: config });
    return serveUntilAborted(app, { ...config, exitOnDrainTimeout: (code) => process.exit(code) }, io.signal);
  },
};

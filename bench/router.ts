/**
 * Router benchmark.
 *
 * (a) In-process route decisions per second over the shipped DeepSeek-V2-Lite trace (26 layers,
 *     64 experts, top-6). The plan is GRACE with replicas for 2 nodes x 4 GPUs with 2 spare slots
 *     per GPU, planned on the first half of the trace; decisions use tokens of the second half.
 *     LocalityChooser and PrecomputedLocalityChooser run against a plain lookup (expert -> first
 *     instance) over the same inputs in the same run, and the ratios of the rates are printed.
 * (b) HTTP POST /v1/route throughput and latency: 256-token top-6 batches from a few concurrent
 *     keep-alive clients against a router process on 127.0.0.1, for a bounded time.
 *
 * Run after `npm run build`: node dist/bench/router.js [--seconds 5] [--clients 4]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hardwarePreset, modelShapeFor } from '../src/evaluator/cost-model.js';
import { planToJson } from '../src/plan/json.js';
import { planGrace } from '../src/planner/grace.js';
import { PrecomputedLocalityChooser } from '../src/routing/precomputed.js';
import { LocalityChooser } from '../src/routing/policy.js';
import { compileRoutingTable, routingTableFromPlan } from '../src/routing/table.js';
import { statsFromTrace } from '../src/stats/activation.js';
import { defaultTracePath } from '../src/trace/default.js';
import { readTrace } from '../src/trace/read.js';
import type { Trace } from '../src/trace/types.js';
import { resolveTopology } from '../src/topology.js';

const CLI_PATH = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const NODES = 2;
const GPUS_PER_NODE = 4;
const GPUS = NODES * GPUS_PER_NODE;
const BATCH_TOKENS = 256;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    clients: { type: 'string', default: '4' },
    'decision-rounds': { type: 'string', default: '5' },
  },
});
const httpSeconds = Math.min(60, Math.max(1, Number(values.seconds)));
const clients = Math.min(64, Math.max(1, Number(values.clients)));
const rounds = Math.min(50, Math.max(1, Number(values['decision-rounds'])));

/** Flat inputs: sourceGpu, layer and expert of every pair of the evaluated tokens. */
interface Inputs {
  readonly sources: Int32Array;
  readonly layers: Int32Array;
  readonly experts: Int32Array;
}

function inputsOf(trace: Trace, from: number, to: number): Inputs {
  const { layers, topK } = trace.meta;
  const count = (to - from) * layers * topK;
  const inputs = { sources: new Int32Array(count), layers: new Int32Array(count), experts: new Int32Array(count) };
  let at = 0;
  for (let t = from; t < to; t++) {
    for (let l = 0; l < layers; l++) {
      for (let k = 0; k < topK; k++) {
        inputs.sources[at] = t % GPUS;
        inputs.layers[at] = l;
        inputs.experts[at] = trace.selections[(t * layers + l) * topK + k] as number;
        at++;
      }
    }
  }
  return inputs;
}

function timeDecisions(run: () => number, decisions: number): { rate: number; checksum: number } {
  const started = process.hrtime.bigint();
  const checksum = run();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { rate: decisions / seconds, checksum };
}

async function main(): Promise<void> {
  const trace = await readTrace(defaultTracePath());
  const half = Math.floor(trace.tokens / 2);
  const profile: Trace = { ...trace, tokens: half, selections: trace.selections.subarray(0, half * trace.meta.layers * trace.meta.topK) };
  const topology = resolveTopology({ nodes: NODES, gpusPerNode: GPUS_PER_NODE }, trace.meta.experts, { redundantSlotsPerGpu: 2 });
  const planStarted = Date.now();
  const plan = planGrace(statsFromTrace(profile), {
    topology,
    cost: { model: modelShapeFor(trace.meta.model), hardware: hardwarePreset('a100-25gbe') },
    generation: 1,
  });
  const planSeconds = (Date.now() - planStarted) / 1000;
  const table = routingTableFromPlan(plan);
  const compiled = compileRoutingTable(table);
  const replicas = compiled.instanceGpu.length - compiled.layers * compiled.experts;

  const evalTokens = Math.min(8192, trace.tokens - half);
  const inputs = inputsOf(trace, half, half + evalTokens);
  const count = inputs.experts.length;

  const locality = (): number => {
    const chooser = new LocalityChooser(compiled);
    let checksum = 0;
    for (let i = 0; i < count; i++) {
      checksum += chooser.choose(inputs.sources[i] as number, inputs.layers[i] as number, inputs.experts[i] as number);
    }
    return checksum;
  };
  const precomputed = (): number => {
    const chooser = new PrecomputedLocalityChooser(compiled);
    let checksum = 0;
    for (let i = 0; i < count; i++) {
      checksum += chooser.choose(inputs.sources[i] as number, inputs.layers[i] as number, inputs.experts[i] as number);
    }
    return checksum;
  };
  const firstInstance = (): number => {
    const chooser = new FirstInstanceChooser(compiled);
    let checksum = 0;
    for (let i = 0; i < count; i++) {
      checksum += chooser.choose(inputs.sources[i] as number, inputs.layers[i] as number, inputs.experts[i] as number);
    }
    return checksum;
  };
  const lookup = (): number => {
    let checksum = 0;
    for (let i = 0; i < count; i++) {
      checksum += compiled.instanceGpu[compiled.offsets[(inputs.layers[i] as number) * compiled.experts + (inputs.experts[i] as number)] as number] as number;
    }
    return checksum;
  };

  // Warm both paths, then alternate rounds and keep each path's best rate.
  if (locality() !== precomputed()) {
    throw new Error('the precomputed chooser disagrees with LocalityChooser');
  }
  if (lookup() !== firstInstance()) {
    throw new Error('the two plain lookups disagree');
  }
  let bestLocality = 0;
  let bestPrecomputed = 0;
  let bestFirst = 0;
  let bestLookup = 0;
  for (let round = 0; round < rounds; round++) {
    bestLocality = Math.max(bestLocality, timeDecisions(locality, count).rate);
    bestPrecomputed = Math.max(bestPrecomputed, timeDecisions(precomputed, count).rate);
    bestFirst = Math.max(bestFirst, timeDecisions(firstInstance, count).rate);
    bestLookup = Math.max(bestLookup, timeDecisions(lookup, count).rate);
  }

  console.log('## (a) in-process route decisions');
  console.log(`plan: grace, ${NODES}x${GPUS_PER_NODE} GPUs, ${topology.slotsPerGpu} slots per GPU, ${replicas} replicas over ${compiled.layers} layers, planned in ${planSeconds.toFixed(1)} s`);
  console.log(`inputs: ${evalTokens} tokens x ${trace.meta.layers} layers x top-${trace.meta.topK} = ${count} decisions, best of ${rounds} rounds`);
  const rate = (value: number): string => `${(value / 1e6).toFixed(1)} M decisions/s`;
  const ratios = (value: number): string =>
    `ratio ${(value / bestFirst).toFixed(2)} to the lookup chooser, ${(value / bestLookup).toFixed(2)} to the inline lookup`;
  console.log(`LocalityChooser:               ${rate(bestLocality)} (${ratios(bestLocality)})`);
  console.log(`PrecomputedLocalityChooser:    ${rate(bestPrecomputed)} (${ratios(bestPrecomputed)})`);
  console.log(`lookup chooser (first inst.):  ${rate(bestFirst)}`);
  console.log(`inline lookup loop:            ${rate(bestLookup)}`);

  await benchHttp(trace, half, plan);
}

/** Plain table lookup behind the same choose() call as the locality choosers: the first instance. */
class FirstInstanceChooser {
  constructor(private readonly table: ReturnType<typeof compileRoutingTable>) {}

  choose(_sourceGpu: number, layer: number, expert: number): number {
    return this.table.instanceGpu[this.table.offsets[layer * this.table.experts + expert] as number] as number;
  }
}

interface RouterProcess {
  readonly url: string;
  stop(): Promise<number | null>;
}

function startRouter(tableFile: string): Promise<RouterProcess> {
  const child = spawn(process.execPath, [CLI_PATH, 'router', '--host', '127.0.0.1', '--port', '0', '--table-file', tableFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`router did not start within 15 s:\n${output}`));
    }, 15_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      const line = output.split('\n').find((candidate) => candidate.includes('"service listening"'));
      if (line === undefined) return;
      clearTimeout(timer);
      child.stdout.removeAllListeners('data');
      child.stdout.resume();
      resolve({
        url: (JSON.parse(line) as { url: string }).url,
        stop: async () => {
          child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}

function post(agent: Agent, url: URL, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    call.on('error', reject);
    call.end(body);
  });
}

async function benchHttp(trace: Trace, firstToken: number, plan: Parameters<typeof planToJson>[0]): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), 'grace-bench-router-'));
  const tableFile = join(folder, 'plan.json');
  await writeFile(tableFile, JSON.stringify(planToJson(plan)));
  const router = await startRouter(tableFile);
  try {
    const { layers, topK } = trace.meta;
    const bodies: Buffer[] = [];
    for (let b = 0; b < 64; b++) {
      const start = firstToken + b * BATCH_TOKENS;
      const layer = b % layers;
      const tokens: number[][] = [];
      for (let t = start; t < start + BATCH_TOKENS; t++) {
        const base = (t * layers + layer) * topK;
        tokens.push(Array.from(trace.selections.subarray(base, base + topK)));
      }
      bodies.push(Buffer.from(JSON.stringify({ sourceGpu: b % GPUS, layer, tokens })));
    }

    const url = new URL('/v1/route', router.url);
    const agent = new Agent({ keepAlive: true, maxSockets: clients });
    const latencies: number[] = [];
    let failures = 0;
    const warmupEnd = Date.now() + 500;
    const deadline = warmupEnd + httpSeconds * 1000;
    await Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        let next = client;
        while (Date.now() < deadline) {
          const body = bodies[next % bodies.length] as Buffer;
          next += clients;
          const started = process.hrtime.bigint();
          const status = await post(agent, url, body);
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          if (Date.now() < warmupEnd) continue;
          if (status === 200) latencies.push(ms);
          else failures++;
        }
      }),
    );
    agent.destroy();

    latencies.sort((a, b) => a - b);
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))] ?? Number.NaN;
    const requestsPerSecond = latencies.length / httpSeconds;
    console.log('');
    console.log('## (b) HTTP POST /v1/route');
    console.log(`${clients} keep-alive clients, ${BATCH_TOKENS}-token top-${topK} batches, ${httpSeconds} s after 0.5 s warm-up, router in a separate process`);
    console.log(`requests: ${latencies.length} ok, ${failures} failed`);
    console.log(`throughput: ${requestsPerSecond.toFixed(0)} requests/s = ${(requestsPerSecond * BATCH_TOKENS).toFixed(0)} tokens/s = ${((requestsPerSecond * BATCH_TOKENS * topK) / 1e6).toFixed(2)} M decisions/s`);
    console.log(`latency: p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms`);
  } finally {
    const code = await router.stop();
    console.log(`router exit code after SIGTERM: ${code}`);
    await rm(folder, { recursive: true, force: true });
  }
}

console.log(`node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'})`);
await main();

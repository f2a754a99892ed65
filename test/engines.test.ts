/**
 * Three routers and three reference engines as real processes on loopback, in a 3 x 2 topology
 * with a contiguous plan (each expert one instance, so every destination is fixed). A slice of the
 * shipped trace is replayed through the compiled driver, and the bytes every engine exchanged with
 * every peer node must equal what the plan implies. Needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { contiguousPlan } from '../src/baselines/contiguous.js';
import { planToJson } from '../src/plan/json.js';
import { defaultTracePath } from '../src/trace/default.js';
import { readTrace } from '../src/trace/read.js';
import type { Trace } from '../src/trace/types.js';
import { CLI_PATH, requireBuiltCli, runCliProcess } from './support/cli-process.js';

const NODES = 3;
const GPUS_PER_NODE = 2;
const GPUS = NODES * GPUS_PER_NODE;
const HIDDEN_SIZE = 256;
const HIDDEN_BYTES = HIDDEN_SIZE * 2;
const TOKENS = 300;
const BATCH_TOKENS = 25;

interface PeerTraffic {
  readonly node: number;
  readonly dispatchSentBytes: number;
  readonly combineReceivedBytes: number;
  readonly dispatchReceivedBytes: number;
  readonly combineSentBytes: number;
}

interface TrafficReport {
  readonly batches: { completed: number; failed: number };
  readonly unloadedPairs: number;
  readonly peers: readonly PeerTraffic[];
}

interface StatsAnswer {
  readonly tokens: number;
  readonly layers: number;
  readonly dispatch: { gpu: number; node: number; remote: number };
}

interface Service {
  readonly child: ChildProcess;
  readonly name: string;
  output: string;
}

const services: Service[] = [];
let folder = '';
let routerUrls: string[] = [];
let engineUrls: string[] = [];

/** Binds 127.0.0.1:0, reads the port the kernel chose and releases it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts `grace-moe <args>` and resolves with the URL from its "service listening" log line. */
function startService(name: string, args: readonly string[]): Promise<string> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const service: Service = { child, name, output: '' };
  services.push(service);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s:\n${service.output}`)), 30_000);
    const onData = (chunk: string): void => {
      service.output += chunk;
      for (const line of service.output.split('\n')) {
        if (!line.includes('"service listening"')) continue;
        const url = (JSON.parse(line) as { url: string }).url;
        clearTimeout(timer);
        resolve(url);
      }
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      service.output += chunk;
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${service.output}`));
    });
  });
}

/** Polls GET url until it responds with 200, for at most 30 s. */
async function waitUntilReady(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} was not ready within 30 s`);
}

/** Bytes node `from` must send to node `to` for its own tokens: one hidden state per token, layer and remote node. */
function expectedDispatchBytes(trace: Trace): number[][] {
  const { layers, topK, experts } = trace.meta;
  const bytes = Array.from({ length: NODES }, () => new Array<number>(NODES).fill(0));
  for (let token = 0; token < TOKENS; token++) {
    const home = Math.floor(token / BATCH_TOKENS) % NODES;
    for (let layer = 0; layer < layers; layer++) {
      const destinations = new Set<number>();
      for (let rank = 0; rank < topK; rank++) {
        const expert = trace.selections[(token * layers + layer) * topK + rank] as number;
        const gpu = Math.floor((expert * GPUS) / experts);
        destinations.add(Math.floor(gpu / GPUS_PER_NODE));
      }
      destinations.delete(home);
      for (const node of destinations) (bytes[home] as number[])[node] += HIDDEN_BYTES;
    }
  }
  return bytes;
}

beforeAll(async () => {
  requireBuiltCli();
  folder = await mkdtemp(join(tmpdir(), 'grace-engines-'));
  const trace = await readTrace(defaultTracePath(), { maxTokens: 1 });
  const { layers, experts, topK } = trace.meta;
  const loads = Array.from({ length: layers }, () => new Float64Array(experts));
  const plan = contiguousPlan(loads, { nodes: NODES, gpusPerNode: GPUS_PER_NODE, slotsPerGpu: Math.ceil(experts / GPUS) }, { topK, generation: 1 });
  const planFile = join(folder, 'plan.json');
  await writeFile(planFile, JSON.stringify(planToJson(plan)));

  routerUrls = await Promise.all(
    Array.from({ length: NODES }, (_, node) =>
      startService(`router ${node}`, ['router', '--host', '127.0.0.1', '--port', '0', '--table-file', planFile, '--long-poll-max-ms', '2000']),
    ),
  );
  const ports: number[] = [];
  for (let node = 0; node < NODES; node++) ports.push(await freePort());
  engineUrls = ports.map((port) => `http://127.0.0.1:${port}`);
  await Promise.all(
    engineUrls.map((_, node) =>
      startService(`engine ${node}`, [
        'engine',
        '--node', String(node),
        '--topology', `${NODES}x${GPUS_PER_NODE}`,
        '--peers', engineUrls.join(','),
        '--router-url', routerUrls[node] as string,
        '--host', '127.0.0.1',
        '--port', String(ports[node]),
        '--hidden-size', String(HIDDEN_SIZE),
        '--compute-micros-per-pair', '2',
        '--long-poll-wait-ms', '1000',
      ]),
    ),
  );
  await Promise.all(engineUrls.map((url) => waitUntilReady(`${url}/readyz`)));
}, 120_000);

afterAll(async () => {
  for (const service of services) {
    if (service.child.exitCode === null && service.child.signalCode === null && service.child.pid !== undefined) {
      process.kill(service.child.pid, 'SIGKILL');
    }
  }
  if (folder !== '') await rm(folder, { recursive: true, force: true });
});

describe('engines on loopback', () => {
  test('move exactly the bytes the contiguous plan implies', async () => {
    const run = await runCliProcess([
      'drive',
      '--engines', engineUrls.join(','),
      '--tokens', String(TOKENS),
      '--batch-tokens', String(BATCH_TOKENS),
      '--rate', '100000',
      '--concurrency', '3',
      '--max-duration-ms', '60000',
      '--format', 'json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.batches).toEqual({ planned: 12, sent: 12, completed: 12, failed: 0, notSent: 0 });
    expect(report.tokens).toEqual({ sent: TOKENS, completed: TOKENS });

    const trace = await readTrace(defaultTracePath(), { maxTokens: TOKENS });
    const expected = expectedDispatchBytes(trace);
    const totalCopies = expected.flat().reduce((sum, bytes) => sum + bytes, 0) / HIDDEN_BYTES;
    expect(totalCopies).toBeGreaterThan(0);
    expect(report.crossNodeCopies).toBe(totalCopies);

    for (let node = 0; node < NODES; node++) {
      const traffic = (await (await fetch(`${engineUrls[node]}/v1/traffic`)).json()) as TrafficReport;
      expect(traffic.batches).toEqual({ completed: 4, failed: 0 });
      expect(traffic.unloadedPairs).toBe(0);
      expect(traffic.peers.map((peer) => peer.node)).toEqual([0, 1, 2].filter((other) => other !== node));
      for (const peer of traffic.peers) {
        const sent = expected[node]![peer.node]!;
        const received = expected[peer.node]![node]!;
        expect({ node, peer: peer.node, dispatchSentBytes: peer.dispatchSentBytes }).toEqual({ node, peer: peer.node, dispatchSentBytes: sent });
        expect(peer.combineReceivedBytes).toBe(sent);
        expect(peer.dispatchReceivedBytes).toBe(received);
        expect(peer.combineSentBytes).toBe(received);
      }
      const metrics = await (await fetch(`${engineUrls[node]}/metrics`)).text();
      const peer = (node + 1) % NODES;
      expect(metrics).toContain(`grace_moe_engine_bytes_sent_total{peer_node="${peer}",phase="dispatch"} ${expected[node]![peer]}`);
    }
  }, 90_000);

  test('routers aggregate the activations of their own engine', async () => {
    for (let node = 0; node < NODES; node++) {
      const stats = (await (await fetch(`${routerUrls[node]}/v1/stats`)).json()) as StatsAnswer;
      expect(stats.tokens).toBe(4 * BATCH_TOKENS);
      expect(stats.layers).toBe(26);
      expect(stats.dispatch.gpu + stats.dispatch.node + stats.dispatch.remote).toBe(4 * BATCH_TOKENS * 26 * 6);
    }
  });

  test('every process exits 0 on SIGTERM', async () => {
    const exits = services.map(
      (service) =>
        new Promise<{ name: string; code: number | null }>((resolve) => {
          if (service.child.exitCode !== null) resolve({ name: service.name, code: service.child.exitCode });
          else service.child.once('exit', (code) => resolve({ name: service.name, code }));
        }),
    );
    for (const service of services) {
      if (service.child.pid !== undefined) process.kill(service.child.pid, 'SIGTERM');
    }
    const results = await Promise.race([
      Promise.all(exits),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('processes did not exit within 15 s')), 15_000)),
    ]);

    expect(results).toEqual(services.map((service) => ({ name: service.name, code: 0 })));
  }, 30_000);
});

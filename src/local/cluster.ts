/**
 * A deployment on this machine: one router and one reference engine process per simulated node,
 * on loopback ports, started from the grace-moe CLI itself. Children are stopped by their own PIDs
 * (SIGTERM, then SIGKILL after a grace period), and killed if this process exits first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { GraceMoeError } from '../errors.js';
import type { WorkerEndpoint } from '../control/worker-client.js';

/** A local service failed to start or stopped unexpectedly. */
export class LocalServiceError extends GraceMoeError {
  readonly code = 'LOCAL_SERVICE_FAILED';
  override readonly exitCode = 1;
}

export interface LocalClusterOptions {
  readonly nodes: number;
  readonly gpusPerNode: number;
  /** Plan or routing table every router serves at start. */
  readonly tableFile: string;
  /** Folder for the routers' state files. */
  readonly stateDir: string;
  /** Path of the CLI entry point (dist/src/cli/main.js). */
  readonly cliPath: string;
  readonly hiddenSize: number;
  readonly computeMicrosPerPair: number;
  readonly expertBytes: number;
  readonly loadBytesPerSecond: number;
  readonly routing: 'http' | 'in-process';
  readonly startTimeoutMs: number;
  /** Extra router flags, for example a shorter statistics bucket. */
  readonly routerArgs?: readonly string[];
}

export interface LocalProcess {
  readonly name: string;
  readonly node: number;
  readonly role: 'router' | 'engine';
  readonly child: ChildProcess;
  output: string;
  exited: boolean;
}

/** Binds 127.0.0.1:0, reads the port the kernel chose and releases it. */
export function freePort(): Promise<number> {
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

const KEPT_OUTPUT_CHARS = 20_000;

export class LocalCluster {
  readonly processes: LocalProcess[] = [];
  private endpointsByNode: WorkerEndpoint[] = [];
  private readonly killOnExit = (): void => {
    for (const process of this.processes) if (!process.exited) process.child.kill('SIGKILL');
  };

  private constructor(private readonly options: LocalClusterOptions) {
    process.once('exit', this.killOnExit);
  }

  get endpoints(): readonly WorkerEndpoint[] {
    return this.endpointsByNode;
  }

  /** Starts every router, then every engine, and waits until all are ready. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = new LocalCluster(options);
    try {
      await cluster.startAll();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  private async startAll(): Promise<void> {
    const { nodes, gpusPerNode } = this.options;
    const routerUrls = await Promise.all(
      Array.from({ length: nodes }, (_, node) =>
        this.spawnService(node, 'router', [
          'router',
          '--port',
          '0',
          '--table-file',
          this.options.tableFile,
          '--state-file',
          join(this.options.stateDir, `router-${node}.json`),
          '--log-level',
          'info',
          ...(this.options.routerArgs ?? []),
        ]),
      ),
    );
    const enginePorts = await Promise.all(Array.from({ length: nodes }, () => freePort()));
    const engineUrls = enginePorts.map((port) => `http://127.0.0.1:${port}`);
    await Promise.all(
      Array.from({ length: nodes }, (_, node) =>
        this.spawnService(node, 'engine', [
          'engine',
          '--node',
          String(node),
          '--topology',
          `${nodes}x${gpusPerNode}`,
          '--port',
          String(enginePorts[node]),
          '--peers',
          engineUrls.join(','),
          '--router-url',
          routerUrls[node],
          '--router',
          this.options.routing,
          '--hidden-size',
          String(this.options.hiddenSize),
          '--compute-micros-per-pair',
          String(this.options.computeMicrosPerPair),
          '--expert-bytes',
          String(this.options.expertBytes),
          '--load-bytes-per-second',
          String(this.options.loadBytesPerSecond),
          '--log-level',
          'info',
        ]),
      ),
    );
    this.endpointsByNode = routerUrls.map((routerUrl, node) => ({ node, routerUrl, engineUrl: engineUrls[node] }));
    await Promise.all(this.endpointsByNode.flatMap((endpoint) => [waitReady(`${endpoint.routerUrl}/readyz`, this.options.startTimeoutMs), waitReady(`${endpoint.engineUrl}/readyz`, this.options.startTimeoutMs)]));
  }

  /** Starts `grace-moe <args>` and resolves with the URL of its "service listening" log line. */
  private spawnService(node: number, role: 'router' | 'engine', args: readonly string[]): Promise<string> {
    const name = `${role} ${node}`;
    const child = spawn(process.execPath, [this.options.cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const entry: LocalProcess = { name, node, role, child, output: '', exited: false };
    this.processes.push(entry);
    const keep = (chunk: string): void => {
      entry.output = (entry.output + chunk).slice(-KEPT_OUTPUT_CHARS);
    };
    child.stderr?.setEncoding('utf8').on('data', keep);
    child.once('exit', () => {
      entry.exited = true;
    });
    return new Promise((resolve, reject) => {
      let pending = '';
      let listening = false;
      const timer = setTimeout(
        () => reject(new LocalServiceError(`${name} did not start within ${this.options.startTimeoutMs} ms:\n${entry.output}`)),
        this.options.startTimeoutMs,
      );
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        keep(chunk);
        if (listening) return;
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.includes('"service listening"')) continue;
          listening = true;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { url: string }).url);
          return;
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!listening) reject(new LocalServiceError(`${name} exited (${code ?? signal}) before listening:\n${entry.output}`));
      });
    });
  }

  /** Kills one service at once with SIGKILL (for fault tests). */
  kill(node: number, role: 'router' | 'engine'): void {
    const entry = this.processes.find((candidate) => candidate.node === node && candidate.role === role);
    if (entry && !entry.exited) entry.child.kill('SIGKILL');
  }

  /** Stops every child: SIGTERM, then SIGKILL for those still running after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    const running = this.processes.filter((entry) => !entry.exited);
    const exits = running.map(
      (entry) =>
        new Promise<void>((resolve) => {
          if (entry.exited) return resolve();
          entry.child.once('exit', () => resolve());
        }),
    );
    for (const entry of running) entry.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const entry of running) if (!entry.exited) entry.child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(exits);
    clearTimeout(timer);
    process.removeListener('exit', this.killOnExit);
  }
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.text();
      if (response.status === 200) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new LocalServiceError(`${url} was not ready within ${timeoutMs} ms (${last})`);
}

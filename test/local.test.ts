/**
 * `grace-moe local` end to end, run the way a user runs it: the compiled CLI as a child process,
 * which starts its own routers and engines on loopback, replays the shipped trace and rebalances.
 * Needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { CLI_PATH, requireBuiltCli, runCliProcess } from './support/cli-process.js';

interface GenerationJson {
  readonly generation: number;
  readonly strategy: string;
  readonly crossNodeBytes: number;
  readonly crossNodeBytesPerToken: number;
  readonly localHitRatio: number;
  readonly balancedness: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly tokens: number;
}

interface LocalJson {
  readonly generations: readonly GenerationJson[];
  readonly requests: { readonly sent: number; readonly completed: number; readonly failed: number };
  readonly rounds: readonly { readonly outcome: string; readonly activeGeneration: number }[];
}

/** PIDs whose parent is `parent`, from /proc/PID/stat (the field after the state is the parent PID). */
function childPids(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(fields[1]) === parent ? [Number(entry)] : [];
      } catch {
        return [];
      }
    });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** Processes a test started, killed in afterEach if a failed test left them running. */
const started: number[] = [];

beforeAll(() => {
  requireBuiltCli();
});

afterEach(() => {
  for (const pid of started.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
});

describe('grace-moe local', () => {
  test('60 s run rebalances to a better plan', async () => {
    const run = await runCliProcess(['local', '--duration', '60s', '--format', 'json']);

    expect(run.stderr).toContain('deployment ready');
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as LocalJson;
    const generations = result.generations;
    const first = generations[0];
    const last = generations[generations.length - 1];
    expect(first?.generation).toBe(1);
    expect(first?.strategy).toBe('contiguous');
    expect(generations.slice(1).some((generation) => generation.strategy === 'grace')).toBe(true);
    expect(last?.generation).toBeGreaterThan(1);
    expect(last?.crossNodeBytesPerToken).toBeLessThan(first?.crossNodeBytesPerToken ?? 0);
    expect(result.requests.failed).toBe(0);
    expect(result.requests.completed).toBe(result.requests.sent);
    expect(result.requests.sent).toBeGreaterThan(0);
    for (const generation of generations) {
      expect(Number.isFinite(generation.balancedness), `balancedness of generation ${generation.generation}`).toBe(true);
      expect(Number.isFinite(generation.p50Ms), `p50Ms of generation ${generation.generation}`).toBe(true);
      expect(Number.isFinite(generation.p99Ms), `p99Ms of generation ${generation.generation}`).toBe(true);
    }
    // A generation applied by the last round may have served no batch, so served is a subset of applied.
    const applied = result.rounds.filter((round) => round.outcome === 'applied').map((round) => round.activeGeneration);
    for (const generation of generations.slice(1)) expect(applied).toContain(generation.generation);
  }, 150_000);

  test('Ctrl-C stops every process', async () => {
    const child: ChildProcess = spawn(process.execPath, [CLI_PATH, 'local', '--duration', '120s', '--format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid!;
    started.push(pid);
    let stderr = '';
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, atMs: performance.now() }));
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`deployment not ready within 60 s:\n${stderr}`)), 60_000);
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        if (stderr.includes('deployment ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.stdout?.resume();

    await ready;
    const services = childPids(pid);
    started.push(...services);
    // One router and one engine for each of the default two nodes.
    expect(services).toHaveLength(4);

    const interruptedAtMs = performance.now();
    child.kill('SIGINT');
    const exit = await Promise.race([
      exited,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000)),
    ]);

    expect(exit, `no exit within 20 s of SIGINT:\n${stderr}`).not.toBeNull();
    expect(exit?.code).toBe(130);
    expect((exit?.atMs ?? Infinity) - interruptedAtMs).toBeLessThan(20_000);
    expect(stderr).toContain('stopped by signal');
    for (const service of services) expect(isAlive(service), `service ${service} still running`).toBe(false);
  }, 90_000);

  // A terminal sends Ctrl-C to the whole foreground process group, so the routers and engines get
  // SIGINT too. Sent while the rollout of generation 2 waits for readiness, the engines are gone
  // and the readiness checks fail until the rollout's timeout.
  test('Ctrl-C to the group during a rollout', async () => {
    const child: ChildProcess = spawn(process.execPath, [CLI_PATH, 'local', '--duration', '120s', '--format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const pid = child.pid!;
    started.push(pid);
    let stderr = '';
    const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(performance.now())));
    const rolling = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no rollout within 60 s:\n${stderr}`)), 60_000);
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        if (stderr.includes('rollout of generation 2 started')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.stdout?.resume();

    await rolling;
    started.push(...childPids(pid));
    // Staging and the load requests take tens of milliseconds, loading the instances about a second.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const interruptedAtMs = performance.now();
    process.kill(-pid, 'SIGINT');
    const exitedAtMs = await exited;

    expect(exitedAtMs - interruptedAtMs, stderr).toBeLessThan(20_000);
  }, 120_000);

  test('--report writes a self-contained HTML file', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'grace-moe-local-report-'));
    try {
      const file = join(folder, 'run.html');

      const run = await runCliProcess(['local', '--duration', '15s', '--interval', '5s', '--format', 'json', '--report', file]);

      expect(run.code).toBe(0);
      expect(run.stderr).toContain(`report written to ${file}`);
      const html = await readFile(file, 'utf8');
      expect(html).toContain('<svg');
      expect(html).not.toContain('<script');
      expect(html).toContain('contiguous');
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  }, 90_000);
});

/**
 * Runs the compiled `grace-moe operator` (dist/src/cli/main.js) as a local process for the
 * cluster tests, reads its /readyz and /metrics, and stops it by its own PID. Its JSON log lines
 * go to a file, so a failing test can show them and assertions can search them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { CLI_PATH, requireBuiltCli } from './cli-process.js';

const LISTEN_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 100;
const LOG_TAIL_LINES = 40;

/** How a process ended: its exit code, or the signal that killed it. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Body of the operator's /healthz and /readyz. */
export interface OperatorProbe {
  readonly status: string;
  readonly synced: boolean;
  readonly leader: boolean;
  readonly identity: string | null;
}

/** One JSON log line of a grace-moe service (pino). */
export interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface OperatorProcess {
  readonly pid: number;
  /** Base URL of /metrics, /healthz and /readyz, from the "service listening" log line. */
  readonly url: string;
  readonly logPath: string;
  /** Settles when the process has exited. */
  readonly exited: Promise<ProcessExit>;
  readonly running: boolean;
  /** Parsed JSON log lines so far; lines that are not JSON (stderr) are skipped. */
  logRecords(): LogRecord[];
  /** The last lines of the log, for failure messages. */
  logTail(): string;
  /** GET /readyz: the HTTP status and body. */
  readyz(): Promise<{ readonly status: number; readonly body: OperatorProbe }>;
  /** GET /metrics as Prometheus text. */
  metrics(): Promise<string>;
  /** Sends `signal` to the process (by its PID) and waits for it to exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ProcessExit>;
}

export interface OperatorProcessOptions {
  /** Flags after `operator`; add --port 0 and --host 127.0.0.1 to serve on a free loopback port. */
  readonly args: readonly string[];
  /** File the process's standard output and error are appended to. */
  readonly logPath: string;
}

/** Returns the environment without GRACE_MOE_* variables, so only the given flags configure the process. */
function cleanEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GRACE_MOE_')));
}

function parseLogRecords(text: string): LogRecord[] {
  const records: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch {
      // A line cut at the end of the file, still being written.
    }
  }
  return records;
}

/**
 * Starts `node dist/src/cli/main.js operator ...args` and resolves once it logs "service
 * listening". Rejects with the log tail when the process exits first or does not listen within 30 s.
 */
export async function startOperatorProcess(options: OperatorProcessOptions): Promise<OperatorProcess> {
  requireBuiltCli();
  const logFd = openSync(options.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [CLI_PATH, 'operator', ...options.args], { stdio: ['ignore', logFd, logFd], env: cleanEnvironment() });
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`the operator process did not start; log: ${options.logPath}`);
  }

  let exit: ProcessExit | null = null;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const readLog = (): string => readFileSync(options.logPath, 'utf8');
  const logTail = (): string => readLog().trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
  const logRecords = (): LogRecord[] => parseLogRecords(readLog()).filter((record) => record['pid'] === pid);

  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  let url: string | undefined;
  while (url === undefined) {
    const listening = logRecords().find((record) => record.msg === 'service listening');
    if (listening !== undefined) {
      url = String(listening['url']);
      break;
    }
    if (exit !== null) {
      throw new Error(`the operator exited (${JSON.stringify(exit)}) before listening; log tail:\n${logTail()}`);
    }
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      throw new Error(`the operator did not listen within ${LISTEN_TIMEOUT_MS} ms; log tail:\n${logTail()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  const baseUrl = url;

  return {
    pid,
    url: baseUrl,
    logPath: options.logPath,
    exited,
    get running() {
      return exit === null;
    },
    logRecords,
    logTail,
    async readyz() {
      const response = await fetch(`${baseUrl}/readyz`);
      return { status: response.status, body: (await response.json()) as OperatorProbe };
    },
    async metrics() {
      const response = await fetch(`${baseUrl}/metrics`);
      if (response.status !== 200) {
        throw new Error(`GET ${baseUrl}/metrics returned ${response.status}`);
      }
      return response.text();
    },
    async stop(signal = 'SIGTERM', graceMs = 20_000) {
      if (exit !== null) return exit;
      process.kill(pid, signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      const outcome = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        process.kill(pid, 'SIGKILL');
        return exited;
      }
      return outcome;
    },
  };
}

/**
 * Returns the value of one sample in Prometheus text, or undefined when the series is absent.
 * `labels` must list every label of the series, in any order.
 */
export function metricValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const expected = Object.entries(labels)
    .map(([label, value]) => `${label}="${value}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const found = (match[2] ?? '')
      .split(',')
      .filter((pair) => pair !== '')
      .sort()
      .join(',');
    if (found === expected) return Number(match[3]);
  }
  return undefined;
}

/**
 * Starts a real Kubernetes control plane as local processes for the cluster tests, in the manner
 * of controller-runtime's envtest: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
 * and kwok (fake kubelets). The binaries come from `.ci/control-plane/build.sh`.
 *
 * Every process binds to 127.0.0.1 on a free port, keeps its state in one temporary folder and is
 * stopped by its own PID. Certificates are throw-away ones made with the `openssl` command. The pod
 * and node IPs that kwok assigns are bookkeeping only: nothing listens on them, so nothing may
 * connect to them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/trace/default.js';

/** Script that builds the binaries and prints their folder with `--print-bin-dir`. */
export const BUILD_SCRIPT = join(packageRoot(), '.ci', 'control-plane', 'build.sh');

/** Annotation by which kwok selects the nodes it manages (no other node is touched). */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';
export const KWOK_NODE_ANNOTATION_VALUE = 'fake';

/** Extended resource that fake GPU nodes advertise. */
export const GPU_RESOURCE = 'nvidia.com/gpu';

const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'kwok', 'helm'] as const;
type BinaryName = (typeof BINARIES)[number];

/** kwok Stage objects (node initialize and heartbeat, pod ready), written by build.sh beside the binaries. */
const KWOK_STAGES_FILE = 'kwok-stages.yaml';

export interface ControlPlaneOptions {
  /** Folder containing the binaries (default GRACE_MOE_CONTROL_PLANE_BIN, else the cache folder of build.sh). */
  readonly binDir?: string;
  /** Maximum wait for kube-apiserver's /readyz to return 200 (default 90 000 ms). */
  readonly apiserverReadyTimeoutMs?: number;
  /** Keep the temporary folder (certificates, logs, etcd data) after stop() for debugging (default false). */
  readonly keepDir?: boolean;
}

/** Exit code and complete output of one kubectl or helm run. */
export interface ToolRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ToolOptions {
  /** Text written to the tool's standard input (for `apply -f -`). */
  readonly stdin?: string;
  /** Kubeconfig to use in place of the admin one, for example from kubeconfigForToken(). */
  readonly kubeconfig?: string;
  /** Time after which the tool is killed with SIGKILL (default 120 000 ms). */
  readonly timeoutMs?: number;
}

/** Versions recorded in the build's stamp file. */
export interface ControlPlaneVersions {
  readonly kubernetes: string;
  readonly etcd: string;
  readonly kwok: string;
  readonly helm: string;
}

export interface ControlPlane {
  /** Admin kubeconfig (client certificate in the system:masters group). */
  readonly kubeconfigPath: string;
  /** kube-apiserver URL, https://127.0.0.1:PORT. */
  readonly server: string;
  /** Temporary folder with certificates, kubeconfigs, logs and etcd data. */
  readonly dir: string;
  /** Folder of the log file of each process, named after the binary. */
  readonly logDir: string;
  readonly versions: ControlPlaneVersions;
  kubectl(args: readonly string[], options?: ToolOptions): Promise<ToolRun>;
  helm(args: readonly string[], options?: ToolOptions): Promise<ToolRun>;
  /** Creates nodes managed by kwok, waits until they are Ready and returns their names. */
  createFakeGpuNodes(count: number, gpusPerNode: number): Promise<string[]>;
  /** Mints a token for a ServiceAccount through the TokenRequest API (valid one hour). */
  tokenFor(namespace: string, serviceAccount: string): Promise<string>;
  /** Writes a kubeconfig that authenticates with `token` and returns its path. */
  kubeconfigForToken(token: string): Promise<string>;
  /** Stops every process (SIGTERM, then SIGKILL after 10 s) and deletes the temporary folder. */
  stop(): Promise<void>;
}

const DEFAULT_APISERVER_READY_TIMEOUT_MS = 90_000;
const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
const CONTROLLERS_READY_TIMEOUT_MS = 60_000;
const NODE_READY_TIMEOUT_SECONDS = 60;
const STOP_GRACE_MS = 10_000;
// The kubelet's default lease duration; kwok renews each fake node's Lease in kube-node-lease.
const NODE_LEASE_DURATION_SECONDS = 40;
// Pod IPs that kwok hands out: bookkeeping only, nothing listens on them.
const FAKE_POD_CIDR = '10.244.0.0/16';
const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/12';
const POLL_INTERVAL_MS = 250;
const LOG_TAIL_LINES = 30;

// ---- Locating the binaries -------------------------------------------------------------------

/** Returns the folder that build.sh fills, without building anything. */
async function defaultBinDir(): Promise<string> {
  const run = await runProcess('bash', [BUILD_SCRIPT, '--print-bin-dir'], { timeoutMs: 10_000 });
  const binDir = run.stdout.trim();
  if (run.code !== 0 || binDir === '') {
    throw new Error(`"bash ${BUILD_SCRIPT} --print-bin-dir" failed (exit ${String(run.code)}): ${run.stderr.trim()}`);
  }
  return binDir;
}

async function resolveBinDir(options: ControlPlaneOptions): Promise<string> {
  const binDir = options.binDir ?? process.env['GRACE_MOE_CONTROL_PLANE_BIN'] ?? (await defaultBinDir());
  const missing = [...BINARIES, KWOK_STAGES_FILE].filter((name) => !existsSync(join(binDir, name)));
  if (missing.length > 0) {
    throw new Error(
      `control-plane binaries not found in ${binDir}: ${missing.join(', ')}; ` +
        `build them with "nice -n 19 bash .ci/control-plane/build.sh" (a cold build takes tens of minutes) ` +
        `or set GRACE_MOE_CONTROL_PLANE_BIN to a folder that holds all of ${BINARIES.join(', ')} and ${KWOK_STAGES_FILE}`,
    );
  }
  return binDir;
}

/** Reads the versions from the stamp file that build.sh writes next to bin/, or "unknown" without one. */
function readVersions(binDir: string): ControlPlaneVersions {
  const stampPath = join(binDir, '..', 'stamp');
  const fields = new Map<string, string>();
  if (existsSync(stampPath)) {
    for (const line of readFileSync(stampPath, 'utf8').split('\n')) {
      const words = line.trim().split(/\s+/);
      const key = words[0];
      const value = words[words.length - 1];
      if (key !== undefined && value !== undefined && words.length >= 2) {
        fields.set(key, value);
      }
    }
  }
  return {
    kubernetes: fields.get('kubernetes') ?? 'unknown',
    etcd: fields.get('etcd') ?? 'unknown',
    kwok: fields.get('kwok') ?? 'unknown',
    helm: fields.get('helm') ?? 'unknown',
  };
}

// ---- Child processes -------------------------------------------------------------------------

interface RunOptions {
  readonly stdin?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/** Runs a command to completion and collects its output. The command is killed after `timeoutMs`. */
function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    const timeoutMs = options.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    const timer = setTimeout(() => {
      stderr += `\n[control-plane harness] ${command} timed out after ${timeoutMs} ms and was killed\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits without reading its input (openssl, for one) raises EPIPE here. Its
    // exit code and output already report any failure, so the write error itself is dropped.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** Runs a command and throws with its output unless it exits with 0. */
async function runOrThrow(command: string, args: readonly string[], options: RunOptions = {}): Promise<ToolRun> {
  const run = await runProcess(command, args, options);
  if (run.code !== 0) {
    throw new Error(`"${command} ${args.join(' ')}" failed (exit ${String(run.code)}):\n${run.stderr}${run.stdout}`);
  }
  return run;
}

/** A long-running server process whose output goes to a log file. */
class ServerProcess {
  readonly exited: Promise<void>;
  exitDescription: string | undefined;
  private readonly child: ChildProcess;

  constructor(
    readonly name: BinaryName,
    readonly logPath: string,
    binDir: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
  ) {
    const logFd = openSync(logPath, 'a');
    try {
      this.child = spawn(join(binDir, name), args, { stdio: ['ignore', logFd, logFd], env });
    } finally {
      closeSync(logFd);
    }
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        this.exitDescription = `failed to start: ${error.message}`;
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        this.exitDescription = signal === null ? `exited with code ${String(code)}` : `was killed by ${signal}`;
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitDescription === undefined;
  }

  /** Sends SIGKILL at once; used by the process-exit hook, which cannot wait. */
  killNow(): void {
    if (this.running) {
      this.child.kill('SIGKILL');
    }
  }

  /** Sends SIGTERM, waits up to STOP_GRACE_MS, then sends SIGKILL. */
  async stop(): Promise<void> {
    if (!this.running) {
      return;
    }
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), STOP_GRACE_MS);
    });
    const outcome = await Promise.race([this.exited.then(() => 'exited' as const), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Returns the last lines of the log file, for error messages. */
  logTail(): string {
    if (!existsSync(this.logPath)) {
      return '(no log file)';
    }
    const lines = readFileSync(this.logPath, 'utf8').trimEnd().split('\n');
    return lines.slice(-LOG_TAIL_LINES).join('\n');
  }
}

// ---- Ports, polling and HTTP probes ----------------------------------------------------------

/** Returns `count` distinct free TCP ports on 127.0.0.1; all are held open until every one is found. */
async function findFreePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.on('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

interface TlsMaterial {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

/** Returns the HTTP status of a GET, or 0 when the connection fails or takes over 5 s. */
function probeStatus(url: string, tls?: TlsMaterial): Promise<number> {
  return new Promise((resolve) => {
    const options = { method: 'GET', timeout: 5_000, ...(tls ?? {}) };
    const request = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, options, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(0));
    request.end();
  });
}

/**
 * Polls `check` until it returns true. Fails with `description` after `timeoutMs`, or at once when
 * one of `watched` has exited, showing that process's log tail.
 */
async function waitUntil(
  description: string,
  timeoutMs: number,
  watched: readonly ServerProcess[],
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = watched.find((server) => !server.running);
    if (dead !== undefined) {
      throw new Error(`${dead.name} ${dead.exitDescription ?? 'exited'} while waiting for ${description}; log tail:\n${dead.logTail()}`);
    }
    if (await check()) {
      return;
    }
    if (Date.now() > deadline) {
      const tails = watched.map((server) => `--- ${server.name} ---\n${server.logTail()}`).join('\n');
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}; log tails:\n${tails}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

// ---- Certificates ----------------------------------------------------------------------------

interface Certificates {
  readonly caCert: string;
  readonly servingCert: string;
  readonly servingKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly serviceAccountKey: string;
  readonly serviceAccountPublicKey: string;
}

const EC_KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Issues a certificate for a new P-256 key, signed by the CA, with the given openssl extension lines. */
async function issueCertificate(
  certDir: string,
  name: string,
  subject: string,
  extensions: readonly string[],
): Promise<{ cert: string; key: string }> {
  const key = join(certDir, `${name}.key`);
  const csr = join(certDir, `${name}.csr`);
  const cert = join(certDir, `${name}.crt`);
  const extFile = join(certDir, `${name}.ext`);
  await writeFile(extFile, `${extensions.join('\n')}\n`);
  await runOrThrow('openssl', ['req', '-new', ...EC_KEY_ARGS, '-keyout', key, '-subj', subject, '-out', csr]);
  await runOrThrow('openssl', [
    'x509', '-req', '-in', csr, '-CA', join(certDir, 'ca.crt'), '-CAkey', join(certDir, 'ca.key'),
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', extFile, '-out', cert,
  ]);
  return { cert, key };
}

/**
 * Creates a throw-away CA, the serving certificate shared by kube-apiserver,
 * kube-controller-manager and kube-scheduler (SAN 127.0.0.1 and localhost), the admin client
 * certificate (O=system:masters) and the ServiceAccount signing key pair.
 */
async function createCertificates(certDir: string): Promise<Certificates> {
  await mkdir(certDir, { recursive: true });
  const caCert = join(certDir, 'ca.crt');
  await runOrThrow('openssl', [
    'req', '-x509', ...EC_KEY_ARGS, '-keyout', join(certDir, 'ca.key'), '-out', caCert, '-days', '2',
    '-subj', '/CN=grace-moe-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);

  const serving = await issueCertificate(certDir, 'serving', '/CN=kube-apiserver', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  const admin = await issueCertificate(certDir, 'admin', '/O=system:masters/CN=grace-moe-test-admin', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ]);

  const serviceAccountKey = join(certDir, 'service-account.key');
  const serviceAccountPublicKey = join(certDir, 'service-account.pub');
  await runOrThrow('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', serviceAccountKey]);
  await runOrThrow('openssl', ['pkey', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPublicKey]);

  return {
    caCert,
    servingCert: serving.cert,
    servingKey: serving.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    serviceAccountKey,
    serviceAccountPublicKey,
  };
}

// ---- Kubeconfigs -----------------------------------------------------------------------------

type KubeconfigUser = { readonly clientCertificate: string; readonly clientKey: string } | { readonly token: string };

/** Renders a kubeconfig with one cluster, one user and one context, as JSON (which is valid YAML). */
function renderKubeconfig(server: string, caCert: string, user: KubeconfigUser): string {
  const userEntry =
    'token' in user
      ? { token: user.token }
      : { 'client-certificate': user.clientCertificate, 'client-key': user.clientKey };
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'grace-moe-test', cluster: { server, 'certificate-authority': caCert } }],
    users: [{ name: 'grace-moe-test-user', user: userEntry }],
    contexts: [{ name: 'grace-moe-test', context: { cluster: 'grace-moe-test', user: 'grace-moe-test-user' } }],
    'current-context': 'grace-moe-test',
    preferences: {},
  };
  return `${JSON.stringify(kubeconfig, null, 2)}\n`;
}

// ---- Fake GPU nodes --------------------------------------------------------------------------

/** Renders a Node for kwok with GPUs in both capacity and allocatable. */
function fakeGpuNode(name: string, gpusPerNode: number): object {
  const resources = { cpu: '64', memory: '512Gi', pods: '110', [GPU_RESOURCE]: String(gpusPerNode) };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { [KWOK_NODE_ANNOTATION]: KWOK_NODE_ANNOTATION_VALUE, 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        type: 'kwok',
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node-role.kubernetes.io/agent': '',
      },
    },
    status: { capacity: resources, allocatable: resources },
  };
}

// ---- Start and stop --------------------------------------------------------------------------

/** Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, as the file header describes. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = await resolveBinDir(options);
  const versions = readVersions(binDir);
  const dir = await mkdtemp(join(tmpdir(), 'grace-moe-control-plane-'));
  const logDir = join(dir, 'logs');
  await mkdir(logDir);

  const processes: ServerProcess[] = [];
  const killOnExit = (): void => {
    for (const server of processes) {
      server.killNow();
    }
  };
  process.on('exit', killOnExit);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) {
      return;
    }
    stopped = true;
    // Clients first, then the apiserver, then etcd, so that none logs a storm of errors.
    for (const server of [...processes].reverse()) {
      await server.stop();
    }
    process.off('exit', killOnExit);
    if (options.keepDir !== true) {
      await rm(dir, { recursive: true, force: true });
    }
  };

  try {
    return await startProcesses({ binDir, versions, dir, logDir, processes, stop, isStopped: () => stopped, options });
  } catch (error) {
    await stop();
    throw error;
  }
}

interface StartContext {
  readonly binDir: string;
  readonly versions: ControlPlaneVersions;
  readonly dir: string;
  readonly logDir: string;
  readonly processes: ServerProcess[];
  readonly stop: () => Promise<void>;
  readonly isStopped: () => boolean;
  readonly options: ControlPlaneOptions;
}

async function startProcesses(context: StartContext): Promise<ControlPlane> {
  const { binDir, versions, dir, logDir, processes, stop, isStopped, options } = context;
  const certs = await createCertificates(join(dir, 'pki'));
  const [etcdClientPort, etcdPeerPort, apiserverPort, controllerManagerPort, schedulerPort] = (await findFreePorts(5)) as [
    number, number, number, number, number,
  ];
  const server = `https://127.0.0.1:${apiserverPort}`;
  const tls: TlsMaterial = {
    ca: readFileSync(certs.caCert, 'utf8'),
    cert: readFileSync(certs.adminCert, 'utf8'),
    key: readFileSync(certs.adminKey, 'utf8'),
  };

  // Child processes get their own HOME so that nothing lands in the developer's ~/.kube or ~/.kwok.
  const home = join(dir, 'home');
  await mkdir(home);
  const childEnv: NodeJS.ProcessEnv = { ...process.env, HOME: home, KUBECACHEDIR: join(dir, 'kube-cache') };
  const launch = (name: BinaryName, args: readonly string[]): ServerProcess => {
    const started = new ServerProcess(name, join(logDir, `${name}.log`), binDir, args, childEnv);
    processes.push(started);
    return started;
  };

  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const etcd = launch('etcd', [
    '--name=default',
    `--data-dir=${join(dir, 'etcd')}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${etcdPeerUrl}`,
    `--initial-advertise-peer-urls=${etcdPeerUrl}`,
    `--initial-cluster=default=${etcdPeerUrl}`,
    '--initial-cluster-state=new',
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ]);
  await waitUntil('etcd /health', 30_000, [etcd], async () => (await probeStatus(`${etcdUrl}/health`)) === 200);

  const apiserver = launch('kube-apiserver', [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    // The endpoint reconciler rejects a loopback advertise address, and no pod needs to reach
    // the apiserver through the "kubernetes" Service here, so that Service gets no endpoints.
    '--endpoint-reconciler-type=none',
    `--secure-port=${apiserverPort}`,
    `--cert-dir=${join(dir, 'apiserver-certs')}`,
    `--tls-cert-file=${certs.servingCert}`,
    `--tls-private-key-file=${certs.servingKey}`,
    `--client-ca-file=${certs.caCert}`,
    '--authorization-mode=Node,RBAC',
    '--anonymous-auth=false',
    `--service-account-issuer=${server}`,
    `--service-account-key-file=${certs.serviceAccountPublicKey}`,
    `--service-account-signing-key-file=${certs.serviceAccountKey}`,
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
    '--allow-privileged=true',
  ]);
  const readyTimeoutMs = options.apiserverReadyTimeoutMs ?? DEFAULT_APISERVER_READY_TIMEOUT_MS;
  await waitUntil('kube-apiserver /readyz', readyTimeoutMs, [etcd, apiserver], async () => (await probeStatus(`${server}/readyz`, tls)) === 200);

  const kubeconfigPath = join(dir, 'admin.kubeconfig');
  await writeFile(
    kubeconfigPath,
    renderKubeconfig(server, certs.caCert, { clientCertificate: certs.adminCert, clientKey: certs.adminKey }),
    { mode: 0o600 },
  );

  const servingFlags = (port: number): string[] => [
    `--kubeconfig=${kubeconfigPath}`,
    `--authentication-kubeconfig=${kubeconfigPath}`,
    `--authorization-kubeconfig=${kubeconfigPath}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${port}`,
    `--tls-cert-file=${certs.servingCert}`,
    `--tls-private-key-file=${certs.servingKey}`,
    '--leader-elect=false',
  ];
  const controllerManager = launch('kube-controller-manager', [
    ...servingFlags(controllerManagerPort),
    `--service-account-private-key-file=${certs.serviceAccountKey}`,
    `--root-ca-file=${certs.caCert}`,
    '--use-service-account-credentials=true',
  ]);
  const scheduler = launch('kube-scheduler', servingFlags(schedulerPort));
  const kwok = launch('kwok', [
    `--kubeconfig=${kubeconfigPath}`,
    `--config=${join(binDir, KWOK_STAGES_FILE)}`,
    `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=${KWOK_NODE_ANNOTATION_VALUE}`,
    // An empty server address and node port 0 keep kwok from opening any port.
    '--server-address=',
    '--node-port=0',
    `--node-lease-duration-seconds=${NODE_LEASE_DURATION_SECONDS}`,
    `--cidr=${FAKE_POD_CIDR}`,
  ]);
  const clients = [etcd, apiserver, controllerManager, scheduler, kwok];

  const toolEnv: NodeJS.ProcessEnv = {
    ...childEnv,
    HELM_CACHE_HOME: join(dir, 'helm', 'cache'),
    HELM_CONFIG_HOME: join(dir, 'helm', 'config'),
    HELM_DATA_HOME: join(dir, 'helm', 'data'),
  };
  const runTool = (name: 'kubectl' | 'helm', args: readonly string[], toolOptions: ToolOptions = {}): Promise<ToolRun> => {
    if (isStopped()) {
      return Promise.reject(new Error(`${name} called after stop()`));
    }
    const runOptions: RunOptions = {
      env: toolEnv,
      ...(toolOptions.stdin === undefined ? {} : { stdin: toolOptions.stdin }),
      ...(toolOptions.timeoutMs === undefined ? {} : { timeoutMs: toolOptions.timeoutMs }),
    };
    return runProcess(join(binDir, name), [`--kubeconfig=${toolOptions.kubeconfig ?? kubeconfigPath}`, ...args], runOptions);
  };
  const kubectl = (args: readonly string[], toolOptions?: ToolOptions): Promise<ToolRun> => runTool('kubectl', args, toolOptions);
  const kubectlOrThrow = async (args: readonly string[], toolOptions?: ToolOptions): Promise<ToolRun> => {
    const run = await kubectl(args, toolOptions);
    if (run.code !== 0) {
      const exited = processes.filter((server) => !server.running).map((server) => `${server.name} ${server.exitDescription ?? 'exited'}`);
      const note = exited.length === 0 ? '' : `\nstopped control-plane processes: ${exited.join('; ')} (logs in ${logDir})`;
      throw new Error(`"kubectl ${args.join(' ')}" failed (exit ${String(run.code)}):\n${run.stderr}${run.stdout}${note}`);
    }
    return run;
  };

  // The ServiceAccount controller creates "default" in every namespace and the scheduler serves
  // /healthz with the shared serving certificate once it has synced, so both prove their process works.
  await waitUntil('the default ServiceAccount (kube-controller-manager)', CONTROLLERS_READY_TIMEOUT_MS, clients, async () => {
    const run = await kubectl(['get', 'serviceaccount', 'default', '--namespace=default', '--output=name']);
    return run.code === 0;
  });
  await waitUntil('kube-scheduler /healthz', CONTROLLERS_READY_TIMEOUT_MS, clients, async () => {
    return (await probeStatus(`https://127.0.0.1:${schedulerPort}/healthz`, { ca: tls.ca })) === 200;
  });

  let nodeSerial = 0;
  let tokenSerial = 0;
  return {
    kubeconfigPath,
    server,
    dir,
    logDir,
    versions,
    kubectl,
    helm: (args, toolOptions) => runTool('helm', args, toolOptions),

    async createFakeGpuNodes(count, gpusPerNode) {
      if (!Number.isInteger(count) || count < 1 || !Number.isInteger(gpusPerNode) || gpusPerNode < 0) {
        throw new Error(`invalid fake node request: count=${count}, gpusPerNode=${gpusPerNode}; expected integers with count >= 1 and gpusPerNode >= 0`);
      }
      const names = Array.from({ length: count }, () => `fake-gpu-node-${nodeSerial++}`);
      const list = { apiVersion: 'v1', kind: 'List', items: names.map((name) => fakeGpuNode(name, gpusPerNode)) };
      await kubectlOrThrow(['create', '--filename=-'], { stdin: JSON.stringify(list) });
      await kubectlOrThrow(
        ['wait', '--for=condition=Ready', `--timeout=${NODE_READY_TIMEOUT_SECONDS}s`, ...names.map((name) => `node/${name}`)],
        { timeoutMs: (NODE_READY_TIMEOUT_SECONDS + 30) * 1000 },
      );
      return names;
    },

    async tokenFor(namespace, serviceAccount) {
      const run = await kubectlOrThrow(['create', 'token', serviceAccount, `--namespace=${namespace}`, '--duration=1h']);
      return run.stdout.trim();
    },

    async kubeconfigForToken(token) {
      const path = join(dir, `token-${tokenSerial++}.kubeconfig`);
      await writeFile(path, renderKubeconfig(server, certs.caCert, { token }), { mode: 0o600 });
      return path;
    },

    stop,
  };
}

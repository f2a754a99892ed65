/**
 * Packaging checks that need no cluster. The Helm chart lints, renders and rejects bad values, and
 * its generated CRD and RBAC agree with crds/ and manifests/. The Dockerfile passes hadolint and
 * copies only files that exist in the repository or in the build output (`npm run build`).
 * helm comes from the control-plane cache (`npm run control-plane:build`), hadolint from `.ci/tools.sh`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isMap, isScalar, parseAllDocuments, parseDocument, type Node as YamlNode } from 'yaml';
import { CLI_PATH, requireBuiltCli } from './support/cli-process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHART_DIR = join(ROOT, 'charts', 'grace-moe');
const RELEASE = 'gm';
const RELEASE_NAMESPACE = 'gm-system';
const HADOLINT_TIMEOUT_MS = 120_000;

interface ProcessRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface KubeDocument {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  rules?: unknown[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): ProcessRun {
  const result = spawnSync(command, args, { encoding: 'utf8', env, timeout: timeoutMs });
  if (result.error !== undefined) {
    throw new Error(`"${command} ${args.join(' ')}" could not run: ${result.error.message}`);
  }
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Returns the helm binary that .ci/control-plane/build.sh caches, or throws with the command that builds it. */
function findHelm(): string {
  const override = process.env['GRACE_MOE_CONTROL_PLANE_BIN'];
  const binDir = override ?? run('bash', [join(ROOT, '.ci/control-plane/build.sh'), '--print-bin-dir']).stdout.trim();
  const helm = join(binDir, 'helm');
  if (binDir === '' || !existsSync(helm)) {
    throw new Error(`helm not found in "${binDir}"; run "npm run control-plane:build" to build it (a cold build takes tens of minutes)`);
  }
  return helm;
}

/** Parses a multi-document YAML stream and drops empty documents. */
function parseObjects<T>(text: string): T[] {
  return parseAllDocuments(text)
    .map((document) => document.toJS() as T | null)
    .filter((object): object is T => object !== null);
}

let helm = '';
let helmHome = '';

function helmRun(args: readonly string[]): ProcessRun {
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
  };
  return run(helm, args, env);
}

/** Renders the chart with `--set` assignments and returns its objects; fails the test on a non-zero exit. */
function renderChart(...assignments: string[]): KubeDocument[] {
  const sets = assignments.flatMap((assignment) => ['--set', assignment]);
  const rendered = helmRun(['template', RELEASE, CHART_DIR, `--namespace=${RELEASE_NAMESPACE}`, ...sets]);
  expect(rendered.stderr).toBe('');
  expect(rendered.code).toBe(0);
  return parseObjects<KubeDocument>(rendered.stdout);
}

function findObject(objects: readonly KubeDocument[], kind: string): KubeDocument {
  const found = objects.filter((object) => object.kind === kind);
  expect(found, `expected exactly one ${kind}`).toHaveLength(1);
  return found[0] as KubeDocument;
}

beforeAll(() => {
  helm = findHelm();
  helmHome = mkdtempSync(join(tmpdir(), 'grace-moe-helm-'));
});

afterAll(() => {
  if (helmHome !== '') rmSync(helmHome, { recursive: true, force: true });
});

describe('helm chart', () => {
  test('helm lint passes', () => {
    const lint = helmRun(['lint', CHART_DIR]);

    expect(lint.code).toBe(0);
    expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(lint.stdout).not.toContain('[ERROR]');
    expect(lint.stdout).not.toContain('[WARNING]');
  });

  test('default render contains the operator objects', () => {
    const objects = renderChart();
    const serviceAccount = findObject(objects, 'ServiceAccount');
    const deployment = findObject(objects, 'Deployment') as KubeDocument & {
      spec: { template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } };
    };

    expect(objects.map((object) => object.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'Deployment',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
    ]);
    expect(deployment.metadata.namespace).toBe(RELEASE_NAMESPACE);
    expect(deployment.spec.template.spec.serviceAccountName).toBe(serviceAccount.metadata.name);
    expect(deployment.spec.template.spec.containers[0]?.args).toEqual(['operator']);
  });

  test('crds.enabled=false renders no CRD', () => {
    const objects = renderChart('crds.enabled=false');

    expect(objects.filter((object) => object.kind === 'CustomResourceDefinition')).toEqual([]);
    expect(objects.filter((object) => object.kind === 'Deployment')).toHaveLength(1);
  });

  test.each([
    { name: 'default', assignments: [], keep: true },
    { name: 'crds.keep=true', assignments: ['crds.keep=true'], keep: true },
    { name: 'crds.keep=false', assignments: ['crds.keep=false'], keep: false },
  ] as const)('CRD resource policy with $name', ({ assignments, keep }) => {
    const crd = findObject(renderChart(...assignments), 'CustomResourceDefinition');
    const policy = crd.metadata.annotations?.['helm.sh/resource-policy'];

    expect(crd.metadata.name).toBe('moedeployments.grace-moe.io');
    expect(policy).toBe(keep ? 'keep' : undefined);
  });

  test('autoscaling kind hpa renders an HPA of the MoEDeployment', () => {
    const objects = renderChart('autoscaling.enabled=true', 'autoscaling.kind=hpa', 'autoscaling.targetName=olmoe', 'autoscaling.maxReplicas=6');
    const hpa = findObject(objects, 'HorizontalPodAutoscaler') as KubeDocument & {
      spec: { scaleTargetRef: object; minReplicas: number; maxReplicas: number };
    };

    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.metadata.namespace).toBe(RELEASE_NAMESPACE);
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', name: 'olmoe' });
    expect(hpa.spec.minReplicas).toBe(1);
    expect(hpa.spec.maxReplicas).toBe(6);
    expect(objects.filter((object) => object.kind === 'ScaledObject')).toEqual([]);
  });

  test('autoscaling kind keda renders a ScaledObject', () => {
    const objects = renderChart('autoscaling.enabled=true', 'autoscaling.kind=keda', 'autoscaling.targetName=olmoe');
    const scaledObject = findObject(objects, 'ScaledObject') as KubeDocument & {
      spec: { scaleTargetRef: object; triggers: { type: string; metadata: Record<string, string> }[] };
    };

    expect(scaledObject.apiVersion).toBe('keda.sh/v1alpha1');
    expect(scaledObject.spec.scaleTargetRef).toEqual({ apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', name: 'olmoe' });
    expect(scaledObject.spec.triggers.map((trigger) => trigger.type)).toEqual(['prometheus']);
    expect(scaledObject.spec.triggers[0]?.metadata['threshold']).toBe('100000');
    expect(objects.filter((object) => object.kind === 'HorizontalPodAutoscaler')).toEqual([]);
  });

  test('autoscaling without targetName fails', () => {
    const rendered = helmRun(['template', RELEASE, CHART_DIR, '--set', 'autoscaling.enabled=true']);

    expect(rendered.code).not.toBe(0);
    expect(rendered.stderr).toContain('autoscaling.targetName must name the MoEDeployment to scale');
  });

  test('serviceMonitor.enabled renders a ServiceMonitor', () => {
    const objects = renderChart('metrics.serviceMonitor.enabled=true');
    const monitor = findObject(objects, 'ServiceMonitor') as KubeDocument & { spec: { endpoints: { port: string; path: string }[] } };
    const service = findObject(objects, 'Service') as KubeDocument & { spec: { ports: { name: string }[] } };

    expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(monitor.spec.endpoints).toEqual([{ port: 'http-metrics', path: '/metrics', interval: '30s' }]);
    expect(service.spec.ports.map((port) => port.name)).toContain('http-metrics');
    expect(renderChart().filter((object) => object.kind === 'ServiceMonitor')).toEqual([]);
  });

  test.each([
    { assignment: 'foo=1', location: "at ''", problem: "additional properties 'foo' not allowed" },
    { assignment: 'image.tagg=x', location: "at '/image'", problem: "additional properties 'tagg' not allowed" },
    { assignment: 'replicaCount=abc', location: "at '/replicaCount'", problem: 'got string, want integer' },
    { assignment: 'operator.workers=two', location: "at '/operator/workers'", problem: 'got string, want integer' },
    { assignment: 'image.pullPolicy=Sometimes', location: "at '/image/pullPolicy'", problem: "value must be one of 'Always', 'IfNotPresent', 'Never'" },
  ] as const)('--set $assignment is rejected', ({ assignment, location, problem }) => {
    const rendered = helmRun(['template', RELEASE, CHART_DIR, '--set', assignment]);

    expect(rendered.code).toBe(1);
    expect(rendered.stdout).toBe('');
    expect(rendered.stderr).toContain("values don't meet the specifications of the schema");
    expect(rendered.stderr).toContain(`${location}: ${problem}`);
  });

  test('every values.yaml key has a comment above it', () => {
    const text = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
    const lines = text.split('\n');
    const document = parseDocument(text);
    const uncommented: string[] = [];
    let keys = 0;

    const visit = (node: YamlNode | null | undefined, path: string): void => {
      if (!isMap(node)) return;
      for (const pair of node.items) {
        const key = pair.key;
        if (!isScalar(key) || key.range === undefined || key.range === null) continue;
        keys += 1;
        const keyPath = path === '' ? String(key.value) : `${path}.${String(key.value)}`;
        const lineIndex = text.slice(0, key.range[0]).split('\n').length - 1;
        const previous = lines[lineIndex - 1]?.trim() ?? '';
        if (!previous.startsWith('#')) uncommented.push(keyPath);
        visit(pair.value as YamlNode | null, keyPath);
      }
    };
    visit(document.contents, '');

    expect(document.errors).toEqual([]);
    expect(keys).toBeGreaterThan(40);
    expect(uncommented).toEqual([]);
  });

  test('CRD spec equals crds/ and install.yaml', () => {
    const rendered = findObject(renderChart(), 'CustomResourceDefinition');
    const crdFile = findObject(parseObjects<KubeDocument>(readFileSync(join(ROOT, 'crds', 'moedeployments.grace-moe.io.yaml'), 'utf8')), 'CustomResourceDefinition');
    const install = findObject(parseObjects<KubeDocument>(readFileSync(join(ROOT, 'manifests', 'install.yaml'), 'utf8')), 'CustomResourceDefinition');

    expect(rendered.spec).toEqual(crdFile.spec);
    expect(rendered.spec).toEqual(install.spec);
    expect(rendered.metadata.name).toBe(crdFile.metadata.name);
    expect(rendered.metadata.name).toBe(install.metadata.name);
  });

  test('RBAC rules equal manifests/rbac.yaml', () => {
    const objects = renderChart();
    const manifest = parseObjects<KubeDocument>(readFileSync(join(ROOT, 'manifests', 'rbac.yaml'), 'utf8'));
    const serviceAccount = findObject(objects, 'ServiceAccount');
    const clusterRole = findObject(objects, 'ClusterRole');
    const role = findObject(objects, 'Role');

    expect(clusterRole.rules).toEqual(findObject(manifest, 'ClusterRole').rules);
    expect(role.rules).toEqual(findObject(manifest, 'Role').rules);
    expect(role.metadata.namespace).toBe(RELEASE_NAMESPACE);
    for (const [bindingKind, roleObject] of [['ClusterRoleBinding', clusterRole], ['RoleBinding', role]] as const) {
      const binding = findObject(objects, bindingKind);
      expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: roleObject.kind, name: roleObject.metadata.name });
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: serviceAccount.metadata.name, namespace: RELEASE_NAMESPACE }]);
    }
  });
});

// ---- Dockerfile ------------------------------------------------------------------------------

interface Instruction {
  /** Index of the build stage, counted from 0 at the first FROM. */
  readonly stage: number;
  readonly keyword: string;
  readonly args: string;
}

/** Splits a Dockerfile into instructions, joining continuation lines and dropping comments. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = `${pending}${line}`.trim();
    pending = '';
    const [keyword = '', ...rest] = full.split(/\s+/);
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') stage += 1;
    instructions.push({ stage, keyword: upper, args: rest.join(' ') });
  }
  return instructions;
}

/** Splits a COPY's arguments into flags, sources and destination (shell or JSON form). */
function parseCopy(args: string): { from: string | null; sources: string[]; destination: string } {
  const words = args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags = words.filter((word) => word.startsWith('--'));
  const paths = words.filter((word) => !word.startsWith('--'));
  const from = flags.find((flag) => flag.startsWith('--from='))?.slice('--from='.length) ?? null;
  return { from, sources: paths.slice(0, -1), destination: paths[paths.length - 1] ?? '' };
}

/** Converts a .dockerignore pattern into a regular expression over context-relative paths. */
function ignorePattern(pattern: string): RegExp {
  const segment = (text: string): string =>
    text
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '[^/]*')
      .replace(/\?/g, '[^/]');
  const source = pattern.replace(/^\/+|\/+$/g, '').split('**').map(segment).join('.*');
  return new RegExp(`^${source}$`);
}

/** Returns true when a .dockerignore pattern excludes `path` or one of its parent folders. */
function isIgnored(path: string, patterns: readonly RegExp[]): boolean {
  const parts = path.replace(/^\.\//, '').split('/');
  return parts.some((_, index) => {
    const prefix = parts.slice(0, index + 1).join('/');
    return patterns.some((pattern) => pattern.test(prefix));
  });
}

/** Resolves `path` against a stage's WORKDIR into an absolute path in that stage. */
function resolveInStage(path: string, workdir: string): string {
  return posix.resolve(workdir, path);
}

describe('Dockerfile', () => {
  const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const instructions = parseDockerfile(dockerfileText);
  const finalStage = Math.max(...instructions.map((instruction) => instruction.stage));
  const stageNames = instructions
    .filter((instruction) => instruction.keyword === 'FROM')
    .map((instruction) => /\bAS\s+(\S+)$/i.exec(instruction.args)?.[1] ?? null);
  const inStage = (stage: number) => instructions.filter((instruction) => instruction.stage === stage);
  const workdirOf = (stage: number) => inStage(stage).filter((instruction) => instruction.keyword === 'WORKDIR').at(-1)?.args ?? '/';

  test('hadolint passes', () => {
    const tools = run('bash', [join(ROOT, '.ci/tools.sh')], process.env, HADOLINT_TIMEOUT_MS);
    expect(tools.code, tools.stderr).toBe(0);
    const hadolint = join(tools.stdout.trim(), 'hadolint');

    const lint = run(hadolint, [join(ROOT, 'Dockerfile')]);

    expect(lint.stdout).toBe('');
    expect(lint.code).toBe(0);
  }, HADOLINT_TIMEOUT_MS);

  test('has a build stage and a runtime stage', () => {
    expect(stageNames).toEqual(['build', null]);
    expect(finalStage).toBe(1);
  });

  test('every COPY source exists', () => {
    requireBuiltCli();
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map(ignorePattern);
    const checked: string[] = [];

    for (const instruction of instructions.filter((candidate) => candidate.keyword === 'COPY')) {
      const copy = parseCopy(instruction.args);
      for (const source of copy.sources) {
        if (copy.from === null) {
          // A source from the build context: it must exist and .dockerignore must not drop it.
          expect(existsSync(join(ROOT, source)), `COPY source ${source} is missing from the repository`).toBe(true);
          expect(isIgnored(source, ignored), `COPY source ${source} is excluded by .dockerignore`).toBe(false);
          checked.push(source);
        } else {
          // A source from the build stage, whose WORKDIR is this repository's root after npm run build.
          const stage = stageNames.indexOf(copy.from);
          expect(stage, `COPY --from=${copy.from} names no stage`).toBeGreaterThanOrEqual(0);
          const relative = posix.relative(workdirOf(stage), source);
          expect(relative.startsWith('..'), `COPY --from=${copy.from} ${source} lies outside the build WORKDIR`).toBe(false);
          expect(existsSync(join(ROOT, relative)), `build output ${relative} is missing; run "npm run build"`).toBe(true);
          checked.push(`${copy.from}:${relative}`);
        }
      }
    }

    expect(checked).toEqual([
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'src',
      'bench',
      'build:package.json',
      'build:node_modules',
      'build:dist/src',
      'data/traces',
    ]);
  });

  test('ENTRYPOINT script is in the image', () => {
    requireBuiltCli();
    const entrypoint = inStage(finalStage).find((instruction) => instruction.keyword === 'ENTRYPOINT');
    const command = JSON.parse(entrypoint?.args ?? '[]') as string[];
    const script = command[1] ?? '';
    const workdir = workdirOf(finalStage);

    // Find the COPY of the final stage that puts the script into the image, and map it back to the build.
    const copies = inStage(finalStage)
      .filter((instruction) => instruction.keyword === 'COPY')
      .map((instruction) => parseCopy(instruction.args));
    const carrier = copies.find((copy) => copy.sources.length === 1 && script.startsWith(`${resolveInStage(copy.destination, workdir)}/`));
    expect(carrier, `no COPY puts ${script} into the image`).toBeDefined();
    const destination = resolveInStage(carrier?.destination ?? '', workdir);
    const stageSource = posix.join(carrier?.sources[0] ?? '', posix.relative(destination, script));
    const buildPath = posix.relative(workdirOf(stageNames.indexOf(carrier?.from ?? '')), stageSource);

    expect(command[0]).toBe('node');
    expect(carrier?.from).toBe('build');
    expect(buildPath).toBe('dist/src/cli/main.js');
    expect(join(ROOT, buildPath)).toBe(CLI_PATH);
    expect(existsSync(CLI_PATH)).toBe(true);
  });

  test('runs as a numeric non-root user', () => {
    const user = inStage(finalStage).filter((instruction) => instruction.keyword === 'USER').at(-1)?.args ?? '';
    const match = /^(\d+)(?::(\d+))?$/.exec(user);

    expect(match, `final stage USER "${user}" is not numeric`).not.toBeNull();
    expect(Number(match?.[1])).toBeGreaterThan(0);
    expect(Number(match?.[2] ?? '1')).toBeGreaterThan(0);
  });

  test('image subcommands exist in --help', () => {
    requireBuiltCli();
    const cmd = inStage(finalStage).find((instruction) => instruction.keyword === 'CMD');
    const help = run(process.execPath, [CLI_PATH, '--help']);

    expect(JSON.parse(cmd?.args ?? '[]')).toEqual(['operator']);
    expect(help.code).toBe(0);
    for (const subcommand of ['operator', 'router', 'engine']) {
      expect(help.stdout).toMatch(new RegExp(`^ {2}${subcommand} +\\S`, 'm'));
    }
  });

  test('runtime stage gets only production dependencies', () => {
    const buildRuns = inStage(stageNames.indexOf('build')).filter((instruction) => instruction.keyword === 'RUN');
    const buildIndex = buildRuns.findIndex((instruction) => /\bnpm run build\b/.test(instruction.args));
    const pruneIndex = buildRuns.findIndex((instruction) => /\bnpm prune\b.*--omit[= ]dev\b/.test(instruction.args));
    const buildRun = buildRuns[buildIndex]?.args ?? '';
    const runtime = inStage(finalStage);
    const modulesCopies = runtime
      .filter((instruction) => instruction.keyword === 'COPY')
      .map((instruction) => parseCopy(instruction.args))
      .filter((copy) => copy.sources.some((source) => source.endsWith('node_modules')));

    expect(buildIndex).toBeGreaterThanOrEqual(0);
    expect(pruneIndex).toBeGreaterThanOrEqual(buildIndex);
    // In one RUN, the prune must come after the compile, which needs the development dependencies.
    if (pruneIndex === buildIndex) expect(buildRun.indexOf('npm prune')).toBeGreaterThan(buildRun.indexOf('npm run build'));
    expect(modulesCopies.map((copy) => copy.from)).toEqual(['build']);
    expect(runtime.filter((instruction) => instruction.keyword === 'RUN' && /\bnpm (ci|install|i)\b/.test(instruction.args))).toEqual([]);
    expect(runtime.find((instruction) => instruction.keyword === 'ENV')?.args).toBe('NODE_ENV=production');
  });
});

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FakeApiServer } from './fake-api-server.js';
import { KubeClient, RESOURCES, UnknownKindError, resourcePath, type ApiVerb, type ResourceDescriptor, type WatchEvent } from './kube-client.js';
import { KubeApiError, type KubeObject } from './kube-types.js';

const silent = pino({ level: 'silent' });

let server: FakeApiServer;
let verbs: ApiVerb[];
let client: KubeClient;

beforeEach(async () => {
  server = await FakeApiServer.start();
  verbs = [];
  client = new KubeClient({
    kubeConfig: server.kubeConfig(),
    logger: silent,
    onRequest: (verb) => verbs.push(verb),
    eventSource: { controller: 'grace-moe.io/operator', instance: 'pod-a-1234' },
    now: () => Date.parse('2025-03-04T05:06:07.089Z'),
  });
});

afterEach(async () => {
  await server.close();
});

function configMap(name: string, data: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ml' }, data };
}

describe('resourcePath', () => {
  const cases = [
    ['core namespaced collection', RESOURCES.pods, 'ml', undefined, undefined, '/api/v1/namespaces/ml/pods'],
    ['core collection in all namespaces', RESOURCES.pods, undefined, undefined, undefined, '/api/v1/pods'],
    ['core object', RESOURCES.configMaps, 'ml', 'plan', undefined, '/api/v1/namespaces/ml/configmaps/plan'],
    ['named-group object', RESOURCES.statefulSets, 'ml', 'w', undefined, '/apis/apps/v1/namespaces/ml/statefulsets/w'],
    ['custom resource status', RESOURCES.moeDeployments, 'ml', 'ds', 'status', '/apis/grace-moe.io/v1alpha1/namespaces/ml/moedeployments/ds/status'],
    ['named-group collection in all namespaces', RESOURCES.podDisruptionBudgets, '', undefined, undefined, '/apis/policy/v1/poddisruptionbudgets'],
    ['cluster-scoped object ignores the namespace', RESOURCES.namespaces, 'ml', 'ml', undefined, '/api/v1/namespaces/ml'],
  ] as const;

  test.each(cases)('builds the %s path', (_name, resource: ResourceDescriptor, namespace, name, subresource, expected) => {
    expect(resourcePath(resource, namespace, name, subresource)).toBe(expected);
  });
});

describe('KubeClient requests', () => {
  test('list sends the token and label selector', async () => {
    server.put(RESOURCES.statefulSets, { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'w', namespace: 'ml', labels: { app: 'x' } } });
    server.put(RESOURCES.statefulSets, { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'other', namespace: 'ml' } });

    const result = await client.list(RESOURCES.statefulSets, 'ml', 'app=x');

    const [request] = server.requests;
    expect(request?.path).toBe('/apis/apps/v1/namespaces/ml/statefulsets');
    expect(request?.query.get('labelSelector')).toBe('app=x');
    expect(request?.headers.authorization).toBe('Bearer test-token');
    expect(result.items.map((item) => [item.apiVersion, item.kind, item.metadata.name])).toEqual([['apps/v1', 'StatefulSet', 'w']]);
    expect(result.resourceVersion).toBe('102');
    expect(verbs).toEqual(['list']);
  });

  test('apply sends a forced apply patch', async () => {
    const applied = await client.apply(configMap('plan', { generation: '3' }), 'grace-moe-operator');

    const [request] = server.requests;
    expect(request?.method).toBe('PATCH');
    expect(request?.path).toBe('/api/v1/namespaces/ml/configmaps/plan');
    expect(request?.headers['content-type']).toBe('application/apply-patch+yaml');
    expect(request?.query.get('fieldManager')).toBe('grace-moe-operator');
    expect(request?.query.get('force')).toBe('true');
    expect(applied.data).toEqual({ generation: '3' });
    expect(server.object(RESOURCES.configMaps, 'ml', 'plan')?.data).toEqual({ generation: '3' });
    expect(verbs).toEqual(['apply']);
  });

  test('applyStatus patches the status subresource of the object kind', async () => {
    server.put(RESOURCES.moeDeployments, { apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', metadata: { name: 'ds', namespace: 'ml' }, spec: {} });

    await client.applyStatus(
      { apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', metadata: { name: 'ds', namespace: 'ml' }, status: { replicas: 2 } },
      'grace-moe-operator',
    );

    expect(server.requests[0]?.path).toBe('/apis/grace-moe.io/v1alpha1/namespaces/ml/moedeployments/ds/status');
    expect(server.object(RESOURCES.moeDeployments, 'ml', 'ds')?.status).toEqual({ replicas: 2 });
    expect(verbs).toEqual(['apply_status']);
  });

  test('apply rejects a kind it has no resource for', async () => {
    const object: KubeObject = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', namespace: 'ml' } };

    await expect(client.apply(object, 'm')).rejects.toThrow(UnknownKindError);
    expect(server.requests).toHaveLength(0);
  });

  test('event posts an events.k8s.io/v1 Event about the object', async () => {
    const regarding: KubeObject = {
      apiVersion: 'grace-moe.io/v1alpha1',
      kind: 'MoEDeployment',
      metadata: { name: 'ds', namespace: 'ml', uid: 'u-1', resourceVersion: '7' },
    };

    await client.event(regarding, 'Warning', 'InvalidSpec', 'spec.model.experts must be positive, got 0');

    const [request] = server.requests;
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/apis/events.k8s.io/v1/namespaces/ml/events');
    expect(request?.body).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `ds.${(BigInt(Date.parse('2025-03-04T05:06:07.089Z')) * 1_000_000n).toString(16)}`, namespace: 'ml' },
      eventTime: '2025-03-04T05:06:07.089000Z',
      reportingController: 'grace-moe.io/operator',
      reportingInstance: 'pod-a-1234',
      action: 'InvalidSpec',
      reason: 'InvalidSpec',
      type: 'Warning',
      note: 'spec.model.experts must be positive, got 0',
      regarding: { apiVersion: 'grace-moe.io/v1alpha1', kind: 'MoEDeployment', name: 'ds', namespace: 'ml', uid: 'u-1', resourceVersion: '7' },
    });
    expect(verbs).toEqual(['event']);
  });

  test('event swallows a failure and logs it', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const logged = new KubeClient({ kubeConfig: server.kubeConfig(), logger });
    server.intercept = () => ({ status: 403, body: { kind: 'Status', code: 403, reason: 'Forbidden', message: 'events is forbidden' } });

    await expect(logged.event(configMap('plan'), 'Normal', 'Applied', 'ok')).resolves.toBeUndefined();

    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ msg: 'event not recorded', reason: 'Applied', name: 'plan' });
  });

  test('delete sends DeleteOptions with the propagation policy', async () => {
    server.put(RESOURCES.configMaps, configMap('plan'));

    await client.delete(RESOURCES.configMaps, 'ml', 'plan', { propagationPolicy: 'Background' });

    expect(server.requests[0]?.method).toBe('DELETE');
    expect(server.requests[0]?.body).toEqual({ apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' });
    expect(server.object(RESOURCES.configMaps, 'ml', 'plan')).toBeUndefined();
    expect(verbs).toEqual(['delete']);
  });

  test('request passes any call through', async () => {
    server.intercept = (request) => (request.path === '/version' ? { status: 200, body: { gitVersion: 'v1.37.2' } } : undefined);

    await expect(client.request({ method: 'GET', path: '/version' })).resolves.toEqual({ gitVersion: 'v1.37.2' });
    expect(verbs).toEqual(['other']);
  });
});

describe('KubeClient errors', () => {
  const cases = [
    ['a Status 404', { status: 404, body: { kind: 'Status', code: 404, reason: 'NotFound', message: 'configmaps "x" not found' } }, 404, 'NotFound', 'configmaps "x" not found'],
    ['a Status 409', { status: 409, body: { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' } }, 409, 'Conflict', 'modified'],
    ['a Status 422', { status: 422, body: { kind: 'Status', code: 422, reason: 'Invalid', message: 'spec.replicas: Invalid value' } }, 422, 'Invalid', 'spec.replicas'],
    ['a text 500 from a proxy', { status: 500, text: 'upstream exploded' }, 500, 'InternalError', 'upstream exploded'],
    ['a 429 without a body', { status: 429, text: '' }, 429, 'TooManyRequests', 'failed with 429'],
  ] as const;

  test.each(cases)('maps %s to KubeApiError', async (_name, answer, statusCode, reason, messagePart) => {
    server.intercept = () => answer;

    const error = await client.get(RESOURCES.configMaps, 'ml', 'x').catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).statusCode).toBe(statusCode);
    expect((error as KubeApiError).reason).toBe(reason);
    expect((error as KubeApiError).message).toContain('GET /api/v1/namespaces/ml/configmaps/x failed');
    expect((error as KubeApiError).message).toContain(messagePart);
  });

  test('maps a refused connection to statusCode 0', async () => {
    const port = new URL(server.url).port;
    await server.close();
    const offline = new KubeClient({ kubeConfig: server.kubeConfig(), logger: silent });
    server = await FakeApiServer.start();

    const error = await offline.get(RESOURCES.configMaps, 'ml', 'x').catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).statusCode).toBe(0);
    expect((error as KubeApiError).reason).toBe('NetworkError');
    expect((error as KubeApiError).message).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
  });

  test('maps a timeout to statusCode 0', async () => {
    server.queueWatchModes('hang');
    const slow = new KubeClient({ kubeConfig: server.kubeConfig(), logger: silent, requestTimeoutMs: 100 });

    // A watch=1 query makes the fake server hang; request applies the timeout that watch does not.
    const error = await slow.request({ method: 'GET', path: '/api/v1/pods', query: { watch: '1' } }).catch((caught: unknown) => caught);

    expect((error as KubeApiError).statusCode).toBe(0);
    expect((error as KubeApiError).reason).toBe('Timeout');
  });
});

describe('KubeClient watch', () => {
  test('watch yields the stream events in order', async () => {
    const first = server.put(RESOURCES.pods, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p0', namespace: 'ml' } });
    const controller = new AbortController();
    const events: WatchEvent[] = [];

    const consume = (async () => {
      for await (const event of client.watch(RESOURCES.pods, 'ml', '100', { allowWatchBookmarks: true, timeoutSeconds: 42, signal: controller.signal })) {
        events.push(event);
        if (events.length === 1) {
          server.bookmark(RESOURCES.pods);
          server.remove(RESOURCES.pods, 'ml', 'p0');
        }
        if (events.length === 3) server.endWatches(RESOURCES.pods);
      }
    })();
    await consume;

    const [request] = server.requests;
    expect(request?.path).toBe('/api/v1/namespaces/ml/pods');
    expect(Object.fromEntries(request?.query ?? [])).toEqual({ watch: '1', resourceVersion: '100', allowWatchBookmarks: 'true', timeoutSeconds: '42' });
    expect(events.map((event) => [event.type, event.object.metadata.resourceVersion])).toEqual([
      ['ADDED', first.metadata.resourceVersion],
      ['BOOKMARK', '101'],
      ['DELETED', '102'],
    ]);
    expect(verbs).toEqual(['watch']);
  });

  test('watch rejects an HTTP 410 as KubeApiError', async () => {
    server.queueWatchModes('gone-http');

    const iterator = client.watch(RESOURCES.pods, 'ml', '5');

    await expect(iterator.next()).rejects.toMatchObject({ statusCode: 410, reason: 'Expired' });
  });

  test('rejects with the signal reason when aborted', async () => {
    server.queueWatchModes('hang');
    const controller = new AbortController();
    const reason = new Error('stop watching');

    const next = client.watch(RESOURCES.pods, 'ml', '5', { signal: controller.signal }).next();
    setTimeout(() => controller.abort(reason), 20);

    await expect(next).rejects.toBe(reason);
  });
});

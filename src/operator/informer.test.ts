import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FakeApiServer } from './fake-api-server.js';
import { Informer, kubeListWatch, type InformerEvent, type WatchRestartReason } from './informer.js';
import { KubeClient, RESOURCES } from './kube-client.js';
import type { KubeObject } from './kube-types.js';
import { ManualScheduler, settle, waitFor } from './manual-scheduler.js';

const silent = pino({ level: 'silent' });
const CONFIG_MAPS = RESOURCES.configMaps;
const WATCH_PATH = '/api/v1/namespaces/ml/configmaps';
const IDLE_TIMEOUT_MS = 60_000;
const BACKOFF = { baseMs: 1_000, capMs: 8_000, jitterRatio: 0.5 } as const;

function configMap(name: string, value = 'v1', namespace = 'ml'): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { value } };
}

/** Summarises an event as "type name" or "update name old->new" for readable assertions. */
function describeEvent(event: InformerEvent<KubeObject>): string {
  const value = (object: KubeObject): string => String((object.data as { value?: string } | undefined)?.value);
  if (event.type === 'update') return `update ${event.object.metadata.name} ${value(event.oldObject)}->${value(event.object)}`;
  return `${event.type} ${event.object.metadata.name}`;
}

interface Running {
  readonly informer: Informer;
  readonly events: string[];
  readonly restarts: WatchRestartReason[];
  readonly scheduler: ManualScheduler;
  readonly stopped: Promise<void>;
}

let server: FakeApiServer;
let controller: AbortController;
let running: Running[];

beforeEach(async () => {
  server = await FakeApiServer.start();
  controller = new AbortController();
  running = [];
});

afterEach(async () => {
  controller.abort();
  await Promise.all(running.map((entry) => entry.stopped));
  await server.close();
});

function startInformer(): Running {
  const client = new KubeClient({ kubeConfig: server.kubeConfig(), logger: silent });
  const scheduler = new ManualScheduler();
  const restarts: WatchRestartReason[] = [];
  const informer = new Informer({
    name: 'configmaps',
    source: kubeListWatch(client, CONFIG_MAPS, 'ml'),
    logger: silent,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
    watchTimeoutSeconds: 300,
    backoff: BACKOFF,
    scheduler,
    random: () => 0,
    onRestart: (reason) => restarts.push(reason),
  });
  const events: string[] = [];
  informer.addHandler((event) => events.push(describeEvent(event)));
  const entry = { informer, events, restarts, scheduler, stopped: informer.run(controller.signal) };
  running.push(entry);
  return entry;
}

const lists = (): number => server.requestsTo('GET', WATCH_PATH, false).length;
const watches = (): number => server.requestsTo('GET', WATCH_PATH, true).length;
const lastWatchVersion = (): string | null => server.requestsTo('GET', WATCH_PATH, true).at(-1)?.query.get('resourceVersion') ?? null;

describe('Informer', () => {
  test('watches from the list resourceVersion', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    server.put(CONFIG_MAPS, configMap('other', 'v1', 'elsewhere'));
    const { informer, events } = startInformer();
    expect(informer.hasSynced()).toBe(false);

    await waitFor('the watch', () => server.openWatches(CONFIG_MAPS) === 1);
    expect(informer.hasSynced()).toBe(true);
    expect(lastWatchVersion()).toBe('102');
    expect(server.requestsTo('GET', WATCH_PATH, true)[0]?.query.get('allowWatchBookmarks')).toBe('true');
    expect(server.requestsTo('GET', WATCH_PATH, true)[0]?.query.get('timeoutSeconds')).toBe('300');

    server.put(CONFIG_MAPS, configMap('b'));
    server.put(CONFIG_MAPS, configMap('a', 'v2'));
    server.remove(CONFIG_MAPS, 'ml', 'b');
    await waitFor('four events', () => events.length === 4);

    expect(events).toEqual(['add a', 'add b', 'update a v1->v2', 'delete b']);
    expect(informer.list().map((object) => object.metadata.name)).toEqual(['a']);
    expect(informer.get('ml', 'a')?.data).toEqual({ value: 'v2' });
    expect(informer.lastResourceVersion()).toBe('105');
  });

  test('hands out deeply frozen objects', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    const { informer } = startInformer();
    await waitFor('sync', () => informer.hasSynced());

    const object = informer.get('ml', 'a') as KubeObject & { data: Record<string, string> };

    expect(Object.isFrozen(object)).toBe(true);
    expect(Object.isFrozen(object.metadata)).toBe(true);
    expect(() => {
      object.data.value = 'changed';
    }).toThrow(TypeError);
  });

  test('relists when the watch is answered with HTTP 410', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    server.queueWatchModes('gone-http');
    const { informer, restarts, scheduler, events } = startInformer();

    await waitFor('the first watch', () => watches() === 1);
    await settle();
    expect(restarts).toEqual(['gone']);
    expect(scheduler.pendingDelays()).toEqual([1_000]);

    await scheduler.advance(1_000);
    await waitFor('the second watch', () => server.openWatches(CONFIG_MAPS) === 1);

    expect(lists()).toBe(2);
    expect(events).toEqual(['add a']);
    expect(informer.list()).toHaveLength(1);
  });

  test('relists when the stream sends an ERROR event with code 410', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    server.queueWatchModes('gone-event');
    const { restarts, scheduler } = startInformer();

    await waitFor('the first watch', () => watches() === 1);
    await waitFor('the restart', () => restarts.length === 1);
    await scheduler.advance(1_000);
    await waitFor('the second watch', () => server.openWatches(CONFIG_MAPS) === 1);

    expect(restarts).toEqual(['gone']);
    expect(lists()).toBe(2);
  });

  test('relist emits deletes for vanished objects', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    server.put(CONFIG_MAPS, configMap('b'));
    server.put(CONFIG_MAPS, configMap('c'));
    const { informer, events, scheduler, restarts } = startInformer();
    await waitFor('the watch', () => server.openWatches(CONFIG_MAPS) === 1);
    events.length = 0;

    // While the watch is down: b is deleted, c changes and d appears, with no event sent.
    server.endWatches(CONFIG_MAPS);
    server.removeQuietly(CONFIG_MAPS, 'ml', 'b');
    await waitFor('the restart', () => restarts.length === 1);
    server.put(CONFIG_MAPS, configMap('c', 'v2'));
    server.put(CONFIG_MAPS, configMap('d'));
    server.compact(CONFIG_MAPS);
    // The watch closed without an event counts as an error; its retry then finds the history gone.
    await scheduler.advance(1_000);
    await waitFor('the 410', () => restarts.length === 2);
    await scheduler.advance(2_000);
    await waitFor('the watch after the relist', () => server.openWatches(CONFIG_MAPS) === 1);

    expect(restarts).toEqual(['error', 'gone']);
    expect(events).toEqual(['delete b', 'update c v1->v2', 'add d']);
    expect(informer.list().map((object) => object.metadata.name).sort()).toEqual(['a', 'c', 'd']);
  });

  test('restarts a silent watch after idleTimeoutMs', async () => {
    server.put(CONFIG_MAPS, configMap('a'));
    const { informer, restarts, scheduler } = startInformer();
    await waitFor('the watch', () => server.openWatches(CONFIG_MAPS) === 1);
    server.put(CONFIG_MAPS, configMap('b'));
    await waitFor('the event', () => informer.get('ml', 'b') !== undefined);

    await scheduler.advance(IDLE_TIMEOUT_MS - 1);
    expect(restarts).toEqual([]);
    expect(watches()).toBe(1);

    await scheduler.advance(1);
    await waitFor('the restart', () => restarts.length === 1);
    await scheduler.advance(1_000);
    await waitFor('the second watch', () => watches() === 2);

    expect(restarts).toEqual(['idle']);
    expect(lastWatchVersion()).toBe('102');
    expect(lists()).toBe(1);
  });

  test('restarts a watch whose request is never answered', async () => {
    server.queueWatchModes('hang');
    const { restarts, scheduler } = startInformer();
    await waitFor('the watch request', () => watches() === 1);
    await settle();

    await scheduler.advance(IDLE_TIMEOUT_MS);
    await waitFor('the restart', () => restarts.length === 1);
    await scheduler.advance(1_000);
    await waitFor('the second watch', () => server.openWatches(CONFIG_MAPS) === 1);

    expect(restarts).toEqual(['idle']);
  });

  test('resumes from the resourceVersion of the last bookmark', async () => {
    const { scheduler, restarts } = startInformer();
    await waitFor('the watch', () => server.openWatches(CONFIG_MAPS) === 1);
    await scheduler.advance(IDLE_TIMEOUT_MS / 2);
    // The other namespace's object moves the resourceVersion without an event for this watch.
    server.put(CONFIG_MAPS, configMap('elsewhere', 'v1', 'other-namespace'));
    server.bookmark(CONFIG_MAPS);
    await settle();

    // The bookmark counts as activity, so the idle timer starts again from it.
    await scheduler.advance(IDLE_TIMEOUT_MS - 1);
    expect(restarts).toEqual([]);
    // A watch that ends after an event is the server's timeout, not a failure: it is resumed at once.
    server.endWatches(CONFIG_MAPS);
    await waitFor('the second watch', () => watches() === 2);

    expect(lastWatchVersion()).toBe('101');
    expect(restarts).toEqual([]);
    expect(lists()).toBe(1);
  });

  test('backs off exponentially while the list fails, then syncs', async () => {
    let failures = 3;
    server.intercept = (request) => {
      if (request.query.get('watch') === '1' || failures === 0) return undefined;
      failures -= 1;
      return { status: 503, body: { kind: 'Status', code: 503, reason: 'ServiceUnavailable', message: 'etcd is unavailable' } };
    };
    const { informer, scheduler, restarts } = startInformer();
    const delays: number[] = [];

    for (let attempt = 1; attempt <= 3; attempt++) {
      await waitFor(`list attempt ${attempt}`, () => lists() === attempt && scheduler.pendingDelays().length === 1);
      const [delay = 0] = scheduler.pendingDelays();
      delays.push(delay);
      expect(informer.hasSynced()).toBe(false);
      await scheduler.advance(delay);
    }
    await waitFor('sync', () => informer.hasSynced());

    expect(delays).toEqual([1_000, 2_000, 4_000]);
    expect(restarts).toEqual(['error', 'error', 'error']);
  });

  test('keeps running when a handler throws', async () => {
    const { informer, events } = startInformer();
    informer.addHandler(() => {
      throw new Error('handler bug');
    });
    await waitFor('the watch', () => server.openWatches(CONFIG_MAPS) === 1);

    server.put(CONFIG_MAPS, configMap('a'));
    server.put(CONFIG_MAPS, configMap('b'));
    await waitFor('two events', () => events.length === 2);

    expect(informer.list()).toHaveLength(2);
  });

  test('waitForSync resolves false when stopped before the first list', async () => {
    server.intercept = () => ({ status: 500, text: 'down' });
    const { informer } = startInformer();
    const stop = new AbortController();

    const waiting = informer.waitForSync(stop.signal);
    stop.abort();

    await expect(waiting).resolves.toBe(false);
  });
});

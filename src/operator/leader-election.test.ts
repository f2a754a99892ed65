import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { FakeApiServer } from './fake-api-server.js';
import { KubeClient, microTime } from './kube-client.js';
import { KubeApiError } from './kube-types.js';
import {
  kubeLeaseStore,
  LeaderElector,
  leaderIdentity,
  leaseExpired,
  type LeadershipEnd,
  type LeaseRecord,
  type LeaseSpec,
  type LeaseStore,
} from './leader-election.js';
import { ManualScheduler, settle } from './manual-scheduler.js';

const silent = pino({ level: 'silent' });
const TIMING = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;

/** An in-memory Lease with the API server's optimistic concurrency. */
class FakeLeaseStore implements LeaseStore {
  record: LeaseRecord | undefined;
  writes = 0;
  /** When set, get rejects with it. */
  failure: Error | null = null;
  /** When true, get never responds until its signal aborts. */
  hang = false;
  /** Runs before an update is checked, to simulate another replica writing first. */
  beforeUpdate: (() => void) | null = null;
  private version = 0;

  async get(signal: AbortSignal): Promise<LeaseRecord | undefined> {
    if (this.hang) {
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    }
    if (this.failure !== null) throw this.failure;
    return this.record;
  }

  async create(spec: LeaseSpec): Promise<LeaseRecord> {
    if (this.record !== undefined) throw new KubeApiError(409, 'AlreadyExists', 'leases "operator" already exists');
    return this.write(spec);
  }

  async update(spec: LeaseSpec, resourceVersion: string): Promise<LeaseRecord> {
    this.beforeUpdate?.();
    if (this.record === undefined) throw new KubeApiError(404, 'NotFound', 'leases "operator" not found');
    if (this.record.resourceVersion !== resourceVersion) throw new KubeApiError(409, 'Conflict', 'the object has been modified');
    return this.write(spec);
  }

  /** Writes the lease as another replica would. */
  write(spec: LeaseSpec): LeaseRecord {
    this.version += 1;
    this.writes += 1;
    this.record = { spec, resourceVersion: String(this.version) };
    return this.record;
  }
}

interface Candidate {
  readonly elector: LeaderElector;
  readonly calls: string[];
  readonly run: Promise<LeadershipEnd>;
  readonly stop: AbortController;
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop.abort();
});

function candidate(store: LeaseStore, scheduler: ManualScheduler, identity = 'pod-a-0001'): Candidate {
  const calls: string[] = [];
  const elector = new LeaderElector({
    store,
    identity,
    ...TIMING,
    logger: silent,
    scheduler,
    random: () => 0,
    onStartedLeading: () => calls.push('started'),
    onStoppedLeading: (end) => calls.push(`stopped ${end}`),
  });
  const stop = new AbortController();
  stops.push(stop);
  return { elector, calls, stop, run: elector.run(stop.signal) };
}

describe('LeaderElector', () => {
  test('creates an absent lease and leads', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const { elector, calls } = candidate(store, scheduler);
    await settle();

    expect(elector.isLeader()).toBe(true);
    expect(calls).toEqual(['started']);
    expect(store.record?.spec).toEqual({
      holderIdentity: 'pod-a-0001',
      leaseDurationSeconds: 15,
      acquireTime: microTime(scheduler.now()),
      renewTime: microTime(scheduler.now()),
      leaseTransitions: 0,
    });
  });

  test('renews every retry period without changing the acquire time', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const acquiredAt = scheduler.now();
    candidate(store, scheduler);
    await settle();

    await scheduler.advance(TIMING.retryPeriodMs);
    expect(store.writes).toBe(2);
    await scheduler.advance(TIMING.retryPeriodMs);

    expect(store.writes).toBe(3);
    expect(store.record?.spec.renewTime).toBe(microTime(acquiredAt + 2 * TIMING.retryPeriodMs));
    expect(store.record?.spec.acquireTime).toBe(microTime(acquiredAt));
    expect(store.record?.spec.leaseTransitions).toBe(0);
  });

  test('takes over an expired lease', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const renewedAt = scheduler.now();
    store.write({ holderIdentity: 'pod-b-0002', leaseDurationSeconds: 15, renewTime: microTime(renewedAt), leaseTransitions: 4 });
    const { elector, calls } = candidate(store, scheduler);
    await settle();
    expect(elector.isLeader()).toBe(false);

    // Attempts every 2 s; at renewTime + 14 s the lease is still valid.
    await scheduler.advance(14_000);
    expect(elector.isLeader()).toBe(false);
    expect(store.record?.spec.holderIdentity).toBe('pod-b-0002');

    await scheduler.advance(2_000);

    expect(elector.isLeader()).toBe(true);
    expect(calls).toEqual(['started']);
    expect(store.record?.spec).toMatchObject({
      holderIdentity: 'pod-a-0001',
      acquireTime: microTime(renewedAt + 16_000),
      leaseTransitions: 5,
    });
  });

  test('loses the race when another replica writes the lease first', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    store.write({ holderIdentity: 'pod-b-0002', leaseDurationSeconds: 15, renewTime: microTime(scheduler.now() - 60_000) });
    store.beforeUpdate = () => {
      store.beforeUpdate = null;
      store.write({ holderIdentity: 'pod-c-0003', leaseDurationSeconds: 15, renewTime: microTime(scheduler.now()) });
    };
    const { elector, calls } = candidate(store, scheduler);
    await settle();

    expect(elector.isLeader()).toBe(false);
    expect(calls).toEqual([]);
    expect(store.record?.spec.holderIdentity).toBe('pod-c-0003');
  });

  test('stops leading when renewals fail until the renew deadline', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const { elector, calls, run } = candidate(store, scheduler);
    await settle();
    store.failure = new KubeApiError(503, 'ServiceUnavailable', 'etcd is unavailable');

    await scheduler.advance(8_000);
    expect(elector.isLeader()).toBe(true);
    await scheduler.advance(2_000);

    expect(elector.isLeader()).toBe(false);
    expect(calls).toEqual(['started', 'stopped lost']);
    await expect(run).resolves.toBe('lost');
  });

  test('stops leading when a renewal hangs past the deadline', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const { calls, run } = candidate(store, scheduler);
    await settle();
    store.hang = true;

    await scheduler.advance(9_999);
    expect(calls).toEqual(['started']);
    await scheduler.advance(1);

    expect(calls).toEqual(['started', 'stopped lost']);
    await expect(run).resolves.toBe('lost');
  });

  test('stops leading at once when another holder appears in the lease', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const { calls, run } = candidate(store, scheduler);
    await settle();

    store.write({ holderIdentity: 'pod-b-0002', leaseDurationSeconds: 15, renewTime: microTime(scheduler.now()) });
    await scheduler.advance(TIMING.retryPeriodMs);

    expect(calls).toEqual(['started', 'stopped lost']);
    await expect(run).resolves.toBe('lost');
  });

  test('release lets another replica lead at once', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const first = candidate(store, scheduler);
    await settle();

    first.stop.abort();
    await expect(first.run).resolves.toBe('released');
    expect(first.calls).toEqual(['started', 'stopped released']);
    expect(store.record?.spec.holderIdentity).toBeUndefined();
    expect(store.record?.spec.leaseDurationSeconds).toBe(1);

    const second = candidate(store, scheduler, 'pod-b-0002');
    await settle();

    expect(second.elector.isLeader()).toBe(true);
    expect(store.record?.spec).toMatchObject({ holderIdentity: 'pod-b-0002', leaseTransitions: 1 });
  });

  test('rejects timings where the leader could outlive its lease', () => {
    const build = (): LeaderElector =>
      new LeaderElector({
        store: new FakeLeaseStore(),
        identity: 'x',
        leaseDurationMs: 10_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
        logger: silent,
      });

    expect(build).toThrow('retryPeriodMs < renewDeadlineMs < leaseDurationMs, got 2000, 10000 and 10000');
  });
});

describe('leaseExpired', () => {
  const now = Date.parse('2025-01-01T00:01:00Z');
  test.each([
    ['renewed 14 s ago for 15 s', { renewTime: '2025-01-01T00:00:46.000000Z', leaseDurationSeconds: 15 }, false],
    ['renewed exactly 15 s ago', { renewTime: '2025-01-01T00:00:45.000000Z', leaseDurationSeconds: 15 }, false],
    ['renewed 16 s ago for 15 s', { renewTime: '2025-01-01T00:00:44.000000Z', leaseDurationSeconds: 15 }, true],
    ['without a renewTime', { leaseDurationSeconds: 15 }, true],
    ['with the default duration', { renewTime: '2025-01-01T00:00:50.000000Z' }, false],
  ] as const)('is %s: %s', (_name, spec: LeaseSpec, expected) => {
    expect(leaseExpired(spec, now, 15)).toBe(expected);
  });
});

describe('leaderIdentity', () => {
  test('appends a random hex suffix to the pod name', () => {
    expect(leaderIdentity('grace-moe-operator-7d9f', () => Buffer.from([0xde, 0xad, 0xbe, 0xef]))).toBe('grace-moe-operator-7d9f-deadbeef');
    expect(leaderIdentity('pod')).toMatch(/^pod-[0-9a-f]{8}$/);
  });
});

describe('kubeLeaseStore', () => {
  let server: FakeApiServer | undefined;
  afterEach(async () => {
    await server?.close();
  });

  test('reads, creates and replaces the Lease', async () => {
    server = await FakeApiServer.start();
    const store = kubeLeaseStore(new KubeClient({ kubeConfig: server.kubeConfig(), logger: silent }), 'ops', 'grace-moe-operator');
    const signal = new AbortController().signal;

    await expect(store.get(signal)).resolves.toBeUndefined();
    const created = await store.create({ holderIdentity: 'pod-a', leaseDurationSeconds: 15 }, signal);
    const updated = await store.update({ holderIdentity: 'pod-a', leaseDurationSeconds: 15, leaseTransitions: 1 }, created.resourceVersion, signal);
    const stale = await store.update({ holderIdentity: 'pod-b' }, created.resourceVersion, signal).catch((error: unknown) => error);

    expect(server.requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      'GET /apis/coordination.k8s.io/v1/namespaces/ops/leases/grace-moe-operator',
      'POST /apis/coordination.k8s.io/v1/namespaces/ops/leases',
      'PUT /apis/coordination.k8s.io/v1/namespaces/ops/leases/grace-moe-operator',
      'PUT /apis/coordination.k8s.io/v1/namespaces/ops/leases/grace-moe-operator',
    ]);
    expect(server.requests[2]?.body).toMatchObject({ kind: 'Lease', metadata: { resourceVersion: created.resourceVersion } });
    expect(stale).toBeInstanceOf(KubeApiError);
    expect((stale as KubeApiError).statusCode).toBe(409);
    await expect(store.get(signal)).resolves.toEqual(updated);
    expect(updated.spec.leaseTransitions).toBe(1);
  });
});

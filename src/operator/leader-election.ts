/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that one operator replica reconciles at a
 * time while the others keep warm caches.
 *
 * A candidate takes the lease when it is absent, has no holder, or has expired (renewTime +
 * leaseDurationSeconds is in the past). The leader renews it every retryPeriodMs. It gives up
 * leadership when no renewal succeeded for renewDeadlineMs, or when it reads another holder in
 * the lease. Since renewDeadlineMs is shorter than the lease duration, a leader stops before a
 * candidate can consider its lease expired. Every write carries the resourceVersion it read, so of
 * two replicas writing at once one gets 409 Conflict and loses that round. On shutdown the leader
 * releases the lease (no holder, a one-second duration) so that another replica takes over
 * without waiting for the expiry.
 *
 * NOTE: expiry compares the renewTime written by the holder with this replica's clock, as the
 * lease fields define it. Two replicas whose clocks differ by more than leaseDurationSeconds minus
 * renewDeadline can therefore both lead for the excess.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { isConflict, isNotFound, microTime, RESOURCES, type KubeClient } from './kube-client.js';
import type { KubeObject } from './kube-types.js';
import { sleep, systemScheduler, type Scheduler } from './timers.js';

/** The fields of a Lease's spec that leader election uses; times are RFC 3339 MicroTime. */
export interface LeaseSpec {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
}

export interface LeaseRecord {
  readonly spec: LeaseSpec;
  readonly resourceVersion: string;
}

/** Reads and writes one Lease. Writes throw KubeApiError 409 on a conflict. */
export interface LeaseStore {
  /** Returns the lease, or undefined when it does not exist. */
  get(signal: AbortSignal): Promise<LeaseRecord | undefined>;
  /** Creates the lease; 409 when it exists. */
  create(spec: LeaseSpec, signal: AbortSignal): Promise<LeaseRecord>;
  /** Replaces the lease's spec if its resourceVersion is still `resourceVersion`; 409 otherwise. */
  update(spec: LeaseSpec, resourceVersion: string, signal: AbortSignal): Promise<LeaseRecord>;
}

/** Returns a LeaseStore that reads and writes the Lease `name` in `namespace` through the API. */
export function kubeLeaseStore(client: KubeClient, namespace: string, name: string): LeaseStore {
  const toRecord = (object: KubeObject): LeaseRecord => ({
    spec: (object.spec ?? {}) as LeaseSpec,
    resourceVersion: object.metadata.resourceVersion ?? '',
  });
  const leaseObject = (spec: LeaseSpec, resourceVersion?: string): KubeObject => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion === undefined ? {} : { resourceVersion }) },
    spec,
  });
  return {
    async get(signal) {
      try {
        return toRecord(await client.get(RESOURCES.leases, namespace, name, signal));
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
    async create(spec, signal) {
      return toRecord(await client.create(RESOURCES.leases, leaseObject(spec), signal));
    },
    async update(spec, resourceVersion, signal) {
      return toRecord(await client.replace(RESOURCES.leases, leaseObject(spec, resourceVersion), signal));
    },
  };
}

/** Returns a holder identity unique to this process: the pod name and a random suffix. */
export function leaderIdentity(podName: string, random: (bytes: number) => Buffer = randomBytes): string {
  return `${podName}-${random(4).toString('hex')}`;
}

export type LeadershipEnd = 'lost' | 'released';

export interface LeaderElectorOptions {
  readonly store: LeaseStore;
  readonly identity: string;
  readonly leaseDurationMs: number;
  /** The leader gives up when no renewal succeeded for this long; shorter than leaseDurationMs. */
  readonly renewDeadlineMs: number;
  /** Pause between acquisition attempts and between renewals. */
  readonly retryPeriodMs: number;
  readonly logger: FastifyBaseLogger;
  readonly scheduler?: Scheduler;
  readonly random?: () => number;
  readonly onStartedLeading?: () => void;
  /** Called once when leadership ends: 'lost' on a failed renewal or another holder, 'released' on shutdown. */
  readonly onStoppedLeading?: (end: LeadershipEnd) => void;
}

type Attempt =
  | { readonly ok: true; readonly atMs: number }
  | { readonly ok: false; readonly holder: string | undefined; readonly conflict: boolean };

export class LeaderElector {
  private readonly options: LeaderElectorOptions;
  private readonly scheduler: Scheduler;
  private readonly random: () => number;
  private readonly leaseDurationSeconds: number;
  private leading = false;

  constructor(options: LeaderElectorOptions) {
    if (!(options.retryPeriodMs < options.renewDeadlineMs && options.renewDeadlineMs < options.leaseDurationMs)) {
      throw new RangeError(
        `leader election needs retryPeriodMs < renewDeadlineMs < leaseDurationMs, got ${options.retryPeriodMs}, ` +
          `${options.renewDeadlineMs} and ${options.leaseDurationMs}`,
      );
    }
    this.options = options;
    this.scheduler = options.scheduler ?? systemScheduler;
    this.random = options.random ?? Math.random;
    this.leaseDurationSeconds = Math.ceil(options.leaseDurationMs / 1000);
  }

  get identity(): string {
    return this.options.identity;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until this replica holds the lease, then renews it until leadership is lost or
   * `signal` aborts, in which case it releases the lease. Resolves with how leadership ended, or
   * 'released' when `signal` aborted before the lease was acquired. Never rejects.
   */
  async run(signal: AbortSignal): Promise<LeadershipEnd> {
    const log = this.options.logger;
    const { identity, retryPeriodMs, renewDeadlineMs } = this.options;
    log.info({ identity }, 'leader election starting');

    let lastHolder: string | undefined;
    while (!signal.aborted) {
      const attempt = await this.tryAcquireOrRenew(signal, undefined);
      if (attempt.ok) break;
      if (attempt.holder !== lastHolder && attempt.holder !== undefined) {
        lastHolder = attempt.holder;
        log.info({ identity, holder: attempt.holder }, 'lease held by another replica; waiting');
      }
      await sleep(this.scheduler, retryPeriodMs * (1 + 0.2 * this.random()), signal);
    }
    if (signal.aborted) return 'released';

    let lastRenewMs = this.scheduler.now();
    this.leading = true;
    log.info({ identity }, 'leadership acquired');
    this.options.onStartedLeading?.();

    let lost = false;
    let pause = true;
    while (!signal.aborted) {
      if (pause) await sleep(this.scheduler, retryPeriodMs, signal);
      if (signal.aborted) break;
      const deadlineMs = lastRenewMs + renewDeadlineMs;
      const attempt = await this.tryAcquireOrRenew(signal, deadlineMs);
      if (attempt.ok) {
        lastRenewMs = attempt.atMs;
        pause = true;
        continue;
      }
      if (attempt.holder !== undefined && attempt.holder !== '' && attempt.holder !== identity) {
        log.error({ identity, holder: attempt.holder }, 'leadership lost: the lease names another holder');
        lost = true;
        break;
      }
      if (this.scheduler.now() >= deadlineMs) {
        log.error({ identity, renewDeadlineMs }, 'leadership lost: the lease was not renewed within the deadline');
        lost = true;
        break;
      }
      // After a conflict, read the lease again once without pausing, to learn who wrote it.
      pause = !(attempt.conflict && pause);
    }

    this.leading = false;
    if (lost) {
      this.options.onStoppedLeading?.('lost');
      return 'lost';
    }
    await this.release();
    this.options.onStoppedLeading?.('released');
    return 'released';
  }

  /** Reads the lease and writes it if this replica may hold it; failures are logged and reported as not acquired. */
  private async tryAcquireOrRenew(signal: AbortSignal, deadlineMs: number | undefined): Promise<Attempt> {
    const controller = new AbortController();
    const stop = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    const cancelDeadline =
      deadlineMs === undefined
        ? () => {}
        : this.scheduler.setTimer(Math.max(0, deadlineMs - this.scheduler.now()), () =>
            controller.abort(new Error('the lease renewal deadline passed')),
          );
    try {
      return await this.acquireOrRenew(controller.signal);
    } catch (error) {
      if (!signal.aborted) {
        this.options.logger.warn({ err: error, identity: this.options.identity }, 'lease update failed');
      }
      return { ok: false, holder: undefined, conflict: false };
    } finally {
      cancelDeadline();
      signal.removeEventListener('abort', stop);
    }
  }

  private async acquireOrRenew(signal: AbortSignal): Promise<Attempt> {
    const { store, identity } = this.options;
    const nowMs = this.scheduler.now();
    const now = microTime(nowMs);
    const lease = await store.get(signal);

    if (lease === undefined) {
      const spec: LeaseSpec = {
        holderIdentity: identity,
        leaseDurationSeconds: this.leaseDurationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      };
      try {
        await store.create(spec, signal);
        return { ok: true, atMs: nowMs };
      } catch (error) {
        if (isConflict(error)) return { ok: false, holder: undefined, conflict: true };
        throw error;
      }
    }

    const holder = lease.spec.holderIdentity ?? '';
    if (holder !== '' && holder !== identity && !leaseExpired(lease.spec, nowMs, this.leaseDurationSeconds)) {
      return { ok: false, holder, conflict: false };
    }
    const takeover = holder !== identity;
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: this.leaseDurationSeconds,
      acquireTime: takeover || lease.spec.acquireTime === undefined ? now : lease.spec.acquireTime,
      renewTime: now,
      leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (takeover ? 1 : 0),
    };
    try {
      await store.update(spec, lease.resourceVersion, signal);
    } catch (error) {
      if (isConflict(error)) return { ok: false, holder: undefined, conflict: true };
      throw error;
    }
    if (takeover && holder !== '') {
      this.options.logger.info({ identity, previousHolder: holder }, 'took over an expired lease');
    }
    return { ok: true, atMs: nowMs };
  }

  /** Clears the holder so another replica can acquire the lease at once; failures are logged. */
  private async release(): Promise<void> {
    const { store, identity } = this.options;
    const controller = new AbortController();
    const cancel = this.scheduler.setTimer(this.options.renewDeadlineMs, () => controller.abort(new Error('the lease release timed out')));
    try {
      const lease = await store.get(controller.signal);
      if (lease === undefined || lease.spec.holderIdentity !== identity) return;
      const now = microTime(this.scheduler.now());
      const spec: LeaseSpec = {
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: lease.spec.leaseTransitions ?? 0,
      };
      await store.update(spec, lease.resourceVersion, controller.signal);
      this.options.logger.info({ identity }, 'lease released');
    } catch (error) {
      this.options.logger.warn({ err: error, identity }, 'lease release failed; another replica takes over when it expires');
    } finally {
      cancel();
    }
  }
}

/** True when the lease's holder has not renewed it for leaseDurationSeconds, or it has no renewTime. */
export function leaseExpired(spec: LeaseSpec, nowMs: number, defaultDurationSeconds: number): boolean {
  const renewMs = spec.renewTime === undefined ? Number.NaN : Date.parse(spec.renewTime);
  if (Number.isNaN(renewMs)) return true;
  const durationSeconds = spec.leaseDurationSeconds ?? defaultDurationSeconds;
  return renewMs + durationSeconds * 1000 < nowMs;
}

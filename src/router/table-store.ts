/**
 * The router's routing tables: the active one, an optional pending one (two-phase rollout), and
 * the long-poll waiters that want to hear about the next active generation.
 *
 * A table is compiled and given its own locality chooser (PrecomputedLocalityChooser, which
 * returns what LocalityChooser returns) before it is installed, and installing
 * replaces one reference, so a request that reads `active` once uses one generation throughout. The
 * round-robin state of the locality choice lives with its generation and starts fresh with each.
 *
 * Changes are serialized: each waits for the previous one, because persisting a table is
 * asynchronous and two concurrent installs must not both pass the generation check.
 */
import { compileRoutingTable, type CompiledTable } from '../routing/table.js';
import type { RoutingTable } from '../routing/types.js';
import { GenerationConflictError, PendingMismatchError } from './errors.js';
import { PrecomputedLocalityChooser } from '../routing/precomputed.js';

/** A validated, compiled table with the routing state of its generation. */
export interface InstalledTable {
  readonly table: RoutingTable;
  readonly compiled: CompiledTable;
  readonly chooser: PrecomputedLocalityChooser;
  /** Milliseconds since the epoch when the table was installed (staged or activated). */
  readonly installedAtMs: number;
  /** Strong entity tag of the generation, e.g. "7" with the quotes. */
  readonly etag: string;
}

export type TablePhase = 'active' | 'pending';

export interface TableStoreOptions {
  readonly now: () => number;
  /** Writes a table that is about to become active; a rejection aborts the install. */
  readonly persist?: (table: RoutingTable) => Promise<void>;
}

/** Strong entity tag of a generation. */
export function etagOf(generation: number): string {
  return `"${generation}"`;
}

/** Compiles a validated table and creates the chooser of its generation. */
export function prepareTable(table: RoutingTable, now: number): InstalledTable {
  const compiled = compileRoutingTable(table);
  return {
    table,
    compiled,
    chooser: new PrecomputedLocalityChooser(compiled),
    installedAtMs: now,
    etag: etagOf(table.generation),
  };
}

export class TableStore {
  private activeTable: InstalledTable | null = null;
  private pendingTable: InstalledTable | null = null;
  /** Long-poll waiters; `true` ends a wait whether or not the table changed. */
  private readonly waiters = new Set<(release: boolean) => void>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: TableStoreOptions) {}

  get active(): InstalledTable | null {
    return this.activeTable;
  }

  get pending(): InstalledTable | null {
    return this.pendingTable;
  }

  /**
   * Installs a validated table as active or as pending. Throws GenerationConflictError when its
   * generation is not newer than the active one. A pending table replaces the previous pending one;
   * an active table drops a pending one that is not newer than itself. An active table is persisted
   * before it is installed unless `options.persist` is false (a table just read from disk).
   */
  install(table: RoutingTable, phase: TablePhase, options: { persist?: boolean } = {}): Promise<InstalledTable> {
    const prepared = prepareTable(table, this.options.now());
    return this.serialize(async () => {
      this.requireNewer(table.generation);
      if (phase === 'pending') {
        this.pendingTable = prepared;
        return prepared;
      }
      if (options.persist !== false) {
        await this.options.persist?.(table);
      }
      this.setActive(prepared);
      return prepared;
    });
  }

  /** Activates the pending table of `generation`; throws PendingMismatchError otherwise. */
  activate(generation: number): Promise<InstalledTable> {
    return this.serialize(async () => {
      const pending = this.pendingTable;
      if (pending === null) {
        throw new PendingMismatchError(`no table is pending, so generation ${generation} cannot be activated; stage it first`);
      }
      if (pending.table.generation !== generation) {
        throw new PendingMismatchError(
          `generation ${pending.table.generation} is pending, not ${generation}; activate the pending generation or stage ${generation} first`,
        );
      }
      this.requireNewer(generation);
      await this.options.persist?.(pending.table);
      const activated: InstalledTable = { ...pending, installedAtMs: this.options.now() };
      this.setActive(activated);
      return activated;
    });
  }

  /** Drops the pending table, if any, and returns it. */
  dropPending(): Promise<InstalledTable | null> {
    return this.serialize(async () => {
      const dropped = this.pendingTable;
      this.pendingTable = null;
      return dropped;
    });
  }

  /**
   * Resolves with the active table as soon as its entity tag differs from `etag`, or with null when
   * `waitMs` passes first or `signal` aborts. Never waits when the tags already differ.
   */
  waitForChange(etag: string | undefined, waitMs: number, signal?: AbortSignal): Promise<InstalledTable | null> {
    const changed = (): InstalledTable | null => {
      const active = this.activeTable;
      return active !== null && active.etag !== etag ? active : null;
    };
    const now = changed();
    if (now !== null || waitMs <= 0 || signal?.aborted === true) {
      return Promise.resolve(now);
    }

    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', finish);
        resolve(changed());
      };
      const wake = (release: boolean): void => {
        if (release || changed() !== null) finish();
      };
      timer = setTimeout(finish, waitMs);
      signal?.addEventListener('abort', finish, { once: true });
      this.waiters.add(wake);
    });
  }

  /** Number of long-poll requests waiting. */
  get waiting(): number {
    return this.waiters.size;
  }

  /** Ends every long-poll wait now, so a shutdown does not wait for them to time out. */
  releaseWaiters(): void {
    for (const wake of [...this.waiters]) wake(true);
  }

  private setActive(installed: InstalledTable): void {
    this.activeTable = installed;
    if (this.pendingTable !== null && this.pendingTable.table.generation <= installed.table.generation) {
      this.pendingTable = null;
    }
    for (const wake of [...this.waiters]) wake(false);
  }

  private requireNewer(generation: number): void {
    const active = this.activeTable;
    if (active !== null && generation <= active.table.generation) {
      throw new GenerationConflictError(
        `generation ${generation} is not newer than the active generation ${active.table.generation}; push a higher generation`,
        active.table.generation,
      );
    }
  }

  private serialize<T>(step: () => Promise<T>): Promise<T> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

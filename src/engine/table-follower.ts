/**
 * Follows the router's active routing table by long-polling GET /v1/routing-table with
 * If-None-Match, so a new generation reaches the engine as soon as the router installs it.
 * Each poll is bounded by the wait plus a request timeout; failures back off from 100 ms doubling
 * to 5 s. The loop runs until stop().
 */
import type { FastifyBaseLogger } from 'fastify';
import { parseRoutingTable } from '../routing/validate.js';
import { prepareTable, type InstalledTable } from '../router/table-store.js';

export interface TableFollowerOptions {
  readonly routerUrl: string;
  readonly waitMs: number;
  readonly requestTimeoutMs: number;
  readonly log: FastifyBaseLogger;
  readonly now: () => number;
  /** Called with every new table, after it is current. */
  readonly onTable?: (installed: InstalledTable, previous: InstalledTable | null) => void;
}

const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

export class TableFollower {
  private installed: InstalledTable | null = null;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly options: TableFollowerOptions) {}

  /** The newest table seen, or null before the first. */
  get current(): InstalledTable | null {
    return this.installed;
  }

  /** Starts polling; calling it again does nothing. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops polling and waits for the loop to end. */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const listener of [...this.listeners]) listener();
    await this.loop;
  }

  /**
   * Resolves with the current table once its generation is at least `generation`, or with the
   * current table (possibly older, or null) after `timeoutMs`.
   */
  waitForGeneration(generation: number, timeoutMs: number): Promise<InstalledTable | null> {
    const reached = (): boolean => (this.installed?.table.generation ?? -1) >= generation;
    if (reached() || this.stopping.signal.aborted) return Promise.resolve(this.installed);
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(this.installed);
      };
      const check = (): void => {
        if (reached() || this.stopping.signal.aborted) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.listeners.add(check);
    });
  }

  /** Replaces the current table (used by tests and by an engine started without a router). */
  accept(installed: InstalledTable): void {
    const previous = this.installed;
    this.installed = installed;
    this.options.onTable?.(installed, previous);
    for (const listener of [...this.listeners]) listener();
  }

  private async run(): Promise<void> {
    const { routerUrl, waitMs, requestTimeoutMs, log } = this.options;
    const signal = this.stopping.signal;
    let retryMs = MIN_RETRY_MS;
    log.info({ routerUrl, waitMs }, 'following the routing table');

    while (!signal.aborted) {
      let retry = false;
      try {
        const headers: Record<string, string> = {};
        if (this.installed !== null) headers['if-none-match'] = this.installed.etag;
        const response = await fetch(`${routerUrl}/v1/routing-table?waitMs=${waitMs}`, {
          headers,
          signal: AbortSignal.any([signal, AbortSignal.timeout(waitMs + requestTimeoutMs)]),
        });
        if (response.status === 200) {
          const table = parseRoutingTable(await response.json());
          if (table.generation !== this.installed?.table.generation) {
            this.accept(prepareTable(table, this.options.now()));
            log.info({ generation: table.generation }, 'routing table followed');
          }
          retryMs = MIN_RETRY_MS;
        } else if (response.status === 304) {
          await response.arrayBuffer();
          retryMs = MIN_RETRY_MS;
        } else {
          const body = await response.text();
          log.warn({ routerUrl, status: response.status, body: body.slice(0, 200) }, 'routing table poll failed; retrying');
          retry = true;
        }
      } catch (error) {
        if (signal.aborted) break;
        log.warn({ routerUrl, err: error, retryMs }, 'routing table poll failed; retrying');
        retry = true;
      }
      if (retry) {
        await sleep(retryMs, signal);
        retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
      }
    }
    log.info('stopped following the routing table');
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

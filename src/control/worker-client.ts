/**
 * HTTP client for one worker: its router sidecar (statistics and routing tables) and its engine
 * (expert instances). Every call has a timeout, and a failure raises WorkerRequestError naming
 * the worker, the call and the response.
 */
import { GraceMoeError } from '../errors.js';
import { parseStats } from '../stats/json.js';
import type { ActivationStats } from '../stats/types.js';
import type { RoutingTable } from '../routing/types.js';

/** A request to a worker failed, timed out or got a response with an unexpected status. */
export class WorkerRequestError extends GraceMoeError {
  readonly code = 'WORKER_REQUEST_FAILED';
  override readonly exitCode = 1;
}

export interface WorkerEndpoint {
  readonly node: number;
  readonly routerUrl: string;
  readonly engineUrl: string;
}

/** One statistics window and the cursor for the next scrape. */
export interface ScrapedWindow {
  readonly stats: ActivationStats | null;
  /** Pass as `since` next time; the router's window end. */
  readonly cursorMs: number;
}

export interface Readiness {
  readonly ready: boolean;
  readonly missing: number;
}

/** The calls the control loop and rollouts make on a worker; tests may provide their own. */
export interface WorkerClient {
  readonly endpoint: WorkerEndpoint;
  scrapeStats(sinceMs: number | null): Promise<ScrapedWindow>;
  stageTable(table: RoutingTable): Promise<void>;
  activate(generation: number): Promise<void>;
  dropPending(): Promise<void>;
  loadInstances(generation: number): Promise<void>;
  readiness(generation: number): Promise<Readiness>;
  dropUnused(generation: number): Promise<void>;
}

export interface HttpWorkerOptions {
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
}

/** WorkerClient over HTTP against the router and engine APIs. */
export class HttpWorkerClient implements WorkerClient {
  private readonly fetchImpl: typeof fetch;

  constructor(
    readonly endpoint: WorkerEndpoint,
    private readonly options: HttpWorkerOptions,
  ) {
    this.fetchImpl = options.fetch ?? fetch;
  }

  async scrapeStats(sinceMs: number | null): Promise<ScrapedWindow> {
    const query = sinceMs === null ? '?since=0' : `?since=${Math.floor(sinceMs)}`;
    const { status, body } = await this.call('router', 'GET', `/v1/stats${query}`, undefined, [200, 404]);
    if (status === 404) return { stats: null, cursorMs: sinceMs ?? 0 };
    const document = body as { window?: { endMs?: number } | null };
    const stats = parseStats(stripRouterFields(body));
    return { stats, cursorMs: document.window?.endMs ?? sinceMs ?? 0 };
  }

  async stageTable(table: RoutingTable): Promise<void> {
    await this.call('router', 'PUT', '/v1/routing-table?phase=pending', table, [200]);
  }

  async activate(generation: number): Promise<void> {
    await this.call('router', 'POST', '/v1/routing-table/activate', { generation }, [200]);
  }

  async dropPending(): Promise<void> {
    await this.call('router', 'DELETE', '/v1/routing-table/pending', undefined, [200]);
  }

  async loadInstances(generation: number): Promise<void> {
    await this.call('engine', 'POST', '/v1/instances/load', { generation }, [202]);
  }

  async readiness(generation: number): Promise<Readiness> {
    const { body } = await this.call('engine', 'GET', `/v1/readiness?generation=${generation}`, undefined, [200]);
    const answer = body as { ready?: unknown; missing?: unknown };
    return { ready: answer.ready === true, missing: typeof answer.missing === 'number' ? answer.missing : -1 };
  }

  async dropUnused(generation: number): Promise<void> {
    await this.call('engine', 'POST', '/v1/instances/drop', { generation }, [200]);
  }

  private async call(
    target: 'router' | 'engine',
    method: string,
    path: string,
    payload: unknown,
    accepted: readonly number[],
  ): Promise<{ status: number; body: unknown }> {
    const base = target === 'router' ? this.endpoint.routerUrl : this.endpoint.engineUrl;
    const where = `${target} of node ${this.endpoint.node} (${method} ${base}${path})`;
    let response: Response;
    try {
      response = await this.fetchImpl(`${base}${path}`, {
        method,
        ...(payload === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new WorkerRequestError(`${where} failed: ${detail}`, { cause: error });
    }
    const text = await response.text();
    if (!accepted.includes(response.status)) {
      throw new WorkerRequestError(`${where} responded with ${response.status}: ${text.slice(0, 300)}`);
    }
    if (text === '') return { status: response.status, body: null };
    try {
      return { status: response.status, body: JSON.parse(text) as unknown };
    } catch (error) {
      throw new WorkerRequestError(`${where} responded with invalid JSON: ${text.slice(0, 100)}`, { cause: error });
    }
  }
}

/** Drops the fields the router adds to the statistics document before it is parsed. */
function stripRouterFields(body: unknown): unknown {
  if (body === null || typeof body !== 'object') return body;
  const { dispatch: _dispatch, complete: _complete, buckets: _buckets, ...stats } = body as Record<string, unknown>;
  return stats;
}

import { createServer, type Server } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { ListenError } from './errors.js';
import { createServiceApp, serveUntilAborted } from './http.js';

const silent = pino({ level: 'silent' });

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Listens on a free loopback port and keeps it, so that a second listener finds it in use. */
async function occupiedPort(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** An app whose GET /slow waits until `release` is called; `started` resolves when a request arrived. */
function slowApp(): { app: FastifyInstance; started: Promise<void>; release: () => void } {
  const app = createServiceApp({ logger: silent, bodyLimitBytes: 1024 });
  let release = (): void => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let markStarted = (): void => undefined;
  const started = new Promise<void>((resolve) => {
    markStarted = resolve;
  });
  app.get('/slow', async () => {
    markStarted();
    await gate;
    return { ok: true };
  });
  return { app, started, release };
}

describe('serveUntilAborted', () => {
  test('throws ListenError naming --port when the port is in use', async () => {
    const port = await occupiedPort();
    const app = createServiceApp({ logger: silent, bodyLimitBytes: 1024 });

    const serving = serveUntilAborted(app, { host: '127.0.0.1', portNumber: port, shutdownTimeoutMs: 100 }, new AbortController().signal);

    await expect(serving).rejects.toThrow(ListenError);
    await expect(serving).rejects.toThrow(
      `cannot listen: --port ${port} is already in use on 127.0.0.1 (EADDRINUSE); choose another --port or stop the process that uses it`,
    );
  });

  test('closes connections and calls the exit hook with 1 when the drain times out', async () => {
    const { app, started, release } = slowApp();
    const controller = new AbortController();
    const exits: number[] = [];
    let listening = (_url: string): void => undefined;
    const url = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const serving = serveUntilAborted(
      app,
      { host: '127.0.0.1', portNumber: 0, shutdownTimeoutMs: 100, exitOnDrainTimeout: (code) => exits.push(code) },
      controller.signal,
      listening,
    );
    const request = fetch(`${await url}/slow`).then(
      (response) => response.status,
      () => 'connection closed',
    );
    await started;

    const stopping = Date.now();
    controller.abort();
    const code = await serving;
    const waitedMs = Date.now() - stopping;
    release();

    expect(code).toBe(1);
    expect(exits).toEqual([1]);
    expect(waitedMs).toBeGreaterThanOrEqual(90);
    expect(waitedMs).toBeLessThan(2_000);
    expect(await request).toBe('connection closed');
  });

  test('returns 0 without the exit hook soon after a clean drain', async () => {
    const { app, started, release } = slowApp();
    const controller = new AbortController();
    const exits: number[] = [];
    let listening = (_url: string): void => undefined;
    const url = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const serving = serveUntilAborted(
      app,
      { host: '127.0.0.1', portNumber: 0, shutdownTimeoutMs: 5_000, exitOnDrainTimeout: (code) => exits.push(code) },
      controller.signal,
      listening,
    );
    const request = fetch(`${await url}/slow`).then((response) => response.status);
    await started;

    const stopping = Date.now();
    controller.abort();
    setTimeout(release, 50);

    expect(await serving).toBe(0);
    // The finished keep-alive connection must not hold the drain until its 5 s keep-alive timeout.
    expect(Date.now() - stopping).toBeLessThan(2_000);
    expect(exits).toEqual([]);
    expect(await request).toBe(200);
  });
});

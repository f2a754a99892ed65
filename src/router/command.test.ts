import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, test } from 'vitest';
import { runCli } from '../cli/main.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function occupiedPort(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** Runs the CLI in this process and returns its exit code and standard error. */
async function run(argv: readonly string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const sink = (append: (text: string) => void) =>
    new Writable({
      write(chunk, _encoding, callback) {
        append(String(chunk));
        callback();
      },
    });
  const code = await runCli(argv, {
    stdout: sink(() => undefined),
    stderr: sink((text) => {
      stderr += text;
    }),
    signal: new AbortController().signal,
  });
  return { code, stderr };
}

describe('service start-up errors', () => {
  test('router with a port in use exits 2 naming --port', async () => {
    const port = await occupiedPort();
    const { code, stderr } = await run(['router', '--port', String(port), '--log-level', 'silent']);

    expect(code).toBe(2);
    expect(stderr).toBe(
      `grace-moe router: cannot listen: --port ${port} is already in use on 127.0.0.1 (EADDRINUSE); choose another --port or stop the process that uses it\n`,
    );
  });

  test('engine with a port in use exits 2 naming --port', async () => {
    const port = await occupiedPort();
    const { code, stderr } = await run([
      'engine',
      '--node', '0',
      '--topology', '1x1',
      '--peers', 'http://127.0.0.1:9',
      '--router-url', 'http://127.0.0.1:9',
      '--port', String(port),
      '--log-level', 'silent',
    ]);

    expect(code).toBe(2);
    expect(stderr).toContain(`grace-moe engine: cannot listen: --port ${port} is already in use`);
    expect(stderr).not.toContain('internal error');
  });

  test('router with a state file in a missing folder exits 2 naming the flag and folder', async () => {
    const { code, stderr } = await run(['router', '--port', '0', '--state-file', '/nonexistent-grace-moe/state.json', '--log-level', 'silent']);

    expect(code).toBe(2);
    expect(stderr).toBe(
      'grace-moe router: --state-file (GRACE_MOE_ROUTER_STATE_FILE) /nonexistent-grace-moe/state.json: ' +
        'the folder /nonexistent-grace-moe does not exist; create it or choose another path\n',
    );
  });
});

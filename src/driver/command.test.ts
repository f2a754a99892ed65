import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { runCli } from '../cli/main.js';

let folder = '';
let tracePath = '';
const servers: Server[] = [];

/** Writes a 6-token trace of one layer, 4 experts and top-2 with its meta file. */
beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'grace-drive-'));
  tracePath = join(folder, 'small.jsonl');
  const records = Array.from({ length: 6 }, (_, t) => JSON.stringify({ req: 'test/0', pos: t, layers: [[t % 4, (t + 1) % 4]] }));
  await writeFile(tracePath, `${records.join('\n')}\n`);
  await writeFile(join(folder, 'small.meta.json'), JSON.stringify({ num_moe_layers: 1, num_experts: 4, top_k: 2 }));
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await rm(folder, { recursive: true, force: true });
});

/** Starts an engine stand-in that completes every batch; resolves with its URL. */
async function fakeEngine(): Promise<string> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"crossNodeCopies": 0}');
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
}

async function run(argv: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = { stdout: '', stderr: '' };
  const sink = (key: 'stdout' | 'stderr') =>
    new Writable({
      write(chunk, _encoding, callback) {
        output[key] += String(chunk);
        callback();
      },
    });
  const code = await runCli(argv, { stdout: sink('stdout'), stderr: sink('stderr'), signal: new AbortController().signal });
  return { code, ...output };
}

describe('grace-moe drive', () => {
  test('rejects an offset at the end of the trace with a usage error', async () => {
    const { code, stderr } = await run(['drive', '--engines', 'http://127.0.0.1:9', '--trace', tracePath, '--offset', '6']);

    expect(code).toBe(2);
    expect(stderr).toBe(
      `grace-moe drive: --offset 6 is at or past the end of the trace ${tracePath}, which has 6 tokens; choose an offset below 6\n`,
    );
  });

  test('warns with the tokens sent when the trace cuts the slice short', async () => {
    const engine = await fakeEngine();
    const { code, stdout, stderr } = await run(['drive', '--engines', engine, '--trace', tracePath, '--offset', '2', '--tokens', '10', '--batch-tokens', '2']);

    expect(code).toBe(0);
    expect(stderr).toBe(
      `grace-moe drive: warning: the trace ${tracePath} ends at token 6, so --tokens 10 from --offset 2 was cut to 4 tokens; 4 tokens were sent\n`,
    );
    expect(stdout).toMatch(/tokens sent +4/);
    expect(stdout).toMatch(/batches not sent +0\n/);
  });
});

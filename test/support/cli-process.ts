/**
 * Runs the compiled `grace-moe` binary (dist/src/cli/main.js) as a child process, the way a user
 * runs it, and collects its exit code and output. `npm test` builds dist first.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Absolute path of the compiled CLI entry point. */
export const CLI_PATH = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

/** Exit code and complete output of one CLI run. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Throws unless the CLI has been compiled, so a missing build fails with the fix, not ENOENT. */
export function requireBuiltCli(): void {
  if (!existsSync(CLI_PATH)) {
    throw new Error(`${CLI_PATH} not found; run "npm run build" before these tests`);
  }
}

/** Runs `node dist/src/cli/main.js ...args` and resolves when the process has exited. */
export function runCliProcess(args: readonly string[]): Promise<CliRun> {
  requireBuiltCli();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

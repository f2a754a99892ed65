#!/usr/bin/env node
/**
 * The grace-moe command line: one binary with subcommands. Exit codes: 0 success, 2 usage or input
 * error, 1 internal error.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { exitCodeOf, GraceMoeError } from '../errors.js';
import type { Command, CommandIo } from './command.js';
import { commands } from './commands.js';

/** The version printed by --version; kept equal to package.json by a test. */
export const VERSION = '0.1.0';

function helpText(): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  const lines = commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`);
  return ['Usage: grace-moe <command> [flags]', '', 'Commands:', ...lines, '', 'Run "grace-moe <command> --help" for its flags.', ''].join('\n');
}

/** Runs the CLI with `argv` (without the node and script paths) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(helpText());
    return 2;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`grace-moe ${VERSION}\n`);
    return 0;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = commands.find((candidate) => candidate.name === rest[0]);
    io.stdout.write(topic ? `${topic.usage.trimEnd()}\n` : helpText());
    return 0;
  }
  const command: Command | undefined = commands.find((candidate) => candidate.name === name);
  if (command === undefined) {
    io.stderr.write(`grace-moe: unknown command "${name}"\n\n${helpText()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${command.usage.trimEnd()}\n`);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (io.signal.aborted) {
      io.stderr.write(`grace-moe ${name}: stopped by signal\n`);
      return 130;
    }
    if (error instanceof GraceMoeError) {
      io.stderr.write(`grace-moe ${name}: ${error.message}\n`);
    } else {
      const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
      io.stderr.write(`grace-moe ${name}: internal error: ${detail}\n`);
    }
    return exitCodeOf(error);
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const controller = new AbortController();
  let interrupts = 0;
  const stop = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const code = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    signal: controller.signal,
  });
  process.exitCode = code;
}

import type { Writable } from 'node:stream';

/** Streams and environment a command runs with; tests pass their own. */
export interface CommandIo {
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
  /** Resolves when the user asks the command to stop (Ctrl-C or SIGTERM). */
  readonly signal: AbortSignal;
}

/** One `grace-moe` subcommand. `run` returns the exit code; thrown errors map through the catalogue. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  run(argv: readonly string[], io: CommandIo): Promise<number>;
}

/**
 * Routing tables on disk: the mounted table file (a routing table or a placement plan) that a
 * router serves at start, and the state file that every accepted table is written to so that a
 * crashed router recovers it. Writes go to a temporary file in the same folder, are flushed, and
 * are renamed over the target, so a reader sees the old or the new table and never half of one.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { GraceMoeError } from '../errors.js';
import type { RoutingTable } from '../routing/types.js';
import { parseTableDocument, routingTableToJson } from '../routing/validate.js';
import { TableFileError } from './errors.js';

/** Reads and validates a routing table or placement plan file. Throws TableFileError. */
export async function readTableFile(path: string): Promise<RoutingTable> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TableFileError(path, `cannot read the file: ${messageOf(error)}`, { cause: error });
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TableFileError(path, `not valid JSON: ${messageOf(error)}`, { cause: error });
  }

  try {
    return parseTableDocument(value);
  } catch (error) {
    if (error instanceof GraceMoeError) {
      throw new TableFileError(path, error.message, { cause: error });
    }
    throw error;
  }
}

let temporarySequence = 0;

/** Writes a table as JSON via a temporary file and a rename in the same folder. */
export async function writeTableFile(path: string, table: RoutingTable): Promise<void> {
  temporarySequence += 1;
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${temporarySequence}.tmp`);
  const text = `${JSON.stringify(routingTableToJson(table))}\n`;
  try {
    const handle = await open(temporary, 'w', 0o644);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

export interface StartupFiles {
  readonly tableFile: string | null;
  readonly stateFile: string | null;
}

/**
 * Returns the newest valid table among the table file and the state file, or null. A missing state
 * file is normal on a first start. A file that is missing (table file only) or corrupt is logged
 * and skipped, so the router starts without it (unready when neither file is usable).
 */
export async function loadStartupTable(files: StartupFiles, log: FastifyBaseLogger): Promise<RoutingTable | null> {
  const candidates: { file: string; role: 'table' | 'state' }[] = [];
  if (files.tableFile !== null) candidates.push({ file: files.tableFile, role: 'table' });
  if (files.stateFile !== null) candidates.push({ file: files.stateFile, role: 'state' });

  let newest: RoutingTable | null = null;
  for (const { file, role } of candidates) {
    let table: RoutingTable;
    try {
      table = await readTableFile(file);
    } catch (error) {
      if (role === 'state' && isMissingFile(error)) {
        log.info({ file }, 'no state file yet');
        continue;
      }
      log.error({ file, role, err: error }, 'ignoring unusable routing table file');
      continue;
    }
    log.info({ file, role, generation: table.generation }, 'routing table file read');
    if (newest === null || table.generation > newest.generation) {
      newest = table;
    }
  }
  return newest;
}

function isMissingFile(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof Error && (cause as NodeJS.ErrnoException).code === 'ENOENT';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

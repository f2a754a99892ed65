/**
 * Routing tables on disk: the mounted table file (a routing table or a placement plan) that a
 * router serves at start, and the state file that every accepted table is written to so that a
 * crashed router recovers it. Writes go to a temporary file in the same folder, are flushed, and
 * are renamed over the target, so a reader sees the old or the new table and never half of one.
 */
import { constants } from 'node:fs';
import { access, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { ConfigError } from '../config/errors.js';
import { ANY_DEPLOYMENT, type DeploymentShape } from '../config/router.js';
import { GraceMoeError } from '../errors.js';
import type { RoutingTable } from '../routing/types.js';
import { parseTableDocument, routingTableToJson } from '../routing/validate.js';
import { checkTableShape } from './deployment.js';
import { TableFileError } from './errors.js';

/** Reads and validates a routing table or placement plan file. Throws TableFileError. */
export async function readTableFile(path: string): Promise<RoutingTable> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TableFileError(path, `cannot read the file: ${describeFileError(error)}`, { cause: error });
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
  /** Shape a table must have to be served; nothing is checked when absent. */
  readonly deployment?: DeploymentShape;
}

/**
 * Returns the newest valid table among the table file and the state file, or null. A missing state
 * file is normal on a first start. A file that is missing (table file only), corrupt, invalid (a
 * generation above u32 included) or of another shape than `files.deployment` is logged and
 * skipped, so the router starts without it (unready when neither file is usable).
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
      checkTableShape(table, files.deployment ?? ANY_DEPLOYMENT);
    } catch (error) {
      if (role === 'state' && isMissingFile(error)) {
        log.info({ file }, 'no state file yet');
        continue;
      }
      if (!(error instanceof GraceMoeError)) throw error;
      // The message already contains the cause's text; logging `err` would repeat it with the cause chain.
      log.error({ file, role, code: error.code, reason: error.message }, 'ignoring unusable routing table file');
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

/**
 * Describes a file-system error without the path that Node.js repeats in its message, as
 * "no such file or directory (ENOENT)" for "ENOENT: no such file or directory, open '/x'".
 */
function describeFileError(error: unknown): string {
  const message = messageOf(error);
  const match = /^([A-Z0-9]+): (.*?), \w+ '.*'$/.exec(message);
  return match === null ? message : `${match[2]} (${match[1]})`;
}

/**
 * Throws ConfigError, naming the setting and the folder, unless the folder of `stateFile` exists,
 * is a folder and is writable, so a state file that cannot be written stops the router at start
 * instead of failing every table push.
 */
export async function checkStateFileFolder(stateFile: string): Promise<void> {
  const folder = dirname(resolve(stateFile));
  const setting = `--state-file (GRACE_MOE_ROUTER_STATE_FILE) ${stateFile}`;
  let isFolder: boolean;
  try {
    isFolder = (await stat(folder)).isDirectory();
  } catch (error) {
    const detail = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be used: ${describeFileError(error)}`;
    throw new ConfigError(`${setting}: the folder ${folder} ${detail}; create it or choose another path`, { cause: error });
  }
  if (!isFolder) {
    throw new ConfigError(`${setting}: ${folder} is not a folder; choose a path inside an existing folder`);
  }
  try {
    await access(folder, constants.W_OK);
  } catch (error) {
    throw new ConfigError(`${setting}: the folder ${folder} is not writable: ${describeFileError(error)}`, { cause: error });
  }
}

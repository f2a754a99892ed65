import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The shipped DeepSeek-V2-Lite trace, relative to the package root. */
export const DEFAULT_TRACE_RELATIVE_PATH = join('data', 'traces', 'deepseek_v2_lite_esft.jsonl.gz');

/**
 * Returns the absolute path of the shipped trace. The package root is the nearest folder above
 * this module that contains package.json, which works both from src/trace (tests) and from
 * dist/src/trace (the built CLI).
 */
export function defaultTracePath(): string {
  return join(packageRoot(), DEFAULT_TRACE_RELATIVE_PATH);
}

/** The nearest folder above this module that contains package.json: the repository or install root. */
export function packageRoot(): string {
  return findPackageRoot(dirname(fileURLToPath(import.meta.url)));
}

function findPackageRoot(start: string): string {
  let directory = start;
  for (;;) {
    if (existsSync(join(directory, 'package.json'))) {
      return directory;
    }
    const parent = dirname(directory);
    if (parent === directory) {
      throw new Error(`no package.json found above ${start}; cannot locate the shipped trace`);
    }
    directory = parent;
  }
}

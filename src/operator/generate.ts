/**
 * Writes the generated manifests (see manifests.ts). Run with `npm run generate`; with --check it
 * only compares and exits 1 listing the files that differ.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { packageRoot } from '../trace/default.js';
import { generatedFiles } from './manifests.js';

const check = process.argv.includes('--check');
const root = packageRoot();
const stale: string[] = [];
for (const [relative, content] of Object.entries(await generatedFiles())) {
  const path = join(root, relative);
  const current = await readFile(path, 'utf8').catch(() => null);
  if (current === content) continue;
  if (check) {
    stale.push(relative);
    continue;
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  process.stdout.write(`wrote ${relative}\n`);
}
if (stale.length > 0) {
  process.stderr.write(`generated files differ from src/operator: ${stale.join(', ')}; run npm run generate\n`);
  process.exitCode = 1;
}

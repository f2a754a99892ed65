import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { TopologyError, UsageError } from '../errors.js';
import { DEFAULT_PRESET, hardwarePreset, modelShapeFor, type CostModel } from '../evaluator/cost-model.js';
import { resolveTopology, parseTopologyShape, type Topology } from '../topology.js';
import { defaultTracePath } from '../trace/default.js';
import { metaPathFor, readTrace } from '../trace/read.js';
import type { Trace } from '../trace/types.js';
import { nonNegativeInteger, positiveInteger } from './args.js';
import type { ProgressReporter } from './progress.js';

/** Reads the trace named by --trace, or the shipped one, reporting tokens read. */
export async function loadTrace(path: string | undefined, progress: ProgressReporter, stderr?: Writable): Promise<Trace> {
  const file = path ?? defaultTracePath();
  const trace = await readTrace(file, { onProgress: (tokens) => progress.update(`reading ${file}`, tokens) });
  progress.update(`reading ${file}`, trace.tokens);
  if (stderr && !existsSync(metaPathFor(file))) {
    progress.finish();
    stderr.write(
      `note: no ${metaPathFor(file)} beside the trace, so its shape was inferred from the records: ` +
        `${trace.meta.layers} layers, ${trace.meta.experts} experts (largest id + 1), top-${trace.meta.topK}; ` +
        'add the meta file to check expert ids against the model\n',
    );
  }
  return trace;
}

/** Resolves --topology with --slots-per-gpu or --redundant-slots (default: one redundant slot per GPU). */
export function topologyFromFlags(
  flags: { topology?: string; 'slots-per-gpu'?: string; 'redundant-slots'?: string },
  experts: number,
): Topology {
  const shape = parseTopologyShape(flags.topology ?? '2x4');
  if (flags['slots-per-gpu'] !== undefined && flags['redundant-slots'] !== undefined) {
    throw new UsageError('--slots-per-gpu and --redundant-slots set the same budget; give only one of them');
  }
  if (flags['slots-per-gpu'] !== undefined) {
    const slotsPerGpu = positiveInteger('--slots-per-gpu', flags['slots-per-gpu'], 1);
    try {
      return resolveTopology(shape, experts, { slotsPerGpu });
    } catch (error) {
      if (error instanceof TopologyError && slotsPerGpu > experts) {
        throw new UsageError(`--slots-per-gpu ${slotsPerGpu}: ${error.message}`, { cause: error });
      }
      if (!(error instanceof TopologyError)) throw error;
      throw new UsageError(`--slots-per-gpu ${slotsPerGpu} is too small: ${error.message}`, { cause: error });
    }
  }
  const redundant = nonNegativeInteger('--redundant-slots', flags['redundant-slots'], 1);
  try {
    return resolveTopology(shape, experts, { redundantSlotsPerGpu: redundant });
  } catch (error) {
    if (!(error instanceof TopologyError)) throw error;
    throw new UsageError(`--redundant-slots ${redundant}: ${error.message}`, { cause: error });
  }
}

/**
 * Checks the topology flags before any data is read, so a typo fails at once. The slot budget
 * needs the expert count and is checked again by topologyFromFlags.
 */
export function checkTopologyFlags(flags: { topology?: string; 'slots-per-gpu'?: string; 'redundant-slots'?: string; preset?: string }): void {
  parseTopologyShape(flags.topology ?? '2x4');
  if (flags['slots-per-gpu'] !== undefined && flags['redundant-slots'] !== undefined) {
    throw new UsageError('--slots-per-gpu and --redundant-slots set the same budget; give only one of them');
  }
  positiveInteger('--slots-per-gpu', flags['slots-per-gpu'], 1);
  nonNegativeInteger('--redundant-slots', flags['redundant-slots'], 1);
  if (flags.preset !== undefined) hardwarePreset(flags.preset);
}

/** Writes a command's output file; an unwritable path is a UsageError naming the flag. */
export async function writeOutput(flag: string, path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${flag} ${path} could not be written: ${detail}`, { cause: error });
  }
}

/** Cost model for a trace's model on the named hardware preset. */
export function costModelFor(trace: Trace, preset: string | undefined): { cost: CostModel; preset: string } {
  const name = preset ?? DEFAULT_PRESET;
  return { cost: { model: modelShapeFor(trace.meta.model), hardware: hardwarePreset(name) }, preset: name };
}

/** Flags every trace-reading command shares, for parseFlags. */
export const TOPOLOGY_FLAGS = {
  trace: { type: 'string' },
  topology: { type: 'string' },
  'slots-per-gpu': { type: 'string' },
  'redundant-slots': { type: 'string' },
  preset: { type: 'string' },
} as const;

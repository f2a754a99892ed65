/**
 * Locality-aware replica choice with a precomputed fast path, for the router's hot path.
 *
 * For a fixed (source GPU, layer, expert) the locality tier that LocalityChooser picks from is
 * always the same: the own GPU, else the instances on the own node, else all instances. When that
 * tier contains a single instance, the chosen GPU never changes and LocalityChooser touches no
 * round-robin state, so the GPU is stored in a table of GPUs x layers x experts entries. Only
 * keys whose tier contains several instances go to the wrapped LocalityChooser. Every call therefore
 * returns what LocalityChooser alone would return, in the same order.
 *
 * Memory: 2 bytes per entry (GPU ids below 32768): 13 KiB for 8 GPUs x 26 layers x 64 experts,
 * 7.6 MB for 256 GPUs x 58 layers x 256 experts. Building costs one pass over those entries.
 * The spill option of LocalityChooser makes the tier depend on predicted load, so it is not supported.
 */
import { LocalityChooser } from './policy.js';
import type { CompiledTable } from './table.js';
import type { ReplicaChooser } from './types.js';

const SEVERAL = -1;

export class PrecomputedLocalityChooser implements ReplicaChooser {
  private readonly fixed: Int16Array;
  private readonly delegate: LocalityChooser;
  private readonly layerStride: number;
  private readonly gpuStride: number;

  constructor(private readonly table: CompiledTable) {
    if (table.gpus > 32_767) {
      throw new RangeError(`precomputed routing supports up to 32767 GPUs, got ${table.gpus}`);
    }
    this.delegate = new LocalityChooser(table);
    this.layerStride = table.experts;
    this.gpuStride = table.layers * table.experts;
    this.fixed = new Int16Array(table.gpus * this.gpuStride);
    const { gpusPerNode } = table.topology;

    for (let source = 0; source < table.gpus; source++) {
      const sourceNode = Math.floor(source / gpusPerNode);
      for (let slot = 0; slot < this.gpuStride; slot++) {
        const base = table.offsets[slot] as number;
        const end = table.offsets[slot + 1] as number;
        let answer = SEVERAL;
        let onNode = 0;
        let nodeGpu = SEVERAL;
        for (let i = base; i < end; i++) {
          const gpu = table.instanceGpu[i] as number;
          if (gpu === source) {
            answer = gpu;
            break;
          }
          if (Math.floor(gpu / gpusPerNode) === sourceNode) {
            onNode += 1;
            nodeGpu = gpu;
          }
        }
        if (answer === SEVERAL) {
          if (onNode === 1) answer = nodeGpu;
          else if (onNode === 0 && end - base === 1) answer = table.instanceGpu[base] as number;
        }
        this.fixed[source * this.gpuStride + slot] = answer;
      }
    }
  }

  choose(sourceGpu: number, layer: number, expert: number): number {
    const answer = this.fixed[sourceGpu * this.gpuStride + layer * this.layerStride + expert] as number;
    return answer !== SEVERAL ? answer : this.delegate.choose(sourceGpu, layer, expert);
  }
}

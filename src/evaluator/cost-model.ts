/**
 * Cost model of one MoE layer under expert parallelism.
 *
 * Every token has a home GPU: token i of the evaluated part lives on GPU i mod P (tokens spread
 * evenly, as in data-parallel attention). Dispatch sends a token's hidden state to the GPUs that
 * serve its experts and combine sends the same volume back. A GPU's transfer time on a link class
 * is the larger of the bytes it sends and receives over that link's bandwidth, plus a latency per
 * peer; its NVLink and network transfers overlap, so its communication time is the larger of the
 * two. Expert compute costs a fixed time per token-expert pair. The phases are synchronous:
 * MoE-layer time = dispatch + slowest GPU's compute + combine.
 */
import { UsageError } from '../errors.js';

/** Shape of the routed experts that sets bytes per copy and compute per pair. */
export interface ModelShape {
  readonly name: string;
  readonly hiddenSize: number;
  readonly bytesPerElement: number;
  /** Intermediate size of one routed expert's FFN. */
  readonly expertIntermediateSize: number;
}

/** Hardware and batch parameters of the cost model. */
export interface Hardware {
  readonly name: string;
  readonly description: string;
  readonly intraNodeBytesPerSecondPerGpu: number;
  readonly interNodeBytesPerSecondPerGpu: number;
  readonly intraNodeLatencySeconds: number;
  readonly interNodeLatencySeconds: number;
  /** Sustained dense bf16 throughput of one GPU on expert GEMMs. */
  readonly gpuFlopsPerSecond: number;
  /** Tokens per GPU in one modelled batch. */
  readonly batchTokensPerGpu: number;
}

export interface CostModel {
  readonly model: ModelShape;
  readonly hardware: Hardware;
}

/** Routed-expert shapes of public MoE models (from their published configs). */
export const MODEL_SHAPES: Readonly<Record<string, ModelShape>> = Object.freeze({
  'deepseek-v2-lite': { name: 'deepseek-v2-lite', hiddenSize: 2048, bytesPerElement: 2, expertIntermediateSize: 1408 },
  'deepseek-v3': { name: 'deepseek-v3', hiddenSize: 7168, bytesPerElement: 2, expertIntermediateSize: 2048 },
  olmoe: { name: 'olmoe', hiddenSize: 2048, bytesPerElement: 2, expertIntermediateSize: 1024 },
  'qwen3-30b-a3b': { name: 'qwen3-30b-a3b', hiddenSize: 2048, bytesPerElement: 2, expertIntermediateSize: 768 },
  'mixtral-8x7b': { name: 'mixtral-8x7b', hiddenSize: 4096, bytesPerElement: 2, expertIntermediateSize: 14336 },
});

const GBIT = 1e9 / 8;

/**
 * Hardware presets. Bandwidths are effective per-direction figures, not datasheet peaks: NVLink 3
 * on A100 is 300 GB/s per direction at peak, NVLink 4 on H200 450 GB/s.
 */
export const HARDWARE_PRESETS: Readonly<Record<string, Hardware>> = Object.freeze({
  'a100-25gbe': {
    name: 'a100-25gbe',
    description: 'nodes of 4 x A100 with NVLink, 25 Gbit/s Ethernet per node shared by its GPUs (the GRACE-MoE testbed)',
    intraNodeBytesPerSecondPerGpu: 200e9,
    interNodeBytesPerSecondPerGpu: (25 * GBIT) / 4,
    intraNodeLatencySeconds: 5e-6,
    interNodeLatencySeconds: 25e-6,
    gpuFlopsPerSecond: 150e12,
    batchTokensPerGpu: 256,
  },
  'h200-400g': {
    name: 'h200-400g',
    description: 'nodes of 8 x H200 with NVLink 4, 400 Gbit/s InfiniBand per GPU',
    intraNodeBytesPerSecondPerGpu: 350e9,
    interNodeBytesPerSecondPerGpu: 400 * GBIT,
    intraNodeLatencySeconds: 3e-6,
    interNodeLatencySeconds: 8e-6,
    gpuFlopsPerSecond: 500e12,
    batchTokensPerGpu: 256,
  },
});

export const DEFAULT_PRESET = 'a100-25gbe';

/** Looks up a hardware preset; throws UsageError listing the known names. */
export function hardwarePreset(name: string): Hardware {
  const preset = HARDWARE_PRESETS[name];
  if (!preset) {
    throw new UsageError(`--preset "${name}" is unknown; use one of ${Object.keys(HARDWARE_PRESETS).join(', ')}`);
  }
  return preset;
}

/**
 * Picks the model shape for a trace from its model description, falling back to DeepSeek-V2-Lite
 * (the shipped trace's model) when nothing matches.
 */
export function modelShapeFor(modelDescription: string): ModelShape {
  const text = modelDescription.toLowerCase();
  if (text.includes('v2-lite') || text.includes('esft')) return MODEL_SHAPES['deepseek-v2-lite'] as ModelShape;
  if (text.includes('deepseek-v3') || text.includes('deepseek-r1')) return MODEL_SHAPES['deepseek-v3'] as ModelShape;
  if (text.includes('olmoe')) return MODEL_SHAPES.olmoe as ModelShape;
  if (text.includes('qwen3')) return MODEL_SHAPES['qwen3-30b-a3b'] as ModelShape;
  if (text.includes('mixtral')) return MODEL_SHAPES['mixtral-8x7b'] as ModelShape;
  return MODEL_SHAPES['deepseek-v2-lite'] as ModelShape;
}

/** Derived per-unit costs, computed once per evaluation. */
export interface UnitCosts {
  readonly bytesPerCopy: number;
  readonly secondsPerPair: number;
  readonly secondsPerIntraByte: number;
  readonly secondsPerInterByte: number;
  readonly intraLatency: number;
  readonly interLatency: number;
}

export function unitCosts(cost: CostModel): UnitCosts {
  const { model, hardware } = cost;
  // Gate, up and down projections: three matrices of hidden x intermediate, 2 flops per multiply-add.
  const flopsPerPair = 6 * model.hiddenSize * model.expertIntermediateSize;
  return {
    bytesPerCopy: model.hiddenSize * model.bytesPerElement,
    secondsPerPair: flopsPerPair / hardware.gpuFlopsPerSecond,
    secondsPerIntraByte: 1 / hardware.intraNodeBytesPerSecondPerGpu,
    secondsPerInterByte: 1 / hardware.interNodeBytesPerSecondPerGpu,
    intraLatency: hardware.intraNodeLatencySeconds,
    interLatency: hardware.interNodeLatencySeconds,
  };
}

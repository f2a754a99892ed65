/**
 * Planner benchmark: quality against EPLB and contiguous placement on the shipped trace, and
 * planning time against DeepSeek's EPLB on the shipped trace and on a DeepSeek-V3-shaped
 * synthetic workload, all measured in the same run. Prints Markdown for bench/RESULTS.md.
 *
 * Run: npm run bench:planner
 */
import { cpus } from 'node:os';
import { eplbPlan } from '../src/baselines/eplb.js';
import { compareStrategies } from '../src/compare.js';
import { hardwarePreset, MODEL_SHAPES, type CostModel } from '../src/evaluator/cost-model.js';
import { evaluatePlan } from '../src/evaluator/evaluate.js';
import type { CompareResult, DispatchScheme, Metrics } from '../src/evaluator/types.js';
import { planGraceDetailed, type GraceOptions } from '../src/planner/grace.js';
import { statsFromTrace } from '../src/stats/activation.js';
import type { Topology } from '../src/topology.js';
import { defaultTracePath } from '../src/trace/default.js';
import { readTrace } from '../src/trace/read.js';
import { parseSplit, splitTrace } from '../src/trace/split.js';
import type { TraceSplit } from '../src/trace/types.js';
import { DEEPSEEK_V3_SHAPE, syntheticTrace } from './synthetic.js';

const SCHEMES: readonly DispatchScheme[] = ['flat', 'hierarchical'];
const a100: CostModel = { model: MODEL_SHAPES['deepseek-v2-lite'], hardware: hardwarePreset('a100-25gbe') };

function log(text: string): void {
  process.stdout.write(`${text}\n`);
}

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

function metricsOf(result: CompareResult, name: string, dispatch: DispatchScheme): Metrics {
  const entry = result.strategies.find((s) => s.name === name && s.dispatch === dispatch);
  if (!entry) throw new Error(`strategy ${name} (${dispatch}) missing from the comparison`);
  return entry.metrics;
}

function bestEplb(result: CompareResult, dispatch: DispatchScheme, pick: (m: Metrics) => number): number {
  return Math.min(...result.strategies.filter((s) => s.dispatch === dispatch && s.name.startsWith('eplb')).map((s) => pick(s.metrics)));
}

function timeMs(run: () => unknown, repeats: number): number {
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    run();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

async function quality(split: TraceSplit): Promise<void> {
  log('### Quality on the shipped trace (`--split domain:0.5`, cost model a100-25gbe)');
  log('');
  log('Ratios below 1 favour grace. "vs EPLB" divides by the best of the four EPLB entries under the same dispatch scheme.');
  log('');
  log('| topology | slots/GPU | dispatch | grace MoE ms | vs best EPLB | vs contiguous | grace x-node copies | best EPLB copies | copies vs EPLB | grace balancedness |');
  log('|---|---|---|---|---|---|---|---|---|---|');
  for (const [nodes, gpusPerNode] of [
    [2, 4],
    [4, 8],
  ] as const) {
    for (const redundant of [1, 2]) {
      const topology: Topology = { nodes, gpusPerNode, slotsPerGpu: 64 / (nodes * gpusPerNode) + redundant };
      progress(`quality ${nodes}x${gpusPerNode} with ${topology.slotsPerGpu} slots per GPU`);
      const result = await compareStrategies({ split, topology, cost: a100, preset: 'a100-25gbe' });
      for (const dispatch of SCHEMES) {
        const grace = metricsOf(result, 'grace', dispatch);
        const contiguous = metricsOf(result, 'contiguous', dispatch);
        const eplbTime = bestEplb(result, dispatch, (m) => m.moeLayerTimeMs);
        const eplbCopies = bestEplb(result, dispatch, (m) => m.crossNodeCopiesPerToken);
        log(
          `| ${nodes}x${gpusPerNode} | ${topology.slotsPerGpu} | ${dispatch} | ${grace.moeLayerTimeMs.toFixed(3)} | ` +
            `${(grace.moeLayerTimeMs / eplbTime).toFixed(3)} | ${(grace.moeLayerTimeMs / contiguous.moeLayerTimeMs).toFixed(3)} | ` +
            `${grace.crossNodeCopiesPerToken.toFixed(3)} | ${eplbCopies.toFixed(3)} | ${(grace.crossNodeCopiesPerToken / eplbCopies).toFixed(3)} | ` +
            `${grace.balancedness.toFixed(3)} |`,
        );
      }
    }
  }
  log('');
}

function ablations(split: TraceSplit): void {
  const topology: Topology = { nodes: 2, gpusPerNode: 4, slotsPerGpu: 10 };
  const stats = statsFromTrace(split.profile, { sampleCapacity: 8192 });
  const variants: readonly { name: string; options: Partial<GraceOptions> }[] = [
    { name: 'default (knee r, refinement, all candidates)', options: {} },
    { name: 'no refinement', options: { refine: false } },
    { name: 'fixed r = 0.15', options: { nonUniformity: 0.15 } },
    { name: 'paper replication only (one pass)', options: { replication: 'paper' } },
    { name: 'iterative fill only (no paper candidate)', options: { replication: 'fill' } },
    { name: 'grouping only, no replicas', options: { replication: 'none' } },
  ];
  log('### Planner variants at 2x4 with 10 slots per GPU (two spare), shipped trace, `domain:0.5`');
  log('');
  log('| variant | dispatch | MoE ms | x-node copies | balancedness |');
  log('|---|---|---|---|---|');
  for (const variant of variants) {
    progress(`ablation: ${variant.name}`);
    for (const dispatch of SCHEMES) {
      const plan = planGraceDetailed(stats, { topology, cost: a100, dispatch, ...variant.options }).plan;
      const metrics = evaluatePlan(split.evaluation, plan, 'locality', a100)[dispatch].metrics;
      log(
        `| ${variant.name} | ${dispatch} | ${metrics.moeLayerTimeMs.toFixed(3)} | ${metrics.crossNodeCopiesPerToken.toFixed(3)} | ${metrics.balancedness.toFixed(3)} |`,
      );
    }
  }
  log('');
}

function speed(split: TraceSplit): void {
  log('### Planning time (median of repeated runs, one thread)');
  log('');
  log('| workload | topology | grace ms | EPLB global ms | EPLB hierarchical ms | grace / EPLB global |');
  log('|---|---|---|---|---|---|');

  const shipped = statsFromTrace(split.profile, { sampleCapacity: 8192 });
  const shippedLoads = shipped.perLayer.map((layer) => layer.loads);
  for (const topology of [
    { nodes: 2, gpusPerNode: 4, slotsPerGpu: 9 },
    { nodes: 4, gpusPerNode: 8, slotsPerGpu: 4 },
  ]) {
    progress(`speed: shipped trace ${topology.nodes}x${topology.gpusPerNode}`);
    const grace = timeMs(() => planGraceDetailed(shipped, { topology, cost: a100 }), 3);
    const global = timeMs(() => eplbPlan(shippedLoads, topology, { topK: 6, policy: 'global' }), 5);
    const hierarchical = timeMs(() => eplbPlan(shippedLoads, topology, { topK: 6, policy: 'hierarchical' }), 5);
    log(
      `| shipped DeepSeek-V2-Lite, 26 x 64 experts | ${topology.nodes}x${topology.gpusPerNode}, ${topology.slotsPerGpu} slots | ` +
        `${grace.toFixed(0)} | ${global.toFixed(0)} | ${hierarchical.toFixed(0)} | ${(grace / global).toFixed(2)} |`,
    );
  }

  progress('speed: synthetic DeepSeek-V3 shape');
  // 256 experts need many tokens for co-activation counts that hold on fresh tokens.
  const profile = syntheticTrace(DEEPSEEK_V3_SHAPE, 32768, 1);
  const evaluation = syntheticTrace(DEEPSEEK_V3_SHAPE, 16384, 2);
  const stats = statsFromTrace(profile, { sampleCapacity: 4096 });
  const loads = stats.perLayer.map((layer) => layer.loads);
  const topology = { nodes: 32, gpusPerNode: 8, slotsPerGpu: 2 };
  const cost: CostModel = { model: MODEL_SHAPES['deepseek-v3'], hardware: hardwarePreset('h200-400g') };
  const graceMs = timeMs(() => planGraceDetailed(stats, { topology, cost }), 3);
  const thorough = { hotFractions: [0, 0.5, 1] };
  const thoroughMs = timeMs(() => planGraceDetailed(stats, { topology, cost, ...thorough }), 1);
  const globalMs = timeMs(() => eplbPlan(loads, topology, { topK: 8, policy: 'global' }), 3);
  const hierarchicalMs = timeMs(() => eplbPlan(loads, topology, { topK: 8, policy: 'hierarchical', groups: 32 }), 3);
  log(
    `| synthetic DeepSeek-V3 shape, 58 x 256 experts, 512 slots | 32x8, 2 slots | ${graceMs.toFixed(0)} | ${globalMs.toFixed(0)} | ` +
      `${hierarchicalMs.toFixed(0)} | ${(graceMs / globalMs).toFixed(2)} |`,
  );
  log(
    `| same, grace with hotFractions [0, 0.5, 1] | 32x8, 2 slots | ${thoroughMs.toFixed(0)} | ${globalMs.toFixed(0)} | ` +
      `${hierarchicalMs.toFixed(0)} | ${(thoroughMs / globalMs).toFixed(2)} |`,
  );
  log('');

  progress('quality: synthetic DeepSeek-V3 shape');
  const eplb = eplbPlan(loads, topology, { topK: 8, policy: 'global' });
  log('### Quality on the synthetic DeepSeek-V3 shape (32x8 GPUs, 2 slots each, cost model h200-400g; 32,768 profile tokens, 16,384 fresh evaluation tokens)');
  log('');
  log('| strategy | dispatch | MoE ms | x-node copies | balancedness |');
  log('|---|---|---|---|---|');
  const graceFor = (dispatch: DispatchScheme, extra: Partial<GraceOptions>) =>
    evaluatePlan(evaluation, planGraceDetailed(stats, { topology, cost, dispatch, ...extra }).plan, 'locality', cost);
  const rows: [string, Record<DispatchScheme, ReturnType<typeof evaluatePlan>[DispatchScheme]>][] = [
    ['grace (planned per scheme)', { flat: graceFor('flat', {}).flat, hierarchical: graceFor('hierarchical', {}).hierarchical }],
    [
      'grace, hotFractions [0, 0.5, 1]',
      { flat: graceFor('flat', thorough).flat, hierarchical: graceFor('hierarchical', thorough).hierarchical },
    ],
    ['eplb (engine replica choice)', evaluatePlan(evaluation, eplb, 'position-modulo', cost)],
    ['eplb+locality', evaluatePlan(evaluation, eplb, 'locality', cost)],
  ];
  for (const [name, evaluationResult] of rows) {
    for (const dispatch of SCHEMES) {
      const m = evaluationResult[dispatch].metrics;
      log(`| ${name} | ${dispatch} | ${m.moeLayerTimeMs.toFixed(3)} | ${m.crossNodeCopiesPerToken.toFixed(3)} | ${m.balancedness.toFixed(3)} |`);
    }
  }
  log('');
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
log(`Machine: ${cpu}, ${cpus().length} cores, Node.js ${process.version}. Command: \`npm run bench:planner\`.`);
log('');
progress('reading the shipped trace');
const trace = await readTrace(defaultTracePath());
const split = splitTrace(trace, parseSplit('domain:0.5'));
await quality(split);
ablations(split);
speed(split);

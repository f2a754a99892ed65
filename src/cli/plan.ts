import { baselineStrategies } from '../baselines/index.js';
import { UsageError } from '../errors.js';
import { planToJson } from '../plan/json.js';
import type { Plan } from '../plan/types.js';
import { MAX_GENERATION, validatePlan } from '../plan/validate.js';
import { planGraceDetailed } from '../planner/grace.js';
import { statsFromTrace } from '../stats/activation.js';
import { DEFAULT_COMPARE_SAMPLE } from '../compare.js';
import { oneOf, parseFlags, positiveInteger } from './args.js';
import type { Command } from './command.js';
import { checkTopologyFlags, costModelFor, loadTrace, TOPOLOGY_FLAGS, topologyFromFlags, writeOutput } from './inputs.js';
import { ProgressReporter } from './progress.js';

const STRATEGIES = ['grace', 'eplb', 'eplb-hierarchical', 'contiguous', 'round-robin'] as const;

const usage = `Usage: grace-moe plan [flags] -o plan.json

Computes a placement plan from all tokens of a trace and writes it as JSON.

Flags:
  --trace FILE            routing trace (default: the shipped DeepSeek-V2-Lite trace)
  --topology NxG          nodes x GPUs per node (default 2x4)
  --slots-per-gpu S       expert slots per GPU and layer (default: primaries per GPU + 1)
  --redundant-slots R     spare slots per GPU beyond the primaries (default 1)
  --strategy NAME         ${STRATEGIES.join(', ')} (default grace)
  --dispatch SCHEME       flat or hierarchical: the dispatch the deployment uses (default hierarchical)
  --preset NAME           hardware preset of the cost model grace scores candidates with
  --generation N          generation number written into the plan (default 1)
  -o, --output FILE       where to write the plan (default: standard output)
`;

export const planCommand: Command = {
  name: 'plan',
  summary: 'compute a placement plan from a trace',
  usage,
  async run(argv, io) {
    const { values } = parseFlags('plan', argv, {
      ...TOPOLOGY_FLAGS,
      strategy: { type: 'string' },
      dispatch: { type: 'string' },
      generation: { type: 'string' },
      output: { type: 'string', short: 'o' },
    });
    const strategy = oneOf('--strategy', values.strategy, STRATEGIES, 'grace');
    const dispatch = oneOf('--dispatch', values.dispatch, ['flat', 'hierarchical'] as const, 'hierarchical');
    const generation = positiveInteger('--generation', values.generation, 1);
    if (generation > MAX_GENERATION) throw new UsageError(`--generation must be at most ${MAX_GENERATION}, got ${generation}`);

    checkTopologyFlags(values);
    const progress = new ProgressReporter(io.stderr);
    const trace = await loadTrace(values.trace, progress, io.stderr);
    progress.finish();
    const topology = topologyFromFlags(values, trace.meta.experts);
    const { cost } = costModelFor(trace, values.preset);
    const stats = statsFromTrace(trace, { sampleCapacity: DEFAULT_COMPARE_SAMPLE });

    let plan: Plan;
    if (strategy === 'grace') {
      plan = planGraceDetailed(stats, { topology, cost, dispatch, generation }).plan;
      validatePlan(plan);
    } else {
      const baseline = baselineStrategies.find((candidate) => candidate.name === strategy);
      if (baseline === undefined) throw new UsageError(`--strategy ${strategy} has no implementation`);
      plan = baseline.build(
        stats.perLayer.map((layer) => layer.loads),
        topology,
        { topK: trace.meta.topK, generation },
      );
      validatePlan(plan, { allowDuplicateInstances: true });
    }

    const text = `${JSON.stringify(planToJson(plan), null, 2)}\n`;
    if (values.output === undefined || values.output === '-') {
      io.stdout.write(text);
    } else {
      await writeOutput('--output', values.output, text);
      io.stderr.write(`plan (${plan.strategy}, generation ${plan.generation}) written to ${values.output}\n`);
    }
    return 0;
  },
};


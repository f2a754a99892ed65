import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import { exportSglang, sglangServerArgs } from '../export/sglang.js';
import { parsePlan } from '../plan/json.js';
import { nonNegativeInteger, oneOf, parseFlags } from './args.js';
import type { Command } from './command.js';
import { writeOutput } from './inputs.js';

const usage = `Usage: grace-moe export --plan plan.json --format sglang [-o FILE]

Writes a plan in a format a serving engine loads.

Flags:
  --plan FILE             plan written by "grace-moe plan" (required)
  --format sglang         SGLang's expert-location file for --init-expert-location (the only format so far)
  --first-moe-layer K     model layer index of the plan's first MoE layer; layers before it are dense
                          and get SGLang's identity mapping (default 0; 1 for DeepSeek-V2-Lite and -V3 is 3)
  -o, --output FILE       where to write the file (default: standard output)
`;

export const exportCommand: Command = {
  name: 'export',
  summary: "write a plan in a serving engine's format (SGLang)",
  usage,
  async run(argv, io) {
    const { values } = parseFlags('export', argv, {
      plan: { type: 'string' },
      format: { type: 'string' },
      'first-moe-layer': { type: 'string' },
      output: { type: 'string', short: 'o' },
    });
    if (values.plan === undefined) throw new UsageError('--plan FILE is required: a plan written by "grace-moe plan"');
    oneOf('--format', values.format, ['sglang'] as const, 'sglang');
    const firstMoeLayer = nonNegativeInteger('--first-moe-layer', values['first-moe-layer'], 0);
    if (firstMoeLayer > 1000) throw new UsageError(`--first-moe-layer must be at most 1000, got ${firstMoeLayer}`);

    let document: unknown;
    try {
      document = JSON.parse(await readFile(values.plan, 'utf8'));
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new UsageError(`--plan ${values.plan} could not be read as JSON: ${detail}`, { cause: error });
    }
    const plan = parsePlan(document, { allowDuplicateInstances: true });
    const layers = plan.model.layers;
    const moeLayerIds = Array.from({ length: layers }, (_, i) => firstMoeLayer + i);
    const location = exportSglang(plan, { moeLayerIds, modelLayers: firstMoeLayer + layers });

    const text = `${JSON.stringify(location)}\n`;
    if (values.output === undefined || values.output === '-') {
      io.stdout.write(text);
    } else {
      await writeOutput('--output', values.output, text);
      io.stderr.write(`SGLang expert location written to ${values.output}; start SGLang with: ${sglangServerArgs(plan, values.output).join(' ')}\n`);
    }
    return 0;
  },
};

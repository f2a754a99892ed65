import type { Command } from './command.js';
import { compareCommand } from './compare.js';
import { exportCommand } from './export.js';
import { planCommand } from './plan.js';

/** Every subcommand, in the order help lists them. */
export const commands: readonly Command[] = [compareCommand, planCommand, exportCommand];

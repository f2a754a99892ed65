import type { Command } from './command.js';
import { compareCommand } from './compare.js';
import { driveCommand } from '../driver/command.js';
import { engineCommand } from '../engine/command.js';
import { exportCommand } from './export.js';
import { localCommand } from './local.js';
import { planCommand } from './plan.js';
import { operatorCommand } from '../operator/command.js';
import { routerCommand } from '../router/command.js';

/** Every subcommand, in the order help lists them. */
export const commands: readonly Command[] = [localCommand, compareCommand, planCommand, exportCommand, operatorCommand, routerCommand, engineCommand, driveCommand];

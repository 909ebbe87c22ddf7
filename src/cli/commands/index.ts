import type { Subcommand } from '../framework';
import { checkCommand } from './check';
import { decodeLogCommand } from './decode-log';
import { importDebugfsCommand } from './import-debugfs';
import { lspciCommand } from './lspci';
import { vmFlowCommand } from './vm-flow';
import { walkCommand } from './walk';

/** Every subcommand, in the order `iommu-lab --help` lists them. */
export const commands: readonly Subcommand[] = [checkCommand, decodeLogCommand, importDebugfsCommand, walkCommand, lspciCommand, vmFlowCommand];

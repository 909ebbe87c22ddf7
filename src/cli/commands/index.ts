import type { Subcommand } from '../framework';
import { checkCommand } from './check';
import { decodeLogCommand } from './decode-log';
import { lspciCommand } from './lspci';

/** Every subcommand, in the order `iommu-lab --help` lists them. */
export const commands: readonly Subcommand[] = [checkCommand, decodeLogCommand, lspciCommand];

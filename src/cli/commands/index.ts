import type { Subcommand } from '../framework';
import { checkCommand } from './check';

/** Every subcommand, in the order `iommu-lab --help` lists them. */
export const commands: readonly Subcommand[] = [checkCommand];

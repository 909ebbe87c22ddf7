import { loadDebugfs } from '../../readers/debugfs-import';
import { describeImport, reportText } from '../../readers/debugfs-report';
import { readDebugfsInputs, readStdin } from '../debugfs-files';
import { type Subcommand, choice } from '../framework';

export const importDebugfsCommand: Subcommand = {
  name: 'import-debugfs',
  summary: 'load an Intel VT-d debugfs dump into the model and print what it holds, decoded',
  synopsis: '[--format text|json] DIR|FILE...',
  help: `Reads /sys/kernel/debug/iommu/intel as copied off a machine (a directory), or its files
(iommu_regset, dmar_translation_struct, invalidation_queue, ir_translation_struct, the per-device
domain_translation_struct files), or any concatenation of them ('cat', 'head', 'grep -r .'), or '-'
for stdin. The tables are loaded into simulated memory at their real addresses; the output lists the
units and their capabilities, each device's context and PASID entries with their fields, the domains
those point to with their mappings, the invalidation queue and interrupt remapping entries.
Lines that are not understood are reported as FILE:LINE: warning: ...
Exit status: 0 when everything was understood, 1 when there were problems, 2 on bad usage.

Options:
  --format text|json  text (default) or one JSON object

Example:
  sudo cp -r /sys/kernel/debug/iommu/intel dump && iommu-lab import-debugfs dump`,
  options: { format: { type: 'string' } },
  minPositionals: 1,
  async run(args, io) {
    const format = choice('import-debugfs', 'format', args.values.format, ['text', 'json'] as const, 'text');
    const imp = loadDebugfs(await readDebugfsInputs('import-debugfs', args.positionals, readStdin));
    const report = describeImport(imp);
    io.out(format === 'json' ? JSON.stringify(report) + '\n' : reportText(report).join('\n') + '\n');
    return imp.diagnostics.some((d) => d.severity !== 'info') ? 1 : 0;
  },
};

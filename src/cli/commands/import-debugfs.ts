import { describeImport, reportText } from '../../readers/debugfs-report';
import { importDebugfsInputs } from '../debugfs-files';
import { choice, Exit, type Subcommand } from '../framework';

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

Options:
  --format text|json  text (default) or one JSON object

Example:
  sudo cp -r /sys/kernel/debug/iommu/intel dump && iommu-lab import-debugfs dump`,
  failure: 'a problem with the input: it cannot be read, is not text, is empty, holds no VT-d table,\nor has lines that were not understood (reported as FILE:LINE: warning: ...)',
  options: { format: { type: 'string' } },
  minPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const imp = await importDebugfsInputs(args.positionals, state);
    const report = describeImport(imp);
    if (format === 'json') await io.out(JSON.stringify(report) + '\n');
    else await io.out(withoutBlankRuns(reportText(report)).join('\n') + '\n');
    return imp.diagnostics.some((d) => d.severity !== 'info') ? Exit.problem : Exit.ok;
  },
};

/** The report separates its sections with a blank line; a section that is empty leaves no blank line behind. */
function withoutBlankRuns(lines: readonly string[]): string[] {
  return lines.filter((l, i) => l !== '' || (i > 0 && lines[i - 1] !== '' && i < lines.length - 1));
}

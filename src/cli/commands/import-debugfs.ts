import { describeImport, reportText } from '../../readers/debugfs-report';
import { importDebugfsInputs } from '../debugfs-files';
import { choice, Exit, type Subcommand, UsageError } from '../framework';

export const importDebugfsCommand: Subcommand = {
  name: 'import-debugfs',
  summary: 'load an Intel VT-d debugfs dump into the model and print what it holds, decoded',
  synopsis: '[--dmesg FILE] [--format text|json] DIR|FILE...',
  help: `Reads /sys/kernel/debug/iommu/intel as copied off a machine (a directory), or its files
(iommu_regset, dmar_translation_struct, invalidation_queue, ir_translation_struct, the per-device
domain_translation_struct files), or any concatenation of them ('cat', 'head', 'grep -r .'), or '-'
for stdin. The tables are loaded into simulated memory at their real addresses; the output lists the
units and their capabilities, each device's context and PASID entries with their fields, the domains
those point to with their mappings, the invalidation queue and interrupt remapping entries.
Lines that are not understood are reported as FILE:LINE: warning: ...

debugfs does not print where the PASID directories are, so their PASID tables are placed at addresses
no entry of the dump uses (the report says so). With --dmesg, the kernel log of the same boot, the
'pasid dir entry' lines of CONFIG_DMAR_DEBUG's fault dumps put them at their real addresses.
A dump may lack files: what it does not hold (a unit's registers without iommu_regset, its root table
without dmar_translation_struct too) is listed as assumed or unknown, with why, never as a fact.

Options:
  --dmesg FILE        the kernel log of the same boot ('-' for stdin), for the PASID directories
  --format text|json  text (default) or one JSON object: {units, devices, domains, interrupts,
                      diagnostics, summary}, with every address and 64-bit value (raw entry words,
                      mapped bytes) a 0x hex string, as walk's and decode-log's JSON have them

Example:
  sudo cp -r /sys/kernel/debug/iommu/intel dump && iommu-lab import-debugfs dump`,
  failure: 'a problem with the input: it cannot be read, is not text, is empty or too large, holds no VT-d\ntable, or has lines that were not understood (reported as FILE:LINE: warning: ...)',
  options: { dmesg: { type: 'string' }, format: { type: 'string' } },
  minPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const dmesg = args.values.dmesg as string | undefined;
    if (dmesg === '-' && args.positionals.includes('-')) throw new UsageError('--dmesg - and a dump on stdin cannot both read it');
    const imp = await importDebugfsInputs(args.positionals, state, dmesg);
    const report = describeImport(imp);
    if (format === 'json') await io.out(JSON.stringify(report) + '\n');
    else await io.out(withoutBlankRuns(reportText(report, state.input!)).join('\n') + '\n');
    return imp.diagnostics.some((d) => d.severity !== 'info') ? Exit.problem : Exit.ok;
  },
};

/** The report separates its sections with a blank line; a section that is empty leaves no blank line behind. */
function withoutBlankRuns(lines: readonly string[]): string[] {
  return lines.filter((l, i) => l !== '' || (i > 0 && lines[i - 1] !== '' && i < lines.length - 1));
}

import { createLspciReader, describeLspciDevice, type LspciDevice } from '../../readers/lspci';
import { type Subcommand, choice } from '../framework';
import { batchedOutput, streamLines } from './decode-log';

export const lspciCommand: Subcommand = {
  name: 'lspci',
  summary: 'show the ATS, PRI and PASID capabilities of each device in `lspci -vvv` output',
  synopsis: '[--format text|json] [FILE|-]',
  help: `Reads \`lspci -vvv\` output (run lspci as root, or the extended capabilities are hidden) from FILE,
or from stdin when FILE is '-' or missing, and reports for each device its Address Translation Service
(ATS), Page Request Interface (PRI) and PASID capabilities: whether they are enabled, queue depth and
smallest translation unit, page request capacity and allocation, PASID width, execute and privileged
support, and remarks on states that break IOMMU features.

Text output lists the devices that have at least one of these capabilities; JSON output is one object
per device (every device, with null for a missing capability), then one {"summary": {...}} object.

Options:
  --format text|json  text (default) or JSON lines

Example:
  sudo lspci -vvv | iommu-lab lspci`,
  options: { format: { type: 'string' } },
  maxPositionals: 1,
  async run(args, io) {
    const format = choice('lspci', 'format', args.values.format, ['text', 'json'] as const, 'text');
    const reader = createLspciReader();
    const out = batchedOutput(io);
    const write = (devices: LspciDevice[]) => {
      for (const d of devices) {
        if (format === 'json') out.add(JSON.stringify(d) + '\n');
        else if (d.ats || d.pri || d.pasid || d.accessDenied) out.add(describeLspciDevice(d).join('\n') + '\n\n');
      }
    };
    const total = await streamLines(args.positionals[0], (text, lineNo) => write(reader.push(text, lineNo)), {
      onChunk: () => out.flush(),
      command: 'lspci',
    });
    write(reader.end(total));
    const s = reader.summary();
    out.add(
      format === 'json'
        ? JSON.stringify({ summary: s }) + '\n'
        : `${s.devices} devices: ${s.withAts} with ATS, ${s.withPri} with PRI, ${s.withPasid} with PASID` +
            (s.accessDenied > 0 ? `; ${s.accessDenied} whose extended capabilities were not readable (run lspci as root)` : '') +
            '.\n',
    );
    out.flush();
    return 0;
  },
};

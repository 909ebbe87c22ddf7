import { createLspciReader, describeLspciDevice, isListed, type LspciDevice, type LspciSummary } from '../../readers/lspci';
import { choice, Exit, plural, problemLine, type Subcommand } from '../framework';
import { requireStdinNotTerminal, STDIN } from '../input';
import { batchedOutput, streamLines } from '../line-stream';

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
The summary counts every device: those listed and those with none of the three (withNone).
With no FILE and a terminal on stdin, it says so (status 2) rather than wait for input.

Options:
  --format text|json  text (default) or JSON lines

Example:
  sudo lspci -vvv | iommu-lab lspci`,
  failure: "a problem with the input: FILE cannot be read, is not text, is empty, or is not 'lspci -vvv' output\n" +
    '(no device, or no Capabilities lines); a line on stderr says which',
  options: { format: { type: 'string' } },
  maxPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const file = args.positionals[0];
    if (file === undefined) requireStdinNotTerminal("'lspci -vvv' output");
    const name = file === undefined || file === '-' ? STDIN : file;
    state.input = name;
    const reader = createLspciReader();
    const out = batchedOutput(io);
    const write = (devices: LspciDevice[]) => {
      for (const d of devices) {
        if (format === 'json') out.add(JSON.stringify(d) + '\n');
        else if (isListed(d)) out.add(describeLspciDevice(d).join('\n') + '\n\n');
      }
    };
    const { lines, bytes } = await streamLines(
      file,
      (text, lineNo) => {
        state.line = lineNo;
        write(reader.push(text, lineNo));
      },
      { onChunk: () => out.flush() },
    );
    state.line = undefined;
    write(reader.end(lines));
    const s = reader.summary();
    out.add(format === 'json' ? JSON.stringify({ summary: s }) + '\n' : summaryText(s) + '\n');
    await out.flush();
    if (bytes === 0) {
      io.err(problemLine('lspci', name, 'empty (0 bytes)'));
      return Exit.problem;
    }
    if (s.devices === 0) {
      io.err(problemLine('lspci', name, `no PCI devices found in ${plural(lines, 'line')} (expected the output of 'lspci -vvv')`));
      return Exit.problem;
    }
    if (s.withCapabilityList === 0) {
      io.err(problemLine('lspci', name, `${plural(s.devices, 'device')} but no 'Capabilities:' line: this is plain 'lspci' output; run 'sudo lspci -vvv'`));
      return Exit.problem;
    }
    return Exit.ok;
  },
};

/** The last line of the text output; its counts add up to the devices listed above it and those left out. */
export function summaryText(s: LspciSummary): string {
  return (
    `${plural(s.devices, 'device')}: ${s.withAts} with ATS, ${s.withPri} with PRI, ${s.withPasid} with PASID` +
    (s.accessDenied > 0 ? `; ${s.accessDenied} whose extended capabilities were not readable (run lspci as root)` : '') +
    (s.withNone > 0 ? `; ${s.withNone} with none of these (not listed)` : '') +
    '.'
  );
}

import { createLogDecoder, type LogDecoder } from '../../readers/log-decoder';
import type { LogEvent } from '../../readers/log-event';
import { describeSummary, explainEvent } from '../../readers/log-explain';
import { ALL_MARKERS, SEARCH_KEYS, markersFor } from '../../readers/log-markers';
import { mayEndInSoftBreak } from '../../readers/log-prefix';
import { choice, Exit, plural, problemLine, type Subcommand } from '../framework';
import { requireStdinNotTerminal, STDIN } from '../input';
import { batchedOutput, streamLines } from '../line-stream';

/** How much of the start chooses the decoder's markers: as much as decodeLogText looks at. */
const HEAD_CHARS = 65536;
/**
 * What lines are skipped by: the search key of every marker of every format, each once; and `=` before a
 * line end or a CR, which finds the lines that end in a quoted-printable soft break (mayEndInSoftBreak):
 * in a mailed log a soft break may cut a marker in two (`DM=`, then `AR: ...`), so the line before it is
 * read too, and the decoder joins it with the next. They are searched for in every input, not only in one
 * whose start has a soft break: a mail may be pasted after 64 KiB of plain log. (A soft break followed by
 * blanks, which a transport may add, is not found by them; quoted-printable encoders write none.)
 */
const NEEDLES: readonly string[] = [...new Set(ALL_MARKERS.map((m) => SEARCH_KEYS[m] ?? m)), '=\n', '=\r'];

export const decodeLogCommand: Subcommand = {
  name: 'decode-log',
  summary: 'explain the IOMMU faults and events in kernel logs, Xen consoles, QEMU traces and ftrace output',
  synopsis: '[--format text|json] [FILE|-]',
  help: `Reads a log (dmesg, journalctl, serial console, a mailed excerpt, QEMU -trace 'vtd_*' output,
trace-cmd/ftrace text) from FILE, or from stdin when FILE is '-' or missing, and decodes Intel VT-d,
AMD-Vi and Arm SMMUv3 messages of every kernel era: DMA and interrupt-remapping faults, table walk
dumps, invalidation queue errors, page requests, capability lines, and trace events.

Text output explains each event in plain words (what the device tried, why it failed, what to check)
and ends with a summary that counts the lines it did not recognise.
JSON output is one object per line per event, with at least: line, vendor, kind, format, device
(SSSS:BB:DD.F), pasid, address, access, reason {code, text}; then one {"summary": {...}} object.
The formats and kinds are listed in docs/log-formats.md. Line numbers count LF line ends, as
'grep -n' and 'less -N' do; a lone CR breaks a line into parts that keep its number.
With no FILE and a terminal on stdin, it says so (status 2) rather than wait for input.

Options:
  --format text|json  text (default) or JSON lines

Examples:
  dmesg | iommu-lab decode-log
  iommu-lab decode-log --format json /var/log/kern.log > events.jsonl`,
  failure:
    'a problem with the input: FILE cannot be read, is not text, is empty, or holds no IOMMU line at all;\n' +
    'a line on stderr says which (the summary is still printed when the input was read)',
  options: { format: { type: 'string' } },
  maxPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    const file = args.positionals[0];
    if (file === undefined) requireStdinNotTerminal('a log');
    const name = file === undefined || file === '-' ? STDIN : file;
    state.input = name;
    // The decoder keeps waiting for a wrapped tail only on lines with the markers of the input's start, as
    // decodeLogText does; lines are skipped by the markers of every format, so that a later part in another
    // format (`cat kern.log qemu.trace`) is read too.
    let decoder: LogDecoder | undefined;
    const start = (head: string) => {
      decoder = createLogDecoder({ markers: markersFor(head.slice(0, HEAD_CHARS)) });
      return NEEDLES;
    };
    const out = batchedOutput(io);
    const write =
      format === 'json'
        ? (events: readonly LogEvent[]) => {
            for (const e of events) out.add(JSON.stringify(e) + '\n');
          }
        : (events: readonly LogEvent[]) => {
            for (const e of events) out.add(explainEvent(e).join('\n') + '\n\n');
          };
    const { lines, bytes } = await streamLines(
      file,
      (text, lineNo) => {
        state.line = lineNo;
        write(decoder!.push(text, lineNo));
      },
      {
        onStart: start,
        crBreaks: true,
        // A piece cut at a CR has lost the CR that `=\r` found.
        wantsPiece: mayEndInSoftBreak,
        wantsAll: () => decoder!.wantsNextLine,
        onChunk: () => out.flush(),
      },
    );
    state.line = undefined;
    if (!decoder) start('');
    const d = decoder!;
    write(d.end(lines));
    const summary = d.summary();
    out.add(format === 'json' ? JSON.stringify({ summary }) + '\n' : describeSummary(summary).join('\n') + '\n');
    await out.flush();
    if (summary.internalErrors > 0) {
      io.err(problemLine('decode-log', name, `${plural(summary.internalErrors, 'line')} hit an internal error in the decoder (a bug: please report it with the input)`));
      return Exit.internal;
    }
    if (bytes === 0) {
      io.err(problemLine('decode-log', name, 'empty (0 bytes)'));
      return Exit.problem;
    }
    if (summary.recognisedLines + summary.unrecognisedIommuLines === 0) {
      io.err(problemLine('decode-log', name, `no IOMMU lines found in ${plural(lines, 'line')}`));
      return Exit.problem;
    }
    return Exit.ok;
  },
};

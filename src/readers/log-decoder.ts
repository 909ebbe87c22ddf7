import { createAmdReader } from './amd-log';
import { createKernelTraceReader } from './kernel-trace';
import type { LogEvent, LogSummary } from './log-event';
import { namesIommu } from './log-markers';
import { stripPrefixes, type StrippedLine } from './log-prefix';
import type { Continuation, LineInfo, LineReader, ReadResult } from './log-reader';
import { createQemuTraceReader } from './qemu-trace';
import { createRatelimitReader } from './ratelimit-log';
import { createSmmuReader } from './smmu-log';
import { createVtdReader } from './vtd-log';

/**
 * Turns lines of kernel logs, Xen consoles, QEMU traces and ftrace output into `LogEvent`s, one line at a
 * time, in constant memory. Multi-line events (old two-line VT-d faults, walk dumps, AMD DTE dumps, SMMU
 * event records, invalidation-queue error bursts) stay open until a line that does not belong to them;
 * a line that starts an event but is cut short (mail wrapping, quoted-printable) is joined with the next
 * ones. Every line is counted: events, context, or unrecognised.
 */
export interface LogDecoder {
  /** Feeds line `lineNo` (1-based, without its newline); returns the events this line completed. */
  push(line: string, lineNo: number): readonly LogEvent[];
  /**
   * True while a multi-line event is open: the caller must feed the next line even if it has no marker
   * (see log-markers.ts). When false, the caller may skip marker-less lines.
   */
  readonly wantsNextLine: boolean;
  /** Closes what is still open; `totalLines` counts lines the caller skipped at the end. */
  end(totalLines?: number): readonly LogEvent[];
  summary(): LogSummary;
}

/** How many further lines a cut-short event may be joined with. */
const MAX_JOINS = 3;
const MAX_SAMPLES = 5;
const SAMPLE_LENGTH = 200;
const NONE: readonly LogEvent[] = Object.freeze([]);

interface Open {
  events: LogEvent[];
  more: Continuation;
}

interface Pending {
  text: string;
  line: number;
  timestamp: string | null;
  joins: number;
  raws: string[];
}

/** Joins a cut-short line with its continuation: quoted-printable soft breaks (`=` at the end) join without a space. */
function join(text: string, next: StrippedLine): string {
  if (text.endsWith('=')) return text.slice(0, -1) + (next.leadingSpace ? ' ' : '') + next.msg;
  return `${text.trimEnd()} ${next.msg.trimStart()}`;
}

export function createLogDecoder(): LogDecoder {
  const s: LogSummary = {
    lines: 0,
    events: 0,
    recognisedLines: 0,
    unrecognisedLines: 0,
    unrecognisedIommuLines: 0,
    unrecognisedSamples: [],
    informationalLines: 0,
    suppressedMessages: 0,
    internalErrors: 0,
    byKind: {},
    byVendor: {},
    byFormat: {},
  };
  const readers: LineReader[] = [
    createVtdReader(),
    createAmdReader(),
    createSmmuReader(),
    createQemuTraceReader(),
    createKernelTraceReader(),
    createRatelimitReader((n) => (s.suppressedMessages += n)),
  ];
  let open: Open | null = null;
  let pending: Pending | null = null;
  let lastLine = 0;

  function readAll(msg: string, info: LineInfo): ReadResult {
    for (let i = 0; i < readers.length; i++) {
      const r = readers[i]!.read(msg, info);
      if (r !== null) return r;
    }
    return null;
  }

  function emit(e: LogEvent, out: LogEvent[]): void {
    s.events++;
    s.byKind[e.kind] = (s.byKind[e.kind] ?? 0) + 1;
    const vendor = e.vendor ?? 'none';
    s.byVendor[vendor] = (s.byVendor[vendor] ?? 0) + 1;
    s.byFormat[e.format] = (s.byFormat[e.format] ?? 0) + 1;
    out.push(e);
  }

  function unrecognised(raw: string, lineNo: number): void {
    if (!namesIommu(raw)) return;
    s.unrecognisedIommuLines++;
    if (s.unrecognisedSamples.length < MAX_SAMPLES) s.unrecognisedSamples.push({ line: lineNo, text: raw.slice(0, SAMPLE_LENGTH) });
  }

  function closeOpen(out: LogEvent[]): void {
    if (!open) return;
    for (const e of open.events) emit(e, out);
    open = null;
  }

  function dropPending(): void {
    if (!pending) return;
    pending.raws.forEach((raw, i) => unrecognised(raw, pending!.line + i));
    pending = null;
  }

  /** Takes the result of reading a line (or joined lines) that ends at `lineNo`. */
  function accept(r: ReadResult, lineNo: number, out: LogEvent[]): void {
    if (r === 'context') {
      s.informationalLines++;
      return;
    }
    if (r === null || r === 'partial') return;
    for (const e of r.events) e.endLine = lineNo;
    if (r.more && !r.more.done) open = { events: r.events, more: r.more };
    else for (const e of r.events) emit(e, out);
  }

  function handle(raw: string, lineNo: number, out: LogEvent[]): void {
    const line = stripPrefixes(raw);
    const info: LineInfo = { lineNo, timestamp: line.timestamp };
    if (open) {
      if (open.more.absorb(line.msg, info)) {
        s.recognisedLines++;
        for (const e of open.events) e.endLine = lineNo;
        if (open.more.done) closeOpen(out);
        return;
      }
      closeOpen(out);
    }
    if (pending) {
      const p: Pending = pending;
      const joined = join(p.text, line);
      const r = readAll(joined, { lineNo: p.line, timestamp: p.timestamp });
      if (r !== null && r !== 'partial') {
        s.recognisedLines += p.raws.length + 1;
        pending = null;
        accept(r, lineNo, out);
        return;
      }
      const alone = readAll(line.msg, info);
      // A line with its own timestamp is a new message: it may end a two-line record, not extend a cut one.
      if (alone === null && r === 'partial' && p.joins < MAX_JOINS && !line.stamped) {
        p.text = joined;
        p.joins++;
        p.raws.push(raw);
        return;
      }
      dropPending();
      start(alone, raw, line, lineNo, out);
      return;
    }
    start(readAll(line.msg, info), raw, line, lineNo, out);
  }

  function start(r: ReadResult, raw: string, line: StrippedLine, lineNo: number, out: LogEvent[]): void {
    if (r === null) {
      unrecognised(raw, lineNo);
      return;
    }
    if (r === 'partial') {
      pending = { text: line.msg, line: lineNo, timestamp: line.timestamp, joins: 0, raws: [raw] };
      return;
    }
    s.recognisedLines++;
    accept(r, lineNo, out);
  }

  return {
    push(line: string, lineNo: number): readonly LogEvent[] {
      const out: LogEvent[] = [];
      // Lines the caller skipped had no marker, so they end whatever was open.
      if (lineNo !== lastLine + 1 && (open || pending)) {
        closeOpen(out);
        dropPending();
      }
      if (lineNo > lastLine) lastLine = lineNo;
      try {
        handle(line, lineNo, out);
      } catch {
        // A bug in a reader must not stop a stream; the summary reports it and tests require zero.
        s.internalErrors++;
        open = null;
        pending = null;
      }
      return out.length === 0 ? NONE : out;
    },
    get wantsNextLine(): boolean {
      return open !== null || pending !== null;
    },
    end(totalLines?: number): readonly LogEvent[] {
      const out: LogEvent[] = [];
      closeOpen(out);
      dropPending();
      if (totalLines !== undefined && totalLines > lastLine) lastLine = totalLines;
      return out.length === 0 ? NONE : out;
    },
    summary(): LogSummary {
      s.lines = lastLine;
      s.unrecognisedLines = Math.max(0, lastLine - s.recognisedLines);
      return { ...s, unrecognisedSamples: [...s.unrecognisedSamples], byKind: { ...s.byKind }, byVendor: { ...s.byVendor }, byFormat: { ...s.byFormat } };
    },
  };
}

/** Decodes a whole text at once (editor buffers, tests). */
export function decodeLogText(text: string): { events: LogEvent[]; summary: LogSummary } {
  const d = createLogDecoder();
  const all: LogEvent[] = [];
  // Lines end at LF, with or without CR, as the CLI reads them.
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((l, i) => all.push(...d.push(l, i + 1)));
  all.push(...d.end());
  return { events: all, summary: d.summary() };
}

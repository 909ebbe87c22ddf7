import { createAmdReader } from './amd-log';
import { createKernelTraceReader } from './kernel-trace';
import type { LogEvent, LogSummary } from './log-event';
import { LOG_MARKERS, hasMarker, markersFor, namesIommu } from './log-markers';
import { crParts, MAX_LINE, MAX_PARTS, splitLine, stripPrefixes, type StrippedLine } from './log-prefix';
import { type Continuation, type LineInfo, type LineReader, MAX_JOINED, type ReadEvents, type ReadResult } from './log-reader';
import { createQemuTraceReader } from './qemu-trace';
import { createRatelimitReader } from './ratelimit-log';
import { createSmmuReader } from './smmu-log';
import { createVtdReader } from './vtd-log';
import { createXenAmdReader } from './xen-amd-log';

/**
 * Turns lines of kernel logs, Xen consoles, QEMU traces and ftrace output into `LogEvent`s, one line at a
 * time, in constant memory. Multi-line events (old two-line VT-d faults, walk dumps, AMD DTE dumps, SMMU
 * event records, invalidation-queue error bursts) stay open until a line that does not belong to them.
 * Lines as people paste them are put back together first:
 * - a carriage return inside a line is a line break (serial and IPMI consoles); the parts keep the
 *   line's number;
 * - a quoted-printable soft break (`=` at the end) joins the next line without a space, before anything
 *   is read;
 * - a line that starts an event but is cut short (a reader says 'partial'; or an unrecognised line with
 *   a marker), a line that an open event declines but that means nothing on its own, and a line read as
 *   complete, are tried again joined with the next line (mail clients and bug trackers wrap at 72-80
 *   columns); a complete reading is replaced only by one that says more. Only a line that means nothing
 *   on its own is joined; a wrapped tail never carries a header (timestamp, syslog, Xen tag), while the
 *   second line of a two-line record may.
 * Every line is counted once: recognised (events or context) or not.
 */
export interface LogDecoder {
  /**
   * Feeds line `lineNo` (1-based, without its newline); returns the events this line completed. A line
   * may come in pieces cut at carriage returns (a caller that reads through a fixed buffer cuts a line
   * longer than it there): each piece with the line's number, read as the next parts of the same line.
   */
  push(line: string, lineNo: number): readonly LogEvent[];
  /**
   * True while a multi-line event is open or a line waits for its continuation: the caller must feed
   * the next line even if it has no marker (see log-markers.ts). When false, the caller may skip
   * marker-less lines.
   */
  readonly wantsNextLine: boolean;
  /** Closes what is still open; `totalLines` counts lines the caller skipped at the end. */
  end(totalLines?: number): readonly LogEvent[];
  summary(): LogSummary;
}

export interface LogDecoderOptions {
  /**
   * The markers the caller skips lines by (`markersFor` of the input's start); LOG_MARKERS, which every
   * marker set holds, by default. Only a line with one of them is kept waiting for a wrapped tail, so
   * that skipping the others changes nothing.
   */
  readonly markers?: readonly string[];
  /** Sees every text handed to the readers, in order (tests bound the decoder's work with it). */
  readonly onRead?: (text: string) => void;
}

/** How many further lines a cut-short event may be joined with. */
export const MAX_JOINS = 3;
/**
 * Longest text handed to a reader: what is joined stays within MAX_JOINED, and the line that completes
 * it adds at most MAX_LINE (and a space). With at most MAX_PARTS parts per line and a fixed number of
 * reads per part, the decoder's work is linear in its input.
 */
export const MAX_READ = MAX_JOINED + 1 + MAX_LINE;
/** Reads of one part of a line at most: alone, joined with what waits, and with a declined line. */
export const MAX_READS_PER_PART = 3;
const MAX_SAMPLES = 5;
const SAMPLE_LENGTH = 200;
const NONE: readonly LogEvent[] = Object.freeze([]);

interface Part {
  readonly raw: string;
  readonly lineNo: number;
}

/** One message as far as it is put back together: a line, a part of one, or soft-broken lines joined. */
interface Logical {
  line: StrippedLine;
  readonly first: number;
  last: number;
  readonly parts: Part[];
}

interface Open {
  events: LogEvent[];
  more: Continuation;
}

interface Pending {
  text: string;
  first: number;
  timestamp: string | null;
  joins: number;
  parts: Part[];
  /** No reader said 'partial': the line has a marker and may be the head of a wrapped message. */
  speculative: boolean;
  /**
   * How many lines with a header of their own were joined: the second record of a two-line message
   * (which may itself be wrapped, but is followed by no third record).
   */
  records: number;
}

interface Tentative {
  r: ReadEvents | 'context';
  /** What it was read from, to be joined with a tail. */
  text: string;
  info: LineInfo;
  joins: number;
}

/** How much an event says: its known common fields, then the length of its reason's name, then its details. */
function weight(e: LogEvent): [number, number, number] {
  const known = [e.device, e.pasid, e.address, e.access, e.reason, e.iommu].filter((x) => x !== null).length;
  return [known, e.reason?.text.length ?? 0, Object.keys(e.details).length];
}

/**
 * Whether `r`, read from a line joined with the line after it, says more than `old`, read from the line
 * alone: the same events, each with at least as much known and one with more.
 */
function richer(r: ReadEvents | 'context', old: ReadEvents | 'context'): boolean {
  if (r === 'context') return false;
  if (old === 'context') return true;
  if (r.events.length !== old.events.length) return false;
  let more = false;
  for (let i = 0; i < r.events.length; i++) {
    const a = r.events[i]!;
    const b = old.events[i]!;
    if (a.kind !== b.kind || a.format !== b.format || a.vendor !== b.vendor) return false;
    const [wa, wb] = [weight(a), weight(b)];
    const cmp = wa[0] - wb[0] || wa[1] - wb[1] || wa[2] - wb[2];
    if (cmp < 0) return false;
    if (cmp > 0) more = true;
  }
  return more;
}

/** Joins a cut-short line with its continuation, as the line was before it was wrapped: with one space. */
function join(text: string, next: StrippedLine): string {
  return `${text.trimEnd()} ${next.msg.trimStart()}`;
}


export function createLogDecoder(options: LogDecoderOptions = {}): LogDecoder {
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
    createXenAmdReader(),
    createSmmuReader(),
    createQemuTraceReader(),
    createKernelTraceReader(),
    createRatelimitReader((n) => (s.suppressedMessages += n)),
  ];
  const onRead = options.onRead;
  const markers = options.markers ?? LOG_MARKERS;
  const marked = (parts: readonly Part[]): boolean => parts.some((p) => hasMarker(p.raw, markers));
  /** A multi-line event, offered each next line. */
  let open: Open | null = null;
  /** A line (or lines) that starts an event but was cut short, or may have been: waits for its tail. */
  let pending: Pending | null = null;
  /**
   * A line the open event declined that means nothing alone: perhaps the head of a wrapped line of the
   * event (its `msg` grows as tail lines are joined to it, `joins` of them).
   */
  let held: (Logical & { joins: number }) | null = null;
  /**
   * A complete one-line result (events without a continuation, or context) not yet emitted: the line may
   * have been wrapped after something that reads as complete (`Illegal` of `Illegal command`, a QEMU error
   * without its arguments), and its tail would tell more.
   */
  let tentative: Tentative | null = null;
  /** A line that ended in a quoted-printable soft break, waiting for the rest. */
  let soft: Logical | null = null;
  let lastLine = 0;
  let lastRecognised = 0;
  let lastUnrecognisedIommu = 0;

  function readAll(msg: string, info: LineInfo): ReadResult {
    onRead?.(msg);
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

  /** Counts the lines of `parts` as recognised; a line is counted once however many parts it has. */
  function recognise(parts: readonly Part[]): void {
    for (const p of parts) {
      if (p.lineNo <= lastRecognised) continue;
      s.recognisedLines++;
      lastRecognised = p.lineNo;
      if (p.lineNo === lastUnrecognisedIommu) {
        // An earlier part of this line was not understood, a later one was: the line is recognised.
        s.unrecognisedIommuLines--;
        lastUnrecognisedIommu = 0;
        const i = s.unrecognisedSamples.findIndex((x) => x.line === p.lineNo);
        if (i !== -1) s.unrecognisedSamples.splice(i, 1);
      }
    }
  }

  function unrecognised(parts: readonly Part[]): void {
    for (const p of parts) {
      if (p.lineNo <= lastRecognised || p.lineNo === lastUnrecognisedIommu || !namesIommu(p.raw)) continue;
      lastUnrecognisedIommu = p.lineNo;
      s.unrecognisedIommuLines++;
      if (s.unrecognisedSamples.length < MAX_SAMPLES) s.unrecognisedSamples.push({ line: p.lineNo, text: p.raw.slice(0, SAMPLE_LENGTH) });
    }
  }

  function closeOpen(out: LogEvent[]): void {
    if (!open) return;
    for (const e of open.events) emit(e, out);
    open = null;
  }

  function dropPending(): void {
    if (!pending) return;
    unrecognised(pending.parts);
    pending = null;
  }

  /** Emits the tentative result as it is. */
  function settle(out: LogEvent[]): void {
    if (!tentative) return;
    const t = tentative;
    tentative = null;
    if (t.r === 'context') s.informationalLines++;
    else for (const e of t.r.events) emit(e, out);
  }

  /**
   * Takes the events (or context) read from `text`, the message of lines `parts`: opens a multi-line
   * event, or keeps a one-line result tentative (it may have more in a wrapped tail).
   */
  function accept(r: ReadEvents | 'context', text: string, info: LineInfo, parts: readonly Part[], joins: number, out: LogEvent[]): void {
    recognise(parts);
    const last = parts[parts.length - 1]!.lineNo;
    if (r !== 'context') {
      for (const e of r.events) e.endLine = last;
      if (r.more && !r.more.done) {
        open = { events: r.events, more: r.more };
        return;
      }
    }
    if (joins < MAX_JOINS && text.length <= MAX_JOINED) tentative = { r, text, info, joins };
    else if (r === 'context') s.informationalLines++;
    else for (const e of r.events) emit(e, out);
  }

  /** Offers `msg` to the open event; on success the lines of `parts` belong to it. */
  function absorb(msg: string, info: LineInfo, parts: readonly Part[], out: LogEvent[]): boolean {
    onRead?.(msg);
    if (!open!.more.absorb(msg, info)) return false;
    recognise(parts);
    const last = parts[parts.length - 1]!.lineNo;
    for (const e of open!.events) e.endLine = last;
    if (open!.more.done) closeOpen(out);
    return true;
  }

  /** A line read on its own (`r` is what the readers made of it), with nothing waiting before it. */
  function start(r: ReadResult, l: Logical, out: LogEvent[]): void {
    const msg = l.line.msg;
    if (r === null || r === 'partial') {
      // A line a caller may skip (no marker) is never kept waiting: skipping it must change nothing.
      if (marked(l.parts) && msg.length <= MAX_JOINED) {
        pending = { text: msg, first: l.first, timestamp: l.line.timestamp, joins: 0, parts: [...l.parts], speculative: r === null, records: 0 };
      } else unrecognised(l.parts);
      return;
    }
    accept(r, msg, { lineNo: l.first, timestamp: l.line.timestamp }, l.parts, 0, out);
  }

  function handle(l: Logical, out: LogEvent[]): void {
    const line = l.line;
    const info: LineInfo = { lineNo: l.first, timestamp: line.timestamp };
    // What the readers make of this line alone, read at most once (a read may use up reader state).
    let aloneRead: ReadResult | undefined;
    const readAlone = (): ReadResult => (aloneRead === undefined ? (aloneRead = readAll(line.msg, info)) : aloneRead);
    if (tentative) {
      const t = tentative;
      // A wrapped tail has no header and means nothing alone; it is kept only if it tells more.
      if (!line.stamped && readAlone() === null) {
        const joined = join(t.text, line);
        const r = readAll(joined, t.info);
        if (r !== null && r !== 'partial' && richer(r, t.r)) {
          tentative = null;
          accept(r, joined, t.info, l.parts, t.joins + 1, out);
          return;
        }
      }
      settle(out);
    }
    if (held) {
      const h = held;
      held = null;
      // The declined line and this one may be one line, wrapped (a wrapped tail has no header): of the open
      // event, or a message of its own.
      if (!line.stamped && readAlone() === null) {
        const joined = join(h.line.msg, line);
        const joinedInfo: LineInfo = { lineNo: h.first, timestamp: h.line.timestamp };
        const parts = [...h.parts, ...l.parts];
        if (absorb(joined, joinedInfo, parts, out)) return;
        const fresh = readAll(joined, joinedInfo);
        if (fresh !== null) {
          closeOpen(out);
          if (fresh !== 'partial') accept(fresh, joined, joinedInfo, parts, h.joins + 1, out);
          else if (joined.length <= MAX_JOINED) pending = { text: joined, first: h.first, timestamp: h.line.timestamp, joins: h.joins + 1, parts, speculative: false, records: 0 };
          else unrecognised(parts);
          return;
        }
        if (h.joins < MAX_JOINS && joined.length <= MAX_JOINED) {
          held = { line: { ...h.line, msg: joined }, first: h.first, last: l.last, parts, joins: h.joins + 1 };
          return;
        }
      }
      // What was held is not part of anything: it was tried with the line after it (or that line has a header).
      closeOpen(out);
      unrecognised(h.parts);
    }
    if (open) {
      if (absorb(line.msg, info, l.parts, out)) return;
      // The head of a wrapped line carries the header (or no header at all) and, past the header, a marker.
      if ((!line.stamped || marked(l.parts)) && line.msg.trim() !== '' && readAlone() === null && line.msg.length <= MAX_JOINED) {
        held = { ...l, joins: 0 };
        return;
      }
      closeOpen(out);
      start(readAlone(), l, out);
      return;
    }
    if (pending) {
      const p: Pending = pending;
      const alone = readAlone();
      // A wrap that fell right after a tag (`DMAR:`, `<driver> <device>: AMD-Vi:`) leaves a tail that reads on its own.
      const afterTag = !line.stamped && p.text.trimEnd().endsWith(':');
      const joinable = (alone === null || afterTag) && !(p.speculative && line.stamped);
      if (joinable) {
        const joined = join(p.text, line);
        const pinfo: LineInfo = { lineNo: p.first, timestamp: p.timestamp };
        const r = readAll(joined, pinfo);
        if (r !== null && r !== 'partial') {
          pending = null;
          accept(r, joined, pinfo, [...p.parts, ...l.parts], p.joins + 1, out);
          return;
        }
        // Still cut short, or (for a line no reader knew) perhaps still: a line may wrap more than once.
        const more = r === 'partial' || (r === null && p.speculative);
        if (more && alone === null && p.joins < MAX_JOINS && (!line.stamped || p.records === 0) && joined.length <= MAX_JOINED) {
          p.text = joined;
          p.joins++;
          if (line.stamped) p.records++;
          if (r === 'partial') p.speculative = false;
          p.parts.push(...l.parts);
          return;
        }
      }
      dropPending();
      start(alone, l, out);
      return;
    }
    start(readAlone(), l, out);
  }

  /** One part of a line: soft-broken lines are put together before they are read. */
  function feed(raw: string, lineNo: number, out: LogEvent[]): void {
    const line = stripPrefixes(raw);
    const part: Part = { raw, lineNo };
    if (soft) {
      const w: Logical = soft;
      soft = null;
      if (!line.stamped && w.line.msg.length + line.msg.length < MAX_JOINED) {
        const msg = w.line.msg + (line.leadingSpace ? ' ' : '') + line.msg;
        w.line = { ...w.line, msg, softBreak: line.softBreak };
        w.last = lineNo;
        w.parts.push(part);
        if (line.softBreak) soft = w;
        else handle(w, out);
        return;
      }
      // The soft break led nowhere (a new record follows): read what there is.
      handle(w, out);
    }
    const l: Logical = { line, first: lineNo, last: lineNo, parts: [part] };
    if (line.softBreak && line.msg.length < MAX_JOINED) soft = l;
    else handle(l, out);
  }

  /** Reads what waits for a line that will not come (the end, or lines the caller skipped). */
  function flush(out: LogEvent[]): void {
    if (soft) {
      const w: Logical = soft;
      soft = null;
      handle(w, out);
    }
    settle(out);
    if (held) {
      const h = held;
      held = null;
      closeOpen(out);
      unrecognised(h.parts);
    }
    closeOpen(out);
    dropPending();
  }

  function reset(): void {
    open = null;
    pending = null;
    held = null;
    tentative = null;
    soft = null;
  }

  return {
    push(line: string, lineNo: number): readonly LogEvent[] {
      const out: LogEvent[] = [];
      try {
        // Lines the caller skipped had no marker, so they end whatever was open; a piece of the last line
        // goes on with it.
        if (lineNo !== lastLine + 1 && lineNo !== lastLine) flush(out);
        if (lineNo > lastLine) lastLine = lineNo;
        const parts = splitLine(line);
        for (let i = 0; i < parts.length; i++) feed(parts[i]!, lineNo, out);
      } catch {
        // A bug in a reader must not stop a stream; the summary reports it and tests require zero.
        s.internalErrors++;
        reset();
      }
      return out.length === 0 ? NONE : out;
    },
    get wantsNextLine(): boolean {
      return open !== null || pending !== null || held !== null || tentative !== null || soft !== null;
    },
    end(totalLines?: number): readonly LogEvent[] {
      const out: LogEvent[] = [];
      try {
        flush(out);
      } catch {
        s.internalErrors++;
        reset();
      }
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
  const d = createLogDecoder({ markers: markersFor(text.slice(0, 65536)) });
  const all: LogEvent[] = [];
  // Lines end at LF, with or without CR, as the CLI reads them; a CR elsewhere is a break inside the line.
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((l, i) => {
    // A line of more lone-CR parts than one push reads (MAX_PARTS) goes in pieces with the same number,
    // as the CLI hands a CR-only file over.
    const parts = l.indexOf('\r') === -1 ? [] : crParts(l);
    if (parts.length <= MAX_PARTS) all.push(...d.push(l, i + 1));
    else for (let at = 0; at < parts.length; at += MAX_PARTS) all.push(...d.push(parts.slice(at, at + MAX_PARTS).join('\r'), i + 1));
  });
  all.push(...d.end());
  return { events: all, summary: d.summary() };
}

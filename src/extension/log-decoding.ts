import { createLogDecoder, type LogDecoder } from '../readers/log-decoder';
import type { LogEvent, LogSummary } from '../readers/log-event';
import { ALL_MARKERS, markersFor } from '../readers/log-markers';
import { mayEndInSoftBreak } from '../readers/log-prefix';

/**
 * Decodes a kernel log for the editor without blocking the extension host: lazily (only as far as someone
 * asked: a hover on line 40 reads 40 lines, "Explain Faults" reads them all), in slices of a few
 * milliseconds, and cancellably. Lines without an IOMMU marker are skipped unread, as the CLI does, with
 * the same result as decoding every line (decodeLogText): the decoder gets the markers of the text's
 * start, lines are skipped only when they hold no marker of any format (a kernel log followed by a QEMU
 * trace) and do not end in a quoted-printable soft break. Lines are the editor's: VS Code ends a line at
 * LF, CR LF and a lone CR; blank lines are not read. No `vscode` import: the line source and the cancellation token are plain
 * interfaces.
 */

/** Where lines come from: an open document, or the bytes of a file too large for the editor to share. */
export interface LineSource {
  /** The next line without its line break, or undefined at the end. */
  next(): string | undefined;
  /** How far the source has been read, from 0 to 1. */
  readonly progress: number;
  /** The start of the text (64 Ki characters), to choose the markers from (kernel log, QEMU trace, ftrace). */
  head(): string;
}

/** The part of vscode.CancellationToken this module uses. */
export interface Cancellation {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => unknown): { dispose(): unknown };
}

/** Lines longer than this are cut before decoding (no IOMMU message comes close), as the CLI does. */
export const MAX_LINE_LENGTH = 64 * 1024;
/** How long one slice of decoding may hold the extension host. */
const SLICE_MS = 8;
/** A multi-line event longer than this is indexed by its first lines only. */
const MAX_EVENT_LINES = 4096;

interface Waiter {
  readonly line: number;
  readonly resolve: (done: boolean) => void;
  readonly onProgress?: (fraction: number) => void;
  readonly release: () => void;
}

export class DecodedLog {
  /** The events decoded so far, in the order the decoder completed them. */
  readonly events: LogEvent[] = [];
  private readonly byLine = new Map<number, LogEvent[]>();
  private started: LogDecoder | undefined;
  private linesRead = 0;
  /** Lines handed to the decoder's numbering: every line but the blank ones. */
  private numbered = 0;
  /**
   * Where the decoder's numbering falls behind the editor's (blank lines are not numbered): from decoder
   * line gapAt[i] on, the editor's line is gapBy[i] further.
   */
  private readonly gapAt: number[] = [];
  private readonly gapBy: number[] = [];
  /** Blank lines are line-end artefacts (see doubleSpaced): not read, not numbered for the decoder. */
  private skipBlank = false;
  /** Every event that touches a line up to here is known. */
  private complete = 0;
  private finished: LogSummary | undefined;
  private waiters: Waiter[] = [];
  private scheduled = false;
  private disposed = false;
  /** Time spent decoding, in milliseconds (for the output and the measurements). */
  busyMs = 0;

  /** `onEvents` sees each batch of events as the decoder completes it, a few lines after their last line. */
  constructor(
    private readonly source: LineSource,
    private readonly onEvents?: (events: readonly LogEvent[]) => void,
  ) {}

  /** Lines read so far. */
  get lines(): number {
    return this.linesRead;
  }

  get done(): boolean {
    return this.finished !== undefined;
  }

  /** The decoder's counters; final once `done`. */
  summary(): LogSummary {
    return this.finished ?? this.editorSummary();
  }

  private editorSummary(): LogSummary {
    const s = this.decoder.summary();
    return { ...s, unrecognisedSamples: s.unrecognisedSamples.map((x) => ({ ...x, line: this.editorLine(x.line) })) };
  }

  /** The editor's number of the decoder's line `n`. */
  private editorLine(n: number): number {
    const at = this.gapAt;
    let lo = 0;
    let hi = at.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at[mid]! <= n) lo = mid + 1;
      else hi = mid;
    }
    return n + (lo === 0 ? 0 : this.gapBy[lo - 1]!);
  }

  /** Made when first needed: the source's head is read then. */
  private get decoder(): LogDecoder {
    if (!this.started) {
      const head = this.source.head();
      this.started = createLogDecoder({ markers: markersFor(head) });
      this.skipBlank = doubleSpaced(head);
    }
    return this.started;
  }

  /** The events that use `line` (1-based); complete once `through(line)` resolved true. */
  eventsAt(line: number): readonly LogEvent[] {
    return this.byLine.get(line) ?? [];
  }

  /**
   * Resolves true once every event that uses lines up to `line` (1-based; Infinity for the whole log) is
   * decoded, false if `token` was cancelled or the log was disposed first. Decoding runs while at least
   * one caller waits, and pauses (keeping its place) when none does.
   */
  through(line: number, token?: Cancellation, onProgress?: (fraction: number) => void): Promise<boolean> {
    if (line <= this.complete || this.done) return Promise.resolve(true);
    if (this.disposed || token?.isCancellationRequested) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let sub: { dispose(): unknown } | undefined;
      const waiter: Waiter = {
        line,
        onProgress,
        resolve: (done) => {
          sub?.dispose();
          resolve(done);
        },
        release: () => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          waiter.resolve(false);
        },
      };
      sub = token?.onCancellationRequested(() => waiter.release());
      this.waiters.push(waiter);
      this.schedule();
    });
  }

  /** Stops decoding for good (the document changed or closed); waiting callers get false. */
  dispose(): void {
    this.disposed = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve(false);
  }

  private schedule(): void {
    if (this.scheduled || this.disposed) return;
    this.scheduled = true;
    setImmediate(() => this.slice());
  }

  /** Whether a line may not be skipped when the decoder waits for nothing. */
  private wanted(line: string): boolean {
    for (let i = 0; i < ALL_MARKERS.length; i++) if (line.indexOf(ALL_MARKERS[i]!) !== -1) return true;
    // A quoted-printable soft break (a mailed log) may cut a marker in two: the decoder joins the lines.
    return mayEndInSoftBreak(line);
  }

  private add(events: readonly LogEvent[]): void {
    for (const e of events) {
      e.line = this.editorLine(e.line);
      e.endLine = this.editorLine(e.endLine);
    }
    this.onEvents?.(events);
    for (const e of events) {
      this.events.push(e);
      const last = Math.min(e.endLine, e.line + MAX_EVENT_LINES - 1);
      for (let l = e.line; l <= last; l++) {
        const at = this.byLine.get(l);
        if (at) at.push(e);
        else this.byLine.set(l, [e]);
      }
    }
  }

  /** One slice: decodes until the furthest waiter is served or the slice's time is up. */
  private slice(): void {
    this.scheduled = false;
    if (this.disposed || this.waiters.length === 0) return;
    const started = performance.now();
    const deadline = started + SLICE_MS;
    const target = Math.max(...this.waiters.map((w) => w.line));
    const d = this.decoder;
    let n = 0;
    try {
      while (this.complete < target) {
        let line = this.source.next();
        if (line === undefined) {
          this.add(d.end(this.linesRead));
          this.finished = this.editorSummary();
          this.complete = Infinity;
          break;
        }
        const editorLine = ++this.linesRead;
        if (line !== '' || !this.skipBlank) {
          const lineNo = ++this.numbered;
          if (editorLine - lineNo !== (this.gapBy.at(-1) ?? 0)) {
            this.gapAt.push(lineNo);
            this.gapBy.push(editorLine - lineNo);
          }
          if (d.wantsNextLine || this.wanted(line)) {
            if (line.length > MAX_LINE_LENGTH) line = line.slice(0, MAX_LINE_LENGTH);
            const events = d.push(line, lineNo);
            if (events.length > 0) this.add(events);
          }
        }
        if (!d.wantsNextLine) this.complete = editorLine;
        if ((++n & 511) === 0 && performance.now() > deadline) break;
      }
    } catch {
      // The decoder never throws; a source can (a document that changed under it): stop, answer nothing.
      this.dispose();
      return;
    }
    this.busyMs += performance.now() - started;
    const progress = this.done ? 1 : this.source.progress;
    const waiting: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.line <= this.complete) w.resolve(true);
      else {
        w.onProgress?.(progress);
        waiting.push(w);
      }
    }
    this.waiters = waiting;
    if (waiting.length > 0) this.schedule();
  }
}

/**
 * Whether a text is double-spaced: nearly every line followed by one blank line. That is how the editor
 * shows a serial capture's CR CR LF line ends (a lone CR, then CR LF); the CLI, and the decoder fed the
 * file, see no blank line there, and a blank line ends every multi-line event (a fault and its walk dump).
 * Elsewhere a blank line is read: in a paste it ends what was said before it.
 */
export function doubleSpaced(head: string): boolean {
  const lines = head.split(/\r\n|\r|\n/);
  let text = 0;
  let followed = 0;
  for (let i = 0; i + 2 < lines.length; i++) {
    if (lines[i] === '') continue;
    text++;
    if (lines[i + 1] === '' && lines[i + 2] !== '') followed++;
  }
  return text >= 2 && followed * 5 >= text * 4;
}

/** Up to this much of the start of a text chooses the markers (see log-markers.ts), as for decodeLogText. */
const HEAD_LENGTH = 64 * 1024;

/** Lines of an editor document (anything with lineCount and lineAt, such as vscode.TextDocument). */
export function documentLines(doc: { readonly lineCount: number; lineAt(line: number): { readonly text: string } }): LineSource {
  // A final empty line is the newline that ends the last line, as the CLI reads files.
  const count = doc.lineCount > 0 && doc.lineAt(doc.lineCount - 1).text === '' ? doc.lineCount - 1 : doc.lineCount;
  let i = 0;
  return {
    next: () => (i < count && i < doc.lineCount ? doc.lineAt(i++).text : undefined),
    get progress() {
      return count === 0 ? 1 : i / count;
    },
    head: () => {
      const parts: string[] = [];
      let length = 0;
      for (let l = 0; l < count && length < HEAD_LENGTH; l++) {
        const t = doc.lineAt(l).text;
        parts.push(t);
        length += t.length + 1;
      }
      return parts.join('\n').slice(0, HEAD_LENGTH);
    },
  };
}

/**
 * Lines of a file's bytes as the editor shows them (UTF-8; a line ends at LF, CR LF or a lone CR, as in
 * VS Code), decoded 256 KiB at a time (a few milliseconds, inside one slice). A line that grows past
 * MAX_LINE_LENGTH across chunks is cut and the rest of it dropped unread, so a file without line breaks
 * costs no more than one with them.
 */
export function byteLines(bytes: Uint8Array): LineSource {
  const CHUNK = 256 * 1024;
  const BREAK = /\r\n|\r|\n/;
  const utf8 = new TextDecoder('utf-8');
  let offset = 0;
  let lines: string[] = [];
  let index = 0;
  let carry = '';
  /** The carried line was cut: drop text up to its line break. */
  let overlong = false;
  let ended = false;

  const fill = (): boolean => {
    while (index >= lines.length) {
      if (ended) return false;
      if (offset >= bytes.length) {
        ended = true;
        lines = carry === '' ? [] : carry.split(BREAK);
        if (lines.at(-1) === '') lines.pop();
        index = 0;
        continue;
      }
      const end = Math.min(bytes.length, offset + CHUNK);
      let text = utf8.decode(bytes.subarray(offset, end), { stream: end < bytes.length });
      offset = end;
      if (overlong) {
        const br = text.search(/[\r\n]/);
        if (br === -1) continue;
        text = text.slice(br);
        overlong = false;
      }
      const all = carry + text;
      // A CR at the end of a chunk may be the first half of a CR LF: it waits for the next chunk.
      const held = all.endsWith('\r') ? 1 : 0;
      lines = (held ? all.slice(0, -1) : all).split(BREAK);
      carry = lines.pop()!;
      if (carry.length > MAX_LINE_LENGTH) {
        carry = carry.slice(0, MAX_LINE_LENGTH);
        overlong = !held;
      }
      if (held) carry += '\r';
      index = 0;
    }
    return true;
  };

  return {
    next: () => (fill() ? lines[index++]! : undefined),
    get progress() {
      return bytes.length === 0 ? 1 : offset / bytes.length;
    },
    head: () => new TextDecoder('utf-8').decode(bytes.subarray(0, HEAD_LENGTH)),
  };
}

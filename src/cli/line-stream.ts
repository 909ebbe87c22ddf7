import { closeSync } from 'node:fs';
import { crParts } from '../readers/log-prefix';
import { byteSearch } from './byte-search';
import type { CliIo } from './framework';
import { openInput, readInput, requireText, STDIN } from './input';

/**
 * Streams lines from a file or stdin through a fixed buffer; lines end at LF (with or without CR), and
 * are numbered as `grep -n` and `less -N` number them. With `needles`, only lines that contain one of
 * them and the lines asked for with `wantsAll()` are converted to strings and handed to `onLine`; the
 * others are only counted. That is what keeps a 1 GB log fast: the needles are found over raw bytes
 * (byte-search.ts). After each buffer it awaits `onChunk`, which is where the output is flushed
 * and a slow reader holds the input back. The start of the input must be text (else InputError).
 *
 * With `crBreaks` (the consumer reads a lone CR as a line break, as the log decoder does), a line with
 * CRs inside is handed over as its CR-separated pieces (crParts), each with the line's number, so that no
 * line is too long for the consumer; a piece is handed over if it holds a needle or `wantsPiece` says so
 * (a needle found in the raw bytes may end with the CR that the piece lost); and a line longer than the
 * buffer is cut at its last CR rather than lost (old Mac files and some serial captures end every line
 * with a lone CR). Without it, and for a piece
 * longer than the buffer, the first 64 KiB is handed over and the rest dropped (no IOMMU message comes
 * close to that length).
 */
export async function streamLines(
  source: string | undefined,
  onLine: (text: string, lineNo: number) => void,
  opts: {
    /**
     * Sees the start of the input (what the first read returned, up to 64 KiB) before any line, and
     * returns the needles: substrings (latin1) a line must hold to be handed over. Without needles every
     * line is.
     */
    onStart?: (start: string) => readonly string[] | undefined;
    crBreaks?: boolean;
    wantsPiece?: (piece: string) => boolean;
    wantsAll?: () => boolean;
    onChunk?: () => void | Promise<void>;
    /**
     * The most bytes to read: past it, reading stops with `tooLarge()` thrown (for a consumer that keeps
     * what it reads; a decoder that forgets its lines reads an endless input as long as it flows).
     */
    limit?: { readonly bytes: number; tooLarge(): Error };
  },
): Promise<{ lines: number; bytes: number }> {
  // Small enough to stay in the CPU cache while it is searched once per needle, so memory stays constant.
  const size = 64 * 1024;
  const search = byteSearch(size);
  const { buf } = search;
  let needleText: readonly string[] = [];
  let filtered = false;
  const crBreaks = opts.crBreaks ?? false;
  const wantsAll = opts.wantsAll ?? (() => false);
  const wantsPiece = opts.wantsPiece ?? (() => false);
  const hits: number[] = [];
  let len = 0;
  /** Lines complete so far: the line being read is lineNo + 1. */
  let lineNo = 0;
  let started = false;
  /** Part of the line being read was handed over (or dropped) already. */
  let partial = false;
  /** Dropping the rest of a piece longer than the buffer, up to its next line end (or CR, with crBreaks). */
  let discarding = false;
  // Whether the consumer wants the next line whatever it holds; it can only change when it gets a line.
  let wantNext = false;

  const hasNeedle = (text: string): boolean => {
    for (let i = 0; i < needleText.length; i++) if (text.indexOf(needleText[i]!) !== -1) return true;
    return false;
  };

  /**
   * Hands over buf[start, end) of line lineNo + 1: the whole line (`whole`), or a part of one cut at a CR,
   * the part up to the buffer's end of an overlong one, or the rest of one whose start went before.
   */
  const hand = (start: number, end: number, whole: boolean) => {
    let e = end;
    // A line ends at LF, CR LF or (serial consoles) CR CR LF.
    if (crBreaks) while (e > start && buf[e - 1] === 13) e--;
    else if (e > start && buf[e - 1] === 13) e--;
    const text = buf.toString('utf8', start, e);
    const n = lineNo + 1;
    if (!crBreaks || (whole && text.indexOf('\r') === -1)) {
      onLine(text, n);
      wantNext = wantsAll();
      return;
    }
    // The pieces between CRs (an empty one is no line: the decoder drops it too); a piece without a needle
    // is skipped as a line would be.
    for (const piece of crParts(text)) {
      if (wantNext || !filtered || hasNeedle(piece) || wantsPiece(piece)) {
        onLine(piece, n);
        wantNext = wantsAll();
      }
    }
  };

  /** Handles the lines in buf[0, end), which ends with a LF. */
  const lines = (end: number) => {
    const region = buf.subarray(0, end);
    // `pos` starts the next line (or the rest of one) to count.
    let pos = 0;
    if (discarding) {
      discarding = false;
      const nl = region.indexOf(10);
      const cr = crBreaks ? region.indexOf(13) : -1;
      if (cr !== -1 && cr < nl) pos = cr + 1;
      else {
        pos = nl + 1;
        lineNo++;
        partial = false;
      }
    }
    // The line that began before this buffer ends at `firstEnd`.
    const firstEnd = partial ? region.indexOf(10, pos) : -1;
    partial = false;
    const take = (start: number): number => {
      const nl = region.indexOf(10, start);
      hand(start, nl, nl !== firstEnd);
      lineNo++;
      return nl + 1;
    };
    if (!filtered) {
      while (pos < end) pos = take(pos);
      return;
    }
    hits.length = 0;
    search.find(pos, end, hits);
    if (hits.length > 1) hits.sort((a, b) => a - b);
    let h = 0;
    while (pos < end) {
      if (wantNext) {
        pos = take(pos);
        continue;
      }
      while (h < hits.length && hits[h]! < pos) h++;
      if (h === hits.length) break;
      const start = Math.max(pos, region.lastIndexOf(10, hits[h]!) + 1);
      if (start > pos) lineNo += search.count(pos, start);
      pos = take(start);
    }
    // The rest holds no needle.
    if (pos < end) lineNo += search.count(pos, end);
  };

  const start = () => {
    started = true;
    needleText = opts.onStart?.(buf.toString('utf8', 0, len)) ?? [];
    search.setNeedles(needleText.map((m) => Buffer.from(m, 'latin1')));
    filtered = needleText.length > 0;
  };

  const consume = (): void | Promise<void> => {
    if (!started) start();
    const last = buf.lastIndexOf(10, len - 1);
    if (last !== -1) {
      lines(last + 1);
      buf.copy(buf, 0, last + 1, len);
      len -= last + 1;
      return opts.onChunk?.();
    }
    if (len < size) return;
    // A full buffer without a line end: a line longer than the buffer.
    const cr = crBreaks ? buf.lastIndexOf(13, len - 1) : -1;
    if (cr === -1) {
      // Hand over its head now and drop the rest up to its next break.
      if (!discarding) hand(0, size, false);
      discarding = partial = true;
      len = 0;
      return;
    }
    // Its pieces up to the last CR go now; the rest waits for more input.
    let pos = 0;
    if (discarding) {
      pos = buf.indexOf(13) + 1;
      discarding = false;
    }
    hand(pos, cr, false);
    partial = true;
    buf.copy(buf, 0, cr + 1, len);
    len -= cr + 1;
    return opts.onChunk?.();
  };

  let bytes = 0;
  const name = source === undefined || source === '-' ? STDIN : source;
  if (name === STDIN) {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      if (bytes === 0) requireText(name, chunk);
      bytes += chunk.length;
      if (opts.limit && bytes > opts.limit.bytes) throw opts.limit.tooLarge();
      let off = 0;
      while (off < chunk.length) {
        const n = chunk.copy(buf, len, off);
        off += n;
        len += n;
        const wait = consume();
        if (wait) await wait;
      }
    }
  } else {
    // Synchronous reads: the CLI has nothing else to do meanwhile, and they save a thread-pool round
    // trip per megabyte. The awaits on the output keep the event loop turning, so the output drains.
    const fd = openInput(source!);
    try {
      for (;;) {
        const n = readInput(name, fd, buf, len, size - len);
        if (n === 0) break;
        if (bytes === 0) requireText(name, buf.subarray(0, n));
        bytes += n;
        if (opts.limit && bytes > opts.limit.bytes) throw opts.limit.tooLarge();
        len += n;
        const wait = consume();
        if (wait) await wait;
      }
    } finally {
      closeSync(fd);
    }
  }
  if (!started) start();
  if (len > 0) {
    // A last line without a newline (consume leaves less than a full buffer, so the LF fits).
    buf[len] = 10;
    lines(len + 1);
  } else if (partial) lineNo++;
  await opts.onChunk?.();
  return { lines: lineNo, bytes };
}

/**
 * Collects output and writes it in large pieces: one write per event would dominate the run time. `flush`
 * returns what the output asks to wait for (backpressure); await it before reading more input.
 */
export function batchedOutput(io: CliIo): { add(text: string): void; flush(): void | Promise<void> } {
  let parts: string[] = [];
  let size = 0;
  let pending: void | Promise<void>;
  const write = () => {
    if (parts.length === 0) return;
    const wait = io.out(parts.join(''));
    parts = [];
    size = 0;
    if (wait) pending = wait;
  };
  return {
    add(text: string) {
      parts.push(text);
      size += text.length;
      if (size > 1 << 16) write();
    },
    flush() {
      write();
      const wait = pending;
      pending = undefined;
      return wait;
    },
  };
}

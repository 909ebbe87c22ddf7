import { closeSync } from 'node:fs';
import type { CliIo } from './framework';
import { openInput, readInput, requireText, STDIN } from './input';

/**
 * Counts newline bytes in a range of a buffer that lives in WebAssembly memory, 16 bytes per step with
 * SIMD: several times faster than a loop over Buffer#indexOf, and counting lines is most of the work of
 * reading a large log. Falls back to indexOf where WebAssembly SIMD is unavailable.
 *
 *   (func (export "count") (param $p i32) (param $end i32) (result i32) (local $n i32) (local $nl v128)
 *     (local.set $nl (i8x16.splat (i32.const 10)))
 *     (block (loop                                   ;; 16 bytes at a time
 *       (br_if 1 (i32.gt_u (i32.add (local.get $p) (i32.const 16)) (local.get $end)))
 *       (local.set $n (i32.add (local.get $n)
 *         (i32.popcnt (i8x16.bitmask (i8x16.eq (v128.load (local.get $p)) (local.get $nl))))))
 *       (local.set $p (i32.add (local.get $p) (i32.const 16))) (br 0)))
 *     (block (loop                                   ;; the tail, a byte at a time
 *       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
 *       (local.set $n (i32.add (local.get $n) (i32.eq (i32.load8_u (local.get $p)) (i32.const 10))))
 *       (local.set $p (i32.add (local.get $p) (i32.const 1))) (br 0)))
 *     (local.get $n))
 */
/** The part of the WebAssembly API used here (the project's type settings do not declare it). */
interface WasmApi {
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (code: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

function newlineCounter(bytes: number): { buf: Buffer; count: (start: number, end: number) => number } {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  try {
    if (!wasm) throw new Error('no WebAssembly');
    // prettier-ignore
    const code = [
      0x02, 0x01, 0x7f, 0x01, 0x7b, // locals: $n i32, $nl v128
      0x41, 0x0a, 0xfd, 0x0f, 0x21, 0x03, // $nl = i8x16.splat(10)
      0x02, 0x40, 0x03, 0x40, // block loop
      0x20, 0x00, 0x41, 0x10, 0x6a, 0x20, 0x01, 0x4b, 0x0d, 0x01, // br_if 1 ($p + 16 > $end)
      0x20, 0x02, 0x20, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x20, 0x03, 0xfd, 0x23, 0xfd, 0x64, 0x69, 0x6a, 0x21, 0x02, // $n += popcnt(bitmask(eq(load $p, $nl)))
      0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, 0x0c, 0x00, // $p += 16; br 0
      0x0b, 0x0b, // end loop, end block
      0x02, 0x40, 0x03, 0x40, // block loop
      0x20, 0x00, 0x20, 0x01, 0x4f, 0x0d, 0x01, // br_if 1 ($p >= $end)
      0x20, 0x02, 0x20, 0x00, 0x2d, 0x00, 0x00, 0x41, 0x0a, 0x46, 0x6a, 0x21, 0x02, // $n += load8_u($p) == 10
      0x20, 0x00, 0x41, 0x01, 0x6a, 0x21, 0x00, 0x0c, 0x00, // $p += 1; br 0
      0x0b, 0x0b, // end loop, end block
      0x20, 0x02, 0x0b, // $n; end
    ];
    // prettier-ignore
    const module = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
      0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type section: (i32, i32) -> i32
      0x02, 0x0a, 0x01, 0x01, 0x6d, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x01, // import m.mem: memory, min 1 page
      0x03, 0x02, 0x01, 0x00, // function section
      0x07, 0x09, 0x01, 0x05, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x00, 0x00, // export "count"
      0x0a, code.length + 2, 0x01, code.length, ...code, // code section (both lengths fit in one LEB128 byte)
    ]);
    const memory = new wasm.Memory({ initial: Math.ceil(bytes / 65536) });
    const instance = new wasm.Instance(new wasm.Module(module), { m: { mem: memory } });
    const count = instance.exports.count as (start: number, end: number) => number;
    return { buf: Buffer.from(memory.buffer, 0, bytes), count };
  } catch {
    const buf = Buffer.allocUnsafeSlow(bytes);
    return {
      buf,
      count(start: number, end: number) {
        let n = 0;
        for (let p = buf.indexOf(10, start); p !== -1 && p < end; p = buf.indexOf(10, p + 1)) n++;
        return n;
      },
    };
  }
}

/**
 * Streams lines from a file or stdin through a fixed buffer. With `markers`, only lines that contain one of
 * them and the lines asked for with `wantsAll()` are converted to strings and handed to `onLine`; the
 * others are only counted. That is what keeps a 1 GB log fast: the markers are found with native searches
 * over raw bytes. After each buffer it awaits `onChunk`, which is where the output is flushed and a slow
 * reader holds the input back. The start of the input must be text (else InputError).
 */
export async function streamLines(
  source: string | undefined,
  onLine: (text: string, lineNo: number) => void,
  opts: {
    /** Chooses the markers from the first lines of input (up to 64 KiB); without it every line is handed over. */
    markersFor?: (start: string) => readonly string[];
    wantsAll?: () => boolean;
    onChunk?: () => void | Promise<void>;
  },
): Promise<{ lines: number; bytes: number }> {
  // Small enough to stay in the CPU cache while it is searched once per marker; lines longer than this
  // are cut (no IOMMU message comes close), so memory stays constant.
  const size = 64 * 1024;
  const { buf, count } = newlineCounter(size);
  let needles: Buffer[] | undefined;
  let filtered = false;
  const wantsAll = opts.wantsAll ?? (() => false);
  const hits: number[] = [];
  let len = 0;
  let lineNo = 0;
  // While skipping the rest of an overlong line.
  let discarding = false;
  // Whether the consumer wants the next line whatever it holds; it can only change when it gets a line.
  let wantNext = false;

  const deliver = (start: number, end: number) => {
    const e = end > start && buf[end - 1] === 13 ? end - 1 : end;
    lineNo++;
    onLine(buf.toString('utf8', start, e), lineNo);
    wantNext = wantsAll();
  };

  /** Handles the complete lines in buf[0, end). */
  const lines = (end: number) => {
    const region = buf.subarray(0, end);
    if (needles === undefined) {
      needles = opts.markersFor ? opts.markersFor(region.toString('latin1')).map((m) => Buffer.from(m, 'latin1')) : [];
      filtered = needles.length > 0;
    }
    // `pos` starts the next line to count.
    let pos = discarding ? region.indexOf(10) + 1 : 0;
    discarding = false;
    const take = (start: number): number => {
      const nl = region.indexOf(10, start);
      deliver(start, nl);
      return nl + 1;
    };
    if (!filtered) {
      while (pos < end) pos = take(pos);
      return;
    }
    hits.length = 0;
    for (const n of needles) for (let p = region.indexOf(n); p !== -1; p = region.indexOf(n, p + 1)) hits.push(p);
    if (hits.length > 1) hits.sort((a, b) => a - b);
    let h = 0;
    while (pos < end) {
      if (wantNext) {
        pos = take(pos);
        continue;
      }
      while (h < hits.length && hits[h]! < pos) h++;
      if (h === hits.length) break;
      const start = region.lastIndexOf(10, hits[h]!) + 1;
      if (start > pos) lineNo += count(pos, start);
      pos = take(start);
    }
    // The rest holds no marker.
    if (pos < end) lineNo += count(pos, end);
  };

  const consume = (): void | Promise<void> => {
    const last = buf.lastIndexOf(10, len - 1);
    if (last === -1) {
      if (len === size) {
        // An overlong line: hand over its head now and drop the rest up to its newline.
        if (!discarding) {
          deliver(0, size);
          discarding = true;
        }
        len = 0;
      }
      return;
    }
    lines(last + 1);
    buf.copy(buf, 0, last + 1, len);
    len -= last + 1;
    return opts.onChunk?.();
  };

  let bytes = 0;
  const name = source === undefined || source === '-' ? STDIN : source;
  if (name === STDIN) {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      if (bytes === 0) requireText(name, chunk);
      bytes += chunk.length;
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
        len += n;
        const wait = consume();
        if (wait) await wait;
      }
    } finally {
      closeSync(fd);
    }
  }
  // A last line without a newline.
  if (len > 0 && !discarding) {
    buf[len] = 10;
    lines(len + 1);
  }
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

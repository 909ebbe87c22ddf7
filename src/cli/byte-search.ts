/**
 * The two searches decode-log spends its time in, over a buffer that lives in WebAssembly memory: counting
 * newlines, and finding every occurrence of a set of needles (the log markers). Both run 16 bytes per step
 * with WebAssembly SIMD; where that is unavailable, they fall back to Buffer#indexOf.
 *
 * Counting:
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
 *
 * Finding needles: one native search per needle stops at every occurrence of the needle's first byte, so
 * its cost grows with the number of needles and with how common their first bytes are (`vtd_`, `dmar`,
 * `ommu` start with letters every log line has). Instead, one pass looks for a two-byte anchor of each
 * needle at once (the pair of the needle least common in log text), with the nibble-table method of
 * Hyperscan's "Teddy": up to 16 needles are buckets, one bit each of two 8-bit sets; for the two bytes at
 * each position, a swizzle by low nibble and one by high nibble give the buckets whose anchor byte it is.
 * A block of 16 positions where some bucket matches both bytes is recorded (its address and lane mask),
 * and the needles with that anchor are compared in full here. The tables (LA0 HA0 LA1 HA1 for buckets
 * 0-7, then the same for 8-15, 16 bytes each) are at $t.
 *
 *   (func (export "scan") (param $p i32) (param $end i32) (param $t i32) (param $out i32) (param $max i32)
 *     (result i32) (local $n i32) (local $mask i32) (local $f $la0 $ha0 $la1 $ha1 $lb0 $hb0 $lb1 $hb1
 *     $lv $hv $lw $hw $m v128)
 *     (local.set $f (i8x16.splat (i32.const 15)))  (local.set $la0 (v128.load offset=0 (local.get $t))) ...
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
 *       (local.set $lv (v128.and (local.tee $m (v128.load (local.get $p))) (local.get $f)))
 *       (local.set $hv (i8x16.shr_u (local.get $m) (i32.const 4)))
 *       (local.set $lw (v128.and (local.tee $m (v128.load offset=1 (local.get $p))) (local.get $f)))
 *       (local.set $hw (i8x16.shr_u (local.get $m) (i32.const 4)))
 *       (local.tee $m (v128.or
 *         (v128.and (v128.and (v128.and (i8x16.swizzle $la0 $lv) (i8x16.swizzle $ha0 $hv))
 *                             (i8x16.swizzle $la1 $lw)) (i8x16.swizzle $ha1 $hw))
 *         (... the same with $lb0 $hb0 $lb1 $hb1)))
 *       (if (v128.any_true) (then                    ;; record the block: its address, its lanes
 *         (i32.store (out + n*8) (local.get $p))
 *         (i32.store offset=4 (out + n*8) (i32.xor (i8x16.bitmask (i8x16.eq (local.get $m) (v128.const 0))) 0xffff))
 *         (br_if 2 (i32.ge_u (local.tee $n (i32.add (local.get $n) (i32.const 1))) (local.get $max)))))
 *       (local.set $p (i32.add (local.get $p) (i32.const 16))) (br 0)))
 *     (local.get $n))
 *
 * The scan reads up to 17 bytes past a block's start, so the memory has a second page behind the buffer
 * (where the tables and the records are); what it finds past `end` is dropped.
 */

/** The part of the WebAssembly API used here (the project's type settings do not declare it). */
interface WasmApi {
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (code: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

export interface ByteSearch {
  /** The buffer both searches run over. */
  readonly buf: Buffer;
  /** Whether the WebAssembly SIMD searches run (else Buffer#indexOf). */
  readonly simd: boolean;
  /** The newlines in buf[start, end). */
  count(start: number, end: number): number;
  /** The needles `find` looks for (latin1 bytes, each at least one byte). */
  setNeedles(needles: readonly Buffer[]): void;
  /** Appends to `out` the start of every occurrence of a needle that lies within buf[start, end), in no particular order. */
  find(start: number, end: number, out: number[]): void;
}

// ---- Assembling the module. ----

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a non-negative number below 2^31. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>>= 7;
    if (n === 0 && (b & 0x40) === 0) return [...out, b];
    out.push(b | 0x80);
  }
}

const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const tee = (i: number) => [0x22, i];
const i32 = (n: number) => [0x41, ...sleb(n)];
const simd = (op: number) => [0xfd, ...uleb(op)];
const load128 = (offset: number) => [...simd(0x00), 0x00, ...uleb(offset)];
const I32_ADD = 0x6a;
const I32_GE_U = 0x4f;
const I32_SHL = 0x74;
const I32_XOR = 0x73;
const I32_STORE = (offset: number) => [0x36, 0x02, ...uleb(offset)];
const [SWIZZLE, SPLAT8, EQ8, AND, OR, ANY_TRUE, BITMASK8, SHR_U8, CONST] = [0x0e, 0x0f, 0x23, 0x4e, 0x50, 0x53, 0x64, 0x6d, 0x0c];

// prettier-ignore
const COUNT_BODY = [
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

function scanBody(): number[] {
  // Parameters 0-4: $p $end $t $out $max; locals 5 $n, 6 $mask (i32), then v128: 7 $f, 8-15 the tables, 16 $lv,
  // 17 $hv, 18 $lw, 19 $hw, 20 $m.
  const [p, end, t, out, max, n] = [0, 1, 2, 3, 4, 5];
  const [f, table, lv, hv, lw, hw, m] = [7, 8, 16, 17, 18, 19, 20];
  const swz = (tab: number, idx: number) => [...get(tab), ...get(idx), ...simd(SWIZZLE)];
  const buckets = (first: number) => [
    ...swz(first, lv), ...swz(first + 1, hv), ...simd(AND),
    ...swz(first + 2, lw), ...simd(AND),
    ...swz(first + 3, hw), ...simd(AND),
  ];
  const record = [...get(out), ...get(n), ...i32(3), I32_SHL, I32_ADD];
  return [
    0x02, 0x02, 0x7f, 14, 0x7b, // locals: 2 i32, 14 v128
    ...i32(15), ...simd(SPLAT8), ...set(f),
    ...[0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => [...get(t), ...load128(16 * i), ...set(table + i)]),
    0x02, 0x40, 0x03, 0x40, // block loop
    ...get(p), ...get(end), I32_GE_U, 0x0d, 0x01, // br_if 1 ($p >= $end)
    ...get(p), ...load128(0), ...tee(m), ...get(f), ...simd(AND), ...set(lv),
    ...get(m), ...i32(4), ...simd(SHR_U8), ...set(hv),
    ...get(p), ...load128(1), ...tee(m), ...get(f), ...simd(AND), ...set(lw),
    ...get(m), ...i32(4), ...simd(SHR_U8), ...set(hw),
    ...buckets(table), ...buckets(table + 4), ...simd(OR), ...tee(m),
    ...simd(ANY_TRUE), 0x04, 0x40, // if
    ...record, ...get(p), ...I32_STORE(0),
    ...record, ...get(m), ...simd(CONST), ...new Array<number>(16).fill(0), ...simd(EQ8), ...simd(BITMASK8), ...i32(0xffff), I32_XOR, ...I32_STORE(4),
    ...get(n), ...i32(1), I32_ADD, ...tee(n), ...get(max), I32_GE_U, 0x0d, 0x02, // br_if 2 ($n >= $max)
    0x0b, // end if
    ...get(p), ...i32(16), I32_ADD, ...set(p), 0x0c, 0x00, // $p += 16; br 0
    0x0b, 0x0b, // end loop, end block
    ...get(n), 0x0b,
  ];
}

const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
const name = (s: string) => [s.length, ...[...s].map((c) => c.charCodeAt(0))];

function moduleBytes(): Uint8Array {
  const scan = scanBody();
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    ...section(1, [0x02, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x05, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f]), // (i32 i32) -> i32, (i32 x5) -> i32
    ...section(2, [0x01, ...name('m'), ...name('mem'), 0x02, 0x00, 0x02]), // import m.mem: memory, min 2 pages
    ...section(3, [0x02, 0x00, 0x01]), // functions: count, scan
    ...section(7, [0x02, ...name('count'), 0x00, 0x00, ...name('scan'), 0x00, 0x01]),
    ...section(10, [0x02, ...uleb(COUNT_BODY.length), ...COUNT_BODY, ...uleb(scan.length), ...scan]),
  ]);
}

// ---- Choosing anchors. ----

/** How common a byte is in log text, roughly (an anchor is the pair of a needle least common). */
function commonness(b: number): number {
  if (b === 0x20) return 12;
  const c = String.fromCharCode(b);
  if ('etaoinsr'.includes(c)) return 8;
  if ('hldcumpfgbvwy'.includes(c)) return 5;
  if (/[0-9:.\[\]=_\-/(),]/.test(c)) return 4;
  if (/[a-z]/.test(c)) return 2;
  return 1;
}

function anchorOf(needle: Buffer): number {
  let best = 0;
  let score = Infinity;
  for (let i = 0; i + 1 < needle.length; i++) {
    const s = commonness(needle[i]!) * commonness(needle[i + 1]!);
    if (s < score) [best, score] = [i, s];
  }
  return best;
}

/** Where the scan's tables and block records go in the second page. */
const TABLES = 65536 + 64;
const RECORDS = TABLES + 128;
const MAX_RECORDS = 1024;

export function byteSearch(size: number): ByteSearch {
  if (size > 65536) throw new Error('the searched buffer is one page');
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  let exports: Record<string, unknown> | undefined;
  let memory: { buffer: ArrayBuffer } | undefined;
  try {
    if (!wasm) throw new Error('no WebAssembly');
    memory = new wasm.Memory({ initial: 2 });
    exports = new wasm.Instance(new wasm.Module(moduleBytes()), { m: { mem: memory } }).exports;
  } catch {
    exports = undefined;
  }
  if (!exports || !memory) return nativeSearch(Buffer.allocUnsafeSlow(size));

  const buf = Buffer.from(memory.buffer, 0, size);
  const bytes = new Uint8Array(memory.buffer);
  const records = new Int32Array(memory.buffer, RECORDS, 2 * MAX_RECORDS);
  const count = exports.count as (start: number, end: number) => number;
  const scan = exports.scan as (p: number, end: number, t: number, out: number, max: number) => number;
  /** The needles by anchor (its two bytes), with the anchor's offset in them. */
  let byAnchor = new Map<number, { needle: Buffer; offset: number }[]>();
  /** Needles the scan cannot take (a single byte, or past 16): searched natively. */
  let rest: Buffer[] = [];
  let any = false;

  return {
    buf,
    simd: true,
    count,
    setNeedles(needles) {
      byAnchor = new Map();
      rest = [];
      bytes.fill(0, TABLES, TABLES + 128);
      let bucket = 0;
      for (const needle of needles) {
        if (needle.length < 2 || bucket === 16) {
          rest.push(needle);
          continue;
        }
        const offset = anchorOf(needle);
        const [a, b] = [needle[offset]!, needle[offset + 1]!];
        const key = (a << 8) | b;
        const known = byAnchor.get(key);
        if (known) {
          known.push({ needle, offset });
          continue;
        }
        byAnchor.set(key, [{ needle, offset }]);
        const base = TABLES + (bucket < 8 ? 0 : 64);
        const bit = 1 << (bucket & 7);
        for (const at of [base + (a & 15), base + 16 + (a >> 4), base + 32 + (b & 15), base + 48 + (b >> 4)]) bytes[at] = bytes[at]! | bit;
        bucket++;
      }
      any = byAnchor.size > 0;
    },
    find(start, end, out) {
      searchEach(buf.subarray(0, end), rest, start, out);
      if (!any) return;
      for (let from = start; ; ) {
        const n = scan(from, end, TABLES, RECORDS, MAX_RECORDS);
        for (let r = 0; r < n; r++) {
          const block = records[2 * r]!;
          for (let mask = records[2 * r + 1]!; mask !== 0; mask &= mask - 1) {
            const at = block + 31 - Math.clz32(mask & -mask);
            if (at + 1 >= end) break;
            const candidates = byAnchor.get((bytes[at]! << 8) | bytes[at + 1]!);
            if (!candidates) continue;
            for (const { needle, offset } of candidates) {
              const s = at - offset;
              if (s >= start && s + needle.length <= end && matches(bytes, s, needle)) out.push(s);
            }
          }
        }
        if (n < MAX_RECORDS) return;
        from = records[2 * (n - 1)]! + 16;
      }
    },
  };
}

function matches(bytes: Uint8Array, at: number, needle: Buffer): boolean {
  for (let i = 0; i < needle.length; i++) if (bytes[at + i] !== needle[i]) return false;
  return true;
}

/** One native search per needle. */
function searchEach(region: Buffer, needles: readonly Buffer[], start: number, out: number[]): void {
  for (const n of needles) for (let p = region.indexOf(n, start); p !== -1; p = region.indexOf(n, p + 1)) out.push(p);
}

/** Without WebAssembly SIMD: Buffer#indexOf. */
function nativeSearch(buf: Buffer): ByteSearch {
  let needles: readonly Buffer[] = [];
  return {
    buf,
    simd: false,
    count(start, end) {
      let n = 0;
      for (let p = buf.indexOf(10, start); p !== -1 && p < end; p = buf.indexOf(10, p + 1)) n++;
      return n;
    },
    setNeedles(n) {
      needles = n;
    },
    find(start, end, out) {
      searchEach(buf.subarray(0, end), needles, start, out);
    },
  };
}

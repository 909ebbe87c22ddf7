import { DEBUGFS_REGISTERS, DebugfsFile } from '../core/driver/debugfs';
import { parsePciAddress, pciRid } from '../core/pci';
import { U64 } from '../core/u64';
import { EXACT, FIXED, LOOSE, padded, rightAligned } from './debugfs-lines';
import { hexNumber, hexWord } from './hex';

/**
 * Reads the Intel VT-d debugfs files (`/sys/kernel/debug/iommu/intel/`) as the kernel prints them
 * (src/core/driver/debugfs.ts renders the same formats): a directory copied off a machine, one file, several
 * files concatenated with `cat`, `head`'s `==> file <==` banners or `grep -r .`'s `path:` prefixes. It only
 * parses; src/readers/debugfs-import.ts loads the result into the hardware model. Every line is either
 * understood or reported with its file and line number; nothing here throws on bad input.
 */

export interface DebugfsInput {
  /** Path as the user gave it (relative to the debugfs root when it came from a directory); '' for stdin. */
  readonly path: string;
  readonly text: string;
}

/** Where something was read: the input's path (or the file a banner in it named) and its line; line 0 for the whole input. */
export interface Location {
  readonly file: string;
  readonly line: number;
}

export interface DebugfsDiagnostic extends Location {
  readonly severity: 'error' | 'warning' | 'info';
  readonly message: string;
}

/**
 * A diagnostic as one line, `FILE:LINE: severity: message`: a problem of a whole input (line 0) has no
 * line, and one of no input in particular (a dump read as a whole) is named `input`, what the caller
 * calls the dump (its directory, `<stdin>`).
 */
export function diagnosticText(d: DebugfsDiagnostic, input: string): string {
  return `${d.file || input}${d.line > 0 ? `:${d.line}` : ''}: ${d.severity}: ${d.message}`;
}

export interface RegsetDump {
  readonly unit: string;
  readonly base: number;
  readonly at: Location;
  readonly registers: { readonly name: string; readonly offset: number; readonly value: U64; readonly at: Location }[];
}

export interface TranslationRow {
  readonly bus: number;
  readonly devfn: number;
  readonly root: readonly [hi: U64, lo: U64];
  readonly context: readonly [hi: U64, lo: U64];
  /** -1 in legacy mode. */
  readonly pasid: number;
  /** val[0], val[1], val[2] (printed val[2]:val[1]:val[0]); null in legacy mode. */
  readonly pasidEntry: readonly [U64, U64, U64] | null;
  readonly at: Location;
}

export interface TranslationDump {
  readonly unit: string;
  readonly rootTable: number;
  readonly at: Location;
  readonly rows: TranslationRow[];
}

export interface QueueDump {
  readonly unit: string;
  readonly at: Location;
  base: number;
  head: number;
  tail: number;
  /** 256-bit descriptors (scalable-mode capable unit) or 128-bit. */
  wide: boolean | undefined;
  readonly rows: { readonly index: number; readonly qwords: readonly U64[]; readonly status: number; readonly at: Location }[];
}

export interface IrteRow {
  readonly index: number;
  readonly sid: number;
  readonly low: U64;
  readonly high: U64;
  readonly at: Location;
}

export interface InterruptDump {
  readonly unit: string;
  readonly kind: 'remapped' | 'posted';
  readonly at: Location;
  /** IR table address; undefined when the kernel printed "Interrupt Remapping is not enabled". */
  table: number | undefined;
  readonly entries: IrteRow[];
}

export interface DomainRow {
  /** Input page frame (IOVA >> 12). */
  readonly pfn: number;
  /** Entry values by level (index 5 = PML5E ... 1 = PTE); undefined for levels the row does not show or shows as zero. */
  readonly path: readonly (U64 | undefined)[];
  readonly at: Location;
}

export interface DomainDump {
  readonly segment: number;
  readonly sid: number;
  /** The PASID the header names; undefined when it names none (legacy mode). */
  readonly pasid: number | undefined;
  readonly pgd: number;
  readonly at: Location;
  readonly rows: DomainRow[];
}

export interface DebugfsDump {
  readonly regsets: RegsetDump[];
  readonly translations: TranslationDump[];
  readonly queues: QueueDump[];
  readonly interrupts: InterruptDump[];
  readonly domains: DomainDump[];
  /** Units with a `dmar_perf_latency` section (statistics only: nothing of it is loaded). */
  readonly latencies: { readonly unit: string; readonly at: Location }[];
  /** Units the kernel said have DMA remapping disabled. */
  readonly disabled: { readonly unit: string; readonly at: Location }[];
  readonly diagnostics: DebugfsDiagnostic[];
  lines: number;
  unrecognisedLines: number;
}

const LIMIT_DIAGNOSTICS = 200;

// How tools wrap files: `==> path <==` (head, tail) and `path:line` (grep -r . DIR).
const HEAD_BANNER = /^==> (.+) <==$/;
const KNOWN_FILE = new RegExp(`^(.*?(?:${Object.values(DebugfsFile).join('|')})):(.*)$`);

/** The number in hex digits text[from, to) (at most 13), or -1 if one of them is not a hex digit. */
function hexDigits(text: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

type Section =
  | { kind: 'none' }
  | { kind: 'regset'; dump: RegsetDump }
  | { kind: 'translation'; dump: TranslationDump }
  | { kind: 'queue'; dump: QueueDump }
  | { kind: 'interrupts'; dump: InterruptDump | undefined }
  | { kind: 'domain'; dump: DomainDump }
  | { kind: 'perf' };

/** The PASID a per-device file's path names (`<dev>/<pasid-hex>/domain_translation_struct`), if any. */
function pasidFromPath(path: string): { device?: string; pasid?: number; perDevice: boolean } {
  const parts = path.split(/[\\/]/).filter((p) => p !== '');
  const i = parts.lastIndexOf(DebugfsFile.domain);
  if (i < 1) return { perDevice: false };
  const parent = parts[i - 1]!;
  if (parsePciAddress(parent)) return { device: parent, perDevice: true };
  const grand = parts[i - 2];
  const pasid = hexNumber(parent);
  if (grand && parsePciAddress(grand) && pasid !== undefined) return { device: grand, pasid, perDevice: true };
  return { perDevice: false };
}

export class DebugfsParser {
  readonly dump: DebugfsDump = {
    regsets: [],
    translations: [],
    queues: [],
    interrupts: [],
    domains: [],
    latencies: [],
    disabled: [],
    diagnostics: [],
    lines: 0,
    unrecognisedLines: 0,
  };
  private section: Section = { kind: 'none' };
  private file = '';
  private suppressed = 0;
  /** The first line of the current file whose spacing differs from the kernel's (reported once per file). */
  private looseReported = false;

  /** Parses one input (a file, or a concatenation); may be called for each file of a directory. */
  add(input: DebugfsInput): this {
    this.begin(input.path);
    this.feed(input.text);
    return this.end();
  }

  private lineNo = 0;
  private carry = '';
  private grepPrefixed: boolean | undefined;

  /** Starts a file that arrives in pieces (`feed`), for large dumps read incrementally. */
  begin(path: string): this {
    this.switchFile(path);
    this.lineNo = 0;
    this.carry = '';
    this.grepPrefixed = undefined;
    return this;
  }

  private switchFile(path: string): void {
    this.file = path;
    this.section = { kind: 'none' };
    this.looseReported = false;
  }

  /** The next piece of the file begun last; lines may be split across pieces. */
  feed(text: string): this {
    let start = 0;
    const data = this.carry === '' ? text : this.carry + text;
    this.carry = '';
    for (;;) {
      const end = data.indexOf('\n', start);
      if (end === -1) break;
      this.next(data.slice(start, end));
      start = end + 1;
    }
    this.carry = data.slice(start);
    return this;
  }

  /** The end of the file: a last line without a newline is read too. */
  end(): this {
    if (this.carry !== '') this.next(this.carry);
    this.carry = '';
    return this;
  }

  private next(raw: string): void {
    this.lineNo++;
    this.dump.lines++;
    this.line(raw, this.lineNo);
  }

  finish(): DebugfsDump {
    if (this.suppressed > 0) {
      this.dump.diagnostics.push({ file: this.file, line: 0, severity: 'info', message: `${this.suppressed} more problems not listed` });
    }
    return this.dump;
  }

  private report(severity: DebugfsDiagnostic['severity'], line: number, message: string): void {
    if (this.dump.diagnostics.length >= LIMIT_DIAGNOSTICS) {
      this.suppressed++;
      return;
    }
    this.dump.diagnostics.push({ file: this.file, line, severity, message });
  }

  private unrecognised(line: number, text: string, why: string): void {
    this.dump.unrecognisedLines++;
    const shown = text.length > 80 ? text.slice(0, 77) + '...' : text;
    this.report('warning', line, `${why}: '${shown}'`);
  }

  /** A line understood only with its whitespace normalised: said once per file. */
  private loose(at: Location): void {
    if (this.looseReported) return;
    this.looseReported = true;
    this.report('warning', at.line, 'the spacing differs from what the kernel prints (tabs or padding changed on the way?); this and later such lines of the file are read anyway');
  }

  private line(raw: string, lineNo: number): void {
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.length > 4096) {
      this.unrecognised(lineNo, text, 'line too long for a debugfs table');
      return;
    }
    const banner = text.startsWith('==> ') ? HEAD_BANNER.exec(text) : null;
    if (banner) {
      this.switchFile(banner[1]!);
      return;
    }
    // `grep -r .` output carries its prefix on every line: decide once per input, from its first line.
    if (this.grepPrefixed === undefined) this.grepPrefixed = KNOWN_FILE.test(text);
    const prefixed = this.grepPrefixed ? KNOWN_FILE.exec(text) : null;
    if (prefixed) {
      if (prefixed[1] !== this.file) this.switchFile(prefixed[1]!);
      text = prefixed[2]!;
    }
    // Rows are most of a dump: the kernel's exact page-table row layout is read by offsets first.
    if (this.section.kind === 'domain' && text.charCodeAt(0) === 48 /* 0 */ && this.fastDomainRow(text, lineNo, this.section.dump)) return;
    if (text === '') return;
    const at: Location = { file: this.file, line: lineNo };
    if (this.exact(text, at)) return;
    const t = text.trim();
    if (t === '') return this.loose(at);
    if (this.relaxed(t, at)) return this.loose(at);
    if (this.section.kind === 'none') return this.unrecognised(lineNo, t, 'not part of a VT-d debugfs table');
    if (this.section.kind === 'perf') return this.unrecognised(lineNo, t, 'not a dmar_perf_latency row');
    const what: Record<Exclude<Section['kind'], 'none' | 'perf'>, string> = {
      regset: 'not a register row (NAME 0xOFFSET 0xVALUE)',
      translation: 'not a translation row (B.D.F root context PASID entry)',
      queue: 'not an invalidation queue row (index, descriptor words, status)',
      interrupts: this.section.kind === 'interrupts' && this.section.dump ? `not a ${this.section.dump.kind} interrupt table row` : 'interrupt table text before a "supported on IOMMU" title',
      domain: 'not a page-table row (0xPFN | entries from PML5E down)',
    };
    this.unrecognised(lineNo, t, what[this.section.kind]);
  }

  /** A line exactly as the kernel prints it; true when it was one. */
  private exact(text: string, at: Location): boolean {
    const fixed = FIXED.get(text);
    if (fixed !== undefined) return this.fixedLine(fixed);
    let m: RegExpExecArray | null;
    switch (this.section.kind) {
      case 'regset':
        if ((m = EXACT.regsetRow.exec(text)) && padded(m[1]!, m[2]!, 16)) return this.regsetRow(m[1]!, m[3]!, m[4]!, at, this.section.dump), true;
        break;
      case 'translation':
        if ((m = EXACT.translationRow.exec(text)) && (m[8] === undefined || padded(m[8], m[9]!, 6))) return this.translationRow(m, at, this.section.dump), true;
        break;
      case 'queue':
        if ((m = EXACT.queueGeometry.exec(text))) return this.queueGeometry(m, this.section.dump), true;
        if ((m = EXACT.queueRow.exec(text)) && rightAligned(m[1]!, m[2]!, 5)) return this.queueRow(m, at, this.section.dump), true;
        break;
      case 'interrupts':
        if (this.section.dump && (m = EXACT.irTable.exec(text))) return (this.section.dump.table = hexNumber(m[1]!)), true;
        if (this.section.dump && (m = EXACT.irRow.exec(text)) && padded(m[1]!, m[2]!, 5)) return this.irRow(m, at, this.section.dump), true;
        break;
      case 'perf':
        if (EXACT.latencyRow.test(text)) return true;
        break;
      default:
        break;
    }
    return this.title(text, at, EXACT);
  }

  /** The same line with its whitespace normalised (`t` is trimmed); true when it was understood. */
  private relaxed(t: string, at: Location): boolean {
    let m: RegExpExecArray | null;
    if (LOOSE.regsetHeader.test(t)) return this.fixedLine('regset-header');
    if (LOOSE.translationHeader.test(t)) return this.fixedLine('translation-header');
    if ((m = LOOSE.queueHeader.exec(t))) return this.fixedLine(m[1] ? 'queue-header-wide' : 'queue-header');
    if ((m = LOOSE.irHeader.exec(t))) return this.fixedLine(m[1] === 'DstID' ? 'ir-header' : 'ir-posted-header');
    if (LOOSE.irNotEnabled.test(t)) return this.fixedLine('ir-not-enabled');
    if (LOOSE.irSeparator.test(t)) return this.fixedLine('ir-separator');
    if (LOOSE.domainHeader.test(t)) return this.fixedLine('domain-header');
    if (LOOSE.latencyHeader.test(t)) return this.fixedLine('latency-header');
    switch (this.section.kind) {
      case 'regset':
        if ((m = LOOSE.regsetRow.exec(t))) return this.regsetRow(m[1]!, m[2]!, m[3]!, at, this.section.dump), true;
        break;
      case 'translation':
        if ((m = LOOSE.translationRow.exec(t))) return this.translationRow(m, at, this.section.dump), true;
        break;
      case 'queue':
        if ((m = LOOSE.queueGeometry.exec(t))) return this.queueGeometry(m, this.section.dump), true;
        if ((m = LOOSE.queueRow.exec(t))) return this.queueRow(m, at, this.section.dump), true;
        break;
      case 'interrupts':
        if (this.section.dump && (m = LOOSE.irTable.exec(t))) return (this.section.dump.table = hexNumber(m[1]!)), true;
        if (this.section.dump && (m = LOOSE.irRow.exec(t))) return this.irRow(m, at, this.section.dump), true;
        break;
      case 'domain':
        if ((m = LOOSE.domainRow.exec(t))) return this.domainRow(m, at, this.section.dump), true;
        break;
      case 'perf':
        if (LOOSE.latencyRow.test(t)) return true;
        break;
      default:
        break;
    }
    return this.title(t, at, LOOSE);
  }

  /** Lines the kernel prints with `seq_puts`: column headers and separators. */
  private fixedLine(kind: NonNullable<ReturnType<typeof FIXED.get>>): boolean {
    const s = this.section;
    switch (kind) {
      case 'queue-header-wide':
      case 'queue-header':
        if (s.kind !== 'queue') return false;
        s.dump.wide = kind === 'queue-header-wide';
        return true;
      case 'ir-header':
      case 'ir-posted-header':
      case 'ir-not-enabled':
        if (s.kind !== 'interrupts' || !s.dump) return false;
        if ((kind === 'ir-posted-header') !== (s.dump.kind === 'posted') && kind !== 'ir-not-enabled') return false;
        if (kind === 'ir-not-enabled') s.dump.table = undefined;
        return true;
      case 'ir-separator':
        this.section = { kind: 'interrupts', dump: undefined };
        return true;
      case 'latency-header': {
        // dmar_perf_latency starts with the same title as iommu_regset: the header after it says which file it is.
        const d = this.dump;
        if (s.kind === 'regset' && s.dump.registers.length === 0 && d.regsets[d.regsets.length - 1] === s.dump) {
          d.regsets.pop();
          d.latencies.push({ unit: s.dump.unit, at: s.dump.at });
        }
        this.section = { kind: 'perf' };
        return true;
      }
      case 'regset-header':
        return s.kind === 'regset';
      case 'translation-header':
        return s.kind === 'translation';
      case 'domain-header':
        return s.kind === 'domain';
    }
  }

  /** Section titles; true when the line was one. */
  private title(t: string, at: Location, forms: typeof EXACT | typeof LOOSE): boolean {
    let m: RegExpExecArray | null;
    if ((m = forms.regsetTitle.exec(t))) {
      const dump: RegsetDump = { unit: m[1]!, base: hexNumber(m[2]!) ?? 0, at, registers: [] };
      this.dump.regsets.push(dump);
      this.section = { kind: 'regset', dump };
      return true;
    }
    if ((m = forms.translationTitle.exec(t))) {
      const dump: TranslationDump = { unit: m[1]!, rootTable: hexNumber(m[2]!) ?? 0, at, rows: [] };
      this.dump.translations.push(dump);
      this.section = { kind: 'translation', dump };
      return true;
    }
    if ((m = forms.disabled.exec(t))) {
      this.dump.disabled.push({ unit: m[1]!, at });
      this.section = { kind: 'none' };
      return true;
    }
    if ((m = forms.queueTitle.exec(t))) {
      const dump: QueueDump = { unit: m[1]!, at, base: 0, head: 0, tail: 0, wide: undefined, rows: [] };
      this.dump.queues.push(dump);
      this.section = { kind: 'queue', dump };
      return true;
    }
    if ((m = forms.irTitle.exec(t))) {
      const dump: InterruptDump = { unit: m[2]!, kind: m[1] === 'Posted' ? 'posted' : 'remapped', at, table: undefined, entries: [] };
      this.dump.interrupts.push(dump);
      this.section = { kind: 'interrupts', dump };
      return true;
    }
    if ((m = forms.domainTitle.exec(t))) {
      this.domainTitle(m, at);
      return true;
    }
    if (forms === EXACT && EXACT.invalidBase.test(t)) {
      this.report('warning', at.line, 'the kernel could not read a unit\'s register base; its registers are missing');
      this.section = { kind: 'none' };
      return true;
    }
    return false;
  }

  private regsetRow(name: string, offsetText: string, valueText: string, at: Location, dump: RegsetDump): void {
    const offset = parseInt(offsetText, 16);
    const known = DEBUGFS_REGISTERS[name];
    if (known !== undefined && known !== offset) {
      this.report('warning', at.line, `${name} is at 0x${known.toString(16)}, not 0x${offset.toString(16)}; using the offset the dump gives`);
    }
    dump.registers.push({ name, offset, value: hexWord(valueText)!, at });
  }

  private translationRow(m: RegExpExecArray, at: Location, dump: TranslationDump): void {
    const bus = parseInt(m[1]!, 16);
    const dev = parseInt(m[2]!, 16);
    if (dev > 0x1f) return this.unrecognised(at.line, m[0], `device number ${m[2]} is above 1f`);
    const pasid = m[8] === undefined ? -1 : parseInt(m[8], 10);
    if (pasid < -1 || pasid >= 2 ** 20) return this.unrecognised(at.line, m[0], `PASID ${m[8]} is out of range`);
    const w = (i: number) => hexWord(m[i]!)!;
    dump.rows.push({
      bus,
      devfn: (dev << 3) | parseInt(m[3]!, 10),
      root: [w(4), w(5)],
      context: [w(6), w(7)],
      pasid,
      pasidEntry: pasid === -1 || m[10] === undefined ? null : [w(12), w(11), w(10)],
      at,
    });
  }

  private queueGeometry(m: RegExpExecArray, dump: QueueDump): void {
    dump.base = hexNumber(m[1]!) ?? 0;
    dump.head = Number(m[2]!);
    dump.tail = Number(m[3]!);
  }

  private queueRow(m: RegExpExecArray, at: Location, dump: QueueDump): void {
    const wide = m[5] !== undefined;
    if (dump.wide !== undefined && dump.wide !== wide) {
      return this.unrecognised(at.line, m[0], `expected ${dump.wide ? 4 : 2} descriptor words`);
    }
    dump.wide = wide;
    const qwords = [m[3]!, m[4]!, ...(wide ? [m[5]!, m[6]!] : [])].map((q) => hexWord(q)!);
    // `%016x` of an int: the status word is 32 bits.
    dump.rows.push({ index: parseInt(m[2]!, 10), qwords, status: hexNumber(m[7]!.slice(-8)) ?? 0, at });
  }

  private irRow(m: RegExpExecArray, at: Location, dump: InterruptDump): void {
    if ((m[7] !== undefined) !== (dump.kind === 'posted')) return this.unrecognised(at.line, m[0], `not a ${dump.kind} interrupt table row`);
    const dev = parseInt(m[4]!, 16);
    if (dev > 0x1f) return this.unrecognised(at.line, m[0], `device number ${m[4]} is above 1f`);
    const sid = (parseInt(m[3]!, 16) << 8) | (dev << 3) | parseInt(m[5]!, 10);
    dump.entries.push({ index: parseInt(m[1]!, 10), sid, high: hexWord(m[9]!)!, low: hexWord(m[10]!)!, at });
  }

  private domainTitle(m: RegExpExecArray, at: Location): void {
    const addr = parsePciAddress(m[1]!);
    if (!addr) {
      this.unrecognised(at.line, m[0], `'${m[1]}' is not a PCI address`);
      this.section = { kind: 'none' };
      return;
    }
    let pasid: number | undefined;
    if (m[2] !== undefined) {
      const fromPath = pasidFromPath(this.file);
      // 6.7+ per-device files print the PASID in hex; the older global file printed it in decimal.
      pasid = fromPath.perDevice || /[a-fA-F]/.test(m[2]) || !/(^|[\\/])domain_translation_struct$/.test(this.file) ? parseInt(m[2], 16) : parseInt(m[2], 10);
      if (fromPath.pasid !== undefined && fromPath.pasid !== pasid) {
        this.report('warning', at.line, `the file is in the directory of PASID ${fromPath.pasid.toString(16)} but names PASID ${m[2]}`);
      }
      if (pasid >= 2 ** 20) {
        this.unrecognised(at.line, m[0], `PASID ${m[2]} is out of range`);
        this.section = { kind: 'none' };
        return;
      }
    }
    const dump: DomainDump = { segment: addr.segment, sid: pciRid(addr), pasid, pgd: hexNumber(m[3]!) ?? 0, at, rows: [] };
    this.dump.domains.push(dump);
    this.section = { kind: 'domain', dump };
  }

  /**
   * A page-table row exactly as the kernel prints it (`0x%013lx |\t0x%016llx` then `\t0x%016llx` per column),
   * read by offsets; false sends the line to the other readers, which also say what is wrong with it. Rows have
   * five entries until e8aa45f8cc2c ("iommu/vt-d: debugfs: Dump entry pointing to huge page", 6.7), which ends
   * a row at its large page (three or four).
   */
  private fastDomainRow(t: string, lineNo: number, dump: DomainDump): boolean {
    const cols = (t.length + 1 - 18) / 19;
    if (cols !== 3 && cols !== 4 && cols !== 5) return false;
    if (t.charCodeAt(1) !== 120 || t.charCodeAt(15) !== 32 || t.charCodeAt(16) !== 124 || t.charCodeAt(17) !== 9) return false;
    const pfn = hexDigits(t, 2, 15);
    if (pfn < 0) return false;
    const path: (U64 | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
    for (let i = 0; i < cols; i++) {
      const at = 18 + i * 19;
      if (t.charCodeAt(at) !== 48 || t.charCodeAt(at + 1) !== 120 || (i < cols - 1 && t.charCodeAt(at + 18) !== 9)) return false;
      const hi = hexDigits(t, at + 2, at + 10);
      const lo = hexDigits(t, at + 10, at + 18);
      if (hi < 0 || lo < 0) return false;
      if (hi !== 0 || lo !== 0) path[5 - i] = new U64(hi, lo);
    }
    dump.rows.push({ pfn, path, at: { file: this.file, line: lineNo } });
    return true;
  }

  private domainRow(m: RegExpExecArray, at: Location, dump: DomainDump): void {
    const path: (U64 | undefined)[] = [undefined];
    for (let level = 1; level <= 5; level++) {
      const text = m[7 - level];
      const v = text === undefined ? undefined : hexWord(text);
      path.push(v === undefined || v.isZero() ? undefined : v);
    }
    dump.rows.push({ pfn: hexNumber(m[1]!)!, path, at });
  }
}

/** Parses every input in order (for a directory: the files sorted so that tables come before domain files). */
export function parseDebugfs(inputs: readonly DebugfsInput[]): DebugfsDump {
  const p = new DebugfsParser();
  for (const input of inputs) p.add(input);
  return p.finish();
}

const FILE_ORDER: readonly string[] = [DebugfsFile.regset, DebugfsFile.translation, DebugfsFile.queue, DebugfsFile.interrupts, DebugfsFile.domain, DebugfsFile.latency];

/** Whether a file in a copied debugfs directory is one this reader knows (by its base name). */
export function isDebugfsFile(path: string): boolean {
  return FILE_ORDER.includes(path.split(/[\\/]/).pop() ?? '');
}

/**
 * The order to read a directory's files in: the unit tables first (the per-device files refer to them), then
 * the device files by path. Paths are relative to the directory.
 */
export function debugfsFileOrder(paths: readonly string[]): string[] {
  const rank = (p: string) => FILE_ORDER.indexOf(p.split(/[\\/]/).pop() ?? '');
  return paths.filter(isDebugfsFile).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

import { DEBUGFS_REGISTERS, DebugfsFile } from '../core/driver/debugfs';
import { parsePciAddress, pciRid } from '../core/pci';
import { U64 } from '../core/u64';
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

export interface Location {
  readonly file: string;
  readonly line: number;
}

export interface DebugfsDiagnostic extends Location {
  readonly severity: 'error' | 'warning' | 'info';
  readonly message: string;
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
  /** Units the kernel said have DMA remapping disabled. */
  readonly disabled: { readonly unit: string; readonly at: Location }[];
  readonly diagnostics: DebugfsDiagnostic[];
  lines: number;
  unrecognisedLines: number;
}

const LIMIT_DIAGNOSTICS = 200;

// Section headers.
const REGSET_TITLE = /^IOMMU: (\S+) Register Base Address: (?:0x)?([0-9a-fA-F]{1,16})$/;
const REGSET_HEADER = /^Name\s+Offset\s+Contents$/;
const REGSET_ROW = /^([A-Z][A-Z0-9_]*)\s+0x([0-9a-fA-F]{1,4})\s+0x([0-9a-fA-F]{1,16})$/;
const TRANSLATION_TITLE = /^IOMMU (\S+): Root Table Address: 0x([0-9a-fA-F]{1,16})$/;
const TRANSLATION_HEADER = /^B\.D\.F\s+Root_entry\s+Context_entry(?:\s+PASID\s+PASID_table_entry)?$/;
const TRANSLATION_ROW =
  /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16})(?:\s+(-?\d{1,7})\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16}))?$/;
const DISABLED = /^DMA Remapping is not enabled on (\S+)$/;
const QUEUE_TITLE = /^Invalidation queue on IOMMU: (\S+)$/;
const QUEUE_GEOMETRY = /^Base: 0x([0-9a-fA-F]{1,16})\s+Head: (\d{1,10})\s+Tail: (\d{1,10})$/;
const QUEUE_HEADER = /^Index\s+qw0\s+qw1(\s+qw2\s+qw3)?\s+status$/;
const QUEUE_ROW = /^(\d{1,5})\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16})(?:\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16}))?\s+([0-9a-fA-F]{1,16})$/;
const IR_TITLE = /^(Remapped|Posted) Interrupt supported on IOMMU: (\S+)$/;
const IR_TABLE = /^IR table address:\s*(?:0x)?([0-9a-fA-F]{1,16})$/;
const IR_HEADER = /^Entry\s+SrcID\s+(?:DstID|PDA_high\s+PDA_low)\s+Vct\s+IRTE_high\s+IRTE_low$/;
const IR_NOT_ENABLED = /^Interrupt Remapping is not enabled$/;
const IR_ROW = /^(\d{1,5})\s+([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\s+([0-9a-fA-F]{8})(?:\s+([0-9a-fA-F]{8}))?\s+([0-9a-fA-F]{2})\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16})$/;
const IR_SEPARATOR = /^\*{4}$/;
const DOMAIN_TITLE = /^Device (\S+) (?:with pasid ([0-9a-fA-F]{1,8}) )?@0x([0-9a-fA-F]{1,16})$/;
const DOMAIN_HEADER = /^IOVA_PFN\s+PML5E\s+PML4E\s+PDPE\s+PDE\s+PTE$/;
const DOMAIN_ROW = /^0x([0-9a-fA-F]{1,13})\s*\|\s+0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16})(?:\s+0x([0-9a-fA-F]{16}))?(?:\s+0x([0-9a-fA-F]{16}))?$/;

// How tools wrap files: `==> path <==` (head, tail) and `path:line` (grep -r . DIR).
const HEAD_BANNER = /^==> (.+) <==$/;
const KNOWN_FILE = new RegExp(`^(.*?(?:${Object.values(DebugfsFile).join('|')}|dmar_perf_latency)):(.*)$`);

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
    disabled: [],
    diagnostics: [],
    lines: 0,
    unrecognisedLines: 0,
  };
  private section: Section = { kind: 'none' };
  private file = '';
  private suppressed = 0;

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
    this.file = path;
    this.section = { kind: 'none' };
    this.lineNo = 0;
    this.carry = '';
    this.grepPrefixed = undefined;
    return this;
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

  private line(raw: string, lineNo: number): void {
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.length > 4096) {
      this.unrecognised(lineNo, text, 'line too long for a debugfs table');
      return;
    }
    const banner = text.startsWith('==> ') ? HEAD_BANNER.exec(text) : null;
    if (banner) {
      this.file = banner[1]!;
      this.section = { kind: 'none' };
      return;
    }
    // `grep -r .` output carries its prefix on every line: decide once per input, from its first line.
    if (this.grepPrefixed === undefined) this.grepPrefixed = KNOWN_FILE.test(text);
    const prefixed = this.grepPrefixed ? KNOWN_FILE.exec(text) : null;
    if (prefixed) {
      if (prefixed[1] !== this.file) {
        this.file = prefixed[1]!;
        this.section = { kind: 'none' };
      }
      text = prefixed[2]!;
    }
    // Rows are most of a dump: the kernel's exact page-table row layout is read by offsets first.
    if (this.section.kind === 'domain' && text.charCodeAt(0) === 48 /* 0 */ && this.fastDomainRow(text, lineNo, this.section.dump)) return;
    const t = text.trim();
    if (t === '') return;
    const at: Location = { file: this.file, line: lineNo };
    if (this.header(t, at)) return;
    switch (this.section.kind) {
      case 'regset':
        return this.regsetRow(t, at, this.section.dump);
      case 'translation':
        return this.translationRow(t, at, this.section.dump);
      case 'queue':
        return this.queueRow(t, at, this.section.dump);
      case 'interrupts':
        return this.irRow(t, at, this.section.dump);
      case 'domain':
        return this.domainRow(t, at, this.section.dump);
      case 'perf':
        return; // dmar_perf_latency: statistics, nothing to load
      case 'none':
        return this.unrecognised(lineNo, t, 'not part of a VT-d debugfs table');
    }
  }

  /** Section titles and column headers; true when the line was one. */
  private header(t: string, at: Location): boolean {
    let m: RegExpExecArray | null;
    if ((m = REGSET_TITLE.exec(t))) {
      const dump: RegsetDump = { unit: m[1]!, base: hexNumber(m[2]!) ?? 0, at, registers: [] };
      this.dump.regsets.push(dump);
      this.section = { kind: 'regset', dump };
      return true;
    }
    if ((m = TRANSLATION_TITLE.exec(t))) {
      const dump: TranslationDump = { unit: m[1]!, rootTable: hexNumber(m[2]!) ?? 0, at, rows: [] };
      this.dump.translations.push(dump);
      this.section = { kind: 'translation', dump };
      return true;
    }
    if ((m = DISABLED.exec(t))) {
      this.dump.disabled.push({ unit: m[1]!, at });
      this.section = { kind: 'none' };
      return true;
    }
    if ((m = QUEUE_TITLE.exec(t))) {
      const dump: QueueDump = { unit: m[1]!, at, base: 0, head: 0, tail: 0, wide: undefined, rows: [] };
      this.dump.queues.push(dump);
      this.section = { kind: 'queue', dump };
      return true;
    }
    if ((m = IR_TITLE.exec(t))) {
      const dump: InterruptDump = { unit: m[2]!, kind: m[1] === 'Posted' ? 'posted' : 'remapped', at, table: undefined, entries: [] };
      this.dump.interrupts.push(dump);
      this.section = { kind: 'interrupts', dump };
      return true;
    }
    if (IR_SEPARATOR.test(t)) {
      this.section = { kind: 'interrupts', dump: undefined };
      return true;
    }
    if ((m = DOMAIN_TITLE.exec(t))) {
      this.domainTitle(m, at);
      return true;
    }
    if (/^IOMMU: Invalid base address$/.test(t)) {
      this.report('warning', at.line, 'the kernel could not read a unit\'s register base; its registers are missing');
      this.section = { kind: 'none' };
      return true;
    }
    if (/^(IOMMU: \S+|inv_iotlb|inv_devtlb|inv_iec|svm_prq|\s*<0\.1us)/.test(t) && /dmar_perf_latency/.test(this.file)) {
      this.section = { kind: 'perf' };
      return true;
    }
    return false;
  }

  private regsetRow(t: string, at: Location, dump: RegsetDump): void {
    if (REGSET_HEADER.test(t)) return;
    const m = REGSET_ROW.exec(t);
    if (!m) return this.unrecognised(at.line, t, 'not a register row (NAME 0xOFFSET 0xVALUE)');
    const offset = parseInt(m[2]!, 16);
    const known = DEBUGFS_REGISTERS[m[1]!];
    if (known !== undefined && known !== offset) {
      this.report('warning', at.line, `${m[1]} is at 0x${known.toString(16)}, not 0x${offset.toString(16)}; using the offset the dump gives`);
    }
    dump.registers.push({ name: m[1]!, offset, value: hexWord(m[3]!)!, at });
  }

  private translationRow(t: string, at: Location, dump: TranslationDump): void {
    if (TRANSLATION_HEADER.test(t)) return;
    const m = TRANSLATION_ROW.exec(t);
    if (!m) return this.unrecognised(at.line, t, 'not a translation row (B.D.F root context PASID entry)');
    const bus = parseInt(m[1]!, 16);
    const dev = parseInt(m[2]!, 16);
    if (dev > 0x1f) return this.unrecognised(at.line, t, `device number ${m[2]} is above 1f`);
    const pasid = m[8] === undefined ? -1 : parseInt(m[8], 10);
    if (pasid < -1 || pasid >= 2 ** 20) return this.unrecognised(at.line, t, `PASID ${m[8]} is out of range`);
    const w = (i: number) => hexWord(m[i]!)!;
    dump.rows.push({
      bus,
      devfn: (dev << 3) | parseInt(m[3]!, 10),
      root: [w(4), w(5)],
      context: [w(6), w(7)],
      pasid,
      pasidEntry: pasid === -1 || m[9] === undefined ? null : [w(11), w(10), w(9)],
      at,
    });
  }

  private queueRow(t: string, at: Location, dump: QueueDump): void {
    let m: RegExpExecArray | null;
    if ((m = QUEUE_GEOMETRY.exec(t))) {
      dump.base = hexNumber(m[1]!) ?? 0;
      dump.head = parseInt(m[2]!, 10);
      dump.tail = parseInt(m[3]!, 10);
      return;
    }
    if ((m = QUEUE_HEADER.exec(t))) {
      dump.wide = m[1] !== undefined;
      return;
    }
    m = QUEUE_ROW.exec(t);
    if (!m) return this.unrecognised(at.line, t, 'not an invalidation queue row (index, descriptor words, status)');
    const wide = m[4] !== undefined;
    if (dump.wide !== undefined && dump.wide !== wide) {
      return this.unrecognised(at.line, t, `expected ${dump.wide ? 4 : 2} descriptor words`);
    }
    dump.wide = wide;
    const qwords = [m[2]!, m[3]!, ...(wide ? [m[4]!, m[5]!] : [])].map((q) => hexWord(q)!);
    dump.rows.push({ index: parseInt(m[1]!, 10), qwords, status: hexNumber(m[6]!.slice(-13)) ?? 0, at });
  }

  private irRow(t: string, at: Location, dump: InterruptDump | undefined): void {
    let m: RegExpExecArray | null;
    if (!dump) return this.unrecognised(at.line, t, 'interrupt table text before a "supported on IOMMU" title');
    if ((m = IR_TABLE.exec(t))) {
      dump.table = hexNumber(m[1]!);
      return;
    }
    if (IR_HEADER.test(t)) return;
    if (IR_NOT_ENABLED.test(t)) {
      dump.table = undefined;
      return;
    }
    m = IR_ROW.exec(t);
    if (!m || (m[6] !== undefined) !== (dump.kind === 'posted')) return this.unrecognised(at.line, t, `not a ${dump.kind} interrupt table row`);
    const dev = parseInt(m[3]!, 16);
    if (dev > 0x1f) return this.unrecognised(at.line, t, `device number ${m[3]} is above 1f`);
    const sid = (parseInt(m[2]!, 16) << 8) | (dev << 3) | parseInt(m[4]!, 10);
    dump.entries.push({ index: parseInt(m[1]!, 10), sid, high: hexWord(m[8]!)!, low: hexWord(m[9]!)!, at });
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
   * read by offsets; false sends the line to the careful path, which also says what is wrong with it.
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

  private domainRow(t: string, at: Location, dump: DomainDump): void {
    if (DOMAIN_HEADER.test(t)) return;
    const m = DOMAIN_ROW.exec(t);
    if (!m) return this.unrecognised(at.line, t, 'not a page-table row (0xPFN | entries from PML5E down)');
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

const FILE_ORDER: readonly string[] = [DebugfsFile.regset, DebugfsFile.translation, DebugfsFile.queue, DebugfsFile.interrupts, DebugfsFile.domain, 'dmar_perf_latency'];

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

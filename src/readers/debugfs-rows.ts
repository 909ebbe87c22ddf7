import { DEBUGFS_REGISTERS, DebugfsFile } from '../core/driver/debugfs';
import { parsePciAddress, pciRid } from '../core/pci';
import { U64 } from '../core/u64';
import type { DebugfsDiagnostic, DebugfsDump, DomainDump, InterruptDump, Location, QueueDump, RegsetDump, TranslationDump } from './debugfs-dump';
import { hexNumber, hexWord } from './hex';

// The rows of the debugfs files and what reading them fills: the dump, the section and file being read, the
// diagnostics. The parser (debugfs.ts) extends this with the framing of the inputs and the lines' forms.

const LIMIT_DIAGNOSTICS = 200;

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

export type Section =
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

export class DebugfsRows {
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
  protected section: Section = { kind: 'none' };
  protected file = '';
  protected suppressed = 0;

  protected report(severity: DebugfsDiagnostic['severity'], line: number, message: string): void {
    if (this.dump.diagnostics.length >= LIMIT_DIAGNOSTICS) {
      this.suppressed++;
      return;
    }
    this.dump.diagnostics.push({ file: this.file, line, severity, message });
  }

  protected unrecognised(line: number, text: string, why: string): void {
    this.dump.unrecognisedLines++;
    const shown = text.length > 80 ? text.slice(0, 77) + '...' : text;
    this.report('warning', line, `${why}: '${shown}'`);
  }

  protected regsetRow(name: string, offsetText: string, valueText: string, at: Location, dump: RegsetDump): void {
    const offset = parseInt(offsetText, 16);
    const known = DEBUGFS_REGISTERS[name];
    if (known !== undefined && known !== offset) {
      this.report('warning', at.line, `${name} is at 0x${known.toString(16)}, not 0x${offset.toString(16)}; using the offset the dump gives`);
    }
    dump.registers.push({ name, offset, value: hexWord(valueText)!, at });
  }

  protected translationRow(m: RegExpExecArray, at: Location, dump: TranslationDump): void {
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

  protected queueGeometry(m: RegExpExecArray, dump: QueueDump): void {
    dump.base = hexNumber(m[1]!) ?? 0;
    dump.head = Number(m[2]!);
    dump.tail = Number(m[3]!);
  }

  protected queueRow(m: RegExpExecArray, at: Location, dump: QueueDump): void {
    const wide = m[5] !== undefined;
    if (dump.wide !== undefined && dump.wide !== wide) {
      return this.unrecognised(at.line, m[0], `expected ${dump.wide ? 4 : 2} descriptor words`);
    }
    dump.wide = wide;
    const qwords = [m[3]!, m[4]!, ...(wide ? [m[5]!, m[6]!] : [])].map((q) => hexWord(q)!);
    // `%016x` of an int: the status word is 32 bits.
    dump.rows.push({ index: parseInt(m[2]!, 10), qwords, status: hexNumber(m[7]!.slice(-8)) ?? 0, at });
  }

  protected irRow(m: RegExpExecArray, at: Location, dump: InterruptDump): void {
    if ((m[7] !== undefined) !== (dump.kind === 'posted')) return this.unrecognised(at.line, m[0], `not a ${dump.kind} interrupt table row`);
    const dev = parseInt(m[4]!, 16);
    if (dev > 0x1f) return this.unrecognised(at.line, m[0], `device number ${m[4]} is above 1f`);
    const sid = (parseInt(m[3]!, 16) << 8) | (dev << 3) | parseInt(m[5]!, 10);
    dump.entries.push({ index: parseInt(m[1]!, 10), sid, high: hexWord(m[9]!)!, low: hexWord(m[10]!)!, at });
  }

  protected domainTitle(m: RegExpExecArray, at: Location): void {
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
  protected fastDomainRow(t: string, lineNo: number, dump: DomainDump): boolean {
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

  protected domainRow(m: RegExpExecArray, at: Location, dump: DomainDump): void {
    const path: (U64 | undefined)[] = [undefined];
    for (let level = 1; level <= 5; level++) {
      const text = m[7 - level];
      const v = text === undefined ? undefined : hexWord(text);
      path.push(v === undefined || v.isZero() ? undefined : v);
    }
    dump.rows.push({ pfn: hexNumber(m[1]!)!, path, at });
  }
}

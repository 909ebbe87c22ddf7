import { DebugfsFile } from '../core/driver/debugfs';
import type { DebugfsDump, DebugfsInput, InterruptDump, Location, QueueDump, RegsetDump, TranslationDump } from './debugfs-dump';
import { EXACT, FIXED, LOOSE, padded, rightAligned } from './debugfs-lines';
import { DebugfsRows, type Section } from './debugfs-rows';
import { hexNumber } from './hex';

/**
 * Reads the Intel VT-d debugfs files (`/sys/kernel/debug/iommu/intel/`) as the kernel prints them
 * (src/core/driver/debugfs.ts renders the same formats): a directory copied off a machine, one file, several
 * files concatenated with `cat`, `head`'s `==> file <==` banners or `grep -r .`'s `path:` prefixes. It only
 * parses; src/readers/debugfs-import.ts loads the result into the hardware model. Every line is either
 * understood or reported with its file and line number; nothing here throws on bad input.
 *
 * The parts: debugfs-dump.ts (what a dump is made of), debugfs-lines.ts (the kernel's line forms),
 * debugfs-rows.ts (reading each file's rows); this module frames the inputs and tells lines apart.
 */

export * from './debugfs-dump';

// How tools wrap files: `==> path <==` (head, tail) and `path:line` (grep -r . DIR).
const HEAD_BANNER = /^==> (.+) <==$/;
const KNOWN_FILE = new RegExp(`^(.*?(?:${Object.values(DebugfsFile).join('|')})):(.*)$`);

export class DebugfsParser extends DebugfsRows {
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

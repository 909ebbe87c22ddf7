import { U64 } from '../core/u64';
import { hexWord, normalizeHex } from './hex';
import type { LogEvent } from './log-event';
import type { Continuation, LineInfo } from './log-reader';
import { absorbReasonTail, afterTag } from './vtd-line';

// The CONFIG_DMAR_DEBUG walk dump that follows a fault (or stands alone): its start line and its steps.

export const DUMP_START = /^Dump (\S{1,32}) table entries for IOVA 0x([0-9a-fA-F]{1,16})/;
/**
 * The steps of `dmar_fault_dump_ptes` / `pgtable_walk` (CONFIG_DMAR_DEBUG, 5.16+: 914ff7719e8a "iommu/vt-d:
 * Dump DMAR translation structure when DMA fault occurs"). The "not present" lines changed with
 * 6ceb93f952f6 "iommu/vt-d: Fix checks and print in dmar_fault_dump_ptes()" and f1645676f25d
 * "iommu/vt-d: Fix checks and print in pgtable_walk()" (6.13, backported to 6.12.y, 6.6.y, 6.1.y): before,
 * `root table entry is not present`, `context table entry is not present`, `pasid directory entry is not
 * present`, `pasid table entry is not present`, and `PTE not present at level %d` naming the level of the
 * missing entry, printed instead of its `pte level` line; after, `page table not present at level %d` comes
 * after the entry's line and names the level of the table below it.
 */
const DUMP_STEPS: [RegExp, (m: RegExpExecArray) => Record<string, unknown>][] = [
  [/^scalable mode root entry: hi 0x([0-9a-fA-F]{1,16}), low 0x([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'root', scalable: true, hi: normalizeHex(m[1]!), low: normalizeHex(m[2]!) })],
  [/^root entry: 0x([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'root', low: normalizeHex(m[1]!) })],
  [/^root table (?:entry )?is not present/, () => ({ entry: 'root', present: false })],
  [/^context entry: hi 0x([0-9a-fA-F]{1,16}), low 0x([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'context', hi: normalizeHex(m[1]!), low: normalizeHex(m[2]!) })],
  [/^context table (?:entry )?is not present/, () => ({ entry: 'context', present: false })],
  [/^legacy mode page table is not present/, () => ({ entry: 'context', present: false, note: 'legacy mode page table is not present' })],
  [/^pasid directory (?:table|entry) is not present/, (m) => ({ entry: 'context', present: false, note: m[0] })],
  [/^pasid dir entry: 0x([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'pasid-dir', value: normalizeHex(m[1]!) })],
  [/^pasid table (?:entry )?is not present/, () => ({ entry: 'pasid-dir', present: false })],
  [/^pasid table entry\[(\d)\]: 0x([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'pasid-entry', index: Number(m[1]), value: normalizeHex(m[2]!) })],
  [/^scalable mode page table is not present/, () => ({ entry: 'pasid-entry', present: false })],
  [/^pte level: (\d{1,2}), pte value: (?:0x)?([0-9a-fA-F]{1,16})/, (m) => ({ entry: 'pte', level: Number(m[1]), value: normalizeHex(m[2]!) })],
  [/^page table not present at level (-?\d{1,2})/, (m) => ({ entry: 'table', level: Number(m[1]), present: false })],
  [/^PTE not present at level (-?\d{1,2})/, (m) => ({ entry: 'pte', level: Number(m[1]), present: false })],
];

/** `base + offset` for a 4 KiB-aligned table address and an entry offset. */
function entryAddress(base: U64, offset: number): string {
  const lo = (base.lo & 0xffff_f000) + offset;
  return new U64(base.hi + Math.floor(lo / 0x1_0000_0000), lo >>> 0).toString();
}

/** Decodes the walk dump's PASID entry words into the fields a reader looks for first. */
function describePasidEntry(words: (string | null)[]): Record<string, unknown> | undefined {
  const w0 = words[0] ? hexWord(words[0]) : undefined;
  const w1 = words[1] ? hexWord(words[1]) : undefined;
  const w2 = words[2] ? hexWord(words[2]) : undefined;
  if (!w0) return undefined;
  const pgtt = w0.field(8, 6);
  const out: Record<string, unknown> = {
    present: w0.bit(0),
    fpd: w0.bit(1),
    aw: w0.field(4, 2),
    pgtt,
    translation: ['reserved', 'first-level', 'second-level', 'nested', 'pass-through'][pgtt] ?? 'reserved',
    slptptr: new U64(w0.hi & 0xfffff, w0.lo & 0xffff_f000).toString(),
  };
  if (w1) out.did = w1.field(15, 0);
  if (w2) {
    out.sre = w2.bit(0);
    out.flpm = w2.field(3, 2);
    out.flptptr = new U64(w2.hi & 0xfffff, w2.lo & 0xffff_f000).toString();
  }
  return out;
}

/** Absorbs the CONFIG_DMAR_DEBUG walk dump (`Dump dmarN table entries for IOVA ...` and its steps). */
export class WalkDump implements Continuation {
  done = false;
  private started: boolean;
  private readonly walk: { iommu: string | null; iova: string | null; steps: Record<string, unknown>[]; pasidEntry?: Record<string, unknown>; pasidDirEntry?: Record<string, unknown> };
  private readonly pasidWords: (string | null)[] = [];

  constructor(
    private readonly event: LogEvent,
    start?: RegExpExecArray,
  ) {
    this.started = start !== undefined;
    this.walk = { iommu: start ? start[1]! : null, iova: start ? normalizeHex(start[2]!) : null, steps: [] };
    if (start) this.attach();
  }

  private attach(): void {
    this.event.details.walk = this.walk;
    if (this.walk.iommu && !this.event.iommu) this.event.iommu = this.walk.iommu;
  }

  /**
   * `details.walk.pasidDirEntry`: the PASID directory entry the dump printed and where it and the PASID table
   * it points to are. The kernel indexes the directory (context entry low, bits 63:12) with PASID >> 6,
   * using PASID 0 (IOMMU_NO_PASID) for a request without one; the table (entry bits 63:12) holds 64-byte
   * entries indexed with PASID & 0x3f. A dump with no fault line does not say the PASID: then only the
   * value, the present bit and the table address are given.
   */
  private pasidDirEntry(value: string): Record<string, unknown> {
    const word = hexWord(value) ?? U64.ZERO;
    const present = word.bit(0);
    const pasidTable = present ? entryAddress(word, 0) : null;
    const context = this.walk.steps.find((s) => s.entry === 'context' && typeof s.low === 'string');
    const contextLow = context ? hexWord(context.low as string) : undefined;
    const pasid = this.event.kind === 'page-walk' ? null : (this.event.pasid ?? 0);
    const out: Record<string, unknown> = { value: word.toString(), present, pasidTable };
    out.pasidDirectory = contextLow ? entryAddress(contextLow, 0) : null;
    out.pasid = pasid;
    out.address = contextLow && pasid !== null ? entryAddress(contextLow, (pasid >>> 6) * 8) : null;
    out.pasidEntryAddress = present && pasid !== null ? entryAddress(word, (pasid & 0x3f) * 64) : null;
    return out;
  }

  absorb(msg: string, info: LineInfo): boolean {
    const body = afterTag(msg);
    if (!this.started) {
      const m = DUMP_START.exec(body);
      // The dump names the faulting address: a dump for another address belongs to another fault.
      if (!m || (this.event.address !== null && normalizeHex(m[2]!) !== this.event.address)) return absorbReasonTail(this.event, msg, info);
      this.started = true;
      this.walk.iommu = m[1]!;
      this.walk.iova = normalizeHex(m[2]!);
      this.attach();
      return true;
    }
    for (const [re, make] of DUMP_STEPS) {
      const m = re.exec(body);
      if (!m) continue;
      const step = make(m);
      this.walk.steps.push(step);
      if (step.entry === 'pasid-dir' && typeof step.value === 'string') this.walk.pasidDirEntry = this.pasidDirEntry(step.value);
      if (step.entry === 'pasid-entry' && typeof step.index === 'number') {
        this.pasidWords[step.index] = step.value as string;
        const described = describePasidEntry(this.pasidWords);
        if (described) this.walk.pasidEntry = described;
      }
      if (step.present === false) this.done = true;
      return true;
    }
    return false;
  }
}

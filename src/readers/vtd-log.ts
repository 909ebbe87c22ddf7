import { decodeCap, decodeEcap, domainCount, faultRecordingCount, maxGuestAddressWidth, pasidCount, supportedAgaws } from '../core/vtd/cap';
import { linuxFaultReason } from '../core/vtd/fault-reasons';
import { formatPciAddress, parsePciAddress } from '../core/pci';
import { FSTS } from '../core/vtd/registers';
import { U64 } from '../core/u64';
import { bdfToDevice, hexNumber, hexWord, normalizeHex, ridToDevice } from './hex';
import { newEvent, type LogEvent } from './log-event';
import { type Continuation, type LineInfo, type LineReader, type ReadResult, MAX_JOINED, events } from './log-reader';
import { describePageRequest, describeQiDescriptor } from './vtd-descriptors';

/**
 * Intel VT-d messages of the Linux driver (drivers/iommu/intel/{dmar.c,iommu.c,svm.c,prq.c}) and of
 * Xen's VT-d driver. Formats and the kernel versions that print them: docs/log-formats.md; the commits
 * behind each version boundary: FORMAT_CHANGES in src/core/driver/log.ts.
 */

// [DMA Read NO_PASID] / [DMA Write PASID 0x1] (5.14+), [DMA Read] (older), then the BDF (with 0x in
// 5.14 only), `PASID %x` after the BDF (5.4-5.13), the address (0x from 5.14), and the reason, decimal
// up to 5.13. The two-line record of <= 4.6 is matched after joining its lines (`DMAR:[fault reason`).
const DMA_FAULT =
  /^\[DMA (Read|Write)(?: (NO_PASID|PASID (?:0x)?([0-9a-fA-F]{1,8})))?\]\s*Request device \[(0x)?([0-9a-fA-F]{1,2}):(?:0x)?([0-9a-fA-F]{1,2})\.([0-7])\]\s*(?:PASID ([0-9a-fA-F]{1,8})\s+)?fault addr (0x)?([0-9a-fA-F]{1,16})\s*(DMAR:\s*)?\[fault reason (0x)?([0-9a-fA-F]{1,3})\]\s?(.*)$/;
const INTR_FAULT =
  /^(\[INTR-REMAP\]|INTR-REMAP:)\s*Request device \[(\[)?(0x)?([0-9a-fA-F]{1,2}):(?:0x)?([0-9a-fA-F]{1,2})\.([0-7])\]\s*fault index (0x)?([0-9a-fA-F]{1,16})\s*(?:INTR-REMAP:\s*)?\[fault reason (0x)?([0-9a-fA-F]{1,3})\]\s?(.*)$/;
const FAULT_START = /\[DMA (?:Read|Write)|\[INTR-REMAP\]|INTR-REMAP:/;
const FAULT_REASON_DONE = /\[fault reason (?:0x)?[0-9a-fA-F]{1,3}\]/;

const XEN_HEAD =
  /^\[VT-D\]\s*(?:[\w.-]{1,40}\.c:\d{1,6}:\s*)?(DMAR|INTR-REMAP|UNKNOWN):\s*(?:\[DMA (Read|Write)\]\s*)?Request device \[(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\]\s*fault (addr|index) ([0-9a-fA-F]{1,16})(?:,?\s*iommu reg\s*=?\s*(?:0x)?([0-9a-fA-F]{1,16}))?/;
/**
 * Xen prints the reason in hex without 0x: `reason 06 - ...`; old Xen `DMAR:[fault reason 06h] ...`.
 * Newer Xen names the unit after the reason text, ` on iommu:%u` (7a091bd8b0 "vtd: Print originating
 * iommu on faults", after Xen 4.21).
 */
const XEN_REASON = /^(?:\[VT-D\]\s*)?(?:[\w.-]{1,40}\.c:\d{1,6}:\s*)?(?:DMAR|INTR-REMAP|UNKNOWN):\s*(?:reason ([0-9a-fA-F]{1,2}) -\s?|\[fault reason ([0-9a-fA-F]{1,2})h\]\s*)(.*?)(?: on (iommu:\d{1,4}))?\s*$/;
/** What a wrap leaves of `, iommu reg = %p` on the next line. */
const XEN_REG_TAIL = /^,?\s*(?:iommu\s+reg\s*)?=\s*(?:0x)?([0-9a-fA-F]{4,16})$|^,?\s*iommu\s+reg\s*=?\s*(?:0x)?([0-9a-fA-F]{4,16})$/;
const XEN_ENTRY = /^(?:print_vtd_entries:|iommu->root_maddr = 0|(?:root_entry|context|ctxt_entry|l\d)\s*\[[0-9a-fA-F]{1,4}\]\s*(?:=|not present)|[0-9a-fA-F]{4,16}$)/;

const FAULT_STATUS = /^DRHD: handling fault status reg ([0-9a-fA-F]{1,8})/;
/** `dmar0: reg_base_addr ...` from 4.2; `IOMMU 0: reg_base_addr ...` before (the unit's sequence number). */
const CAPABILITY = /^(?:IOMMU (\d{1,3})|(\S{1,32})): reg_base_addr ([0-9a-fA-F]{1,16}) ver (\d{1,3}):(\d{1,3}) cap ([0-9a-fA-F]{1,16}) ecap ([0-9a-fA-F]{1,16})/;

const DUMP_START = /^Dump (\S{1,32}) table entries for IOVA 0x([0-9a-fA-F]{1,16})/;
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

/**
 * __domain_mapping's pr_crit when the entry it would write is already present: the old entry stays and the
 * map returns success (the same text in 5.10, 6.1 and 6.12; the pfn and the two PTE values in hex).
 */
const PTE_ALREADY_SET = /^ERROR: DMA PTE for vPFN 0x([0-9a-fA-F]{1,16}) already set \(to ([0-9a-fA-F]{1,16}) not ([0-9a-fA-F]{1,16})\)/;
/**
 * The IOMMU core's `dev_warn_ratelimited(dev, "iopf with pasid %d aborted\n")` (io-pgfault.c) when no handler
 * took a recoverable fault: the group is answered with a failure. It came with the attach-handle rework of
 * iommu_report_device_fault (Lu Baolu, proposed in the review of "iommu: Add attach handle to struct
 * iopf_group", 6.11; the commit id was not pinned); 6.1 does not print it, 6.12 does.
 */
const IOPF_ABORTED = /^(\S{1,64}) ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): iopf with pasid (-?\d{1,10}) aborted$/;
const QI_DETECTED = /^VT-d detected Invalidation (Queue|Time-out|Completion) Error: (?:Reason|SID) ([0-9a-fA-F]{1,16})/;
const QI_DESCRIPTOR = /^QI (HEAD|PRIOR): (.{1,64}?) qw0 = 0x([0-9a-fA-F]{1,16}), qw1 = 0x([0-9a-fA-F]{1,16})/;
const QI_CLEARED = /^Invalidation (?:Queue|Time-out|Completion) Error \((IQE|ITE|ICE)\) cleared/;
const QI_INVALID_DESC = /^VT-d detected invalid descriptor: (?:(low)=|qw0 = )([0-9a-fA-F]{1,16}), (?:high=|qw1 = )([0-9a-fA-F]{1,16})/;

const PRQ_PROBLEM = /^IOMMU: (\S{1,32}?): (Page request without PASID|Address is not canonical|Page request in Privilege Mode|Execution request not supported|PRQ overflow detected|PRQ overflow cleared)/;
const PRQ_INVALID = /^(\S{1,32}?): (Invalid page request|Page request without PASID|Page request for invalid PASID (\d{1,7})): ([0-9a-fA-F]{1,16}) ([0-9a-fA-F]{1,16})/;
const PRQ_OLD_PROBLEM = /^(Unexpected page request in Privilege Mode|Execution request not supported)\s*$/;

/** Boot and status messages of the VT-d driver (after its `DMAR: `/`dmar: `/`DMAR-IR: ` prefix) that are understood but are not events. */
const INFORMATIONAL =
  /^(?:Host address width|DRHD base:|RMRR base:|ATSR flags:|SATC flags:|RHSA base:|ANDD device:|IOAPIC id|HPET id|Enabled IRQ remapping|Queued invalidation will be enabled|Intel\(R\) Virtualization Technology|IOMMU feature|No ATSR found|No SATC found|No RMRR found|Scalable mode is disallowed|Enable scalable mode if hardware supports|Setting RMRR|Setting identity map|Prepare 0-16MiB unity mapping|Using Queued invalidation|Using Register based invalidation|dmar\d+: Using|Interrupt remapping enabled|x2apic|IOMMU enabled|IOMMU batching|Disabling|Translation was enabled|Copied translation tables|Platform supports|dmar\d+: PASID|Firmware has requested|Device is ineligible|Forcing|DMAR-IR: |Not attempting|Failed to|Allocating|Intel-IOMMU force enabled|Skip IOMMU|Unknown DMAR structure|Parse DMAR table failure|DRHD: )/;

/**
 * IOMMU lines without the driver's prefix. Each carries a marker of log-markers.ts (`DMAR`, `IOMMU`,
 * `iommu`), so that the CLI, which decodes only lines with a marker, counts them as this reader does.
 * - ACPI's table list and reservation (`ACPI: DMAR 0x000000003FFE232E 000080 (v01 BOCHS  BXPC ...)`,
 *   `ACPI: Reserving DMAR table memory at [mem ...]`);
 * - kernels before 4.2, whose intel-iommu.c and interrupt-remapping code had no `pr_fmt`
 *   (`Intel-IOMMU: enabled`, `IOMMU: Setting RMRR:`, `IOMMU 0 0xfed90000: using Queued invalidation`,
 *   `IOAPIC id 8 under DRHD base  0xfed91000 IOMMU 1`);
 * - the IOMMU core (drivers/iommu/iommu.c, `pr_fmt` `iommu: `): `iommu: Default domain type: ...`,
 *   `iommu: DMA domain TLB invalidation policy: ...`, `<driver> <dev>: Adding to iommu group %d`,
 *   `Removing from iommu group %d`; no other reader sees them, and they tell how DMA was set up;
 * - the kernel command line when it sets IOMMU parameters (`intel_iommu=on,sm_off iommu.strict=1`);
 * - the two lines of the CONFIG_IOMMU_DEBUGFS banner (drivers/iommu/iommu-debugfs.c, the same in 5.10,
 *   6.1 and 6.12) that name the IOMMU; its other lines (stars, NOTICE) carry no marker and look like
 *   other subsystems' banners, so they stay ordinary unrecognised lines.
 */
const INFORMATIONAL_OTHER =
  /^(?:ACPI: DMAR 0x[0-9A-Fa-f]{8,16} [0-9A-Fa-f]{6} \(v\d{2} |ACPI: Reserving DMAR table memory at |Intel-IOMMU: |IOMMU: (?:Setting RMRR|Setting identity map|Prepare 0-16MiB unity mapping)|IOMMU \d{1,3} 0x[0-9a-f]{1,16}: using (?:Queued|Register based) invalidation|IOAPIC id \d{1,3} under DRHD base .*IOMMU \d|iommu: (?:Default domain type: |DMA domain TLB invalidation policy: )|\S{1,64} [0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]: (?:Adding to|Removing from) iommu group \d{1,6}$|(?:Kernel )?[Cc]ommand line: .*\b(?:intel_iommu|amd_iommu|iommu)[=.]|\*\*  IOMMU DebugFS SUPPORT HAS BEEN ENABLED IN THIS KERNEL  \*\*$|\*\* IOMMU data structures, which may compromise security on \*\*$)/;

/** FSTS (VT-d spec 11.4.9.1): PFO, PPF, AFO, APF, IQE, ICE, ITE, PRO in bits 0-7, FRI in 15:8. */
const FSTS_BITS: [string, number][] = [
  ['pfo', FSTS.PFO],
  ['ppf', FSTS.PPF],
  ['afo', FSTS.AFO],
  ['apf', FSTS.APF],
  ['iqe', FSTS.IQE],
  ['ice', FSTS.ICE],
  ['ite', FSTS.ITE],
  ['pro', FSTS.PRO],
];

function decodeFaultStatus(text: string): Record<string, unknown> {
  const v = hexNumber(text) ?? 0;
  const out: Record<string, unknown> = { value: normalizeHex(text) };
  for (const [name, bit] of FSTS_BITS) out[name] = ((v >>> bit) & 1) === 1;
  out.fri = (v >>> 8) & 0xff;
  return out;
}

function parseReason(code: string, hex: boolean): { code: number; text: string } | null {
  const n = hex ? parseInt(code, 16) : /^\d+$/.test(code) ? parseInt(code, 10) : parseInt(code, 16);
  if (!(n >= 0 && n <= 0xff)) return null;
  return { code: n, text: linuxFaultReason(n).text };
}

/**
 * Keeps the reason text the kernel printed when it is not the one that kernel's table has for the code.
 * The formats before 5.4 come from kernels without the scalable-mode table, which print "Unknown" for
 * 0x30 and up; `reason.text` still names the code as today's table does.
 */
function notePrintedReason(e: LogEvent, printed: string, scalableModeTable: boolean): void {
  if (!e.reason) return;
  if (printed !== linuxFaultReason(e.reason.code, { scalableModeTable }).text) e.details.printedReason = printed;
}

/** The message after the driver's prefix: `DMAR: ` (4.2 and later), `dmar: ` (before), `DMAR-IR: `. */
function afterTag(msg: string): string {
  if (msg.startsWith('DMAR:') || msg.startsWith('dmar:')) return msg.slice(5).trimStart();
  if (msg.startsWith('DMAR-IR:')) return msg.slice(8).trimStart();
  return msg;
}

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
class WalkDump implements Continuation {
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

/**
 * A fault line that a mail client or bug tracker wrapped inside its reason text leaves the rest of the
 * text on a line of its own, without a header: it belongs to the fault.
 */
function absorbReasonTail(e: LogEvent, msg: string, info: LineInfo): boolean {
  const printed = e.details.printedReason;
  if (typeof printed !== 'string' || printed === '' || info.timestamp !== null || !e.reason) return false;
  const whole = `${printed} ${msg.trim()}`;
  if (!e.reason.text.startsWith(whole)) return false;
  if (whole === e.reason.text) delete e.details.printedReason;
  else e.details.printedReason = whole;
  return true;
}

class ReasonTail implements Continuation {
  done = false;

  constructor(private readonly event: LogEvent) {}

  absorb(msg: string, info: LineInfo): boolean {
    if (!absorbReasonTail(this.event, msg, info)) return false;
    if (this.event.details.printedReason === undefined) this.done = true;
    return true;
  }
}

class XenFault implements Continuation {
  done = false;
  private reasonSeen = false;
  /** The reason line was cut after `reason NN -`: its text may follow on the next line. */
  private reasonTextPending = false;
  private entries: string[] | null = null;

  constructor(private readonly event: LogEvent) {}

  absorb(msg: string, info: LineInfo): boolean {
    if (!this.reasonSeen) {
      const r = XEN_REASON.exec(msg);
      if (r) {
        this.reasonSeen = true;
        // Old Xen printed `[fault reason NNh]` on the second line of a dprintk.
        if (r[2] !== undefined) this.event.format = 'xen-vtd-old';
        const code = parseInt(r[1] ?? r[2]!, 16);
        this.event.reason = { code, text: linuxFaultReason(code).text };
        const printed = r[3]!.trim();
        if (r[4] !== undefined) this.event.iommu = r[4];
        if (printed === '') this.reasonTextPending = true;
        else if (printed !== this.event.reason.text) this.event.details.printedReason = printed;
        return true;
      }
      // A journal or mail wrap can push the tail of `iommu reg = ...` onto its own line: the value, or
      // more of the line (`iommu reg = ffff...`, `= ffff...`).
      if (/^[0-9a-fA-F]{4,16}$/.test(msg.trim())) {
        this.event.details.iommuReg = normalizeHex(String(this.event.details.iommuReg ?? '').replace(/^0x/, '') + msg.trim());
        return true;
      }
      const reg = XEN_REG_TAIL.exec(msg.trim());
      if (reg && this.event.details.iommuReg === undefined) {
        this.event.details.iommuReg = normalizeHex(reg[1] ?? reg[2]!);
        return true;
      }
      return false;
    }
    if (absorbReasonTail(this.event, msg, info)) return true;
    if (this.reasonTextPending && info.timestamp === null && !XEN_ENTRY.test(msg.trim()) && msg.trim() !== '') {
      this.reasonTextPending = false;
      const tail = /^(.*?)(?: on (iommu:\d{1,4}))?\s*$/.exec(msg.trim())!;
      if (tail[2] !== undefined) this.event.iommu = tail[2];
      if (tail[1] !== this.event.reason!.text) this.event.details.printedReason = tail[1]!;
      return true;
    }
    if (XEN_ENTRY.test(msg.trim())) {
      if (!this.entries) this.event.details.walk = { entries: (this.entries = []) };
      this.entries.push(msg.trim());
      return true;
    }
    return false;
  }
}

/**
 * An invalidation-queue error burst (`qi_dump_fault`): the `detected` lines, then the HEAD and PRIOR
 * descriptors they share, then a `cleared` line per error. A `detected` line after the descriptors
 * starts the next burst.
 */
class QiBurst implements Continuation {
  done = false;
  private descriptorsSeen = false;

  constructor(private readonly group: LogEvent[]) {}

  absorb(msg: string, info: LineInfo): boolean {
    const body = afterTag(msg);
    if (!this.descriptorsSeen) {
      const detected = QI_DETECTED.exec(body);
      if (detected) {
        const e = qiErrorEvent(detected, info);
        e.iommu = this.group[0]!.iommu;
        this.group.push(e);
        return true;
      }
    }
    const desc = QI_DESCRIPTOR.exec(body);
    if (desc && !(desc[1] === 'HEAD' && this.group[0]!.details.head !== undefined)) {
      this.descriptorsSeen = true;
      applyQiDescriptor(this.group, desc);
      return true;
    }
    const cleared = QI_CLEARED.exec(body);
    if (cleared) {
      for (const e of this.group) if (e.details.error === cleared[1]) e.details.cleared = true;
      return true;
    }
    return false;
  }
}

function qiErrorEvent(m: RegExpExecArray, info: LineInfo): LogEvent {
  const e = newEvent(info.lineNo, 'intel', 'invalidation-error', 'vtd-qi-5.13');
  e.timestamp = info.timestamp;
  const error = m[1] === 'Queue' ? 'IQE' : m[1] === 'Time-out' ? 'ITE' : 'ICE';
  e.details.error = error;
  if (error === 'IQE') {
    e.reason = { code: parseInt(m[2]!, 16), text: 'Invalidation Queue Error' };
  } else {
    const sid = hexNumber(m[2]!) ?? 0;
    e.details.sid = sid;
    e.device = ridToDevice(sid & 0xffff);
  }
  return e;
}

function applyQiDescriptor(group: LogEvent[], m: RegExpExecArray): void {
  const qw0 = hexWord(m[3]!);
  const qw1 = hexWord(m[4]!);
  if (!qw0 || !qw1) return;
  const d = describeQiDescriptor([qw0, qw1]);
  // The kernel names the type from qw0[3:0] only; keep what it printed when that differs.
  if (m[2]!.trim() !== d.name) d.name = m[2]!.trim();
  const slot = m[1] === 'HEAD' ? 'head' : 'prior';
  for (const e of group) {
    e.details[slot] = d;
    // The head descriptor is the one the error is about: it names the device when the error does not.
    if (slot === 'head' && e.device === null && d.device !== null) e.device = d.device;
  }
}

function pageRequestFromWords(e: LogEvent, qw0Text: string, qw1Text: string): void {
  const qw0 = hexWord(qw0Text);
  const qw1 = hexWord(qw1Text);
  if (!qw0 || !qw1) return;
  const pr = describePageRequest(qw0, qw1);
  e.details.descriptor = pr;
  e.device = ridToDevice(pr.rid);
  e.pasid = pr.pasid;
  e.address = pr.address;
  e.access = pr.exec ? 'exec' : pr.write ? 'write' : pr.read ? 'read' : null;
}

class PageRequestProblem implements Continuation {
  done = false;

  constructor(private readonly event: LogEvent) {}

  absorb(msg: string): boolean {
    const m = PRQ_INVALID.exec(afterTag(msg));
    if (!m || m[2] !== 'Invalid page request' || (this.event.iommu !== null && m[1] !== this.event.iommu)) return false;
    this.done = true;
    this.event.iommu = m[1]!;
    pageRequestFromWords(this.event, m[4]!, m[5]!);
    return true;
  }
}

export function createVtdReader(): { read(msg: string, info: LineInfo): ReadResult } & LineReader {
  let faultStatus: Record<string, unknown> | null = null;

  function base(info: LineInfo, kind: LogEvent['kind'], format: string): LogEvent {
    const e = newEvent(info.lineNo, 'intel', kind, format);
    e.timestamp = info.timestamp;
    return e;
  }

  function takeFaultStatus(e: LogEvent): void {
    if (faultStatus) {
      e.details.faultStatus = faultStatus;
      faultStatus = null;
    }
  }

  function kernelFault(msg: string, info: LineInfo): ReadResult {
    const at = msg.search(FAULT_START);
    if (at === -1) return null;
    const text = msg.slice(at);
    const dma = DMA_FAULT.exec(text);
    if (dma) {
      const bracketPasid = dma[2];
      const hexBus = dma[4] !== undefined;
      const twoLine = dma[11] !== undefined;
      const hexReason = dma[12] !== undefined;
      const format = twoLine
        ? 'vtd-dma-two-line'
        : bracketPasid !== undefined
          ? hexBus ? 'vtd-dma-5.14' : 'vtd-dma-5.15'
          : dma[8] !== undefined ? 'vtd-dma-pasid-decimal' : 'vtd-dma-decimal';
      const e = base(info, 'dma-fault', format);
      e.access = dma[1] === 'Read' ? 'read' : 'write';
      e.device = bdfToDevice(dma[5]!, dma[6]!, dma[7]!);
      const pasidText = dma[3] ?? dma[8];
      if (pasidText !== undefined && pasidText.toLowerCase() !== 'ffffffff') e.pasid = parseInt(pasidText, 16);
      e.address = normalizeHex(dma[10]!);
      e.reason = parseReason(dma[13]!, hexReason);
      notePrintedReason(e, dma[14]!.trim(), format !== 'vtd-dma-two-line' && format !== 'vtd-dma-decimal');
      if (!hexReason) e.details.reasonPrintedInDecimal = true;
      takeFaultStatus(e);
      return { events: [e], more: new WalkDump(e) };
    }
    const intr = INTR_FAULT.exec(text);
    if (intr) {
      const oldStyle = intr[1] === 'INTR-REMAP:';
      const hexReason = intr[9] !== undefined;
      const format = oldStyle ? 'vtd-intr-two-line' : !hexReason ? 'vtd-intr-decimal' : intr[3] !== undefined ? 'vtd-intr-5.14' : 'vtd-intr-5.15';
      const e = base(info, 'interrupt-fault', format);
      e.device = bdfToDevice(intr[4]!, intr[5]!, intr[6]!);
      e.details.faultIndex = normalizeHex(intr[8]!);
      e.reason = parseReason(intr[10]!, hexReason);
      notePrintedReason(e, intr[11]!.trim(), true);
      if (!hexReason) e.details.reasonPrintedInDecimal = true;
      takeFaultStatus(e);
      return e.details.printedReason !== undefined ? { events: [e], more: new ReasonTail(e) } : events(e);
    }
    // Cut short until its reason is complete (a wrap may fall inside `[fault reason 0x05]`).
    return !FAULT_REASON_DONE.test(text) && text.length < MAX_JOINED ? 'partial' : null;
  }

  function xen(msg: string, info: LineInfo): ReadResult {
    const m = XEN_HEAD.exec(msg);
    if (m) {
      const intr = m[1] === 'INTR-REMAP';
      const e = base(info, intr ? 'interrupt-fault' : 'dma-fault', intr ? 'xen-vtd-intr' : 'xen-vtd');
      e.device = bdfToDevice(m[4]!, m[5]!, m[6]!, m[3]);
      if (m[2]) e.access = m[2] === 'Read' ? 'read' : 'write';
      if (m[7] === 'index') e.details.faultIndex = normalizeHex(m[8]!);
      else e.address = normalizeHex(m[8]!);
      if (m[9]) e.details.iommuReg = normalizeHex(m[9]);
      if (m[1] === 'UNKNOWN') e.details.xenFaultType = 'UNKNOWN';
      return { events: [e], more: new XenFault(e) };
    }
    if (msg.indexOf('Request device') !== -1 || /\[DMA (Read|Write)\]\s*$/.test(msg)) {
      return /fault (addr|index) [0-9a-fA-F]/.test(msg) || msg.length >= MAX_JOINED ? null : 'partial';
    }
    // A reason line whose fault line was lost (wrapped beyond repair, or cut from the excerpt).
    const r = XEN_REASON.exec(msg);
    if (r) {
      const code = parseInt(r[1] ?? r[2]!, 16);
      const intr = code >= 0x20 && code < 0x27;
      const e = base(info, intr ? 'interrupt-fault' : 'dma-fault', intr ? 'xen-vtd-intr' : 'xen-vtd');
      e.reason = { code, text: linuxFaultReason(code).text };
      if (r[4] !== undefined) e.iommu = r[4];
      e.details.faultLineMissing = true;
      return events(e);
    }
    return null;
  }

  function pageRequest(body: string, info: LineInfo): ReadResult {
    const p = PRQ_PROBLEM.exec(body);
    if (p) {
      const overflow = p[2]!.startsWith('PRQ overflow');
      const e = base(info, overflow ? 'queue-overflow' : 'page-request', 'vtd-prq');
      e.iommu = p[1]!;
      if (overflow) {
        e.details.queue = 'prq';
        e.details.cleared = p[2] === 'PRQ overflow cleared';
        return events(e);
      }
      e.details.problem = p[2]!;
      return { events: [e], more: new PageRequestProblem(e) };
    }
    const inv = PRQ_INVALID.exec(body);
    if (inv) {
      const e = base(info, 'page-request', inv[2] === 'Invalid page request' ? 'vtd-prq-invalid' : 'vtd-prq-5.x');
      e.iommu = inv[1]!;
      if (inv[2] !== 'Invalid page request') e.details.problem = inv[3] !== undefined ? 'Page request for invalid PASID' : 'Page request without PASID';
      pageRequestFromWords(e, inv[4]!, inv[5]!);
      if (inv[3] !== undefined) e.pasid = Number(inv[3]);
      return events(e);
    }
    const old = PRQ_OLD_PROBLEM.exec(body);
    if (old) {
      const e = base(info, 'page-request', 'vtd-prq-5.13');
      e.details.problem = old[1] === 'Execution request not supported' ? old[1] : 'Page request in Privilege Mode';
      return { events: [e], more: new PageRequestProblem(e) };
    }
    return null;
  }

  function other(msg: string, info: LineInfo): ReadResult {
    const body = afterTag(msg);
    const fs = FAULT_STATUS.exec(body);
    if (fs) {
      faultStatus = decodeFaultStatus(fs[1]!);
      return 'context';
    }
    const qi = QI_DETECTED.exec(body);
    if (qi) {
      const e = qiErrorEvent(qi, info);
      const group = [e];
      return { events: group, more: new QiBurst(group) };
    }
    const desc = QI_DESCRIPTOR.exec(body);
    if (desc) {
      const e = base(info, 'invalidation-error', 'vtd-qi-5.13');
      e.details.error = null;
      const group = [e];
      applyQiDescriptor(group, desc);
      return { events: group, more: new QiBurst(group) };
    }
    const old = QI_INVALID_DESC.exec(body);
    if (old) {
      const e = base(info, 'invalidation-error', 'vtd-qi-invalid-desc');
      // These kernels print the descriptor but not the IQEI code.
      e.details.error = 'IQE';
      e.details.printedWords = old[1] === 'low' ? 'low/high' : 'qw0/qw1';
      const qw0 = hexWord(old[2]!);
      const qw1 = hexWord(old[3]!);
      if (qw0 && qw1) {
        const d = describeQiDescriptor([qw0, qw1]);
        e.details.head = d;
        e.device = d.device;
      }
      return events(e);
    }
    if (QI_CLEARED.test(body)) return 'context';
    const pte = PTE_ALREADY_SET.exec(body);
    if (pte) {
      const e = base(info, 'driver-error', 'vtd-pte-already-set');
      e.details.problem = 'PTE already set';
      e.details.vpfn = normalizeHex(pte[1]!);
      e.details.existing = normalizeHex(pte[2]!);
      e.details.requested = normalizeHex(pte[3]!);
      return events(e);
    }
    const cap = CAPABILITY.exec(body);
    if (cap) return events(capabilityEvent(cap, info));
    const dump = DUMP_START.exec(body);
    if (dump) {
      const e = base(info, 'page-walk', 'vtd-walk-dump');
      e.address = normalizeHex(dump[2]!);
      return { events: [e], more: new WalkDump(e, dump) };
    }
    const prq = pageRequest(body, info);
    if (prq) return prq;
    if ((msg.startsWith('DMAR') || msg.startsWith('dmar:')) && INFORMATIONAL.test(body)) return 'context';
    return null;
  }



  function capabilityEvent(m: RegExpExecArray, info: LineInfo): LogEvent {
    const e = base(info, 'capability', 'vtd-cap');
    // Kernels before 4.2 print `IOMMU <seq>:`; the unit's name was already `dmar<seq>` (dmar_alloc_seq_id).
    e.iommu = m[1] !== undefined ? `dmar${m[1]}` : m[2]!;
    const capWord = hexWord(m[6]!) ?? U64.ZERO;
    const ecapWord = hexWord(m[7]!) ?? U64.ZERO;
    const cap = decodeCap(capWord);
    const ecap = decodeEcap(ecapWord);
    const { otherBits: capOther, ...capFields } = cap;
    const { otherBits: ecapOther, ...ecapFields } = ecap;
    e.details = {
      registerBase: normalizeHex(m[3]!),
      version: `${m[4]}:${m[5]}`,
      cap: capWord.toString(),
      ecap: ecapWord.toString(),
      capFields,
      ecapFields,
      ...(capOther.isZero() ? {} : { capOtherBits: capOther.toString() }),
      ...(ecapOther.isZero() ? {} : { ecapOtherBits: ecapOther.toString() }),
      summary: {
        scalableMode: ecap.smts === 1,
        firstLevel: ecap.flts === 1,
        secondLevel: ecap.slts === 1,
        nested: ecap.nest === 1,
        passThrough: ecap.pt === 1,
        queuedInvalidation: ecap.qi === 1,
        deviceTlb: ecap.dt === 1,
        interruptRemapping: ecap.ir === 1,
        pageRequests: ecap.prs === 1,
        cachingMode: cap.cm === 1,
        pasidBits: ecap.pasid ? ecap.pss + 1 : 0,
        pasids: pasidCount(ecap),
        domains: domainCount(cap),
        maxGuestAddressWidth: maxGuestAddressWidth(cap),
        secondLevelWidths: supportedAgaws(cap),
        faultRecordingRegisters: faultRecordingCount(cap),
      },
    };
    return e;
  }

  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.startsWith('[VT-D]')) return xen(msg, info);
      if (msg.indexOf('Request device') !== -1 || msg.indexOf('[DMA R') !== -1 || msg.indexOf('[DMA W') !== -1 || msg.indexOf('INTR-REMAP') !== -1) {
        const r = kernelFault(msg, info);
        if (r) return r;
      }
      if (msg.indexOf('DMAR') !== -1 || msg.startsWith('dmar:')) {
        const r = other(msg, info);
        if (r) return r;
      }
      // Page-request messages have no `DMAR: ` prefix (svm.c and prq.c have no pr_fmt); 5.13's two name no unit either.
      if (msg.indexOf('dmar') !== -1 || msg.indexOf('IOMMU: ') !== -1 || msg.indexOf('page request') !== -1 || msg.indexOf('Execution request') !== -1) {
        const r = pageRequest(afterTag(msg), info);
        if (r) return r;
      }
      if (msg.indexOf('iopf with pasid') !== -1) {
        const a = IOPF_ABORTED.exec(msg);
        if (a) {
          const e = newEvent(info.lineNo, null, 'page-request', 'iommu-iopf-aborted');
          e.timestamp = info.timestamp;
          e.device = formatPciAddress(parsePciAddress(a[2]!)!);
          e.details.driver = a[1]!;
          // The PASID is printed with %d: IOMMU_NO_PASID (0) for a request without one.
          const pasid = Number(a[3]);
          if (pasid > 0 && pasid <= 0xf_ffff) e.pasid = pasid;
          e.details.problem = 'no handler took the fault; the group was answered with a failure';
          return events(e);
        }
      }
      const marked = msg.indexOf('MMU') !== -1 || msg.indexOf('mmu') !== -1 || msg.indexOf('DMAR') !== -1;
      return marked && INFORMATIONAL_OTHER.test(msg) ? 'context' : null;
    },
  };
}

import { faultReason } from '../core/vtd/fault-reasons';
import type { LogEvent } from './log-event';
import { readQemuEntry } from './log-explain-walk';

/**
 * Plain words for what QEMU's emulated VT-d prints (qemu-trace.ts): its error_report_once lines, from what
 * they print and what the code that prints them does (hw/i386/intel_iommu.c), and its fault traces, which
 * say whether the guest ever sees the fault.
 */

const hex2 = (n: number) => '0x' + n.toString(16).padStart(2, '0');

const ONCE = 'QEMU prints this line once per run (error_report_once): it shows the first time this happened, not how often.';

function request(e: LogEvent): string {
  const access = e.access === 'write' ? 'a write to' : e.access === 'read' ? 'a read of' : 'a request for';
  const pasid = e.details.pasidPrinted ? (e.pasid === null ? ' without a PASID' : ` with PASID ${e.pasid}`) : '';
  return `${access} ${e.address ?? 'an address'}${pasid}`;
}

function implied(e: LogEvent): string | null {
  const r = e.details.impliedReason as { code: number; text: string; qemu: string } | undefined;
  if (!r) return null;
  return `no code is printed; this path returns fault reason ${hex2(r.code)} "${r.text}" (${r.qemu}).`;
}

/** The explanation lines of a `qemu-error` event (the header is the caller's). */
export function qemuErrorLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  const error = String(d.error);
  const why = implied(e);
  if (error === 'detected slpte permission error') {
    const reading = typeof d.level === 'number' && typeof d.entry === 'string' ? readQemuEntry(d.level, d.entry, e.address, e.access, (d.impliedReason as { code: number } | undefined)?.code ?? null) : null;
    out.push(`  what:  QEMU's emulated IOMMU refused ${request(e)}${reading?.finding ? `: ${reading.finding}` : ' in its second-level walk.'}`);
    const r = d.impliedReason as { code: number; text: string; qemu: string } | undefined;
    out.push(`  why:   no code is printed; this path returns ${r ? `fault reason ${hex2(r.code)} "${r.text}" (${r.qemu})` : '"PTE Write access is not set" (0x05) for a write and "PTE Read access is not set" (0x06) for a read (this line\'s write= is out of range)'} for any entry without the permission the request needs, a not-present one included.`);
    if (reading?.check) out.push(`  next:  ${reading.check}`);
    out.push(`  note:  ${ONCE} The device is not printed: the "detected translation failure" line after it names it, and the guest's fault record (when QEMU records one) has this reason.`);
  } else if (error === 'detected translation failure') {
    out.push(`  what:  QEMU's emulated IOMMU could not translate ${e.address ?? 'an address'} for ${e.device ? `device ${e.device}` : 'a device'} (the line prints neither the access nor the reason).`);
    out.push('  why:   QEMU prints it after any failed translation; the reason is that of the walk error printed before it, when that one was printed at all, and of the guest\'s fault record, unless FPD suppressed the fault or QEMU did not record it.');
    out.push(`  note:  ${ONCE}`);
  } else if (error === 'detected IOVA overflow') {
    out.push(`  what:  QEMU's emulated IOMMU refused ${request(e)}: the address is above the domain's address width (the smaller of MGAW and the context or PASID entry's AW).`);
    if (why) out.push(`  why:   ${why}`);
    out.push('  next:  Check the device\'s DMA mask against the domain\'s width; a truncated or sign-extended address looks like this.');
    out.push(`  note:  ${ONCE}`);
  } else if (error.startsWith('detected read error on DMAR')) {
    out.push(`  what:  QEMU's emulated IOMMU could not read a page-table entry while translating ${request(e)}: a table pointer leads outside guest memory.`);
    out.push('  why:   QEMU returns "Invalid context entry" (0x03, VTD_FR_CONTEXT_ENTRY_INV) when the top-level table is unreadable and "Next page table ptr is invalid" (0x07, VTD_FR_PAGING_ENTRY_INV) below it; the line does not say which level.');
    out.push('  next:  Check the table pointers (SLPTPTR, the entries\' addresses) against the guest\'s memory: a freed or corrupted table page looks like this.');
    out.push(`  note:  ${ONCE}`);
  } else if (error.endsWith('reserve non-zero') || error.endsWith('reserved non-zero')) {
    const level = typeof d.level === 'number' ? `level-${d.level} ` : '';
    out.push(`  what:  QEMU's emulated IOMMU refused ${request(e)}: the ${level}entry ${typeof d.entry === 'string' ? `${d.entry} ` : ''}has reserved bits set.`);
    if (why) out.push(`  why:   ${why}`);
    const r = faultReason((d.impliedReason as { code: number } | undefined)?.code ?? -1);
    if (r) out.push(`  next:  ${r.check}`);
    out.push(`  note:  ${ONCE}`);
  } else if (error === 'invalid root entry' || error === 'invalid context entry' || error.endsWith('specified but not supported') || error === 'unknown ce type') {
    const entry = error === 'invalid root entry' ? 'root entry' : 'context entry';
    const printed = String(d.text);
    const level = /\(level (\d+) not supported\)/.exec(printed);
    const cause =
      error === 'invalid root entry' || /reserved nonzero/.test(printed)
        ? 'has reserved bits set'
        : level
          ? `asks for ${level[1]}-level page tables, which the unit does not support (CAP.SAGAW)`
          : error === 'unknown ce type'
            ? `has a translation type QEMU does not know (${printed})`
            : `asks for ${error.startsWith('DT') ? 'device-TLB (ATS) translation, which this unit does not offer (device-iotlb=off)' : 'pass-through, which this unit does not offer (pt=off)'}`;
    // The entry's words, without the cause QEMU appends to them.
    const words = /=/.test(printed) ? ` (${printed.replace(/\s*\((?:reserved nonzero|level \d+ not supported)\)$/, '')})` : '';
    out.push(`  what:  QEMU's emulated IOMMU refused a device's request: the ${entry} it uses ${cause}${words}.`);
    if (why) out.push(`  why:   ${why}`);
    out.push(`  next:  Check the ${entry} the guest wrote against the capabilities QEMU reports (CAP, ECAP).`);
    out.push(`  note:  ${ONCE}`);
  } else if (error === 'invalid inv desc') {
    out.push(`  what:  QEMU's emulated IOMMU rejected an invalidation descriptor (${String(d.text)}): it sets IQE, and the guest's driver reports an invalidation queue error.`);
    out.push('  next:  Check the descriptor\'s type and reserved bits against what QEMU\'s ECAP offers.');
  } else if (error === 'New fault is not recorded due to compression of faults') {
    out.push('  what:  QEMU dropped a fault: a fault of the same source id was still pending in a fault recording register (F set), and QEMU records only the first (the specification allows such compression).');
    out.push('  why:   the guest sees only the pending fault, until its handler clears that record; the faults in between are lost to it.');
    out.push(`  note:  ${ONCE} With -trace vtd_dmar_fault, the dropped faults are the ones no vtd_frr_new follows.`);
  } else if (error === 'New fault is not recorded due to Primary Fault Overflow') {
    out.push('  what:  QEMU dropped a fault: the fault status has PFO (primary fault overflow) set, so no fault is recorded until the guest clears it.');
    out.push(`  note:  ${ONCE} Every fault until then is lost to the guest.`);
  } else if (error === 'Next Fault Recording Reg is used, new fault is not recorded, set PFO field') {
    out.push('  what:  QEMU dropped a fault: the next fault recording register still held a fault the guest had not cleared, so QEMU set PFO (primary fault overflow).');
    out.push(`  note:  ${ONCE} Faults stay dropped until the guest clears PFO.`);
  } else if (error === 'There are pending faults already, fault event is not generated') {
    out.push('  what:  QEMU recorded a fault but raised no fault interrupt: PPF was already set, and the guest\'s handler reads all pending records when it runs.');
    out.push(`  note:  ${ONCE}`);
  } else if (error === 'There are previous interrupt conditions to be serviced by software, fault event is not generated') {
    out.push('  what:  QEMU raised no fault interrupt for a new condition: PPF, PFO or IQE was already set, so one interrupt is outstanding for them all.');
    out.push(`  note:  ${ONCE}`);
  } else if (error === 'Interrupt Mask set, irq is not generated') {
    out.push('  what:  QEMU raised no fault interrupt: the guest has masked fault events (FECTL.IM), so QEMU only sets IP; the interrupt follows when the guest unmasks.');
    out.push(`  note:  ${ONCE}`);
  } else out.push(`  what:  ${error} ${String(d.text)}`.trimEnd() + '.');
  if (Array.isArray(d.problems)) out.push(`  note:  not used: ${(d.problems as string[]).join('; ')}.`);
}

/**
 * A `vtd_dmar_fault` QEMU did not record (`details.recorded` false): one line, so that a storm of faults QEMU
 * compressed does not read as so many incidents the guest saw.
 */
export function unrecordedFaultLine(e: LogEvent): string {
  const reason = e.reason ? `, reason ${hex2(e.reason.code)}` : '';
  const access = e.access ? `${e.access} ` : '';
  return `line ${e.line}: Intel VT-d DMA fault of ${e.device ?? 'a device'} (${access}${e.address ?? 'an address'}${reason}) not recorded by QEMU: no vtd_frr_new follows (a fault of this source was pending, or the fault registers were full), so the guest does not see it.`;
}

/** The note on a fault QEMU traced: whether, and where, it recorded it for the guest. */
export function qemuTraceNote(e: LogEvent): string {
  const d = e.details;
  if (d.event === 'vtd_frr_new' || d.recorded === true) {
    const index = d.event === 'vtd_frr_new' ? d.index : d.recordIndex;
    return `  note:  QEMU recorded it in fault recording register ${String(index)} (vtd_frr_new): the guest's fault handler reads it there.`;
  }
  if (d.recorded === null) return '  note:  traced by QEMU\'s emulated IOMMU; whether QEMU recorded it for the guest the trace does not say (no vtd_frr_new in it so far: was that event traced?).';
  return '  note:  traced by QEMU\'s emulated IOMMU; the trace ends before it says whether QEMU recorded it (vtd_frr_new).';
}

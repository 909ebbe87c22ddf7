import { linuxFaultReason } from '../core/vtd/fault-reasons';
import { bdfToDevice, normalizeHex } from './hex';
import type { LogEvent } from './log-event';
import { type Continuation, type LineInfo, type ReadResult, MAX_JOINED, events } from './log-reader';
import { absorbReasonTail, base } from './vtd-line';

// Xen's VT-d fault lines (`(XEN) [VT-D]...`), with the reason line and the entries Xen prints after them.

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

export function xen(msg: string, info: LineInfo): ReadResult {
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

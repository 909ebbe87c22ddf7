import { formatPciAddress, parsePciAddress } from '../core/pci';
import { U64 } from '../core/u64';
import { hexNumber, hexWord, normalizeHex } from './hex';
import { newEvent, type EventKind, type LogEvent } from './log-event';
import { type Continuation, type LineInfo, type LineReader, type ReadResult, MAX_JOINED, events } from './log-reader';

/**
 * AMD-Vi event log messages (drivers/iommu/amd/iommu.c `iommu_print_event` and friends, amd_iommu.c before
 * 5.8), from the split `Event logged [` + body form to the per-device `pci_err` form with PCI segments. The
 * boundaries and the commits that make them are in docs/log-formats.md (AMD-Vi); those not pinned say why.
 */

export interface AmdEventType {
  /** event[1][31:28] */
  readonly code: number;
  readonly kind: EventKind;
  /** Plain words, for text output. */
  readonly meaning: string;
  readonly check: string;
}

const a = (code: number, kind: EventKind, meaning: string, check: string): AmdEventType => ({ code, kind, meaning, check });

/** Event types as the hardware writes them, named as Linux names them. */
export const AMD_EVENT_TYPES: Record<string, AmdEventType> = {
  ILLEGAL_DEV_TABLE_ENTRY: a(0x1, 'config-error', 'The device table entry (DTE) of the requester is invalid for this request (reserved bits, or a mode the request cannot use).', 'Look at the DTE dump below the event: V/TV, Mode, the page-table root and the guest (GV/GCR3) fields.'),
  IO_PAGE_FAULT: a(0x2, 'dma-fault', 'The IOMMU blocked the request: the I/O page table has no mapping with the needed permission.', 'Check that the address was mapped in this device\'s domain and not already unmapped; the flags say whether the page was present (PR) and whether it was a write (RW).'),
  DEV_TAB_HARDWARE_ERROR: a(0x3, 'hardware-error', 'The IOMMU got a bus error reading the device table.', 'Check the device table base (IVRS/MMIO) and the memory it points to.'),
  PAGE_TAB_HARDWARE_ERROR: a(0x4, 'hardware-error', 'The IOMMU got a bus error reading an I/O page table.', 'Look for freed or corrupted page-table pages of this domain.'),
  ILLEGAL_COMMAND_ERROR: a(0x5, 'invalidation-error', 'The IOMMU found an invalid command in its command buffer and stopped processing commands.', 'The command words are printed below (CMD[0..3]); a driver bug built it.'),
  COMMAND_HARDWARE_ERROR: a(0x6, 'hardware-error', 'The IOMMU got a bus error reading its command buffer.', 'Check the command buffer base and memory.'),
  IOTLB_INV_TIMEOUT: a(0x7, 'invalidation-error', 'An ATS invalidation sent to the device did not complete in time.', 'Check the device ATS implementation, its link state, and whether it was reset or removed during the invalidation.'),
  INVALID_DEVICE_REQUEST: a(0x8, 'config-error', 'The device sent a request it is not allowed to make (for example an ATS translation request or a PASID-tagged request that the DTE does not enable).', 'Compare what the device uses (ATS, PASID, PRI) with what the DTE enables.'),
  INVALID_PPR_REQUEST: a(0x9, 'page-request', 'The device sent a page request (PPR) that the IOMMU cannot accept.', 'Check that PRI is enabled for the device in the DTE and that the PASID is valid.'),
  RMP_PAGE_FAULT: a(0xd, 'dma-fault', 'The SEV-SNP reverse map check failed for the DMA target.', 'Check the RMP state of the page (shared vs guest-private) the device accessed.'),
  RMP_HW_ERROR: a(0xe, 'hardware-error', 'The IOMMU got an error reading the SEV-SNP reverse map table.', 'Check the RMP table setup.'),
};

/** The 12-bit flags field of an event entry (event[1][27:16]); meanings are those of IO_PAGE_FAULT. */
const FLAG_BITS: [string, number][] = [
  ['gn', 0x001],
  ['nx', 0x002],
  ['us', 0x004],
  ['i', 0x008],
  ['pr', 0x010],
  ['rw', 0x020],
  ['pe', 0x040],
  ['rz', 0x080],
  ['tr', 0x100],
];

export function decodeAmdFlags(flags: number): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const [name, bit] of FLAG_BITS) out[name] = (flags & bit) !== 0;
  return out;
}

const EVENT_AT = 'Event logged [';
const FIELD = /([A-Za-z_]+(?:\[\d\])?)=([^\s,\]]+)/g;
const NAME = /^([A-Z][A-Z_]{2,40})\b/;
/**
 * `<driver> <device>: AMD-Vi: ` (dev_fmt, and the strings of the first dev_err form), or `<driver> <device>: `
 * alone: after 1a21ee1aabf7 dropped `AMD-Vi: ` from the dev_err strings and before dev_fmt added it back.
 */
const PREFIX = /^(\S{1,64}) (\S{1,64}): (?:AMD-Vi: )?$/;
const DTE_LINE = /^(?:AMD-Vi:\s*)?DTE\[(\d)\]: ([0-9a-fA-F]{1,16})\s*$/;
const CMD_LINE = /^(?:AMD-Vi:\s*)?CMD\[(\d)\]: ([0-9a-fA-F]{1,8})\s*$/;
const CONTROL = /^Control Reg : 0x([0-9a-fA-F]{1,16})/;
const NOT_ATTACHED_DEVICE = /^device=([0-9a-fA-F:.]{7,12}) domain=0x([0-9a-fA-F]{1,4})/;
const COMPLETION_WAIT = /(?:IOMMU ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): )?Completion-Wait loop timed out/;
const INFORMATIONAL =
  /^(?:Found IOMMU|Extended features|Interrupt remapping enabled|Virtual APIC enabled|X2APIC enabled|IOMMU performance counters supported|Lazy IO\/TLB flushing enabled|IO\/TLB flush on unmap enabled|AMD IOMMUv2|Using global IVHD EFR|IOMMU SNP support|Initialized for Passthrough Mode|ivrs, add hid|GA log enabled|PPR log enabled|Guest translation enabled)/;

/** AMD prints the PCI address without a segment before 6.0 (b36a5b0f1ced "iommu/amd: Print PCI segment ID in error log messages"); the segment is then 0000. */
function pciText(text: string): string | null {
  const a = parsePciAddress(text);
  return a ? formatPciAddress(a) : null;
}

function dteFields(words: (U64 | undefined)[]): Record<string, unknown> {
  const [w0, w1, w2] = words;
  const out: Record<string, unknown> = {};
  if (w0) {
    out.v = w0.bit(0);
    out.tv = w0.bit(1);
    out.mode = w0.field(11, 9);
    out.pageTableRoot = new U64(w0.hi & 0xfffff, w0.lo & 0xffff_f000).toString();
    out.ppr = w0.bit(52);
    out.gv = w0.bit(55);
    out.glx = w0.field(57, 56);
    out.ir = w0.bit(61);
    out.iw = w0.bit(62);
  }
  if (w1) {
    out.domainId = w1.field(15, 0);
    out.iotlb = w1.bit(32);
  }
  if (w2) {
    out.iv = w2.bit(0);
    out.intTabLen = w2.field(4, 1);
    out.intCtl = w2.field(61, 60);
  }
  return out;
}

/** The lines an event prints after its `Event logged` line: Control Reg, the DTE, the bad command. */
class EventDump implements Continuation {
  done = false;
  private readonly dte: string[] = [];
  private readonly cmd: string[] = [];

  constructor(
    private readonly event: LogEvent,
    private readonly expect: 'dte' | 'cmd' | 'not-attached',
  ) {}

  absorb(msg: string): boolean {
    const body = bodyOf(msg);
    if (this.expect === 'not-attached') {
      const m = NOT_ATTACHED_DEVICE.exec(body.trim());
      if (!m) return false;
      this.done = true;
      this.event.device = pciText(m[1]!);
      this.event.details.domain = hexNumber(m[2]!) ?? null;
      return true;
    }
    if (this.expect === 'dte') {
      const c = CONTROL.exec(body);
      if (c) {
        this.event.details.controlRegister = normalizeHex(c[1]!);
        return true;
      }
      const d = DTE_LINE.exec(body);
      if (d) {
        this.dte[Number(d[1])] = d[2]!;
        this.event.details.dte = this.decodeDte();
        return true;
      }
    } else {
      const c = CMD_LINE.exec(body);
      if (c) {
        this.cmd[Number(c[1])] = c[2]!;
        this.event.details.command = this.cmd.map((w) => (w === undefined ? null : normalizeHex(w)));
        if (this.cmd.length === 4) this.done = true;
        return true;
      }
    }
    return false;
  }

  /**
   * Old kernels printed the 256-bit DTE as eight 32-bit words (`DTE[%d]: %08x`), later ones as four 64-bit words
   * (`DTE[%d]: %016llx`, as 5.10 and later do). Which release changed it is not pinned: no source of a kernel
   * with the 32-bit dump was found.
   */
  private decodeDte(): Record<string, unknown> {
    const narrow = this.dte.some((w) => w !== undefined && w.length <= 8) && this.dte.length > 4;
    const words: (U64 | undefined)[] = [];
    if (narrow) {
      for (let i = 0; i < 4; i++) {
        const lo = this.dte[2 * i];
        const hi = this.dte[2 * i + 1];
        words.push(lo !== undefined && hi !== undefined ? new U64(parseInt(hi, 16), parseInt(lo, 16)) : undefined);
      }
    } else {
      for (let i = 0; i < 4; i++) words.push(this.dte[i] !== undefined ? hexWord(this.dte[i]!) : undefined);
    }
    return { words: words.map((w) => (w ? w.toString() : null)), ...dteFields(words) };
  }
}

/** The message after any `<driver> <device>: ` and `AMD-Vi: ` prefixes. */
function bodyOf(msg: string): string {
  const at = msg.indexOf('AMD-Vi:');
  return at === -1 ? msg : msg.slice(at + 7).trimStart();
}

export function createAmdReader(): LineReader {
  function base(info: LineInfo, kind: EventKind, format: string): LogEvent {
    const e = newEvent(info.lineNo, 'amd', kind, format);
    e.timestamp = info.timestamp;
    return e;
  }

  function eventLine(msg: string, info: LineInfo): ReadResult {
    const at = msg.lastIndexOf(EVENT_AT);
    const head = msg.slice(0, at);
    let body = msg.slice(at + EVENT_AT.length).trim();
    // The decoder joins a wrapped line with a space: `[ IO_PAGE_FAULT` is the old split form.
    const after = msg.charCodeAt(at + EVENT_AT.length);
    const split = after === 32 || after === 9;
    const complete = body.endsWith(']') || /event\[3\]=0x[0-9a-fA-F]+$/.test(body);
    if (!complete) return body.length < MAX_JOINED ? 'partial' : null;
    if (body.endsWith(']')) body = body.slice(0, -1);

    // `<driver> <pci-address>: [AMD-Vi: ]` is the per-device form (pci_err); `iommu ivhd0: ` names the IOMMU.
    const prefix = PREFIX.exec(head.trimStart());
    const prefixDevice = prefix ? pciText(prefix[2]!) : null;
    const iommu = prefix && !prefixDevice ? prefix[2]! : null;

    if (body.startsWith('Device not attached to domain properly')) {
      const e = base(info, 'config-error', 'amd-not-attached');
      e.reason = { code: AMD_EVENT_TYPES.IO_PAGE_FAULT!.code, text: 'IO_PAGE_FAULT' };
      e.details.message = 'Device not attached to domain properly';
      return { events: [e], more: new EventDump(e, 'not-attached') };
    }
    const nameMatch = NAME.exec(body);
    if (!nameMatch) return null;
    const name = nameMatch[1]!;
    const fields: Record<string, string> = {};
    FIELD.lastIndex = 0;
    for (let m = FIELD.exec(body); m; m = FIELD.exec(body)) fields[m[1]!] = m[2]!;

    const type = AMD_EVENT_TYPES[name];
    let kind: EventKind = type ? type.kind : 'hardware-error';
    const flags = fields.flags !== undefined ? hexNumber(fields.flags) : undefined;
    if (name === 'IO_PAGE_FAULT' && flags !== undefined && (flags & 0x008) !== 0) kind = 'interrupt-fault';

    const device = fields.device !== undefined ? pciText(fields.device) : prefixDevice;
    const format = split
      ? 'amd-event-split'
      : fields.device !== undefined
        ? /^[0-9a-fA-F]{4}:/.test(fields.device) ? 'amd-event-seg' : 'amd-event-bdf'
        : prefixDevice !== null ? 'amd-event-per-device' : 'amd-event';
    const e = base(info, kind, format);
    e.device = device;
    e.iommu = iommu;
    e.reason = type ? { code: type.code, text: name } : null;
    if (!type) e.details.eventName = name;
    const address = fields.address ?? fields.gpa ?? fields.spa;
    if (address !== undefined) e.address = normalizeHex(address);
    if (flags !== undefined) {
      e.details.flags = normalizeHex(fields.flags!);
      e.details.flagBits = decodeAmdFlags(flags);
      // RW says read or write for memory requests; an interrupt request (I) has no such direction.
      const memoryRequest = name === 'IO_PAGE_FAULT' || name === 'RMP_PAGE_FAULT' || name === 'INVALID_DEVICE_REQUEST' || name === 'INVALID_PPR_REQUEST' || name === 'ILLEGAL_DEV_TABLE_ENTRY';
      if (memoryRequest && (flags & 0x008) === 0) e.access = (flags & 0x020) !== 0 ? 'write' : 'read';
    }
    // The event's 20-bit domain/PASID field is a PASID only when GN (guest) is set.
    const gn = flags !== undefined && (flags & 0x001) !== 0;
    if (fields.domain !== undefined) {
      const v = hexNumber(fields.domain);
      e.details.domain = v ?? null;
      if (gn && v !== undefined) e.pasid = v;
    }
    if (fields.pasid !== undefined) {
      const v = hexNumber(fields.pasid);
      e.details.pasidField = v ?? null;
      if ((gn || name === 'INVALID_PPR_REQUEST' || name === 'PAGE_TAB_HARDWARE_ERROR') && v !== undefined) e.pasid = v;
    }
    for (const key of ['tag', 'vmg_tag', 'flags_rmp']) if (fields[key] !== undefined) e.details[key === 'vmg_tag' ? 'vmgTag' : key === 'flags_rmp' ? 'flagsRmp' : key] = normalizeHex(fields[key]!);
    if (name === 'UNKNOWN') {
      const words = [0, 1, 2, 3].map((i) => fields[`event[${i}]`]);
      e.details.event = words.map((w) => (w === undefined ? null : normalizeHex(w)));
      const w1 = words[1] !== undefined ? hexNumber(words[1]) : undefined;
      if (w1 !== undefined) e.details.type = w1 >>> 28;
      if (fields.type !== undefined) e.details.type = hexNumber(fields.type) ?? null;
    }
    if (name === 'ILLEGAL_DEV_TABLE_ENTRY') return { events: [e], more: new EventDump(e, 'dte') };
    if (name === 'ILLEGAL_COMMAND_ERROR') return { events: [e], more: new EventDump(e, 'cmd') };
    return events(e);
  }

  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.indexOf(EVENT_AT) !== -1) return eventLine(msg, info);
      if (msg.indexOf('AMD-Vi') === -1) return null;
      const body = bodyOf(msg);
      const cw = COMPLETION_WAIT.exec(body);
      if (cw) {
        const e = base(info, 'invalidation-error', 'amd-completion-wait');
        e.iommu = cw[1] ? pciText(cw[1]) : null;
        e.details.error = 'completion-wait timeout';
        return events(e);
      }
      if (body.startsWith('No event written to event log')) {
        const e = base(info, 'hardware-error', 'amd-no-event');
        e.details.error = 'no event written';
        return events(e);
      }
      if (INFORMATIONAL.test(body)) return 'context';
      return null;
    },
  };
}

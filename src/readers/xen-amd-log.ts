import { AMD_EVENT_TYPES, decodeAmdFlags } from './amd-log';
import { bdfToDevice, normalizeHex, ridToDevice } from './hex';
import { newEvent, type LogEvent } from './log-event';
import { type LineInfo, type LineReader, type ReadResult, events } from './log-reader';

/**
 * AMD-Vi event log entries as Xen's AMD IOMMU driver prints them on its console
 * (xen/drivers/passthrough/amd/iommu_init.c, parse_event_log_entry()): Xen's own formats, not Linux's.
 *
 * - IO_PAGE_FAULT, Xen 4.14 and later (680d18763a "AMD/IOMMU: Render IO_PAGE_FAULT errors in a more
 *   useful manner"): `AMD-Vi: %s: %pp d%u addr %016"PRIx64" flags %#x` and the set flags spelled out
 *   (` TR RZ PE RW PR I US NX GN`, ` ??` for reserved bits). `%pp` is `SSSS:BB:DD.F`.
 * - IO_PAGE_FAULT up to Xen 4.13: `AMD-Vi: %s: domain = %d, device id = %#x, fault address =
 *   %#"PRIx64", flags = %#x` (4.3: 65feab74d7 "amd iommu: dump flags of IO page faults" added the flags,
 *   8a858447e9 "printk: prefer %#x et at over 0x%x" the `%#x`), and before 4.3 `device id = 0x%04x,
 *   fault address = 0x%"PRIx64"` without flags. The device id is a requester ID, the segment unprinted.
 * - Every other event: its name (Xen's: DEV_TABLE_HW_ERROR, PAGE_TABLE_HW_ERROR, COMMAND_HW_ERROR,
 *   INVALID_DEV_REQUEST, or `event` for a code Xen has no name for) and the four raw words, `%s %08x %08x
 *   %08x %08x`; since Xen 4.14 always (b0282a69f4 "AMD/IOMMU: Always print IOMMU errors"), before only
 *   with iommu=debug and after `AMD-Vi: `. The words are decoded as Linux's iommu_print_event() does.
 *
 * `reason.text` is the Linux name of the code (what the Linux formats print), with Xen's in
 * `details.printedName` when it differs. The `d%u` / `domain = %d` field is the DTE's domain ID, which in
 * Xen is the domain; it is a PASID only when the GN flag is set.
 */

const PAGE_FAULT = /^AMD-Vi: (IO_PAGE_FAULT): ([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7]) d(\d{1,5}) addr ([0-9a-fA-F]{16}) flags (0x[0-9a-fA-F]{1,3}|0)((?: (?:\?\?|TR|RZ|PE|RW|PR|I|US|NX|GN)){0,10})\s*$/;
const PAGE_FAULT_OLD = /^AMD-Vi: (IO_PAGE_FAULT): domain = (\d{1,5}), device id = (0x[0-9a-fA-F]{1,4}|0), fault address = (0x[0-9a-fA-F]{1,16}|0)(?:, flags = (0x[0-9a-fA-F]{1,3}|0))?\s*$/;
const RAW_EVENT =
  /^(?:AMD-Vi: )?(ILLEGAL_DEV_TABLE_ENTRY|IO_PAGE_FAULT|DEV_TABLE_HW_ERROR|PAGE_TABLE_HW_ERROR|ILLEGAL_COMMAND_ERROR|COMMAND_HW_ERROR|IOTLB_INV_TIMEOUT|INVALID_DEV_REQUEST|event) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8})\s*$/;

/** Linux's name for each event code. */
const NAME_OF_CODE: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(AMD_EVENT_TYPES).map(([name, t]) => [t.code, name]));
/** Events whose entry names a device in event[0][15:0] (the others hold a command address). */
const NAMES_DEVICE = new Set(['ILLEGAL_DEV_TABLE_ENTRY', 'IO_PAGE_FAULT', 'DEV_TAB_HARDWARE_ERROR', 'PAGE_TAB_HARDWARE_ERROR', 'IOTLB_INV_TIMEOUT', 'INVALID_DEVICE_REQUEST', 'INVALID_PPR_REQUEST']);
/** Events whose entry has flags in event[1][27:16] (as Linux prints them). */
const HAS_FLAGS = new Set(['ILLEGAL_DEV_TABLE_ENTRY', 'IO_PAGE_FAULT', 'DEV_TAB_HARDWARE_ERROR', 'PAGE_TAB_HARDWARE_ERROR', 'COMMAND_HARDWARE_ERROR', 'INVALID_DEVICE_REQUEST', 'INVALID_PPR_REQUEST']);
/** Memory requests, whose RW flag is a direction when the I (interrupt) flag is clear. */
const MEMORY_REQUEST = new Set(['IO_PAGE_FAULT', 'RMP_PAGE_FAULT', 'INVALID_DEVICE_REQUEST', 'INVALID_PPR_REQUEST', 'ILLEGAL_DEV_TABLE_ENTRY']);

/** Kind, access, flags and PASID of an event from its flags and 20-bit domain/PASID field. */
function applyFlags(e: LogEvent, name: string, flags: number, field: number | null): void {
  e.details.flags = normalizeHex(flags.toString(16));
  e.details.flagBits = decodeAmdFlags(flags);
  const interrupt = (flags & 0x008) !== 0;
  if (name === 'IO_PAGE_FAULT' && interrupt) e.kind = 'interrupt-fault';
  if (MEMORY_REQUEST.has(name) && !interrupt) e.access = (flags & 0x020) !== 0 ? 'write' : 'read';
  const gn = (flags & 0x001) !== 0;
  if (field !== null && (gn || name === 'INVALID_PPR_REQUEST' || name === 'PAGE_TAB_HARDWARE_ERROR')) e.pasid = field;
}

export function createXenAmdReader(): LineReader {
  function base(info: LineInfo, name: string | undefined, format: string): LogEvent {
    const type = name !== undefined ? AMD_EVENT_TYPES[name] : undefined;
    const e = newEvent(info.lineNo, 'amd', type ? type.kind : 'hardware-error', format);
    e.timestamp = info.timestamp;
    e.reason = type ? { code: type.code, text: name! } : null;
    return e;
  }

  return {
    read(msg: string, info: LineInfo): ReadResult {
      const c = msg.charCodeAt(0);
      // Every line this reader knows starts with `AMD-Vi: ` or an upper-case event name or `event `.
      if (!((c >= 65 && c <= 90) || msg.startsWith('event '))) return null;
      const pf = PAGE_FAULT.exec(msg);
      if (pf) {
        const e = base(info, 'IO_PAGE_FAULT', 'xen-amd-vi');
        e.device = bdfToDevice(pf[3]!, pf[4]!, pf[5]!, pf[2]!);
        e.details.domain = Number(pf[6]);
        e.address = normalizeHex(pf[7]!);
        const flags = parseInt(pf[8]!, 16);
        applyFlags(e, 'IO_PAGE_FAULT', flags, Number(pf[6]));
        const printed = pf[9]!.trim();
        if (printed !== '') e.details.printedFlags = printed.split(' ');
        return events(e);
      }
      const old = PAGE_FAULT_OLD.exec(msg);
      if (old) {
        const e = base(info, 'IO_PAGE_FAULT', 'xen-amd-vi-old');
        const rid = parseInt(old[3]!, 16);
        if (rid <= 0xffff) e.device = ridToDevice(rid);
        e.details.domain = Number(old[2]);
        e.address = normalizeHex(old[4]!);
        if (old[5] !== undefined) applyFlags(e, 'IO_PAGE_FAULT', parseInt(old[5], 16), Number(old[2]));
        return events(e);
      }
      const raw = RAW_EVENT.exec(msg);
      if (raw) {
        const words = [raw[2]!, raw[3]!, raw[4]!, raw[5]!].map((w) => parseInt(w, 16));
        const code = words[1]! >>> 28;
        const name = NAME_OF_CODE[code];
        const e = base(info, name, 'xen-amd-vi-event');
        e.details.event = [raw[2]!, raw[3]!, raw[4]!, raw[5]!].map((w) => normalizeHex(w));
        if (name === undefined || raw[1] !== name) e.details.printedName = raw[1]!;
        if (name === undefined) {
          e.details.type = code;
          return events(e);
        }
        const field = (words[0]! & 0xf0000) | (words[1]! & 0xffff);
        if (NAMES_DEVICE.has(name)) e.device = ridToDevice(words[0]! & 0xffff);
        e.details.pasidField = field;
        if (HAS_FLAGS.has(name)) applyFlags(e, name, (words[1]! >>> 16) & 0xfff, field);
        e.address = normalizeHex(raw[5]! + raw[4]!);
        return events(e);
      }
      return null;
    },
  };
}

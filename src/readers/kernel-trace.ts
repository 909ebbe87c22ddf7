import { formatPciAddress, parsePciAddress } from '../core/pci';
import type { U64 } from '../core/u64';
import { hexNumber, hexWord, normalizeHex, ridToDevice } from './hex';
import { newEvent, type EventKind, type LogEvent } from './log-event';
import { type LineInfo, type LineReader, MAX_JOINED, type ReadResult, events } from './log-reader';
import { describeQiDescriptor, qiTypeFromTraceName } from './vtd-descriptors';

/**
 * The kernel's `intel_iommu:*` tracepoints (drivers/iommu/intel/trace.h; include/trace/events/intel_iommu.h
 * in 5.10, moved before 6.1) and generic `iommu:*` tracepoints (include/trace/events/iommu.h), as ftrace
 * (`/sys/kernel/tracing/trace`), `trace-cmd report` and `perf script` print them. Their ranges:
 * - `qi_submit` from 5.12: f2dd871799ba "iommu/vt-d: Add qi_submit trace event" (checked: a later Fixes: tag,
 *   the linux-next revision list, "IOMMU Updates" of 5.12; 5.10 has no trace_qi_submit, 6.1 has it);
 * - `prq_report` from 5.14: e93a67f5a0ee "iommu/vt-d: Add prq_report trace event" (Lu Baolu's 5.14 batch; the
 *   patch mail quotes the format, 6.1 and 6.12 print it the same); ` private=0x%llx/0x%llx` follows when the
 *   request's qw0 bit 9 (rev 3.x private data present) is set, still so in 6.12;
 * - `cache_tag_*` from 6.10: 446a68c58d2e "iommu/vt-d: Add trace events for cache tag interface" (checked: the
 *   linux-next list of the 6.10 cache-tag series; 6.12 has all five);
 * - `map`/`unmap` print the end of the range (`iova=0x%016llx - 0x%016llx`) from 5.17: 94aedac49d92 "iommu: Log
 *   iova range in map/unmap trace events" (checked: its patch mail quotes both formats, Joerg Roedel's pull of
 *   December 2021 lists it); before, `iova=0x%016llx paddr=...` and `iova=0x%016llx size=...`; both are read;
 * - `detach_device_from_domain` up to 6.2: 1b932ceddd19 "iommu: Remove detach_dev callbacks" removed it
 *   (checked: its series' diffs; 6.1 calls trace_detach_device_from_domain(), 6.12 does not);
 * - `io_page_fault` comes from report_iommu_fault(), which intel-iommu never calls (AMD-Vi, SMMUv2 and others
 *   do); the other generic events go back to the IOMMU tracing of ~3.13 (not pinned).
 * 5.4-5.10 also had `intel_iommu:map_single`/`map_sg`/`unmap_*`/`bounce_*` (5.10 iommu.c calls them; 6.1 does
 * not); they are not read here and count as unrecognised.
 */

// `<comm>-<pid> [cpu] <flags> <ts>: <event>: <text>` (ftrace, trace-cmd) or `<comm> <pid> [cpu] <ts>:
// <system>:<event>: <text>` (perf script).
/** The tracepoints read here: a line of one whose fields do not parse may be cut short by a wrap. */
const EVENT_NAMES = new Set([
  'qi_submit', 'prq_report', 'cache_tag_assign', 'cache_tag_unassign', 'cache_tag_flush_all', 'cache_tag_flush_range',
  'cache_tag_flush_range_np', 'map', 'unmap', 'add_device_to_group', 'remove_device_from_group', 'attach_device_to_domain',
  'detach_device_from_domain', 'io_page_fault',
]);
/** A trace line's header up to the timestamp, with the event name wrapped onto the next line. */
const HEAD_ONLY = /^.{1,64}?(?:-|\s+)\d{1,8}\s+(?:\(\s*[\d-]{1,8}\)\s+)?\[\d{1,4}\]\s+(?:[\w.]{4,6}\s+)?\d{1,12}\.\d{1,9}:\s*$/;
const LINE = /^(.{1,64}?)(?:-|\s+)(\d{1,8})\s+(?:\(\s*[\d-]{1,8}\)\s+)?\[(\d{1,4})\]\s+(?:[\w.]{4,6}\s+)?(\d{1,12}\.\d{1,9}):\s+(?:(\w{1,32}):)?(\w{1,48}):\s*(.*)$/;

const QI_SUBMIT = /^(\w{1,16}) (\S{1,32}): 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16})/;
const PRQ_REPORT = /^(\S{1,32})\/(\S{1,64}) seq# (\d{1,20}): rid=0x([0-9a-fA-F]{1,4}) addr=0x([0-9a-fA-F]{1,16}) ([r-])([w-])([x-])([p-])([l-]) pasid=0x([0-9a-fA-F]{1,5}) index=0x([0-9a-fA-F]{1,3})(?: private=0x([0-9a-fA-F]{1,16})\/0x([0-9a-fA-F]{1,16}))?/;
const CACHE_TAG = /^(\S{1,32})\/(\S{1,64}) type (\w{1,20}) did (-?\d{1,6}) pasid (-?\d{1,10}) ref (-?\d{1,10})/;
const CACHE_FLUSH = /^(\S{1,32}) (\S{1,64})\[(-?\d{1,10})\] type (\w{1,20}) did (-?\d{1,6})\s+\[0x([0-9a-fA-F]{1,16})-0x([0-9a-fA-F]{1,16})\] addr 0x([0-9a-fA-F]{1,16}) pages 0x([0-9a-fA-F]{1,16}) mask 0x([0-9a-fA-F]{1,4})/;
const MAP = /^IOMMU: iova=0x([0-9a-fA-F]{1,16})(?: - 0x([0-9a-fA-F]{1,16}))? paddr=0x([0-9a-fA-F]{1,16}) size=(\d{1,20})/;
const UNMAP = /^IOMMU: iova=0x([0-9a-fA-F]{1,16})(?: - 0x([0-9a-fA-F]{1,16}))? size=(\d{1,20}) unmapped_size=(\d{1,20})/;
const DEVICE_EVENT = /^IOMMU: (?:groupID=(\d{1,10}) )?device=(\S{1,64})/;
const IO_PAGE_FAULT = /^IOMMU:(\S{1,64}) (\S{1,64}) iova=0x([0-9a-fA-F]{1,16}) flags=0x([0-9a-fA-F]{1,4})/;

function pciDevice(name: string): string | null {
  const a = parsePciAddress(name);
  return a ? formatPciAddress(a) : null;
}

export function createKernelTraceReader(): LineReader {
  function read(msg: string, info: LineInfo): ReadResult {
    if (msg.indexOf('[') === -1) return null;
    const m = LINE.exec(msg);
    if (!m) return HEAD_ONLY.test(msg) ? 'partial' : null;
    const r = decode(m, info);
    // A known tracepoint whose fields do not parse is taken as cut short: the decoder offers it its next line.
    return r === null && EVENT_NAMES.has(m[6]!) && msg.length < MAX_JOINED ? 'partial' : r;
  }
  return { read };
}

function decode(m: RegExpExecArray, info: LineInfo): ReadResult {
  const name = m[6]!;
  const text = m[7]!;
  const mk = (vendor: LogEvent['vendor'], kind: EventKind, format: string): LogEvent => {
    const e = newEvent(info.lineNo, vendor, kind, format);
    e.timestamp = m[4]!;
    e.details.event = name;
    e.details.task = `${m[1]!.trim()}-${m[2]}`;
    e.details.cpu = Number(m[3]);
    return e;
  };
  switch (name) {
    case 'qi_submit': {
      const q = QI_SUBMIT.exec(text);
      if (!q) return null;
      // trace.h prints the type name first; accept the opposite order too.
      const [typeName, iommu] = qiTypeFromTraceName(q[1]!) !== undefined || q[1] === 'UNKNOWN' ? [q[1]!, q[2]!] : [q[2]!, q[1]!];
      const words = [q[3]!, q[4]!, q[5]!, q[6]!].map((w) => hexWord(w));
      if (words.some((w) => !w)) return null;
      const d = describeQiDescriptor(words as U64[]);
      const e = mk('intel', 'invalidation', 'ftrace-intel-iommu');
      e.iommu = iommu;
      e.device = d.device;
      e.pasid = d.pasid;
      e.address = d.address;
      e.details.descriptor = d;
      if (typeName !== d.traceName) e.details.printedType = typeName;
      return events(e);
    }
    case 'prq_report': {
      const p = PRQ_REPORT.exec(text);
      if (!p) return null;
      const e = mk('intel', 'page-request', 'ftrace-intel-iommu');
      e.iommu = p[1]!;
      e.device = pciDevice(p[2]!) ?? ridToDevice(parseInt(p[4]!, 16));
      e.details.seq = Number(p[3]);
      e.details.rid = parseInt(p[4]!, 16);
      // prq_report prints the page frame (descriptor bits 63:12), not the byte address.
      e.address = pageToAddress(p[5]!);
      e.access = p[8] === 'x' ? 'exec' : p[7] === 'w' ? 'write' : p[6] === 'r' ? 'read' : null;
      e.details.privileged = p[9] === 'p';
      e.details.lastPage = p[10] === 'l';
      e.pasid = parseInt(p[11]!, 16);
      e.details.prgIndex = parseInt(p[12]!, 16);
      if (p[13] !== undefined) e.details.privateData = [normalizeHex(p[13]), normalizeHex(p[14]!)];
      return events(e);
    }
    case 'cache_tag_assign':
    case 'cache_tag_unassign':
    case 'cache_tag_flush_all': {
      const c = CACHE_TAG.exec(text);
      if (!c) return null;
      const e = mk('intel', name === 'cache_tag_flush_all' ? 'invalidation' : 'cache-tag', 'ftrace-intel-iommu');
      e.iommu = c[1]!;
      e.device = pciDevice(c[2]!);
      e.details.type = c[3]!;
      e.details.did = Number(c[4]);
      e.details.ref = Number(c[6]);
      // The tag of the RID itself uses IOMMU_NO_PASID (0).
      const pasid = Number(c[5]);
      e.pasid = pasid > 0 ? pasid : null;
      return events(e);
    }
    case 'cache_tag_flush_range':
    case 'cache_tag_flush_range_np': {
      const c = CACHE_FLUSH.exec(text);
      if (!c) return null;
      const e = mk('intel', 'invalidation', 'ftrace-intel-iommu');
      e.iommu = c[1]!;
      e.device = pciDevice(c[2]!);
      const pasid = Number(c[3]);
      e.pasid = pasid > 0 ? pasid : null;
      e.details.type = c[4]!;
      e.details.did = Number(c[5]);
      e.details.start = normalizeHex(c[6]!);
      e.details.end = normalizeHex(c[7]!);
      e.address = normalizeHex(c[8]!);
      e.details.pages = hexNumber(c[9]!) ?? null;
      e.details.mask = hexNumber(c[10]!) ?? null;
      return events(e);
    }
    case 'map': {
      const p = MAP.exec(text);
      if (!p) return null;
      const e = mk(null, 'map', 'ftrace-iommu');
      e.address = normalizeHex(p[1]!);
      if (p[2] !== undefined) e.details.end = normalizeHex(p[2]);
      e.details.paddr = normalizeHex(p[3]!);
      e.details.size = Number(p[4]);
      return events(e);
    }
    case 'unmap': {
      const p = UNMAP.exec(text);
      if (!p) return null;
      const e = mk(null, 'unmap', 'ftrace-iommu');
      e.address = normalizeHex(p[1]!);
      if (p[2] !== undefined) e.details.end = normalizeHex(p[2]);
      e.details.size = Number(p[3]);
      e.details.unmappedSize = Number(p[4]);
      return events(e);
    }
    case 'add_device_to_group':
    case 'remove_device_from_group':
    case 'attach_device_to_domain':
    case 'detach_device_from_domain': {
      const p = DEVICE_EVENT.exec(text);
      if (!p) return null;
      const e = mk(null, 'attach', 'ftrace-iommu');
      e.device = pciDevice(p[2]!);
      e.details.deviceName = p[2]!;
      if (p[1] !== undefined) e.details.group = Number(p[1]);
      return events(e);
    }
    case 'io_page_fault': {
      const p = IO_PAGE_FAULT.exec(text);
      if (!p) return null;
      const e = mk(null, 'dma-fault', 'ftrace-iommu');
      e.details.driver = p[1]!;
      e.device = pciDevice(p[2]!);
      e.address = normalizeHex(p[3]!);
      const flags = hexNumber(p[4]!) ?? 0;
      e.details.flags = normalizeHex(p[4]!);
      // IOMMU_FAULT_READ is 0, IOMMU_FAULT_WRITE is 1.
      e.access = (flags & 1) !== 0 ? 'write' : 'read';
      return events(e);
    }
    default:
      return null;
  }
}

/** `0x` + hex of a page frame number shifted left by 12, without going through a lossy number. */
function pageToAddress(pfnHex: string): string | null {
  const n = normalizeHex(pfnHex);
  if (n === null) return null;
  return n === '0x0' ? '0x0' : normalizeHex(n.slice(2) + '000');
}

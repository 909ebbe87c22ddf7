import { linuxFaultReason } from '../core/vtd/fault-reasons';
import { bdfToDevice, hexNumber, normalizeHex, ridToDevice } from './hex';
import { newEvent, type EventKind } from './log-event';
import { type LineInfo, type LineReader, type ReadResult, events } from './log-reader';

/**
 * QEMU's intel-iommu trace events (hw/i386/trace-events, `-trace 'vtd_*'`) as the log backend prints
 * them: `vtd_<event> <formatted text>`, with `<pid>@<sec>.<usec>:` in front when timestamps are on. Every
 * vtd_* event is recognised; the ones a fault-queue view needs are decoded into the common fields.
 * Also QEMU's own error_report lines about VT-d translation failures.
 */

const TRACE = /^(?:(\d{1,10})@(\d{1,12}\.\d{1,9}):)?(vtd_[a-z0-9_]{1,64})(?:\s(.*))?$/;
const ERROR_REPORT = /^(?:qemu-system-\S{1,32}: )?(?:\S{1,64}: )?(detected translation failure|detected slpte permission error|detected IOVA overflow|invalid inv desc)\b(.*)$/;
const PAIRS = /\b(sid|source id|domain|addr|mask|pasid|iova|gpa|index|slpte|level|high|low|hi|lo|perm|gen|data|value|size|granularity|fault|write|status)[ =](0x[0-9a-fA-F]{1,16}|-?\d{1,20})/g;
const DEV = /\b(?:dev|device|Device)[:= ]\s*([0-9a-fA-F]{2}):([0-9a-fA-F]{2})[.:]([0-9a-fA-F]{2}|[0-7])\b/;
const BUS_DEVFN = /\bbus (0x[0-9a-fA-F]{1,2}|\d{1,3}) devfn (0x[0-9a-fA-F]{1,2}|\d{1,3})\b/;

/** Event name prefixes and the kind each family is. */
const FAMILIES: [string, EventKind][] = [
  ['vtd_dmar_fault', 'dma-fault'],
  ['vtd_inv_qi', 'register'],
  ['vtd_inv_', 'invalidation'],
  ['vtd_pasid_cache', 'invalidation'],
  ['vtd_context_cache_reset', 'invalidation'],
  ['vtd_iotlb_reset', 'invalidation'],
  ['vtd_warn_invalid_qi', 'invalidation'],
  ['vtd_dmar_translate', 'translation'],
  ['vtd_translate', 'translation'],
  ['vtd_iotlb', 'translation'],
  ['vtd_page_walk', 'translation'],
  ['vtd_re_', 'translation'],
  ['vtd_ce_', 'translation'],
  ['vtd_pt_', 'translation'],
  ['vtd_replay', 'attach'],
  ['vtd_switch_address_space', 'attach'],
  ['vtd_as_', 'attach'],
  ['vtd_device_', 'attach'],
  ['vtd_ir_', 'interrupt'],
  ['vtd_irq', 'interrupt'],
  ['vtd_warn_ir', 'interrupt'],
  ['vtd_reg_', 'register'],
  ['vtd_fsts', 'register'],
  ['vtd_frr', 'register'],
  ['vtd_dmar_enable', 'register'],
  ['vtd_reset', 'register'],
];

function kindOf(name: string): EventKind {
  for (const [prefix, kind] of FAMILIES) if (name.startsWith(prefix)) return kind;
  return 'trace';
}

/** Fields that hold addresses or 64-bit words: kept as hex text, exact at any width. */
const WORDS = new Set(['addr', 'iova', 'gpa', 'slpte', 'high', 'low', 'hi', 'lo', 'value']);

function value(key: string, text: string): number | string {
  // A decimal beyond 2^53 would come back as other digits than were printed: keep it as text.
  if (!text.startsWith('0x')) return Number.isSafeInteger(Number(text)) ? Number(text) : text;
  return WORDS.has(key) ? (normalizeHex(text) ?? text) : (hexNumber(text) ?? normalizeHex(text) ?? text);
}

export function createQemuTraceReader(): LineReader {
  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.indexOf('vtd_') === -1) return null;
      const m = TRACE.exec(msg);
      if (!m) return errorReport(msg, info);
      const name = m[3]!;
      const text = (m[4] ?? '').trim();
      const e = newEvent(info.lineNo, 'intel', kindOf(name), 'qemu-trace');
      e.timestamp = m[2] ?? info.timestamp;
      const fields: Record<string, number | string> = {};
      PAIRS.lastIndex = 0;
      for (let p = PAIRS.exec(text); p; p = PAIRS.exec(text)) {
        const key = p[1] === 'source id' ? 'sid' : p[1]!;
        if (!(key in fields)) fields[key] = value(key, p[2]!);
      }
      e.details = { event: name, text, ...(m[1] !== undefined ? { pid: Number(m[1]) } : {}), ...fields };
      const dev = DEV.exec(text);
      const busDevfn = BUS_DEVFN.exec(text);
      if (dev) e.device = bdfToDevice(dev[1]!, dev[2]!, String(parseInt(dev[3]!, 16)));
      // A source id is 16 bits: a wider number is no device (masking it would make one up).
      else if (typeof fields.sid === 'number' && fields.sid >= 0 && fields.sid <= 0xffff) e.device = ridToDevice(fields.sid);
      else if (busDevfn) {
        const bus = Number(busDevfn[1]);
        const devfn = Number(busDevfn[2]);
        if (bus <= 0xff && devfn <= 0xff) e.device = ridToDevice((bus << 8) | devfn);
      }
      // QEMU traces PCI_NO_PASID (-1) as 0xffffffff.
      if (typeof fields.pasid === 'number' && fields.pasid !== 0xffffffff) e.pasid = fields.pasid;
      const iova = /\biova (0x[0-9a-fA-F]{1,16})/.exec(text) ?? /\baddr (0x[0-9a-fA-F]{1,16})/.exec(text);
      if (iova && name !== 'vtd_reg_read' && name !== 'vtd_reg_write' && !name.startsWith('vtd_irq') && !name.startsWith('vtd_ir_')) e.address = normalizeHex(iova[1]!);
      if (name === 'vtd_dmar_fault' && typeof fields.fault === 'number' && fields.fault >= 0 && fields.fault <= 0xff) {
        // QEMU traces the reason in decimal.
        e.reason = { code: fields.fault, text: linuxFaultReason(fields.fault).text };
        e.access = fields.write === 1 ? 'write' : 'read';
      }
      return events(e);
    },
  };
}

function errorReport(msg: string, info: LineInfo): ReadResult {
  const m = ERROR_REPORT.exec(msg);
  if (!m) return null;
  const invalidation = m[1] === 'invalid inv desc';
  const e = newEvent(info.lineNo, 'intel', invalidation ? 'invalidation-error' : 'dma-fault', 'qemu-error');
  e.timestamp = info.timestamp;
  const rest = m[2]!;
  e.details = { error: m[1]!, text: rest.trim() };
  const dev = /dev=([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})/.exec(rest);
  if (dev) e.device = bdfToDevice(dev[1]!, dev[2]!, String(parseInt(dev[3]!, 16)));
  const iova = /iova=0x([0-9a-fA-F]{1,16})/.exec(rest);
  if (iova) e.address = normalizeHex(iova[1]!);
  const pasid = /pasid=0x([0-9a-fA-F]{1,8})/.exec(rest);
  if (pasid && parseInt(pasid[1]!, 16) !== 0xffffffff) e.pasid = parseInt(pasid[1]!, 16);
  const write = /write=(\d)/.exec(rest);
  if (write) e.access = write[1] === '1' ? 'write' : 'read';
  return events(e);
}

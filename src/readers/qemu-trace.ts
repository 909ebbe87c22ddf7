import { U64 } from '../core/u64';
import { linuxFaultReason } from '../core/vtd/fault-reasons';
import { bdfToDevice, hexNumber, hexWord, normalizeHex, ridToDevice } from './hex';
import { newEvent, type EventKind, type LogEvent } from './log-event';
import { type Continuation, type LineInfo, type LineReader, MAX_JOINED, type ReadResult, events } from './log-reader';
import { describeQiDescriptor } from './vtd-descriptors';

/**
 * QEMU's intel-iommu trace events (hw/i386/trace-events, `-trace 'vtd_*'`) as the log backend prints
 * them: `vtd_<event> <formatted text>`, with `<pid>@<sec>.<usec>:` in front when timestamps are on. Every
 * vtd_* event is recognised; the ones a fault-queue view needs are decoded into the common fields.
 * Also QEMU's own error_report lines of its VT-d translation and fault-recording paths (see errorReport).
 *
 * Every number is checked against the range its format can print (`%d` of an int can be negative, a
 * 16-bit `PRIx16` cannot exceed 0xffff): a value out of range is kept as printed, named in
 * `details.problems`, and used for nothing.
 */

const TRACE = /^(?:(\d{1,10})@(\d{1,12}\.\d{1,9}):)?(vtd_[a-z0-9_]{1,64})(?:\s(.*))?$/;
const PAIRS = /\b(sid|source id|domain|addr|mask|pasid|iova|gpa|index|slpte|level|high|low|hi|lo|perm|gen|data|value|size|granularity|fault|write|status)[ =](0x[0-9a-fA-F]{1,16}|-?\d{1,20})/g;
const DEV = /\b(?:dev|device|Device)[:= ]\s*([0-9a-fA-F]{2}):([0-9a-fA-F]{2})[.:]([0-9a-fA-F]{2}|[0-7])\b/;
const BUS_DEVFN = /\bbus (0x[0-9a-fA-F]{1,2}|\d{1,3}) devfn (0x[0-9a-fA-F]{1,2}|\d{1,3})\b/;

/** Event name prefixes and the kind each family is. */
const FAMILIES: [string, EventKind][] = [
  ['vtd_dmar_fault', 'dma-fault'],
  ['vtd_frr_new', 'dma-fault'],
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

/**
 * The largest value each small field's format can print (trace-events: `uint16_t sid` as PRIx16, `int fault`
 * as %d, `bool is_write` as %d, `uint32_t pasid`...). `fault` is a VT-d fault reason, 8 bits in the fault
 * record; `index` is an FRCD or IRTE index. Others (`mask`, `size`, `data`) can use 64 bits: beyond 2^53 they stay hex text.
 */
const RANGES: Record<string, number> = {
  sid: 0xffff,
  domain: 0xffff,
  pasid: 0xffff_ffff,
  index: 0xffff,
  level: 5,
  perm: 3,
  gen: 0xffff_ffff,
  granularity: 0xffff_ffff,
  fault: 0xff,
  write: 1,
  status: 0xffff_ffff,
};

/** QEMU's X86_IOMMU_SID_INVALID (include/hw/i386/x86-iommu.h): a request without a requester, e.g. an IOAPIC interrupt. */
const SID_INVALID = 0xffff;
/** QEMU traces PCI_NO_PASID (-1) as 0xffffffff. */
const NO_PASID = 0xffff_ffff;

/** A field's value: a number when it fits its format's range, else the text as printed (and a problem). */
function value(key: string, text: string, problems: string[]): number | string {
  if (WORDS.has(key)) return text.startsWith('0x') ? (normalizeHex(text) ?? text) : text;
  const n = text.startsWith('0x') ? hexNumber(text) : Number(text);
  const max = RANGES[key];
  if (max === undefined && text.startsWith('0x') && n === undefined) return normalizeHex(text) ?? text;
  if (n === undefined || !Number.isSafeInteger(n) || n < 0 || (max !== undefined && n > max)) {
    problems.push(`${key} ${text} is out of range${max !== undefined ? ` (0..0x${max.toString(16)})` : ''}`);
    return text;
  }
  return n;
}

/**
 * QEMU traces `vtd_dmar_fault` for every blocked request, then `vtd_frr_new` only when it records the fault;
 * vtd_report_dmar_fault (hw/i386/intel_iommu.c) records nothing while a fault of the same source id is
 * pending ("New fault is not recorded due to compression of faults") or the registers overflowed, so the
 * guest sees only the recorded ones. A `vtd_dmar_fault` therefore takes the `vtd_frr_new` line right after it
 * (same source id and page) as its record, and says `details.recorded`: true with the record, false when the
 * next line is anything else in a trace that records faults at all (a `vtd_frr_new` was seen before), and null
 * (not known) before any: a trace taken without `vtd_frr_new` says nothing about recording. A `vtd_frr_new`
 * alone (a trace of that event only) is a fault of its own.
 */
class FaultRecordFollows implements Continuation {
  done = false;
  private wrapped = false;
  private recordHead: string | null = null;
  constructor(
    private readonly fault: LogEvent,
    private text: string,
    private readonly parse: (msg: string, info: LineInfo) => LogEvent | null,
    private readonly records: { seen: boolean },
  ) {}
  absorb(msg: string, info: LineInfo): boolean {
    // A tail wrapped off the fault's own line (mail, a bug tracker) comes first: the line read whole again.
    if (!this.wrapped && !TRACE.test(msg) && msg.length <= MAX_JOINED) {
      const whole = this.parse(`${this.text} ${msg.trim()}`, info);
      if (whole && whole.details.event === 'vtd_dmar_fault') {
        this.wrapped = true;
        this.text = `${this.text} ${msg.trim()}`;
        Object.assign(this.fault, { device: whole.device, address: whole.address, access: whole.access, reason: whole.reason, pasid: whole.pasid, details: whole.details });
        return true;
      }
    }
    if (this.recordHead !== null) {
      msg = `${this.recordHead} ${msg.trim()}`;
      this.recordHead = null;
    } else if (msg.indexOf('vtd_frr_new') !== -1 && msg.length <= MAX_JOINED && this.parse(msg, info)?.details.record === undefined) {
      // The record's line itself wrapped before its words were complete: wait for the rest.
      this.recordHead = msg.trimEnd();
      return true;
    }
    this.done = true;
    const next = msg.indexOf('vtd_frr_new') === -1 ? null : this.parse(msg, info);
    const f = this.fault;
    const rec = next?.details.record as { sid: number } | undefined;
    const samePage = next?.address !== null && f.address !== null && next?.address === pageOf(f.address);
    if (!next || !rec || rec.sid !== f.details.sid || !samePage) {
      f.details.recorded = this.records.seen ? false : null;
      return false;
    }
    this.records.seen = true;
    f.details.recorded = true;
    f.details.record = rec;
    f.details.recordIndex = next.details.index;
    f.details.recordWords = { high: next.details.high, low: next.details.low };
    if (next.pasid !== null) f.pasid = next.pasid;
    if (next.details.problems) f.details.problems = [...((f.details.problems as string[]) ?? []), ...(next.details.problems as string[])];
    return true;
  }
}

/** The 4 KiB page of a `0x` address, as the fault record holds it. */
function pageOf(address: string): string | null {
  const w = hexWord(address);
  return w ? new U64(w.hi, (w.lo & 0xffff_f000) >>> 0).toString() : null;
}

export function createQemuTraceReader(): LineReader {
  // Whether this trace records faults at all (a vtd_frr_new was seen): only then is a fault without one unrecorded.
  const records = { seen: false };
  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.indexOf('vtd_') === -1) return msg.indexOf(' is not ') === -1 ? null : errorReport(msg, info);
      const m = TRACE.exec(msg);
      if (!m) return errorReport(msg, info);
      const e = traceEvent(m, info);
      if (e.details.event === 'vtd_frr_new') records.seen = true;
      if (e.details.event === 'vtd_dmar_fault' && typeof e.details.sid === 'number') {
        return { events: [e], more: new FaultRecordFollows(e, msg, (next, nextInfo) => {
          const n = TRACE.exec(next);
          return n ? traceEvent(n, nextInfo) : null;
        }, records) };
      }
      return events(e);
    },
  };
}

/** One `vtd_*` trace line as an event. */
function traceEvent(m: RegExpExecArray, info: LineInfo): LogEvent {
  const name = m[3]!;
  const text = (m[4] ?? '').trim();
  const e = newEvent(info.lineNo, 'intel', kindOf(name), 'qemu-trace');
  e.timestamp = m[2] ?? info.timestamp;
  const fields: Record<string, number | string> = {};
  const problems: string[] = [];
  PAIRS.lastIndex = 0;
  for (let p = PAIRS.exec(text); p; p = PAIRS.exec(text)) {
    const key = p[1] === 'source id' ? 'sid' : p[1]!;
    if (!(key in fields)) fields[key] = value(key, p[2]!, problems);
  }
  e.details = { event: name, text, ...(m[1] !== undefined ? { pid: Number(m[1]) } : {}), ...fields };
  const dev = DEV.exec(text);
  const busDevfn = BUS_DEVFN.exec(text);
  if (dev) e.device = bdfToDevice(dev[1]!, dev[2]!, String(parseInt(dev[3]!, 16)));
  else if (typeof fields.sid === 'number') e.device = fields.sid === SID_INVALID ? null : ridToDevice(fields.sid);
  else if (busDevfn) {
    const bus = Number(busDevfn[1]);
    const devfn = Number(busDevfn[2]);
    if (bus <= 0xff && devfn <= 0xff) e.device = ridToDevice((bus << 8) | devfn);
  }
  if (fields.sid === SID_INVALID) e.details.sidInvalid = true;
  if (typeof fields.pasid === 'number' && fields.pasid !== NO_PASID) {
    if (fields.pasid <= 0xf_ffff) e.pasid = fields.pasid;
    else problems.push(`pasid 0x${fields.pasid.toString(16)} is wider than a PASID (20 bits)`);
  }
  const iova = /\biova (0x[0-9a-fA-F]{1,16})/.exec(text) ?? /\baddr (0x[0-9a-fA-F]{1,16})/.exec(text);
  if (iova && carriesIova(name, e.kind)) e.address = normalizeHex(iova[1]!);
  if (name === 'vtd_dmar_fault') {
    // QEMU traces the reason in decimal.
    if (typeof fields.fault === 'number') e.reason = { code: fields.fault, text: linuxFaultReason(fields.fault).text };
    if (typeof fields.write === 'number') e.access = fields.write === 1 ? 'write' : 'read';
  }
  if (name === 'vtd_frr_new') faultRecord(e, fields, problems);
  if (name === 'vtd_inv_desc') invalidationDescriptor(e, fields);
  if (problems.length > 0) e.details.problems = problems;
  return e;
}

/** Events whose `addr`/`iova` is an input address (a fault's, a translation's, an invalidation's), not a register or table address. */
function carriesIova(name: string, kind: EventKind): boolean {
  if (kind !== 'dma-fault' && kind !== 'translation' && kind !== 'invalidation' && kind !== 'attach') return false;
  return name !== 'vtd_frr_new' && name !== 'vtd_inv_desc_wait_sw' && name !== 'vtd_inv_desc';
}

/**
 * `vtd_frr_new index %d high 0x%"PRIx64" low 0x%"PRIx64`: a fault recording register as QEMU fills it
 * (vtd_record_frcd, hw/i386/intel_iommu.c), before it sets F. The high qword holds the VT-d layout of FRCD
 * bits 127:64: T (62, 1 = read), AT (61:60), PV (59:40), FR (39:32), PP (31), EXE (30), PRIV (29), T2 (28),
 * SID (15:0); the low qword the faulting page (63:12) or, for interrupt faults, the interrupt index (63:48).
 * QEMU 7.2 added PP and PV ("intel-iommu: PASID support", 1b2b12376c8a); its PV keeps only 16 bits of the
 * PASID. Until "intel_iommu: fix FRCD construction macro" (a3c8d7e38550, QEMU 9.1, stable 7.2.14) the
 * PASID-present bit was a sign-extended int that set bits 63:31 and overwrote PV, FR and T.
 */
function faultRecord(e: LogEvent, fields: Record<string, number | string>, problems: string[]): void {
  const hi = typeof fields.high === 'string' ? hexWord(fields.high) : undefined;
  const lo = typeof fields.low === 'string' ? hexWord(fields.low) : undefined;
  if (!hi || !lo) {
    problems.push('the fault record words are not 64-bit hex');
    return;
  }
  const record = {
    f: hi.bit(63),
    t: hi.bit(62),
    at: hi.field(61, 60),
    pv: hi.field(59, 40),
    fr: hi.field(39, 32),
    pp: hi.bit(31),
    exe: hi.bit(30),
    priv: hi.bit(29),
    t2: hi.bit(28),
    sid: hi.field(15, 0),
  };
  e.details.record = record;
  e.device = record.sid === SID_INVALID ? null : ridToDevice(record.sid);
  if (record.sid === SID_INVALID) e.details.sidInvalid = true;
  if (record.pp && hi.hi === 0xffff_ffff) {
    // The low qword is intact: the faulting page is still known.
    e.address = new U64(lo.hi, (lo.lo & 0xffff_f000) >>> 0).toString();
    problems.push('PP was set by QEMU before the FRCD fix (a3c8d7e38550): its sign extension overwrote the reason, PASID and type in bits 63:31');
    return;
  }
  const interrupt = record.fr >= 0x20 && record.fr <= 0x26;
  e.kind = interrupt ? 'interrupt-fault' : 'dma-fault';
  e.reason = { code: record.fr, text: linuxFaultReason(record.fr).text };
  if (interrupt) {
    // An interrupt request has no address: its interrupt index goes where the VT-d kernel reader puts it.
    e.details.faultIndex = '0x' + lo.field(63, 48).toString(16);
  } else {
    e.address = new U64(lo.hi, (lo.lo & 0xffff_f000) >>> 0).toString();
    e.access = record.t ? 'read' : 'write';
    // Linux reads PV only when PP is set (dma_frcd_pasid_present), else the request had no PASID.
    e.pasid = record.pp ? record.pv : null;
  }
}

/** `vtd_inv_desc type %s high 0x%"PRIx64" low 0x%"PRIx64`: the descriptor's first 128 bits, decoded. */
function invalidationDescriptor(e: LogEvent, fields: Record<string, number | string>): void {
  const hi = typeof fields.high === 'string' ? hexWord(fields.high) : undefined;
  const lo = typeof fields.low === 'string' ? hexWord(fields.low) : undefined;
  if (!hi || !lo) return;
  const d = describeQiDescriptor([lo, hi]);
  e.details.descriptor = d;
  e.device = d.device;
  e.pasid = d.pasid;
  e.address = d.address;
}

/**
 * QEMU's error_report_once lines of the VT-d translation and fault paths (hw/i386/intel_iommu.c), each
 * printed at most once per QEMU run, whatever the number of requests it concerns. A line prints no fault
 * reason; where the code path that prints it returns exactly one, that code is `details.impliedReason`
 * (not `reason`: the line does not carry it), with QEMU's name for it:
 * - vtd_iova_to_slpte: `detected slpte permission error (iova=, level=, slpte=, write=[, pasid=])` returns
 *   `is_write ? -VTD_FR_WRITE : -VTD_FR_READ` for any entry without the permission the request needs, a
 *   not-present entry (R = W = 0) included, so an unmapped read is 0x06 and an unmapped write 0x05;
 *   `detected splte reserve non-zero iova=..., level=0x%xslpte=...)` (no separator after the level, as QEMU
 *   prints it) returns VTD_FR_PAGING_ENTRY_RSVD; `detected IOVA overflow (iova=...)` VTD_FR_ADDR_BEYOND_MGAW;
 *   `detected read error on DMAR slpte (iova=...)` VTD_FR_CONTEXT_ENTRY_INV at the top level and
 *   VTD_FR_PAGING_ENTRY_INV below it (two codes: none implied);
 * - vtd_iova_to_flpte (first-stage walks, QEMU 9.x and later): `detected flpte reserved non-zero ...`
 *   (`fspte` after the first-stage rename) returns VTD_FR_FS_PAGING_ENTRY_RSVD;
 * - vtd_root_entry_rsvd_bits_check `invalid root entry: hi=0x, lo=0x` VTD_FR_ROOT_ENTRY_RSVD;
 *   vtd_context_entry_rsvd_bits_check `invalid context entry: ... (reserved nonzero)`
 *   VTD_FR_CONTEXT_ENTRY_RSVD; vtd_dev_to_context_entry `invalid context entry: ... (level %d not supported)`
 *   and vtd_ce_type_check (`DT specified but not supported`, `PT specified ...`, `unknown ce type: %u`)
 *   VTD_FR_CONTEXT_ENTRY_INV;
 * - vtd_iommu_translate `detected translation failure (dev=BB:DD:FF, iova=)` follows any failed
 *   translation: its reason is the one of the walk line before it (when that one was printed at all).
 * The fault-recording path (vtd_report_dmar_fault, vtd_report_frcd_fault since QEMU 9.x, and
 * vtd_generate_fault_event) prints, without a function name: `New fault is not recorded due to Primary Fault
 * Overflow` and `Next Fault Recording Reg is used, new fault is not recorded, set PFO field` (the fault is
 * dropped; queue-overflow), `New fault is not recorded due to compression of faults` (dropped: a fault of
 * the same source id is pending), `There are pending faults already, fault event is not generated`,
 * `There are previous interrupt conditions to be serviced by software, fault event is not generated` and
 * `Interrupt Mask set, irq is not generated` (recorded, no interrupt now).
 */
const ERROR_REPORT = /^(?:[\w.-]{1,40}: )?(?:(vtd_[a-z0-9_]{1,48}): )?(detected translation failure|detected slpte permission error|detected IOVA overflow|detected read error on DMAR [a-z]{2}pte|detected splte reserve non-zero|detected f[ls]pte reserved non-zero|invalid root entry|invalid context entry|DT specified but not supported|PT specified but not supported|unknown ce type|invalid inv desc)\b(.*)$/;
const FAULT_PATH = /^(?:[\w.-]{1,40}: )?(New fault is not recorded due to Primary Fault Overflow|New fault is not recorded due to compression of faults|Next Fault Recording Reg is used, new fault is not recorded, set PFO field|There are pending faults already, fault event is not generated|There are previous interrupt conditions to be serviced by software, fault event is not generated|Interrupt Mask set, irq is not generated)\s*$/;

/** What each fault-path line says happened to the fault (`recorded`) and its event kind. */
const FAULT_PATH_KINDS: Record<string, { kind: EventKind; recorded: boolean }> = {
  'New fault is not recorded due to Primary Fault Overflow': { kind: 'queue-overflow', recorded: false },
  'Next Fault Recording Reg is used, new fault is not recorded, set PFO field': { kind: 'queue-overflow', recorded: false },
  'New fault is not recorded due to compression of faults': { kind: 'register', recorded: false },
  'There are pending faults already, fault event is not generated': { kind: 'register', recorded: true },
  'There are previous interrupt conditions to be serviced by software, fault event is not generated': { kind: 'register', recorded: true },
  'Interrupt Mask set, irq is not generated': { kind: 'register', recorded: true },
};

/** The fault reason the code path of an error line returns, with QEMU's name for it. */
function impliedReason(error: string, rest: string, write: boolean | null): { code: number; name: string } | null {
  if (error === 'detected slpte permission error') return write === null ? null : write ? { code: 0x05, name: 'VTD_FR_WRITE' } : { code: 0x06, name: 'VTD_FR_READ' };
  if (error === 'detected splte reserve non-zero') return { code: 0x0c, name: 'VTD_FR_PAGING_ENTRY_RSVD' };
  if (error.startsWith('detected f') && error.endsWith('reserved non-zero')) return { code: 0x72, name: 'VTD_FR_FS_PAGING_ENTRY_RSVD' };
  if (error === 'detected IOVA overflow') return { code: 0x04, name: 'VTD_FR_ADDR_BEYOND_MGAW' };
  if (error === 'invalid root entry') return { code: 0x0a, name: 'VTD_FR_ROOT_ENTRY_RSVD' };
  if (error === 'invalid context entry') return /reserved nonzero/.test(rest) ? { code: 0x0b, name: 'VTD_FR_CONTEXT_ENTRY_RSVD' } : /not supported/.test(rest) ? { code: 0x03, name: 'VTD_FR_CONTEXT_ENTRY_INV' } : null;
  if (error === 'DT specified but not supported' || error === 'PT specified but not supported' || error === 'unknown ce type') return { code: 0x03, name: 'VTD_FR_CONTEXT_ENTRY_INV' };
  return null;
}

function errorReport(msg: string, info: LineInfo): ReadResult {
  const path = FAULT_PATH.exec(msg);
  if (path) {
    const what = FAULT_PATH_KINDS[path[1]!]!;
    const e = newEvent(info.lineNo, 'intel', what.kind, 'qemu-error');
    e.timestamp = info.timestamp;
    e.details = { error: path[1]!, text: '', recorded: what.recorded };
    return events(e);
  }
  const m = ERROR_REPORT.exec(msg);
  if (!m) return null;
  const error = m[2]!;
  // A failed translation or page walk is a DMA fault; a bad root or context entry, a configuration error.
  const kind: EventKind = error === 'invalid inv desc' ? 'invalidation-error' : error.startsWith('detected') ? 'dma-fault' : 'config-error';
  const e = newEvent(info.lineNo, 'intel', kind, 'qemu-error');
  e.timestamp = info.timestamp;
  const rest = m[3]!;
  // `invalid root entry: hi=...`: the words after the message's own colon.
  e.details = { error, text: rest.replace(/^:\s*/, '').trim(), ...(m[1] !== undefined ? { function: m[1] } : {}) };
  const dev = /dev=([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})/.exec(rest);
  if (dev) e.device = bdfToDevice(dev[1]!, dev[2]!, String(parseInt(dev[3]!, 16)));
  const iova = /iova=0x([0-9a-fA-F]{1,16})/.exec(rest);
  if (iova) e.address = normalizeHex(iova[1]!);
  const problems: string[] = [];
  const pasid = /pasid=0x([0-9a-fA-F]{1,8})\b/.exec(rest);
  if (pasid) {
    const n = parseInt(pasid[1]!, 16);
    if (n !== NO_PASID && n <= 0xf_ffff) e.pasid = n;
    else if (n !== NO_PASID) problems.push(`pasid 0x${pasid[1]} is wider than a PASID (20 bits)`);
    // The line says whether the request had a PASID (PCI_NO_PASID, -1, when it had none).
    e.details.pasidPrinted = true;
  }
  // `level=0x%x`, followed by `, ` or (in the reserved-bit lines) directly by the entry's name.
  const level = /level=0x([0-9a-fA-F]{1,8}?)(?=[sf][lps]pte=|[^0-9a-fA-F]|$)/.exec(rest);
  if (level) {
    const n = parseInt(level[1]!, 16);
    if (n >= 1 && n <= 5) e.details.level = n;
    else problems.push(`level 0x${level[1]} is out of range (1..5)`);
  }
  const entry = /(?:sl|fl|fs)pte=0x([0-9a-fA-F]{1,16})\b/.exec(rest);
  if (entry) e.details.entry = normalizeHex(entry[1]!);
  // `write=%d` of a bool.
  const write = /write=(-?\d{1,20})\b/.exec(rest);
  if (write && (write[1] === '0' || write[1] === '1')) e.access = write[1] === '1' ? 'write' : 'read';
  else if (write) problems.push(`write ${write[1]} is out of range (0..0x1)`);
  const implied = impliedReason(error, rest, e.access === null ? null : e.access === 'write');
  if (implied) e.details.impliedReason = { code: implied.code, text: linuxFaultReason(implied.code).text, qemu: implied.name };
  if (problems.length > 0) e.details.problems = problems;
  return events(e);
}

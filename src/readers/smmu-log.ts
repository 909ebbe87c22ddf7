import { formatPciAddress, parsePciAddress } from '../core/pci';
import { U64 } from '../core/u64';
import { hexNumber, hexWord, normalizeHex } from './hex';
import { newEvent, type EventKind, type LogEvent } from './log-event';
import { type Continuation, type LineInfo, type LineReader, type ReadResult, MAX_JOINED, events } from './log-reader';

/**
 * ARM SMMUv3 messages of drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c: the raw event record
 * (`event 0xNN received:` and four dwords, all kernels), the decoded lines 6.14 and later print after it
 * (arm_smmu_dump_event() of d814b70b9b90 "iommu/arm-smmu-v3: Log better event records", queued with
 * 43ca55f5555b "iommu/arm-smmu-v3: Introduce struct arm_smmu_event" on 2024-12-10 for the 6.14 merge window),
 * queue overflows, global errors, command-queue errors and unexpected PRI requests.
 */

export interface SmmuEventType {
  readonly name: string;
  readonly kind: EventKind;
  /** Whether dword 2 holds the input address of the faulting transaction. */
  readonly hasAddress: boolean;
  /** Plain words, for text output. */
  readonly meaning: string;
  readonly check: string;
}

const t = (name: string, kind: EventKind, hasAddress: boolean, meaning: string, check: string): SmmuEventType => ({ name, kind, hasAddress, meaning, check });

/** Event record IDs (dword 0 [7:0]), named as Linux's `event_str` names them. */
export const SMMU_EVENTS: Record<number, SmmuEventType> = {
  0x01: t('F_UUT', 'dma-fault', true, 'The SMMU received a transaction it does not support (for example an unsupported atomic or attribute).', 'Check what the device issued at that address; the SMMU cannot translate this transaction type.'),
  0x02: t('C_BAD_STREAMID', 'config-error', false, 'The StreamID is beyond the stream table: the SMMU has no STE for this device.', 'Check the IORT/device-tree StreamID mapping of the device against the stream table size.'),
  0x03: t('F_STE_FETCH', 'hardware-error', true, 'The SMMU could not read the stream table entry (external abort on the fetch).', 'Check the stream table base and that the table memory is accessible to the SMMU.'),
  0x04: t('C_BAD_STE', 'config-error', false, 'The stream table entry for this StreamID is invalid or illegal.', 'Check that the device was attached (STE written) before it did DMA, and the STE fields for this StreamID.'),
  0x05: t('F_BAD_ATS_TREQ', 'config-error', true, 'An ATS translation request arrived but ATS is not allowed for this stream.', 'Check STE.EATS and that ATS was enabled for the device by the driver.'),
  0x06: t('F_STREAM_DISABLED', 'config-error', false, 'The STE does not allow this traffic: a transaction without a substream ID hit an STE whose S1DSS terminates it.', 'Check STE.S1DSS and whether the device should be tagging its DMA with a PASID.'),
  0x07: t('F_TRANSL_FORBIDDEN', 'dma-fault', true, 'A translated (ATS) transaction arrived for a stream where translated traffic is not allowed.', 'Check STE.EATS and the device ATS state.'),
  0x08: t('C_BAD_SUBSTREAMID', 'config-error', false, 'The substream ID (PASID) is beyond the context descriptor table, or substreams are not enabled for the stream.', 'Check the PASID the device used against S1CDMax and the PASIDs attached to the device.'),
  0x09: t('F_CD_FETCH', 'hardware-error', true, 'The SMMU could not read the context descriptor (external abort on the fetch).', 'Check STE.S1ContextPtr; with nesting it is an IPA that must be mapped at stage 2.'),
  0x0a: t('C_BAD_CD', 'config-error', false, 'The context descriptor for this substream is invalid or illegal.', 'Check that the PASID was attached (CD written) before DMA, and the CD fields.'),
  0x0b: t('F_WALK_EABT', 'hardware-error', true, 'A page-table walk hit an external abort while reading a table.', 'Check for freed or inaccessible page-table memory.'),
  0x10: t('F_TRANSLATION', 'dma-fault', true, 'The page table has no valid translation for this address.', 'Check that the IOVA was mapped in the domain of this device and not already unmapped (use after unmap, DMA after driver unbind).'),
  0x11: t('F_ADDR_SIZE', 'dma-fault', true, 'The address is beyond the input or output address size of the translation.', 'Check the device DMA mask against the domain aperture (IAS/OAS).'),
  0x12: t('F_ACCESS', 'dma-fault', true, 'The access flag of the page-table entry is clear and hardware access-flag update is not enabled.', 'Check the AF bit of the mapping (and HA/HD support).'),
  0x13: t('F_PERMISSION', 'dma-fault', true, 'The mapping exists but does not allow this access (for example a write to a read-only page).', 'Check the permissions of the mapping (IOMMU_WRITE, DMA direction).'),
  0x20: t('F_TLB_CONFLICT', 'config-error', true, 'Two TLB entries matched the same address (a break-before-make sequence was skipped).', 'Check that mappings are invalidated before being replaced with a different page size.'),
  0x21: t('F_CFG_CONFLICT', 'config-error', false, 'Cached configuration entries conflict.', 'Check that STE/CD changes are followed by the right CFGI invalidations.'),
  0x24: t('E_PAGE_REQUEST', 'page-request', true, 'A device requested a page (PRI) through the event queue.', 'Check that the domain handles I/O page faults.'),
  0x25: t('F_VMS_FETCH', 'hardware-error', true, 'The SMMU could not read the virtual machine structure.', 'Check the VMS pointer of the stream.'),
};

const SMMU_CLASSES = ['CD fetch', 'Stage 1 translation table fetch', 'Input address caused fault', 'Reserved'];

const DEVICE_PREFIX = /^(\S{0,40}smmu\S{0,40}) (\S{1,64}): ?(.*)$/;
/** Xen's port of the driver (xen/drivers/passthrough/arm/smmu-v3.c, Xen 4.15+) prints `SMMUv3: <DT path>: `. */
const XEN_PREFIX = /^SMMUv3: (\S{1,128}): ?(.*)$/;
const RAW_START = /^event 0x([0-9a-fA-F]{1,2}) received:/;
/** `\t0x%016llx`: a dword of an event record or of the command in error. */
const DWORD = /^0x([0-9a-fA-F]{16})\s*$/;
const DECODED = /^event: (\S{1,32}) client: (.{1,80}?) sid: (0x[0-9a-fA-F]{1,8}|0) ssid: (0x[0-9a-fA-F]{1,8}|0)(?: iova: (0x[0-9a-fA-F]{1,16}|0) ipa: (0x[0-9a-fA-F]{1,16}|0)| fetch_addr: (0x[0-9a-fA-F]{1,16}|0))?\s*$/;
const DETAIL = /^(priv|unpriv) (inst|data) (read|write) (s1|s2) "([^"]{0,64})"( ttd_read| ttd_write)?( stall)? stag: (0x[0-9a-fA-F]{1,4}|0)/;
const DETAIL_HEAD = /^(?:priv|unpriv) (?:inst|data) (?:read|write)/;
const OVERFLOW = /^(EVTQ|PRIQ) overflow detected -- (?:events|requests) lost/;
const GERROR = /^unexpected global error reported \(0x([0-9a-fA-F]{1,8})\), this could be serious/;
const GERROR_DETAIL = /^(?:device has entered Service Failure Mode!|(?:GERROR|PRIQ|EVTQ|CMDQ) MSI write aborted|(?:PRIQ|EVTQ) write aborted -- events may have been lost)/;
const CMDQ_ERROR = /^CMDQ error \(cons 0x([0-9a-fA-F]{1,8})\): (.{1,64})$/;
const CMDQ_DETAIL = /^(?:skipping command in error state:|retrying command fetch)/;
const CMD_SYNC_TIMEOUT = /^CMD_SYNC timeout at 0x([0-9a-fA-F]{1,8}) \[hwprod 0x([0-9a-fA-F]{1,8}), hwcons 0x([0-9a-fA-F]{1,8})\]/;
const PRI_START = /^unexpected PRI request received:/;
const PRI_LINE = /^sid 0x([0-9a-fA-F]{1,8})\.0x([0-9a-fA-F]{1,5}): \[(\d{1,5})(L?)\] (un)?privileged (R?)(W?)(X?) access at iova 0x([0-9a-fA-F]{1,16})/;
const INFORMATIONAL = /^(?:probing hardware configuration|ias \d+-bit, oas \d+-bit|allocated \d+ entries for|msi_domain absent|no evtq irq|no gerr irq|no priq irq|option |\d-level strtab|SMMUv3 |disabling|failed to enable|DMA-coherent|CMDQ|EVTQ|PRIQ)/;

const GERROR_BITS: [string, number][] = [
  ['cmdqErr', 0],
  ['evtqAbtErr', 2],
  ['priqAbtErr', 3],
  ['msiCmdqAbtErr', 4],
  ['msiEvtqAbtErr', 5],
  ['msiPriqAbtErr', 6],
  ['msiGerrorAbtErr', 7],
  ['sfmErr', 8],
];

function clientDevice(client: string): string | null {
  const a = parsePciAddress(client);
  return a ? formatPciAddress(a) : null;
}

/** Fills an event from the four raw dwords of an event record. */
function applyRaw(e: LogEvent, dw: U64[]): void {
  const [w0, w1, w2, w3] = dw as [U64, U64, U64, U64];
  const id = w0.field(7, 0);
  const type = SMMU_EVENTS[id];
  e.kind = type ? type.kind : 'hardware-error';
  e.reason = { code: id, text: type ? type.name : 'UNKNOWN' };
  const ssv = w0.bit(11);
  const ssid = w0.field(31, 12);
  e.pasid = ssv ? ssid : null;
  e.details.raw = dw.map((w) => w.toString());
  e.details.sid = w0.field(63, 32);
  e.details.ssv = ssv;
  // Dwords 1-3 describe the faulting transaction only for events that have one.
  if (type && !type.hasAddress) return;
  const read = w1.bit(35);
  const inst = w1.bit(34);
  e.details.stag = w1.field(15, 0);
  e.details.stall = w1.bit(31);
  e.details.privileged = w1.bit(33);
  e.details.instruction = inst;
  e.details.stage = w1.bit(39) ? 2 : 1;
  e.details.class = SMMU_CLASSES[w1.field(41, 40)];
  e.address = w2.toString();
  e.access = read ? (inst ? 'exec' : 'read') : 'write';
  e.details.ipa = new U64(w3.hi & 0xfffff, w3.lo & 0xffff_f000).toString();
  if (id === 0x03 || id === 0x09 || id === 0x25 || id === 0x0b) e.details.fetchAddress = new U64(w3.hi & 0xfffff, w3.lo & 0xffff_fff8).toString();
}

function applyDecoded(e: LogEvent, m: RegExpExecArray): void {
  const id = Object.entries(SMMU_EVENTS).find(([, v]) => v.name === m[1])?.[0];
  if (!e.reason && id !== undefined) {
    e.reason = { code: Number(id), text: m[1]! };
    e.kind = SMMU_EVENTS[Number(id)]!.kind;
  }
  if (id === undefined) e.details.eventName = m[1]!;
  e.details.client = m[2]!;
  e.device = clientDevice(m[2]!);
  e.details.sid = hexNumber(m[3]!) ?? e.details.sid ?? null;
  // The kernel prints ssid 0 both for SSID 0 and for "no substream" (IOMMU_NO_PASID): only the raw SSV bit can tell.
  if (e.details.ssv === undefined) {
    const ssid = hexNumber(m[4]!) ?? 0;
    e.pasid = ssid === 0 ? null : ssid;
  }
  if (m[5] !== undefined) {
    e.address = normalizeHex(m[5]);
    e.details.ipa = normalizeHex(m[6]!);
  }
  if (m[7] !== undefined) e.details.fetchAddress = normalizeHex(m[7]);
}

function applyDetail(e: LogEvent, m: RegExpExecArray): void {
  e.details.privileged = m[1] === 'priv';
  e.details.instruction = m[2] === 'inst';
  e.access = m[3] === 'read' ? (m[2] === 'inst' ? 'exec' : 'read') : 'write';
  e.details.stage = m[4] === 's2' ? 2 : 1;
  e.details.class = m[5]!;
  if (m[6]) e.details.tableWalk = m[6].trim() === 'ttd_read' ? 'read' : 'write';
  e.details.stall = m[7] !== undefined;
  e.details.stag = hexNumber(m[8]!) ?? 0;
}

/** The message after the `arm-smmu-v3 <device>: ` (or Xen's `SMMUv3: <path>: `) prefix, and the SMMU's name. */
function split(msg: string): { body: string; iommu: string | null } {
  const m = DEVICE_PREFIX.exec(msg);
  if (m) return { body: m[3]!, iommu: m[2]! };
  const x = msg.startsWith('SMMUv3: ') ? XEN_PREFIX.exec(msg) : null;
  return x ? { body: x[2]!, iommu: x[1]! } : { body: msg, iommu: null };
}

/**
 * One event record: the raw block, then (6.14 and later) the decoded line and, for translation faults, the
 * access line. The kernel prints both under one rate limit, so a part is missing only from an excerpt (or a
 * raw record of a kernel before 6.14), and mail can wrap the decoded lines.
 */
class SmmuRecord implements Continuation {
  done = false;
  private readonly dwords: U64[] = [];
  private decoded: boolean;
  private detailed = false;
  private partial = '';

  constructor(
    private readonly event: LogEvent,
    private readonly raw: boolean,
  ) {
    this.decoded = !raw;
  }

  absorb(msg: string): boolean {
    const body = split(msg).body.trim();
    if (this.dwords.length < 4 && !this.decoded) {
      const d = DWORD.exec(body);
      if (d) {
        const w = hexWord(d[1]!);
        if (w) this.dwords.push(w);
        if (this.dwords.length === 4) applyRaw(this.event, this.dwords);
        return true;
      }
      return false;
    }
    const text = this.partial ? `${this.partial} ${body}` : body;
    if (!this.decoded) {
      const m = DECODED.exec(text);
      if (m) {
        this.partial = '';
        this.decoded = true;
        applyDecoded(this.event, m);
        // Only kernels from 6.14 print decoded lines after the raw block (d814b70b9b90 "iommu/arm-smmu-v3: Log
        // better event records"), under the same rate limit: decoded lines without the raw record are an excerpt.
        if (this.raw) this.event.format = 'smmu-decoded';
        const id = this.event.reason?.code ?? -1;
        if (!(id >= 0x10 && id <= 0x13)) this.done = true;
        return true;
      }
      if (text.startsWith('event: ') && text.length < MAX_JOINED && !RAW_START.test(text)) {
        this.partial = text;
        return true;
      }
      return false;
    }
    if (!this.detailed) {
      const m = DETAIL.exec(text);
      if (m) {
        this.detailed = true;
        this.done = true;
        applyDetail(this.event, m);
        return true;
      }
      if (DETAIL_HEAD.test(text) && text.length < MAX_JOINED) {
        this.partial = text;
        return true;
      }
    }
    return false;
  }
}

/** Lines that go with a global error or a command-queue error: the error bits spelled out, the bad command. */
class ErrorTail implements Continuation {
  done = false;
  private readonly command: string[] = [];

  constructor(
    private readonly event: LogEvent,
    private readonly detail: RegExp,
  ) {}

  absorb(msg: string): boolean {
    const body = split(msg).body.trim();
    if (this.detail.test(body)) {
      const notes = (this.event.details.notes ??= []) as string[];
      notes.push(body);
      return true;
    }
    const d = DWORD.exec(body);
    if (d && this.detail === CMDQ_DETAIL && this.command.length < 2) {
      this.command.push(normalizeHex(d[1]!)!);
      this.event.details.command = this.command;
      return true;
    }
    return false;
  }
}

class PriRequest implements Continuation {
  done = false;

  constructor(private readonly event: LogEvent) {}

  absorb(msg: string): boolean {
    const m = PRI_LINE.exec(split(msg).body.trim());
    if (!m) return false;
    this.done = true;
    const e = this.event;
    e.details.sid = parseInt(m[1]!, 16);
    const ssid = parseInt(m[2]!, 16);
    e.pasid = ssid === 0 ? null : ssid;
    e.details.prgIndex = Number(m[3]);
    e.details.last = m[4] === 'L';
    e.details.privileged = m[5] === undefined;
    e.access = m[8] ? 'exec' : m[7] ? 'write' : m[6] ? 'read' : null;
    e.address = normalizeHex(m[9]!);
    return true;
  }
}

export function createSmmuReader(): LineReader {
  function base(info: LineInfo, iommu: string | null, kind: EventKind, format: string): LogEvent {
    const e = newEvent(info.lineNo, 'arm', kind, format);
    e.timestamp = info.timestamp;
    e.iommu = iommu;
    return e;
  }

  return {
    read(msg: string, info: LineInfo): ReadResult {
      const { body: rawBody, iommu } = split(msg);
      const body = rawBody.trim();
      const raw = RAW_START.exec(body);
      if (raw) {
        const id = parseInt(raw[1]!, 16);
        const type = SMMU_EVENTS[id];
        const e = base(info, iommu, type ? type.kind : 'hardware-error', 'smmu-raw');
        e.reason = { code: id, text: type ? type.name : 'UNKNOWN' };
        const record = new SmmuRecord(e, true);
        return { events: [e], more: record };
      }
      if (body.startsWith('event: ')) {
        const m = DECODED.exec(body);
        if (!m) return body.length < MAX_JOINED ? 'partial' : null;
        const e = base(info, iommu, 'hardware-error', 'smmu-decoded-only');
        applyDecoded(e, m);
        const id = e.reason?.code ?? -1;
        return id >= 0x10 && id <= 0x13 ? { events: [e], more: new SmmuRecord(e, false) } : events(e);
      }
      if (iommu === null && !msg.includes('smmu')) return null;
      const ovf = OVERFLOW.exec(body);
      if (ovf) {
        const e = base(info, iommu, 'queue-overflow', 'smmu-overflow');
        e.details.queue = ovf[1] === 'EVTQ' ? 'event' : 'pri';
        return events(e);
      }
      const ge = GERROR.exec(body);
      if (ge) {
        const e = base(info, iommu, 'hardware-error', 'smmu-gerror');
        const v = hexNumber(ge[1]!) ?? 0;
        e.details.gerror = normalizeHex(ge[1]!);
        for (const [name, bit] of GERROR_BITS) e.details[name] = ((v >>> bit) & 1) === 1;
        return { events: [e], more: new ErrorTail(e, GERROR_DETAIL) };
      }
      const cmdq = CMDQ_ERROR.exec(body);
      if (cmdq) {
        const e = base(info, iommu, 'invalidation-error', 'smmu-cmdq-error');
        const cons = hexNumber(cmdq[1]!) ?? 0;
        e.details.cons = normalizeHex(cmdq[1]!);
        e.details.error = cmdq[2]!.trim();
        e.reason = { code: (cons >>> 24) & 0x7f, text: cmdq[2]!.trim() };
        return { events: [e], more: new ErrorTail(e, CMDQ_DETAIL) };
      }
      const sync = CMD_SYNC_TIMEOUT.exec(body);
      if (sync) {
        const e = base(info, iommu, 'invalidation-error', 'smmu-cmd-sync-timeout');
        e.details.error = 'CMD_SYNC timeout';
        e.details.prod = normalizeHex(sync[1]!);
        e.details.hwprod = normalizeHex(sync[2]!);
        e.details.hwcons = normalizeHex(sync[3]!);
        return events(e);
      }
      if (PRI_START.test(body)) {
        const e = base(info, iommu, 'page-request', 'smmu-pri-unexpected');
        e.details.problem = 'unexpected PRI request';
        return { events: [e], more: new PriRequest(e) };
      }
      if (iommu !== null && INFORMATIONAL.test(body)) return 'context';
      return null;
    },
  };
}

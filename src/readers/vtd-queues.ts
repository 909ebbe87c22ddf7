import { hexNumber, hexWord, ridToDevice } from './hex';
import { newEvent, type LogEvent } from './log-event';
import { type Continuation, type LineInfo, type ReadResult, events } from './log-reader';
import { describePageRequest, describeQiDescriptor } from './vtd-descriptors';
import { afterTag, base } from './vtd-line';

// The lines of the driver's two queues: invalidation-queue errors (qi_dump_fault, dmar.c) and the page-request
// queue's refused requests and overflows (svm.c, prq.c), with the IOMMU core's `iopf with pasid %d aborted`.

/**
 * The IOMMU core's `dev_warn_ratelimited(dev, "iopf with pasid %d aborted\n")` (io-pgfault.c) when no handler
 * took a recoverable fault: the group is answered with a failure. It came with the attach-handle rework of
 * iommu_report_device_fault (Lu Baolu, proposed in the review of "iommu: Add attach handle to struct
 * iopf_group", 6.11; the commit id was not pinned); 6.1 does not print it, 6.12 does.
 */
export const IOPF_ABORTED = /^(\S{1,64}) ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): iopf with pasid (-?\d{1,10}) aborted$/;
export const QI_DETECTED = /^VT-d detected Invalidation (Queue|Time-out|Completion) Error: (?:Reason|SID) ([0-9a-fA-F]{1,16})/;
export const QI_DESCRIPTOR = /^QI (HEAD|PRIOR): (.{1,64}?) qw0 = 0x([0-9a-fA-F]{1,16}), qw1 = 0x([0-9a-fA-F]{1,16})/;
export const QI_CLEARED = /^Invalidation (?:Queue|Time-out|Completion) Error \((IQE|ITE|ICE)\) cleared/;
export const QI_INVALID_DESC = /^VT-d detected invalid descriptor: (?:(low)=|qw0 = )([0-9a-fA-F]{1,16}), (?:high=|qw1 = )([0-9a-fA-F]{1,16})/;

const PRQ_PROBLEM = /^IOMMU: (\S{1,32}?): (Page request without PASID|Address is not canonical|Page request in Privilege Mode|Execution request not supported|PRQ overflow detected|PRQ overflow cleared)/;
const PRQ_INVALID = /^(\S{1,32}?): (Invalid page request|Page request without PASID|Page request for invalid PASID (\d{1,7})): ([0-9a-fA-F]{1,16}) ([0-9a-fA-F]{1,16})/;
const PRQ_OLD_PROBLEM = /^(Unexpected page request in Privilege Mode|Execution request not supported)\s*$/;

/**
 * An invalidation-queue error burst (`qi_dump_fault`): the `detected` lines, then the HEAD and PRIOR
 * descriptors they share, then a `cleared` line per error. A `detected` line after the descriptors
 * starts the next burst.
 */
export class QiBurst implements Continuation {
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

export function qiErrorEvent(m: RegExpExecArray, info: LineInfo): LogEvent {
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

export function applyQiDescriptor(group: LogEvent[], m: RegExpExecArray): void {
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

export function pageRequest(body: string, info: LineInfo): ReadResult {
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

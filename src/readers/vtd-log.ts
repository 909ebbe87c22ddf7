import { formatPciAddress, parsePciAddress } from '../core/pci';
import { hexWord, normalizeHex } from './hex';
import { newEvent, type LogEvent } from './log-event';
import { type LineInfo, type LineReader, type ReadResult, events } from './log-reader';
import { CAPABILITY, capabilityEvent, INFORMATIONAL, INFORMATIONAL_OTHER } from './vtd-boot';
import { describeQiDescriptor } from './vtd-descriptors';
import { decodeFaultStatus, FAULT_STATUS, kernelFault } from './vtd-fault';
import { afterTag, base } from './vtd-line';
import { applyQiDescriptor, IOPF_ABORTED, pageRequest, QI_CLEARED, QI_DESCRIPTOR, QI_DETECTED, QI_INVALID_DESC, QiBurst, qiErrorEvent } from './vtd-queues';
import { DUMP_START, WalkDump } from './vtd-walk-dump';
import { xen } from './vtd-xen';

/**
 * Intel VT-d messages of the Linux driver (drivers/iommu/intel/{dmar.c,iommu.c,svm.c,prq.c}) and of
 * Xen's VT-d driver. Formats and the kernel versions that print them: docs/log-formats.md; the commits
 * behind each version boundary: FORMAT_CHANGES in src/core/driver/log.ts.
 *
 * This module is the reader: it holds the fault status line until the fault it belongs to and sends each
 * line to its part: vtd-fault.ts (the fault lines), vtd-walk-dump.ts (the CONFIG_DMAR_DEBUG walk dump after
 * a fault), vtd-queues.ts (invalidation-queue errors and page requests), vtd-boot.ts (capabilities and
 * informational lines), vtd-xen.ts (Xen's VT-d lines); vtd-line.ts holds what they share.
 */

/**
 * __domain_mapping's pr_crit when the entry it would write is already present: the old entry stays and the
 * map returns success (the same text in 5.10, 6.1 and 6.12; the pfn and the two PTE values in hex).
 */
const PTE_ALREADY_SET = /^ERROR: DMA PTE for vPFN 0x([0-9a-fA-F]{1,16}) already set \(to ([0-9a-fA-F]{1,16}) not ([0-9a-fA-F]{1,16})\)/;

export function createVtdReader(): { read(msg: string, info: LineInfo): ReadResult } & LineReader {
  let faultStatus: Record<string, unknown> | null = null;

  function takeFaultStatus(e: LogEvent): void {
    if (faultStatus) {
      e.details.faultStatus = faultStatus;
      faultStatus = null;
    }
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


  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.startsWith('[VT-D]')) return xen(msg, info);
      if (msg.indexOf('Request device') !== -1 || msg.indexOf('[DMA R') !== -1 || msg.indexOf('[DMA W') !== -1 || msg.indexOf('INTR-REMAP') !== -1) {
        const r = kernelFault(msg, info, takeFaultStatus);
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
          // iommu_report_device_fault's err_abort: no attach handle or fault handler at that PASID, or the handler failed the group.
          e.details.problem = 'the fault was not handled (no domain with a fault handler at that PASID, or its handler failed it); the group was answered with a failure';
          return events(e);
        }
      }
      const marked = msg.indexOf('MMU') !== -1 || msg.indexOf('mmu') !== -1 || msg.indexOf('DMAR') !== -1;
      return marked && INFORMATIONAL_OTHER.test(msg) ? 'context' : null;
    },
  };
}

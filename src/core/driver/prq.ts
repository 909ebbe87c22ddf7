import { hexPad } from '../u64';
import { decodePageRequest, DescType } from '../vtd/descriptors';
import { Reg } from '../vtd/registers';
import type { DeviceInfo } from './device';
import { devTlbDesc, type FlushOptions } from './flush';
import { FLPT_DEFAULT_DID, type IntelIommu } from './intel-iommu';
import { prqOverflowLine, type PrqProblem, prqRejectLines, prqRejects } from './log';
import { IOMMU_NO_PASID } from './pasid-alloc';
import { Descs, FULL_RANGE_MASK, QI_DONE } from './qi';
import type { KernelState } from './state';

/** The VT-d page request queue: prq_event_thread and the drain of a PASID's requests. */
export class PageRequests {
  constructor(private readonly k: KernelState) {}

  /**
   * prq_event_thread (6.17 prq.c): clear PPR, then for each descriptor from PQH to PQT: a non-canonical
   * address, a privileged request with read or write, or an execute request with read is a bad request (its
   * "IOMMU: <iommu>:" line), as is one from a RID no device behind this IOMMU has (device_rbtree_find: the
   * unit's own devices, so a RID of its segment, never a function with the same RID in another segment); handle_bad_prq_event prints "<iommu>:
   * Invalid page request: <qw0> <qw1>" for every bad request and answers INVALID only a last-in-group one.
   * Stop markers are dropped. Everything else goes to iommu_report_device_fault. Then PQH = PQT, and an
   * overflow is reported (ratelimited) and, once the queue is empty, partial groups are discarded and PRO
   * cleared.
   */
  prqThread(iommu: IntelIommu): void {
    const unit = iommu.unit;
    const mem = this.k.machine.memory;
    unit.writeRegister('PRS', 1); // clear PPR
    const q = unit.pageRequestQueue;
    let head = q.head;
    const tail = q.tail;
    // __VIRTUAL_MASK_SHIFT: 47 with 4-level paging, 56 with LA57; bits 63:shift of a canonical address agree.
    const shift = (this.k.options.cpu?.la57 ?? false) ? 56 : 47;
    while (head !== tail) {
      const words: number[] = [];
      for (let i = 0; i < 4; i++) words.push(mem.readLo(q.base + head * 32 + i * 8), mem.readHi(q.base + head * 32 + i * 8));
      const req = decodePageRequest(words);
      head = (head + 1) % q.entries;
      // handle_bad_prq_event: the lines name the unit, and a response goes back for the last page of a group.
      const bad = (problem: PrqProblem) => {
        const request = { iommu: iommu.name, qw0: hexPad(words[1]!, 8) + hexPad(words[0]!, 8), qw1: hexPad(words[3]!, 8) + hexPad(words[2]!, 8), pasid: req.pasid ?? 0 };
        for (const l of prqRejectLines(problem, request, this.k.version)) this.k.log.err(l);
        if (req.lastInGroup) this.k.iopf.respond(iommu, req.rid, req.pasid, req.prgIndex, true, 'invalid');
      };
      // prq_event_thread checks, in its order: canonical address, privilege, exec with read.
      const top = words[3]! >>> (shift - 32);
      if (top !== 0 && top !== 2 ** (64 - shift) - 1) {
        bad('not-canonical');
        continue;
      }
      if (req.priv && (req.read || req.write) && prqRejects('privileged', this.k.version)) {
        bad('privileged');
        continue;
      }
      if (req.exec && req.read && prqRejects('exec-read', this.k.version)) {
        bad('exec-read');
        continue;
      }
      if (req.lastInGroup && !req.read && !req.write) continue; // stop marker
      const dev = this.k.deviceOn(iommu, req.rid);
      if (!dev) {
        bad('no-device');
        continue;
      }
      const domain = req.pasid === undefined ? dev.coreRidDomain : dev.pasidDomains.get(req.pasid);
      const att = domain?.attachedAt(dev, req.pasid);
      this.k.iopf.reportPageFault({
        device: dev,
        ...(req.pasid !== undefined ? { pasid: req.pasid } : {}),
        address: req.address,
        read: req.read,
        write: req.write,
        exec: req.exec,
        priv: req.priv,
        prgIndex: req.prgIndex,
        lastPage: req.lastInGroup,
        ...(att?.privateData ? { privateData: att.privateData } : {}),
      });
    }
    unit.writeRegister(Reg.PQH, head * 32);
    if (unit.readRegister('PRS').lo & 2) {
      const detected = prqOverflowLine(iommu.name, false, this.k.version);
      if (detected && this.k.ratelimit('prq_event_thread#detected')) this.k.log.info(detected);
      if (unit.pageRequestQueue.head === unit.pageRequestQueue.tail) {
        this.k.iopf.discardPartial(iommu);
        unit.writeRegister('PRS', 2);
        const cleared = prqOverflowLine(iommu.name, true, this.k.version);
        if (cleared && this.k.ratelimit('prq_event_thread#cleared')) this.k.log.info(cleared);
      }
    }
  }

  /**
   * intel_iommu_drain_pasid_prq: let the PRQ thread handle what the queue holds for the PASID, then a fenced
   * wait, an IOTLB flush, a device-TLB flush, and a wait with the drain bit. It answers no group: groups
   * still waiting for a response are answered when the device's last fault-taking domain goes
   * (iopf_queue_remove_device) or by their owner (iommufd answers them after the detach).
   */
  drainPasidPrq(dev: DeviceInfo, pasid: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    if (iommu.prqBase) this.prqThread(iommu);
    if (options.skipInvalidation === true) return;
    const did = (dev.ridDomain && this.k.alloc.didOf(dev.ridDomain, iommu)) ?? FLPT_DEFAULT_DID;
    iommu.qi.submit(
      [
        { type: DescType.WAIT, fields: { FN: 1, STATUS: QI_DONE } },
        pasid === IOMMU_NO_PASID ? Descs.iotlbDsi(iommu.unit, did) : Descs.piotlbAll(did, pasid),
        devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK),
      ],
      { drain: true },
    );
  }
}

import type { DeviceInfo } from './device';
import type { Domain, IopfHandler, PageFault, PageResponseCode } from './domain';
import { fail } from './errors';
import type { IntelIommu } from './intel-iommu';
import { devPrefix } from './log';
import { Descs } from './qi';
import type { KernelState } from './state';

/** A page request group handed to a handler that answers later (iommufd, a VMM). */
export interface PendingGroup {
  readonly device: DeviceInfo;
  readonly pasid: number | undefined;
  readonly prgIndex: number;
  readonly faults: PageFault[];
  readonly domain: Domain | undefined;
}

/** The IOMMU core's I/O page faults (io-pgfault.c): IOPF per device, partial and pending groups, the page response. */
export class Iopf {
  /** Page requests waiting for their group's last page (the iopf partial list), per (IOMMU, device). */
  private readonly partial = new Map<string, PageFault[]>();

  constructor(private readonly k: KernelState) {}

  /** iopf_queue_discard_partial: the partial groups of every device behind `iommu` go (after a PRQ overflow). */
  discardPartial(iommu: IntelIommu): void {
    for (const k of [...this.partial.keys()]) if (k.startsWith(`${iommu.seq}:`)) this.partial.delete(k);
  }

  /**
   * iopf_for_domain_set: whether attaching `domain` turns IOPF on for the device. Domains with a page-fault
   * handler do; an SVA domain on a device without PRI does not, on bind and on unbind alike (the device
   * handles its own faults: 39c20c4e83b9 "Only handle IOPF for SVA when PRI is supported", and the May 2026
   * fix of its unbind path; 6.17 itself made such a bind ENODEV).
   */
  private takesIopf(dev: DeviceInfo, domain: Domain | undefined): boolean {
    if (domain === undefined) return false;
    if (domain.type === 'sva') return dev.priSupported;
    return domain.iopfHandler !== undefined;
  }

  /** intel_iommu_enable_iopf refuses a device whose PRI is not enabled: ENODEV. */
  checkIopf(dev: DeviceInfo, domain: Domain): void {
    if (this.takesIopf(dev, domain) && !dev.priEnabled) fail('ENODEV', `${dev.name} has no PRI enabled: ${domain.name} cannot take its page faults`);
  }

  /** intel_iommu_enable_iopf for a fault-taking domain: one more reference to the device's IOPF. */
  iopfEnable(dev: DeviceInfo, domain: Domain): void {
    if (!this.takesIopf(dev, domain)) return;
    this.checkIopf(dev, domain);
    dev.iopfEnabled++;
  }

  /** intel_iommu_disable_iopf: the last fault-taking domain to leave takes the device off the iopf queue. */
  iopfDisable(dev: DeviceInfo, domain: Domain | undefined): void {
    if (!this.takesIopf(dev, domain) || dev.iopfEnabled === 0) return;
    if (--dev.iopfEnabled === 0) this.iopfQueueRemoveDevice(dev);
  }

  /**
   * iopf_queue_remove_device: the device's partial groups are dropped and every group still waiting for a
   * response is answered INVALID, newest first (iopf_group_alloc adds pending groups at the head of the
   * device's list). A deferred handler (iommufd) that answers later finds nothing left to answer.
   */
  private iopfQueueRemoveDevice(dev: DeviceInfo): void {
    this.partial.delete(`${dev.iommu.seq}:${dev.sid}`);
    const pending = [...this.k.pendingGroups].filter(([, g]) => g.device === dev).reverse();
    for (const [k, g] of pending) {
      this.k.pendingGroups.delete(k);
      this.respond(dev.iommu, dev.sid, g.pasid, g.prgIndex, true, 'invalid');
    }
  }

  private groupKey(dev: DeviceInfo, pasid: number | undefined, prgIndex: number): string {
    return `${dev.iommu.seq}:${dev.sid}:${pasid ?? -1}:${prgIndex}`;
  }

  /**
   * iommu_report_device_fault (6.17 io-pgfault.c). The handler comes from the attach handle the core
   * records: at the PASID for a request with one; for one without, the RID's, which is the core's domain
   * (`coreRidDomain`), so after a refused attach left the RID blocked, requests still go to the old
   * domain's handler. No handler (no handle, or a domain without iopf_handler), or a handler on a device
   * whose IOPF is off (the WARN_ON on iopf_param), answers that very request INVALID, last in its group or
   * not. A request that is not the last of its group waits in the device's partial list; the last one takes
   * every partial request of the device with its PRG index, whatever the PASID, and goes to the handler.
   */
  reportPageFault(f: PageFault): void {
    const domain = f.pasid === undefined ? f.device.coreRidDomain : f.device.pasidDomains.get(f.pasid);
    const handler: IopfHandler | undefined = domain?.type === 'sva' ? (g) => this.k.sva.svaIopf(domain, g) : domain?.iopfHandler;
    if (handler && f.device.iopfEnabled === 0) {
      this.k.warnOn('iommu_report_device_fault', f.device.iommu.name, `${f.device.name}: ${domain!.name} takes page faults but the device's IOPF is off: WARN_ON(!iopf_param), answered INVALID`);
    }
    if (!handler || f.device.iopfEnabled === 0) {
      this.respond(f.device.iommu, f.device.sid, f.pasid, f.prgIndex, f.lastPage, 'invalid');
      return;
    }
    const partialKey = `${f.device.iommu.seq}:${f.device.sid}`;
    const partial = this.partial.get(partialKey) ?? [];
    if (!f.lastPage) {
      partial.push(f);
      this.partial.set(partialKey, partial);
      return;
    }
    const list = [...partial.filter((p) => p.prgIndex === f.prgIndex), f];
    const rest = partial.filter((p) => p.prgIndex !== f.prgIndex);
    if (rest.length) this.partial.set(partialKey, rest);
    else this.partial.delete(partialKey);
    const key = this.groupKey(f.device, f.pasid, f.prgIndex);
    const code = handler(list);
    if (code === 'deferred') {
      this.k.pendingGroups.set(key, { device: f.device, pasid: f.pasid, prgIndex: f.prgIndex, faults: list, domain });
      return;
    }
    if (code === 'failure' && this.k.ratelimit('iommu_report_device_fault#abort')) {
      // A handler that fails is the core's err_abort: dev_warn_ratelimited, then IOMMU_PAGE_RESP_FAILURE. The
      // PASID printed is the descriptor's field (prm.pasid), 0 for a request without one.
      this.k.log.warn(`${devPrefix(f.device)}iopf with pasid ${f.pasid ?? 0} aborted`);
    }
    this.respond(f.device.iommu, f.device.sid, f.pasid, f.prgIndex, true, code);
  }

  /** iommu_page_response for a group that was deferred (iommufd fault queue, a VMM). */
  pageResponse(which: string | number | DeviceInfo, pasid: number | undefined, prgIndex: number, code: PageResponseCode): void {
    const dev = this.k.device(which);
    const key = this.groupKey(dev, pasid, prgIndex);
    if (!this.k.pendingGroups.delete(key)) fail('EINVAL', `${dev.name}: no page request group ${prgIndex}${pasid !== undefined ? ` for PASID ${pasid}` : ''} is waiting for a response`);
    this.respond(dev.iommu, dev.sid, pasid, prgIndex, true, code);
  }

  /**
   * intel_iommu_page_response: one Page Group Response with the request's RID, PASID (PP when it had one),
   * PRG index and last-page flag, and the core's code as is: IOMMU_PAGE_RESP_SUCCESS 0, _INVALID 1,
   * _FAILURE 2. The last is not the PCIe Response Failure code (0xF, QI_RESP_FAILURE, which Linux defines
   * and never sends): 2 is one of PCIe's unused codes (0010b-1110b), which a Function must process as a
   * Response Failure: it disables its PRI and ignores every later PRG response (hw/endpoint.ts). The kernel
   * says nothing of it, so it is a finding.
   */
  respond(iommu: IntelIommu, rid: number, pasid: number | undefined, prgIndex: number, last: boolean, code: PageResponseCode): void {
    const rc = code === 'success' ? 0 : code === 'invalid' ? 1 : 2;
    iommu.qi.submit([Descs.pageGroupResponse(rid, pasid, prgIndex, last, rc)]);
    if (rc === 2) {
      const who = this.k.deviceOn(iommu, rid)?.name ?? `RID 0x${rid.toString(16)}`;
      this.k.findings.push({
        kind: 'silent',
        function: 'intel_iommu_page_response',
        unit: iommu.name,
        logLine: this.k.log.length,
        message: `${who}: IOMMU_PAGE_RESP_FAILURE went out as Response Code 2 for PRG index ${prgIndex}${pasid !== undefined ? ` (PASID ${pasid})` : ''}: PCIe defines 0 Success, 1 Invalid Request and 0xF Response Failure, and a Function processes an unused code as Response Failure: the device's PRI is disabled and it ignores every later PRG response`,
      });
    }
  }
}

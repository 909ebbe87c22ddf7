import type { DeviceInfo } from './device';
import { Domain, type PageFault, type PageResponseCode } from './domain';
import { fail, KernelError } from './errors';
import { type FlushOptions, flushRange } from './flush';
import { Process } from './process';
import type { KernelState } from './state';

/** A bound SVA (device, process) with its PASID (Linux `struct iommu_sva`). */
export interface SvaHandle {
  readonly device: DeviceInfo;
  readonly process: Process;
  readonly pasid: number;
  readonly domain: Domain;
  users: number;
}

/** The MMU notifier each SVA domain registers on its process (intel_svm_domain_alloc). */
const svaNotifiers = new WeakMap<Domain, { invalidate(start: number, end: number): void; release(): void }>();

/** Shared virtual addressing: binds of processes to devices, their SVA domains, mm release and PASID lifetime. */
export class Sva {
  constructor(private readonly k: KernelState) {}

  /** A process (its mm and CPU page table) that SVA binds can share with devices. */
  newProcess(name: string, options: { fiveLevel?: boolean } = {}): Process {
    const p = new Process(this.k.machine.memory, 1000 + this.k.processes.length, name, options);
    this.k.processes.push(p);
    return p;
  }

  /**
   * iommu_sva_bind_device (6.17). First the mm's PASID (iommu_alloc_mm_data): allocated at the first bind
   * and kept until the mm is dropped, even when this bind then fails; a PASID the device cannot reach is
   * EOVERFLOW; no global PASID for the device (none free, or a device without PASIDs) is ENOSPC. Then a bond
   * at that PASID takes a reference (iommu_attach_handle_get: another domain there, or another mm's, is
   * EBUSY). Then each of the mm's SVA domains (newest first) is tried, and a new one allocated only if none
   * attaches (intel_svm_domain_alloc: intel_iommu_sva_supported, ENODEV or EINVAL); a new domain that fails to
   * attach is freed with its notifier. 6.12.118 refuses every SVA bind on x86 with EOPNOTSUPP, a stable-only
   * change; the model binds as 6.17 does. That the caller holds the mm (mm_users) is the model's check:
   * binding an exited process is EINVAL.
   */
  svaBind(which: string | number | DeviceInfo, process: Process): SvaHandle {
    const dev = this.k.device(which);
    if (process.exited) fail('EINVAL', `${process.name} has exited`);
    if (process.pasid === undefined) {
      try {
        process.pasid = this.k.pasids.allocGlobal(dev);
      } catch (e) {
        if (e instanceof KernelError) fail('ENOSPC', `${process.name}: no global PASID for ${dev.name} (${e.message})`);
        throw e;
      }
      process.notifiers.add({ invalidate: () => undefined, release: () => this.dropMm(process) });
    } else if (process.pasid >= dev.maxPasids) {
      fail('EOVERFLOW', `${process.name}'s PASID ${process.pasid} is beyond ${dev.name}'s ${dev.maxPasids} PASIDs`);
    }
    const pasid = process.pasid;
    const existing = this.k.svaBindings.find((h) => h.device === dev && h.pasid === pasid);
    if (existing) {
      if (existing.process !== process) fail('EBUSY', `${dev.name}: PASID ${pasid} is bound to ${existing.process.name}`);
      existing.users++;
      return existing;
    }
    const there = dev.pasidDomains.get(pasid);
    if (there) fail('EBUSY', `${dev.name}: PASID ${pasid} is attached to ${there.name}`);
    const note = { note: `SVA ${process.name}` };
    let domain: Domain | undefined;
    for (const d of this.k.domains.filter((x) => x.type === 'sva' && x.process === process).reverse()) {
      try {
        this.k.attach.attachDevicePasid(d, dev, pasid, note);
        domain = d;
        break;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    }
    if (!domain) {
      this.svaSupported(dev);
      const d = new Domain({ id: this.k.newDomainId(), type: 'sva', process, name: `sva-${process.name}`, description: `SVA, ${process.name}` });
      this.k.domains.push(d);
      const notifier = {
        invalidate: (start: number, end: number) => flushRange(d, start, end - 1, false),
        release: () => this.svaRelease(d),
      };
      process.notifiers.add(notifier);
      svaNotifiers.set(d, notifier);
      try {
        this.k.attach.attachDevicePasid(d, dev, pasid, note);
      } catch (e) {
        this.freeSvaDomain(d);
        throw e;
      }
      domain = d;
    }
    const handle: SvaHandle = { device: dev, process, pasid, domain, users: 1 };
    this.k.svaBindings.push(handle);
    return handle;
  }

  /**
   * intel_iommu_sva_supported (6.17): ENODEV when the unit is not SVM-capable (intel_svm_check at boot);
   * EINVAL without PASID and ATS enabled, or with PRI supported but not enabled (a device without PRI handles
   * its own faults).
   */
  svaSupported(dev: DeviceInfo): void {
    if (!dev.iommu.svmCapable) fail('ENODEV', `${dev.iommu.name} is not SVM-capable (PASID support, and first-level paging matching the CPU's GBPAGES and LA57)`);
    if (!dev.pasidEnabled || !dev.atsEnabled) fail('EINVAL', `${dev.name}: SVA needs PASID and ATS enabled`);
    if (dev.priSupported && !dev.priEnabled) fail('EINVAL', `${dev.name}: PRI is supported but not enabled`);
  }

  /**
   * iommu_sva_unbind_device: the last reference detaches the PASID (the blocking domain's set_dev_pasid),
   * and the domain goes with its last device (intel_svm_domain_free: the notifier is put). The mm, and with
   * it the PASID, goes once the process has exited and no SVA domain holds it (mmdrop, mm_pasid_drop).
   */
  svaUnbind(handle: SvaHandle, options: FlushOptions = {}): void {
    if (--handle.users > 0) return;
    this.k.svaBindings.splice(this.k.svaBindings.indexOf(handle), 1);
    if (handle.device.pasidDomains.get(handle.pasid) === handle.domain) this.k.attach.detachDevicePasid(handle.device, handle.pasid, options);
    if (!handle.domain.attachmentCount) this.freeSvaDomain(handle.domain);
  }

  private freeSvaDomain(d: Domain): void {
    const p = d.process!;
    const n = svaNotifiers.get(d);
    if (n) p.notifiers.delete(n);
    d.freed = true;
    this.k.domains.splice(this.k.domains.indexOf(d), 1);
    if (p.exited) this.dropMm(p);
  }

  /** __mmdrop's mm_pasid_drop: once the process has exited and no SVA domain holds its mm. */
  private dropMm(p: Process): void {
    if (!p.exited || p.pasid === undefined || this.k.domains.some((d) => d.type === 'sva' && d.process === p)) return;
    this.k.pasids.freeGlobal(p.pasid);
    p.pasid = undefined;
  }

  /**
   * intel_mm_release (the mm goes away at exit): every (device, PASID) of the domain, newest first, is torn
   * down with fault_ignore (no page-request drain). The PASID stays allocated while the domain holds the mm.
   */
  private svaRelease(d: Domain): void {
    for (const a of d.attachments.reverse()) if (a.pasid !== undefined) this.k.entries.teardownPasidEntry(a.device, a.pasid, true, {});
  }

  /**
   * iommu_sva_handle_iopf: each fault in turn while the answer is Success (errors are sticky), each through
   * iommu_sva_handle_mm: a request without PASID, an exited mm, no VMA, or an access the VMA does not allow
   * (read, write, execute) is INVALID; otherwise handle_mm_fault decides.
   */
  svaIopf(domain: Domain, group: readonly PageFault[]): PageResponseCode {
    const p = domain.process!;
    for (const f of group) {
      if (f.pasid === undefined) return 'invalid';
      const vma = p.vmaAt(f.address);
      if (f.exec && !vma?.exec) return 'invalid';
      if (!p.handleFault(f.address, f.write)) return 'invalid';
    }
    return 'success';
  }
}

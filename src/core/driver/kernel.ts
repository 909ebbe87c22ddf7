import type { Endpoint } from '../hw/endpoint';
import type { DeviceDma, DmaOutcome, Machine } from '../hw/machine';
import type { InterruptResult, TranslateOptions } from '../hw/types';
import type { AttachOptions } from './attach';
import type { DeviceInfo } from './device';
import type { IotlbGather } from './dirty';
import type { DirtyHarvest, ReadAndClearDirtyOptions } from './dirty-tracking';
import type { Domain, IopfHandler, PageResponseCode, Stage, VtdS1 } from './domain';
import type { KernelError } from './errors';
import type { DriverFinding } from './findings';
import { type FlushOptions, flushAll } from './flush';
import type { IntelIommu } from './intel-iommu';
import type { PendingGroup } from './iopf';
import type { IrqRemapping, MsiAllocation, MsiOptions } from './irq-remapping';
import type { KernelLog, KernelVersion } from './log';
import type { Prot } from './mapping';
import type { PasidAllocator } from './pasid-alloc';
import type { Process } from './process';
import { type KernelOptions, KernelState } from './state';
import type { SvaHandle } from './sva';

export type { AttachOptions } from './attach';
export type { DirtyHarvest, ReadAndClearDirtyOptions } from './dirty-tracking';
export type { Prot } from './mapping';
export type { KernelOptions } from './state';
export type { SvaHandle } from './sva';

/**
 * The Linux IOMMU core and VT-d driver, on top of the hardware model: domains, attachments by RID and by
 * (RID, PASID), map/unmap, SVA, nesting, PASID allocation, the fault handler and the page-request thread.
 * It programs the hardware only as the kernel does, by writing structures into memory and descriptors into
 * the invalidation queue, in the kernel's order (docs/notes/linux-vtd-driver-flows.md, 6.17 with the 2026
 * fixes: PASID-based invalidation for SVA and nested domains, clear-then-update tear-down; 6.12 where a
 * version boundary says so).
 *
 * This class is the API; the work is in the parts it composes over one shared state (state.ts): probe.ts
 * (boot, probe, release), domain-alloc.ts (domains and DIDs), pasid-entries.ts, compat.ts, attach.ts
 * (attach, replace, detach), nested.ts, mapping.ts (map, unmap) over dma-pte.ts, sva.ts, iopf.ts and prq.ts
 * (page requests), dirty-tracking.ts and interrupts.ts (DMA, faults, MSIs). Each method names the kernel
 * function it plays; its part's documentation says how.
 */
export class IommuKernel {
  private readonly s: KernelState;
  readonly log: KernelLog;
  readonly version: KernelVersion;
  readonly iommus: IntelIommu[];
  /** The probed devices by (segment, RID): pci.ts pciDeviceKey, DeviceInfo.key. */
  readonly devices: Map<number, DeviceInfo>;
  readonly pasids: PasidAllocator;
  readonly domains: Domain[];
  readonly identity: Domain;
  readonly blocked: Domain;
  readonly processes: Process[];
  readonly svaBindings: SvaHandle[];
  /** Where the kernel would hang, BUG or WARN, or goes wrong silently: what dmesg cannot show byte for byte (findings.ts). */
  readonly findings: DriverFinding[];
  /** Page request groups reported to a handler that answers later (iommufd, a VMM), by key. */
  readonly pendingGroups: Map<string, PendingGroup>;

  constructor(
    readonly machine: Machine,
    options: KernelOptions = {},
  ) {
    const s = (this.s = new KernelState(machine, options));
    this.log = s.log;
    this.version = s.version;
    this.iommus = s.iommus;
    this.devices = s.devices;
    this.pasids = s.pasids;
    this.domains = s.domains;
    this.identity = s.identity;
    this.blocked = s.blocked;
    this.processes = s.processes;
    this.svaBindings = s.svaBindings;
    this.findings = s.findings;
    this.pendingGroups = s.pendingGroups;
  }

  /** Interrupt remapping, when KernelOptions.interruptRemapping set it up. */
  get irq(): IrqRemapping | undefined {
    return this.s.irq;
  }

  // ---- boot and probe (probe.ts) ----

  /** intel_iommu_init + device probe: brings up every unit, then every endpoint behind it. */
  boot(): this {
    this.s.probe.boot();
    return this;
  }

  /** intel_iommu_probe_device + probe_finalize, and the core's group and default domain. */
  probeDevice(ep: Endpoint): DeviceInfo {
    return this.s.probe.probeDevice(ep);
  }

  /** iommu_release_device. */
  releaseDevice(which: string | number | DeviceInfo, options: FlushOptions = {}): void {
    this.s.probe.releaseDevice(which, options);
  }

  /**
   * A device by PCI address (`SSSS:BB:DD.F`, or `BB:DD.F` in segment 0), RID or label; a bare RID is looked up
   * in `segment` (0 unless given).
   */
  device(which: string | number | DeviceInfo, segment = 0): DeviceInfo {
    return this.s.device(which, segment);
  }

  // ---- domains (domain-alloc.ts) ----

  /** A paging domain (`domain_alloc_paging_flags`). */
  allocPagingDomain(o: { name?: string; description?: string; stage?: Stage; nestParent?: boolean; dirtyTracking?: boolean; addressWidth?: 48 | 57; device?: string | number | DeviceInfo } = {}): Domain {
    return this.s.alloc.allocPagingDomain(o);
  }

  /** A nested domain: a user-managed first-level table (GPA) over a nest parent (`IOMMU_HWPT_DATA_VTD_S1`). */
  allocNestedDomain(parent: Domain, s1: VtdS1, o: { name?: string; description?: string } = {}): Domain {
    return this.s.alloc.allocNestedDomain(parent, s1, o);
  }

  freeDomain(d: Domain): void {
    this.s.alloc.freeDomain(d);
  }

  /** The domain ID `domain` has on `iommu`, if it is attached there. */
  didOf(domain: Domain, iommu: IntelIommu): number | undefined {
    return this.s.alloc.didOf(domain, iommu);
  }

  // ---- attach, replace, detach (attach.ts) ----

  /** iommu_attach_device / iommu_group_replace_domain, then the driver's attach_dev. */
  attachDevice(domain: Domain, which: string | number | DeviceInfo, options: AttachOptions = {}): void {
    this.s.attach.attachDevice(domain, which, options);
  }

  /** Makes the RID blocked (the blocking domain's attach_dev). */
  detachDevice(which: string | number | DeviceInfo, options: FlushOptions = {}): void {
    this.s.attach.detachDevice(which, options);
  }

  /** iommu_attach_device_pasid (set_dev_pasid). */
  attachDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    this.s.attach.attachDevicePasid(domain, which, pasid, options);
  }

  /** iommu_replace_device_pasid. */
  replaceDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    this.s.attach.replaceDevicePasid(domain, which, pasid, options);
  }

  /** iommu_detach_device_pasid. */
  detachDevicePasid(which: string | number | DeviceInfo, pasid: number, options: FlushOptions = {}): void {
    this.s.attach.detachDevicePasid(which, pasid, options);
  }

  // ---- nesting (nested.ts) ----

  /** iommu_bind_pgtable_pasid(parent, dev, addr, pasid): a nested domain for the user table, attached at (RID, PASID). */
  bindPgtablePasid(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, pasid: number, o: AttachOptions & { s1?: Partial<VtdS1>; iopfHandler?: IopfHandler } = {}): Domain {
    return this.s.nested.bindPgtablePasid(parent, which, pgtblAddr, pasid, o);
  }

  /** iommu_bind_pgtable(parent, dev, addr): the RID's translation becomes nested over the parent it is attached to. */
  bindPgtable(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, o: AttachOptions & { s1?: Partial<VtdS1> } = {}): Domain {
    return this.s.nested.bindPgtable(parent, which, pgtblAddr, o);
  }

  /** intel_nested_cache_invalidate_user (HWPT_INVALIDATE, VTD_S1). */
  invalidateNested(nested: Domain, entries: readonly { addr: number; npages: number | bigint; leaf?: boolean }[], options: FlushOptions = {}): { handled: number; error?: KernelError } {
    return this.s.nested.invalidateNested(nested, entries, options);
  }

  // ---- map and unmap (mapping.ts) ----

  /** iommu_map. */
  map(domain: Domain, iova: number, paddr: number, size: number, prot: Prot = { read: true, write: true }, options: FlushOptions = {}): void {
    this.s.mapping.map(domain, iova, paddr, size, prot, options);
  }

  /** iommu_unmap in strict mode; returns the bytes the driver reported. */
  unmap(domain: Domain, iova: number, size: number, options: FlushOptions = {}): number {
    return this.s.mapping.unmap(domain, iova, size, options);
  }

  /** enforce_cache_coherency. */
  enforceCacheCoherency(domain: Domain, options: FlushOptions = {}): boolean {
    return this.s.mapping.enforceCacheCoherency(domain, options);
  }

  /** iommu_iotlb_sync after a dirty harvest. */
  iotlbSync(domain: Domain, gather: IotlbGather, options: FlushOptions = {}): void {
    this.s.mapping.iotlbSync(domain, gather, options);
  }

  /** cache_tag_flush_all. */
  flushAll(domain: Domain, options: FlushOptions = {}): void {
    flushAll(domain, options);
  }

  // ---- SVA (sva.ts) ----

  newProcess(name: string, options: { fiveLevel?: boolean } = {}): Process {
    return this.s.sva.newProcess(name, options);
  }

  /** iommu_sva_bind_device. */
  svaBind(which: string | number | DeviceInfo, process: Process): SvaHandle {
    return this.s.sva.svaBind(which, process);
  }

  /** iommu_sva_unbind_device. */
  svaUnbind(handle: SvaHandle, options: FlushOptions = {}): void {
    this.s.sva.svaUnbind(handle, options);
  }

  // ---- DMA, interrupts and page requests (interrupts.ts, prq.ts, iopf.ts) ----

  /** DMA from a device, then the interrupts it raised are serviced (fault handler, PRQ thread). */
  dma(which: string | number | DeviceInfo, req: DeviceDma): DmaOutcome {
    return this.s.faults.dma(which, req);
  }

  /** pci_alloc_irq_vectors for MSI. */
  allocMsi(which: string | number | DeviceInfo, options: MsiOptions): MsiAllocation {
    return this.s.faults.allocMsi(which, options);
  }

  /** free_irq / pci_free_irq_vectors. */
  freeMsi(a: MsiAllocation): void {
    this.s.faults.freeMsi(a);
  }

  /** The device writes an MSI (address 0xfeeXXXXX, data); the IOMMU remaps it; its faults are handled. */
  interrupt(which: string | number | DeviceInfo, msg: { readonly address: number; readonly data: number }, options?: TranslateOptions): InterruptResult {
    return this.s.faults.interrupt(which, msg, options);
  }

  /** Runs the fault handler and the page-request thread of every unit that has something pending. */
  serviceInterrupts(): void {
    this.s.faults.serviceInterrupts();
  }

  /** iommu_page_response for a group that was deferred (iommufd fault queue, a VMM). */
  pageResponse(which: string | number | DeviceInfo, pasid: number | undefined, prgIndex: number, code: PageResponseCode): void {
    this.s.iopf.pageResponse(which, pasid, prgIndex, code);
  }

  // ---- dirty tracking (dirty-tracking.ts) ----

  /** intel_iommu_set_dirty_tracking. */
  setDirtyTracking(domain: Domain, enable: boolean, options: FlushOptions = {}): void {
    this.s.dirty.setDirtyTracking(domain, enable, options);
  }

  /** intel_iommu_read_and_clear_dirty over [iova, iova + size). */
  readAndClearDirty(domain: Domain, iova: number, size: number, o: ReadAndClearDirtyOptions = {}): DirtyHarvest {
    return this.s.dirty.readAndClearDirty(domain, iova, size, o);
  }
}

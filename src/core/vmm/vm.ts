import type { DeviceInfo } from '../driver/device';
import type { Domain } from '../driver/domain';
import { IommuKernel, type KernelOptions } from '../driver/kernel';
import type { Endpoint, EndpointCapabilities } from '../hw/endpoint';
import { Machine } from '../hw/machine';
import type { DmaRequest, TranslationResult } from '../hw/types';
import { formatPciAddress, type PciAddress, parsePciAddress, pciRid } from '../pci';
import { vtdUnits } from '../vtd/factory';
import type { VtdUnit } from '../vtd/unit';
import { GuestMemory } from './guest-memory';
import type { HostIommu } from './host-iommu';
import { KernelBind } from './kernel-bind';
import type { Host } from './host';
import { CpuPasidTable, enqcmdGpFixup, submitEnqcmd } from './cpu-pasid';
import type { VmmFinding } from './findings';
import { PasidMap } from './pasid-map';
import { qemu72Fault } from './qemu-faults';
import { PasidSplit } from './pasid-split';
import { PasidTrace } from './pasid-trace';
import { Vmm, type VmmOptions } from './viommu-vmm';
import { VmmLog } from './vmm-log';

/**
 * A virtual machine on a host: guest RAM backed by host memory (guest-memory.ts), and, when it has one, a
 * virtual IOMMU that is the same VT-d hardware model running over guest memory, programmed by a guest
 * kernel running the same driver model as the host. The VMM's part (what QEMU's intel-iommu emulation and
 * VFIO do) is in viommu-vmm.ts; this file holds the VM's parts and its devices.
 */

/** What the vIOMMU advertises (QEMU's `-device intel-iommu,...` properties, in words). */
export interface VIommuConfig {
  /** x-scalable-mode (default true). */
  readonly scalableMode?: boolean;
  /** caching-mode (default true: device assignment needs it). */
  readonly cachingMode?: boolean;
  /** First-level translation (x-flts): the guest may use first-level tables, which the host runs nested. */
  readonly firstLevel?: boolean;
  /** Second-level translation (default true). */
  readonly secondLevel?: boolean;
  /** ECAP.NEST advertised to the guest (default false; QEMU never advertises it). */
  readonly nesting?: boolean;
  /** PASID width in bits (0: no PASID support); default 20 in scalable mode. */
  readonly pasidBits?: number;
  /**
   * ECAP.VCS with VCCAP.PAS: the guest asks the VMM for PASIDs through virtual commands (seed 000 step 2).
   * `true` is the VT-d 3.3 register layout; 'vt-d-3.1' the one before (see vtd/vcmd-registers.ts).
   */
  readonly virtualCommand?: boolean | 'vt-d-3.1';
  /**
   * Whether one assigned device may use guest IOVA and guest SVM at once (default true, as scalable-mode
   * hardware with a second level per PASID allows). false models the limitation seed 002 reports for the
   * hardware of its time: binding a guest PASID on a device whose RID is shadowed is refused, with the reason.
   */
  readonly iovaWithSvm?: boolean;
  /** aw-bits: 39, 48 or 57 (default 48). */
  readonly addressWidth?: 39 | 48 | 57;
  /**
   * Where QEMU and the specification differ (fault reasons in scalable mode, see qemu-faults.ts), which one
   * the vIOMMU follows. Default 'spec'.
   */
  readonly behaviour?: 'spec' | 'qemu-7.2';
}

export interface VmConfig {
  readonly name: string;
  /** Guest RAM in bytes (default 1 GiB). */
  readonly memory?: number;
  /** The vIOMMU; omit for a VM without one (assigned devices then DMA to guest-physical addresses). */
  readonly viommu?: VIommuConfig;
  /** The guest kernel's driver model options (version, scalable mode, default domain...). */
  readonly kernel?: KernelOptions;
  /**
   * Guest and host PASIDs (seeds 000 and 003). `identity`: the guest's PASIDs are the device's (an assigned
   * PF or VF with its PASID space delegated). `non-identity`: the VMM gives each guest PASID a host PASID
   * from the host's global space, optionally above a local/global split (`globalMin`). `host-exposed`: the
   * guest uses host-allocated PASID values directly, which works but cannot migrate (seed 003).
   */
  readonly pasids?: { readonly policy?: 'identity' | 'non-identity' | 'host-exposed'; readonly globalMin?: number };
  /** How the VMM behind the vIOMMU propagates what it traps (and the seed 004 mistake, `mdevKeepsGpaView`). */
  readonly vmm?: VmmOptions;
}

/** A device the VMM gave the guest: a host device assigned with VFIO (a PF or VF), or a mediated device. */
export interface VmDevice {
  readonly kind: 'vfio-pci' | 'mdev';
  /** Where the guest sees it. */
  readonly address: PciAddress;
  /** The virtual endpoint behind the vIOMMU (none in a VM without a vIOMMU: the guest's IOMMU model has nothing to probe). */
  readonly guest: Endpoint | undefined;
  /** The host device that does the DMA (for an mdev, its parent); another one after migration. */
  host: DeviceInfo;
  /** For an mdev: the host PASID that marks the subdevice on its parent's RID (re-allocated by migration). */
  hostPasid?: number;
  /** The device submits work with ENQCMD (its shared work queues take the PASID from the CPU, seed 003). */
  readonly enqcmd?: boolean;
  /** Work queues the guest programmed with a PASID, and the PASID the device model put into the hardware. */
  readonly workQueues: Map<number, { readonly guestPasid: number; readonly wirePasid: number | undefined }>;
  /** What the device model (VDCM) was fed for translating addresses it finds in guest device structures. */
  readonly deviceModelView: { gpa: boolean; iova: boolean };
  /** How the host translates the device's requests without PASID now (QEMU's address-space switch). */
  space: { readonly kind: 'gpa' } | { readonly kind: 'shadow'; readonly guestDid: number; readonly domain: Domain } | { readonly kind: 'nested'; readonly domain: Domain };
}

export class VmError extends Error {}

const QEMU_VTD_REG_BASE = 0xfed9_0000;

export class Vm {
  readonly name: string;
  readonly memory: GuestMemory;
  /** The guest platform: guest memory, the vIOMMU, virtual endpoints. */
  readonly machine: Machine;
  readonly viommu: VtdUnit | undefined;
  readonly kernel: IommuKernel;
  /** The VMM trapping the vIOMMU (when there is one). */
  readonly vmm: Vmm | undefined;
  readonly log = new VmmLog();
  /** Every guest/host PASID lookup, in order (who did it, which direction, fast or a search). */
  readonly pasidTrace = new PasidTrace();
  /** The G-to-H table (and the host driver's H-to-G binds); replaced on migration. */
  pasids: PasidMap;
  /** KVM's CPU PASID translation table for guest ENQCMD (seed 003); consulted on every submission. */
  readonly cpuPasids: CpuPasidTable;
  private readonly noted: VmmFinding[] = [];
  readonly devices: VmDevice[] = [];
  readonly config: VmConfig;
  /** How the VMM reaches the host's IOMMU (the seed-era bind path, or iommufd); one per host the VM runs on. */
  hostIommu: HostIommu;
  private gpaMapped = false;

  /** The host the VM runs on (live migration moves it). */
  host: Host;

  constructor(host: Host, config: VmConfig) {
    this.host = host;
    this.config = config;
    this.name = config.name;
    const size = config.memory ?? 0x4000_0000;
    const aw = config.viommu?.addressWidth ?? 48;
    this.memory = new GuestMemory(host.machine.memory, { size, hostBase: host.reserveRam(size), addressWidth: Math.min(aw, 52) });
    this.machine = new Machine({ memory: this.memory });
    this.hostIommu = this.hostIommuOn(host);
    if (config.viommu) {
      const v = config.viommu;
      const sm = v.scalableMode ?? true;
      this.viommu = this.machine.addUnit(vtdUnits, {
        name: 'dmar0',
        regBase: QEMU_VTD_REG_BASE,
        version: [1, 0],
        features: {
          scalableMode: sm,
          cachingMode: v.cachingMode ?? true,
          agaws: aw === 57 ? [48, 57] : aw === 48 ? [39, 48] : [39],
          mgaw: aw,
          firstLevel: sm && (v.firstLevel ?? false),
          secondLevel: v.secondLevel ?? true,
          nested: v.nesting ?? false,
          // Under a local/global split the vIOMMU's PASID width confines the guest to the local range (seed 003).
          pasidBits: sm ? (v.pasidBits ?? (config.pasids?.globalMin !== undefined ? new PasidSplit(config.pasids.globalMin).advertisedPasidBits() : 20)) : 0,
          // QEMU exposes one fault recording register (VTD_FRCD_REG_NR).
          faultRecordingRegisters: 1,
          pageRequests: sm,
          deviceTlb: true,
          queuedInvalidation: true,
          interruptRemapping: true,
          passThrough: true,
          virtualCommand: sm && (v.virtualCommand ?? false) !== false,
        },
        // QEMU 7.2 records some faults with other codes than the specification (qemu-faults.ts).
        ...(v.behaviour === 'qemu-7.2'
          ? {
              recordAs: (reason: number, q: { readonly write: boolean; readonly hasPasid: boolean }) => {
                const f = qemu72Fault(reason, { write: q.write, hasPasid: q.hasPasid, scalableModeProperty: sm });
                return f?.recorded ? { code: f.code, qualified: f.qualified } : undefined;
              },
            }
          : {}),
      });
    }
    this.kernel = new IommuKernel(this.machine, config.kernel ?? {});
    this.pasids = this.newPasidMap(host);
    this.cpuPasids = new CpuPasidTable(this.name, { trace: this.pasidTrace });
    this.pasids.addHolder(this.cpuPasids);
    this.vmm = this.viommu ? new Vmm(this, config.vmm) : undefined;
  }

  /**
   * The VM's guest-physical address space on the host: a paging domain (a nest parent, so nested binds can
   * sit on it) mapping all of guest RAM to its host pages, as VFIO maps the VM's memory for assigned devices.
   * Made when the first device is assigned.
   */
  get gpaDomain(): Domain {
    const d = this.hostIommu.gpaSpace();
    if (!this.gpaMapped) {
      this.gpaMapped = true;
      this.log.add({ vm: this.name, side: 'vmm', action: 'map-guest-memory', detail: `GPA 0x0-0x${(this.memory.size - 1).toString(16)} to HPA 0x${this.memory.hostBase.toString(16)} in ${d.name} on ${this.host.name}`, path: this.hostIommu.path });
    }
    return d;
  }

  /** Frees the GPA space on the current host (teardown); the next use makes a new one. */
  releaseGpaDomain(): void {
    if (!this.gpaMapped) return;
    this.gpaMapped = false;
    this.hostIommu.releaseGpaSpace();
    this.log.add({ vm: this.name, side: 'vmm', action: 'unmap-guest-memory', detail: `guest memory unmapped and its domain freed on ${this.host.name}`, path: this.hostIommu.path });
  }

  /** The host interface for `host`, where guest RAM is now. */
  private hostIommuOn(host: Host): HostIommu {
    return new KernelBind(host.kernel, { vm: this.name, ram: { hostBase: this.memory.hostBase, size: this.memory.size }, propagation: this.config.vmm?.invalidationPropagation ?? 'raw' });
  }

  /** Live migration's switch of hosts: the VM's RAM already moved (GuestMemory.rebase); the host interface follows. */
  moveTo(host: Host): void {
    this.host = host;
    this.hostIommu = this.hostIommuOn(host);
  }

  /**
   * vfio-pci assignment of a host device to the guest at `guestAddress` (QEMU `-device vfio-pci,host=...`).
   * With a vIOMMU that does not report caching mode QEMU 7.2 refuses to start (vtd_panic_require_caching_mode):
   * without CM the guest never tells the VMM about new mappings, so the host could not shadow them.
   */
  assign(hostDevice: string, guestAddress: string, caps?: EndpointCapabilities, o: { readonly enqcmd?: boolean } = {}): VmDevice {
    if (this.viommu && this.viommu.cap.cm !== 1) {
      throw new VmError('We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU protection.');
    }
    const dev = this.host.kernel.device(hostDevice);
    return this.addDevice('vfio-pci', dev, guestAddress, caps ?? dev.endpoint.caps, undefined, o.enqcmd === true);
  }

  /**
   * A mediated device: a subdevice of `parent` marked by `hostPasid` on the parent's RID (SIOV/mdev). The
   * parent driver allocated the PASID from the parent's per-RID space, so it is the host's, not the guest's
   * (seed 003). The guest sees an ordinary PCI function at `guestAddress`.
   */
  addMdev(parent: string, guestAddress: string, o: { readonly caps?: EndpointCapabilities; readonly enqcmd?: boolean } = {}): VmDevice {
    const dev = this.host.kernel.device(parent);
    // The parent driver marks the subdevice with a PASID from the parent's own space (seed 003).
    const hostPasid = this.host.kernel.pasids.allocDevice(dev);
    return this.addDevice('mdev', dev, guestAddress, o.caps ?? { pasid: { width: 20 } }, hostPasid, o.enqcmd === true);
  }

  private addDevice(kind: VmDevice['kind'], dev: DeviceInfo, guestAddress: string, caps: EndpointCapabilities, hostPasid: number | undefined, enqcmd: boolean): VmDevice {
    const a = parsePciAddress(guestAddress);
    if (!a) throw new VmError(`not a PCI address: ${guestAddress}`);
    if (this.devices.some((d) => pciRid(d.address) === pciRid(a))) throw new VmError(`${this.name} already has a device at ${formatPciAddress(a)}`);
    const guest = this.viommu ? this.machine.addEndpoint(a, caps, this.viommu) : undefined;
    const gpa = this.gpaDomain;
    this.hostIommu.attach(dev, hostPasid, gpa);
    if (!this.pasids.devices.includes(dev)) this.pasids.addDevice(dev);
    const d: VmDevice = { kind, address: a, guest, host: dev, ...(hostPasid !== undefined ? { hostPasid } : {}), ...(enqcmd ? { enqcmd } : {}), workQueues: new Map(), deviceModelView: { gpa: kind === 'mdev', iova: false }, space: { kind: 'gpa' } };
    this.devices.push(d);
    this.log.add({
      vm: this.name,
      side: 'vmm',
      action: kind === 'mdev' ? 'add-mdev' : 'assign-device',
      detail: `${dev.name}${hostPasid !== undefined ? ` PASID ${hostPasid}` : ''} as ${formatPciAddress(a)} in ${this.name}, DMA to guest-physical addresses (${gpa.name})`,
      ...(hostPasid !== undefined ? { pasid: { host: hostPasid } } : {}),
    });
    return d;
  }

  /**
   * A device QEMU emulates (its `edu` test device, a virtio device): it exists only in the guest, and its DMA
   * is translated by the vIOMMU itself, at guest-physical addresses of the result.
   */
  addEmulatedDevice(guestAddress: string, caps: EndpointCapabilities = {}): Endpoint {
    if (!this.viommu) throw new VmError(`${this.name} has no vIOMMU: an emulated device's DMA goes to guest-physical addresses untranslated`);
    const ep = this.machine.addEndpoint(guestAddress, caps, this.viommu);
    this.log.add({ vm: this.name, side: 'vmm', action: 'add-emulated-device', detail: `${formatPciAddress(ep.address)} emulated by the VMM, behind the vIOMMU` });
    return ep;
  }

  /**
   * DMA by an emulated device: the vIOMMU translates it (a fault is recorded in the guest's fault registers
   * and the guest kernel's fault handler prints it); the data then goes to guest RAM, i.e. host pages.
   */
  emulatedDma(address: string, req: { readonly pasid?: number; readonly addr: DmaRequest['addr']; readonly write?: boolean }): { result: TranslationResult; hpa: number | null } {
    const out = this.machine.dma(address, req);
    if (!out.result.ok && typeof req.addr === 'number') this.vmm?.traceFault(this.machine.endpoint(address).sid, req.addr, req.write === true, req.pasid ?? null, out.result);
    this.kernel.serviceInterrupts();
    return { result: out.result, hpa: out.result.ok ? this.memory.hpa(out.result.address) : null };
  }

  /** The VM device at the guest's `address`. */
  device(address: string): VmDevice {
    const a = parsePciAddress(address);
    const d = a && this.devices.find((x) => pciRid(x.address) === pciRid(a));
    if (!d) throw new VmError(`${this.name} has no device at ${address}`);
    return d;
  }

  /**
   * DMA by a VM device as the host hardware sees it: the request leaves the physical device (the mdev's
   * parent with its host PASID; an assigned function with whatever PASID the guest programmed into it) and
   * goes through the host IOMMU. The result's address is host-physical; `gpa` says where that is in the guest.
   */
  dma(address: string, req: { readonly pasid?: number; readonly workQueue?: number; readonly addr: DmaRequest['addr']; readonly write?: boolean; readonly exec?: boolean; readonly priv?: boolean }): { result: TranslationResult; gpa: number | null; wirePasid: number | undefined } {
    const d = this.device(address);
    const wirePasid = req.workQueue !== undefined ? this.workQueuePasid(d, req.workQueue) : d.kind === 'mdev' && req.pasid === undefined ? d.hostPasid : req.pasid;
    const out = this.host.kernel.dma(d.host, { ...req, ...(wirePasid !== undefined ? { pasid: wirePasid } : {}) });
    // What the VMM injected (page requests into the vIOMMU's queue) raises the guest's interrupts: its vCPUs
    // run the handlers before anything else happens.
    this.kernel.serviceInterrupts();
    const r = out.result;
    return { result: r, gpa: r.ok ? this.memory.gpa(r.address) : null, wirePasid };
  }

  private workQueuePasid(d: VmDevice, wq: number): number | undefined {
    const q = d.workQueues.get(wq);
    if (!q) throw new VmError(`${formatPciAddress(d.address)} has no work queue ${wq} programmed`);
    return q.wirePasid;
  }

  /**
   * The guest programs work queue `wq` of a device with a guest PASID (seed 000 step 6). An assigned function
   * is the guest's to program: the device emits the guest PASID. An mdev's MMIO is trapped and handed to the
   * device model, which asks the host driver for the host PASID bound for that guest PASID (iommu_get_hpasid,
   * a search of the device's binds, seed 000 step 7) and programs that into the hardware.
   */
  programWorkQueue(address: string, wq: number, guestPasid: number): number | undefined {
    const d = this.device(address);
    this.log.add({ vm: this.name, side: 'guest', action: 'program-work-queue', detail: `${formatPciAddress(d.address)} work queue ${wq} with guest PASID ${guestPasid}`, pasid: { guest: guestPasid } });
    let wire: number | undefined = guestPasid;
    if (d.kind === 'mdev') {
      this.log.add({ vm: this.name, side: 'vmm', action: 'trap-mmio', detail: `work queue ${wq} PASID register of ${formatPciAddress(d.address)}: to the device model`, pasid: { guest: guestPasid } });
      wire = this.pasids.driverGuestToHost(guestPasid, d.host.name, { requester: 'vdcm', why: 'work queue programming' });
      this.vmm?.flushLookups();
      if (wire === undefined) {
        this.note({ code: 'present-without-mapping', vm: this.name, guestPasid, message: `the device model found no host PASID bound for guest PASID ${guestPasid} of ${formatPciAddress(d.address)}: work queue ${wq} is left without a PASID` });
      } else {
        this.log.add({ vm: this.name, side: 'vdcm', action: 'program-hardware', detail: `${d.host.name} work queue ${wq} with host PASID ${wire}`, pasid: { guest: guestPasid, host: wire } });
      }
    }
    d.workQueues.set(wq, { guestPasid, wirePasid: wire });
    return wire;
  }

  /**
   * The device model programs every mediated work queue again from the guest's PASIDs (after migration the
   * host PASIDs behind them are new): the same reverse lookup as when the guest programmed them.
   */
  reprogramWorkQueues(): void {
    for (const d of this.devices) {
      if (d.kind !== 'mdev') continue;
      for (const [wq, q] of [...d.workQueues]) {
        const wire = this.pasids.driverGuestToHost(q.guestPasid, d.host.name, { requester: 'vdcm', why: 'work queue reprogramming' });
        this.vmm?.flushLookups();
        d.workQueues.set(wq, { guestPasid: q.guestPasid, wirePasid: wire });
        this.log.add({ vm: this.name, side: 'vdcm', action: 'program-hardware', detail: `${d.host.name} work queue ${wq} with host PASID ${wire ?? 'none'} (was ${q.wirePasid ?? 'none'})`, pasid: { guest: q.guestPasid, ...(wire !== undefined ? { host: wire } : {}) } });
      }
    }
  }

  /**
   * A guest process submits a descriptor with ENQCMD to a device's shared work queue portal: the PASID comes
   * from the task's IA32_PASID MSR (valid bit 31, PASID 19:0), which the guest kernel loads from the process's
   * SVA PASID, and the CPU translates it through the VM's PASID translation table; a missing entry exits to
   * the VMM. The device then does `addr`'s DMA with the host PASID the CPU gave it.
   */
  enqcmd(process: { readonly pasid: number | undefined; readonly name: string }, address: string, req: { readonly addr: number; readonly write?: boolean }): ReturnType<typeof submitEnqcmd> & { dma?: ReturnType<Vm['dma']> } {
    const d = this.device(address);
    const msr = enqcmdGpFixup(process.pasid) ?? 0;
    const r = submitEnqcmd(this.cpuPasids, msr, { device: d.host.name });
    this.vmm?.flushLookups();
    if ('fault' in r) {
      this.log.add({ vm: this.name, side: 'cpu', action: 'enqcmd', detail: `${process.name} to ${formatPciAddress(d.address)}: ${r.fault}: ${r.reason}` });
      return r;
    }
    this.log.add({ vm: this.name, side: 'cpu', action: 'enqcmd', detail: `${process.name} to ${formatPciAddress(d.address)}: IA32_PASID guest PASID ${r.guestPasid} sent as host PASID ${r.hostPasid}`, pasid: { guest: r.guestPasid, host: r.hostPasid, wire: r.hostPasid } });
    const dma = this.dma(address, { pasid: r.hostPasid, addr: req.addr, ...(req.write !== undefined ? { write: req.write } : {}) });
    return { ...r, dma };
  }

  /**
   * The device model's view changes with the device's address space (seed 004): with the vIOMMU translating,
   * addresses in guest device structures are IOVAs and the model needs IOVA to HPA. A view that still has
   * the guest-physical mappings when IOVA ones arrive (one device with both GPA and IOVA space) is reported.
   */
  deviceModelSwitched(d: VmDevice): void {
    if (d.kind !== 'mdev') return;
    d.deviceModelView.iova = true;
    if (this.config.vmm?.mdevKeepsGpaView === true) {
      this.note({ code: 'mixed-address-spaces', vm: this.name, message: `${formatPciAddress(d.address)}'s device model has guest-physical mappings (from guest RAM) and IOVA mappings (from the vIOMMU) at once: an address in a guest device page table cannot be resolved (seed 004)` });
    } else {
      d.deviceModelView.gpa = false;
      this.log.add({ vm: this.name, side: 'vdcm', action: 'switch-view', detail: `${formatPciAddress(d.address)}: guest device structures now hold IOVAs; the device model translates them through the vIOMMU's mappings (IOVA to HPA)` });
    }
  }

  /**
   * The device model resolving an address it found in a guest device structure (a GPU page-table entry,
   * a descriptor): through guest RAM when the guest has no vIOMMU translation for the device, through the
   * IOVA mappings the vIOMMU notified when it has. -1 when nothing maps it.
   */
  deviceModelTranslate(address: string, addr: number): number {
    const d = this.device(address);
    if (d.space.kind === 'shadow') {
      const m = this.vmm?.shadowOf(address)?.lookup(addr);
      return m ? m.hpa : -1;
    }
    return this.memory.hpa(addr);
  }

  note(f: VmmFinding): void {
    this.noted.push(f);
    this.log.add({ vm: this.name, side: 'vmm', action: 'finding', detail: `${f.code}: ${f.message}` });
  }

  /** Every invariant the VM's parts found broken, oldest first. */
  get findings(): VmmFinding[] {
    return [...this.noted, ...this.pasids.findings, ...(this.vmm?.findings ?? [])];
  }

  /** What must be empty once the VM holds nothing on its host (after teardown or migration). */
  leftovers(): VmmFinding[] {
    return [...this.pasids.leftovers(), ...this.cpuPasids.leftovers()];
  }

  private newPasidMap(host: Host): PasidMap {
    const p = this.config.pasids;
    const policy = p?.policy === 'non-identity' ? 'non-identity' : 'identity';
    return new PasidMap({
      vm: this.name,
      policy,
      trace: this.pasidTrace,
      ...(policy === 'non-identity' ? { allocator: host.kernel.pasids } : {}),
      ...(policy === 'non-identity' && p?.globalMin !== undefined ? { split: new PasidSplit(p.globalMin) } : {}),
    });
  }

  /**
   * Moves the PASID table to `dest` (migration): the same guest PASIDs, host PASIDs allocated afresh there; the
   * source's host PASIDs go back to the source's allocator.
   */
  movePasids(dest: Host): Map<number, number> {
    const { map, hostRemap } = this.pasids.rebuild({ trace: this.pasidTrace, ...(this.pasids.policy === 'non-identity' ? { allocator: dest.kernel.pasids } : {}), devices: [...new Set(this.devices.map((d) => d.host))] });
    map.addHolder(this.cpuPasids);
    this.pasids.teardown();
    this.pasids = map;
    return hostRemap;
  }

  /** Why the VM cannot migrate, or undefined when it can. */
  migrationBlocker(): string | undefined {
    if (this.config.pasids?.policy === 'host-exposed') {
      return `${this.name} exposes host-allocated PASIDs to the guest: they are the source host's and cannot be re-allocated on another host, so the guest's PASID state does not migrate (only guest-allocated PASIDs migrate; host PASIDs are hidden from the guest and rebuilt on the destination, seed 003)`;
    }
    return undefined;
  }

  /** The guest's name for a device (its BDF in the guest). */
  deviceName(d: VmDevice): string {
    return formatPciAddress(d.address);
  }

  /** Without a vIOMMU the host side is only the GPA domain and the attachments. */
  teardownWithoutVmm(): void {
    for (const d of this.devices) this.hostIommu.detach(d.host, d.kind === 'mdev' ? d.hostPasid : undefined);
    this.releaseGpaDomain();
  }

  rebuildWithoutVmm(): void {
    const gpa = this.gpaDomain;
    for (const d of this.devices) this.hostIommu.attach(d.host, d.kind === 'mdev' ? d.hostPasid : undefined, gpa);
  }

  /** Boots the guest kernel (probing the VM's devices behind the vIOMMU). */
  boot(): this {
    this.kernel.boot();
    return this;
  }
}

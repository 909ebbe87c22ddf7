import type { Endpoint } from '../hw/endpoint';
import { hexPad } from '../u64';
import { contextEntryAddress, writeEntry, writeScalableContext } from '../vtd/tables';
import { VtdUnit } from '../vtd/unit';
import { DeviceInfo } from './device';
import { fail } from './errors';
import { IommuGroups } from './groups';
import type { FlushOptions } from './flush';
import { registerPasidAllocator } from './vcmd-pasid';
import { IntelIommu } from './intel-iommu';
import { IrqRemapping } from './irq-remapping';
import { capabilityLine, devPrefix, dmarPrefix } from './log';
import { IOMMU_NO_PASID } from './pasid-alloc';
import { pciDisablePri, pciEnablePri, pciResetPri } from './pci-pri';
import { Descs } from './qi';
import type { KernelState } from './state';

/** Boot and device probe/release: intel_iommu_init, intel_iommu_probe_device and probe_finalize, iommu_release_device. */
export class Probe {
  private readonly groups = new IommuGroups();

  constructor(private readonly k: KernelState) {}

  /** intel_iommu_init + device probe: brings up every unit, then every endpoint behind it. */
  boot(): void {
    const units = this.k.machine.units.filter((u): u is VtdUnit => u instanceof VtdUnit);
    const prefix = dmarPrefix(this.k.version);
    this.k.log.info(`${prefix}Host address width ${this.k.machine.memory.hostAddressWidth}`);
    units.forEach((u, seq) => {
      this.k.log.info(`${prefix}DRHD base: 0x${hexPad(u.regBase, 14)} flags: 0x0`);
      this.k.log.info(capabilityLine({ name: u.name, seq, regBase: u.regBase.toString(16), version: u.version, cap: u.capRaw.toHex(1), ecap: u.ecapRaw.toHex(1) }, this.k.version));
    });
    units.forEach((u, i) => {
      const iommu = new IntelIommu(u, i, this.k.log, this.k.options.scalableMode ?? true, this.k.version, this.k.findings);
      this.k.iommus.push(iommu);
      // init_dmars: register_pasid_allocator after the unit's queued invalidation is up, before its root table.
      const custom = registerPasidAllocator(u, iommu.scalable, this.k.version, this.k.log);
      if (custom && !this.k.pasids.custom) this.k.pasids.custom = custom;
    });
    if (this.k.options.interruptRemapping) this.k.irq = IrqRemapping.enable(this.k.iommus, this.k.log, { x2apic: this.k.options.x2apic });
    for (const i of this.k.iommus) i.announce(this.k.log, { gbpages: this.k.options.cpu?.gbpages ?? true, la57: this.k.options.cpu?.la57 ?? false });
    // intel_iommu_init: strict mode where caching mode meets second-stage DMA domains (pr_info_once), then
    // iommu_device_register probes the devices, and the banner comes after that.
    if (this.k.iommus.some((i) => i.cachingMode) && !this.firstLevelByDefault()) this.k.log.info('DMAR: IOMMU batching disallowed due to virtualization');
    for (const ep of this.k.machine.endpoints) this.probeDevice(ep);
    this.k.log.info('DMAR: Intel(R) Virtualization Technology for Directed I/O');
  }

  /**
   * first_level_by_default(IOMMU_DOMAIN_DMA): scalable mode on every unit, and first-level translation
   * where the units (ECAPs ANDed, intel_iommu_ecap_sanity) have only one of the two stages, else first level.
   */
  private firstLevelByDefault(): boolean {
    if (!this.k.iommus.every((i) => i.scalable)) return false;
    const fl = this.k.iommus.every((i) => i.unit.ecap.flts === 1);
    const sl = this.k.iommus.every((i) => i.unit.ecap.slts === 1);
    return fl !== sl ? fl : true;
  }

  private iommuOf(unit: VtdUnit): IntelIommu {
    return this.k.iommus.find((i) => i.unit === unit) ?? fail('ENODEV', `${unit.name} was not brought up`);
  }

  /**
   * intel_iommu_probe_device + probe_finalize (6.17): PASID table and context entry, PCIe features, default
   * domain. `pasid_supported` needs the IOMMU's pasid_supported() (scalable mode and ECAP.PASID) and the
   * device's PASID capability; `pri_supported` needs ATS support, ECAP.PRS and PRI (6.12 also wanted ECAP.PDS;
   * 6.17 does not). The scalable-mode context entry takes DTE from ats_supported, PASIDE from pasid_supported
   * and PRE from pri_supported (6.17 sets PRE here; 6.12 set it when IOPF was enabled, context_flip_pri).
   */
  probeDevice(ep: Endpoint): DeviceInfo {
    const unit = this.k.machine.unitFor(ep);
    if (!(unit instanceof VtdUnit)) fail('ENODEV', `${ep.name} is not behind a VT-d unit`);
    const iommu = this.iommuOf(unit);
    const dev = new DeviceInfo(ep, iommu);
    this.k.devices.set(dev.key, dev);
    const mem = unit.memory;
    if (iommu.scalable) {
      // PASID directory sized by the device's PASID width (one page at least), as intel_pasid_alloc_table.
      const maxPasid = dev.maxPasids || 1;
      const entries = Math.max(512, maxPasid / 64);
      dev.pasidDir = mem.allocContiguous((entries * 8) / 4096);
      dev.pdts = Math.log2(entries) - 7;
      const atsSupported = (dev.atsSupported = ep.caps.ats !== undefined && unit.ecap.dt === 1);
      const pasidSupported = iommu.pasidSupported && ep.caps.pasid !== undefined;
      const priSupported = atsSupported && unit.ecap.prs === 1 && ep.caps.pri !== undefined;
      writeScalableContext(mem, iommu.contextTable(ep.sid >> 8, ep.sid & 0xff), ep.sid & 0xff, {
        pdts: dev.pdts,
        pasidDir: dev.pasidDir,
        dte: atsSupported,
        pasidEnable: pasidSupported,
        pre: priSupported,
        ridPasid: IOMMU_NO_PASID,
      });
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.contextCacheDevice(0, ep.sid), Descs.iotlbDsi(unit, 0)]);
      }
      // PASID before ATS, PRI after ATS (probe_finalize order).
      dev.pasidEnabled = pasidSupported;
      dev.atsEnabled = atsSupported;
      dev.priSupported = priSupported;
      // iommu_enable_pci_pri (6.17): with ATS on and PRI supported, pci_reset_pri then pci_enable_pri; a device
      // released after a Response Failure comes back with RF cleared by the Enable transition.
      dev.priEnabled = dev.atsEnabled && dev.priSupported && pciResetPri(ep, false) === undefined && pciEnablePri(ep, false) === undefined;
    } else {
      // Legacy mode: ATS is enabled only once a paging domain's context entry is set (legacyContextMapping).
      dev.atsSupported = ep.caps.ats !== undefined && unit.ecap.dt === 1;
    }
    ep.pasidEnabled = dev.pasidEnabled;
    ep.atsEnabled = dev.atsEnabled;
    // Enable's reset value is clear; the model's endpoints start with it set, for tests of the bare hardware.
    if (!dev.priEnabled) pciDisablePri(ep);
    // __iommu_probe_device -> iommu_group_add_device (drivers/iommu/iommu.c has no dev_fmt).
    dev.group = this.groups.join(ep.address);
    this.k.log.info(`${devPrefix(dev)}Adding to iommu group ${dev.group}`);
    const kind = this.k.options.defaultDomain ?? 'dma';
    if (kind === 'dma') {
      const d = this.k.alloc.allocPagingDomain({ name: `default-${ep.name}`, description: 'default, IOVA', device: dev });
      dev.defaultDomain = d;
      this.k.attach.attachDevice(d, dev);
    } else if (kind === 'identity') {
      dev.defaultDomain = this.k.identity;
      this.k.attach.attachDevice(this.k.identity, dev);
    }
    return dev;
  }

  /**
   * iommu_release_device (6.17): the core attaches the release domain, the blocking domain
   * (blocking_domain_attach_dev: the driver's domain's IOPF off, then device_block_translation with its
   * tear-down flushes), then intel_iommu_release_device turns PRI, ATS and PASID off, takes the device out of
   * the PRQ's lookup (its page requests are then bad requests), clears the scalable-mode context entry as
   * device_pasid_table_teardown does (clear P, a device-selective context-cache invalidation with the entry's
   * DID, no device-TLB invalidation since ATS is already off, then zero the entry) and frees the PASID table.
   * In legacy mode the block already cleared the context entry. The core's callers detach PASIDs before a
   * device goes; the model refuses (EBUSY) rather than free a table that attached domains still point into.
   */
  releaseDevice(which: string | number | DeviceInfo, options: FlushOptions = {}): void {
    const dev = this.k.device(which);
    if (dev.pasidDomains.size) fail('EBUSY', `${dev.name}: PASID ${[...dev.pasidDomains.keys()].join(', ')} still attached: detach before releasing the device`);
    const iommu = dev.iommu;
    const mem = this.k.machine.memory;
    this.k.iopf.iopfDisable(dev, dev.ridDomain);
    this.k.attach.blockRid(dev, options);
    this.k.blocked.removeAttachment(dev, undefined);
    dev.coreRidDomain = undefined;
    if (dev.priEnabled) pciDisablePri(dev.endpoint);
    dev.priEnabled = false;
    dev.atsEnabled = dev.endpoint.atsEnabled = false;
    dev.pasidEnabled = dev.endpoint.pasidEnabled = false;
    this.k.devices.delete(dev.key);
    this.groups.leave(dev.endpoint.address);
    dev.group = -1;
    if (iommu.scalable) {
      const ctx = contextEntryAddress(iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, true);
      const did = (mem.readLo(ctx + 8) >>> 8) & 0xffff;
      mem.write64(ctx, mem.readHi(ctx), (mem.readLo(ctx) & ~1) >>> 0, 'context-entry.qw0');
      if (options.skipInvalidation !== true) iommu.qi.submit([Descs.contextCacheDevice(did, dev.sid)]);
      writeEntry(mem, ctx, new Array<number>(8).fill(0), 'context-entry');
      for (const t of dev.pasidTables.values()) mem.freePage(t);
      dev.pasidTables.clear();
      const dirPages = Math.max(1, (Math.max(512, (dev.maxPasids || 1) / 64) * 8) / 4096);
      for (let i = 0; i < dirPages; i++) mem.freePage(dev.pasidDir + i * 4096);
    }
  }
}

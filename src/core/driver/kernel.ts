import type { Endpoint } from '../hw/endpoint';
import type { DeviceDma, DmaOutcome, Machine } from '../hw/machine';
import type { InterruptResult, TranslateOptions } from '../hw/types';
import { parsePciAddress, pciRid } from '../pci';
import { hexPad } from '../u64';
import { hex64 } from '../vtd/walk';
import { decodePageRequest } from '../vtd/descriptors';
import { linuxFaultReason } from '../vtd/fault-reasons';
import { IoPageTable } from '../vtd/page-table';
import { FSTS, Reg } from '../vtd/registers';
import {
  clearPasidEntry,
  encodePasidEntry,
  pasidEntryAddress,
  readEntry,
  writeEntry,
  writeLegacyContext,
  writePasidDirEntry,
  writeScalableContext,
  contextEntryAddress,
  type PasidEntryFields,
} from '../vtd/tables';
import { PASID_ENTRY, PGTT } from '../vtd/structures';
import { VtdUnit } from '../vtd/unit';
import { DeviceInfo } from './device';
import { type DirtyRecord, emptyGather, gatherAdd, harvestDirty, type IotlbGather, slEntryAt } from './dirty';
import {
  type Attachment,
  Domain,
  type DmaFault,
  type IopfHandler,
  type PageFault,
  type PageResponseCode,
  type Stage,
  type VtdS1,
} from './domain';
import { fail, KernelError } from './errors';
import { assignTag, devTlbDesc, type FlushOptions, flushAll, flushRange, flushRangeNp, flushWriteBuffer, linuxPsiAligned, psiFlushDescriptors, submitBatches, unassignTag } from './flush';
import { FLPT_DEFAULT_DID, IntelIommu } from './intel-iommu';
import { compatibilityAllocation, IrqRemapping, type MsiAllocation, type MsiOptions } from './irq-remapping';
import { capabilityLine, CUT_HERE, devPrefix, dmarFaultIsRatelimited, isAtLeast, dmarFaultLines, dmarPrefix, faultStatusLine, KernelLog, type KernelVersion, prqOverflowLine, type PrqProblem, prqRejectLines, prqRejects, Ratelimit } from './log';
import { PasidAllocator, IOMMU_NO_PASID } from './pasid-alloc';
import { Process } from './process';
import { Descs, FULL_RANGE_MASK, QI_DONE } from './qi';
import type { DriverFinding } from './findings';
import { gatherAddPage, iommuPgsize, resetGather, unmapGather, type UnmapGather } from './iommu-map';
import { domainMapping, leafAttributes, WRITE_ONLY_LEAVES } from './dma-pte';
import { DescType } from '../vtd/descriptors';

/**
 * The Linux IOMMU core and VT-d driver, on top of the hardware model: domains, attachments by RID and by
 * (RID, PASID), map/unmap, SVA, nesting, PASID allocation, the fault handler and the page-request thread.
 * It programs the hardware only as the kernel does, by writing structures into memory and descriptors into
 * the invalidation queue, in the kernel's order (docs/notes/linux-vtd-driver-flows.md, 6.17 with the 2026
 * fixes: PASID-based invalidation for SVA and nested domains, clear-then-update tear-down).
 */

export interface KernelOptions {
  /** Decides the printed formats (fault lines); defaults to 6.12. */
  readonly version?: KernelVersion;
  /** intel_iommu=sm_on: use scalable mode where the hardware has it (default true). */
  readonly scalableMode?: boolean;
  /** The default domain each device gets at probe: DMA (a paging domain), identity, or none (blocked). */
  readonly defaultDomain?: 'dma' | 'identity' | 'none';
  /**
   * intremap=on: set up interrupt remapping at boot (intel_irq_remapping.c) on units that all have ECAP.IR.
   * Off by default, so a model without it programs no IRTA and allocates no table.
   */
  readonly interruptRemapping?: boolean;
  /** Whether the platform runs x2APIC (EIME) when every unit supports it; default true. */
  readonly x2apic?: boolean;
  /**
   * CPU features the driver looks at (cpu_feature_enabled): GBPAGES (default on, as on every x86-64 server
   * part) and LA57 (5-level paging, default off; a 5-level process implies it). intel_svm_check makes a unit
   * SVM-capable only if its first-level paging matches them.
   */
  readonly cpu?: { readonly gbpages?: boolean; readonly la57?: boolean };
}

/**
 * iommu_map's prot: IOMMU_READ and IOMMU_WRITE, each off unless given. The VT-d driver gives leaves no
 * execute permission and ignores IOMMU_NOEXEC and IOMMU_CACHE (snooping comes from the domain).
 */
export interface Prot {
  readonly read?: boolean;
  readonly write?: boolean;
}

export interface ReadAndClearDirtyOptions {
  /** IOMMU_DIRTY_NO_CLEAR: report without clearing D. */
  readonly noClear?: boolean;
  /** No bitmap (iommufd's iopt_clear_dirty_data before enabling): only clear, allowed while tracking is off. */
  readonly clearOnly?: boolean;
  /** Called for each record, as iommu_dirty_bitmap_record sets the caller's bitmap. */
  readonly record?: (iova: number, size: number) => void;
  /** The gather to widen (a harvest over several areas shares one); a new one by default. */
  readonly gather?: IotlbGather;
}

/** What a harvest found: the dirty leaves, and the gather to flush (iotlbSync) once D bits were cleared. */
export interface DirtyHarvest {
  readonly records: DirtyRecord[];
  readonly gather: IotlbGather;
}

export interface AttachOptions extends FlushOptions {
  readonly note?: string;
  readonly privateData?: Readonly<Record<string, number | string>>;
}

/** A bound SVA (device, process) with its PASID (Linux `struct iommu_sva`). */
export interface SvaHandle {
  readonly device: DeviceInfo;
  readonly process: Process;
  readonly pasid: number;
  readonly domain: Domain;
  users: number;
}

/**
 * When legacy mode turns a device's ATS off as its RID is blocked. Up to 6.14 device_block_translation calls
 * iommu_disable_pci_caps before clearing the context entry, so the clear issues no device-TLB invalidation;
 * 5518f239aff1 "iommu/vt-d: Move scalable mode ATS enablement to probe path" (v6.15; Lu Baolu's batch of
 * 2025-03-10, whose patch mail quotes the diff) moved it into domain_context_clear, after the clear and
 * its flushes. Checked: the 6.12.118 source has the old order.
 */
const ATS_ENABLEMENT = { legacyOffAfterClear: '6.15' } as const satisfies Record<string, KernelVersion>;

/** A 64-bit hex string without its leading zeros, as %llx prints it. */
function trimHex(h: string): string {
  return h.replace(/^0+(?=.)/, '');
}

/** iommu_paging_structure_coherency: page walks snoop (ECAP.SMPWC in scalable mode, ECAP.C in legacy mode). */
function pagingStructureCoherency(iommu: IntelIommu): boolean {
  return (iommu.scalable ? iommu.unit.ecap.smpwc : iommu.unit.ecap.c) === 1;
}

/** The MMU notifier each SVA domain registers on its process (intel_svm_domain_alloc). */
const svaNotifiers = new WeakMap<Domain, { invalidate(start: number, end: number): void; release(): void }>();

interface PendingGroup {
  readonly device: DeviceInfo;
  readonly pasid: number | undefined;
  readonly prgIndex: number;
  readonly faults: PageFault[];
  readonly domain: Domain | undefined;
}


export class IommuKernel {
  readonly log = new KernelLog();
  readonly version: KernelVersion;
  readonly iommus: IntelIommu[] = [];
  readonly devices = new Map<number, DeviceInfo>();
  readonly pasids = new PasidAllocator();
  readonly domains: Domain[] = [];
  readonly identity: Domain;
  readonly blocked: Domain;
  readonly processes: Process[] = [];
  readonly svaBindings: SvaHandle[] = [];
  /** Interrupt remapping, when KernelOptions.interruptRemapping set it up. */
  irq: IrqRemapping | undefined;
  /** Where the kernel would hang, BUG or WARN: conditions dmesg cannot show byte for byte (findings.ts). */
  readonly findings: DriverFinding[] = [];
  /** Page request groups reported to a handler that answers later (iommufd, a VMM), by key. */
  readonly pendingGroups = new Map<string, PendingGroup>();
  /** Page requests waiting for their group's last page (the iopf partial list), per (IOMMU, device). */
  private readonly partial = new Map<string, PageFault[]>();
  private nextId = 1;
  private nextGroup = 0;
  private readonly options: KernelOptions;
  /** Ratelimit of the fault printk (10 lines per 5 s of simulated time, as printk_ratelimit). */
  private readonly faultRatelimit = { windowStart: 0, printed: 0, suppressed: 0 };
  /** The `*_ratelimited` call sites, by function name. */
  private readonly ratelimits = new Map<string, Ratelimit>();

  constructor(
    readonly machine: Machine,
    options: KernelOptions = {},
  ) {
    this.options = options;
    this.version = options.version ?? '6.12';
    this.log.version = this.version;
    this.identity = new Domain({ id: this.nextId++, type: 'identity', name: 'identity' });
    this.blocked = new Domain({ id: this.nextId++, type: 'blocked', name: 'blocked' });
  }

  // ===================================================================================================
  // Boot and probe
  // ===================================================================================================

  /** intel_iommu_init + device probe: brings up every unit, then every endpoint behind it. */
  boot(): this {
    const units = this.machine.units.filter((u): u is VtdUnit => u instanceof VtdUnit);
    const prefix = dmarPrefix(this.version);
    this.log.info(`${prefix}Host address width ${this.machine.memory.hostAddressWidth}`);
    units.forEach((u, seq) => {
      this.log.info(`${prefix}DRHD base: 0x${hexPad(u.regBase, 14)} flags: 0x0`);
      this.log.info(capabilityLine({ name: u.name, seq, regBase: u.regBase.toString(16), version: u.version, cap: u.capRaw.toHex(1), ecap: u.ecapRaw.toHex(1) }, this.version));
    });
    units.forEach((u, i) => this.iommus.push(new IntelIommu(u, i, this.log, this.options.scalableMode ?? true, this.version, this.findings)));
    if (this.options.interruptRemapping) this.irq = IrqRemapping.enable(this.iommus, this.log, { x2apic: this.options.x2apic });
    for (const i of this.iommus) i.announce(this.log, { gbpages: this.options.cpu?.gbpages ?? true, la57: this.options.cpu?.la57 ?? false });
    // intel_iommu_init: strict mode where caching mode meets second-stage DMA domains (pr_info_once), then
    // iommu_device_register probes the devices, and the banner comes after that.
    if (this.iommus.some((i) => i.cachingMode) && !this.firstLevelByDefault()) this.log.info('DMAR: IOMMU batching disallowed due to virtualization');
    for (const ep of this.machine.endpoints) this.probeDevice(ep);
    this.log.info('DMAR: Intel(R) Virtualization Technology for Directed I/O');
    return this;
  }

  /**
   * first_level_by_default(IOMMU_DOMAIN_DMA): scalable mode on every unit, and first-level translation
   * where the units (ECAPs ANDed, intel_iommu_ecap_sanity) have only one of the two stages, else first level.
   */
  private firstLevelByDefault(): boolean {
    if (!this.iommus.every((i) => i.scalable)) return false;
    const fl = this.iommus.every((i) => i.unit.ecap.flts === 1);
    const sl = this.iommus.every((i) => i.unit.ecap.slts === 1);
    return fl !== sl ? fl : true;
  }

  /**
   * The IOMMU group a probed device joins (iommu_group_get_for_dev, pci_device_group). The model has no
   * bridges and no ACS capability, so of pci_device_group's rules only the multi-function one applies: the
   * functions of one slot share a group; every other device gets a new one, numbered from 0 (the group
   * IDA) in probe order.
   */
  private groupFor(dev: DeviceInfo): number {
    const a = dev.endpoint.address;
    for (const d of this.devices.values()) {
      const b = d.endpoint.address;
      if (d !== dev && d.group >= 0 && b.segment === a.segment && b.bus === a.bus && b.device === a.device) return d.group;
    }
    return this.nextGroup++;
  }

  private iommuOf(unit: VtdUnit): IntelIommu {
    return this.iommus.find((i) => i.unit === unit) ?? fail('ENODEV', `${unit.name} was not brought up`);
  }

  /**
   * intel_iommu_probe_device + probe_finalize (6.17): PASID table and context entry, PCIe features, default
   * domain. `pasid_supported` needs the IOMMU's pasid_supported() (scalable mode and ECAP.PASID) and the
   * device's PASID capability; `pri_supported` needs ATS support, ECAP.PRS and PRI (6.12 also wanted ECAP.PDS;
   * 6.17 does not). The scalable-mode context entry takes DTE from ats_supported, PASIDE from pasid_supported
   * and PRE from pri_supported (6.17 sets PRE here; 6.12 set it when IOPF was enabled, context_flip_pri).
   */
  probeDevice(ep: Endpoint): DeviceInfo {
    const unit = this.machine.unitFor(ep);
    if (!(unit instanceof VtdUnit)) fail('ENODEV', `${ep.name} is not behind a VT-d unit`);
    const iommu = this.iommuOf(unit);
    const dev = new DeviceInfo(ep, iommu);
    this.devices.set(ep.sid, dev);
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
      dev.priEnabled = dev.atsEnabled && dev.priSupported;
    } else {
      // Legacy mode: ATS is enabled only once a paging domain's context entry is set (legacyContextMapping).
      dev.atsSupported = ep.caps.ats !== undefined && unit.ecap.dt === 1;
    }
    ep.pasidEnabled = dev.pasidEnabled;
    ep.atsEnabled = dev.atsEnabled;
    ep.priEnabled = dev.priEnabled;
    // __iommu_probe_device -> iommu_group_add_device (drivers/iommu/iommu.c has no dev_fmt).
    dev.group = this.groupFor(dev);
    this.log.info(`${devPrefix(dev)}Adding to iommu group ${dev.group}`);
    const kind = this.options.defaultDomain ?? 'dma';
    if (kind === 'dma') {
      const d = this.allocPagingDomain({ name: `default-${ep.name}`, description: 'default, IOVA', device: dev });
      dev.defaultDomain = d;
      this.attachDevice(d, dev);
    } else if (kind === 'identity') {
      dev.defaultDomain = this.identity;
      this.attachDevice(this.identity, dev);
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
    const dev = this.device(which);
    if (dev.pasidDomains.size) fail('EBUSY', `${dev.name}: PASID ${[...dev.pasidDomains.keys()].join(', ')} still attached: detach before releasing the device`);
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    this.iopfDisable(dev, dev.ridDomain);
    this.blockRid(dev, options);
    this.blocked.removeAttachment(dev, undefined);
    dev.coreRidDomain = undefined;
    dev.priEnabled = dev.endpoint.priEnabled = false;
    dev.atsEnabled = dev.endpoint.atsEnabled = false;
    dev.pasidEnabled = dev.endpoint.pasidEnabled = false;
    this.devices.delete(dev.sid);
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

  /** A device by PCI address (`BB:DD.F` or `SSSS:BB:DD.F`), RID or label. */
  device(which: string | number | DeviceInfo): DeviceInfo {
    if (which instanceof DeviceInfo) return which;
    if (typeof which === 'number') return this.devices.get(which) ?? fail('ENODEV', `no device with RID 0x${which.toString(16)}`);
    const a = parsePciAddress(which);
    const byAddr = a ? this.devices.get(pciRid(a)) : undefined;
    if (byAddr) return byAddr;
    for (const d of this.devices.values()) if (d.label === which) return d;
    return fail('ENODEV', `no device ${which}`);
  }

  // ===================================================================================================
  // Domains
  // ===================================================================================================

  /**
   * A paging domain (`domain_alloc_paging_flags`). First stage is preferred; second stage when asked, or for
   * a nest parent or dirty tracking, or when a unit lacks first-stage support. `dirtyTracking` is
   * IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain gets dirty ops (tracking itself starts off).
   */
  allocPagingDomain(o: { name?: string; description?: string; stage?: Stage; nestParent?: boolean; dirtyTracking?: boolean; addressWidth?: 48 | 57; device?: string | number | DeviceInfo } = {}): Domain {
    // Linux allocates for a device and asks only that device's IOMMU; without one, every unit must agree.
    const iommus = o.device !== undefined ? [this.device(o.device).iommu] : this.iommus;
    const units = iommus.map((i) => i.unit);
    const allFirst = iommus.every((i) => i.scalable && i.unit.ecap.flts === 1);
    const stage: Stage = o.stage ?? (o.nestParent || o.dirtyTracking || !allFirst ? 'second' : 'first');
    // intel_iommu_domain_alloc_first_stage takes no flag but PASID: a nest parent or dirty tracking is second stage.
    if (stage === 'first' && (o.nestParent || o.dirtyTracking)) fail('EOPNOTSUPP', 'a first-stage domain can be neither a nest parent nor dirty-tracking (intel_iommu_domain_alloc_first_stage)');
    if (stage === 'first' && !allFirst) fail('EOPNOTSUPP', 'first-stage translation needs scalable mode and ECAP.FLTS on every unit');
    // intel_iommu_domain_alloc_second_stage: sm_supported() && !ECAP.SLTS, nested_supported(), ssads_supported().
    if (stage === 'second' && iommus.some((i) => i.scalable && !i.unit.ecap.slts)) fail('EOPNOTSUPP', 'a unit has no second-stage translation (ECAP.SLTS)');
    if (o.nestParent && iommus.some((i) => !(i.scalable && i.unit.ecap.nest))) fail('EOPNOTSUPP', 'nesting needs scalable mode and ECAP.NEST');
    if (o.dirtyTracking && iommus.some((i) => !(i.scalable && i.unit.ecap.slads))) fail('EOPNOTSUPP', 'dirty tracking needs scalable mode and ECAP.SLADS');
    const width = o.addressWidth ?? 48;
    if (width === 57 && (stage === 'first' ? units.some((u) => !u.cap.fl5lp) : units.some((u) => !((u.cap.sagaw >>> 3) & 1)))) fail('EOPNOTSUPP', '57-bit domains need 5-level paging on every unit');
    const i0 = iommus[0];
    const u0 = i0?.unit;
    // iommu_superpage_capability: first stage 2 MiB, and 1 GiB with CAP.FL1GP; second stage fls(CAP.SLLPS).
    const superpage = !u0 ? 2 : stage === 'first' ? (u0.cap.fl1gp ? 2 : 1) : 32 - Math.clz32(u0.cap.sllps);
    const pgsizes = [0x1000, 0x20_0000, 0x4000_0000].slice(0, 1 + Math.min(superpage, 2));
    const pageTable = new IoPageTable(this.machine.memory, {
      format: stage === 'first' ? 'first-level' : 'second-level',
      levels: width === 57 ? 5 : 4,
      large2M: superpage >= 1,
      large1G: superpage >= 2,
    });
    // iotlb_sync_map: first stage only for RWBF; second stage for RWBF or caching mode (shadowing VMMs).
    const iotlbSyncMap = iommus.some((i) => i.unit.cap.rwbf === 1 || (stage === 'second' && i.cachingMode));
    const coherent = i0 ? pagingStructureCoherency(i0) : true;
    const d = new Domain({ id: this.nextId++, type: 'paging', stage, nestParent: o.nestParent, dirtyOps: o.dirtyTracking, pageTable, addressWidth: width, name: o.name, description: o.description, pgsizes, iotlbSyncMap, coherent });
    this.domains.push(d);
    return d;
  }

  /** A nested domain: a user-managed first-level table (GPA) over a nest parent (`IOMMU_HWPT_DATA_VTD_S1`). */
  allocNestedDomain(parent: Domain, s1: VtdS1, o: { name?: string; description?: string } = {}): Domain {
    if (parent.type !== 'paging' || !parent.nestParent) fail('EINVAL', `${parent.name} is not a nest parent`);
    const d = new Domain({ id: this.nextId++, type: 'nested', parent, s1, addressWidth: s1.addrWidth, name: o.name, description: o.description });
    parent.children.push(d);
    this.domains.push(d);
    return d;
  }

  freeDomain(d: Domain): void {
    if (d.attachmentCount) fail('EBUSY', `${d.name} is still attached`);
    if (d.children.length) fail('EBUSY', `${d.name} still has nested domains`);
    if (d.parent) d.parent.children.splice(d.parent.children.indexOf(d), 1);
    d.pageTable?.destroy();
    d.freed = true;
    this.domains.splice(this.domains.indexOf(d), 1);
  }

  /** cpu_feature_enabled(X86_FEATURE_LA57), which a process with 5-level page tables implies. */
  private la57(p: Process): boolean {
    return (this.options.cpu?.la57 ?? false) || p.pageTable.levels === 5;
  }

  newProcess(name: string, options: { fiveLevel?: boolean } = {}): Process {
    const p = new Process(this.machine.memory, 1000 + this.processes.length, name, options);
    this.processes.push(p);
    return p;
  }

  // ---- DIDs ----

  private takeDid(domain: Domain, iommu: IntelIommu): number {
    if (domain.type === 'identity' || domain.type === 'sva') return FLPT_DEFAULT_DID;
    const cur = domain.dids.get(iommu);
    if (cur) {
      cur.refs++;
      return cur.did;
    }
    let did: number;
    try {
      did = iommu.dids.alloc();
    } catch (e) {
      if (e instanceof KernelError) this.log.err(`DMAR: ${iommu.name}: No free domain ids`);
      throw e;
    }
    domain.dids.set(iommu, { did, refs: 1 });
    return did;
  }

  private releaseDid(domain: Domain, iommu: IntelIommu): void {
    if (domain.type === 'identity' || domain.type === 'sva') return;
    const cur = domain.dids.get(iommu);
    if (!cur) return;
    if (--cur.refs === 0) {
      iommu.dids.free(cur.did);
      domain.dids.delete(iommu);
    }
  }

  didOf(domain: Domain, iommu: IntelIommu): number | undefined {
    return domain.type === 'identity' || domain.type === 'sva' ? FLPT_DEFAULT_DID : domain.dids.get(iommu)?.did;
  }

  // ===================================================================================================
  // PASID table entries
  // ===================================================================================================

  /** The PASID table covering `pasid` (allocated and hooked into the directory on first use). */
  private pasidTable(dev: DeviceInfo, pasid: number, create: boolean): number | undefined {
    const index = Math.floor(pasid / 64);
    let t = dev.pasidTables.get(index);
    if (t === undefined && create) {
      t = this.machine.memory.allocPage();
      dev.pasidTables.set(index, t);
      writePasidDirEntry(this.machine.memory, dev.pasidDir, pasid, t);
    }
    return t;
  }

  private pasidEntryFields(domain: Domain, did: number, iommu: IntelIommu): PasidEntryFields {
    const pwsnp = iommu.unit.ecap.smpwc === 1;
    switch (domain.type) {
      case 'identity':
        return { pgtt: PGTT.PASS_THROUGH, did, aw: iommu.agaw, pwsnp };
      case 'sva':
        return { pgtt: PGTT.FIRST_LEVEL, flptptr: domain.process!.pgd, flpm: domain.process!.pageTable.levels === 5 ? 1 : 0, did, aw: iommu.agaw, pwsnp };
      case 'nested': {
        const s1 = domain.s1!;
        const parent = domain.parent!;
        return {
          pgtt: PGTT.NESTED,
          flptptr: s1.pgtblAddr,
          flpm: s1.addrWidth === 57 ? 1 : 0,
          sre: s1.sre,
          wpe: s1.sre && s1.wpe,
          eafe: s1.eafe,
          slptptr: parent.pageTable!.root,
          aw: parent.pageTable!.levels - 2,
          did,
          pwsnp,
          pgsnp: parent.forceSnooping,
          ssade: parent.dirtyTracking,
        };
      }
      case 'paging':
        return domain.stage === 'first'
          ? { pgtt: PGTT.FIRST_LEVEL, flptptr: domain.pageTable!.root, flpm: domain.pageTable!.levels === 5 ? 1 : 0, did, aw: iommu.agaw, pwsnp, pgsnp: domain.forceSnooping }
          : { pgtt: PGTT.SECOND_LEVEL, slptptr: domain.pageTable!.root, aw: domain.pageTable!.levels - 2, did, ssade: domain.dirtyTracking, pwsnp };
      default:
        return fail('EINVAL', `a ${domain.type} domain has no PASID entry`);
    }
  }

  /**
   * intel_pasid_setup_*: a fresh entry (EBUSY if one is present), then the new-entry flush (CM only). A
   * first-level entry (first-stage paging, SVA) is first checked as intel_pasid_setup_first_level does:
   * ECAP.FLTS, and CAP.FL5LP for 5-level paging (the domain's, or for SVA the CPU's LA57), each EINVAL with
   * its pr_err line.
   */
  private setupPasidEntry(dev: DeviceInfo, pasid: number, domain: Domain, did: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    if (domain.type === 'sva' || (domain.type === 'paging' && domain.stage === 'first')) {
      const fiveLevel = domain.type === 'sva' ? this.la57(domain.process!) : domain.pageTable!.levels === 5;
      if (!iommu.unit.ecap.flts) {
        this.log.err(`DMAR: No first level translation support on ${iommu.name}`);
        fail('EINVAL', `${iommu.name} has no first-level translation (ECAP.FLTS)`);
      }
      if (fiveLevel && !iommu.unit.cap.fl5lp) {
        this.log.err(`DMAR: No 5-level paging support for first-level on ${iommu.name}`);
        fail('EINVAL', `${iommu.name} has no 5-level first-level paging (CAP.FL5LP)`);
      }
    }
    const table = this.pasidTable(dev, pasid, true)!;
    const addr = pasidEntryAddress(table, pasid);
    if (mem.readLo(addr) & 1) fail('EBUSY', `${dev.name}: PASID ${pasid} entry is already present`);
    writeEntry(mem, addr, encodePasidEntry(this.pasidEntryFields(domain, did, iommu)), 'pasid-entry');
    // pasid_flush_caches: with caching mode the PASID cache and the PASID's IOTLB, else a write-buffer flush.
    if (!options.skipInvalidation) {
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.pasidCache(did, pasid)]);
        iommu.qi.submit([Descs.piotlbAll(did, pasid)]);
      } else {
        flushWriteBuffer(iommu.unit);
      }
    }
  }

  /**
   * intel_pasid_tear_down_entry as 6.12.118 and the newest kernels have it (75ed00055c05 "iommu/vt-d: Clear
   * Present bit before tearing down PASID entry", in 7.0 and the 6.12.y/6.18.y/6.19.y stables): clear P, then
   * PASID-cache PSI, then IOTLB by PGTT (PASID-based for first-level and pass-through, domain-selective for
   * second-level and nested), then the device TLB, then zero the entry, then drain page requests for the
   * PASID unless `faultIgnore`. The zeroing (intel_pasid_clear_entry) keeps FPD for `faultIgnore` only if the
   * entry is still present, and it no longer is: since that commit an mm release leaves an all-zero entry.
   * An entry found not present is left alone unless it has FPD set (left by an older kernel's mm release,
   * or by a table the model imported): then it is zeroed and the PASID's page requests drained, nothing
   * flushed.
   */
  private teardownPasidEntry(dev: DeviceInfo, pasid: number, faultIgnore: boolean, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    const table = this.pasidTable(dev, pasid, false);
    if (table === undefined) return;
    const addr = pasidEntryAddress(table, pasid);
    const words = readEntry(mem, addr, PASID_ENTRY);
    if (!(words[0]! & 1)) {
      if (!(words[0]! & 2)) return;
      clearPasidEntry(mem, table, pasid);
      if (dev.iopfEnabled > 0) this.drainPasidPrq(dev, pasid, options);
      return;
    }
    const did = words[2]! & 0xffff;
    const pgtt = (words[0]! >>> 6) & 7;
    mem.write64(addr, words[1]!, (words[0]! & ~1) >>> 0, 'pasid-entry.qw0');
    if (options.skipInvalidation !== true) {
      iommu.qi.submit([Descs.pasidCache(did, pasid)]);
      iommu.qi.submit([pgtt === PGTT.FIRST_LEVEL || pgtt === PGTT.PASS_THROUGH ? Descs.piotlbAll(did, pasid) : Descs.iotlbDsi(iommu.unit, did)]);
      if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK)]);
    }
    clearPasidEntry(mem, table, pasid);
    if (!faultIgnore && dev.iopfEnabled > 0) this.drainPasidPrq(dev, pasid, options);
  }

  // ===================================================================================================
  // Attach, replace, detach
  // ===================================================================================================

  private addAttachment(domain: Domain, dev: DeviceInfo, pasid: number | undefined, o: AttachOptions = {}): void {
    const a: Attachment = { device: dev, ...(pasid !== undefined ? { pasid } : {}), ...(o.note ? { note: o.note } : {}), ...(o.privateData ? { privateData: o.privateData } : {}) };
    domain.addAttachment(a);
  }

  private removeAttachment(domain: Domain, dev: DeviceInfo, pasid: number | undefined): void {
    domain.removeAttachment(dev, pasid);
  }

  /** Tags and DID for one (device, PASID) attachment of `domain` (domain_add_dev_pasid). */
  private addDevPasid(domain: Domain, dev: DeviceInfo, pasid: number, taken?: number): number {
    const iommu = dev.iommu;
    const did = taken ?? this.takeDid(domain, iommu);
    if (domain.type === 'identity' || domain.type === 'blocked') return did;
    assignTag(domain, 'iotlb', iommu, did, pasid, dev);
    if (dev.atsEnabled) assignTag(domain, 'devtlb', iommu, did, pasid, dev);
    if (domain.type === 'nested') {
      assignTag(domain.parent!, 'nesting_iotlb', iommu, did, pasid, dev);
      if (dev.atsEnabled) assignTag(domain.parent!, 'nesting_devtlb', iommu, did, pasid, dev);
    }
    return did;
  }

  private removeDevPasid(domain: Domain, dev: DeviceInfo, pasid: number): void {
    const iommu = dev.iommu;
    const did = this.didOf(domain, iommu);
    if (did !== undefined && domain.type !== 'identity' && domain.type !== 'blocked') {
      unassignTag(domain, 'iotlb', iommu, did, pasid, dev);
      unassignTag(domain, 'devtlb', iommu, did, pasid, dev);
      if (domain.type === 'nested') {
        unassignTag(domain.parent!, 'nesting_iotlb', iommu, did, pasid, dev);
        unassignTag(domain.parent!, 'nesting_devtlb', iommu, did, pasid, dev);
      }
    }
    this.releaseDid(domain, iommu);
  }

  // ---- IOPF: intel_iommu_enable_iopf / _disable_iopf and the iopf queue ----

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
  private checkIopf(dev: DeviceInfo, domain: Domain): void {
    if (this.takesIopf(dev, domain) && !dev.priEnabled) fail('ENODEV', `${dev.name} has no PRI enabled: ${domain.name} cannot take its page faults`);
  }

  private iopfEnable(dev: DeviceInfo, domain: Domain): void {
    if (!this.takesIopf(dev, domain)) return;
    this.checkIopf(dev, domain);
    dev.iopfEnabled++;
  }

  /** intel_iommu_disable_iopf: the last fault-taking domain to leave takes the device off the iopf queue. */
  private iopfDisable(dev: DeviceInfo, domain: Domain | undefined): void {
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
    const pending = [...this.pendingGroups].filter(([, g]) => g.device === dev).reverse();
    for (const [k, g] of pending) {
      this.pendingGroups.delete(k);
      this.respond(dev.iommu, dev.sid, g.pasid, g.prgIndex, true, 'invalid');
    }
  }

  /**
   * device_block_translation: tear down what the RID has, leaving DMA without PASID blocked. A RID already
   * blocked (info->domain_attached false) is left alone.
   */
  private blockRid(dev: DeviceInfo, options: FlushOptions): void {
    const old = dev.ridDomain;
    if (!old) return;
    const iommu = dev.iommu;
    if (old.type === 'blocked') {
      // Nothing attached in hardware: only the core's record of the blocking domain goes.
    } else if (iommu.scalable) {
      this.teardownPasidEntry(dev, IOMMU_NO_PASID, false, options);
    } else {
      // device_block_translation: the cache tags go first (removeDevPasid gives the DID back after), then
      // domain_context_clear_one: clear P, context-cache device-selective with the entry's DID, IOTLB DSI, the
      // whole device TLB while ATS is on (intel_context_flush_no_pasid), then zero the entry. ATS goes off
      // before the clear up to 6.14 (iommu_disable_pci_caps), so no device-TLB flush is issued, and after it
      // from 6.15 (iommu_disable_pci_ats in domain_context_clear).
      const atsOffFirst = !isAtLeast(this.version, ATS_ENABLEMENT.legacyOffAfterClear);
      if (atsOffFirst) this.disableAts(dev);
      const mem = this.machine.memory;
      const ctxAddr = contextEntryAddress(iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, false);
      const did = (mem.readLo(ctxAddr + 8) >>> 8) & 0xffff;
      mem.write64(ctxAddr, mem.readHi(ctxAddr), (mem.readLo(ctxAddr) & ~1) >>> 0, 'context-entry.qw0');
      if (options.skipInvalidation !== true) {
        iommu.qi.submit([Descs.contextCacheDevice(did, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
        if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, 0, 0, FULL_RANGE_MASK)]);
      }
      writeEntry(mem, ctxAddr, [0, 0, 0, 0], 'context-entry');
      if (!atsOffFirst) this.disableAts(dev);
    }
    this.removeDevPasid(old, dev, IOMMU_NO_PASID);
    this.removeAttachment(old, dev, undefined);
    dev.ridDomain = undefined;
  }

  /**
   * iommu_attach_device / iommu_group_replace_domain, then the driver's attach_dev (6.17). The core does
   * nothing when the group already has this domain (__iommu_group_set_domain_internal). The driver blocks
   * the RID first and checks afterwards, so a refused attach leaves the RID blocked (info->domain NULL, the
   * PASID or context entry cleared) while the core still records the old domain: the failed device is not
   * reverted, and attaching that old domain again is a no-op that leaves it blocked. The old domain's IOPF
   * is turned off only by the blocking domain (blocking_domain_attach_dev); a paging, nested or identity
   * attach that replaces a fault-taking domain keeps the device's IOPF reference, as 6.17 does.
   */
  attachDevice(domain: Domain, which: string | number | DeviceInfo, options: AttachOptions = {}): void {
    const dev = this.device(which);
    if (domain.freed) fail('EINVAL', `${domain.name} was freed`);
    if (domain.type === 'sva') fail('EINVAL', 'an SVA domain is attached to a PASID, not a RID');
    if (dev.coreRidDomain === domain) return;
    if (domain.type === 'blocked') {
      // blocking_domain_attach_dev: IOPF off for the driver's current domain, then device_block_translation.
      this.iopfDisable(dev, dev.ridDomain);
      this.blockRid(dev, options);
      this.addAttachment(domain, dev, undefined, options);
      dev.ridDomain = domain;
      dev.coreRidDomain = domain;
      return;
    }
    const iommu = dev.iommu;
    // intel_iommu_attach_device, intel_nested_attach_dev, identity_domain_attach_dev: block first.
    this.blockRid(dev, options);
    this.checkCompatible(domain, dev, true);
    let did: number;
    if (domain.type === 'nested') {
      // intel_nested_attach_dev: DID and cache tags, then IOPF, then the nested entry (whose checks may fail).
      did = this.takeDidLogged(domain, dev);
      this.addDevPasid(domain, dev, IOMMU_NO_PASID, did);
      try {
        this.iopfEnable(dev, domain);
      } catch (e) {
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        throw e;
      }
      try {
        this.checkNestedSetup(domain, dev);
      } catch (e) {
        this.iopfDisable(dev, domain);
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        throw e;
      }
    } else {
      // iopf_for_domain_set, then dmar_domain_attach_device (domain_attach_iommu, the entry, cache tags; in
      // legacy mode the tags come after the context entry and ATS).
      this.iopfEnable(dev, domain);
      try {
        did = iommu.scalable ? this.addDevPasid(domain, dev, IOMMU_NO_PASID) : this.takeDid(domain, iommu);
      } catch (e) {
        this.iopfDisable(dev, domain);
        throw e;
      }
    }
    if (iommu.scalable) {
      try {
        this.setupPasidEntry(dev, IOMMU_NO_PASID, domain, did, options);
      } catch (e) {
        // dmar_domain_attach_device's out_block_translation gives the DID back; the caller drops the IOPF
        // reference (iopf_for_domain_remove). The RID stays blocked.
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        this.iopfDisable(dev, domain);
        throw e;
      }
    } else {
      this.legacyContextMapping(dev, domain, did, options);
      this.addDevPasid(domain, dev, IOMMU_NO_PASID, did);
    }
    this.addAttachment(domain, dev, undefined, options);
    dev.ridDomain = domain;
    dev.coreRidDomain = domain;
  }

  /**
   * Legacy mode: domain_context_mapping_one for a paging domain (TT 01, device-TLB translation, when the
   * device supports ATS, else 00; AW of the domain's table) or context_setup_pass_through for the identity
   * domain (TT 10, DID 1, AW = msagaw), then context_present_cache_flush: with caching mode a
   * device-selective context-cache invalidation with DID 0 and a domain-selective IOTLB flush of the new DID,
   * else a write-buffer flush. A paging domain then has ATS enabled (iommu_enable_pci_caps in 6.12, in
   * domain_context_mapping from 6.15); pass-through never does.
   */
  private legacyContextMapping(dev: DeviceInfo, domain: Domain, did: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    const identity = domain.type === 'identity';
    writeLegacyContext(this.machine.memory, iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, {
      tt: identity ? 2 : dev.atsSupported ? 1 : 0,
      aw: identity ? iommu.msagaw : domain.pageTable!.levels - 2,
      did,
      slptptr: identity ? 0 : domain.pageTable!.root,
    });
    if (options.skipInvalidation !== true) {
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.contextCacheDevice(0, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
      } else {
        flushWriteBuffer(iommu.unit);
      }
    }
    if (!identity && dev.atsSupported) dev.atsEnabled = dev.endpoint.atsEnabled = true;
  }

  /** pci_disable_ats: the device stops using (and caching) translations. */
  private disableAts(dev: DeviceInfo): void {
    dev.atsEnabled = dev.endpoint.atsEnabled = false;
  }

  /** domain_attach_iommu for a nested RID attach: "Failed to attach domain to iommu" when no DID is left. */
  private takeDidLogged(domain: Domain, dev: DeviceInfo): number {
    try {
      return this.takeDid(domain, dev.iommu);
    } catch (e) {
      if (this.ratelimit('intel_nested_attach_dev#did')) this.log.err(`${devPrefix(dev)}Failed to attach domain to iommu`);
      throw e;
    }
  }

  /** Makes the RID blocked (the blocking domain's attach_dev). */
  detachDevice(which: string | number | DeviceInfo, options: FlushOptions = {}): void {
    this.attachDevice(this.blocked, which, options);
  }

  /**
   * paging_domain_compatible on this device's IOMMU; for a nested domain, the checks intel_nested_attach_dev
   * and intel_nested_set_dev_pasid make on its parent. A nested RID attach first compares address widths:
   * an IOMMU whose AGAW is below the parent's is ENODEV ("Adjusted guest address width not compatible");
   * then the parent must be compatible (EINVAL; the RID path prints "s2 domain is not compatible").
   */
  private checkCompatible(domain: Domain, dev: DeviceInfo, rid: boolean): void {
    if (domain.type === 'nested') {
      const parent = domain.parent!;
      if (rid && dev.iommu.agaw < parent.pageTable!.levels - 2) {
        if (this.ratelimit('intel_nested_attach_dev#agaw')) this.log.err(`${devPrefix(dev)}Adjusted guest address width not compatible`);
        fail('ENODEV', `${dev.iommu.name}'s AGAW ${dev.iommu.agaw} is below the nest parent's ${parent.pageTable!.levels - 2} (${parent.addressWidth}-bit)`);
      }
      try {
        this.checkPagingCompatible(parent, dev);
      } catch (e) {
        if (rid && this.ratelimit('intel_nested_attach_dev#s2')) this.log.err(`${devPrefix(dev)}s2 domain is not compatible`);
        throw e;
      }
      return;
    }
    if (domain.type === 'paging') this.checkPagingCompatible(domain, dev);
  }

  /**
   * paging_domain_compatible (6.17): the stage's checks (support, the domain's page sizes against the unit's,
   * iotlb_sync_map where the unit needs map-time flushes), then snoop control, page-walk coherency and the
   * address width, all EINVAL and silent. A 5-level first-stage domain on a unit without CAP.FL5LP passes
   * here and is refused when its PASID entry is set up (intel_pasid_setup_first_level, with its line).
   */
  private checkPagingCompatible(domain: Domain, dev: DeviceInfo): void {
    const iommu = dev.iommu;
    const unit = iommu.unit;
    const levels = domain.pageTable!.levels;
    const has = (size: number) => domain.pgsizes.includes(size);
    if (domain.stage === 'first') {
      if (!(iommu.scalable && unit.ecap.flts)) fail('EINVAL', `${iommu.name} has no first-stage translation`);
      if (!unit.cap.fl1gp && has(0x4000_0000)) fail('EINVAL', `${iommu.name} has no 1 GiB first-stage pages (CAP.FL1GP) and ${domain.name} maps with them`);
      if (unit.cap.rwbf && !domain.iotlbSyncMap) fail('EINVAL', `${iommu.name} needs write-buffer flushes on map (CAP.RWBF) that ${domain.name} does not do`);
    } else {
      if (domain.dirtyOps && !(iommu.scalable && unit.ecap.slads)) fail('EINVAL', `${iommu.name} cannot track dirty pages (ECAP.SLADS is clear)`);
      if (domain.nestParent && !(iommu.scalable && unit.ecap.nest)) fail('EINVAL', `${iommu.name} cannot nest (ECAP.NEST is clear)`);
      if (iommu.scalable && !unit.ecap.slts) fail('EINVAL', `${iommu.name} has no second-stage translation`);
      if (!(unit.cap.sllps & 1) && has(0x20_0000)) fail('EINVAL', `${iommu.name} has no 2 MiB second-stage pages (CAP.SLLPS) and ${domain.name} maps with them`);
      if (!(unit.cap.sllps & 2) && has(0x4000_0000)) fail('EINVAL', `${iommu.name} has no 1 GiB second-stage pages (CAP.SLLPS) and ${domain.name} maps with them`);
      if ((unit.cap.rwbf || iommu.cachingMode) && !domain.iotlbSyncMap) fail('EINVAL', `${iommu.name} needs flushes on map (caching mode or CAP.RWBF) that ${domain.name} does not do`);
    }
    if (domain.forceSnooping && !unit.ecap.sc) fail('EINVAL', `${domain.name} enforces snooping and ${iommu.name} has no snoop control (ECAP.SC)`);
    if (domain.coherent !== pagingStructureCoherency(iommu)) fail('EINVAL', `${iommu.name}'s page-walk coherency differs from that of the unit ${domain.name} was allocated for`);
    // "check if this iommu agaw is sufficient for max mapped address"
    const width = Math.min(30 + 9 * iommu.agaw, unit.cap.mgaw + 1);
    if (domain.addressWidth > width || levels - 2 > iommu.agaw) fail('EINVAL', `${iommu.name} addresses ${width} bits (AGAW ${iommu.agaw}): too few for the ${domain.addressWidth}-bit ${domain.name}`);
    // The hardware walks only the levels SAGAW lists (Linux allocates at the IOMMU's own AGAW, so never meets this).
    if (domain.stage === 'second' && !((unit.cap.sagaw >>> (levels - 2)) & 1)) fail('EINVAL', `${iommu.name} cannot walk ${domain.addressWidth}-bit second-stage tables`);
  }

  /**
   * intel_pasid_setup_nested's checks of the user's S1 data, made when the entry is set up, each with its
   * ratelimited line: the address width (dev_err: "5-level paging not supported", "Invalid stage-1 address
   * width %d"), SRE without ECAP.SRS and EAFE without ECAP.EAFS (pr_err with the IOMMU's name).
   */
  private checkNestedSetup(domain: Domain, dev: DeviceInfo): void {
    const iommu = dev.iommu;
    const unit = iommu.unit;
    const s1 = domain.s1!;
    const refuse = (site: string, line: string, why: string): never => {
      if (this.ratelimit(`intel_pasid_setup_nested#${site}`)) this.log.err(line);
      return fail('EINVAL', why);
    };
    if (s1.addrWidth === 57 && !unit.cap.fl5lp) refuse('5level', `${devPrefix(dev)}5-level paging not supported`, `${iommu.name} has no 5-level first-stage paging for a 57-bit stage 1`);
    if (s1.addrWidth !== 48 && s1.addrWidth !== 57) refuse('width', `${devPrefix(dev)}Invalid stage-1 address width ${s1.addrWidth}`, `nested address width ${s1.addrWidth} is not supported`);
    if (s1.sre && !unit.ecap.srs) refuse('sre', `DMAR: No supervisor request support on ${iommu.name}`, 'SRE requested but ECAP.SRS is clear');
    if (s1.eafe && !unit.ecap.eafs) refuse('eafe', `DMAR: No extended access flag support on ${iommu.name}`, 'EAFE requested but ECAP.EAFS is clear');
  }

  /**
   * iommu_attach_device_pasid (set_dev_pasid): the (RID, PASID) pair gets its own entry. The core checks
   * first: PASID 0 is EINVAL, a PASID beyond a PASID-capable device's width is EINVAL, an attached PASID is
   * EBUSY (use replaceDevicePasid). A device without PASID support (max_pasids 0) is skipped by the core
   * since 6.15 (b3f6fcd8404f "Skip PASID validation for devices without PASID capability"): the attach
   * succeeds and the driver is never called, since such a device cannot send a PASID.
   */
  attachDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    const dev = this.device(which);
    if (domain.freed) fail('EINVAL', `${domain.name} was freed`);
    if (pasid === IOMMU_NO_PASID) fail('EINVAL', 'PASID 0 is the RID');
    if (dev.maxPasids > 0 && pasid >= dev.maxPasids) fail('EINVAL', `${dev.name}: PASID ${pasid} is outside [1, ${dev.maxPasids - 1}]`);
    if (dev.pasidDomains.has(pasid)) fail('EBUSY', `${dev.name}: PASID ${pasid} is already attached to ${dev.pasidDomains.get(pasid)!.name}`);
    if (dev.maxPasids === 0) {
      this.addAttachment(domain, dev, pasid, { ...options, note: options.note ?? 'core only: the device has no PASID capability' });
      dev.pasidDomains.set(pasid, domain);
      return;
    }
    this.setDevPasid(domain, dev, pasid, undefined, options);
  }

  /** iommu_replace_device_pasid: newest Linux tears the old entry down (old DID flushed) and sets up the new one. */
  replaceDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    const dev = this.device(which);
    if (pasid === IOMMU_NO_PASID) fail('EINVAL', 'PASID 0 is the RID');
    const old = dev.pasidDomains.get(pasid);
    if (!old) fail('EINVAL', `${dev.name}: nothing is attached at PASID ${pasid}`);
    if (old === domain) return;
    if (dev.maxPasids === 0) {
      this.removeAttachment(old, dev, pasid);
      this.addAttachment(domain, dev, pasid, { ...options, note: options.note ?? 'core only: the device has no PASID capability' });
      dev.pasidDomains.set(pasid, domain);
      return;
    }
    this.setDevPasid(domain, dev, pasid, old, options);
  }

  private setDevPasid(domain: Domain, dev: DeviceInfo, pasid: number, old: Domain | undefined, options: AttachOptions): void {
    const iommu = dev.iommu;
    if (!iommu.scalable || !iommu.unit.ecap.pasid) fail('EOPNOTSUPP', 'PASID attachment needs scalable mode and ECAP.PASID');
    if (domain.dirtyOps) fail('EINVAL', 'a dirty-tracking domain cannot be attached to a PASID');
    if (domain.type === 'blocked') {
      if (old) this.detachDevicePasid(dev, pasid, options);
      return;
    }
    if (domain.type === 'sva') this.svaSupported(dev); // intel_svm_set_dev_pasid
    this.checkCompatible(domain, dev, false);
    this.checkIopf(dev, domain);
    if (domain.type === 'nested') this.checkNestedSetup(domain, dev);
    const did = this.addDevPasid(domain, dev, pasid);
    // iopf_for_domain_replace: on for the new domain, then off for the old one.
    this.iopfEnable(dev, domain);
    if (old) {
      this.iopfDisable(dev, old);
      this.teardownPasidEntry(dev, pasid, false, options);
    }
    try {
      this.setupPasidEntry(dev, pasid, domain, did, options);
    } catch (e) {
      // out_unwind_iopf: iopf_for_domain_replace(old, domain) (the old domain's IOPF back first, so the count
      // does not pass through 0), then out_remove_dev_pasid.
      if (old) this.iopfEnable(dev, old);
      this.iopfDisable(dev, domain);
      this.removeDevPasid(domain, dev, pasid);
      throw e;
    }
    if (old) {
      this.removeDevPasid(old, dev, pasid);
      this.removeAttachment(old, dev, pasid);
    }
    this.addAttachment(domain, dev, pasid, options);
    dev.pasidDomains.set(pasid, domain);
  }

  /**
   * iommu_detach_device_pasid: the blocking domain's set_dev_pasid: tear down (with the page-request drain
   * while IOPF is on), IOPF off (the last user answers what is still pending), drop tags and DID.
   */
  detachDevicePasid(which: string | number | DeviceInfo, pasid: number, options: FlushOptions = {}): void {
    const dev = this.device(which);
    const old = dev.pasidDomains.get(pasid);
    if (!old) fail('EINVAL', `${dev.name}: nothing is attached at PASID ${pasid}`);
    if (dev.maxPasids > 0) {
      this.teardownPasidEntry(dev, pasid, false, options);
      this.iopfDisable(dev, old);
      this.removeDevPasid(old, dev, pasid);
    }
    this.removeAttachment(old, dev, pasid);
    dev.pasidDomains.delete(pasid);
  }

  // ---- seed 001: user-managed tables bound over a parent ----

  /**
   * iommu_bind_pgtable_pasid(parent, dev, addr, pasid): a nested domain for the user table, attached at
   * (RID, PASID). Binding creates a new reference to the parent: the attachment tree shows the PASID under
   * the parent domain, as the seed draws it.
   */
  bindPgtablePasid(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, pasid: number, o: AttachOptions & { s1?: Partial<VtdS1> } = {}): Domain {
    const nested = this.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, addrWidth: 48, ...o.s1, pgtblAddr }, { name: `${parent.name}-s1-${pasid}` });
    try {
      this.attachDevicePasid(nested, which, pasid, o);
    } catch (e) {
      this.freeDomain(nested);
      throw e;
    }
    return nested;
  }

  /** iommu_bind_pgtable(parent, dev, addr): the RID's translation becomes nested over the parent it is attached to. */
  bindPgtable(parent: Domain, which: string | number | DeviceInfo, pgtblAddr: number, o: AttachOptions & { s1?: Partial<VtdS1> } = {}): Domain {
    const dev = this.device(which);
    if (dev.ridDomain !== parent) fail('EINVAL', `${dev.name} is not attached to ${parent.name}`);
    const nested = this.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, addrWidth: 48, ...o.s1, pgtblAddr }, { name: `${parent.name}-s1-rid` });
    this.attachDevice(nested, dev, o);
    return nested;
  }

  /**
   * intel_nested_cache_invalidate_user (HWPT_INVALIDATE, VTD_S1): entries {addr, npages, leaf}, each flushed
   * before the next is looked at. An unaligned address, or U64_MAX pages from a non-zero address, stops the
   * array (EINVAL); every other entry counts as handled and becomes cache_tag_flush_range(addr,
   * addr + (npages << 12) - 1, leaf) in the kernel's 64-bit arithmetic: U64_MAX pages from 0 is everything;
   * npages 0 makes the range end before it starts: from address 0 that end is ULONG_MAX (everything again),
   * elsewhere the kernel computes one page at `addr` (see linuxPsiAligned). `npages` is exact as a bigint; a
   * number of 2^64 or more means U64_MAX.
   */
  invalidateNested(nested: Domain, entries: readonly { addr: number; npages: number | bigint; leaf?: boolean }[], options: FlushOptions = {}): { handled: number; error?: KernelError } {
    if (nested.type !== 'nested') fail('EINVAL', `${nested.name} is not a nested domain`);
    const U64 = (1n << 64n) - 1n;
    let handled = 0;
    for (const e of entries) {
      const npages = typeof e.npages === 'bigint' ? e.npages & U64 : e.npages >= 2 ** 64 ? U64 : BigInt(e.npages);
      if (e.addr % 4096 !== 0 || (npages === U64 && e.addr !== 0)) return { handled, error: new KernelError('EINVAL', `invalidation entry ${handled}: address 0x${e.addr.toString(16)} is not page aligned, or U64_MAX pages start above 0`) };
      const start = BigInt(e.addr);
      const end = (start + ((npages << 12n) & U64) - 1n) & U64;
      const { addr, mask } = linuxPsiAligned(start, end);
      if (options.skipInvalidation !== true) submitBatches(psiFlushDescriptors(nested, addr, mask, e.leaf ?? false, options));
      handled++;
    }
    return { handled };
  }

  // ===================================================================================================
  // Map and unmap
  // ===================================================================================================

  /**
   * iommu_map (6.17): the core's checks (a domain without a page table is EINVAL; an address or size that is
   * not 4 KiB aligned is EINVAL with its "unaligned" line; size 0 maps nothing and succeeds), then the range
   * in iommu_pgsize chunks, each an intel_iommu_map_pages call, then iotlb_sync_map over the whole range
   * (intel_iommu_iotlb_sync_map: cache_tag_flush_range_np, only for a domain allocated with iotlb_sync_map).
   * A chunk that fails has the chunks before it unmapped again, with their flushes (__iommu_map's unroll).
   * An entry already mapped is kept, with the kernel's pr_crit line and WARN, and the map succeeds.
   */
  map(domain: Domain, iova: number, paddr: number, size: number, prot: Prot = { read: true, write: true }, options: FlushOptions = {}): void {
    if (domain.type !== 'paging') fail('EINVAL', `${domain.name} (${domain.type}) has no kernel-managed page table`);
    if (iova % 4096 || paddr % 4096 || size % 4096) {
      this.log.err(`iommu: unaligned: iova 0x${iova.toString(16)} pa 0x${hexPad(paddr, 16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} -> 0x${paddr.toString(16)} is not 4 KiB aligned`);
    }
    let at = iova;
    let pa = paddr;
    try {
      while (at < iova + size) {
        const { pgsize, count } = iommuPgsize(domain.pgsizes, at, pa, iova + size - at);
        this.intelMap(domain, at, pa, pgsize * count, prot, options);
        at += pgsize * count;
        pa += pgsize * count;
      }
    } catch (e) {
      if (at > iova) this.unmap(domain, iova, at - iova, options);
      throw e;
    }
    if (domain.iotlbSyncMap) flushRangeNp(domain, iova, iova + size - 1, options);
  }

  /**
   * intel_iommu_map then __domain_mapping (6.12) for one chunk: beyond the domain's address width is EFAULT
   * with its line; beyond what its table levels reach (domain_pfn_supported), a leaf with neither read nor
   * write, and a read-only leaf in a nest parent (VT-d erratum 772415 on Sapphire Rapids, applied to every
   * IOMMU, with its ratelimited line) are EINVAL. The leaf gets what IOMMU_READ and IOMMU_WRITE ask for, SNP
   * once a second-stage domain enforces cache coherency (set_pte_snp), and DMA_FL_PTE_PRESENT, which is
   * DMA_PTE_READ's bit: a write-only second-stage leaf is readable until 6.16 (WRITE_ONLY_LEAVES). Then the
   * kernel's loop (dma-pte.ts): small-page tables and superpages a superpage replaces are freed and flushed,
   * one cache_tag_flush_range per replaced entry (switch_to_super_page); an entry already set is kept, with
   * the pr_crit line and a WARN, and the map goes on and succeeds.
   */
  private intelMap(domain: Domain, iova: number, paddr: number, size: number, prot: Prot, options: FlushOptions): void {
    const pt = domain.pageTable!;
    if (iova + size > 2 ** domain.addressWidth) {
      this.log.err(`DMAR: intel_iommu_map: iommu width (${domain.addressWidth}) is not sufficient for the mapped address (${(iova + size).toString(16)})`);
      fail('EFAULT', `map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond the ${domain.addressWidth}-bit aperture`);
    }
    if (iova + size > pt.span) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond what ${pt.levels} levels of table reach`);
    const read = prot.read ?? false;
    const write = prot.write ?? false;
    if (!read && !write) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} would be a leaf with neither read nor write permission`);
    if (!write && domain.nestParent) {
      if (this.ratelimit('__domain_mapping')) this.log.err('DMAR: Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)');
      fail('EINVAL', `map: ${domain.name} is a nest parent: no read-only leaves (VT-d erratum 772415, SPR17)`);
    }
    domain.hasMappings = true;
    const firstLevel = domain.stage === 'first';
    const attr = leafAttributes({
      read,
      write,
      snoop: domain.stage === 'second' && domain.forceSnooping,
      firstLevel,
      presentImpliesRead: isAtLeast(this.version, WRITE_ONLY_LEAVES.removed) && !isAtLeast(this.version, WRITE_ONLY_LEAVES.restored),
    });
    const table = { mem: this.machine.memory, pgd: pt.root, levels: pt.levels, firstLevel, superpage: domain.pgsizes.length - 1 };
    domainMapping(table, iova / 4096, paddr / 4096, size / 4096, attr, {
      alreadySet: (pfn, old, pteval) => {
        this.log.crit(`DMAR: ERROR: DMA PTE for vPFN 0x${pfn.toString(16)} already set (to ${trimHex(hex64(old.hi, old.lo))} not ${pteval.toString(16)})`);
        this.warnOn('__domain_mapping', domain.name, `WARNING at drivers/iommu/intel/iommu.c:1884 __domain_mapping: ${domain.name}'s entry for IOVA 0x${(pfn * 4096).toString(16)} was already set: kept as it was, and the map went on (it returns success)`);
      },
      flush: (start, end) => flushRange(domain, start * 4096, end * 4096, false, options),
      walkedIntoPage: (level, entry, page) =>
        this.findings.push({
          kind: 'silent',
          function: 'pfn_to_dma_pte',
          unit: domain.name,
          logLine: this.log.length,
          message: `${domain.name}: mapping IOVA 0x${iova.toString(16)}+0x${size.toString(16)} met the ${level === 2 ? '2 MiB' : '1 GiB'} page at entry 0x${entry.toString(16)} and walked on into the memory it maps (0x${page.toString(16)}) as if it were a page table: what is written there is the device's data, not a table`,
        }),
    });
  }

  /**
   * iommu_unmap (6.17 driver, newest core) in strict mode: a domain without a page table, or an address or
   * size that is not 4 KiB aligned (with its "unaligned" line), unmaps nothing and returns 0. Otherwise the
   * range goes to intel_iommu_unmap in iommu_pgsize chunks until `size` bytes or more are done; each call
   * unmaps at least the span of the entry the walk stops at (pfn_to_dma_pte), mapped or not, and says so,
   * so an unmapped range is "unmapped" (and flushed) by the span of the empty entry that covers it. The
   * gather is synced (cache_tag_flush_range, IH = no table page freed) whenever a chunk of another size or a
   * disjoint one comes, and at the end; an empty gather flushes nothing (90c5def10bea "iommu: Do not call
   * drivers for empty gathers"). Returns the bytes the driver reported.
   */
  unmap(domain: Domain, iova: number, size: number, options: FlushOptions = {}): number {
    if (domain.type !== 'paging') return 0;
    if (iova % 4096 || size % 4096) {
      this.log.err(`iommu: unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      return 0;
    }
    const gather = unmapGather();
    let unmapped = 0;
    while (unmapped < size) {
      const { pgsize, count } = iommuPgsize(domain.pgsizes, iova + unmapped, iova + unmapped, size - unmapped);
      const got = this.intelUnmap(domain, iova + unmapped, pgsize * count, gather, options);
      if (!got) break;
      unmapped += got;
    }
    this.gatherSync(domain, gather, options);
    return unmapped;
  }

  /**
   * intel_iommu_unmap: 0 beyond the domain's tables; else `size` grows to the span of the entry the walk
   * stops at, [iova, iova + size) is cleared (domain_unmap: tables it covers whole are freed) and added to the
   * gather. A span reaching past the table is not cleared (domain_unmap's WARN_ON) but still reported and
   * gathered, as the kernel does.
   */
  private intelUnmap(domain: Domain, iova: number, size: number, gather: UnmapGather, options: FlushOptions): number {
    const pt = domain.pageTable!;
    if (iova >= pt.span) return 0;
    const { level } = slEntryAt(this.machine.memory, pt, iova);
    const span = 4096 * 512 ** (level - 1);
    if (size < span) size = span;
    if (iova + size > pt.span) {
      this.warnOn('domain_unmap', domain.name, `${domain.name}: unmap of 0x${iova.toString(16)}+0x${size.toString(16)} reaches past the ${pt.levels}-level table: WARN_ON(!domain_pfn_supported()), nothing cleared`);
    } else {
      pt.unmap(iova, size);
      if (pt.tablesFreed > 0) gather.freed = true;
    }
    gatherAddPage(gather, iova, size, (g) => this.gatherSync(domain, g, options));
    return size;
  }

  /** iommu_iotlb_sync for an unmap's gather: intel_iommu_tlb_sync, then a fresh gather. */
  private gatherSync(domain: Domain, g: UnmapGather, options: FlushOptions): void {
    if (g.start <= g.end) flushRange(domain, g.start, g.end, !g.freed, options);
    resetGather(g);
  }

  /**
   * enforce_cache_coherency (6.17), as iommufd asks for it when a device's IOMMU can snoop (ECAP.SC). Refused
   * (false) when a device attached to the domain sits behind a unit without snoop control, or, for a
   * second-stage domain, once something is mapped (the SNP bit is per leaf: set_pte_snp applies to later
   * maps only). A first-stage domain gets PGSNP in the PASID entry of every RID attached to it
   * (intel_pasid_setup_page_snoop_control: PASID-cache PSI, PASID-based IOTLB, device TLB) and in every
   * entry set up later.
   */
  enforceCacheCoherency(domain: Domain, options: FlushOptions = {}): boolean {
    if (domain.type !== 'paging') return false;
    if (domain.stage === 'first' && domain.forceSnooping) return true;
    const ridDevices = this.ridDevices(domain);
    if (ridDevices.some((d) => !d.iommu.unit.ecap.sc)) return false;
    if (domain.stage === 'second') {
      if (domain.hasMappings) return false;
      domain.forceSnooping = true;
      return true;
    }
    domain.forceSnooping = true;
    const mem = this.machine.memory;
    for (const dev of ridDevices) {
      const table = this.pasidTable(dev, IOMMU_NO_PASID, false);
      if (table === undefined) continue;
      const addr = pasidEntryAddress(table, IOMMU_NO_PASID);
      if (!(mem.readLo(addr) & 1)) continue;
      // PGSNP is PASID-entry bit 88: qw1 bit 24.
      mem.write64(addr + 8, mem.readHi(addr + 8), (mem.readLo(addr + 8) | (1 << 24)) >>> 0, 'pasid-entry.qw1');
      const did = mem.readLo(addr + 8) & 0xffff;
      if (options.skipInvalidation === true) continue;
      dev.iommu.qi.submit([Descs.pasidCache(did, IOMMU_NO_PASID)]);
      dev.iommu.qi.submit([Descs.piotlbAll(did, IOMMU_NO_PASID)]);
      if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') dev.iommu.qi.submit([devTlbDesc(dev, IOMMU_NO_PASID, 0, FULL_RANGE_MASK)]);
    }
    return true;
  }

  // ===================================================================================================
  // SVA
  // ===================================================================================================

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
    const dev = this.device(which);
    if (process.exited) fail('EINVAL', `${process.name} has exited`);
    if (process.pasid === undefined) {
      try {
        process.pasid = this.pasids.allocGlobal(dev);
      } catch (e) {
        if (e instanceof KernelError) fail('ENOSPC', `${process.name}: no global PASID for ${dev.name} (${e.message})`);
        throw e;
      }
      process.notifiers.add({ invalidate: () => undefined, release: () => this.dropMm(process) });
    } else if (process.pasid >= dev.maxPasids) {
      fail('EOVERFLOW', `${process.name}'s PASID ${process.pasid} is beyond ${dev.name}'s ${dev.maxPasids} PASIDs`);
    }
    const pasid = process.pasid;
    const existing = this.svaBindings.find((h) => h.device === dev && h.pasid === pasid);
    if (existing) {
      if (existing.process !== process) fail('EBUSY', `${dev.name}: PASID ${pasid} is bound to ${existing.process.name}`);
      existing.users++;
      return existing;
    }
    const there = dev.pasidDomains.get(pasid);
    if (there) fail('EBUSY', `${dev.name}: PASID ${pasid} is attached to ${there.name}`);
    const note = { note: `SVA ${process.name}` };
    let domain: Domain | undefined;
    for (const d of this.domains.filter((x) => x.type === 'sva' && x.process === process).reverse()) {
      try {
        this.attachDevicePasid(d, dev, pasid, note);
        domain = d;
        break;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    }
    if (!domain) {
      this.svaSupported(dev);
      const d = new Domain({ id: this.nextId++, type: 'sva', process, name: `sva-${process.name}`, description: `SVA, ${process.name}` });
      this.domains.push(d);
      const notifier = {
        invalidate: (start: number, end: number) => flushRange(d, start, end - 1, false),
        release: () => this.svaRelease(d),
      };
      process.notifiers.add(notifier);
      svaNotifiers.set(d, notifier);
      try {
        this.attachDevicePasid(d, dev, pasid, note);
      } catch (e) {
        this.freeSvaDomain(d);
        throw e;
      }
      domain = d;
    }
    const handle: SvaHandle = { device: dev, process, pasid, domain, users: 1 };
    this.svaBindings.push(handle);
    return handle;
  }

  /**
   * intel_iommu_sva_supported (6.17): ENODEV when the unit is not SVM-capable (intel_svm_check at boot);
   * EINVAL without PASID and ATS enabled, or with PRI supported but not enabled (a device without PRI handles
   * its own faults).
   */
  private svaSupported(dev: DeviceInfo): void {
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
    this.svaBindings.splice(this.svaBindings.indexOf(handle), 1);
    if (handle.device.pasidDomains.get(handle.pasid) === handle.domain) this.detachDevicePasid(handle.device, handle.pasid, options);
    if (!handle.domain.attachmentCount) this.freeSvaDomain(handle.domain);
  }

  private freeSvaDomain(d: Domain): void {
    const p = d.process!;
    const n = svaNotifiers.get(d);
    if (n) p.notifiers.delete(n);
    d.freed = true;
    this.domains.splice(this.domains.indexOf(d), 1);
    if (p.exited) this.dropMm(p);
  }

  /** __mmdrop's mm_pasid_drop: once the process has exited and no SVA domain holds its mm. */
  private dropMm(p: Process): void {
    if (!p.exited || p.pasid === undefined || this.domains.some((d) => d.type === 'sva' && d.process === p)) return;
    this.pasids.freeGlobal(p.pasid);
    p.pasid = undefined;
  }

  /**
   * intel_mm_release (the mm goes away at exit): every (device, PASID) of the domain, newest first, is torn
   * down with fault_ignore (no page-request drain). The PASID stays allocated while the domain holds the mm.
   */
  private svaRelease(d: Domain): void {
    for (const a of d.attachments.reverse()) if (a.pasid !== undefined) this.teardownPasidEntry(a.device, a.pasid, true, {});
  }

  // ===================================================================================================
  // DMA, faults and page requests
  // ===================================================================================================

  /** DMA from a device, then the interrupts it raised are serviced (fault handler, PRQ thread). */
  dma(which: string | number | DeviceInfo, req: DeviceDma): DmaOutcome {
    const dev = this.device(which);
    const out = this.machine.dma(dev.sid, req);
    this.serviceInterrupts();
    return out;
  }

  /**
   * pci_alloc_irq_vectors for MSI: with interrupt remapping, IRTEs written and flushed and the remappable-format
   * message; without, the compatibility-format message.
   */
  allocMsi(which: string | number | DeviceInfo, options: MsiOptions): MsiAllocation {
    const dev = this.device(which);
    return this.irq ? this.irq.alloc(dev, options) : compatibilityAllocation(dev, options);
  }

  /** free_irq / pci_free_irq_vectors: the entries cleared and flushed. */
  freeMsi(a: MsiAllocation): void {
    this.irq?.free(a);
  }

  /** The device writes an MSI (address 0xfeeXXXXX, data); the IOMMU remaps it; its faults are handled. */
  interrupt(which: string | number | DeviceInfo, msg: { readonly address: number; readonly data: number }, options?: TranslateOptions): InterruptResult {
    const dev = this.device(which);
    const r = this.machine.interrupt(dev.sid, msg, options);
    this.serviceInterrupts();
    return r;
  }

  /** Runs the fault handler and the page-request thread of every unit that has something pending. */
  serviceInterrupts(): void {
    for (const iommu of this.iommus) {
      if (iommu.unit.readRegister('FSTS').lo & (1 << FSTS.PPF)) this.dmarFault(iommu);
      if (iommu.prqBase && iommu.unit.readRegister('PRS').lo & 1) this.prqThread(iommu);
    }
  }

  /** dmar_fault: print and clear each pending fault record, report it to the domain's fault handlers. */
  private dmarFault(iommu: IntelIommu): void {
    const unit = iommu.unit;
    const fsts = unit.readRegister('FSTS').lo;
    this.printRatelimited([faultStatusLine(fsts, this.version)]);
    for (const rec of unit.pendingFaults()) {
      const pasid = rec.pasid ?? undefined;
      // Interrupt-remapping records carry the interrupt index in FI bits 63:48 (`fault index` = addr >> 48).
      const intr = linuxFaultReason(rec.reason).type === 'interrupt-remap';
      this.printRatelimited(dmarFaultLines({ sid: rec.sid, ...(pasid !== undefined ? { pasid } : {}), address: rec.address.toHex(1), reason: rec.reason, write: rec.write, ...(intr ? { index: rec.address.hi >>> 16 } : {}) }, this.version));
      const { base } = unit.faultRecordingRegisters;
      unit.writeRegister(base + rec.index * 16 + 8, unit.readRegister(base + rec.index * 16 + 8).withField(63, 63, 1));
      if (intr) continue; // dmar_fault_do_one returns after printing an interrupt-remapping fault
      const dev = this.devices.get(rec.sid);
      const domain = dev?.domainAt(pasid);
      if (dev && domain) {
        const att = domain.attachedAt(dev, pasid);
        const fault: DmaFault = { device: dev, ...(pasid !== undefined ? { pasid } : {}), address: '0x' + rec.address.toHex(1), reason: rec.reason, reasonText: linuxFaultReason(rec.reason).text, write: rec.write, ...(att?.privateData ? { privateData: att.privateData } : {}) };
        for (const h of domain.faultHandlers) h(fault);
      }
    }
    unit.writeRegister('FSTS', (1 << FSTS.PFO) | (1 << FSTS.PPF) | (1 << FSTS.PRO));
  }

  /**
   * Whether a `*_ratelimited` message may be printed now. Each call site has its own state: `site` is the
   * function's name, then `#` and a tag when the function has several.
   */
  private ratelimit(site: string): boolean {
    let r = this.ratelimits.get(site);
    if (!r) this.ratelimits.set(site, (r = new Ratelimit(site.split('#')[0]!)));
    return r.allow(this.log);
  }

  /**
   * A WARN_ON that fires: its first line (`cut here`) goes to the log, and the splat the model cannot print
   * byte for byte (WARNING: ... at file:line, registers, call trace) is a finding at that line.
   */
  private warnOn(fn: string, unit: string, message: string): void {
    this.log.warn(CUT_HERE);
    this.findings.push({ kind: 'warn', function: fn, unit, logLine: this.log.length, message });
  }

  private printRatelimited(lines: string[]): void {
    if (!dmarFaultIsRatelimited(this.version)) {
      for (const l of lines) this.log.err(l);
      return;
    }
    const r = this.faultRatelimit;
    const now = this.log.now;
    if (now - r.windowStart >= 5) {
      if (r.suppressed) this.log.warn(`dmar_fault: ${r.suppressed} callbacks suppressed`);
      r.windowStart = now;
      r.printed = 0;
      r.suppressed = 0;
    }
    if (r.printed >= 10) {
      r.suppressed++;
      return;
    }
    r.printed++;
    for (const l of lines) this.log.err(l);
  }

  /**
   * prq_event_thread (6.17 prq.c): clear PPR, then for each descriptor from PQH to PQT: a non-canonical
   * address, a privileged request with read or write, or an execute request with read is a bad request (its
   * "IOMMU: <iommu>:" line), as is one from a RID no device has; handle_bad_prq_event prints "<iommu>:
   * Invalid page request: <qw0> <qw1>" for every bad request and answers INVALID only a last-in-group one.
   * Stop markers are dropped. Everything else goes to iommu_report_device_fault. Then PQH = PQT, and an
   * overflow is reported (ratelimited) and, once the queue is empty, partial groups are discarded and PRO
   * cleared.
   */
  private prqThread(iommu: IntelIommu): void {
    const unit = iommu.unit;
    const mem = this.machine.memory;
    unit.writeRegister('PRS', 1); // clear PPR
    const q = unit.pageRequestQueue;
    let head = q.head;
    const tail = q.tail;
    // __VIRTUAL_MASK_SHIFT: 47 with 4-level paging, 56 with LA57; bits 63:shift of a canonical address agree.
    const shift = (this.options.cpu?.la57 ?? false) ? 56 : 47;
    while (head !== tail) {
      const words: number[] = [];
      for (let i = 0; i < 4; i++) words.push(mem.readLo(q.base + head * 32 + i * 8), mem.readHi(q.base + head * 32 + i * 8));
      const req = decodePageRequest(words);
      head = (head + 1) % q.entries;
      // handle_bad_prq_event: the lines name the unit, and a response goes back for the last page of a group.
      const bad = (problem: PrqProblem) => {
        const request = { iommu: iommu.name, qw0: hexPad(words[1]!, 8) + hexPad(words[0]!, 8), qw1: hexPad(words[3]!, 8) + hexPad(words[2]!, 8), pasid: req.pasid ?? 0 };
        for (const l of prqRejectLines(problem, request, this.version)) this.log.err(l);
        if (req.lastInGroup) this.respond(iommu, req.rid, req.pasid, req.prgIndex, true, 'invalid');
      };
      // prq_event_thread checks, in its order: canonical address, privilege, exec with read.
      const top = words[3]! >>> (shift - 32);
      if (top !== 0 && top !== 2 ** (64 - shift) - 1) {
        bad('not-canonical');
        continue;
      }
      if (req.priv && (req.read || req.write) && prqRejects('privileged', this.version)) {
        bad('privileged');
        continue;
      }
      if (req.exec && req.read && prqRejects('exec-read', this.version)) {
        bad('exec-read');
        continue;
      }
      if (req.lastInGroup && !req.read && !req.write) continue; // stop marker
      const dev = this.devices.get(req.rid);
      if (!dev) {
        bad('no-device');
        continue;
      }
      const domain = req.pasid === undefined ? dev.coreRidDomain : dev.pasidDomains.get(req.pasid);
      const att = domain?.attachedAt(dev, req.pasid);
      this.reportPageFault({
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
      const detected = prqOverflowLine(iommu.name, false, this.version);
      if (detected && this.ratelimit('prq_event_thread#detected')) this.log.info(detected);
      if (unit.pageRequestQueue.head === unit.pageRequestQueue.tail) {
        for (const k of [...this.partial.keys()]) if (k.startsWith(`${iommu.seq}:`)) this.partial.delete(k);
        unit.writeRegister('PRS', 2);
        const cleared = prqOverflowLine(iommu.name, true, this.version);
        if (cleared && this.ratelimit('prq_event_thread#cleared')) this.log.info(cleared);
      }
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
  private reportPageFault(f: PageFault): void {
    const domain = f.pasid === undefined ? f.device.coreRidDomain : f.device.pasidDomains.get(f.pasid);
    const handler: IopfHandler | undefined = domain?.type === 'sva' ? (g) => this.svaIopf(domain, g) : domain?.iopfHandler;
    if (handler && f.device.iopfEnabled === 0) {
      this.warnOn('iommu_report_device_fault', f.device.iommu.name, `${f.device.name}: ${domain!.name} takes page faults but the device's IOPF is off: WARN_ON(!iopf_param), answered INVALID`);
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
      this.pendingGroups.set(key, { device: f.device, pasid: f.pasid, prgIndex: f.prgIndex, faults: list, domain });
      return;
    }
    if (code === 'failure' && this.ratelimit('iommu_report_device_fault#abort')) {
      // A handler that fails is the core's err_abort: dev_warn_ratelimited, then IOMMU_PAGE_RESP_FAILURE. The
      // PASID printed is the descriptor's field (prm.pasid), 0 for a request without one.
      this.log.warn(`${devPrefix(f.device)}iopf with pasid ${f.pasid ?? 0} aborted`);
    }
    this.respond(f.device.iommu, f.device.sid, f.pasid, f.prgIndex, true, code);
  }

  /**
   * iommu_sva_handle_iopf: each fault in turn while the answer is Success (errors are sticky), each through
   * iommu_sva_handle_mm: a request without PASID, an exited mm, no VMA, or an access the VMA does not allow
   * (read, write, execute) is INVALID; otherwise handle_mm_fault decides.
   */
  private svaIopf(domain: Domain, group: readonly PageFault[]): PageResponseCode {
    const p = domain.process!;
    for (const f of group) {
      if (f.pasid === undefined) return 'invalid';
      const vma = p.vmaAt(f.address);
      if (f.exec && !vma?.exec) return 'invalid';
      if (!p.handleFault(f.address, f.write)) return 'invalid';
    }
    return 'success';
  }

  /** iommu_page_response for a group that was deferred (iommufd fault queue, a VMM). */
  pageResponse(which: string | number | DeviceInfo, pasid: number | undefined, prgIndex: number, code: PageResponseCode): void {
    const dev = this.device(which);
    const key = this.groupKey(dev, pasid, prgIndex);
    if (!this.pendingGroups.delete(key)) fail('EINVAL', `${dev.name}: no page request group ${prgIndex}${pasid !== undefined ? ` for PASID ${pasid}` : ''} is waiting for a response`);
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
  private respond(iommu: IntelIommu, rid: number, pasid: number | undefined, prgIndex: number, last: boolean, code: PageResponseCode): void {
    const rc = code === 'success' ? 0 : code === 'invalid' ? 1 : 2;
    iommu.qi.submit([Descs.pageGroupResponse(rid, pasid, prgIndex, last, rc)]);
    if (rc === 2) {
      const who = this.devices.get(rid)?.name ?? `RID 0x${rid.toString(16)}`;
      this.findings.push({
        kind: 'silent',
        function: 'intel_iommu_page_response',
        unit: iommu.name,
        logLine: this.log.length,
        message: `${who}: IOMMU_PAGE_RESP_FAILURE went out as Response Code 2 for PRG index ${prgIndex}${pasid !== undefined ? ` (PASID ${pasid})` : ''}: PCIe defines 0 Success, 1 Invalid Request and 0xF Response Failure, and a Function processes an unused code as Response Failure: the device's PRI is disabled and it ignores every later PRG response`,
      });
    }
  }

  /**
   * intel_iommu_drain_pasid_prq: let the PRQ thread handle what the queue holds for the PASID, then a fenced
   * wait, an IOTLB flush, a device-TLB flush, and a wait with the drain bit. It answers no group: groups
   * still waiting for a response are answered when the device's last fault-taking domain goes
   * (iopf_queue_remove_device) or by their owner (iommufd answers them after the detach).
   */
  private drainPasidPrq(dev: DeviceInfo, pasid: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    if (iommu.prqBase) this.prqThread(iommu);
    if (options.skipInvalidation === true) return;
    const did = (dev.ridDomain && this.didOf(dev.ridDomain, iommu)) ?? FLPT_DEFAULT_DID;
    iommu.qi.submit(
      [
        { type: DescType.WAIT, fields: { FN: 1, STATUS: QI_DONE } },
        pasid === IOMMU_NO_PASID ? Descs.iotlbDsi(iommu.unit, did) : Descs.piotlbAll(did, pasid),
        devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK),
      ],
      { drain: true },
    );
  }

  // ===================================================================================================
  // Dirty tracking (second-stage A/D bits: ECAP.SLADS, SSADE in the PASID entry)
  // ===================================================================================================

  /**
   * intel_iommu_set_dirty_tracking: SSADE on or off in the PASID entry of every RID attached to the domain
   * (the domain's `devices` list, newest attachment first) and, for a nest parent, of every RID attached to
   * its nested domains (newest nested domain first). Each entry that changes is flushed as
   * intel_pasid_setup_dirty_tracking does: PASID-cache PSI, domain-selective IOTLB, then the whole device
   * TLB (ATS devices), each with its own wait. PASID attachments are not in those lists: a dirty domain cannot
   * be attached to a PASID, and a nested domain on a PASID keeps the SSADE it was set up with. Nothing
   * happens when the state does not change. A device that refuses (its entry is neither second-stage nor
   * nested: EOPNOTSUPP with its ratelimited line) stops the walk, and the kernel's unwind walks the lists
   * again with the old state. iommufd clears the D bits first (see readAndClearDirty).
   */
  setDirtyTracking(domain: Domain, enable: boolean, options: FlushOptions = {}): void {
    if (!domain.dirtyOps) fail('EOPNOTSUPP', `${domain.name} has no dirty tracking (allocate it with IOMMU_HWPT_ALLOC_DIRTY_TRACKING)`);
    if (domain.dirtyTracking === enable) return;
    // device_set_dirty_tracking: the list in order, stopping at the first device that fails.
    const setList = (devices: DeviceInfo[], on: boolean): KernelError | undefined => {
      for (const dev of devices) {
        try {
          this.setupDirtyTracking(dev, IOMMU_NO_PASID, on, options);
        } catch (e) {
          if (e instanceof KernelError) return e;
          throw e;
        }
      }
      return undefined;
    };
    // The unwinds go over the same lists again with the old state, so they stop at (and log) the failing
    // device a second time; the nest parent's unwinds every nested domain, then its own devices.
    const own = this.ridDevices(domain);
    let err = setList(own, enable);
    if (err) {
      setList(own, domain.dirtyTracking);
      throw err;
    }
    if (domain.nestParent) {
      const s1 = [...domain.children].reverse();
      for (const c of s1) if ((err = setList(this.ridDevices(c), enable))) break;
      if (err) {
        for (const c of s1) setList(this.ridDevices(c), domain.dirtyTracking);
        setList(own, domain.dirtyTracking);
        throw err;
      }
    }
    domain.dirtyTracking = enable;
  }

  /** The devices whose RID is attached to `domain`, newest first (Linux adds to `domain->devices` at the head). */
  private ridDevices(domain: Domain): DeviceInfo[] {
    const out: DeviceInfo[] = [];
    for (const a of domain.attachments) if (a.pasid === undefined) out.unshift(a.device);
    return out;
  }

  /** intel_pasid_setup_dirty_tracking for one (device, PASID). */
  private setupDirtyTracking(dev: DeviceInfo, pasid: number, enable: boolean, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    const table = this.pasidTable(dev, pasid, true)!;
    const addr = pasidEntryAddress(table, pasid);
    const lo = mem.readLo(addr);
    const did = mem.readLo(addr + 8) & 0xffff;
    const pgtt = (lo >>> 6) & 7;
    if (pgtt !== PGTT.SECOND_LEVEL && pgtt !== PGTT.NESTED) {
      if (this.ratelimit('intel_pasid_setup_dirty_tracking')) this.log.err(`${devPrefix(dev)}Dirty tracking not supported on translation type ${pgtt}`);
      fail('EOPNOTSUPP', `${dev.name}: PASID ${pasid} has PGTT ${pgtt}: dirty tracking needs second-stage or nested translation`);
    }
    if (((lo & 0x200) !== 0) === enable) return;
    mem.write64(addr, mem.readHi(addr), enable ? (lo | 0x200) >>> 0 : (lo & ~0x200) >>> 0, 'pasid-entry.qw0');
    if (options.skipInvalidation === true) return;
    iommu.qi.submit([Descs.pasidCache(did, pasid)]);
    iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
    if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK)]);
  }

  /**
   * intel_iommu_read_and_clear_dirty over [iova, iova + size): every dirty leaf of the domain's second-stage
   * table in that range is reported (at the leaf's granularity: a 2 MiB leaf is one 2 MiB record) and its D
   * bit cleared, unless `noClear` (IOMMU_DIRTY_NO_CLEAR). With tracking off, a walk that reports to a bitmap
   * is EINVAL; iommufd's clear-only pass before enabling (`clearOnly`, no bitmap) is allowed. Clearing D
   * leaves stale dirty translations in the IOTLB: flush the returned gather with iotlbSync, as iommufd does,
   * or the device's next write through a cached dirty translation sets no D bit (the hardware does not
   * update A/D for a translation it already holds as dirty).
   */
  readAndClearDirty(domain: Domain, iova: number, size: number, o: ReadAndClearDirtyOptions = {}): DirtyHarvest {
    if (!domain.dirtyOps) fail('EOPNOTSUPP', `${domain.name} has no dirty tracking (allocate it with IOMMU_HWPT_ALLOC_DIRTY_TRACKING)`);
    if (!domain.dirtyTracking && !o.clearOnly) fail('EINVAL', `dirty tracking is off on ${domain.name}`);
    const gather = o.gather ?? emptyGather();
    const records: DirtyRecord[] = [];
    harvestDirty(this.machine.memory, domain.pageTable!, iova, size, o.noClear ?? false, (at, pgsize) => {
      records.push({ iova: at, size: pgsize });
      o.record?.(at, pgsize);
      gatherAdd(gather, at, pgsize);
    });
    return { records, gather };
  }

  /**
   * iommu_iotlb_sync after a harvest (intel_iommu_tlb_sync): cache_tag_flush_range over the gather with
   * IH = 1, since no page-table page was freed. An empty gather flushes nothing: the core stopped calling
   * drivers for empty gathers in 2026 ("iommu: Do not call drivers for empty gathers", 90c5def10bea).
   */
  iotlbSync(domain: Domain, gather: IotlbGather, options: FlushOptions = {}): void {
    if (!(gather.start < gather.end)) return;
    flushRange(domain, gather.start, gather.end, true, options);
  }

  flushAll(domain: Domain, options: FlushOptions = {}): void {
    flushAll(domain, options);
  }
}

import type { Endpoint } from '../hw/endpoint';
import type { DeviceDma, DmaOutcome, Machine } from '../hw/machine';
import type { InterruptResult, TranslateOptions } from '../hw/types';
import { parsePciAddress, pciRid } from '../pci';
import { hexPad } from '../u64';
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
import { type DirtyRecord, emptyGather, gatherAdd, harvestDirty, type IotlbGather } from './dirty';
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
import { assignTag, devTlbDesc, type FlushOptions, flushAll, flushRange, flushRangeNp, linuxPsiAligned, psiFlushDescriptors, submitBatches, unassignTag } from './flush';
import { FLPT_DEFAULT_DID, IntelIommu } from './intel-iommu';
import { compatibilityAllocation, IrqRemapping, type MsiAllocation, type MsiOptions } from './irq-remapping';
import { capabilityLine, dmarFaultIsRatelimited, dmarFaultLines, dmarPrefix, faultStatusLine, KernelLog, type KernelVersion, prqOverflowLine, type PrqProblem, prqRejectLines, prqRejects, Ratelimit } from './log';
import { PasidAllocator, IOMMU_NO_PASID } from './pasid-alloc';
import { Process } from './process';
import { Descs, FULL_RANGE_MASK, QI_DONE } from './qi';
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
}

export interface Prot {
  readonly read?: boolean;
  readonly write?: boolean;
  readonly exec?: boolean;
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
  /** Page request groups reported to a handler that answers later (iommufd, a VMM), by key. */
  readonly pendingGroups = new Map<string, PendingGroup>();
  /** Page requests waiting for their group's last page (the iopf partial list). */
  private readonly partial = new Map<string, PageFault[]>();
  private nextId = 1;
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
    units.forEach((u, i) => this.iommus.push(new IntelIommu(u, i, this.log, this.options.scalableMode ?? true)));
    if (this.options.interruptRemapping) this.irq = IrqRemapping.enable(this.iommus, this.log, { x2apic: this.options.x2apic });
    for (const i of this.iommus) i.announce(this.log);
    this.log.info('DMAR: Intel(R) Virtualization Technology for Directed I/O');
    for (const ep of this.machine.endpoints) this.probeDevice(ep);
    return this;
  }

  private iommuOf(unit: VtdUnit): IntelIommu {
    return this.iommus.find((i) => i.unit === unit) ?? fail('ENODEV', `${unit.name} was not brought up`);
  }

  /** intel_iommu_probe_device + probe_finalize: PASID table and context entry, PCIe features, default domain. */
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
      writeScalableContext(mem, iommu.contextTable(ep.sid >> 8, ep.sid & 0xff), ep.sid & 0xff, {
        pdts: dev.pdts,
        pasidDir: dev.pasidDir,
        dte: ep.caps.ats !== undefined && unit.ecap.dt === 1,
        pasidEnable: ep.caps.pasid !== undefined,
        pre: ep.caps.pri !== undefined && unit.ecap.prs === 1,
        ridPasid: IOMMU_NO_PASID,
      });
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.contextCacheDevice(0, ep.sid), Descs.iotlbDsi(unit, 0)]);
      }
      // PASID before ATS, PRI after ATS (probe_finalize order).
      dev.pasidEnabled = ep.caps.pasid !== undefined;
      dev.atsEnabled = ep.caps.ats !== undefined && unit.ecap.dt === 1;
      dev.priSupported = ep.caps.ats !== undefined && unit.ecap.dt === 1 && ep.caps.pri !== undefined && unit.ecap.prs === 1;
      dev.priEnabled = dev.atsEnabled && dev.priSupported;
    } else {
      dev.atsEnabled = ep.caps.ats !== undefined && unit.ecap.dt === 1;
    }
    ep.pasidEnabled = dev.pasidEnabled;
    ep.atsEnabled = dev.atsEnabled;
    ep.priEnabled = dev.priEnabled;
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
    if (stage === 'first' && !allFirst) fail('EOPNOTSUPP', 'first-stage translation needs scalable mode and ECAP.FLTS on every unit');
    if (stage === 'second' && units.some((u) => !(u.ecap.slts || !u.ecap.smts))) fail('EOPNOTSUPP', 'a unit has no second-stage translation (ECAP.SLTS)');
    if (o.nestParent && units.some((u) => !u.ecap.nest)) fail('EOPNOTSUPP', 'nesting needs ECAP.NEST');
    if (o.dirtyTracking && units.some((u) => !u.ecap.slads)) fail('EOPNOTSUPP', 'dirty tracking needs ECAP.SLADS');
    const width = o.addressWidth ?? 48;
    if (width === 57 && (stage === 'first' ? units.some((u) => !u.cap.fl5lp) : units.some((u) => !((u.cap.sagaw >>> 3) & 1)))) fail('EOPNOTSUPP', '57-bit domains need 5-level paging on every unit');
    const u0 = units[0];
    const pageTable = new IoPageTable(this.machine.memory, {
      format: stage === 'first' ? 'first-level' : 'second-level',
      levels: width === 57 ? 5 : 4,
      large2M: stage === 'first' || (u0 ? (u0.cap.sllps & 1) === 1 : true),
      large1G: stage === 'first' ? (u0?.cap.fl1gp ?? 0) === 1 : (u0 ? (u0.cap.sllps & 2) === 2 : false),
    });
    const d = new Domain({ id: this.nextId++, type: 'paging', stage, nestParent: o.nestParent, dirtyOps: o.dirtyTracking, pageTable, addressWidth: width, name: o.name, description: o.description });
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
          ssade: parent.dirtyTracking,
        };
      }
      case 'paging':
        return domain.stage === 'first'
          ? { pgtt: PGTT.FIRST_LEVEL, flptptr: domain.pageTable!.root, flpm: domain.pageTable!.levels === 5 ? 1 : 0, did, aw: iommu.agaw, pwsnp }
          : { pgtt: PGTT.SECOND_LEVEL, slptptr: domain.pageTable!.root, aw: domain.pageTable!.levels - 2, did, ssade: domain.dirtyTracking, pwsnp };
      default:
        return fail('EINVAL', `a ${domain.type} domain has no PASID entry`);
    }
  }

  /** intel_pasid_setup_*: a fresh entry (EBUSY if one is present), then the new-entry flush (CM only). */
  private setupPasidEntry(dev: DeviceInfo, pasid: number, domain: Domain, did: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    const table = this.pasidTable(dev, pasid, true)!;
    const addr = pasidEntryAddress(table, pasid);
    if (mem.readLo(addr) & 1) fail('EBUSY', `${dev.name}: PASID ${pasid} entry is already present`);
    writeEntry(mem, addr, encodePasidEntry(this.pasidEntryFields(domain, did, iommu)), 'pasid-entry');
    if (iommu.cachingMode && !options.skipInvalidation) {
      iommu.qi.submit([Descs.pasidCache(did, pasid)]);
      iommu.qi.submit([Descs.piotlbAll(did, pasid)]);
    }
  }

  /**
   * intel_pasid_tear_down_entry (newest form): clear P, then PASID-cache PSI, then IOTLB by PGTT (PASID-based
   * for first-level and pass-through, domain-selective for second-level and nested), then the device TLB,
   * then zero the entry, then drain page requests for the PASID.
   */
  private teardownPasidEntry(dev: DeviceInfo, pasid: number, faultIgnore: boolean, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.machine.memory;
    const table = this.pasidTable(dev, pasid, false);
    if (table === undefined) return;
    const addr = pasidEntryAddress(table, pasid);
    const words = readEntry(mem, addr, PASID_ENTRY);
    if (!(words[0]! & 1)) return;
    const did = words[2]! & 0xffff;
    const pgtt = (words[0]! >>> 6) & 7;
    mem.write64(addr, words[1]!, (words[0]! & ~1) >>> 0, 'pasid-entry.qw0');
    if (options.skipInvalidation !== true) {
      iommu.qi.submit([Descs.pasidCache(did, pasid)]);
      iommu.qi.submit([pgtt === PGTT.FIRST_LEVEL || pgtt === PGTT.PASS_THROUGH ? Descs.piotlbAll(did, pasid) : Descs.iotlbDsi(iommu.unit, did)]);
      if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK)]);
    }
    clearPasidEntry(mem, table, pasid);
    if (faultIgnore) mem.write64(addr, 0, 2, 'pasid-entry.qw0'); // FPD left set
    else if (dev.iopfEnabled > 0) this.drainPasidPrq(dev, pasid, options);
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
    const prefix = `${dev.iommu.seq}:${dev.sid}:`;
    for (const k of [...this.partial.keys()]) if (k.startsWith(prefix)) this.partial.delete(k);
    const pending = [...this.pendingGroups].filter(([, g]) => g.device === dev).reverse();
    for (const [k, g] of pending) {
      this.pendingGroups.delete(k);
      this.respond(dev.iommu, dev.sid, g.pasid, g.prgIndex, true, 'invalid');
    }
  }

  /** device_block_translation: tear down what the RID has, leaving DMA without PASID blocked. */
  private blockRid(dev: DeviceInfo, options: FlushOptions): void {
    const old = dev.ridDomain;
    if (!old) return;
    const iommu = dev.iommu;
    if (iommu.scalable) {
      this.teardownPasidEntry(dev, IOMMU_NO_PASID, false, options);
    } else {
      const mem = this.machine.memory;
      const ctxAddr = contextEntryAddress(iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, false);
      const did = (mem.readLo(ctxAddr + 8) >>> 8) & 0xffff;
      writeEntry(mem, ctxAddr, [0, 0, 0, 0], 'context-entry');
      if (options.skipInvalidation !== true) {
        iommu.qi.submit([Descs.contextCacheDevice(did, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
        if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, 0, 0, FULL_RANGE_MASK)]);
      }
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
      // iopf_for_domain_set, then dmar_domain_attach_device (domain_attach_iommu, the entry, cache tags).
      this.iopfEnable(dev, domain);
      try {
        did = this.addDevPasid(domain, dev, IOMMU_NO_PASID);
      } catch (e) {
        this.iopfDisable(dev, domain);
        throw e;
      }
    }
    if (iommu.scalable) {
      this.setupPasidEntry(dev, IOMMU_NO_PASID, domain, did, options);
    } else {
      const identity = domain.type === 'identity';
      writeLegacyContext(this.machine.memory, iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, {
        tt: identity ? 2 : dev.atsEnabled ? 1 : 0,
        aw: identity ? iommu.agaw : domain.pageTable!.levels - 2,
        did,
        slptptr: identity ? 0 : domain.pageTable!.root,
      });
      if (iommu.cachingMode && !options.skipInvalidation) {
        iommu.qi.submit([Descs.contextCacheDevice(0, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
      }
    }
    this.addAttachment(domain, dev, undefined, options);
    dev.ridDomain = domain;
    dev.coreRidDomain = domain;
  }

  /** domain_attach_iommu for a nested RID attach: "Failed to attach domain to iommu" when no DID is left. */
  private takeDidLogged(domain: Domain, dev: DeviceInfo): number {
    try {
      return this.takeDid(domain, dev.iommu);
    } catch (e) {
      if (this.ratelimit('intel_nested_attach_dev#did')) this.log.err(`${dev.name}: Failed to attach domain to iommu`);
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
        if (this.ratelimit('intel_nested_attach_dev#agaw')) this.log.err(`${dev.name}: Adjusted guest address width not compatible`);
        fail('ENODEV', `${dev.iommu.name}'s AGAW ${dev.iommu.agaw} is below the nest parent's ${parent.pageTable!.levels - 2} (${parent.addressWidth}-bit)`);
      }
      try {
        this.checkPagingCompatible(parent, dev);
      } catch (e) {
        if (rid && this.ratelimit('intel_nested_attach_dev#s2')) this.log.err(`${dev.name}: s2 domain is not compatible`);
        throw e;
      }
      return;
    }
    if (domain.type === 'paging') this.checkPagingCompatible(domain, dev);
  }

  private checkPagingCompatible(domain: Domain, dev: DeviceInfo): void {
    const iommu = dev.iommu;
    const unit = iommu.unit;
    const levels = domain.pageTable!.levels;
    if (domain.stage === 'first') {
      if (!(iommu.scalable && unit.ecap.flts)) fail('EINVAL', `${iommu.name} has no first-stage translation`);
      if (levels === 5 && !unit.cap.fl5lp) fail('EINVAL', `${iommu.name} has no 5-level first-stage paging`);
    } else {
      if (domain.dirtyOps && !(iommu.scalable && unit.ecap.slads)) fail('EINVAL', `${iommu.name} cannot track dirty pages (ECAP.SLADS is clear)`);
      if (domain.nestParent && !(iommu.scalable && unit.ecap.nest)) fail('EINVAL', `${iommu.name} cannot nest (ECAP.NEST is clear)`);
      if (iommu.scalable && !unit.ecap.slts) fail('EINVAL', `${iommu.name} has no second-stage translation`);
    }
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
    if (s1.addrWidth === 57 && !unit.cap.fl5lp) refuse('5level', `${dev.name}: 5-level paging not supported`, `${iommu.name} has no 5-level first-stage paging for a 57-bit stage 1`);
    if (s1.addrWidth !== 48 && s1.addrWidth !== 57) refuse('width', `${dev.name}: Invalid stage-1 address width ${s1.addrWidth}`, `nested address width ${s1.addrWidth} is not supported`);
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
      this.removeDevPasid(domain, dev, pasid);
      this.iopfDisable(dev, domain);
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
   * iommu_map: page table update, then iotlb_sync_map (flushes only where caching mode needs it). The checks
   * are the core's (alignment, EINVAL), intel_iommu_map's (address width, EFAULT), then __domain_mapping's:
   * a leaf must allow reading or writing (EINVAL), and a nest parent takes no read-only leaf (EINVAL, with a
   * ratelimited error: VT-d erratum 772415 on Sapphire Rapids, applied to every IOMMU).
   */
  map(domain: Domain, iova: number, paddr: number, size: number, prot: Prot = { read: true, write: true }, options: FlushOptions = {}): void {
    if (domain.type !== 'paging') fail('EINVAL', `${domain.name} (${domain.type}) has no kernel-managed page table`);
    if (iova % 4096 || paddr % 4096 || size % 4096 || size === 0) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} -> 0x${paddr.toString(16)} is not 4 KiB aligned`);
    if (iova + size > 2 ** domain.addressWidth) fail('EFAULT', `map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond the ${domain.addressWidth}-bit aperture`);
    const read = prot.read ?? true;
    const write = prot.write ?? false;
    if (!read && !write) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} would be a leaf with neither read nor write permission`);
    if (!write && domain.nestParent) {
      if (this.ratelimit('__domain_mapping')) this.log.err('DMAR: Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)');
      fail('EINVAL', `map: ${domain.name} is a nest parent: no read-only leaves (VT-d erratum 772415, SPR17)`);
    }
    const pt = domain.pageTable!;
    try {
      pt.map(iova, paddr, size, { read, write, exec: prot.exec, user: true, snoop: true, accessed: true });
    } catch (e) {
      this.log.err(`DMAR: ERROR: DMA PTE for vPFN 0x${Math.floor(iova / 4096).toString(16)} already set`);
      throw new KernelError('EEXIST', e instanceof Error ? e.message : String(e));
    }
    if (pt.tablesFreed > 0) flushRange(domain, iova, iova + size - 1, false, options); // switch_to_super_page
    else flushRangeNp(domain, iova, iova + size - 1, options);
  }

  /** iommu_unmap in strict mode: clear the PTEs, then cache_tag_flush_range with IH = no table freed. */
  unmap(domain: Domain, iova: number, size: number, options: FlushOptions = {}): number {
    if (domain.type !== 'paging') fail('EINVAL', `${domain.name} (${domain.type}) has no kernel-managed page table`);
    if (iova % 4096 || size % 4096) fail('EINVAL', `unmap: 0x${iova.toString(16)}+0x${size.toString(16)} is not 4 KiB aligned`);
    const pt = domain.pageTable!;
    const unmapped = pt.unmap(iova, size);
    if (unmapped > 0) flushRange(domain, iova, iova + Math.max(size, unmapped) - 1, pt.tablesFreed === 0, options);
    return unmapped;
  }

  // ===================================================================================================
  // SVA
  // ===================================================================================================

  /** iommu_sva_bind_device: one global PASID per process, one SVA domain per process, attached at that PASID. */
  svaBind(which: string | number | DeviceInfo, process: Process): SvaHandle {
    const dev = this.device(which);
    if (!dev.iommu.scalable || !dev.iommu.unit.ecap.flts) fail('ENODEV', `${dev.iommu.name} cannot do SVA (scalable mode and first-stage translation needed)`);
    if (!dev.pasidEnabled || !dev.atsEnabled) fail('EINVAL', `${dev.name}: SVA needs PASID and ATS enabled`);
    if (dev.endpoint.caps.pri && !dev.priEnabled) fail('EINVAL', `${dev.name}: PRI is supported but not enabled`);
    if (process.exited) fail('EINVAL', `${process.name} has exited`);
    if (process.pasid === undefined) process.pasid = this.pasids.allocGlobal(dev);
    else if (process.pasid >= dev.maxPasids) fail('EINVAL', `${process.name}'s PASID ${process.pasid} does not fit ${dev.name} (${dev.maxPasids} PASIDs)`);
    const existing = this.svaBindings.find((h) => h.device === dev && h.process === process);
    if (existing) {
      existing.users++;
      return existing;
    }
    let domain = this.domains.find((d) => d.type === 'sva' && d.process === process);
    if (!domain) {
      domain = new Domain({ id: this.nextId++, type: 'sva', process, name: `sva-${process.name}`, description: `SVA, ${process.name}` });
      this.domains.push(domain);
      const d = domain;
      process.notifiers.add({
        invalidate: (start, end) => flushRange(d, start, end - 1, false),
        release: () => this.svaRelease(process),
      });
    }
    this.attachDevicePasid(domain, dev, process.pasid, { note: `SVA ${process.name}` });
    const handle: SvaHandle = { device: dev, process, pasid: process.pasid, domain, users: 1 };
    this.svaBindings.push(handle);
    return handle;
  }

  svaUnbind(handle: SvaHandle, options: FlushOptions = {}): void {
    if (--handle.users > 0) return;
    this.svaBindings.splice(this.svaBindings.indexOf(handle), 1);
    if (handle.device.pasidDomains.get(handle.pasid) === handle.domain) this.detachDevicePasid(handle.device, handle.pasid, options);
    if (!handle.domain.attachmentCount) this.domains.splice(this.domains.indexOf(handle.domain), 1);
  }

  /** mm release (process exit): every bound PASID is torn down with fault_ignore; the PASID is freed. */
  private svaRelease(process: Process): void {
    for (const h of this.svaBindings.filter((x) => x.process === process)) this.teardownPasidEntry(h.device, h.pasid, true, {});
    if (process.pasid !== undefined) {
      this.pasids.freeGlobal(process.pasid);
      process.pasid = undefined;
    }
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

  /** prq_event_thread: read the page request queue, check each request, report groups, move PQH. */
  private prqThread(iommu: IntelIommu): void {
    const unit = iommu.unit;
    const mem = this.machine.memory;
    unit.writeRegister('PRS', 1); // clear PPR
    const q = unit.pageRequestQueue;
    let head = q.head;
    const tail = q.tail;
    while (head !== tail) {
      const words: number[] = [];
      for (let i = 0; i < 4; i++) words.push(mem.readLo(q.base + head * 32 + i * 8), mem.readHi(q.base + head * 32 + i * 8));
      const req = decodePageRequest(words);
      head = (head + 1) % q.entries;
      const dev = this.devices.get(req.rid);
      // handle_bad_prq_event: the lines name the unit, and a response goes back for the last page of a group.
      const bad = (problem: PrqProblem) => {
        const request = { iommu: iommu.name, qw0: hexPad(words[1]!, 8) + hexPad(words[0]!, 8), qw1: hexPad(words[3]!, 8) + hexPad(words[2]!, 8), pasid: req.pasid ?? 0 };
        for (const l of prqRejectLines(problem, request, this.version)) this.log.err(l);
        if (req.lastInGroup) this.respond(iommu, req.rid, req.pasid, req.prgIndex, true, 'invalid');
      };
      if (req.priv && (req.read || req.write) && prqRejects('privileged', this.version)) {
        bad('privileged');
        continue;
      }
      if (req.exec && req.read && prqRejects('exec-read', this.version)) {
        bad('exec-read');
        continue;
      }
      if (req.lastInGroup && !req.read && !req.write) continue; // stop marker
      if (!dev) {
        bad('no-device');
        continue;
      }
      const domain = dev.domainAt(req.pasid);
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
      if (detected) this.log.info(detected);
      if (unit.pageRequestQueue.head === unit.pageRequestQueue.tail) {
        for (const k of [...this.partial.keys()]) if (k.startsWith(`${iommu.seq}:`)) this.partial.delete(k);
        unit.writeRegister('PRS', 2);
        const cleared = prqOverflowLine(iommu.name, true, this.version);
        if (cleared) this.log.info(cleared);
      }
    }
  }

  private groupKey(dev: DeviceInfo, pasid: number | undefined, prgIndex: number): string {
    return `${dev.iommu.seq}:${dev.sid}:${pasid ?? -1}:${prgIndex}`;
  }

  /** iommu_report_device_fault: collect the group until its last page, then hand it to the domain's handler. */
  private reportPageFault(f: PageFault): void {
    const key = this.groupKey(f.device, f.pasid, f.prgIndex);
    const list = this.partial.get(key) ?? [];
    list.push(f);
    if (!f.lastPage) {
      this.partial.set(key, list);
      return;
    }
    this.partial.delete(key);
    const domain = f.device.domainAt(f.pasid);
    const handler: IopfHandler | undefined = domain?.type === 'sva' ? (g) => this.svaIopf(domain, g) : domain?.iopfHandler;
    if (!handler) {
      this.respond(f.device.iommu, f.device.sid, f.pasid, f.prgIndex, true, 'invalid');
      return;
    }
    const code = handler(list);
    if (code === 'deferred') this.pendingGroups.set(key, { device: f.device, pasid: f.pasid, prgIndex: f.prgIndex, faults: list, domain });
    else this.respond(f.device.iommu, f.device.sid, f.pasid, f.prgIndex, true, code);
  }

  /** iommu_sva_handle_mm: fault every page of the group into the process; Success if all made it. */
  private svaIopf(domain: Domain, group: readonly PageFault[]): PageResponseCode {
    const p = domain.process!;
    for (const f of group) if (!p.handleFault(f.address, f.write)) return 'invalid';
    return 'success';
  }

  /** iommu_page_response for a group that was deferred (iommufd fault queue, a VMM). */
  pageResponse(which: string | number | DeviceInfo, pasid: number | undefined, prgIndex: number, code: PageResponseCode): void {
    const dev = this.device(which);
    const key = this.groupKey(dev, pasid, prgIndex);
    if (!this.pendingGroups.delete(key)) fail('EINVAL', `${dev.name}: no page request group ${prgIndex}${pasid !== undefined ? ` for PASID ${pasid}` : ''} is waiting for a response`);
    this.respond(dev.iommu, dev.sid, pasid, prgIndex, true, code);
  }

  private respond(iommu: IntelIommu, rid: number, pasid: number | undefined, prgIndex: number, last: boolean, code: PageResponseCode): void {
    const rc = code === 'success' ? 0 : code === 'invalid' ? 1 : 0xf;
    iommu.qi.submit([Descs.pageGroupResponse(rid, pasid, prgIndex, last, rc)]);
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
   * happens when the state does not change. iommufd clears the D bits first (see readAndClearDirty).
   */
  setDirtyTracking(domain: Domain, enable: boolean, options: FlushOptions = {}): void {
    if (!domain.dirtyOps) fail('EOPNOTSUPP', `${domain.name} has no dirty tracking (allocate it with IOMMU_HWPT_ALLOC_DIRTY_TRACKING)`);
    if (domain.dirtyTracking === enable) return;
    const devices = [...this.ridDevices(domain), ...(domain.nestParent ? [...domain.children].reverse().flatMap((c) => this.ridDevices(c)) : [])];
    const done: DeviceInfo[] = [];
    try {
      for (const dev of devices) {
        this.setupDirtyTracking(dev, IOMMU_NO_PASID, enable, options);
        done.push(dev);
      }
    } catch (e) {
      for (const dev of done) this.setupDirtyTracking(dev, IOMMU_NO_PASID, domain.dirtyTracking, options);
      throw e;
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
      if (this.ratelimit('intel_pasid_setup_dirty_tracking')) this.log.err(`${dev.name}: Dirty tracking not supported on translation type ${pgtt}`);
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

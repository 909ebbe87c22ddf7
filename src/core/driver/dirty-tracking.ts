import { PGTT } from '../vtd/structures';
import { pasidEntryAddress } from '../vtd/tables';
import type { DeviceInfo } from './device';
import { type DirtyRecord, emptyGather, gatherAdd, harvestDirty, type IotlbGather } from './dirty';
import type { Domain } from './domain';
import { fail, KernelError } from './errors';
import { devTlbDesc, type FlushOptions } from './flush';
import { devPrefix } from './log';
import { IOMMU_NO_PASID } from './pasid-alloc';
import { Descs, FULL_RANGE_MASK } from './qi';
import type { KernelState } from './state';

/** How readAndClearDirty harvests. */
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

/** Second-stage dirty tracking (ECAP.SLADS, SSADE in the PASID entry): set_dirty_tracking and read_and_clear_dirty. */
export class DirtyTracking {
  constructor(private readonly k: KernelState) {}

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
    const own = domain.ridDevices;
    let err = setList(own, enable);
    if (err) {
      setList(own, domain.dirtyTracking);
      throw err;
    }
    if (domain.nestParent) {
      const s1 = [...domain.children].reverse();
      for (const c of s1) if ((err = setList(c.ridDevices, enable))) break;
      if (err) {
        for (const c of s1) setList(c.ridDevices, domain.dirtyTracking);
        setList(own, domain.dirtyTracking);
        throw err;
      }
    }
    domain.dirtyTracking = enable;
  }

  /** intel_pasid_setup_dirty_tracking for one (device, PASID). */
  private setupDirtyTracking(dev: DeviceInfo, pasid: number, enable: boolean, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.k.machine.memory;
    const table = this.k.entries.pasidTable(dev, pasid, true)!;
    const addr = pasidEntryAddress(table, pasid);
    const lo = mem.readLo(addr);
    const did = mem.readLo(addr + 8) & 0xffff;
    const pgtt = (lo >>> 6) & 7;
    if (pgtt !== PGTT.SECOND_LEVEL && pgtt !== PGTT.NESTED) {
      if (this.k.ratelimit('intel_pasid_setup_dirty_tracking')) this.k.log.err(`${devPrefix(dev)}Dirty tracking not supported on translation type ${pgtt}`);
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
    harvestDirty(this.k.machine.memory, domain.pageTable!, iova, size, o.noClear ?? false, (at, pgsize) => {
      records.push({ iova: at, size: pgsize });
      o.record?.(at, pgsize);
      gatherAdd(gather, at, pgsize);
    });
    return { records, gather };
  }
}

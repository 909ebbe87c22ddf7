import { fail } from '../driver/errors';
import { MAX_PASID_BITS, type PasidCapable } from '../driver/pasid-alloc';
import type { HostPasidAllocator, PasidRange } from './pasid-map';

/** A device as the split sees it: its PASID width and whether the guest submits work to it with ENQCMD. */
export interface SplitDevice extends PasidCapable {
  readonly enqcmd: boolean;
}

/** One PASID-table entry a bind programs on the host: at the guest's local index or at the global one. */
export interface PasidTableSlot {
  readonly index: number;
  readonly range: 'local' | 'global';
}

/**
 * The hybrid local/global PASID split of seed 003 (reference §7.4), as one policy for all devices of a VM:
 * the split cannot be per device, because a guest process bound to two devices must use one PASID on both.
 * - local [0, globalMin): managed by the guest, migrated as VM state; PASID 0 is IOMMU_NO_PASID, so the
 *   guest allocates from [1, globalMin);
 * - global [globalMin, max): host-allocated, re-allocated and re-mapped after migration.
 * The guest is kept inside the local range by the vIOMMU's advertised PASID width.
 */
export class PasidSplit {
  /** Exclusive bound of the global range: the architectural PASID space; each device bounds it further. */
  readonly max = 2 ** MAX_PASID_BITS;

  constructor(readonly globalMin = 1024) {
    if (!Number.isInteger(globalMin) || globalMin < 2 || globalMin >= this.max) {
      fail('EINVAL', `PASID split: global minimum ${globalMin} must lie in [2, 2^20)`);
    }
  }

  /** The guest PASIDs the guest may allocate: [1, globalMin - 1]. */
  get localRange(): PasidRange {
    return { min: 1, max: this.globalMin - 1 };
  }

  /** The host-allocated range: [globalMin, max - 1]. */
  get globalRange(): PasidRange {
    return { min: this.globalMin, max: this.max - 1 };
  }

  isLocal(pasid: number): boolean {
    return Number.isInteger(pasid) && pasid >= 0 && pasid < this.globalMin;
  }

  isGlobal(pasid: number): boolean {
    return Number.isInteger(pasid) && pasid >= this.globalMin && pasid < this.max;
  }

  /**
   * ECAP.PSS the vIOMMU reports: Linux sizes a unit's PASID space as `max_pasids = 2 << PSS` (6.12
   * dmar.c), so the largest PSS with 2 << PSS <= globalMin confines the guest to the local range (exactly
   * when globalMin is a power of two; below it otherwise).
   */
  advertisedPss(): number {
    return Math.floor(Math.log2(this.globalMin)) - 1;
  }

  /** The same width in bits, for the virtual device's PCI PASID capability (Max PASID Width) or QEMU's `pasid`. */
  advertisedPasidBits(): number {
    return this.advertisedPss() + 1;
  }

  /** Whether a vIOMMU reporting this PSS keeps the guest inside the local range. */
  confines(pss: number): boolean {
    return 2 * 2 ** pss <= this.globalMin;
  }

  /**
   * A global PASID valid on every one of `devices`, as `iommu_alloc_global_pasid` bounds it by each
   * device's `max_pasids - 1` (6.12 iommu.c): ENOSPC when the narrowest device leaves nothing at or above
   * globalMin, or when the range is used up; EOPNOTSUPP for a device without PASIDs (the allocator's rule).
   */
  allocGlobal(allocator: HostPasidAllocator, devices: readonly PasidCapable[]): number {
    return allocator.allocGlobal(devices, this.globalMin);
  }

  /**
   * Using an already allocated global PASID on one more device: EOVERFLOW when it is beyond the device's
   * width, as `iommu_alloc_mm_data` refuses an mm's PASID at or above `max_pasids` (6.12 iommu-sva.c).
   */
  checkFits(pasid: number, device: PasidCapable): 'EOVERFLOW' | undefined {
    return pasid >= device.maxPasids ? 'EOVERFLOW' : undefined;
  }

  /**
   * The host PASID-table entries a bind of (guest local PASID, host global PASID) programs on `device`
   * (seed 003): with ENQCMD the CPU translates local → global, so the device only ever sees the global
   * PASID and one entry at the global index is enough; without ENQCMD both the local and the global entries
   * are set up, since the device may be given either (the guest's own PASID when it programs the device
   * directly, the host's when the VMM or VDCM mediates the programming).
   */
  entriesToProgram(device: SplitDevice, guest: number, host: number): PasidTableSlot[] {
    if (!this.isLocal(guest) || guest === 0) fail('ERANGE', `guest PASID ${guest} is not in the local range [1, ${this.globalMin})`);
    if (!this.isGlobal(host)) fail('ERANGE', `host PASID ${host} is not in the global range [${this.globalMin}, ${this.max})`);
    if (this.checkFits(host, device)) fail('EOVERFLOW', `host PASID ${host} does not fit ${device.name} (max PASIDs ${device.maxPasids})`);
    const global: PasidTableSlot = { index: host, range: 'global' };
    return device.enqcmd ? [global] : [{ index: guest, range: 'local' }, global];
  }
}

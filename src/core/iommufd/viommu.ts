import type { IntelIommu } from '../driver/intel-iommu';
import type { IommufdDevice } from './device';
import type { HwptPaging } from './hwpt';
import type { IommufdObject } from './objects';

/**
 * IOMMU_VIOMMU_ALLOC and IOMMU_VDEVICE_ALLOC (drivers/iommu/iommufd/viommu.c): a VM's slice of one physical
 * IOMMU holding the nest parent, and the table of virtual device IDs (for VT-d, the guest's RID of an
 * assigned device) to the physical devices behind them.
 */

export class Viommu implements IommufdObject {
  readonly type = 'VIOMMU';
  id = 0;
  users = 1;
  /** virt_id -> vdevice. */
  readonly vdevs = new Map<bigint, Vdevice>();

  constructor(
    readonly hwpt: HwptPaging,
    /** The physical IOMMU this vIOMMU is a slice of: only devices behind it get vdevices. */
    readonly iommu: IntelIommu,
    readonly viommuType: number,
  ) {}
}

export class Vdevice implements IommufdObject {
  readonly type = 'VDEVICE';
  id = 0;
  users = 1;

  constructor(
    readonly viommu: Viommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {}
}

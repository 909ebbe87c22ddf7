import type { Domain } from '../driver/domain';
import type { FaultQueue } from './fault';
import type { Ioas } from './ioas';
import type { IommufdObject } from './objects';
import type { Viommu } from './viommu';

/**
 * Hardware page tables (drivers/iommu/iommufd/hw_pagetable.c): a driver domain wrapped as an iommufd object.
 * A paging HWPT is a kernel-managed domain mirroring an IOAS; a nested HWPT is a user-managed first stage
 * over a nest parent.
 */

export class HwptPaging implements IommufdObject {
  readonly type = 'HWPT_PAGING';
  id = 0;
  users = 1;
  /** Made by attaching a device to an IOAS: destroyed when its last device leaves. */
  autoDomain = false;
  fault: FaultQueue | undefined;

  constructor(
    readonly domain: Domain,
    readonly ioas: Ioas,
    readonly nestParent: boolean,
    /** Allocated with IOMMU_HWPT_ALLOC_PASID: may be attached to a PASID. */
    readonly pasidCompat: boolean,
  ) {}
}

export class HwptNested implements IommufdObject {
  readonly type = 'HWPT_NESTED';
  id = 0;
  users = 1;
  fault: FaultQueue | undefined;

  constructor(
    readonly domain: Domain,
    readonly parent: HwptPaging,
    readonly pasidCompat: boolean,
    /** Set when allocated on a vIOMMU rather than directly on the parent. */
    readonly viommu: Viommu | undefined,
  ) {}
}

export type Hwpt = HwptPaging | HwptNested;

/** find_hwpt_paging: the paging HWPT whose IOAS an attachment uses (a nested HWPT's parent). */
export function pagingOf(hwpt: Hwpt): HwptPaging {
  return hwpt.type === 'HWPT_PAGING' ? hwpt : hwpt.parent;
}

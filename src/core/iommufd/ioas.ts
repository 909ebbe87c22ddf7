import type { IommuKernel } from '../driver/kernel';
import { IoPagetable } from './io-pagetable';
import type { HwptPaging } from './hwpt';
import type { IommufdObject } from './objects';

/** IOMMU_IOAS_ALLOC: an IO address space and the paging HWPTs that mirror it. */
export class Ioas implements IommufdObject {
  readonly type = 'IOAS';
  id = 0;
  users = 1;
  readonly iopt: IoPagetable;
  /** `ioas->hwpt_list`: paging HWPTs built on this IOAS, in creation order (auto domains are reused from here). */
  readonly hwpts: HwptPaging[] = [];

  constructor(kernel: IommuKernel) {
    this.iopt = new IoPagetable(kernel);
  }
}

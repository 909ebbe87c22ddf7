import type { DeviceInfo } from '../driver/device';
import type { Hwpt } from './hwpt';
import type { IommufdObject } from './objects';
import type { Vdevice } from './viommu';

/**
 * A device bound to this iommufd (`struct iommufd_device`). Each device is its own IOMMU group here (PCIe
 * endpoints behind ACS), so the group's attachment table is the device's: what is attached at the RID
 * (PASID 0) and at each PASID.
 */
export class IommufdDevice implements IommufdObject {
  readonly type = 'DEVICE';
  id = 0;
  /** The table's reference plus the binding driver's (VFIO), so DESTROY of a device is always EBUSY. */
  users = 2;
  /** `igroup->pasid_attach`: PASID (0 = RID) -> HWPT. */
  readonly attached = new Map<number, Hwpt>();
  vdevice: Vdevice | undefined;

  constructor(readonly dev: DeviceInfo) {}
}

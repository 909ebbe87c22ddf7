import type { DeviceInfo } from '../driver/device';
import { fail } from '../driver/errors';
import type { IommuKernel } from '../driver/kernel';
import { IOMMU_NO_PASID } from '../driver/pasid-alloc';
import type { IommufdDevice } from './device';
import type { Iommufd } from './iommufd';
import { VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_DETACH_PASID } from './uapi';

/**
 * An open VFIO device cdev (/dev/vfio/devices/vfioN) on the iommufd path (drivers/vfio/iommufd.c): bind it
 * to an iommufd, then attach it with VFIO_DEVICE_ATTACH_IOMMUFD_PT, which attaches the first time and
 * replaces afterwards, at the RID or (with VFIO_DEVICE_ATTACH_PASID) at a PASID. Closing it detaches and
 * unbinds, and the device returns to its default domain.
 */
export class VfioDevice {
  readonly dev: DeviceInfo;
  private ictx: Iommufd | undefined;
  private idev: IommufdDevice | undefined;
  private ridAttached = false;
  private readonly pasids = new Set<number>();

  constructor(kernel: IommuKernel, which: string | number | DeviceInfo) {
    this.dev = kernel.device(which);
  }

  /** The iommufd device id (`out_devid`), once bound. */
  get devId(): number {
    return this.idev?.id ?? fail('EINVAL', `${this.dev.name} is not bound to an iommufd`);
  }

  /** VFIO_DEVICE_BIND_IOMMUFD. */
  bindIommufd(ictx: Iommufd): { devId: number } {
    if (this.idev) fail('EINVAL', `${this.dev.name} is already bound`);
    this.idev = ictx.deviceBind(this.dev);
    this.ictx = ictx;
    return { devId: this.idev.id };
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT: returns the HWPT id actually attached (an auto domain's for an IOAS). */
  attachPt(cmd: { ptId: number; flags?: number; pasid?: number }): { ptId: number } {
    const { ictx, idev } = this.bound();
    const flags = cmd.flags ?? 0;
    if (flags & ~VFIO_DEVICE_ATTACH_PASID) fail('EINVAL', `attach flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
    if (flags & VFIO_DEVICE_ATTACH_PASID) {
      const pasid = cmd.pasid ?? IOMMU_NO_PASID;
      if (pasid === IOMMU_NO_PASID) fail('EINVAL', 'PASID 0 is the RID: attach without VFIO_DEVICE_ATTACH_PASID');
      if (this.pasids.has(pasid)) return ictx.deviceReplace(idev.id, cmd.ptId, pasid);
      const out = ictx.deviceAttach(idev.id, cmd.ptId, pasid);
      this.pasids.add(pasid);
      return out;
    }
    if (this.ridAttached) return ictx.deviceReplace(idev.id, cmd.ptId);
    const out = ictx.deviceAttach(idev.id, cmd.ptId);
    this.ridAttached = true;
    return out;
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT: nothing attached is not an error. */
  detachPt(cmd: { flags?: number; pasid?: number } = {}): void {
    const { ictx, idev } = this.bound();
    const flags = cmd.flags ?? 0;
    if (flags & ~VFIO_DEVICE_DETACH_PASID) fail('EINVAL', `detach flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
    if (flags & VFIO_DEVICE_DETACH_PASID) {
      const pasid = cmd.pasid ?? IOMMU_NO_PASID;
      if (!this.pasids.delete(pasid)) return;
      ictx.deviceDetach(idev.id, pasid);
      return;
    }
    if (!this.ridAttached) return;
    ictx.deviceDetach(idev.id);
    this.ridAttached = false;
  }

  /** close(): vfio_iommufd_physical_unbind. */
  close(): void {
    if (!this.idev || !this.ictx) return;
    if (!this.ictx.isClosed) this.ictx.deviceUnbind(this.idev);
    this.idev = undefined;
    this.ictx = undefined;
    this.pasids.clear();
    this.ridAttached = false;
  }

  private bound(): { ictx: Iommufd; idev: IommufdDevice } {
    if (!this.idev || !this.ictx) fail('EINVAL', `${this.dev.name} is not bound to an iommufd`);
    return { ictx: this.ictx, idev: this.idev };
  }
}

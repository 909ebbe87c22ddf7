import { fail, KernelError } from '../driver/errors';
import { IOMMU_NO_PASID } from '../driver/pasid-alloc';
import type { IommufdDevice } from './device';
import { type Hwpt, pagingOf } from './hwpt';
import { addToIoas, allocHwptPaging, destroyHwpt, enforcesCacheCoherency, type HwptEnv } from './hwpt-alloc';
import type { Ioas } from './ioas';

/**
 * Attaching devices to HWPTs (drivers/iommu/iommufd/device.c, 6.17): attach, replace and detach at the
 * RID or at a PASID, with pt_id naming a HWPT or an IOAS (whose auto domains are tried in turn, and a new
 * one allocated when none fits), the PASID compatibility rules, the device's reserved regions in the IOAS,
 * and the automatic INVALID responses for page requests still queued on a HWPT the device leaves.
 */

/** The VT-d driver's reserved region for every device: the IOAPIC/MSI window (IOMMU_RESV_MSI). */
export const VTD_MSI_WINDOW = { start: 0xfee0_0000n, last: 0xfeef_ffffn } as const;

type Mode = 'attach' | 'replace';

/** iommufd_device_attach / iommufd_device_replace: returns the id of the HWPT now attached. */
export function changePt(env: HwptEnv, idev: IommufdDevice, pasid: number, ptId: number, mode: Mode): number {
  const obj = env.objects.get(ptId);
  if (obj.type === 'HWPT_PAGING' || obj.type === 'HWPT_NESTED') {
    const hwpt = obj as Hwpt;
    const old = mode === 'attach' ? doAttach(env, idev, pasid, hwpt) : doReplace(env, idev, pasid, hwpt);
    if (old) putHwpt(env, old);
    return hwpt.id;
  }
  if (obj.type === 'IOAS') return autoGetDomain(env, idev, pasid, obj as Ioas, mode);
  return fail('EINVAL', `object ${ptId} is a ${obj.type}: a device attaches to an IOAS or a HWPT`);
}

/** iommufd_device_detach: nothing attached there is not an error. */
export function detach(env: HwptEnv, idev: IommufdDevice, pasid: number): void {
  const hwpt = hwDetach(env, idev, pasid);
  if (hwpt) putHwpt(env, hwpt);
}

/**
 * iommufd_device_auto_get_domain: each auto domain of the IOAS is tried; EINVAL means "not compatible, try
 * the next", any other error is the answer. Then a new auto domain (flags 0, so never PASID-compatible).
 * A new domain is attached before it is filled, for an attach; filled before, for a replace.
 */
function autoGetDomain(env: HwptEnv, idev: IommufdDevice, pasid: number, ioas: Ioas, mode: Mode): number {
  for (const h of [...ioas.hwpts]) {
    if (!h.autoDomain) continue;
    try {
      const old = mode === 'attach' ? doAttach(env, idev, pasid, h) : doReplace(env, idev, pasid, h);
      if (old) putHwpt(env, old);
      return h.id;
    } catch (e) {
      if (e instanceof KernelError && e.errno === 'EINVAL') continue;
      throw e;
    }
  }
  const hwpt = allocHwptPaging(env, ioas, idev, 0, undefined);
  let old: Hwpt | undefined;
  if (mode === 'attach') {
    try {
      doAttach(env, idev, pasid, hwpt);
    } catch (e) {
      destroyHwpt(env, hwpt);
      throw e;
    }
    try {
      hwpt.ioas.iopt.addDomain(hwpt.domain);
    } catch (e) {
      hwDetach(env, idev, pasid);
      hwpt.users--;
      destroyHwpt(env, hwpt);
      throw e;
    }
    ioas.hwpts.push(hwpt);
  } else {
    addToIoas(env, hwpt);
    try {
      old = doReplace(env, idev, pasid, hwpt);
    } catch (e) {
      destroyHwpt(env, hwpt);
      throw e;
    }
  }
  hwpt.autoDomain = true;
  if (old) putHwpt(env, old);
  return hwpt.id;
}

/** iommufd_hw_pagetable_attach. */
function doAttach(env: HwptEnv, idev: IommufdDevice, pasid: number, hwpt: Hwpt): undefined {
  const cur = idev.attached.get(pasid);
  if (cur) fail('EBUSY', `${idev.dev.name} is already attached to hwpt${cur.id} at ${where(pasid)}; use replace`);
  const paging = pagingOf(hwpt);
  const reserve = pasid === IOMMU_NO_PASID;
  if (reserve) reserveDeviceRegions(paging.ioas, idev);
  try {
    checkAttach(idev, pasid, hwpt);
    enforceCc(env, idev, hwpt);
    if (pasid === IOMMU_NO_PASID) env.kernel.attachDevice(hwpt.domain, idev.dev);
    else env.kernel.attachDevicePasid(hwpt.domain, idev.dev, pasid);
  } catch (e) {
    if (reserve) paging.ioas.iopt.removeReserved(idev);
    throw e;
  }
  idev.attached.set(pasid, hwpt);
  hwpt.users++;
  return undefined;
}

/** iommufd_device_do_replace: returns the HWPT that was replaced (the caller drops it). */
function doReplace(env: HwptEnv, idev: IommufdDevice, pasid: number, hwpt: Hwpt): Hwpt | undefined {
  const old = idev.attached.get(pasid);
  if (!old) fail('EINVAL', `${idev.dev.name} has nothing attached at ${where(pasid)} to replace`);
  if (old === hwpt) return undefined;
  const paging = pagingOf(hwpt);
  const oldPaging = pagingOf(old);
  const moveReserved = pasid === IOMMU_NO_PASID && paging.ioas !== oldPaging.ioas;
  if (moveReserved) reserveDeviceRegions(paging.ioas, idev);
  try {
    checkAttach(idev, pasid, hwpt);
    enforceCc(env, idev, hwpt);
    if (pasid === IOMMU_NO_PASID) env.kernel.attachDevice(hwpt.domain, idev.dev);
    else env.kernel.replaceDevicePasid(hwpt.domain, idev.dev, pasid);
  } catch (e) {
    if (moveReserved) paging.ioas.iopt.removeReserved(idev);
    throw e;
  }
  if (moveReserved) oldPaging.ioas.iopt.removeReserved(idev);
  idev.attached.set(pasid, hwpt);
  hwpt.users++;
  autoRespond(idev, pasid, old);
  return old;
}

/** iommufd_hw_pagetable_detach: the device leaves; returns the HWPT it left (not yet dropped). */
function hwDetach(env: HwptEnv, idev: IommufdDevice, pasid: number): Hwpt | undefined {
  const hwpt = idev.attached.get(pasid);
  if (!hwpt) return undefined;
  // An owned device's RID goes to the blocking domain, not back to its default domain.
  if (pasid === IOMMU_NO_PASID) env.kernel.detachDevice(idev.dev);
  else env.kernel.detachDevicePasid(idev.dev, pasid);
  idev.attached.delete(pasid);
  autoRespond(idev, pasid, hwpt);
  if (pasid === IOMMU_NO_PASID) pagingOf(hwpt).ioas.iopt.removeReserved(idev);
  return hwpt;
}

/** iommufd_hw_pagetable_put: an auto domain goes away with its last user. */
function putHwpt(env: HwptEnv, hwpt: Hwpt): void {
  hwpt.users--;
  if (hwpt.type === 'HWPT_PAGING' && hwpt.autoDomain && hwpt.users === 1) destroyHwpt(env, hwpt);
}

function autoRespond(idev: IommufdDevice, pasid: number, hwpt: Hwpt): void {
  hwpt.fault?.autoRespond((g) => g.devId === idev.id && g.pasid === pasid && g.hwpt === hwpt);
}

/**
 * What iommufd_hwpt_attach_device / _replace_device check before the driver is called: PASID
 * compatibility, and (for a nested HWPT on a vIOMMU) the vdevice. The PASID range is the IOMMU core's
 * (EINVAL), page-fault support the driver's (ENODEV without PRI): the kernel model checks both.
 */
function checkAttach(idev: IommufdDevice, pasid: number, hwpt: Hwpt): void {
  if (pasid === IOMMU_NO_PASID) {
    const pasids = [...idev.attached.keys()].filter((p) => p !== IOMMU_NO_PASID);
    if (!hwpt.pasidCompat && pasids.length) fail('EINVAL', `hwpt${hwpt.id} is not PASID-compatible, and ${idev.dev.name} has PASID ${pasids[0]} attached`);
  } else {
    if (!hwpt.pasidCompat) fail('EINVAL', `hwpt${hwpt.id} was not allocated with IOMMU_HWPT_ALLOC_PASID`);
    const rid = idev.attached.get(IOMMU_NO_PASID);
    if (rid && !rid.pasidCompat) fail('EINVAL', `the RID of ${idev.dev.name} is attached to hwpt${rid.id}, which is not PASID-compatible`);
  }
  if (hwpt.type === 'HWPT_NESTED' && hwpt.viommu && idev.vdevice?.viommu !== hwpt.viommu) {
    fail('ENOENT', `${idev.dev.name} has no vdevice on viommu ${hwpt.viommu.id}`);
  }
}

/**
 * iommufd_hw_pagetable_attach's iommufd_hwpt_paging_enforce_cc: a device that can enforce coherency needs a
 * paging HWPT that does, or can still be made to (a second-stage one with nothing mapped): else EINVAL.
 */
function enforceCc(env: HwptEnv, idev: IommufdDevice, hwpt: Hwpt): void {
  if (hwpt.type !== 'HWPT_PAGING' || !enforcesCacheCoherency(idev.dev) || hwpt.domain.forceSnooping) return;
  if (!env.kernel.enforceCacheCoherency(hwpt.domain)) fail('EINVAL', `hwpt${hwpt.id} cannot enforce cache coherency (it maps already, or a device of it has no snoop control)`);
}

/** iopt_table_enforce_dev_resv_regions for a VT-d device: its MSI window, owned by the device. */
function reserveDeviceRegions(ioas: Ioas, idev: IommufdDevice): void {
  ioas.iopt.reserve(VTD_MSI_WINDOW.start, VTD_MSI_WINDOW.last, idev);
}

function where(pasid: number): string {
  return pasid === IOMMU_NO_PASID ? 'the RID' : `PASID ${pasid}`;
}

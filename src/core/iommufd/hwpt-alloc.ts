import type { DeviceInfo } from '../driver/device';
import { fail } from '../driver/errors';
import type { IommuKernel } from '../driver/kernel';
import type { IommufdDevice } from './device';
import { type Hwpt, HwptNested, HwptPaging } from './hwpt';
import type { Ioas } from './ioas';
import type { ObjectTable } from './objects';
import { HWPT_ALLOC, HWPT_DATA, SIZEOF } from './uapi';
import type { Viommu } from './viommu';

/**
 * Allocation and destruction of HWPTs: the iommufd core's checks (hw_pagetable.c) followed by the VT-d
 * driver's (intel_iommu_domain_alloc_paging_flags, intel_iommu_domain_alloc_nested), both of 6.17.
 */

export interface HwptEnv {
  readonly kernel: IommuKernel;
  readonly objects: ObjectTable;
}

/** User data of a VT-d nested HWPT (`struct iommu_hwpt_vtd_s1`). */
export interface VtdS1Data {
  readonly flags?: number;
  /** Guest-physical address of the guest's first-level root table. */
  readonly pgtblAddr: bigint | number;
  readonly addrWidth: number;
  readonly reserved?: number;
}

/** The `data_type`, `data_len` and `data_uptr` of an allocation; `data: null` is a NULL `data_uptr`. */
export interface UserData {
  readonly type: number;
  readonly len: number;
  readonly data: VtdS1Data | null | undefined;
}

/** IOMMU_CAP_DIRTY_TRACKING on VT-d: scalable mode and second-stage A/D support (ECAP.SLADS). */
export function dirtyTrackingCapable(dev: DeviceInfo): boolean {
  return dev.iommu.scalable && dev.iommu.unit.ecap.slads === 1;
}

/** idev->enforce_cache_coherency: IOMMU_CAP_ENFORCE_CACHE_COHERENCY, which VT-d reports from ECAP.SC. */
export function enforcesCacheCoherency(dev: DeviceInfo): boolean {
  return dev.iommu.unit.ecap.sc === 1;
}

/** iommufd_hwpt_paging_alloc up to (not including) adding the domain to the IOAS. */
export function allocHwptPaging(env: HwptEnv, ioas: Ioas, idev: IommufdDevice, flags: number, userData: UserData | undefined): HwptPaging {
  const valid = HWPT_ALLOC.NEST_PARENT | HWPT_ALLOC.DIRTY_TRACKING | HWPT_ALLOC.FAULT_ID_VALID | HWPT_ALLOC.PASID;
  if (flags & ~valid) fail('EOPNOTSUPP', `HWPT flags 0x${(flags >>> 0).toString(16)} include unknown bits`);
  if (flags & HWPT_ALLOC.DIRTY_TRACKING && !dirtyTrackingCapable(idev.dev)) fail('EOPNOTSUPP', `${idev.dev.iommu.name} cannot track dirty pages (ECAP.SLADS)`);
  if (flags & HWPT_ALLOC.FAULT_ID_VALID && flags & HWPT_ALLOC.NEST_PARENT) fail('EOPNOTSUPP', 'a nest parent cannot take page faults');
  // intel_iommu_domain_alloc_paging_flags: a paging domain takes no user data.
  if (userData) fail('EOPNOTSUPP', 'the VT-d driver takes no user data for a paging domain');
  // domain_alloc_paging_flags(dev, ...): the device's own IOMMU decides (first stage unless the flags need the second).
  const domain = env.kernel.allocPagingDomain({ nestParent: (flags & HWPT_ALLOC.NEST_PARENT) !== 0, dirtyTracking: (flags & HWPT_ALLOC.DIRTY_TRACKING) !== 0, device: idev.dev });
  // The coherency mode is set before anything is mapped (iommufd_hwpt_paging_enforce_cc, for a device whose
  // IOMMU reports IOMMU_CAP_ENFORCE_CACHE_COHERENCY: ECAP.SC); a new domain never refuses it.
  if (enforcesCacheCoherency(idev.dev)) env.kernel.enforceCacheCoherency(domain);
  const hwpt = env.objects.add(new HwptPaging(domain, ioas, (flags & HWPT_ALLOC.NEST_PARENT) !== 0, (flags & HWPT_ALLOC.PASID) !== 0));
  domain.name = `hwpt${hwpt.id}`;
  domain.description = 'iommufd, IOAS ' + ioas.id;
  ioas.users++;
  return hwpt;
}

/** iopt_table_add_domain, then the HWPT joins the IOAS's list; on failure the HWPT is destroyed. */
export function addToIoas(env: HwptEnv, hwpt: HwptPaging): void {
  try {
    hwpt.ioas.iopt.addDomain(hwpt.domain);
  } catch (e) {
    destroyHwpt(env, hwpt);
    throw e;
  }
  hwpt.ioas.hwpts.push(hwpt);
}

/** intel_iommu_domain_alloc_nested: checks the data type, the parent and the data length; nothing else. */
export function allocHwptNested(env: HwptEnv, parent: HwptPaging, idev: IommufdDevice, flags: number, user: UserData, viommu: Viommu | undefined): HwptNested {
  const unit = idev.dev.iommu.unit;
  if (user.type !== HWPT_DATA.VTD_S1) fail('EOPNOTSUPP', `data type ${user.type} is not IOMMU_HWPT_DATA_VTD_S1`);
  if (!unit.ecap.nest || flags & ~HWPT_ALLOC.PASID & ~HWPT_ALLOC.FAULT_ID_VALID) fail('EOPNOTSUPP', `${idev.dev.iommu.name} cannot nest, or the flags ask for more than PASID`);
  if (parent.domain.stage !== 'second' || !parent.nestParent) fail('EINVAL', `${parent.domain.name} is not a second-stage nest parent`);
  // iommu_copy_struct_from_user: the minimum length is the whole 24-byte struct, and nothing longer is taken.
  if (user.len < SIZEOF.HWPT_VTD_S1 || user.len > SIZEOF.HWPT_VTD_S1) fail('EINVAL', `data_len ${user.len} is not sizeof(struct iommu_hwpt_vtd_s1) = ${SIZEOF.HWPT_VTD_S1}`);
  if (!user.data) fail('EFAULT', 'data_uptr is NULL');
  const d = user.data;
  const pgtbl = BigInt(d.pgtblAddr);
  if (pgtbl < 0n || pgtbl >= 1n << 52n) throw new RangeError(`pgtbl_addr 0x${pgtbl.toString(16)}: the model holds guest table addresses of at most 52 bits`);
  // The driver keeps flags, addr_width and __reserved as given; they are checked at attach (intel_pasid_setup_nested).
  const f = d.flags ?? 0;
  const domain = env.kernel.allocNestedDomain(parent.domain, { sre: (f & 1) !== 0, eafe: (f & 2) !== 0, wpe: (f & 4) !== 0, pgtblAddr: Number(pgtbl), addrWidth: d.addrWidth });
  const hwpt = env.objects.add(new HwptNested(domain, parent, (flags & HWPT_ALLOC.PASID) !== 0, viommu));
  domain.name = `hwpt${hwpt.id}`;
  domain.description = `nested over hwpt${parent.id}`;
  parent.users++;
  if (viommu) viommu.users++;
  return hwpt;
}

/** The destroy callback of a HWPT object: unmirror, drop references, free the domain. */
export function destroyHwpt(env: HwptEnv, hwpt: Hwpt): void {
  if (hwpt.type === 'HWPT_PAGING') {
    const list = hwpt.ioas.hwpts;
    if (list.includes(hwpt)) {
      hwpt.ioas.iopt.removeDomain(hwpt.domain);
      list.splice(list.indexOf(hwpt), 1);
    }
    hwpt.ioas.users--;
  } else {
    hwpt.parent.users--;
    if (hwpt.viommu) hwpt.viommu.users--;
  }
  if (hwpt.fault) hwpt.fault.users--;
  hwpt.domain.iopfHandler = undefined;
  env.kernel.freeDomain(hwpt.domain);
  env.objects.remove(hwpt);
}

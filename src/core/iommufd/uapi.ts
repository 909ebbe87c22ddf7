/**
 * Numbers of the iommufd uAPI (include/uapi/linux/iommufd.h and the VFIO cdev side of
 * include/uapi/linux/vfio.h), as userspace passes them, plus the sizes of the structures whose length
 * userspace states (vendor data, invalidation entries, fault records). Values follow 6.17.
 */
import { UAPI_STRUCTS } from './uapi-layout';

/** `IOMMU_IOAS_MAP` / `IOMMU_IOAS_COPY` flags. */
export const IOAS_MAP = { FIXED_IOVA: 1, WRITEABLE: 2, READABLE: 4 } as const;

/** `IOMMU_HWPT_ALLOC` flags. */
export const HWPT_ALLOC = { NEST_PARENT: 1, DIRTY_TRACKING: 2, FAULT_ID_VALID: 4, PASID: 8 } as const;

/** `enum iommufd_hwpt_set_dirty_tracking_flags`. */
export const HWPT_DIRTY_TRACKING_ENABLE = 1;

/** `enum iommufd_hwpt_get_dirty_bitmap_flags`. */
export const HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

/** `enum iommu_hwpt_data_type`. */
export const HWPT_DATA = { NONE: 0, VTD_S1: 1, ARM_SMMUV3: 2 } as const;

/** `struct iommu_hwpt_vtd_s1` flags. */
export const VTD_S1 = { SRE: 1, EAFE: 2, WPE: 4 } as const;

/** `enum iommu_hwpt_invalidate_data_type`. */
export const HWPT_INVALIDATE_DATA = { VTD_S1: 0, VIOMMU_ARM_SMMUV3: 1 } as const;

/** `IOMMU_VTD_INV_FLAGS_LEAF`. */
export const VTD_INV_FLAGS_LEAF = 1;

/** `IOMMU_OPTION`: option ids and ops. */
export const OPTION = { RLIMIT_MODE: 0, HUGE_PAGES: 1 } as const;
export const OPTION_OP = { SET: 0, GET: 1 } as const;

/** `IOMMU_GET_HW_INFO`. */
export const HW_INFO_FLAG_INPUT_TYPE = 1;
export const HW_INFO_TYPE = { DEFAULT: 0, INTEL_VTD: 1, ARM_SMMUV3: 2, TEGRA241_CMDQV: 3 } as const;
export const HW_INFO_VTD_ERRATA_772415_SPR17 = 1;
export const HW_CAP = { DIRTY_TRACKING: 1, PCI_PASID_EXEC: 2, PCI_PASID_PRIV: 4 } as const;

/** `enum iommu_viommu_type`. */
export const VIOMMU_TYPE = { DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2 } as const;
/**
 * Not a kernel value: the type this model accepts for a VT-d vIOMMU when asked to emulate a kernel whose
 * VT-d driver has vIOMMU ops (6.17 has none). Chosen far from the kernel's small enum values.
 */
export const LAB_VIOMMU_TYPE_VTD = 0x1ab0_0001;

/** `struct iommu_hwpt_pgfault` flags: the kernel copies `iopf_fault.prm.flags` as they are. */
export const PGFAULT_FLAGS = { PASID_VALID: 1, LAST_PAGE: 2, PRIV_DATA: 4, NEEDS_PASID: 8 } as const;
export const PGFAULT_PERM = { READ: 1, WRITE: 2, EXEC: 4, PRIV: 8 } as const;
/** `enum iommufd_page_response_code`. */
export const PAGE_RESP = { SUCCESS: 0, INVALID: 1 } as const;

/** VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH flags. */
export const VFIO_DEVICE_ATTACH_PASID = 1;
export const VFIO_DEVICE_DETACH_PASID = 1;

/** Structure sizes userspace states in `data_len`, `entry_len` and read()/write() counts (from the layouts). */
export const SIZEOF = {
  HWPT_VTD_S1: UAPI_STRUCTS.iommu_hwpt_vtd_s1.size,
  HWPT_VTD_S1_INVALIDATE: UAPI_STRUCTS.iommu_hwpt_vtd_s1_invalidate.size,
  HW_INFO_VTD: UAPI_STRUCTS.iommu_hw_info_vtd.size,
  HWPT_PGFAULT: UAPI_STRUCTS.iommu_hwpt_pgfault.size,
  HWPT_PAGE_RESPONSE: UAPI_STRUCTS.iommu_hwpt_page_response.size,
  IOVA_RANGE: UAPI_STRUCTS.iommu_iova_range.size,
} as const;

export const U64_MAX = (1n << 64n) - 1n;
/** x86-64: unsigned long is 64 bits wide. */
export const ULONG_MAX = U64_MAX;
export const U32_MAX = 0xffff_ffff;
/** Host page size, and the THP size that caps the alignment of a kernel-chosen IOVA. */
export const PAGE_SIZE = 4096n;
export const HPAGE_SIZE = 0x20_0000n;

/** A u64 field as callers give it: a bigint, or a number when it is an exact integer. */
export type U64In = bigint | number;

export function u64(v: U64In, field: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${field}: ${v} is not an exact unsigned integer; pass a bigint`);
    return BigInt(v);
  }
  if (v < 0n || v > U64_MAX) throw new RangeError(`${field}: 0x${v.toString(16)} does not fit in 64 bits`);
  return v;
}

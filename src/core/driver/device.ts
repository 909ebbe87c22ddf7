import type { Endpoint } from '../hw/endpoint';
import { pciDeviceKey } from '../pci';
import type { Domain } from './domain';
import type { IntelIommu } from './intel-iommu';

/**
 * What the driver keeps per device (Linux `struct device_domain_info`): its IOMMU, its PASID table, which
 * PCIe features are enabled, and what is attached at the RID and at each PASID.
 */
export class DeviceInfo {
  /** Name in the seed's drawings ("RID1"), or the PCI address. */
  label: string;
  /**
   * The driver bound to the device (`dev->driver->name`, e.g. `vfio-pci`), which its `dev_*` lines print
   * before its name; undefined until one binds, when they print the bus, `pci` (log.ts devPrefix).
   */
  driver: string | undefined;
  /** Scalable mode: the PASID directory and its size field. */
  pasidDir = 0;
  pdts = 0;
  /** PASID tables, by directory index (one 4 KiB table per 64 PASIDs, allocated on first use). */
  readonly pasidTables = new Map<number, number>();
  /** The IOMMU group's number (`group->id`), which `Adding to iommu group %d` prints at probe. */
  group = -1;
  /** Linux `info->ats_supported`: the device has ATS and the IOMMU device-TLBs (ECAP.DT). */
  atsSupported = false;
  /** Linux `info->ats_enabled`: ATS is on in the device (PCIe ATS Control Enable). */
  atsEnabled = false;
  /** Linux `info->pri_supported`: scalable mode, ATS supported, ECAP.PRS and a PRI capability. */
  priSupported = false;
  priEnabled = false;
  pasidEnabled = false;
  /** Linux `info->iopf_refcount`: attached domains that take page faults (IOPF enabled while > 0). */
  iopfEnabled = 0;
  /**
   * The domain the driver has at the RID (PASID 0 in scalable mode; Linux `info->domain`, or the blocking
   * or identity domain): undefined when a refused attach left the RID blocked with no domain.
   */
  ridDomain: Domain | undefined;
  /**
   * The domain the IOMMU core records for the device's group (`group->domain`): it changes only when an
   * attach succeeds, so after a refused attach it still names the old domain while the RID is blocked.
   */
  coreRidDomain: Domain | undefined;
  readonly pasidDomains = new Map<number, Domain>();
  defaultDomain: Domain | undefined;

  constructor(
    readonly endpoint: Endpoint,
    readonly iommu: IntelIommu,
  ) {
    this.label = endpoint.name;
  }

  /** The requester ID, unique only within the device's PCI segment. */
  get sid(): number {
    return this.endpoint.sid;
  }

  /** The PCI segment (the DRHD's segment number, the same as its IOMMU's). */
  get segment(): number {
    return this.endpoint.address.segment;
  }

  /** The device's identity across segments (pci.ts pciDeviceKey): what the kernel's device maps are keyed by. */
  get key(): number {
    return pciDeviceKey(this.segment, this.sid);
  }

  get name(): string {
    return this.endpoint.name;
  }

  /**
   * Linux `dev->iommu->max_pasids`: min(device PASID width, IOMMU PASID size); 0 without PASID. The IOMMU
   * offers PASIDs only in scalable mode with ECAP.PASID (`pasid_supported`), else its max_pasids is 0.
   */
  get maxPasids(): number {
    const dev = this.endpoint.maxPasids;
    const unit = this.iommu.scalable && this.iommu.unit.ecap.pasid ? 2 * 2 ** this.iommu.unit.ecap.pss : 0;
    return Math.min(dev, unit);
  }

  /** The domain a request with this PASID (or none) reaches. */
  domainAt(pasid: number | undefined): Domain | undefined {
    return pasid === undefined ? this.ridDomain : this.pasidDomains.get(pasid);
  }
}

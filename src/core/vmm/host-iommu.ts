import type { DeviceInfo } from '../driver/device';
import type { Domain, PageFault, PageResponseCode, VtdS1 } from '../driver/domain';

/**
 * What the VMM asks of the host's IOMMU stack for one VM, whichever interface it goes through. Two exist,
 * as in history:
 * - `bind` (kernel-bind.ts): the seed-era interface: VFIO maps guest RAM into a kernel domain, the host
 *   driver binds guest tables (`bind_gpasid`, `iommu_bind_pgtable_pasid`), guest first-level invalidations
 *   are passed down (seed 002, choice a or b), page requests reach the VMM through the driver's fault
 *   handler with the guest PASID as the bind's private data;
 * - `iommufd` (iommufd-host.ts): what Linux merged: an IOAS mapped from the VMM's memory, a nest-parent
 *   HWPT, nested HWPTs allocated with the guest's stage-1 data (`IOMMU_HWPT_DATA_VTD_S1`), vIOMMU and vDEVICE
 *   objects, `IOMMU_HWPT_INVALIDATE` with VT-d invalidation records, and page requests read from a fault
 *   queue and answered by cookie.
 * The VMM (viommu-vmm.ts) does the same thing over either; the step log says which path ran.
 *
 * A device's "stream" is its requests without PASID: the RID of an assigned function (`pasid` undefined),
 * or the (parent RID, PASID) that marks a mediated device.
 */
export interface HostIommu {
  readonly path: 'bind' | 'iommufd';

  /** The VM's guest-physical space on the host: a nest parent mapping all of guest RAM to its host pages. */
  gpaSpace(): Domain;
  /** Unmaps and frees the GPA space (teardown); the next `gpaSpace()` makes a new one. */
  releaseGpaSpace(): void;

  /** Puts a device's stream on `domain` (a GPA space, a shadow or a nested domain), replacing what it had. */
  attach(dev: DeviceInfo, pasid: number | undefined, domain: Domain): void;
  /** Takes the stream off whatever it has (the RID ends up blocked; a PASID absent). */
  detach(dev: DeviceInfo, pasid: number | undefined): void;

  /** A host domain to shadow a guest's IOVA space into, and its maps (VFIO MAP/UNMAP, or IOAS map/unmap). */
  allocShadow(dev: DeviceInfo, name: string, description: string): Domain;
  map(domain: Domain, iova: number, hpa: number, size: number, prot: { readonly read: boolean; readonly write: boolean }): void;
  unmap(domain: Domain, iova: number, size: number): void;
  freeShadow(domain: Domain): void;

  /**
   * Nested translation for (dev, pasid): the guest's first-level table at `s1.pgtblAddr` (a GPA) over the
   * GPA space. `pasid` undefined nests the RID. `guestRid` and `guestPasid` say what the guest calls them
   * (private data for the bind path, the vDEVICE's virt_id for iommufd). Page requests on the result go to
   * `onPageRequest` with a token that `pageResponse` takes back.
   */
  bindNested(dev: DeviceInfo, pasid: number | undefined, s1: VtdS1, o: NestedBindOptions): Domain;
  /** Undoes `bindNested`: the stream or PASID is detached and the nested domain freed. */
  unbindNested(dev: DeviceInfo, pasid: number | undefined, domain: Domain): void;

  /**
   * A guest first-level invalidation of a nested domain: `range` undefined is all of it (the guest's
   * PASID-selective flush), else 2^`am` pages at `addr` (page-selective), `leaf` from the guest's IH.
   */
  invalidateNested(domain: Domain, hostPasid: number, range: { readonly addr: number; readonly am: number; readonly leaf: boolean } | undefined, guestFields?: Readonly<Record<string, number>>): void;

  /**
   * A guest device-TLB invalidation for the physical device (`pasid`: the host PASID, or undefined without
   * PASID). The bind path sends it with the host's SID, PFSID and PASID; iommufd's HWPT_INVALIDATE already
   * flushed the device TLB with the nested domain's cache tags, so it has nothing more to do.
   */
  invalidateDeviceTlb(dev: DeviceInfo, pasid: number | undefined, guestFields: Readonly<Record<string, number>>): void;

  /** Delivers what the host queued for the VMM (iommufd's fault queue is read here); the bind path is synchronous. */
  poll?(): void;

  /** Answers a page request group the host delivered (by the token `onPageRequest` was given). */
  pageResponse(token: PageRequestToken, code: PageResponseCode): void;

  /** The host domain ID of a domain on the device's IOMMU (for forwarded raw descriptors and views). */
  didOf(domain: Domain, dev: DeviceInfo): number | undefined;
}

export interface NestedBindOptions {
  readonly guestRid: number;
  readonly guestPasid?: number;
  readonly onPageRequest?: (group: readonly PageFault[], token: PageRequestToken) => void;
}

/** What identifies a delivered page request group until it is answered: the host's own terms, or a cookie. */
export type PageRequestToken =
  | { readonly kind: 'group'; readonly device: DeviceInfo; readonly pasid: number | undefined; readonly prgIndex: number }
  | { readonly kind: 'cookie'; readonly cookie: number };

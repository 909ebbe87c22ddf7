import type { DeviceInfo } from '../driver/device';
import type { Domain, PageResponseCode, VtdS1 } from '../driver/domain';
import type { IommuKernel } from '../driver/kernel';
import type { Desc } from '../driver/qi';
import { DescType } from '../vtd/descriptors';
import type { HostIommu, NestedBindOptions, PageRequestToken } from './host-iommu';

/**
 * The seed-era host interface (HostIommu's `bind` path): VFIO maps guest RAM into a kernel paging domain that
 * is a nest parent; guest tables are bound with the driver's bind calls (`iommu_bind_pgtable_pasid`, seed
 * 001's API, with the guest PASID as the bind's private data as seed 000 step 5 wants); the host driver's
 * fault handler hands page requests to the VMM and is answered with `iommu_page_response`; guest first-level
 * invalidations are passed down as seed 002 proposed, raw (choice a: the guest's descriptor with the DID and
 * PASID replaced) or generic (choice b: a record the host driver re-assembles).
 */

export interface KernelBindOptions {
  readonly vm: string;
  /** Where guest RAM is on this host. */
  readonly ram: { readonly hostBase: number; readonly size: number };
  readonly propagation: 'raw' | 'generic';
}

/** Seed 002's generic invalidation record (`struct tlb_invalidate_info` with its Intel opaque part). */
export interface GenericInvalidation {
  readonly model: 'intel';
  readonly granularity: 'pasid' | 'page';
  readonly pasid: number;
  readonly addr: number;
  readonly size: number;
  readonly opaque: { readonly invType: number; readonly ih: boolean };
}

export class KernelBind implements HostIommu {
  readonly path = 'bind' as const;
  private gpa: Domain | undefined;

  constructor(
    private readonly kernel: IommuKernel,
    private readonly o: KernelBindOptions,
  ) {}

  gpaSpace(): Domain {
    if (this.gpa) return this.gpa;
    const k = this.kernel;
    const d = k.allocPagingDomain({ name: `${this.o.vm}-gpa`, description: `${this.o.vm} guest-physical memory (GPA to HPA)`, nestParent: true });
    k.map(d, 0, this.o.ram.hostBase, this.o.ram.size, { read: true, write: true });
    this.gpa = d;
    return d;
  }

  releaseGpaSpace(): void {
    const d = this.gpa;
    if (!d) return;
    this.gpa = undefined;
    this.kernel.unmap(d, 0, this.o.ram.size);
    this.kernel.freeDomain(d);
  }

  attach(dev: DeviceInfo, pasid: number | undefined, domain: Domain): void {
    const k = this.kernel;
    const note = `${this.o.vm}: ${domain.name}`;
    if (pasid === undefined) {
      if (dev.ridDomain !== domain) k.attachDevice(domain, dev, { note });
      return;
    }
    const now = dev.pasidDomains.get(pasid);
    if (now === domain) return;
    if (now) k.replaceDevicePasid(domain, dev, pasid, { note });
    else k.attachDevicePasid(domain, dev, pasid, { note });
  }

  detach(dev: DeviceInfo, pasid: number | undefined): void {
    if (pasid === undefined) this.kernel.detachDevice(dev);
    else if (dev.pasidDomains.has(pasid)) this.kernel.detachDevicePasid(dev, pasid);
  }

  allocShadow(dev: DeviceInfo, name: string, description: string): Domain {
    return this.kernel.allocPagingDomain({ name, description, device: dev });
  }

  map(domain: Domain, iova: number, hpa: number, size: number, prot: { readonly read: boolean; readonly write: boolean }): void {
    this.kernel.map(domain, iova, hpa, size, prot);
  }

  unmap(domain: Domain, iova: number, size: number): void {
    this.kernel.unmap(domain, iova, size);
  }

  freeShadow(domain: Domain): void {
    this.kernel.freeDomain(domain);
  }

  bindNested(dev: DeviceInfo, pasid: number | undefined, s1: VtdS1, o: NestedBindOptions): Domain {
    const k = this.kernel;
    const gpa = this.gpaSpace();
    const handler = o.onPageRequest;
    const iopf = handler
      ? (group: Parameters<NonNullable<Domain['iopfHandler']>>[0]) => {
          const f = group[0]!;
          handler(group, { kind: 'group', device: f.device, pasid: f.pasid, prgIndex: f.prgIndex });
          return 'deferred' as const;
        }
      : undefined;
    const privateData = { vm: this.o.vm, ...(o.guestPasid !== undefined ? { guestPasid: o.guestPasid } : {}) };
    if (pasid === undefined) {
      if (dev.ridDomain !== gpa) k.attachDevice(gpa, dev, { note: `${this.o.vm}: GPA` });
      const d = k.bindPgtable(gpa, dev, s1.pgtblAddr, { s1, privateData });
      if (iopf) d.iopfHandler = iopf;
      return d;
    }
    if (dev.pasidDomains.has(pasid)) k.detachDevicePasid(dev, pasid);
    return k.bindPgtablePasid(gpa, dev, s1.pgtblAddr, pasid, { s1, privateData, ...(iopf ? { iopfHandler: iopf } : {}) });
  }

  unbindNested(dev: DeviceInfo, pasid: number | undefined, domain: Domain): void {
    const k = this.kernel;
    if (pasid === undefined) k.attachDevice(this.gpaSpace(), dev, { note: `${this.o.vm}: GPA` });
    else k.detachDevicePasid(dev, pasid);
    k.freeDomain(domain);
  }

  invalidateNested(domain: Domain, hostPasid: number, range: { readonly addr: number; readonly am: number; readonly leaf: boolean } | undefined, raw?: Readonly<Record<string, number>>): void {
    for (const [iommu, { did }] of domain.dids) {
      const desc = this.o.propagation === 'raw' && raw ? rawForHost(raw, did, hostPasid) : reassemble(toGeneric(range, hostPasid), did);
      iommu.qi.submit([desc]);
    }
  }

  invalidateDeviceTlb(dev: DeviceInfo, pasid: number | undefined, guestFields: Readonly<Record<string, number>>): void {
    const sid = dev.sid;
    const qdep = dev.endpoint.caps.ats?.invalidateQueueDepth ?? 0;
    const common = { ...encoderFields(guestFields), SID: sid, PFSID_LO: sid & 0xf, PFSID_HI: sid >>> 4, QDEP: qdep >= 32 ? 0 : qdep };
    const desc: Desc = pasid === undefined ? { type: DescType.DEVICE_TLB, fields: common } : { type: DescType.PASID_DEVICE_TLB, fields: { ...common, PASID: pasid } };
    dev.iommu.qi.submit([desc]);
  }

  pageResponse(token: PageRequestToken, code: PageResponseCode): void {
    if (token.kind !== 'group') throw new Error('the bind path answers page requests by group, not by cookie');
    this.kernel.pageResponse(token.device, token.pasid, token.prgIndex, code);
  }

  didOf(domain: Domain, dev: DeviceInfo): number | undefined {
    return this.kernel.didOf(domain, dev.iommu);
  }
}

/** Choice a: the guest's descriptor as it is, with the fields only the host knows replaced. */
function rawForHost(f: Readonly<Record<string, number>>, hostDid: number, hostPasid: number): Desc {
  return { type: DescType.PASID_IOTLB, fields: { ...encoderFields(f), DID: hostDid, PASID: hostPasid } };
}

/** Decoded fields back into encoder input: a decoded ADDR is the field itself (bits 63:12), which the encoder takes as ADDR_PAGE. */
export function encoderFields(f: Readonly<Record<string, number>>): Record<string, number> {
  const { ADDR, ...rest } = f;
  return ADDR === undefined ? rest : { ...rest, ADDR_PAGE: ADDR };
}

/** Choice b, guest side: the invalidation as the generic record. */
export function toGeneric(range: { readonly addr: number; readonly am: number; readonly leaf: boolean } | undefined, hostPasid: number): GenericInvalidation {
  return range
    ? { model: 'intel', granularity: 'page', pasid: hostPasid, addr: range.addr, size: 4096 * 2 ** range.am, opaque: { invType: DescType.PASID_IOTLB, ih: range.leaf } }
    : { model: 'intel', granularity: 'pasid', pasid: hostPasid, addr: 0, size: 0, opaque: { invType: DescType.PASID_IOTLB, ih: false } };
}

/** Choice b, host side: the host driver re-assembles a descriptor from the record. */
export function reassemble(g: GenericInvalidation, hostDid: number): Desc {
  if (g.granularity === 'pasid') return { type: DescType.PASID_IOTLB, fields: { G: 2, DID: hostDid, PASID: g.pasid } };
  return { type: DescType.PASID_IOTLB, fields: { G: 3, DID: hostDid, PASID: g.pasid, ADDR: g.addr, AM: Math.log2(g.size / 4096), IH: g.opaque.ih ? 1 : 0 } };
}

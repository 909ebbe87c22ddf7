import { IoPageTable } from '../vtd/page-table';
import { pagingStructureCoherency } from './compat';
import type { DeviceInfo } from './device';
import { Domain, type Stage, type VtdS1 } from './domain';
import { fail, KernelError } from './errors';
import { FLPT_DEFAULT_DID, type IntelIommu } from './intel-iommu';
import { devPrefix } from './log';
import type { KernelState } from './state';

/** Paging and nested domains (domain_alloc_paging_flags, the VTD_S1 nested kind), their freeing, and domain IDs per IOMMU. */
export class DomainAlloc {
  constructor(private readonly k: KernelState) {}

  /**
   * A paging domain (`domain_alloc_paging_flags`). First stage is preferred; second stage when asked, or for
   * a nest parent or dirty tracking, or when a unit lacks first-stage support. `dirtyTracking` is
   * IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain gets dirty ops (tracking itself starts off).
   */
  allocPagingDomain(o: { name?: string; description?: string; stage?: Stage; nestParent?: boolean; dirtyTracking?: boolean; addressWidth?: 48 | 57; device?: string | number | DeviceInfo } = {}): Domain {
    // Linux allocates for a device and asks only that device's IOMMU; without one, every unit must agree.
    const iommus = o.device !== undefined ? [this.k.device(o.device).iommu] : this.k.iommus;
    const units = iommus.map((i) => i.unit);
    const allFirst = iommus.every((i) => i.scalable && i.unit.ecap.flts === 1);
    const stage: Stage = o.stage ?? (o.nestParent || o.dirtyTracking || !allFirst ? 'second' : 'first');
    // intel_iommu_domain_alloc_first_stage takes no flag but PASID: a nest parent or dirty tracking is second stage.
    if (stage === 'first' && (o.nestParent || o.dirtyTracking)) fail('EOPNOTSUPP', 'a first-stage domain can be neither a nest parent nor dirty-tracking (intel_iommu_domain_alloc_first_stage)');
    if (stage === 'first' && !allFirst) fail('EOPNOTSUPP', 'first-stage translation needs scalable mode and ECAP.FLTS on every unit');
    // intel_iommu_domain_alloc_second_stage: sm_supported() && !ECAP.SLTS, nested_supported(), ssads_supported().
    if (stage === 'second' && iommus.some((i) => i.scalable && !i.unit.ecap.slts)) fail('EOPNOTSUPP', 'a unit has no second-stage translation (ECAP.SLTS)');
    if (o.nestParent && iommus.some((i) => !(i.scalable && i.unit.ecap.nest))) fail('EOPNOTSUPP', 'nesting needs scalable mode and ECAP.NEST');
    if (o.dirtyTracking && iommus.some((i) => !(i.scalable && i.unit.ecap.slads))) fail('EOPNOTSUPP', 'dirty tracking needs scalable mode and ECAP.SLADS');
    const width = o.addressWidth ?? 48;
    if (width === 57 && (stage === 'first' ? units.some((u) => !u.cap.fl5lp) : units.some((u) => !((u.cap.sagaw >>> 3) & 1)))) fail('EOPNOTSUPP', '57-bit domains need 5-level paging on every unit');
    const i0 = iommus[0];
    const u0 = i0?.unit;
    // iommu_superpage_capability: first stage 2 MiB, and 1 GiB with CAP.FL1GP; second stage fls(CAP.SLLPS).
    const superpage = !u0 ? 2 : stage === 'first' ? (u0.cap.fl1gp ? 2 : 1) : 32 - Math.clz32(u0.cap.sllps);
    const pgsizes = [0x1000, 0x20_0000, 0x4000_0000].slice(0, 1 + Math.min(superpage, 2));
    const pageTable = new IoPageTable(this.k.machine.memory, {
      format: stage === 'first' ? 'first-level' : 'second-level',
      levels: width === 57 ? 5 : 4,
      large2M: superpage >= 1,
      large1G: superpage >= 2,
    });
    // iotlb_sync_map: first stage only for RWBF; second stage for RWBF or caching mode (shadowing VMMs).
    const iotlbSyncMap = iommus.some((i) => i.unit.cap.rwbf === 1 || (stage === 'second' && i.cachingMode));
    const coherent = i0 ? pagingStructureCoherency(i0) : true;
    const d = new Domain({ id: this.k.newDomainId(), type: 'paging', stage, nestParent: o.nestParent, dirtyOps: o.dirtyTracking, pageTable, addressWidth: width, name: o.name, description: o.description, pgsizes, iotlbSyncMap, coherent });
    this.k.domains.push(d);
    return d;
  }

  /** A nested domain: a user-managed first-level table (GPA) over a nest parent (`IOMMU_HWPT_DATA_VTD_S1`). */
  allocNestedDomain(parent: Domain, s1: VtdS1, o: { name?: string; description?: string } = {}): Domain {
    if (parent.type !== 'paging' || !parent.nestParent) fail('EINVAL', `${parent.name} is not a nest parent`);
    const d = new Domain({ id: this.k.newDomainId(), type: 'nested', parent, s1, addressWidth: s1.addrWidth, name: o.name, description: o.description });
    parent.children.push(d);
    this.k.domains.push(d);
    return d;
  }

  freeDomain(d: Domain): void {
    if (d.attachmentCount) fail('EBUSY', `${d.name} is still attached`);
    if (d.children.length) fail('EBUSY', `${d.name} still has nested domains`);
    if (d.parent) d.parent.children.splice(d.parent.children.indexOf(d), 1);
    d.pageTable?.destroy();
    d.freed = true;
    this.k.domains.splice(this.k.domains.indexOf(d), 1);
  }

  /**
   * domain_attach_iommu: the domain's DID on `iommu`, allocated on its first attachment there (IDA from 2;
   * "No free domain ids" when none is left), counted per attachment. Identity and SVA domains use DID 1.
   */
  takeDid(domain: Domain, iommu: IntelIommu): number {
    if (domain.type === 'identity' || domain.type === 'sva') return FLPT_DEFAULT_DID;
    const cur = domain.dids.get(iommu);
    if (cur) {
      cur.refs++;
      return cur.did;
    }
    let did: number;
    try {
      did = iommu.dids.alloc();
    } catch (e) {
      if (e instanceof KernelError) this.k.log.err(`DMAR: ${iommu.name}: No free domain ids`);
      throw e;
    }
    domain.dids.set(iommu, { did, refs: 1 });
    return did;
  }

  /** domain_detach_iommu: the DID goes back to the IDA with the last attachment on `iommu`. */
  releaseDid(domain: Domain, iommu: IntelIommu): void {
    if (domain.type === 'identity' || domain.type === 'sva') return;
    const cur = domain.dids.get(iommu);
    if (!cur) return;
    if (--cur.refs === 0) {
      iommu.dids.free(cur.did);
      domain.dids.delete(iommu);
    }
  }

  /** The DID `domain` has on `iommu`, if it is attached there. */
  didOf(domain: Domain, iommu: IntelIommu): number | undefined {
    return domain.type === 'identity' || domain.type === 'sva' ? FLPT_DEFAULT_DID : domain.dids.get(iommu)?.did;
  }

  /** domain_attach_iommu for a nested RID attach: "Failed to attach domain to iommu" when no DID is left. */
  takeDidLogged(domain: Domain, dev: DeviceInfo): number {
    try {
      return this.takeDid(domain, dev.iommu);
    } catch (e) {
      if (this.k.ratelimit('intel_nested_attach_dev#did')) this.k.log.err(`${devPrefix(dev)}Failed to attach domain to iommu`);
      throw e;
    }
  }
}

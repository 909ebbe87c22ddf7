import type { DeviceInfo } from './device';
import type { Domain } from './domain';
import { fail } from './errors';
import type { IntelIommu } from './intel-iommu';
import { devPrefix } from './log';
import type { KernelState } from './state';

/** iommu_paging_structure_coherency: page walks snoop (ECAP.SMPWC in scalable mode, ECAP.C in legacy mode). */
export function pagingStructureCoherency(iommu: IntelIommu): boolean {
  return (iommu.scalable ? iommu.unit.ecap.smpwc : iommu.unit.ecap.c) === 1;
}

/** Whether a domain may be attached to a device: paging_domain_compatible and the nested checks. */
export class Compat {
  constructor(private readonly k: KernelState) {}

  /**
   * paging_domain_compatible on this device's IOMMU; for a nested domain, the checks intel_nested_attach_dev
   * and intel_nested_set_dev_pasid make on its parent. A nested RID attach first compares address widths:
   * an IOMMU whose AGAW is below the parent's is ENODEV ("Adjusted guest address width not compatible");
   * then the parent must be compatible (EINVAL; the RID path prints "s2 domain is not compatible").
   */
  checkCompatible(domain: Domain, dev: DeviceInfo, rid: boolean): void {
    if (domain.type === 'nested') {
      const parent = domain.parent!;
      if (rid && dev.iommu.agaw < parent.pageTable!.levels - 2) {
        if (this.k.ratelimit('intel_nested_attach_dev#agaw')) this.k.log.err(`${devPrefix(dev)}Adjusted guest address width not compatible`);
        fail('ENODEV', `${dev.iommu.name}'s AGAW ${dev.iommu.agaw} is below the nest parent's ${parent.pageTable!.levels - 2} (${parent.addressWidth}-bit)`);
      }
      try {
        this.checkPagingCompatible(parent, dev);
      } catch (e) {
        if (rid && this.k.ratelimit('intel_nested_attach_dev#s2')) this.k.log.err(`${devPrefix(dev)}s2 domain is not compatible`);
        throw e;
      }
      return;
    }
    if (domain.type === 'paging') this.checkPagingCompatible(domain, dev);
  }

  /**
   * paging_domain_compatible (6.17): the stage's checks (support, the domain's page sizes against the unit's,
   * iotlb_sync_map where the unit needs map-time flushes), then snoop control, page-walk coherency and the
   * address width, all EINVAL and silent. A 5-level first-stage domain on a unit without CAP.FL5LP passes
   * here and is refused when its PASID entry is set up (intel_pasid_setup_first_level, with its line).
   */
  private checkPagingCompatible(domain: Domain, dev: DeviceInfo): void {
    const iommu = dev.iommu;
    const unit = iommu.unit;
    const levels = domain.pageTable!.levels;
    const has = (size: number) => domain.pgsizes.includes(size);
    if (domain.stage === 'first') {
      if (!(iommu.scalable && unit.ecap.flts)) fail('EINVAL', `${iommu.name} has no first-stage translation`);
      if (!unit.cap.fl1gp && has(0x4000_0000)) fail('EINVAL', `${iommu.name} has no 1 GiB first-stage pages (CAP.FL1GP) and ${domain.name} maps with them`);
      if (unit.cap.rwbf && !domain.iotlbSyncMap) fail('EINVAL', `${iommu.name} needs write-buffer flushes on map (CAP.RWBF) that ${domain.name} does not do`);
    } else {
      if (domain.dirtyOps && !(iommu.scalable && unit.ecap.slads)) fail('EINVAL', `${iommu.name} cannot track dirty pages (ECAP.SLADS is clear)`);
      if (domain.nestParent && !(iommu.scalable && unit.ecap.nest)) fail('EINVAL', `${iommu.name} cannot nest (ECAP.NEST is clear)`);
      if (iommu.scalable && !unit.ecap.slts) fail('EINVAL', `${iommu.name} has no second-stage translation`);
      if (!(unit.cap.sllps & 1) && has(0x20_0000)) fail('EINVAL', `${iommu.name} has no 2 MiB second-stage pages (CAP.SLLPS) and ${domain.name} maps with them`);
      if (!(unit.cap.sllps & 2) && has(0x4000_0000)) fail('EINVAL', `${iommu.name} has no 1 GiB second-stage pages (CAP.SLLPS) and ${domain.name} maps with them`);
      if ((unit.cap.rwbf || iommu.cachingMode) && !domain.iotlbSyncMap) fail('EINVAL', `${iommu.name} needs flushes on map (caching mode or CAP.RWBF) that ${domain.name} does not do`);
    }
    if (domain.forceSnooping && !unit.ecap.sc) fail('EINVAL', `${domain.name} enforces snooping and ${iommu.name} has no snoop control (ECAP.SC)`);
    if (domain.coherent !== pagingStructureCoherency(iommu)) fail('EINVAL', `${iommu.name}'s page-walk coherency differs from that of the unit ${domain.name} was allocated for`);
    // "check if this iommu agaw is sufficient for max mapped address"
    const width = Math.min(30 + 9 * iommu.agaw, unit.cap.mgaw + 1);
    if (domain.addressWidth > width || levels - 2 > iommu.agaw) fail('EINVAL', `${iommu.name} addresses ${width} bits (AGAW ${iommu.agaw}): too few for the ${domain.addressWidth}-bit ${domain.name}`);
    // The hardware walks only the levels SAGAW lists (Linux allocates at the IOMMU's own AGAW, so never meets this).
    if (domain.stage === 'second' && !((unit.cap.sagaw >>> (levels - 2)) & 1)) fail('EINVAL', `${iommu.name} cannot walk ${domain.addressWidth}-bit second-stage tables`);
  }

  /**
   * intel_pasid_setup_nested's checks of the user's S1 data, made when the entry is set up, each with its
   * ratelimited line: the address width (dev_err: "5-level paging not supported", "Invalid stage-1 address
   * width %d"), SRE without ECAP.SRS and EAFE without ECAP.EAFS (pr_err with the IOMMU's name).
   */
  checkNestedSetup(domain: Domain, dev: DeviceInfo): void {
    const iommu = dev.iommu;
    const unit = iommu.unit;
    const s1 = domain.s1!;
    const refuse = (site: string, line: string, why: string): never => {
      if (this.k.ratelimit(`intel_pasid_setup_nested#${site}`)) this.k.log.err(line);
      return fail('EINVAL', why);
    };
    if (s1.addrWidth === 57 && !unit.cap.fl5lp) refuse('5level', `${devPrefix(dev)}5-level paging not supported`, `${iommu.name} has no 5-level first-stage paging for a 57-bit stage 1`);
    if (s1.addrWidth !== 48 && s1.addrWidth !== 57) refuse('width', `${devPrefix(dev)}Invalid stage-1 address width ${s1.addrWidth}`, `nested address width ${s1.addrWidth} is not supported`);
    if (s1.sre && !unit.ecap.srs) refuse('sre', `DMAR: No supervisor request support on ${iommu.name}`, 'SRE requested but ECAP.SRS is clear');
    if (s1.eafe && !unit.ecap.eafs) refuse('eafe', `DMAR: No extended access flag support on ${iommu.name}`, 'EAFE requested but ECAP.EAFS is clear');
  }
}

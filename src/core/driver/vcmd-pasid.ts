import { U64 } from '../u64';
import type { VtdUnit } from '../vtd/unit';
import { VCCAP_PAS, VCMD_CMD_ALLOC, VCMD_CMD_FREE, VCMD_LAYOUT_VTD_3_1, VCMD_LAYOUT_VTD_3_3, VCRSP_IP, type VcmdLayout } from '../vtd/vcmd-registers';
import { fail } from './errors';
import type { KernelLog, KernelVersion } from './log';
import { compareVersions } from './log';

/**
 * A guest's PASIDs from its VMM (register_pasid_allocator in intel/iommu.c): under a vIOMMU with caching mode,
 * scalable mode, ECAP.VCS and VCCAP.PAS, Linux registers a custom IOASID allocator whose alloc and free are
 * the virtual commands ALLOC_PASID and FREE_PASID (vcmd_alloc_pasid, vcmd_free_pasid in pasid.c): write
 * VCMD, poll VCRSP until IP clears, read the status and the PASID. From 24f27d32ab6b ("iommu/vt-d:
 * Enlightened PASID allocation", with the custom allocator of 3375303e8287, 5.5 [version from the merge
 * window, unverified]) until 760f41d182ec ("iommu/vt-d: Remove virtual command interface", 6.4). The register
 * layout changed with 4d99efb229e6 ("iommu/vt-d: Update the virtual command related registers", 5.15).
 */
export const VCMD_ALLOCATOR = { since: '5.5', until: '6.4', newLayout: '5.15' } as const satisfies Record<string, KernelVersion>;

/** The custom allocator the IOASID core calls instead of its own (ioasid_register_allocator). */
export interface CustomPasidAllocator {
  readonly name: string;
  alloc(): number;
  free(pasid: number): void;
}

/** How many VCRSP reads the model makes before it gives up (Linux's IOMMU_WAIT_OP panics after a timeout). */
const POLLS = 1000;

export function vcmdLayoutFor(version: KernelVersion): VcmdLayout {
  return compareVersions(version, VCMD_ALLOCATOR.newLayout) >= 0 ? VCMD_LAYOUT_VTD_3_3 : VCMD_LAYOUT_VTD_3_1;
}

/**
 * register_pasid_allocator for one unit: returns the allocator when this kernel and this unit have one, and
 * prints what Linux prints (pr_fmt "DMAR: " in iommu.c and pasid.c, then pasid.c's own "IOMMU: %s: ").
 */
export function registerPasidAllocator(unit: VtdUnit, scalable: boolean, version: KernelVersion, log: KernelLog): CustomPasidAllocator | undefined {
  if (compareVersions(version, VCMD_ALLOCATOR.since) < 0 || compareVersions(version, VCMD_ALLOCATOR.until) >= 0) return undefined;
  // If we are running in the host, no need for a custom allocator: PASIDs are allocated system-wide.
  if (unit.cap.cm !== 1) return undefined;
  if (!scalable) {
    log.warn('DMAR: VT-d Scalable Mode not enabled, no PASID allocation');
    return undefined;
  }
  const layout = vcmdLayoutFor(version);
  // iommu->vccap is read only when ECAP.VCS says the registers exist.
  const vccap = unit.ecap.vcs === 1 ? unit.readRegister(layout.vccap).lo : 0;
  if ((vccap & VCCAP_PAS) === 0) return undefined;
  log.info('DMAR: Register custom PASID allocator');
  const command = (value: U64): U64 => {
    unit.writeRegister(layout.vcmd, value);
    for (let i = 0; i < POLLS; i++) {
      const r = unit.readRegister(layout.vcrsp);
      if ((r.lo & VCRSP_IP) === 0) return r;
    }
    return fail('ENODEV', `${unit.name}: VCRSP still in progress after ${POLLS} reads`);
  };
  const status = (r: U64) => r.field(layout.scMsb, 1);
  return {
    name: `${unit.name} virtual command`,
    alloc(): number {
      const r = command(new U64(0, VCMD_CMD_ALLOC));
      const sc = status(r);
      if (sc === 0) return r.field(layout.resultLsb + 19, layout.resultLsb);
      if (sc === layout.noPasidAvailable) {
        log.info(`DMAR: IOMMU: ${unit.name}: No PASID available`);
        return fail('ENOSPC', `${unit.name}: the VMM has no PASID available`);
      }
      log.warn(`DMAR: IOMMU: ${unit.name}: Unexpected error code ${sc}`);
      return fail('ENODEV', `${unit.name}: virtual command status ${sc}`);
    },
    free(pasid: number): void {
      // VCMD_CMD_OPERAND(pasid) | VCMD_CMD_FREE: the operand sits at the layout's operand bits.
      const value = U64.fromNumber(pasid * 2 ** layout.operandLsb + VCMD_CMD_FREE);
      const sc = status(command(value));
      if (sc === layout.invalidPasid) log.info(`DMAR: IOMMU: ${unit.name}: Invalid PASID`);
      else if (sc !== 0) log.warn(`DMAR: IOMMU: ${unit.name}: Unexpected error code ${sc}`);
    },
  };
}

import { decodeCap, decodeEcap, domainCount, faultRecordingCount, maxGuestAddressWidth, pasidCount, supportedAgaws } from '../core/vtd/cap';
import { U64 } from '../core/u64';
import { hexWord, normalizeHex } from './hex';
import type { LogEvent } from './log-event';
import type { LineInfo } from './log-reader';
import { base } from './vtd-line';

// The driver's boot lines: each unit's capabilities (the one event among them), and the messages that are
// understood but are not events.

/** `dmar0: reg_base_addr ...` from 4.2; `IOMMU 0: reg_base_addr ...` before (the unit's sequence number). */
export const CAPABILITY = /^(?:IOMMU (\d{1,3})|(\S{1,32})): reg_base_addr ([0-9a-fA-F]{1,16}) ver (\d{1,3}):(\d{1,3}) cap ([0-9a-fA-F]{1,16}) ecap ([0-9a-fA-F]{1,16})/;

/** Boot and status messages of the VT-d driver (after its `DMAR: `/`dmar: `/`DMAR-IR: ` prefix) that are understood but are not events. */
export const INFORMATIONAL =
  /^(?:Host address width|DRHD base:|RMRR base:|ATSR flags:|SATC flags:|RHSA base:|ANDD device:|IOAPIC id|HPET id|Enabled IRQ remapping|Queued invalidation will be enabled|Intel\(R\) Virtualization Technology|IOMMU feature|No ATSR found|No SATC found|No RMRR found|Scalable mode is disallowed|Enable scalable mode if hardware supports|Setting RMRR|Setting identity map|Prepare 0-16MiB unity mapping|Using Queued invalidation|Using Register based invalidation|dmar\d+: Using|Interrupt remapping enabled|x2apic|IOMMU enabled|IOMMU batching|Disabling|Translation was enabled|Copied translation tables|Platform supports|dmar\d+: PASID|Firmware has requested|Device is ineligible|Forcing|DMAR-IR: |Not attempting|Failed to|Allocating|Intel-IOMMU force enabled|Skip IOMMU|Unknown DMAR structure|Parse DMAR table failure|DRHD: )/;

/**
 * IOMMU lines without the driver's prefix. Each carries a marker of log-markers.ts (`DMAR`, `IOMMU`,
 * `iommu`), so that the CLI, which decodes only lines with a marker, counts them as this reader does.
 * - ACPI's table list and reservation (`ACPI: DMAR 0x000000003FFE232E 000080 (v01 BOCHS  BXPC ...)`,
 *   `ACPI: Reserving DMAR table memory at [mem ...]`);
 * - kernels before 4.2, whose intel-iommu.c and interrupt-remapping code had no `pr_fmt`
 *   (`Intel-IOMMU: enabled`, `IOMMU: Setting RMRR:`, `IOMMU 0 0xfed90000: using Queued invalidation`,
 *   `IOAPIC id 8 under DRHD base  0xfed91000 IOMMU 1`);
 * - the IOMMU core (drivers/iommu/iommu.c, `pr_fmt` `iommu: `): `iommu: Default domain type: ...`,
 *   `iommu: DMA domain TLB invalidation policy: ...`, `<driver> <dev>: Adding to iommu group %d`,
 *   `Removing from iommu group %d`; no other reader sees them, and they tell how DMA was set up;
 * - the kernel command line when it sets IOMMU parameters (`intel_iommu=on,sm_off iommu.strict=1`);
 * - the two lines of the CONFIG_IOMMU_DEBUGFS banner (drivers/iommu/iommu-debugfs.c, the same in 5.10,
 *   6.1 and 6.12) that name the IOMMU; its other lines (stars, NOTICE) carry no marker and look like
 *   other subsystems' banners, so they stay ordinary unrecognised lines.
 */
export const INFORMATIONAL_OTHER =
  /^(?:ACPI: DMAR 0x[0-9A-Fa-f]{8,16} [0-9A-Fa-f]{6} \(v\d{2} |ACPI: Reserving DMAR table memory at |Intel-IOMMU: |IOMMU: (?:Setting RMRR|Setting identity map|Prepare 0-16MiB unity mapping)|IOMMU \d{1,3} 0x[0-9a-f]{1,16}: using (?:Queued|Register based) invalidation|IOAPIC id \d{1,3} under DRHD base .*IOMMU \d|iommu: (?:Default domain type: |DMA domain TLB invalidation policy: )|\S{1,64} [0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]: (?:Adding to|Removing from) iommu group \d{1,6}$|(?:Kernel )?[Cc]ommand line: .*\b(?:intel_iommu|amd_iommu|iommu)[=.]|\*\*  IOMMU DebugFS SUPPORT HAS BEEN ENABLED IN THIS KERNEL  \*\*$|\*\* IOMMU data structures, which may compromise security on \*\*$)/;

export function capabilityEvent(m: RegExpExecArray, info: LineInfo): LogEvent {
  const e = base(info, 'capability', 'vtd-cap');
  // Kernels before 4.2 print `IOMMU <seq>:`; the unit's name was already `dmar<seq>` (dmar_alloc_seq_id).
  e.iommu = m[1] !== undefined ? `dmar${m[1]}` : m[2]!;
  const capWord = hexWord(m[6]!) ?? U64.ZERO;
  const ecapWord = hexWord(m[7]!) ?? U64.ZERO;
  const cap = decodeCap(capWord);
  const ecap = decodeEcap(ecapWord);
  const { otherBits: capOther, ...capFields } = cap;
  const { otherBits: ecapOther, ...ecapFields } = ecap;
  e.details = {
    registerBase: normalizeHex(m[3]!),
    version: `${m[4]}:${m[5]}`,
    cap: capWord.toString(),
    ecap: ecapWord.toString(),
    capFields,
    ecapFields,
    ...(capOther.isZero() ? {} : { capOtherBits: capOther.toString() }),
    ...(ecapOther.isZero() ? {} : { ecapOtherBits: ecapOther.toString() }),
    summary: {
      scalableMode: ecap.smts === 1,
      firstLevel: ecap.flts === 1,
      secondLevel: ecap.slts === 1,
      nested: ecap.nest === 1,
      passThrough: ecap.pt === 1,
      queuedInvalidation: ecap.qi === 1,
      deviceTlb: ecap.dt === 1,
      interruptRemapping: ecap.ir === 1,
      pageRequests: ecap.prs === 1,
      cachingMode: cap.cm === 1,
      pasidBits: ecap.pasid ? ecap.pss + 1 : 0,
      pasids: pasidCount(ecap),
      domains: domainCount(cap),
      maxGuestAddressWidth: maxGuestAddressWidth(cap),
      secondLevelWidths: supportedAgaws(cap),
      faultRecordingRegisters: faultRecordingCount(cap),
    },
  };
  return e;
}

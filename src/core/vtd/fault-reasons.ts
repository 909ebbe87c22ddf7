/**
 * VT-d fault reasons: the code the hardware records in FRCD.FR, the string Linux prints for it
 * (`dmar_get_fault_reason`, drivers/iommu/intel/dmar.c, formerly drivers/iommu/dmar.c), whether FPD can
 * suppress it ("qualified", as QEMU's `vtd_qualified_faults` and the spec define it), and a plain-words
 * explanation for people reading logs. test/fixtures/kernel/ holds the kernel's tables the texts are tested
 * against.
 */

export type FaultType = 'dma' | 'interrupt-remap' | 'unknown';

export interface FaultReason {
  readonly code: number;
  /** Exactly what Linux prints after `[fault reason 0x%02x] `; "Unknown" for codes Linux has no string for. */
  readonly text: string;
  readonly type: FaultType;
  /** QEMU's VTD_FR_* name, where QEMU models the condition. */
  readonly qemu?: string;
  /**
   * Whether a set FPD bit suppresses recording: the context, PASID-directory or PASID entry's on a DMA walk,
   * the interrupt-remapping entry's for an interrupt (0x22, 0x24, 0x26; even a not-present entry's FPD counts).
   */
  readonly qualified: boolean;
  /** What went wrong, in plain words. */
  readonly meaning: string;
  /** What to look at next. */
  readonly check: string;
}

type Row = [code: number, text: string, qualified: boolean, meaning: string, check: string, qemu?: string];

const LEGACY: Row[] = [
  [0x00, 'Software', false, 'A fault with reason 0 (reserved; software-injected).', 'Treat it as a driver or firmware bug report.'],
  [0x01, 'Present bit in root entry is clear', false, 'The root table has no entry for this bus: no device on it was ever set up for translation.', 'Check that the driver attached the device (iommu_attach / probe order), and that the bus number in the fault is the one you expect.', 'VTD_FR_ROOT_ENTRY_P'],
  [0x02, 'Present bit in context entry is clear', true, 'The bus has a context table but no entry for this device/function: it is not attached to any domain.', 'Check that the device (this exact devfn, including its DMA alias) is attached; look for detach or release racing with DMA.', 'VTD_FR_CONTEXT_ENTRY_P'],
  [0x03, 'Invalid context entry', true, 'The context entry has an invalid translation type or address width.', 'Compare the context entry AW with CAP.SAGAW and its TT with what ECAP supports (pass-through needs ECAP.PT).', 'VTD_FR_CONTEXT_ENTRY_INV'],
  [0x04, 'Access beyond MGAW', true, 'The DMA address is above the address width the IOMMU translates.', 'Check the device\'s DMA mask against the domain aperture (CAP.MGAW); a truncated or sign-extended address is a common cause.', 'VTD_FR_ADDR_BEYOND_MGAW'],
  // Legacy walks (and QEMU's) give 0x05/0x06 for an entry without the permission whether or not it is present (see walk.ts): an unmapped address too.
  [0x05, 'PTE Write access is not set', true, 'No entry on the walk allowed the write: either nothing is mapped there or the page is mapped without write permission (legacy VT-d gives this reason for both).', 'Check that the IOVA was mapped in this device\'s domain and not already unmapped (use-after-unmap); if it was mapped, check the direction it was mapped with (a DMA_TO_DEVICE mapping is read-only for the device).', 'VTD_FR_WRITE'],
  [0x06, 'PTE Read access is not set', true, 'No entry on the walk allowed the read: either nothing is mapped there or the page is mapped without read permission (legacy VT-d gives this reason for both).', 'Check that the IOVA was mapped in this device\'s domain and not already unmapped (use-after-unmap), and that the device uses the IOVA, not a physical address; if it was mapped, check the direction it was mapped with (a DMA_FROM_DEVICE mapping is write-only for the device).', 'VTD_FR_READ'],
  [0x07, 'Next page table ptr is invalid', true, 'A page-table entry points at memory the IOMMU cannot read as the next-level table.', 'Look for a corrupted or freed page-table page (use-after-free of a table, missing flush after table reuse).', 'VTD_FR_PAGING_ENTRY_INV'],
  [0x08, 'Root table address invalid', false, 'RTADDR points at memory the IOMMU cannot read.', 'Check RTADDR in iommu_regset and that the root table was not freed (kexec/kdump hand-over).', 'VTD_FR_ROOT_TABLE_INV'],
  [0x09, 'Context table ptr is invalid', false, 'The root entry points at an unreadable context table.', 'Check the root entry in dmar_translation_struct.', 'VTD_FR_CONTEXT_TABLE_INV'],
  [0x0a, 'non-zero reserved fields in RTP', false, 'The root entry has reserved bits set.', 'Dump the root entry; a scalable-mode table used with legacy RTADDR.TTM (or the reverse) looks like this.', 'VTD_FR_ROOT_ENTRY_RSVD'],
  [0x0b, 'non-zero reserved fields in CTP', true, 'The context entry has reserved bits set.', 'Dump the context entry; check the table format matches RTADDR.TTM.', 'VTD_FR_CONTEXT_ENTRY_RSVD'],
  [0x0c, 'non-zero reserved fields in PTE', true, 'A page-table entry has reserved bits set (for example a large-page bit where large pages are not supported).', 'Check the PTE against CAP.SLLPS and the address width; look for corruption of the table page.', 'VTD_FR_PAGING_ENTRY_RSVD'],
  [0x0d, 'PCE for translation request specifies blocking', true, 'An ATS translation request or a translated request arrived, but the context entry does not allow device-TLB use.', 'Check that ATS is enabled both on the device and in the context entry (TT = 01).', 'VTD_FR_CONTEXT_ENTRY_TT'],
];

const INTERRUPT: Row[] = [
  [0x20, 'Detected reserved fields in the decoded interrupt-remapped request', false, 'An interrupt request in remappable format had reserved bits set.', 'Check the MSI address/data the device was programmed with.', 'VTD_FR_IR_REQ_RSVD'],
  [0x21, 'Interrupt index exceeded the interrupt-remapping table size', false, 'The interrupt index is beyond the IR table.', 'Check IRTA.S and the index the device uses; the MSI was probably programmed before IR was set up.', 'VTD_FR_IR_INDEX_OVER'],
  [0x22, 'Present field in the IRTE entry is clear', true, 'The interrupt-remapping entry used by this interrupt is not present.', 'Check that the IRQ is still allocated; an interrupt after free_irq or during teardown looks like this.', 'VTD_FR_IR_ENTRY_P'],
  [0x23, 'Error accessing interrupt-remapping table pointed by IRTA_REG', false, 'The IR table address is unreadable.', 'Check IRTA in iommu_regset.', 'VTD_FR_IR_ROOT_INVAL'],
  [0x24, 'Detected reserved fields in the IRTE entry', true, 'The IRTE has reserved bits set.', 'Dump the entry in ir_translation_struct.', 'VTD_FR_IR_IRTE_RSVD'],
  [0x25, 'Blocked a compatibility format interrupt request', false, 'A compatibility-format (non-remapped) interrupt was blocked because remapping is enforced.', 'The device or firmware programmed a plain MSI; check for a driver that bypasses the IRQ domain, or intremap=nocfi expectations.', 'VTD_FR_IR_REQ_COMPAT'],
  [0x26, 'Blocked an interrupt request due to source-id verification failure', true, 'The interrupt came from a requester ID that the IRTE does not allow.', 'Check the IRTE SID/SQ/SVT fields against the device\'s RID and its DMA aliases (bridges).', 'VTD_FR_IR_SID_ERR'],
];

const SCALABLE: Row[] = [
  [0x30, 'SM: Invalid Root Table Address', false, 'RTADDR is invalid for scalable mode.', 'Check RTADDR and RTADDR.TTM in iommu_regset.'],
  [0x31, 'SM: TTM 0 for request with PASID', false, 'A request with PASID arrived while the IOMMU is in legacy mode (RTADDR.TTM = 0).', 'Scalable mode is off (ECAP.SMTS or intel_iommu=sm_on); PASID DMA cannot work in legacy mode.', 'VTD_FR_RTADDR_INV_TTM'],
  [0x32, 'SM: TTM 0 for page group request', false, 'A page request arrived in legacy mode.', 'Enable scalable mode to use PRI.'],
  [0x38, 'SM: Error attempting to access Root Entry', false, 'The root entry could not be read.', 'Check RTADDR and the root table page.'],
  [0x39, 'SM: Present bit in Root Entry is clear', false, 'No scalable-mode root entry half for this devfn range: nothing on this bus (or this half of it) was set up.', 'Check that the device was attached; devfn 0x80 and above use the upper half of the root entry.'],
  [0x3a, 'SM: Non-zero reserved field set in Root Entry', false, 'The scalable-mode root entry has reserved bits set.', 'Dump the root entry (hi:lo) from dmar_translation_struct.'],
  [0x40, 'SM: Error attempting to access Context Entry', false, 'The context entry could not be read.', 'Check the root entry\'s context-table pointer.'],
  [0x41, 'SM: Present bit in Context Entry is clear', true, 'The device has no scalable-mode context entry: it is not attached to any domain.', 'Check that the device (this devfn and its DMA aliases) is attached and that no detach raced with DMA.'],
  [0x42, 'SM: Non-zero reserved field set in the Context Entry', true, 'The scalable-mode context entry has reserved bits set.', 'Dump the context entry; a legacy-format entry in a scalable-mode table looks like this.'],
  [0x43, 'SM: Invalid Context Entry', true, 'The scalable-mode context entry is invalid (for example a PASID directory size the IOMMU cannot use).', 'Check PDTS and the PASID directory pointer.'],
  [0x44, 'SM: DTE field in Context Entry is clear', true, 'An ATS translation request or a translated request arrived, but device-TLB use is not enabled for this device.', 'Check that ATS is enabled in the context entry (DTE) as well as on the device.'],
  [0x45, 'SM: PASID Enable field in Context Entry is clear', true, 'A request with PASID arrived but PASID use is not enabled for this device.', 'Check that the driver enabled PASID (iommu_dev_enable_feature / PASID attach) before the device used one.'],
  [0x46, 'SM: PASID is larger than the max in Context Entry', true, 'The PASID is beyond the PASID directory size in the context entry.', 'Compare the PASID with the directory size (PDTS) and the device\'s Max PASID Width.'],
  [0x47, 'SM: PRE field in Context-Entry is clear', true, 'A page request arrived but page requests are not enabled for this device.', 'Check that PRI is enabled for the device (IOPF enabled on attach of an SVA or fault-capable domain).', 'VTD_FR_SM_PRE_ABS'],
  [0x48, 'SM: RID_PASID field error in Context-Entry', true, 'The context entry\'s RID_PASID is invalid.', 'Check the RID_PASID field (Linux uses 0).'],
  [0x50, 'SM: Error attempting to access the PASID Directory Entry', false, 'The PASID directory entry could not be read.', 'Check the context entry\'s PASID directory pointer.', 'VTD_FR_PASID_DIR_ACCESS_ERR'],
  [0x51, 'SM: Present bit in Directory Entry is clear', true, 'No PASID table exists for this range of 64 PASIDs: the PASID was never set up on this device.', 'Check which PASID the device used and whether it was attached (iommu_attach_device_pasid / SVA bind) on this device.', 'VTD_FR_PASID_DIR_ENTRY_P'],
  [0x52, 'SM: Non-zero reserved field set in PASID Directory Entry', true, 'The PASID directory entry has reserved bits set.', 'Dump the PASID directory entry.'],
  [0x58, 'SM: Error attempting to access PASID Table Entry', false, 'The PASID table entry could not be read.', 'Check the PASID directory entry\'s table pointer.', 'VTD_FR_PASID_TABLE_ACCESS_ERR'],
  [0x59, 'SM: Present bit in PASID Table Entry is clear', true, 'The PASID is not set up on this device (or was torn down).', 'Check the PASID the device used against the attached PASIDs; look for DMA after unbind or before attach.', 'VTD_FR_PASID_ENTRY_P'],
  [0x5a, 'SM: Non-zero reserved field set in PASID Table Entry', true, 'The PASID table entry has reserved bits set.', 'Dump the 8 qwords of the PASID entry (DMAR debug dump).'],
  [0x5b, 'SM: Invalid Scalable-Mode PASID Table Entry', true, 'The PASID entry is invalid: a reserved PGTT, or an address width or paging mode the IOMMU does not support.', 'Check PGTT against ECAP (FLTS/SLTS/NEST/PT), AW against SAGAW and FLPM against CAP.FL5LP.', 'VTD_FR_PASID_TABLE_ENTRY_INV'],
  [0x5c, 'SM: ERE field is clear in PASID Table Entry', true, 'An execute request arrived but execute requests are not enabled for this PASID.', 'Check the ERE bit and whether the device should be issuing execute requests.'],
  [0x5d, 'SM: SRE field is clear in PASID Table Entry', true, 'A supervisor (privileged) request arrived but supervisor requests are not enabled for this PASID.', 'Check SRE: user-mode SVA does not allow privileged requests.'],
  [0x70, 'SM: Error attempting to access first-level paging entry', true, 'A first-level page-table entry could not be read.', 'Check FLPTPTR and the next-level pointers of the first-level table.', 'VTD_FR_FS_PAGING_ENTRY_INV'],
  [0x71, 'SM: Present bit in first-level paging entry is clear', true, 'The first-level (CPU-format) page table has no mapping for this address.', 'For SVA this usually means the page is not faulted in and the device does not use PRI; for a DMA domain, the IOVA is not mapped.', 'VTD_FR_FS_PAGING_ENTRY_P'],
  [0x72, 'SM: Non-zero reserved field set in first-level paging entry', true, 'A first-level entry has reserved bits set.', 'Check large-page bits against CAP.FL1GP and the address width.', 'VTD_FR_FS_PAGING_ENTRY_RSVD'],
  [0x73, 'SM: Error attempting to access FL-PML4 entry', true, 'The first-level root table (FLPTPTR) could not be read.', 'Check FLPTPTR in the PASID entry; for nested translation it is a guest-physical address.', 'VTD_FR_PASID_ENTRY_FSPTPTR_INV'],
  [0x74, 'SM: First-level entry address beyond MGAW in Nested translation', true, 'In nested translation a first-level table pointer (a GPA) is beyond the second-level address width.', 'Check the guest page table pointers against the nest parent\'s aperture.'],
  [0x75, 'SM: Read permission error in FL-PML4 entry in Nested translation', true, 'In nested translation the guest\'s first-level root table is not readable through the second-level table.', 'Check that the guest page-table pages are mapped in the nest parent (GPA to HPA).'],
  [0x76, 'SM: Read permission error in first-level paging entry in Nested translation', true, 'In nested translation a guest page-table page is not readable through the second-level table.', 'Check that every guest page-table page is mapped in the nest parent.'],
  [0x77, 'SM: Write permission error in first-level paging entry in Nested translation', true, 'In nested translation the IOMMU could not set an accessed/dirty bit in a guest page-table page: it is read-only in the second-level table.', 'Map guest page-table pages writable in the nest parent.'],
  [0x78, 'SM: Error attempting to access second-level paging entry', true, 'A second-level page-table entry could not be read.', 'Check SLPTPTR and the next-level pointers of the second-level table.'],
  [0x79, 'SM: Read/Write permission error in second-level paging entry', true, 'The second-level table has no mapping with the needed permission for this address.', 'Check that the IOVA or GPA is mapped in the (parent) domain with the right permission.'],
  [0x7a, 'SM: Non-zero reserved field set in second-level paging entry', true, 'A second-level entry has reserved bits set.', 'Check large-page bits against CAP.SLLPS and the address width.'],
  [0x7b, 'SM: Invalid second-level page table pointer', true, 'SLPTPTR or a second-level next-level pointer is invalid.', 'Check SLPTPTR in the PASID entry.'],
  [0x7c, 'SM: A/D bit update needed in second-level entry when set up in no snoop', true, 'The IOMMU needed to set an A/D bit in a second-level entry with snooping off.', 'Check SSADE and the page-walk snoop settings.'],
  [0x80, 'SM: Address in first-level translation is not canonical', true, 'The address is not canonical for first-level (CPU-format) translation.', 'Check the upper address bits: they must copy bit 47 (bit 56 with 5-level paging).', 'VTD_FR_FS_NON_CANONICAL'],
  [0x81, 'SM: U/S set 0 for first-level translation with user privilege', true, 'A user-mode request hit a supervisor-only page.', 'The device used a kernel address with a user PASID (SVA), or the mapping lacks the user bit.', 'VTD_FR_FS_PAGING_ENTRY_US'],
  [0x82, 'SM: No execute permission for request with PASID and ER=1', true, 'An execute request hit a page without execute permission.', 'Check XD in the first-level entry and NXE in the PASID entry.'],
  [0x83, 'SM: Address beyond the DMA hardware max', true, 'The address is beyond what this IOMMU can translate.', 'Check the device\'s DMA mask and the domain width.'],
  [0x84, 'SM: Second-level entry address beyond the max', true, 'A second-level entry points beyond the host address width.', 'Check the second-level table for corrupted addresses.'],
  [0x85, 'SM: No write permission for Write/AtomicOp request', true, 'A write hit a read-only mapping.', 'Check the mapping\'s write permission (R/W bit, WPE for supervisor requests).', 'VTD_FR_SM_WRITE'],
  [0x86, 'SM: No read permission for Read/AtomicOp request', true, 'A read hit a mapping without read permission.', 'Check the mapping\'s read permission.'],
  [0x87, 'SM: Invalid address-interrupt address', true, 'The translated address falls in the interrupt range 0xfee00000-0xfeefffff.', 'A DMA buffer mapped over the MSI window; check the IOVA allocator\'s reserved regions.', 'VTD_FR_SM_INTERRUPT_ADDR'],
  [0x90, 'SM: A/D bit update needed in first-level entry when set up in no snoop', true, 'The IOMMU needed to set an A/D bit in a first-level entry with snooping off.', 'Check page-walk snoop (PWSNP) in the PASID entry.'],
];

const CATALOGUE = new Map<number, FaultReason>();
for (const [rows, type] of [[LEGACY, 'dma'], [INTERRUPT, 'interrupt-remap'], [SCALABLE, 'dma']] as const) {
  for (const [code, text, qualified, meaning, check, qemu] of rows) {
    CATALOGUE.set(code, { code, text, type, qualified, meaning, check, ...(qemu ? { qemu } : {}) });
  }
}

/** QEMU's own code for a failed first-level A/D update; beyond Linux's table, so Linux prints "Unknown". */
export const FR_FS_BIT_UPDATE_FAILED = 0x91;
CATALOGUE.set(FR_FS_BIT_UPDATE_FAILED, {
  code: FR_FS_BIT_UPDATE_FAILED,
  text: 'Unknown',
  type: 'unknown',
  qualified: true,
  qemu: 'VTD_FR_FS_BIT_UPDATE_FAILED',
  meaning: 'The IOMMU could not set an accessed or dirty bit in a first-level entry (QEMU\'s code; the spec\'s SFS.10).',
  check: 'Check that the first-level table page is writable and coherent.',
});
/** Legacy: output address in the interrupt range (spec LGN.4); Linux has no string for it. */
export const FR_INTERRUPT_ADDR = 0x0e;
CATALOGUE.set(FR_INTERRUPT_ADDR, {
  code: FR_INTERRUPT_ADDR,
  text: 'Unknown',
  type: 'unknown',
  qualified: true,
  qemu: 'VTD_FR_INTERRUPT_ADDR',
  meaning: 'The translated address falls in the interrupt range 0xfee00000-0xfeefffff.',
  check: 'A DMA buffer mapped over the MSI window; check the IOVA allocator\'s reserved regions.',
});

/**
 * Interrupt posting's two fault conditions (VT-d spec, interrupt-remapping fault conditions, after 0x26):
 * 0x27, the posted-interrupt descriptor could not be accessed through the IRTE's PDA; 0x28, reserved fields
 * set in the descriptor. Both are qualified: the IRTE's FPD suppresses them (as VirtualBox's VT-d model's
 * vtdIrFaultIsQualified has them). Linux's irq_remap_fault_reasons stops at 0x26, so dmar_get_fault_reason
 * answers "Unknown" of type UNKNOWN and dmar_fault_do_one prints them in the DMA form.
 */
export const FR_PID_ACCESS = 0x27;
export const FR_PID_RESERVED = 0x28;
CATALOGUE.set(FR_PID_ACCESS, {
  code: FR_PID_ACCESS,
  text: 'Unknown',
  type: 'unknown',
  qualified: true,
  meaning: 'An interrupt through a posted-format IRTE could not be posted: the posted-interrupt descriptor its PDA points at cannot be accessed.',
  check: 'Check the IRTE\'s PDA (pda_h, pda_l << 6) against the vCPU\'s pi_desc address; a descriptor freed with the vCPU while the IRTE still posts to it looks like this.',
});
CATALOGUE.set(FR_PID_RESERVED, {
  code: FR_PID_RESERVED,
  text: 'Unknown',
  type: 'unknown',
  qualified: true,
  meaning: 'An interrupt through a posted-format IRTE could not be posted: the posted-interrupt descriptor has reserved bits set.',
  check: 'Dump the 64-byte descriptor: bits 271:258, 287:280 and 511:320 must be 0, and in xAPIC mode NDST holds the APIC ID in bits 15:8 only.',
});

/** Every fault reason the model knows, by code. */
export const FAULT_REASONS: ReadonlyMap<number, FaultReason> = CATALOGUE;

/**
 * The string and type Linux prints for a code, following `dmar_get_fault_reason` (drivers/iommu/intel/dmar.c):
 * interrupt-remapping codes 0x20-0x26, the scalable-mode table 0x30-0x90 (its gaps are "Unknown" of type DMA),
 * the legacy table 0x00-0x0d, anything else "Unknown" of type unknown (printed in the DMA form).
 *
 * `scalableModeTable: false` is the lookup of kernels before the scalable-mode table existed: it arrived with
 * "iommu/vt-d: Add Scalable Mode fault information" (Kyung Min Park, in the IOMMU pull for v5.4,
 * <20190916151342.GA7444@8bytes.org>; its commit id was not found within the look-up budget). Those kernels
 * print "Unknown" for every code from 0x27 up. driver/log.ts chooses per kernel version.
 */
export function linuxFaultReason(code: number, options: { readonly scalableModeTable?: boolean } = {}): { text: string; type: FaultType } {
  // dmar_get_fault_reason takes a u8: anything else is no code a fault record can hold.
  if (!Number.isInteger(code) || code < 0 || code > 0xff) return { text: 'Unknown', type: 'unknown' };
  if (code >= 0x20 && code < 0x27) return { text: CATALOGUE.get(code)!.text, type: 'interrupt-remap' };
  if (code >= 0x30 && code <= 0x90 && options.scalableModeTable !== false) {
    const r = CATALOGUE.get(code);
    return { text: r && r.type === 'dma' ? r.text : 'Unknown', type: 'dma' };
  }
  if (code <= 0x0d) return { text: CATALOGUE.get(code)!.text, type: 'dma' };
  return { text: 'Unknown', type: 'unknown' };
}

export function faultReason(code: number): FaultReason | undefined {
  return CATALOGUE.get(code);
}

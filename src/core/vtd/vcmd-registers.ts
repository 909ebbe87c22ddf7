/**
 * The VT-d virtual command registers (ECAP.VCS): where they are and how VCMD and VCRSP are laid out, in both
 * generations. Shared by the guest driver's allocator (driver/vcmd-pasid.ts) and the VMM's handler
 * (vmm/vcmd.ts), which must agree on them bit for bit.
 */
/** ECAP.VCS, bit 44 (`ecap_vcs`): the unit has the virtual command registers. */
export const ECAP_VCS_BIT = 44;
/** VCCAP.PAS, bit 0 (`DMA_VCS_PAS`): PASID allocation is offered. */
export const VCCAP_PAS = 0x1;
/** VCMD opcodes, bits 7:0 (`VCMD_CMD_ALLOC`, `VCMD_CMD_FREE`). */
export const VCMD_CMD_ALLOC = 0x1;
export const VCMD_CMD_FREE = 0x2;
/** VCRSP.IP, bit 0 (`VCMD_VRSP_IP`): the command is in progress; the guest polls until it clears. */
export const VCRSP_IP = 0x1;

/** Where the registers are and how the fields of VCMD and VCRSP are laid out. */
export interface VcmdLayout {
  readonly name: string;
  readonly vccap: number;
  readonly vcmd: number;
  readonly vcrsp: number;
  /** The status code is VCRSP bits scMsb:1. */
  readonly scMsb: number;
  /** The 20-bit result PASID in VCRSP, and the 20-bit operand PASID in VCMD, start at these bits. */
  readonly resultLsb: number;
  readonly operandLsb: number;
  /** Status codes: success is 0; no PASID left for ALLOC; an invalid PASID for FREE. */
  readonly noPasidAvailable: number;
  readonly invalidPasid: number;
  /**
   * The status for an opcode the interface does not know. Linux has no name for it (it prints "Unexpected
   * error code"); 1 is what QEMU's vSVA RFC v11 answered (VTD_VCMD_UNDEFINED_CMD) [unc for VT-d 3.3].
   */
  readonly undefinedCommand: number;
}

/**
 * VT-d 3.3 (Sections 10.4.43-10.4.46): Linux since 4d99efb229e6 ("iommu/vt-d: Update the virtual command
 * related registers", 5.15; in 5.10 stable since 5.10.66), which is what /work/ksrc/linux-5.10 holds:
 * DMAR_VCMD_REG 0xe00, DMAR_VCRSP_REG 0xe10, DMAR_VCCAP_REG 0xe30 (include/linux/intel-iommu.h);
 * VCMD_VRSP_SC(e) = ((e) & 0xff) >> 1, VCMD_VRSP_SC_NO_PASID_AVAIL = VCMD_VRSP_SC_INVALID_PASID = 16,
 * VCMD_VRSP_RESULT_PASID(e) = ((e) >> 16) & 0xfffff, VCMD_CMD_OPERAND(e) = (e) << 16 (drivers/iommu/intel/pasid.h).
 */
export const VCMD_LAYOUT_VTD_3_3: VcmdLayout = {
  name: 'VT-d 3.3',
  vccap: 0xe30,
  vcmd: 0xe00,
  vcrsp: 0xe10,
  scMsb: 7,
  resultLsb: 16,
  operandLsb: 16,
  noPasidAvailable: 16,
  invalidPasid: 16,
  undefinedCommand: 1,
};

/**
 * Before 4d99efb229e6, as its diff removes it and as QEMU's vSVA RFC v11 (2021) emulated it:
 * VCCAP 0xe00, VCMD 0xe10, VCRSP 0xe20; VCMD_VRSP_SC(e) = ((e) >> 1) & 0x3 with 2 for no PASID / invalid
 * PASID; result and operand at bit 8.
 */
export const VCMD_LAYOUT_VTD_3_1: VcmdLayout = {
  name: 'VT-d 3.1',
  vccap: 0xe00,
  vcmd: 0xe10,
  vcrsp: 0xe20,
  scMsb: 2,
  resultLsb: 8,
  operandLsb: 8,
  noPasidAvailable: 2,
  invalidPasid: 2,
  undefinedCommand: 1,
};


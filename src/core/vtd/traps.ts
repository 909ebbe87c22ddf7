import type { U64 } from '../u64';

/**
 * The hooks a VMM uses to emulate a VT-d unit for a guest, as QEMU's vIOMMU does: the guest programs a unit
 * of this model over guest memory, and the VMM sees (and may take over) its register writes and the
 * invalidation descriptors its queue fetches. One trapper at a time (`VtdUnit.trap`); with none attached
 * the unit pays one null check per register write and per descriptor.
 */

/** A software register write, as the unit is about to see it. */
export interface VtdRegisterWrite {
  readonly offset: number;
  /** The architectural name (`IQT`, `FRCD0_HI`, `VCMD`, ...), or `0x...` for an offset the unit does not name. */
  readonly name: string;
  readonly width: 32 | 64;
  readonly value: U64;
}

/** A descriptor the invalidation queue fetched and found well-formed (an invalid one raises IQE first). */
export interface VtdDescriptorEvent {
  /** Its queue index (IQH when it was fetched). */
  readonly index: number;
  readonly type: number;
  /** Linux's name for the type (`qi_type_string`), e.g. `IOTLB Invalidation`. */
  readonly typeName: string;
  /** The descriptor as fetched: 2 qwords (128-bit descriptors) or 4 (256-bit). */
  readonly qwords: readonly U64[];
  /** Its fields as descriptors.ts decodes them (G, DID, SID, ADDR in 4 KiB pages, ...). */
  readonly fields: Readonly<Record<string, number>>;
}

export interface VtdTraps {
  /**
   * Before a software register write takes effect; 'handled' means the trapper emulated it and the unit does
   * nothing. Writes to offsets the unit does not implement (e.g. the virtual command registers VCMD 0xe00,
   * VCRSP 0xe10, VCCAP 0xe30 when ECAP.VCS = 1) come here too. A trapper sets what its emulation produces
   * with `VtdUnit.setRegisterValue`, not with a software write (which would come back here).
   */
  registerWrite?(w: VtdRegisterWrite): 'pass' | 'handled';
  /** After a write the unit handled took effect (observation). */
  registerWritten?(w: VtdRegisterWrite): void;
  /** Each descriptor the invalidation queue fetches, before the unit executes it; 'handled': the trapper completed it. */
  descriptor?(d: VtdDescriptorEvent): 'pass' | 'handled';
  /** After the unit executed a descriptor (its own caches already invalidated); not after a device-TLB time-out. */
  descriptorDone?(d: VtdDescriptorEvent): void;
}

/**
 * The virtual command registers (ECAP.VCS, for a VMM's PASID allocation): the unit names them but leaves
 * them to a trapper. The offsets are the ones the guest driver uses: DMAR_VCMD_REG 0xe00, DMAR_VCRSP_REG
 * 0xe10, DMAR_VCCAP_REG 0xe30 in Linux 5.10 include/linux/intel-iommu.h and 6.1 drivers/iommu/intel/iommu.h.
 */
export const VIRTUAL_COMMAND_REGISTERS = [
  { offset: 0xe00, name: 'VCMD' },
  { offset: 0xe10, name: 'VCRSP' },
  { offset: 0xe30, name: 'VCCAP' },
] as const;

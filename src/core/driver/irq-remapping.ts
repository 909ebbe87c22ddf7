import type { PhysicalMemory } from '../hw/memory';
import { compatibilityMsi, remappableMsi } from '../vtd/interrupt-remap';
import { GSTS } from '../vtd/registers';
import { decodeEntry, IRTE_REMAPPED } from '../vtd/structures';
import { clearIrte, enableInterruptRemapping, encodeIrte, encodePostedIrte, setCompatibilityFormatInterrupts, setInterruptRemapTable, writeIrte } from '../vtd/tables';
import type { DeviceInfo } from './device';
import { fail } from './errors';
import type { IntelIommu } from './intel-iommu';
import type { KernelLog } from './log';
import { Descs } from './qi';

/**
 * What Linux's intel_irq_remapping.c does, on top of the hardware model: at boot, one 65536-entry table per
 * unit (IRTA with S = 15, EIME in x2APIC mode), SIRTP, a global IEC flush, then IRE with compatibility-format
 * interrupts blocked; per MSI, an entry allocated from the table's bitmap (aligned blocks for multi-MSI),
 * written with source-id verification (SVT = 01b, SQ = 0, SID = the requester ID) and flushed from the
 * interrupt entry cache by index, and the remappable-format message the device is programmed with. For an
 * assigned device's interrupt KVM can switch the entry to posted format for a vCPU (setVcpuAffinity).
 */

/** Linux INTR_REMAP_TABLE_ENTRIES, INTR_REMAP_PAGE_ORDER (a 1 MiB table) and INTR_REMAP_TABLE_REG_SIZE (S = 15). */
export const INTR_REMAP_TABLE_ENTRIES = 65536;
export const INTR_REMAP_PAGE_ORDER = 8;
export const INTR_REMAP_TABLE_REG_SIZE = 0xf;

/** IRTE.SVT / IRTE.SQ values Linux uses (SVT_VERIFY_SID_SQ, SVT_VERIFY_BUS, SQ_ALL_16). */
export const SVT_NO_VERIFY = 0;
export const SVT_VERIFY_SID_SQ = 1;
export const SVT_VERIFY_BUS = 2;
export const SQ_ALL_16 = 0;

/** Linux `struct ir_table`: the table in memory and its allocation bitmap. */
export class IrTable {
  readonly base: number;
  private readonly used = new Uint8Array(INTR_REMAP_TABLE_ENTRIES);

  constructor(mem: PhysicalMemory) {
    // An order-8 page allocation is naturally aligned to its 1 MiB size: skip to the next 1 MiB boundary
    // (the skipped pages go back to the allocator).
    const size = 4096 << INTR_REMAP_PAGE_ORDER;
    const next = mem.allocContiguous(0);
    const pad = ((size - (next % size)) % size) / 4096;
    if (pad) {
      const skipped = mem.allocContiguous(pad);
      for (let i = pad - 1; i >= 0; i--) mem.freePage(skipped + i * 4096);
    }
    this.base = mem.allocContiguous(1 << INTR_REMAP_PAGE_ORDER);
  }

  /** `bitmap_find_free_region`: the first free block of 2^order entries aligned to its size, or -1. */
  allocRegion(order: number): number {
    const n = 1 << order;
    for (let index = 0; index < INTR_REMAP_TABLE_ENTRIES; index += n) {
      let free = true;
      for (let i = 0; i < n && free; i++) free = this.used[index + i] === 0;
      if (free) {
        this.used.fill(1, index, index + n);
        return index;
      }
    }
    return -1;
  }

  releaseRegion(index: number, order: number): void {
    this.used.fill(0, index, index + (1 << order));
  }

  inUse(index: number): boolean {
    return this.used[index] === 1;
  }
}

export interface MsiOptions {
  /** The CPU vector (the first one, for multi-MSI). */
  readonly vector: number;
  /** APIC ID of the target CPU. */
  readonly destination: number;
  /** Multi-MSI: number of vectors, rounded up to a power of two and allocated as one aligned block. */
  readonly count?: number;
  /** apic->dest_mode_logical: logical in x2APIC cluster or flat mode; physical (the default) otherwise. */
  readonly destinationMode?: 'physical' | 'logical';
  /** The requester ID the entry verifies: the device's own by default, or its DMA alias behind a bridge. */
  readonly sourceId?: number;
}

/** One vector of an MSI allocation: the IRTE behind it and the message the device writes to raise it. */
export interface MsiVector {
  /** IRTE index (irte_index + sub_handle), or undefined without interrupt remapping. */
  readonly index?: number;
  readonly subhandle: number;
  readonly address: number;
  readonly data: number;
  readonly vector: number;
  readonly destination: number;
}

/** Linux `struct vcpu_data` (asm/irq_remapping.h): what KVM hands irq_set_vcpu_affinity to post to a vCPU. */
export interface VcpuData {
  /** pi_desc_addr: physical address of the vCPU's posted-interrupt descriptor (64-byte aligned). */
  readonly piDescAddr: number;
  /** The guest vector of the interrupt. */
  readonly vector: number;
}

/** Linux `irq_2_iommu` for a device's MSI block. */
export interface MsiAllocation {
  readonly device: DeviceInfo;
  readonly remapped: boolean;
  /** irte_index and irte_mask: the first entry and log2 of the block size. */
  readonly index: number;
  readonly mask: number;
  readonly vectors: readonly MsiVector[];
  /** The message of the first vector (for multi-MSI the device ORs the vector number into the data). */
  readonly address: number;
  readonly data: number;
  freed: boolean;
}

export class IrqRemapping {
  /** eim_mode: x2APIC mode, when the platform allows it and every unit has ECAP.EIM. */
  readonly eim: boolean;
  /**
   * IRQ_POSTING_CAP (set_irq_posting_cap): every unit has CAP.PI. Linux also needs CMPXCHG16B (X86_FEATURE_CX16,
   * which every CPU with posted interrupts has) and no intremap=nopost; the model assumes both.
   */
  readonly posting: boolean;
  private readonly tables = new Map<IntelIommu, IrTable>();
  /** ir_data->irte_entry: the remapped-format entry of each vector, which a vCPU's posting replaces for a while. */
  private readonly remappedEntry = new WeakMap<MsiVector, readonly number[]>();

  private constructor(
    private readonly log: KernelLog,
    eim: boolean,
    posting: boolean,
  ) {
    this.eim = eim;
    this.posting = posting;
  }

  /**
   * intel_prepare_irq_remapping + intel_enable_irq_remapping. Returns undefined (remapping stays off) when a
   * unit has no ECAP.IR, as Linux gives up on interrupt remapping altogether then.
   */
  static enable(iommus: readonly IntelIommu[], log: KernelLog, options: { x2apic?: boolean } = {}): IrqRemapping | undefined {
    if (iommus.length === 0 || iommus.some((i) => !i.unit.ecap.ir)) return undefined;
    let eim = options.x2apic ?? true;
    for (const i of iommus) {
      if (eim && !i.unit.ecap.eim) {
        log.info(`DMAR-IR: ${i.name} does not support EIM`);
        eim = false;
      }
    }
    if (eim) log.info('DMAR-IR: Queued invalidation will be enabled to support x2apic and Intr-remapping.');
    const ir = new IrqRemapping(log, eim, iommus.every((i) => i.unit.cap.pi === 1));
    // intel_setup_irq_remapping: the table, then iommu_set_irq_remapping (IRTA, SIRTP, global IEC flush).
    for (const i of iommus) {
      const table = new IrTable(i.unit.memory);
      ir.tables.set(i, table);
      setInterruptRemapTable(i.unit, table.base, INTR_REMAP_TABLE_REG_SIZE, eim);
      if (!i.unit.cap.esirtps) i.qi.submit([Descs.iecGlobal()]);
    }
    // iommu_enable_irq_remapping: IRE, then block compatibility-format interrupts if CFI was left on.
    for (const i of iommus) {
      enableInterruptRemapping(i.unit);
      if (i.unit.readRegister('GSTS').lo & (1 << GSTS.CFIS)) setCompatibilityFormatInterrupts(i.unit, false);
    }
    log.info(`DMAR-IR: Enabled IRQ remapping in ${eim ? 'x2apic' : 'xapic'} mode`);
    return ir;
  }

  tableOf(iommu: IntelIommu): IrTable | undefined {
    return this.tables.get(iommu);
  }

  /**
   * intel_irq_remapping_alloc + activate for a PCI MSI/MSI-X: alloc_irte (an aligned block for multi-MSI),
   * then per vector prepare_irte, set_msi_sid and modify_irte (write the entry, flush the IEC by index), and
   * the remappable-format message (fill_msi_msg).
   */
  alloc(dev: DeviceInfo, o: MsiOptions): MsiAllocation {
    const iommu = dev.iommu;
    const table = this.tables.get(iommu) ?? fail('ENODEV', `interrupt remapping is not set up on ${iommu.name}`);
    const count = o.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 32) fail('EINVAL', `MSI vector count ${count}`);
    const mask = count > 1 ? Math.ceil(Math.log2(count)) : 0;
    if (mask > iommu.unit.ecap.mhmv) {
      this.log.err(`DMAR-IR: Requested mask ${mask.toString(16)} exceeds the max invalidation handle mask value ${iommu.unit.ecap.mhmv.toString(16)}`);
      fail('ENOSPC', 'IRTE mask too large');
    }
    const index = table.allocRegion(mask);
    if (index < 0) {
      this.log.warn(`DMAR-IR: IR${iommu.seq}: can't allocate an IRTE`);
      fail('ENOSPC', `no free IRTE block of ${1 << mask} on ${iommu.name}`);
    }
    const msg = remappableMsi(index, 0);
    const vectors: MsiVector[] = [];
    for (let sub = 0; sub < count; sub++) {
      const vector = o.vector + sub;
      const words = encodeIrte({
        vector,
        dst: this.eim ? o.destination >>> 0 : (o.destination & 0xff) << 8,
        destinationMode: o.destinationMode ?? 'physical',
        redirectionHint: true,
        triggerMode: 'edge',
        deliveryMode: 0,
        svt: SVT_VERIFY_SID_SQ,
        sq: SQ_ALL_16,
        sid: o.sourceId ?? dev.sid,
      });
      this.modifyIrte(iommu, table, index + sub, words);
      const v: MsiVector = { index: index + sub, subhandle: sub, address: msg.address, data: msg.data | sub, vector, destination: o.destination };
      this.remappedEntry.set(v, words);
      vectors.push(v);
    }
    return { device: dev, remapped: true, index, mask, vectors, address: msg.address, data: msg.data, freed: false };
  }

  /**
   * intel_ir_set_vcpu_affinity, as KVM calls it for an assigned device's interrupt (vmx_pi_update_irte). With a
   * vCPU: a posted-format entry built from the shared fields of the remapped one (dmar_copy_shared_irte: P,
   * FPD, AVAIL, SID, SQ, SVT), with IM = 1, URG = 0, the guest vector and the descriptor address split into
   * PDA_L (bits 31:6) and PDA_H (bits 63:32). With null: back to the remapped entry (__intel_ir_reconfigure_irte
   * with force_host). Either way modify_irte writes it and flushes its IEC entry. KVM only asks when
   * IRQ_POSTING_CAP is set, so without it this fails with EOPNOTSUPP rather than write an entry the hardware
   * would reject (fault 0x24).
   */
  setVcpuAffinity(a: MsiAllocation, subhandle: number, vcpu: VcpuData | null): void {
    const v = a.vectors[subhandle];
    if (!a.remapped || a.freed || !v || v.index === undefined) fail('EINVAL', `no remapped interrupt ${subhandle} in this allocation`);
    if (!this.posting) fail('EOPNOTSUPP', 'interrupt posting is not available: not every DMAR unit has CAP.PI');
    const iommu = a.device.iommu;
    const table = this.tables.get(iommu)!;
    const remapped = this.remappedEntry.get(v)!;
    if (vcpu === null) {
      this.modifyIrte(iommu, table, v.index, remapped);
      return;
    }
    if (!Number.isInteger(vcpu.piDescAddr) || vcpu.piDescAddr < 0 || vcpu.piDescAddr % 64 !== 0) fail('EINVAL', `pi_desc address 0x${vcpu.piDescAddr.toString(16)} is not 64-byte aligned`);
    if (!Number.isInteger(vcpu.vector) || vcpu.vector < 0 || vcpu.vector > 0xff) fail('EINVAL', `guest vector ${vcpu.vector}`);
    const shared = decodeEntry(IRTE_REMAPPED, remapped);
    const words = encodePostedIrte({
      present: shared.P === true,
      fpd: shared.FPD === true,
      avail: shared.AVAIL as number,
      sid: shared.SID as number,
      sq: shared.SQ as number,
      svt: shared.SVT as number,
      urgent: false,
      vector: vcpu.vector,
      descriptor: vcpu.piDescAddr,
    });
    // Linux writes a posted entry with one cmpxchg16b (PDA crosses the qwords); no request can come between
    // the model's two qword writes.
    this.modifyIrte(iommu, table, v.index, words);
  }

  /** modify_irte: low qword, then high qword, then qi_flush_iec(index, 0). */
  private modifyIrte(iommu: IntelIommu, table: IrTable, index: number, words: readonly number[]): void {
    writeIrte(iommu.unit.memory, table.base, index, words);
    iommu.qi.submit([Descs.iec(index, 0)]);
  }

  /** free_irte / clear_entries: zero the block, release it, flush the IEC for the block (index, mask). */
  free(a: MsiAllocation): void {
    if (a.freed || !a.remapped) return;
    const iommu = a.device.iommu;
    const table = this.tables.get(iommu)!;
    for (let i = 0; i < 1 << a.mask; i++) clearIrte(iommu.unit.memory, table.base, a.index + i);
    table.releaseRegion(a.index, a.mask);
    iommu.qi.submit([Descs.iec(a.index, a.mask)]);
    a.freed = true;
  }
}

/** Without interrupt remapping: the compatibility-format message the x86 vector domain composes. */
export function compatibilityAllocation(dev: DeviceInfo, o: MsiOptions): MsiAllocation {
  const count = o.count ?? 1;
  const vectors: MsiVector[] = [];
  for (let sub = 0; sub < count; sub++) {
    const m = compatibilityMsi({ vector: o.vector + sub, destination: o.destination, destinationMode: o.destinationMode });
    vectors.push({ subhandle: sub, address: m.address, data: m.data, vector: o.vector + sub, destination: o.destination });
  }
  return { device: dev, remapped: false, index: -1, mask: 0, vectors, address: vectors[0]!.address, data: vectors[0]!.data, freed: false };
}

import { U64 } from '../u64';
import { atsInvalidationAddress, DescType, encodeDescriptor } from '../vtd/descriptors';
import { FSTS, Reg } from '../vtd/registers';
import { enableQueuedInvalidation, writeEntry } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';
import { type KernelLog, qiClearedLine, qiFaultLines } from './log';

/** One invalidation descriptor before encoding: its type and the fields of that type. */
export interface Desc {
  readonly type: number;
  readonly fields: Readonly<Record<string, number>>;
}

/** Slot states of the driver's status array (Linux `enum qi_desc_status`), shown by debugfs. */
export const QI_FREE = 0;
export const QI_IN_USE = 1;
export const QI_DONE = 2;
export const QI_ABORT = 3;

/** Linux: QI_LENGTH = 256 descriptors; 256-bit descriptors need two pages (QS = 1). */
export const QI_LENGTH = 256;

export type SubmitResult = 'ok' | 'invalid-descriptor' | 'timeout';

/**
 * The driver's invalidation queue, as Linux runs it (`qi_submit_sync`): copy the descriptors to the tail,
 * append a wait descriptor whose status write marks completion in a per-slot status word, move IQT, then
 * check FSTS for IQE/ITE. The model's hardware completes synchronously, so "waiting" is checking the status
 * word right after the IQT write.
 */
export class QueuedInvalidation {
  readonly base: number;
  readonly statusBase: number;
  private readonly wide: boolean;
  /** Descriptors submitted so far, for tests and debugfs-style views. */
  submitted = 0;

  constructor(
    private readonly unit: VtdUnit,
    private readonly log: KernelLog,
  ) {
    const mem = unit.memory;
    this.wide = unit.ecap.smts === 1;
    // Two pages for 256 x 32-byte descriptors (one page of 256 x 16 bytes in legacy mode).
    this.base = mem.allocPage();
    if (this.wide) {
      const second = mem.allocPage();
      if (second !== this.base + 4096) throw new Error('the invalidation queue needs two contiguous pages');
    }
    this.statusBase = mem.allocPage();
    enableQueuedInvalidation(unit, this.base, this.wide ? 1 : 0, this.wide);
  }

  /** Status word of each slot (QI_FREE/IN_USE/DONE/ABORT), as debugfs prints it. */
  status(index: number): number {
    return this.unit.memory.read32(this.statusBase + index * 4);
  }

  /** Submits `descs` followed by a wait descriptor (with PD when `drain`). */
  submit(descs: readonly Desc[], options: { drain?: boolean; fence?: boolean } = {}): SubmitResult {
    const unit = this.unit;
    const mem = unit.memory;
    const q = unit.invalidationQueue;
    const words = this.wide ? 4 : 2;
    let index = q.tail;
    const slots: number[] = [];
    for (const d of descs) {
      writeEntry(mem, q.base + index * q.descSize, encodeDescriptor(d.type, d.fields, words), 'inv-descriptor');
      mem.write32(this.statusBase + index * 4, QI_IN_USE, 'qi-status');
      slots.push(index);
      index = (index + 1) % q.entries;
    }
    const waitIndex = index;
    const wait = encodeDescriptor(DescType.WAIT, { SW: 1, FN: options.fence ? 1 : 0, PD: options.drain ? 1 : 0, STATUS: QI_DONE, ADDR: this.statusBase + waitIndex * 4 }, words);
    writeEntry(mem, q.base + waitIndex * q.descSize, wait, 'inv-descriptor');
    mem.write32(this.statusBase + waitIndex * 4, QI_IN_USE, 'qi-status');
    index = (index + 1) % q.entries;
    this.submitted += descs.length + 1;
    unit.writeRegister(Reg.IQT, index * q.descSize);

    const fsts = unit.readRegister('FSTS').lo;
    // qi_check_fault: qi_dump_fault reports any of IQE/ITE/ICE before they are handled (the form is the version's).
    if (fsts & ((1 << FSTS.IQE) | (1 << FSTS.ITE) | (1 << FSTS.ICE))) this.dumpFault(fsts);
    if (fsts & (1 << FSTS.IQE)) {
      const r = this.handleIqe(waitIndex);
      this.release([...slots, waitIndex]);
      return r;
    }
    if (fsts & (1 << FSTS.ITE)) {
      for (const s of [...slots, waitIndex]) if (this.status(s) === QI_IN_USE) mem.write32(this.statusBase + s * 4, QI_ABORT, 'qi-status');
      unit.writeRegister('FSTS', 1 << FSTS.ITE);
      const cleared = qiClearedLine('ITE', this.log.version);
      if (cleared) this.log.info(cleared);
      this.release([...slots, waitIndex]);
      return 'timeout';
    }
    const done = this.status(waitIndex) === QI_DONE;
    this.release([...slots, waitIndex]);
    return done ? 'ok' : 'timeout';
  }

  /** The end of qi_submit_sync (6.x): every slot of the submission, wait descriptor included, back to QI_FREE. */
  private release(slots: readonly number[]): void {
    for (const s of slots) this.unit.memory.write32(this.statusBase + s * 4, QI_FREE, 'qi-status');
  }

  /** The words of the descriptor in slot `i`. */
  private read(i: number): number[] {
    const mem = this.unit.memory;
    const q = this.unit.invalidationQueue;
    const w: number[] = [];
    for (let k = 0; k < (this.wide ? 4 : 2); k++) w.push(mem.readLo(q.base + i * q.descSize + k * 8), mem.readHi(q.base + i * q.descSize + k * 8));
    return w;
  }

  /** `qi_dump_fault`: the errors with the IQER fields, the descriptor at IQH and the one before it. */
  private dumpFault(fsts: number): void {
    const q = this.unit.invalidationQueue;
    const iqer = this.unit.readRegister('IQER');
    const words = (i: number) => {
      const w = this.read(i);
      return { qw0: hex64(w[1]!, w[0]!), qw1: hex64(w[3]!, w[2]!) };
    };
    const fault = {
      iqe: (fsts & (1 << FSTS.IQE)) !== 0,
      ite: (fsts & (1 << FSTS.ITE)) !== 0,
      ice: (fsts & (1 << FSTS.ICE)) !== 0,
      iqei: iqer.lo & 0xf,
      // Where the hardware model keeps the SIDs (see VtdUnit's IQER comment).
      iteSid: iqer.hi >>> 16,
      iceSid: iqer.hi & 0xffff,
      head: words(q.head),
      prior: words((q.head + q.entries - 1) % q.entries),
    };
    for (const l of qiFaultLines(fault, this.log.version)) this.log.err(l);
  }

  /** IQE: overwrite the bad slot with our wait descriptor so the queue can go on, clear IQE (Linux `qi_check_fault`). */
  private handleIqe(waitIndex: number): SubmitResult {
    const unit = this.unit;
    const q = unit.invalidationQueue;
    writeEntry(unit.memory, q.base + q.head * q.descSize, this.read(waitIndex), 'inv-descriptor');
    unit.writeRegister('FSTS', 1 << FSTS.IQE);
    const cleared = qiClearedLine('IQE', this.log.version);
    if (cleared) this.log.info(cleared);
    return 'invalid-descriptor';
  }
}

// ---- descriptors as Linux builds them (iommu.h QI_* / dmar.c qi_flush_*) ----

export const Descs = {
  contextCacheDevice(did: number, sid: number, fm = 0): Desc {
    return { type: DescType.CONTEXT_CACHE, fields: { G: 3, DID: did, SID: sid, FM: fm } };
  },
  contextCacheGlobal(): Desc {
    return { type: DescType.CONTEXT_CACHE, fields: { G: 1 } };
  },
  /** IOTLB page-selective: DR/DW when the unit drains (CAP.DRD/DWD), IH, AM. */
  iotlbPsi(unit: VtdUnit, did: number, addr: number, am: number, ih: boolean): Desc {
    return { type: DescType.IOTLB, fields: { G: 3, DID: did, ADDR: addr, AM: am, IH: ih ? 1 : 0, DR: unit.cap.drd, DW: unit.cap.dwd } };
  },
  iotlbDsi(unit: VtdUnit, did: number): Desc {
    return { type: DescType.IOTLB, fields: { G: 2, DID: did, DR: unit.cap.drd, DW: unit.cap.dwd } };
  },
  iotlbGlobal(unit: VtdUnit): Desc {
    return { type: DescType.IOTLB, fields: { G: 1, DR: unit.cap.drd, DW: unit.cap.dwd } };
  },
  piotlbPsi(did: number, pasid: number, addr: number, am: number, ih: boolean): Desc {
    return { type: DescType.PASID_IOTLB, fields: { G: 3, DID: did, PASID: pasid, ADDR: addr, AM: am, IH: ih ? 1 : 0 } };
  },
  piotlbAll(did: number, pasid: number): Desc {
    return { type: DescType.PASID_IOTLB, fields: { G: 2, DID: did, PASID: pasid } };
  },
  pasidCache(did: number, pasid: number): Desc {
    return { type: DescType.PASID_CACHE, fields: { G: 1, DID: did, PASID: pasid } };
  },
  pasidCacheGlobal(): Desc {
    return { type: DescType.PASID_CACHE, fields: { G: 3 } };
  },
  /**
   * Device-TLB invalidation of 2^mask pages at `addr` (mask 52 = everything), PFSID and QDEP as Linux fills
   * them: QDEP is the ATS Invalidate Queue Depth, 0 when it is 32 or more (the field is 5 bits).
   */
  devTlb(sid: number, pfsid: number, qdep: number, addr: number, mask: number): Desc {
    const { page, s } = atsAddress(addr, mask);
    return { type: DescType.DEVICE_TLB, fields: { SID: sid, PFSID_LO: pfsid & 0xf, PFSID_HI: pfsid >>> 4, QDEP: qdep >= 32 ? 0 : qdep, ADDR_PAGE: page, S: s } };
  },
  pasidDevTlb(sid: number, pfsid: number, pasid: number, qdep: number, addr: number, mask: number): Desc {
    const { page, s } = atsAddress(addr, mask);
    return { type: DescType.PASID_DEVICE_TLB, fields: { SID: sid, PFSID_LO: pfsid & 0xf, PFSID_HI: pfsid >>> 4, PASID: pasid, QDEP: qdep >= 32 ? 0 : qdep, ADDR_PAGE: page, S: s } };
  },
  /** qi_global_iec: every interrupt entry cached (after SIRTP). */
  iecGlobal(): Desc {
    return { type: DescType.IEC, fields: { G: 0 } };
  },
  /** qi_flush_iec: the 2^mask entries from `index` (QI_IEC_SELECTIVE | QI_IEC_IIDX | QI_IEC_IM). */
  iec(index: number, mask: number): Desc {
    return { type: DescType.IEC, fields: { G: 1, IIDX: index, IM: mask } };
  },
  pageGroupResponse(rid: number, pasid: number | undefined, prgIndex: number, lastInGroup: boolean, code: number): Desc {
    return { type: DescType.PAGE_GROUP_RESPONSE, fields: { RID: rid, PP: pasid !== undefined ? 1 : 0, PASID: pasid ?? 0, PRGI: prgIndex, LPIG: lastInGroup ? 1 : 0, RC: code } };
  },
};

/** Linux MAX_AGAW_PFN_WIDTH: a mask this large means "the whole address space". */
export const FULL_RANGE_MASK = 52;

/**
 * Device-TLB address field (bits 63:12) and S bit for 2^mask pages at `addr`. The whole range is address
 * 0x7fff_ffff_ffff_f000 with S = 1: every bit from 12 to 62 set.
 */
function atsAddress(addr: number, mask: number): { page: number; s: number } {
  if (mask >= FULL_RANGE_MASK) return { page: 2 ** 51 - 1, s: 1 };
  const r = atsInvalidationAddress(addr, 2 ** mask);
  return { page: r.addr / 4096, s: r.s };
}

/** U64 form of the full-range device-TLB address, for documentation and tests. */
export const FULL_RANGE_ADDRESS = new U64(0x7fff_ffff, 0xffff_f000);

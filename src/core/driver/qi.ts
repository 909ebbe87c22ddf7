import { U64 } from '../u64';
import { atsInvalidationAddress, DescType, encodeDescriptor } from '../vtd/descriptors';
import { FSTS, Reg } from '../vtd/registers';
import { enableQueuedInvalidation, writeEntry } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';
import type { DriverFinding } from './findings';
import { isAtLeast, type KernelLog, type KernelVersion, qiClearedLine, qiFaultLines } from './log';

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

/**
 * 8a1d82462540 "iommu/vt-d: Multiple descriptors per qi_submit_sync()" (Lu Baolu; "IOMMU Updates for Linux
 * v5.8"): a submission is up to 16 descriptors and its wait. Before it, one descriptor and its wait, so every
 * wait sat at an odd slot. The model submits batches at every version.
 */
export const QI_BATCHES: KernelVersion = '5.8';

/**
 * qi_check_fault's ITE walk marks every fetched slot QI_ABORT from fe89277c9ceb "iommu/vt-d: Fix intel iommu
 * iotlb sync hardlockup and retry" (Guanghui Feng; Fixes: 8a1d82462540; in Linus's tree for 7.0, with the
 * 7.0-rc fixes of March 2026). Before it, `head |= 1` and a step of 2 visited odd slots only: right while
 * every wait was odd, wrong once batches came (5.8): an even IQT - 1 is never met, so the walk spins.
 * Checked: the 6.12-stable review mail quotes the diff (`-		head |= 1;`, `head - 2` becomes `head - 1`); the
 * 5.10 (Debian) source still has the parity walk. Versions here are mainline (x.y = x.y.0): the fix was
 * queued for the 5.10.y, 5.15.y, 6.1.y, 6.6.y, 6.12.y, 6.18.y and 6.19.y stables (linux-stable-rc queue of
 * 2026-03-30), and the 6.1 and 6.12.118 (Debian) sources, like the real VM's 6.12.118, have the new walk.
 */
export const ITE_WALKS_EVERY_SLOT: KernelVersion = '7.0';

/**
 * 754d07b940c4 "iommu/vt-d: Fix IQE handling to cover all descriptors in submission range" (in v7.3-rc5):
 * qi_check_fault claims an IQE anywhere in the submission, not only on its first slot. Not pinned: modelled
 * from the subject only (its diff was not found; the revision lists that carry it give the subject alone).
 */
export const IQE_ANY_SLOT: KernelVersion = '7.3';

/** `hang`: the kernel would spin in qi_submit_sync or qi_check_fault for ever (see IommuKernel.findings). */
export type SubmitResult = 'ok' | 'invalid-descriptor' | 'timeout' | 'hang';

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
  /**
   * Set when a submission never completes: the CPU that made it spins with the queue lock held, so every
   * later submission on this unit would wait for that lock for ever too.
   */
  hung = false;

  constructor(
    private readonly unit: VtdUnit,
    private readonly log: KernelLog,
    private readonly version: KernelVersion = '6.12',
    private readonly findings: DriverFinding[] = [],
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

  /**
   * qi_submit_sync (6.12): `descs` and a wait descriptor (with PD when `drain`) go at the tail, IQT moves,
   * then the driver polls the wait's status word, running qi_check_fault while it is not QI_DONE. A fault
   * check that answers -EAGAIN (the wait was aborted by an ITE) submits the whole batch again.
   */
  submit(descs: readonly Desc[], options: { drain?: boolean; fence?: boolean } = {}): SubmitResult {
    if (this.hung) return 'hang';
    for (let attempt = 0; ; attempt++) {
      const r = this.submitOnce(descs, options);
      if (r !== 'again') return r;
      // The kernel retries without limit; the model's hardware never aborts a wait it has not fetched, so a
      // second retry means the model itself is wrong.
      if (attempt >= 1) throw new Error(`${this.unit.name}: qi_submit_sync keeps restarting (the wait descriptor is aborted every time)`);
    }
  }

  private submitOnce(descs: readonly Desc[], options: { drain?: boolean; fence?: boolean }): SubmitResult | 'again' {
    const unit = this.unit;
    const mem = unit.memory;
    const q = unit.invalidationQueue;
    const words = this.wide ? 4 : 2;
    const index = q.tail;
    let at = index;
    for (const d of descs) {
      writeEntry(mem, q.base + at * q.descSize, encodeDescriptor(d.type, d.fields, words), 'inv-descriptor');
      mem.write32(this.statusBase + at * 4, QI_IN_USE, 'qi-status');
      at = (at + 1) % q.entries;
    }
    const waitIndex = at;
    const wait = encodeDescriptor(DescType.WAIT, { SW: 1, FN: options.fence ? 1 : 0, PD: options.drain ? 1 : 0, STATUS: QI_DONE, ADDR: this.statusBase + waitIndex * 4 }, words);
    writeEntry(mem, q.base + waitIndex * q.descSize, wait, 'inv-descriptor');
    mem.write32(this.statusBase + waitIndex * 4, QI_IN_USE, 'qi-status');
    this.submitted += descs.length + 1;
    unit.writeRegister(Reg.IQT, ((waitIndex + 1) % q.entries) * q.descSize);

    let rc: SubmitResult | 'again' = 'ok';
    while (this.status(waitIndex) !== QI_DONE) {
      const r = this.checkFault(index, waitIndex);
      if (r === 'hang') return 'hang'; // nothing is freed: the CPU never leaves qi_check_fault
      if (r !== 'ok') {
        rc = r;
        break;
      }
      // The model's hardware runs the queue synchronously: a wait still not done after the fault check will
      // never be. The kernel goes round this loop for ever with interrupts off (printing qi_dump_fault's lines
      // on every pass, of which the model prints the first): an IQE the fault check does not claim, such as
      // one on a later descriptor of the batch before 7.3 (IQE_ANY_SLOT, see checkFault). Nothing is freed, IQE stays set.
      if (this.status(waitIndex) !== QI_DONE) {
        this.hung = true;
        const fsts = unit.readRegister('FSTS').lo;
        this.findings.push({
          kind: 'hang',
          function: 'qi_submit_sync',
          unit: unit.name,
          logLine: this.log.length,
          message: `${unit.name}: qi_submit_sync spins for ever: the wait descriptor at slot ${waitIndex} (batch from slot ${index}) never completes; FSTS 0x${fsts.toString(16)}, IQH at slot ${unit.invalidationQueue.head}`,
        });
        return 'hang';
      }
    }
    // Every slot of the submission, wait descriptor included, goes back to QI_FREE.
    for (let i = 0; i <= descs.length; i++) mem.write32(this.statusBase + ((index + i) % q.entries) * 4, QI_FREE, 'qi-status');
    return rc;
  }

  /**
   * qi_check_fault (6.12): -EAGAIN for an aborted wait; the dump of any queue error; an IQE on a descriptor
   * of this submission is repaired (the wait descriptor copied over it, IQE cleared: -EINVAL); an ITE is
   * cleared and the descriptors the hardware had fetched are marked aborted (from IQH - 1 back to IQT - 1); an
   * ICE is cleared.
   *
   * Which IQE is this submission's: up to 7.2 only one whose IQH is the batch's first slot (`(head >> shift)
   * == index`), so an IQE on a later descriptor is never claimed and the submitter spins; from 7.3
   * (IQE_ANY_SLOT, not pinned: modelled from the subject only) an IQH anywhere from the first slot to the
   * wait descriptor, with the same repair.
   *
   * The ITE walk: every slot from 7.0 (ITE_WALKS_EVERY_SLOT); from 5.8 to 6.x odd slots only, which spins
   * for ever with interrupts off (a hard lockup) when IQT - 1 is even. That is a finding, after the dump and
   * the `(ITE) cleared` line the kernel prints before the walk; the hardware, its ITE cleared, goes on.
   */
  private checkFault(index: number, waitIndex: number): SubmitResult | 'again' {
    const unit = this.unit;
    const mem = unit.memory;
    const q = unit.invalidationQueue;
    if (this.status(waitIndex) === QI_ABORT) return 'again';
    const fault = unit.readRegister('FSTS').lo;
    if (fault & ((1 << FSTS.IQE) | (1 << FSTS.ITE) | (1 << FSTS.ICE))) this.dumpFault(fault);
    if (fault & (1 << FSTS.IQE)) {
      const head = unit.invalidationQueue.head;
      const ours = isAtLeast(this.version, IQE_ANY_SLOT) ? (head - index + QI_LENGTH) % QI_LENGTH <= (waitIndex - index + QI_LENGTH) % QI_LENGTH : head === index;
      if (ours) {
        writeEntry(mem, q.base + head * q.descSize, this.read(waitIndex), 'inv-descriptor');
        unit.writeRegister('FSTS', 1 << FSTS.IQE);
        this.cleared('IQE');
        return 'invalid-descriptor';
      }
    }
    if (fault & (1 << FSTS.ITE)) {
      const oddSlots = isAtLeast(this.version, QI_BATCHES) && !isAtLeast(this.version, ITE_WALKS_EVERY_SLOT);
      const iqh = unit.invalidationQueue.head;
      const iqt = unit.invalidationQueue.tail;
      let head = (iqh - 1 + QI_LENGTH) % QI_LENGTH;
      if (oddSlots) head |= 1;
      const tail = (iqt - 1 + QI_LENGTH) % QI_LENGTH;
      unit.writeRegister('FSTS', 1 << FSTS.ITE);
      this.cleared('ITE');
      const step = oddSlots ? 2 : 1;
      // An odd head stepping by 2 through a ring of 256 slots meets only odd slots: an even tail never.
      if (oddSlots && tail % 2 === 0) {
        this.hung = true;
        this.findings.push({
          kind: 'hang',
          function: 'qi_check_fault',
          unit: unit.name,
          logLine: this.log.length,
          message: `${unit.name}: qi_check_fault spins for ever after the ITE (a hard lockup): its abort walk starts at odd slot ${head} (IQH ${iqh} - 1, | 1) and steps by 2, so it never meets the even slot ${tail} (IQT ${iqt} - 1) it stops at; the batch from slot ${index} with its wait at slot ${waitIndex} is never retried (fixed by fe89277c9ceb in 7.0)`,
        });
        return 'hang';
      }
      do {
        if (this.status(head) === QI_IN_USE) mem.write32(this.statusBase + head * 4, QI_ABORT, 'qi-status');
        head = (head - step + QI_LENGTH) % QI_LENGTH;
      } while (head !== tail);
      // The ITE's SID names a device; the driver gives up (-ETIMEDOUT) only when it is gone, and the model's
      // devices never go away.
      if (this.status(waitIndex) === QI_ABORT) return 'again';
    }
    if (fault & (1 << FSTS.ICE)) {
      unit.writeRegister('FSTS', 1 << FSTS.ICE);
      this.cleared('ICE');
    }
    return 'ok';
  }

  /** The descriptor in slot `i` as memory holds it. */
  private read(i: number): number[] {
    const mem = this.unit.memory;
    const q = this.unit.invalidationQueue;
    const w: number[] = [];
    for (let k = 0; k < (this.wide ? 4 : 2); k++) w.push(mem.readLo(q.base + i * q.descSize + k * 8), mem.readHi(q.base + i * q.descSize + k * 8));
    return w;
  }

  /**
   * qi_dump_fault: the error with IQERCD's field for it (DMAR_IQER_REG_IQEI [3:0], _ITESID [47:32],
   * _ICESID [63:48]), then the descriptor at IQH and the one before it, in the form of the kernel version.
   */
  private dumpFault(fault: number): void {
    const q = this.unit.invalidationQueue;
    const iqer = this.unit.readRegister('IQER');
    const words = (i: number) => {
      const w = this.read(i);
      return { qw0: hex64(w[1]!, w[0]!), qw1: hex64(w[3]!, w[2]!) };
    };
    const lines = qiFaultLines(
      {
        iqe: (fault & (1 << FSTS.IQE)) !== 0,
        ite: (fault & (1 << FSTS.ITE)) !== 0,
        ice: (fault & (1 << FSTS.ICE)) !== 0,
        iqei: iqer.lo & 0xf,
        iteSid: iqer.hi & 0xffff,
        iceSid: iqer.hi >>> 16,
        head: words(q.head),
        prior: words((q.head + QI_LENGTH - 1) % QI_LENGTH),
      },
      this.log.version,
    );
    for (const l of lines) this.log.err(l);
  }

  /** The `(IQE) cleared` line, where the version prints one. */
  private cleared(error: 'IQE' | 'ITE' | 'ICE'): void {
    const line = qiClearedLine(error, this.log.version);
    if (line) this.log.info(line);
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

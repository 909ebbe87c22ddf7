import type { EventStream } from '../hw/events';
import { U64 } from '../u64';
import { faultRecordingCount, faultRecordingOffset, type VtdCap } from './cap';
import type { RegisterFile } from './register-file';
import { FSTS, Reg } from './registers';
import type { Req } from './request';

/** A pending fault record as Linux's fault handler reads it. */
export interface PendingFault {
  index: number;
  sid: number;
  pasid: number | null;
  address: U64;
  reason: number;
  write: boolean;
  exec: boolean;
  priv: boolean;
  type: number;
}

/**
 * Fault recording: the fault recording registers at CAP.FRO (128 bits each, F in the top bit), the fault
 * status register (PFO on overflow, PPF and FRI computed from the records, and the invalidation errors the
 * invalidation queue sets there), and the fault event interrupt through FECTL (IM masks it, IP is pending).
 */
export class FaultRecorder {
  readonly base: number;
  readonly count: number;
  /** The record the next fault goes to (the hardware's FRI pointer). */
  next = 0;
  /** Called when software clears IQE or ITE in FSTS: the invalidation queue resumes. */
  onQueueErrorCleared: () => void = () => {};

  constructor(
    private readonly regs: RegisterFile,
    private readonly unitName: string,
    private readonly events: EventStream,
    cap: VtdCap,
  ) {
    this.base = faultRecordingOffset(cap);
    this.count = faultRecordingCount(cap);
    regs.set(Reg.FECTL, 0, 0x8000_0000); // interrupts masked until software unmasks them
    regs.claimRange(this.base, this.count * 16, (v, offset) => this.writeRecordRegister(offset, v), (offset) => this.recordName(offset), 64);
    regs.claim(Reg.FSTS, (v) => this.writeStatus(v.lo));
    regs.computed(Reg.FSTS, () => new U64(0, this.status()));
    regs.claim(Reg.FECTL, (v) => regs.set(Reg.FECTL, 0, (v.lo & 0x8000_0000) | (regs.get(Reg.FECTL).lo & 0x4000_0000)));
  }

  /** Writes a translation fault into the next fault recording register; returns its index, or -1 on overflow (PFO). */
  record(q: Req, reason: number): number {
    // qword 0: FI (the faulting page); qword 1: SID, PRIV 29, EXE 30, PP 31 | FR 39:32, PV 59:40, AT 61:60, T 62, F 63
    const lo1 = (q.sid & 0xffff) | (q.hasPasid && q.priv ? 1 << 29 : 0) | (q.hasPasid && q.exec ? 1 << 30 : 0) | (q.hasPasid ? 1 << 31 : 0);
    const at = q.kind === 'translation-request' ? 1 : q.kind === 'translated' ? 2 : 0;
    const hi1 = (reason & 0xff) | ((q.hasPasid ? q.pasid & 0xf_ffff : 0) << 8) | (at << 28) | (q.write ? 0 : 1 << 30);
    return this.writeRecord(q.hi, (q.lo & 0xffff_f000) >>> 0, lo1, hi1);
  }

  /**
   * Fills the next fault recording register with the two qwords (as 32-bit halves) and sets F; raises the
   * fault event unless masked. Returns the register index, or -1 when it is still full (PFO set instead).
   */
  writeRecord(qw0hi: number, qw0lo: number, qw1lo: number, qw1hi: number): number {
    const i = this.next;
    const off = this.base + i * 16;
    if ((this.regs.get(off + 8).hi >>> 31) & 1) {
      this.regs.setBit(Reg.FSTS, FSTS.PFO, true);
      return -1;
    }
    this.regs.set(off, qw0hi, qw0lo);
    this.regs.set(off + 8, qw1hi | (1 << 31), qw1lo);
    this.next = (i + 1) % this.count;
    this.raiseFaultEvent();
    return i;
  }

  /** The fault event interrupt (faults and invalidation errors share it): IP set, unless masked or already pending. */
  raiseFaultEvent(): void {
    const fectl = this.regs.get(Reg.FECTL).lo;
    if (!(fectl & 0x8000_0000) && !(fectl & 0x4000_0000)) {
      this.regs.set(Reg.FECTL, 0, fectl | 0x4000_0000);
      if (this.events.active) this.events.emit({ type: 'interrupt', unit: this.unitName, source: 'fault-event' });
    }
  }

  /** Sets an FSTS status bit (the invalidation queue's IQE, ICE, ITE). */
  setStatus(bit: number): void {
    this.regs.setBit(Reg.FSTS, bit, true);
  }

  /** FSTS as stored (IQE, ITE, ... as the hardware set them; PPF and FRI are computed on reads). */
  get statusBits(): number {
    return this.regs.get(Reg.FSTS).lo;
  }

  /** The pending fault records, oldest first (what Linux's fault handler reads). */
  pending(): PendingFault[] {
    const out = [];
    for (let k = 0; k < this.count; k++) {
      const i = (this.next + k) % this.count;
      const lo = this.regs.get(this.base + i * 16);
      const hi = this.regs.get(this.base + i * 16 + 8);
      if (!((hi.hi >>> 31) & 1)) continue;
      const pp = (hi.lo >>> 31) & 1;
      out.push({
        index: i,
        sid: hi.lo & 0xffff,
        pasid: pp ? (hi.hi >>> 8) & 0xf_ffff : null,
        address: new U64(lo.hi, lo.lo),
        reason: hi.hi & 0xff,
        write: ((hi.hi >>> 30) & 1) === 0,
        exec: ((hi.lo >>> 30) & 1) === 1,
        priv: ((hi.lo >>> 29) & 1) === 1,
        type: (hi.hi >>> 28) & 3,
      });
    }
    return out;
  }

  private recordName(offset: number): string {
    const i = Math.floor((offset - this.base) / 16);
    return `FRCD${i}_${offset % 16 === 0 ? 'LO' : 'HI'}`;
  }

  private writeRecordRegister(offset: number, v: U64): void {
    // Only F (bit 127 = bit 31 of the top dword) is writable: write 1 to clear.
    if ((offset - this.base) % 16 !== 8 || !((v.hi >>> 31) & 1)) return;
    const r = this.regs.get(offset);
    this.regs.set(offset, r.hi & 0x7fff_ffff, r.lo);
  }

  private writeStatus(value: number): void {
    // Write 1 to clear PFO, IQE, ICE, ITE (and PRO on old parts). PPF reflects the F bits.
    const r = this.regs.get(Reg.FSTS);
    const clear = value & ((1 << FSTS.PFO) | (1 << FSTS.IQE) | (1 << FSTS.ICE) | (1 << FSTS.ITE) | (1 << FSTS.PRO));
    this.regs.set(Reg.FSTS, 0, r.lo & ~clear);
    if (clear & (1 << FSTS.ITE)) this.onQueueErrorCleared(); // the queue resumes once ITE is cleared
    if (clear & (1 << FSTS.IQE)) this.onQueueErrorCleared();
  }

  /** FSTS with PPF computed from the F bits and FRI pointing at the oldest pending record. */
  private status(): number {
    let v = this.regs.get(Reg.FSTS).lo & ~((1 << FSTS.PPF) | 0xff00);
    for (let k = 0; k < this.count; k++) {
      const i = (this.next + k) % this.count;
      if ((this.regs.get(this.base + i * 16 + 8).hi >>> 31) & 1) {
        v |= (1 << FSTS.PPF) | (i << 8);
        break;
      }
    }
    return v >>> 0;
  }
}

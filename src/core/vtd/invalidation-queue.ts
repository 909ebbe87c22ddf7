import type { Endpoint } from '../hw/endpoint';
import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import { U64 } from '../u64';
import type { IotlbBucket } from './caches';
import type { VtdCap, VtdEcap } from './cap';
import { atsInvalidationRange, decodeDescriptor, DescType, IQEI, type IqeInfo } from './descriptors';
import type { FaultRecorder } from './fault-recording';
import type { InterruptRemapper } from './interrupt-remap';
import { invalidateContextCache, invalidateIotlb, psiRange } from './invalidation';
import type { PageRequestQueue } from './page-requests';
import { readableAt, readWords } from './reads';
import type { RegisterFile } from './register-file';
import { FSTS, GSTS, ICS, Reg, RTADDR_TTM_SCALABLE } from './registers';
import { TWO_32 } from './request';
import { rawWords } from './structures';
import type { Translation } from './translation';
import type { VtdDescriptorEvent, VtdTraps } from './traps';
import { bdf } from './walk-steps';

/**
 * The invalidation queue: IQA (base, size, descriptor width), IQH and IQT, descriptors fetched from memory
 * and executed in order against the translation caches, the interrupt entry cache, device TLBs and page
 * request groups; invalidation errors (IQE with IQERCD.IQEI, ITE, ICE) in FSTS, and invalidation wait
 * completion (status write, ICS.IWC).
 */
export class InvalidationQueue {
  /** The VMM's hooks (traps.ts), or null: then a descriptor costs one null check more. */
  traps: VtdTraps | null = null;
  private readonly hawLimit: number;

  constructor(
    private readonly regs: RegisterFile,
    private readonly memory: PhysicalMemory,
    private readonly events: EventStream,
    private readonly unitName: string,
    private readonly cap: VtdCap,
    private readonly ecap: VtdEcap,
    private readonly t: Translation,
    private readonly faults: FaultRecorder,
    private readonly ir: InterruptRemapper,
    private readonly prq: PageRequestQueue,
    private readonly endpointOf: (sid: number) => Endpoint | undefined,
  ) {
    this.hawLimit = 2 ** memory.hostAddressWidth;
    regs.readOnly(Reg.IQH);
    // QT is bits 18:4; bits 3:0 and 63:19 are reserved (read-only 0).
    regs.claim(Reg.IQT, (v) => {
      regs.set(Reg.IQT, 0, v.lo & 0x7_fff0);
      this.process();
    });
    regs.claim(Reg.ICS, (v) => {
      if (v.lo & 1) regs.setBit(Reg.ICS, ICS.IWC, false);
    });
    faults.onQueueErrorCleared = () => this.process();
  }

  /** Queued invalidation was enabled (GCMD.QIE set while GSTS.QIES was clear): the head starts at 0. */
  enabled(): void {
    this.regs.set(Reg.IQH, 0, 0);
  }

  /** Queue geometry from IQA: base, descriptor size (16 or 32 bytes), number of entries. */
  get geometry(): { base: number; descSize: 16 | 32; entries: number; head: number; tail: number } {
    const iqa = this.regs.get(Reg.IQA);
    const descSize = (iqa.lo >>> 11) & 1 ? 32 : 16;
    const bytes = 4096 * 2 ** (iqa.lo & 7);
    return {
      base: iqa.hi * TWO_32 + ((iqa.lo & 0xffff_f000) >>> 0),
      descSize,
      entries: bytes / descSize,
      head: this.regs.get(Reg.IQH).lo / descSize,
      tail: this.regs.get(Reg.IQT).lo / descSize,
    };
  }

  /**
   * Fetches and executes descriptors from IQH to IQT, stopping at an invalid one (IQE, IQH left on it, the
   * reason in IQERCD.IQEI: the table at IQEI in descriptors.ts) or a device-TLB time-out (ITE).
   */
  process(): void {
    if (!this.regs.bit(Reg.GSTS, GSTS.QIES)) return;
    const fsts = this.regs.get(Reg.FSTS).lo;
    if (fsts & ((1 << FSTS.IQE) | (1 << FSTS.ITE))) return;
    const q = this.geometry;
    const words = q.descSize === 32 ? 4 : 2;
    const tail = this.regs.get(Reg.IQT).lo;
    const iqh = this.regs.get(Reg.IQH).lo / q.descSize;
    if (tail % q.descSize !== 0) {
      // Only possible with 256-bit descriptors: IQT bit 4 set while IQA.DW = 1.
      this.queueError('IQE', iqh, `IQT 0x${tail.toString(16)} is not on a 256-bit descriptor boundary (IQA.DW = 1)`, { iqei: IQEI.TAIL_MISALIGNED });
      return;
    }
    if (tail / q.descSize >= q.entries) {
      this.queueError('IQE', iqh, `IQT 0x${tail.toString(16)} is beyond the ${q.entries}-entry queue`, { iqei: IQEI.INVALID_TAIL });
      return;
    }
    let head = iqh;
    while (head !== tail / q.descSize) {
      // A reserved TTM leaves the descriptor set undefined (legacy and scalable mode take different ones).
      if (this.t.lookup.ttm > RTADDR_TTM_SCALABLE) {
        this.queueError('IQE', head, `RTADDR.TTM ${this.t.lookup.ttm.toString(2).padStart(2, '0')}b latched by SRTP is reserved`, { iqei: IQEI.INVALID_TTM });
        return;
      }
      // Scalable mode takes 256-bit descriptors only: with IQA.DW = 0 every descriptor is invalid.
      if (this.t.lookup.scalable && words === 2) {
        this.queueError('IQE', head, `128-bit descriptor at index ${head} while the unit is in scalable mode (IQA.DW = 0)`, { iqei: IQEI.INVALID_WIDTH });
        return;
      }
      const addr = q.base + head * q.descSize;
      if (!readableAt(this.memory, this.hawLimit, addr)) {
        this.queueError('IQE', head, `descriptor at index ${head} (0x${addr.toString(16)}) cannot be read`, { iqei: IQEI.FETCH_ERROR });
        return;
      }
      const w = readWords(this.memory, addr, words);
      const d = decodeDescriptor(w, words as 2 | 4);
      if (d.invalid) {
        this.queueError('IQE', head, `${d.name} at index ${head}: ${d.invalid}`, { iqei: d.iqei ?? IQEI.RESERVED_FIELD });
        return;
      }
      const traps = this.traps;
      let result: 'ok' | 'timeout' | 'invalid' | 'handled';
      if (traps === null) result = this.execute(d.type, d.fields, head, w, d);
      else {
        const ev = descriptorEvent(head, d, w);
        result = traps.descriptor?.(ev) === 'handled' ? 'handled' : this.execute(d.type, d.fields, head, w, d);
        if (result === 'ok') traps.descriptorDone?.(ev);
      }
      if (result === 'invalid') return; // IQE: IQH stays on the descriptor
      head = (head + 1) % q.entries;
      this.regs.set(Reg.IQH, 0, head * q.descSize);
      if (result === 'timeout') return;
    }
  }

  /**
   * Records an invalidation error: the FSTS bit, then IQERCD as the spec lays it out (IQEI [3:0] for IQE,
   * ITESID [47:32] for ITE, ICESID [63:48] for ICE; Linux reads them with DMAR_IQER_REG_IQEI/_ITESID/_ICESID),
   * then the fault event interrupt unless masked or already pending.
   */
  private queueError(error: 'IQE' | 'ITE' | 'ICE', index: number, message: string, o: { iqei?: IqeInfo; sid?: number } = {}): void {
    const { sid } = o;
    this.faults.setStatus(error === 'IQE' ? FSTS.IQE : error === 'ITE' ? FSTS.ITE : FSTS.ICE);
    const iqer = this.regs.get(Reg.IQER);
    const iqei = o.iqei ?? IQEI.NOT_AVAILABLE;
    if (error === 'IQE') this.regs.set(Reg.IQER, iqer.hi, (iqer.lo & ~0xf) | iqei);
    if (error === 'ITE' && sid !== undefined) this.regs.set(Reg.IQER, (iqer.hi & 0xffff_0000) | sid, iqer.lo);
    if (error === 'ICE' && sid !== undefined) this.regs.set(Reg.IQER, ((iqer.hi & 0xffff) | (sid << 16)) >>> 0, iqer.lo);
    if (this.events.active) this.events.emit({ type: 'queue-error', unit: this.unitName, error, index, ...(error === 'IQE' ? { iqei } : {}), message, ...(sid !== undefined ? { sid } : {}) });
    this.faults.raiseFaultEvent();
  }

  private execute(type: number, f: Record<string, number>, index: number, words: number[], d: ReturnType<typeof decodeDescriptor>): 'ok' | 'timeout' | 'invalid' {
    const dropped: Record<string, number> = {};
    let status: 'ok' | 'timeout' = 'ok';
    let completionInterrupt = false;
    const add = (k: string, n: number) => (dropped[k] = (dropped[k] ?? 0) + n);
    switch (type) {
      case DescType.CONTEXT_CACHE: {
        add('context-cache', invalidateContextCache(this.t.lookup, f.G!, f.DID!, f.SID!, f.FM!));
        break;
      }
      case DescType.IOTLB: {
        const range = f.G === 3 ? psiRange(f.ADDR!, f.AM!, f.IH!) : undefined;
        if (range && (f.AM! > this.cap.mamv || range.base % range.size !== 0)) {
          this.queueError('IQE', index, `IOTLB invalidation: address 0x${range.base.toString(16)} is not aligned to 2^AM pages or AM > CAP.MAMV`, { iqei: IQEI.RESERVED_FIELD });
          return 'invalid';
        }
        const n = invalidateIotlb(this.t.iotlb, f.G!, f.DID!, range);
        add('iotlb', n.iotlb);
        add('paging-structure-cache', n.pwc);
        break;
      }
      case DescType.PASID_IOTLB: {
        const select = (b: IotlbBucket) => b.did === f.DID && b.pasid === f.PASID && (b.mode === 'fl' || b.mode === 'nested');
        const n = this.t.iotlb.invalidate(select, f.G === 3 ? psiRange(f.ADDR!, f.AM!, f.IH!) : undefined);
        add('iotlb', n.iotlb);
        add('paging-structure-cache', n.pwc);
        break;
      }
      case DescType.PASID_CACHE: {
        add('pasid-cache', this.t.lookup.dropPasids((e) => f.G === 3 || ((e.did === f.DID || e.fault !== 0) && (f.G === 0 || e.pasid === f.PASID))));
        break;
      }
      case DescType.DEVICE_TLB:
      case DescType.PASID_DEVICE_TLB: {
        const sid = f.SID!;
        const ep = this.endpointOf(sid);
        if (ep?.invalidationTimeout) {
          this.queueError('ITE', index, `device-TLB invalidation for ${bdf(sid)} timed out`, { sid });
          status = 'timeout';
          break;
        }
        if (ep) {
          const r = f.S === 1 && allOnesBelow(f.ADDR!) ? { base: 0, size: 2 ** 64 } : atsInvalidationRange(f.ADDR! * 4096, f.S!);
          const n = type === DescType.DEVICE_TLB ? ep.invalidate(-1, r.base, r.size) : ep.invalidate(f.PASID!, r.base, r.size, f.G === 1);
          add('device-tlb', n);
        }
        break;
      }
      case DescType.WAIT: {
        if (f.SW) this.memory.write32(f.ADDR! * 4, f.STATUS!, 'inv-wait-status');
        if (f.IF) {
          this.regs.setBit(Reg.ICS, ICS.IWC, true);
          completionInterrupt = true;
        }
        break;
      }
      case DescType.IEC: {
        // Global (G = 0), or index-selective (G = 1): the 2^IM entries from IIDX with its IM low bits cleared.
        if (f.G === 1 && f.IM! > this.ecap.mhmv) {
          this.queueError('IQE', index, `IEC invalidation: IM ${f.IM} is above ECAP.MHMV ${this.ecap.mhmv}`, { iqei: IQEI.RESERVED_FIELD });
          return 'invalid';
        }
        add('interrupt-entry-cache', this.ir.invalidate(f.G === 0, f.IIDX!, f.IM!));
        break;
      }
      case DescType.PAGE_GROUP_RESPONSE: {
        add('page-request-groups', this.prq.respond(f.RID!, f.PP ? f.PASID! : -1, f.PRGI!, f.RC!) ? 1 : 0);
        break;
      }
    }
    if (this.events.active) {
      this.events.emit({
        type: 'invalidation',
        unit: this.unitName,
        index,
        descriptorType: d.name,
        granularity: d.granularity,
        words: rawWords(words, words.length / 2),
        fields: f,
        dropped,
      });
      if (completionInterrupt) this.events.emit({ type: 'interrupt', unit: this.unitName, source: 'invalidation-completion' });
    }
    return status;
  }
}

function descriptorEvent(index: number, d: ReturnType<typeof decodeDescriptor>, w: number[]): VtdDescriptorEvent {
  const qwords: U64[] = [];
  for (let i = 0; i < w.length; i += 2) qwords.push(new U64(w[i + 1]!, w[i]!));
  return { index, type: d.type, typeName: d.name, qwords, fields: d.fields };
}

/** Whether an ATS-style address has every bit from 12 to 62 set: "invalidate everything" with S = 1. */
function allOnesBelow(pageField: number): boolean {
  return pageField >= 2 ** 51 - 1;
}

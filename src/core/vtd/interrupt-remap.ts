import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import type {
  InterruptDelivery,
  InterruptFault,
  InterruptPassThrough,
  InterruptPosted,
  InterruptRemapped,
  InterruptRequest,
  InterruptResult,
  StaleUse,
  WalkStep,
} from '../hw/types';
import { hexPad } from '../u64';
import { firstMismatch, type Verified } from './caches';
import { FAULT_REASONS, FR_PID_ACCESS, FR_PID_RESERVED, linuxFaultReason } from './fault-reasons';
import { decodePiDescriptor, piDescriptorProblems, post, readPiDescriptor } from './posted-interrupt';
import { GSTS } from './registers';
import { decodeEntry, IRTE_POSTED, IRTE_REMAPPED, type Layout, rawWords, reservedViolations } from './structures';

/**
 * VT-d interrupt remapping (spec chapter 5): what the hardware does with a DWORD write to 0xfeeXXXXX.
 *
 * - Remapping off (GSTS.IRES = 0): every request passes through, read as compatibility format.
 * - Compatibility format (address bit 4 = 0): passes through when GSTS.CFIS = 1 and IRTA.EIME = 0, else it is
 *   blocked (fault 0x25).
 * - Remappable format (address bit 4 = 1): handle = address[19:5] | address[2] << 15; with SHV (bit 3) the
 *   data's low 16 bits are a subhandle added to it, and data[31:16] are reserved (0x20). The index must be
 *   inside the table IRTA latched, 2^(S+1) entries (0x21); the entry is read from the table (0x23 when the
 *   read fails), must be present (0x22) with no reserved bit set, including the conditionally reserved ones:
 *   destination bits an xAPIC-mode unit does not use, reserved delivery modes and SVT, the posted format on a
 *   unit without CAP.PI (0x24); then the requester is checked against SID/SQ/SVT (0x26). A remapped-format
 *   entry then gives the delivery; a posted-format one (IM = 1) has its vector posted to the descriptor at
 *   its PDA (posted-interrupt.ts: PIR, ON, the notification event), which must be accessible (0x27) and
 *   free of reserved bits (0x28). 0x22, 0x24, 0x26, 0x27 and 0x28 are qualified: the entry's FPD suppresses
 *   recording.
 *
 * Faults are recorded in the fault recording registers like DMA faults, with the interrupt index in FI bits
 * 63:48 (Linux prints `fault index 0x%llx` from `addr >> 48`) and T = 0. Entries are cached in the interrupt
 * entry cache (IEC), which only an IEC invalidation (or SIRTP on a unit with CAP.ESIRTPS) empties; a cached
 * entry whose memory changed is still used, and the use is reported as stale.
 */

export const INTERRUPT_ADDRESS_BASE = 0xfee0_0000;
export const INTERRUPT_ADDRESS_LAST = 0xfeef_ffff;

/** Remappable-format address bits: interrupt format (4), subhandle valid (3), handle bit 15 (2). */
export const MSI_ADDR = { FORMAT: 1 << 4, SHV: 1 << 3, HANDLE15: 1 << 2 } as const;

/** IRTE.SQ: which requester-ID bits are compared under SVT = 01b (function bits ignored from bit 2 down). */
const SQ_MASKS = [0xffff, 0xfffb, 0xfff9, 0xfff8] as const;
const SQ_TEXT = ['all 16 bits', 'all but bit 2', 'all but bits 2:1', 'all but bits 2:0'] as const;

const DELIVERY_MODES: readonly InterruptDelivery['deliveryMode'][] = ['fixed', 'lowest-priority', 'smi', 'reserved', 'nmi', 'init', 'reserved', 'extint'];

/** The message a device uses for IRTE `index` in remappable format, with SHV and a subhandle (as Linux's fill_msi_msg). */
export function remappableMsi(index: number, subhandle = 0, shv = true): { address: number; data: number } {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) throw new RangeError(`interrupt handle ${index} is not 16-bit`);
  const address = INTERRUPT_ADDRESS_BASE | ((index & 0x7fff) << 5) | MSI_ADDR.FORMAT | (shv ? MSI_ADDR.SHV : 0) | (((index >>> 15) & 1) << 2);
  return { address: address >>> 0, data: shv ? subhandle & 0xffff : 0 };
}

/** A compatibility-format message (Intel 64 MSI: destination in address[19:12], vector and delivery mode in the data). */
export function compatibilityMsi(d: { vector: number; destination: number; destinationMode?: 'physical' | 'logical'; redirectionHint?: boolean; deliveryMode?: number; triggerMode?: 'edge' | 'level' }): { address: number; data: number } {
  const address = INTERRUPT_ADDRESS_BASE | ((d.destination & 0xff) << 12) | (d.redirectionHint ? 8 : 0) | (d.destinationMode === 'logical' ? 4 : 0);
  const level = d.triggerMode === 'level';
  const data = (d.vector & 0xff) | ((d.deliveryMode ?? 0) << 8) | (level ? (1 << 14) | (1 << 15) : 0);
  return { address: address >>> 0, data };
}

/** The delivery a compatibility-format request asks for, read from its address and data. */
export function compatibilityDelivery(address: number, data: number): InterruptDelivery {
  return {
    vector: data & 0xff,
    destination: (address >>> 12) & 0xff,
    destinationMode: address & 4 ? 'logical' : 'physical',
    deliveryMode: DELIVERY_MODES[(data >>> 8) & 7]!,
    triggerMode: (data >>> 15) & 1 ? 'level' : 'edge',
    redirectionHint: (address & 8) !== 0,
  };
}

/** What the unit around the remapper provides. */
export interface IrHost {
  readonly name: string;
  readonly memory: PhysicalMemory;
  readonly events: EventStream;
  /** ECAP.IR / ECAP.EIM, CAP.PI / CAP.ESIRTPS. */
  readonly features: { readonly ir: boolean; readonly eim: boolean; readonly pi: boolean; readonly esirtps: boolean };
  gsts(): number;
  readable(addr: number): boolean;
  /** Fills the next fault recording register (F is set by it); returns its index, or -1 on overflow (PFO). */
  recordFault(qw0hi: number, qw0lo: number, qw1lo: number, qw1hi: number): number;
}

interface IecEntry extends Verified {
  readonly index: number;
  /** The interrupt-remapping table the entry was read from (what IRTA held when it was cached). */
  readonly table: number;
  readonly entryAddr: number;
  /** The entry as 4 words, memory order. */
  readonly words: readonly number[];
}

export interface InterruptRemapState {
  readonly table: number;
  readonly entries: number;
  readonly eime: boolean;
  readonly iec: readonly IecEntry[];
}

export class InterruptRemapper {
  /** Latched by SIRTP: the table, its size (2^(S+1) entries) and the extended interrupt mode. */
  table = 0;
  entries = 2;
  eime = false;
  private iec = new Map<number, IecEntry>();
  private stale: StaleUse | undefined;
  private reads = 0;

  constructor(
    private readonly host: IrHost,
    private readonly iecCapacity = 256,
  ) {}

  /** GCMD.SIRTP: takes IRTA's address, size and EIME (EIME is reserved without ECAP.EIM). */
  latch(irtaHi: number, irtaLo: number): void {
    this.table = irtaHi * 0x1_0000_0000 + ((irtaLo & 0xffff_f000) >>> 0);
    this.entries = 2 ** ((irtaLo & 0xf) + 1);
    this.eime = this.host.features.eim && ((irtaLo >>> 11) & 1) === 1;
    // With ESIRTPS, setting the table pointer also invalidates the interrupt entry cache.
    if (this.host.features.esirtps) this.dropAll();
  }

  get iecSize(): number {
    return this.iec.size;
  }

  /** The IEC's cached entries, by index (for views and tests). */
  cachedIndices(): number[] {
    return [...this.iec.keys()].sort((a, b) => a - b);
  }

  /**
   * The Interrupt Entry Cache Invalidation descriptor: global (G = 0), or index-selective (G = 1) over the
   * 2^IM entries from IIDX with its IM low bits cleared. Returns how many entries were dropped.
   */
  invalidate(global: boolean, iidx: number, im: number): number {
    if (global) return this.dropAll();
    const size = 2 ** im;
    const first = Math.floor(iidx / size) * size;
    let n = 0;
    for (const [index, e] of this.iec) {
      if (index >= first && index < first + size) {
        e.valid = false;
        this.iec.delete(index);
        n++;
      }
    }
    return n;
  }

  private dropAll(): number {
    const n = this.iec.size;
    for (const e of this.iec.values()) e.valid = false;
    this.iec.clear();
    return n;
  }

  capture(): InterruptRemapState {
    return { table: this.table, entries: this.entries, eime: this.eime, iec: [...this.iec.values()].map((e) => ({ ...e, deps: e.deps.slice() })) };
  }

  restore(s: InterruptRemapState | undefined): void {
    this.table = s?.table ?? 0;
    this.entries = s?.entries ?? 2;
    this.eime = s?.eime ?? false;
    this.iec = new Map((s?.iec ?? []).map((e) => [e.index, { ...e, deps: e.deps.slice() }]));
  }

  /** Resets the cache (a register file loaded from a dump says nothing about it). */
  clearCache(): void {
    this.dropAll();
  }

  /**
   * Processes one interrupt request. `probe`: no cache read or filled, no fault recorded (views, stale checks).
   */
  run(req: InterruptRequest, trace: WalkStep[] | null, probe: boolean): InterruptResult {
    const address = req.address;
    if (!Number.isInteger(address) || address < INTERRUPT_ADDRESS_BASE || address > INTERRUPT_ADDRESS_LAST) {
      throw new RangeError(`0x${address.toString(16)} is not in the interrupt address range 0xfee00000-0xfeefffff`);
    }
    const data = req.data >>> 0;
    const sid = req.sid & 0xffff;
    this.stale = undefined;
    this.reads = 0;
    const gsts = this.host.gsts();
    const remappable = (address & MSI_ADDR.FORMAT) !== 0;

    if (!this.host.features.ir || !((gsts >>> GSTS.IRES) & 1)) {
      const d = compatibilityDelivery(address, data);
      if (trace) trace.push(requestStep(address, data, null, `GSTS.IRES = 0: interrupt remapping is off, so the request is read as compatibility format and passes through${remappable ? ' (its remappable-format bit is ignored)' : ''}`, true));
      return this.passThrough(d, 'remapping-disabled', trace);
    }

    if (!remappable) {
      const cfis = ((gsts >>> GSTS.CFIS) & 1) === 1;
      if (this.eime || !cfis) {
        if (trace) trace.push(requestStep(address, data, null, `compatibility-format request blocked: ${this.eime ? 'IRTA.EIME = 1 (x2APIC mode)' : 'GSTS.CFIS = 0'}`, false));
        return this.fault(req, 0x25, 0, false, trace, probe);
      }
      if (trace) trace.push(requestStep(address, data, null, 'compatibility-format request with GSTS.CFIS = 1 and IRTA.EIME = 0: passes through, not remapped', true));
      return this.passThrough(compatibilityDelivery(address, data), 'compatibility-format', trace);
    }

    // Remappable format.
    const handle = ((address >>> 5) & 0x7fff) | (((address >>> 2) & 1) << 15);
    const shv = (address & MSI_ADDR.SHV) !== 0;
    const subhandle = shv ? data & 0xffff : 0;
    const index = handle + subhandle;
    const decoded = { handle, shv, subhandle, index };
    if (shv && data >>> 16 !== 0) {
      if (trace) trace.push(requestStep(address, data, decoded, `reserved bits set: data[31:16] = 0x${(data >>> 16).toString(16)} must be 0 with SHV = 1`, false));
      return this.fault(req, 0x20, index, false, trace, probe);
    }
    if (index >= this.entries) {
      if (trace) trace.push(requestStep(address, data, decoded, `index ${index} (0x${index.toString(16)}) is beyond the ${this.entries}-entry table (IRTA.S = ${Math.log2(this.entries) - 1})`, false));
      return this.fault(req, 0x21, index, false, trace, probe);
    }
    if (trace) trace.push(requestStep(address, data, decoded, `remappable format: handle 0x${handle.toString(16)}${shv ? ` + subhandle 0x${subhandle.toString(16)}` : ''} = index ${index}`, true));

    // The entry: from the interrupt entry cache, or from the table.
    const useCache = !probe;
    const cached = useCache ? this.iec.get(index) : undefined;
    let words: readonly number[];
    let entryAddr: number;
    let entryTable = this.table;
    let source: 'walk' | 'interrupt-entry-cache';
    if (cached !== undefined && cached.valid) {
      this.checkStale(cached);
      words = cached.words;
      entryAddr = cached.entryAddr;
      entryTable = cached.table;
      source = 'interrupt-entry-cache';
    } else {
      entryAddr = this.table + index * 16;
      if (!this.host.readable(entryAddr)) {
        if (trace) trace.push({ structure: 'ir-table', table: '0x' + this.table.toString(16), index, entryAddress: '0x' + entryAddr.toString(16), raw: [], fields: {}, check: `the entry at 0x${entryAddr.toString(16)} cannot be read (IRTA points at 0x${this.table.toString(16)})`, ok: false });
        return this.fault(req, 0x23, index, false, trace, probe);
      }
      const m = this.host.memory;
      words = [m.readLo(entryAddr), m.readHi(entryAddr), m.readLo(entryAddr + 8), m.readHi(entryAddr + 8)];
      this.reads++;
      source = 'walk';
    }
    const lo0 = words[0]!;
    const hi0 = words[1]!;
    const lo1 = words[2]!;
    const present = (lo0 & 1) === 1;
    const fpd = (lo0 & 2) === 2;
    const posted = ((lo0 >>> 15) & 1) === 1;
    const layout = posted && this.host.features.pi ? IRTE_POSTED : IRTE_REMAPPED;
    const step = (check: string, ok: boolean) => {
      if (trace) trace.push(irteStep(layout, entryTable, index, entryAddr, words, check, ok, source === 'interrupt-entry-cache'));
    };

    if (!present) {
      step(`P = 0: interrupt-remapping entry ${index} is not present`, false);
      return this.fault(req, 0x22, index, fpd, trace, probe);
    }
    const bad = this.entryProblems(layout, words, posted);
    if (bad.length) {
      step(`reserved bits set: ${bad.join(', ')}`, false);
      return this.fault(req, 0x24, index, fpd, trace, probe);
    }
    if (useCache && source === 'walk') this.fill(index, entryAddr, words);

    // Source-id verification.
    const svt = (lo1 >>> 18) & 3;
    const sq = (lo1 >>> 16) & 3;
    const expected = lo1 & 0xffff;
    let sidCheck = 'SVT = 00b: the requester is not verified';
    if (svt === 1) {
      const mask = SQ_MASKS[sq]!;
      sidCheck = `SVT = 01b: requester ${bdf(sid)} ${(expected & mask) === (sid & mask) ? 'matches' : 'does not match'} SID ${bdf(expected)} (SQ = ${sq}: ${SQ_TEXT[sq]})`;
      if ((expected & mask) !== (sid & mask)) {
        step(sidCheck, false);
        return this.fault(req, 0x26, index, fpd, trace, probe);
      }
    } else if (svt === 2) {
      const start = expected >>> 8;
      const end = expected & 0xff;
      const bus = sid >>> 8;
      const inside = bus >= start && bus <= end;
      sidCheck = `SVT = 10b: requester bus 0x${hexPad(bus, 2)} is ${inside ? 'within' : 'outside'} buses 0x${hexPad(start, 2)}-0x${hexPad(end, 2)}`;
      if (!inside) {
        step(sidCheck, false);
        return this.fault(req, 0x26, index, fpd, trace, probe);
      }
    }

    if (posted) {
      // PDA: PDA_H (qw1 63:32) is descriptor bits 63:32, PDA_L (qw0 63:38) bits 31:6.
      const descriptor = words[3]! * 0x1_0000_0000 + ((hi0 & 0xffff_ffc0) >>> 0);
      const vector = (lo0 >>> 16) & 0xff;
      const urgent = ((lo0 >>> 14) & 1) === 1;
      step(`${sidCheck}; posted format: vector 0x${hexPad(vector, 2)}${urgent ? ' (urgent)' : ''} to the descriptor at 0x${descriptor.toString(16)}`, true);
      return this.postTo(req, index, fpd, source, descriptor, vector, urgent, trace, probe);
    }
    const delivery: InterruptDelivery = {
      vector: (lo0 >>> 16) & 0xff,
      destination: this.eime ? hi0 >>> 0 : (hi0 >>> 8) & 0xff,
      destinationMode: lo0 & 4 ? 'logical' : 'physical',
      deliveryMode: DELIVERY_MODES[(lo0 >>> 5) & 7]!,
      triggerMode: lo0 & 0x10 ? 'level' : 'edge',
      redirectionHint: (lo0 & 8) !== 0,
    };
    step(`${sidCheck}; remapped: vector 0x${hexPad(delivery.vector, 2)} to ${this.eime ? 'x2APIC' : 'APIC'} ID 0x${delivery.destination.toString(16)} (${delivery.destinationMode}, ${delivery.deliveryMode}, ${delivery.triggerMode})`, true);
    const r: InterruptRemapped = { ok: true, outcome: 'remapped', index, source, ...delivery, reads: this.reads, ...this.extras(trace) };
    return r;
  }

  /**
   * Interrupt posting (posted-interrupt.ts): the atomic update of the descriptor at `descriptor`, or fault 0x27
   * (not accessible) or 0x28 (reserved bits set), both qualified by the IRTE's FPD. A probe writes nothing.
   */
  private postTo(req: InterruptRequest, index: number, fpd: boolean, source: InterruptPosted['source'], descriptor: number, vector: number, urgent: boolean, trace: WalkStep[] | null, probe: boolean): InterruptPosted | InterruptFault {
    const at = '0x' + descriptor.toString(16);
    // 64-byte aligned, so the descriptor never crosses a page: one check covers it.
    if (!this.host.readable(descriptor)) {
      if (trace) trace.push({ structure: 'posted-interrupt-descriptor', entryAddress: at, raw: [], fields: {}, check: `the posted-interrupt descriptor at ${at} (the entry's PDA) cannot be accessed`, ok: false });
      return this.fault(req, FR_PID_ACCESS, index, fpd, trace, probe);
    }
    const m = this.host.memory;
    const words = readPiDescriptor(m, descriptor);
    this.reads++;
    const pidStep = (check: string, ok: boolean): WalkStep => ({ structure: 'posted-interrupt-descriptor', entryAddress: at, raw: rawWords(words, 8), fields: decodePiDescriptor(words), check, ok });
    const bad = piDescriptorProblems(words, this.eime);
    if (bad.length) {
      if (trace) trace.push(pidStep(`reserved bits set: ${bad.join(', ')}`, false));
      return this.fault(req, FR_PID_RESERVED, index, fpd, trace, probe);
    }
    const p = post(words, vector, urgent, this.eime);
    if (!probe) {
      for (const q of p.changed) m.write64(descriptor + q * 8, p.after[q * 2 + 1]!, p.after[q * 2]!, q === 4 ? 'pi-desc.control' : `pi-desc.pir[${q}]`);
    }
    if (trace) trace.push(pidStep(probe ? `${p.text} (probe: the descriptor is not written)` : p.text, true));
    const events = this.host.events;
    if (!probe && events.active) events.emit({ type: 'posted-interrupt', unit: this.host.name, sid: req.sid & 0xffff, index, descriptor: at, vector, urgent, ...p.outcome });
    return { ok: true, outcome: 'posted', index, source, descriptor: at, vector, urgent, ...p.outcome, reads: this.reads, ...this.extras(trace) };
  }

  /** Reserved bits of the layout, and the fields that are reserved only in some configurations. */
  private entryProblems(layout: Layout, words: readonly number[], posted: boolean): string[] {
    const bad = reservedViolations(layout, words).slice();
    const lo0 = words[0]!;
    const hi0 = words[1]!;
    const lo1 = words[2]!;
    if (posted && !this.host.features.pi) bad.push('IM = 1 (posted format) without CAP.PI');
    if (!posted) {
      if (!this.eime && (hi0 & 0xffff_00ff) !== 0) bad.push(`DST 0x${hexPad(hi0 >>> 0, 8)}: bits 7:0 and 31:16 are reserved in xAPIC mode (IRTA.EIME = 0)`);
      const dlm = (lo0 >>> 5) & 7;
      if (dlm === 3 || dlm === 6) bad.push(`DLM ${dlm.toString(2).padStart(3, '0')}b is a reserved delivery mode`);
    }
    if (((lo1 >>> 18) & 3) === 3) bad.push('SVT 11b is reserved');
    return bad;
  }

  private fill(index: number, entryAddr: number, words: readonly number[]): void {
    if (this.iec.size >= this.iecCapacity) {
      const oldest = this.iec.keys().next().value as number;
      this.iec.get(oldest)!.valid = false;
      this.iec.delete(oldest);
    }
    this.iec.set(index, {
      index,
      table: this.table,
      entryAddr,
      words: words.slice(),
      deps: [entryAddr, words[1]!, words[0]!, -1, entryAddr + 8, words[3]!, words[2]!, -1],
      verifiedAt: this.host.memory.writeCount,
      valid: true,
    });
  }

  /** A cached entry whose table moved (SIRTP) or whose memory changed since it was cached is a stale use. */
  private checkStale(e: IecEntry): void {
    const m = this.host.memory;
    if (e.table !== this.table) {
      const now = this.table + e.index * 16;
      this.stale = {
        cache: 'interrupt-entry-cache',
        entryAddress: '0x' + e.entryAddr.toString(16),
        cached: [hexPad(e.words[1]! >>> 0, 8) + hexPad(e.words[0]! >>> 0, 8), hexPad(e.words[3]! >>> 0, 8) + hexPad(e.words[2]! >>> 0, 8)],
        memory: [hexPad(m.readHi(now), 8) + hexPad(m.readLo(now), 8), hexPad(m.readHi(now + 8), 8) + hexPad(m.readLo(now + 8), 8)],
        message: `the interrupt-entry-cache entry for index ${e.index} was read from the table at 0x${e.table.toString(16)}, but IRTA now points at 0x${this.table.toString(16)}: the table pointer changed without the global IEC invalidation that must follow SIRTP`,
      };
      return;
    }
    if (e.verifiedAt === m.writeCount) return;
    const at = firstMismatch(m, e.deps);
    if (at < 0) {
      e.verifiedAt = m.writeCount;
      return;
    }
    const a = e.deps[at]!;
    const cachedWord = hexPad(e.deps[at + 1]! >>> 0, 8) + hexPad(e.deps[at + 2]! >>> 0, 8);
    const nowWord = hexPad(m.readHi(a), 8) + hexPad(m.readLo(a), 8);
    this.stale = {
      cache: 'interrupt-entry-cache',
      entryAddress: '0x' + a.toString(16),
      cached: [cachedWord],
      memory: [nowWord],
      message: `the interrupt-entry-cache entry for index ${e.index} was built from 0x${cachedWord} at 0x${a.toString(16)}, but memory now holds 0x${nowWord}: the IRTE changed without the IEC invalidation that would drop the cached copy`,
    };
  }

  private extras(trace: WalkStep[] | null): { stale?: StaleUse; trace?: WalkStep[] } {
    return { ...(this.stale ? { stale: this.stale } : {}), ...(trace ? { trace } : {}) };
  }

  private passThrough(d: InterruptDelivery, why: InterruptPassThrough['why'], trace: WalkStep[] | null): InterruptPassThrough {
    return { ok: true, outcome: 'pass-through', why, ...d, reads: 0, ...(trace ? { trace } : {}) };
  }

  private fault(req: InterruptRequest, reason: number, index: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): InterruptFault {
    const info = linuxFaultReason(reason);
    const qualified = FAULT_REASONS.get(reason)?.qualified ?? false;
    let outcome: 'recorded' | 'suppressed-fpd' | 'overflow' = 'recorded';
    let frcd: number | undefined;
    if (probe || (fpd && qualified)) outcome = 'suppressed-fpd';
    else {
      // FI: the interrupt index in bits 63:48, bits 47:12 clear. qword 1: SID, FR; T = 0, no PASID.
      frcd = this.host.recordFault((index & 0xffff) << 16, 0, req.sid & 0xffff, reason & 0xff);
      if (frcd < 0) {
        outcome = 'overflow';
        frcd = undefined;
      }
    }
    if (trace) {
      const why = outcome === 'suppressed-fpd' && !probe ? ' (not recorded: FPD is set in the entry)' : outcome === 'overflow' ? ' (not recorded: fault recording registers full, PFO set)' : '';
      // Codes Linux has no string for (posting's 0x27, 0x28) are explained in the catalogue's words.
      const text = info.text === 'Unknown' ? `${FAULT_REASONS.get(reason)?.meaning ?? 'Unknown'} (Linux prints "Unknown")` : info.text;
      trace.push({ structure: 'fault', raw: [], fields: {}, check: `fault reason 0x${reason.toString(16).padStart(2, '0')}: ${text}${why}`, ok: false });
    }
    const events = this.host.events;
    if (!probe && events.active) {
      events.emit({
        type: 'fault',
        unit: this.host.name,
        sid: req.sid & 0xffff,
        pasid: null,
        address: '0x' + req.address.toString(16),
        access: 'write',
        reason,
        reasonText: info.text,
        frcdIndex: frcd ?? null,
        outcome,
        interruptIndex: index & 0xffff,
        ...(trace ? { trace: trace.slice() } : {}),
      });
    }
    return {
      ok: false,
      outcome: 'fault',
      reason,
      reasonText: info.text,
      recorded: outcome === 'recorded',
      ...(reason !== 0x25 ? { index } : {}),
      ...(frcd !== undefined ? { frcdIndex: frcd } : {}),
      reads: this.reads,
      ...this.extras(trace),
    };
  }
}

function bdf(sid: number): string {
  return `${hexPad(sid >>> 8, 2)}:${hexPad((sid >>> 3) & 0x1f, 2)}.${sid & 7}`;
}

function requestStep(address: number, data: number, r: { handle: number; shv: boolean; subhandle: number; index: number } | null, check: string, ok: boolean): WalkStep {
  const fields: Record<string, number | boolean | string> = { address: '0x' + hexPad(address, 8), data: '0x' + hexPad(data, 8), format: r ? 'remappable' : 'compatibility' };
  if (r) Object.assign(fields, { handle: r.handle, SHV: r.shv, subhandle: r.subhandle, index: r.index });
  return { structure: 'interrupt-request', raw: [], fields, check, ok };
}

function irteStep(layout: Layout, table: number, index: number, entryAddr: number, words: readonly number[], check: string, ok: boolean, cached: boolean): WalkStep {
  return {
    structure: layout === IRTE_POSTED ? 'irte-posted' : 'irte',
    table: '0x' + table.toString(16),
    index,
    entryAddress: '0x' + entryAddr.toString(16),
    raw: rawWords(words, 2),
    fields: decodeEntry(layout, words),
    check: cached ? `from the interrupt entry cache; ${check}` : check,
    ok,
    ...(cached ? { cached: 'interrupt-entry-cache' as const } : {}),
  };
}

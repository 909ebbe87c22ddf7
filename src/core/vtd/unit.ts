import type { Endpoint } from '../hw/endpoint';
import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import type {
  DmaRequest,
  InterruptRequest,
  InterruptResult,
  IommuUnit,
  Permissions,
  PriRequest,
  StaleUse,
  TranslationFault,
  TranslationOk,
  TranslationResult,
  TranslateOptions,
  WalkStep,
} from '../hw/types';
import { POW2, U64, hexPad } from '../u64';
import {
  type ContextCacheEntry,
  type Deps,
  firstMismatch,
  Iotlb,
  type IotlbBucket,
  type PasidCacheEntry,
  Perm,
  type PwcEntry,
  type TlbEntry,
  type Verified,
} from './caches';
import { capabilitiesOf, decodeCap, decodeEcap, faultRecordingCount, faultRecordingOffset, type VtdCap, type VtdEcap, type VtdFeatures } from './cap';
import {
  atsInvalidationRange,
  decodeDescriptor,
  DescType,
  IQEI,
  type IqeInfo,
  encodePageRequest,
  responseCodeName,
} from './descriptors';
import { FAULT_REASONS, linuxFaultReason } from './fault-reasons';
import { InterruptRemapper, type InterruptRemapState } from './interrupt-remap';
import { FSTS, GCMD, GSTS, ICS, PRS, Reg, REG64, type RegName, RTADDR_TTM_SCALABLE } from './registers';
import {
  CONTEXT_LEGACY,
  CONTEXT_SCALABLE,
  decodeEntry,
  type Layout,
  PASID_DIR_ENTRY,
  PASID_ENTRY,
  PGTT,
  PGTT_NAMES,
  rawWords,
  reservedViolations,
  ROOT_LEGACY,
  ROOT_SCALABLE,
} from './structures';
import type { VtdDescriptorEvent, VtdRegisterWrite, VtdTraps } from './traps';
import { AD_SECOND_LEVEL, FL_CODES, LEGACY_SL, LEVEL_PAGES, NESTED_TABLE, NESTED_TOP, SM_SL, type SlFaultCodes, Walker } from './walk';

/**
 * One Intel VT-d remapping unit (a DRHD): its register file, its translation structures in simulated memory,
 * its caches, fault recording registers, invalidation queue and page request queue. Software (the driver model,
 * or a test) programs it only as real software does: by writing memory and registers.
 */

export interface VtdUnitConfig {
  /** Kernel name of the unit, e.g. `dmar0`. */
  readonly name: string;
  /** MMIO base of the register set, as the DMAR table and `reg_base_addr` give it. */
  readonly regBase?: number;
  /** PCI segment the unit serves (the DRHD's segment number). */
  readonly segment?: number;
  readonly version?: readonly [major: number, minor: number];
  /** Capabilities in words; or give `cap`/`ecap` to reproduce a real machine's registers exactly. */
  readonly features?: VtdFeatures;
  readonly cap?: U64;
  readonly ecap?: U64;
  /** Cache capacities (entries). */
  readonly iotlbEntries?: number;
  readonly pwcEntries?: number;
  /** false: no context, PASID, IOTLB or paging-structure caching at all (every request walks). */
  readonly caching?: boolean;
  /**
   * Cache not-present entries, as caching-mode hardware may (a vIOMMU advertises CM = 1 precisely so that
   * software invalidates after making entries present). Defaults to CAP.CM.
   */
  readonly cacheNotPresent?: boolean;
  /** Interrupt entry cache capacity (entries); 256 by default. */
  readonly iecEntries?: number;
}

/** A translation request in normalized form (numbers only). */
interface Req {
  sid: number;
  hasPasid: boolean;
  pasid: number;
  hi: number;
  lo: number;
  write: boolean;
  exec: boolean;
  priv: boolean;
  kind: 'untranslated' | 'translation-request' | 'translated';
}

const TWO_32 = 0x1_0000_0000;
const NO_DEPS: Deps = [];
const INTERRUPT_BASE = 0xfee0_0000;
const INTERRUPT_LAST = 0xfeef_ffff;
const NOT_PRESENT_FAULTS = new Set([0x01, 0x02, 0x05, 0x06, 0x39, 0x41, 0x51, 0x59, 0x71, 0x79]);

/** A register's value: 32-bit registers use `lo` only. */
type RegValue = { hi: number; lo: number };

export class VtdUnit implements IommuUnit {
  readonly vendor = 'intel' as const;
  readonly name: string;
  readonly regBase: number;
  readonly segment: number;
  readonly capRaw: U64;
  readonly ecapRaw: U64;
  readonly cap: VtdCap;
  readonly ecap: VtdEcap;
  readonly version: readonly [number, number];
  readonly caching: boolean;
  readonly cacheNotPresent: boolean;

  private readonly regs = new Map<number, RegValue>();
  private readonly walker: Walker;
  private readonly frcdBase: number;
  private readonly frcdCount: number;
  private frcdNext = 0;
  private endpointOf: (sid: number) => Endpoint | undefined = () => undefined;

  // Latched state (what GCMD made effective).
  private rootTable = 0;
  private scalable = false;
  /** RTADDR.TTM as SRTP last latched it: 00 legacy, 01 scalable; 10 and 11 are reserved here (no ECAP.ADMS). */
  private ttm = 0;
  /** GSTS.TES, kept as a field: it is read on every translation. */
  private tes = false;

  // Caches.
  private ctxCache: (ContextCacheEntry | undefined)[] = new Array(65536);
  private pasidCache = new Map<number, PasidCacheEntry>();
  readonly iotlb: Iotlb;

  /** Interrupt remapping: the latched IRTA and the interrupt entry cache (vtd/interrupt-remap.ts). */
  private readonly ir: InterruptRemapper;

  // Scratch for the hot path.
  private readonly adUpdates: number[] = [];
  private stale: StaleUse | undefined;
  private readonly hawLimit: number;
  private traps: VtdTraps | undefined;

  constructor(
    readonly memory: PhysicalMemory,
    readonly events: EventStream,
    config: VtdUnitConfig,
  ) {
    this.name = config.name;
    this.regBase = config.regBase ?? 0xfed9_0000;
    this.segment = config.segment ?? 0;
    const built = capabilitiesOf(config.features);
    this.capRaw = config.cap ?? built.cap;
    this.ecapRaw = config.ecap ?? built.ecap;
    this.cap = decodeCap(this.capRaw);
    this.ecap = decodeEcap(this.ecapRaw);
    this.version = config.version ?? (this.ecap.smts ? [6, 0] : [1, 0]);
    this.caching = config.caching ?? true;
    this.cacheNotPresent = config.cacheNotPresent ?? this.cap.cm === 1;
    this.frcdBase = faultRecordingOffset(this.cap);
    this.frcdCount = faultRecordingCount(this.cap);
    this.iotlb = new Iotlb(config.iotlbEntries ?? 4096, config.pwcEntries ?? 1024);
    this.hawLimit = 2 ** memory.hostAddressWidth;
    this.walker = new Walker(memory, {
      large2M: (this.cap.sllps & 1) === 1,
      large1G: (this.cap.sllps & 2) === 2,
      hawLimit: 2 ** memory.hostAddressWidth,
    });
    this.setReg(Reg.VER, 0, (this.version[0] << 4) | this.version[1]);
    this.setReg(Reg.CAP, this.capRaw.hi, this.capRaw.lo);
    this.setReg(Reg.ECAP, this.ecapRaw.hi, this.ecapRaw.lo);
    this.setReg(Reg.FECTL, 0, 0x8000_0000); // interrupts masked until software unmasks them
    this.setReg(Reg.PECTL, 0, 0x8000_0000);
    this.ir = new InterruptRemapper(
      {
        name: this.name,
        memory,
        events,
        features: { ir: this.ecap.ir === 1, eim: this.ecap.eim === 1, pi: this.cap.pi === 1, esirtps: this.cap.esirtps === 1 },
        gsts: () => this.reg(Reg.GSTS).lo,
        readable: (addr) => this.readable(addr),
        recordFault: (qw0hi, qw0lo, qw1lo, qw1hi) => this.writeFaultRecord(qw0hi, qw0lo, qw1lo, qw1hi),
      },
      config.iecEntries,
    );
  }

  /** How the unit finds an endpoint by requester ID (the machine wires this). */
  connect(endpointOf: (sid: number) => Endpoint | undefined): void {
    this.endpointOf = endpointOf;
  }

  // =====================================================================================================
  // Registers
  // =====================================================================================================

  private setReg(offset: number, hi: number, lo: number): void {
    this.regs.set(offset, { hi: hi >>> 0, lo: lo >>> 0 });
  }

  private reg(offset: number): RegValue {
    return this.regs.get(offset) ?? { hi: 0, lo: 0 };
  }

  private regBit(offset: number, bit: number): boolean {
    return ((this.reg(offset).lo >>> bit) & 1) === 1;
  }

  private setRegBit(offset: number, bit: number, on: boolean): void {
    const r = this.reg(offset);
    this.setReg(offset, r.hi, on ? r.lo | (1 << bit) : r.lo & ~(1 << bit));
  }

  /** Reads a register by name or offset (FRCD registers by offset). */
  readRegister(which: RegName | number): U64 {
    const offset = typeof which === 'number' ? which : Reg[which];
    if (offset === Reg.FSTS) return new U64(0, this.fsts());
    const r = this.reg(offset);
    return new U64(r.hi, r.lo);
  }

  /** Every architectural register with its current value, in offset order (for the debugfs regset). */
  registers(): { name: string; offset: number; width: 32 | 64; value: U64 }[] {
    return (Object.keys(Reg) as RegName[])
      .map((name) => ({ name, offset: Reg[name], width: (REG64.has(name) ? 64 : 32) as 32 | 64, value: this.readRegister(name) }))
      .sort((a, b) => a.offset - b.offset);
  }

  /** Writes a register with the side effects the hardware gives that write. */
  /** Lets a VMM observe and trap software's register writes and invalidation descriptors (one trapper at a time). */
  trap(traps: VtdTraps): () => void {
    if (this.traps) throw new Error(`${this.name} is already trapped`);
    this.traps = traps;
    return () => {
      if (this.traps === traps) this.traps = undefined;
    };
  }

  /** A hardware-side register update (no software-write semantics): for registers a VMM emulates. */
  setRegisterValue(offset: number, value: U64): void {
    this.setReg(offset, value.hi, value.lo);
  }

  writeRegister(which: RegName | number, value: U64 | number): void {
    const offset = typeof which === 'number' ? which : Reg[which];
    const v = typeof value === 'number' ? U64.fromNumber(value) : value;
    const t = this.traps;
    if (t !== undefined) {
      const name = (Object.keys(Reg) as RegName[]).find((n) => Reg[n] === offset);
      const w: VtdRegisterWrite = { offset, name: name ?? this.frcdName(offset), width: name !== undefined && REG64.has(name) ? 64 : 32, value: v };
      if (t.registerWrite?.(w) === 'handled') return;
      this.writeRegisterNow(offset, v);
      t.registerWritten?.(w);
      return;
    }
    this.writeRegisterNow(offset, v);
  }

  private writeRegisterNow(offset: number, v: U64): void {
    if (this.events.active) {
      const name = (Object.keys(Reg) as RegName[]).find((n) => Reg[n] === offset) ?? this.frcdName(offset);
      this.events.emit({ type: 'register-write', unit: this.name, register: name, offset, value: v.toString() });
    }
    if (offset >= this.frcdBase && offset < this.frcdBase + this.frcdCount * 16) return this.writeFrcd(offset, v);
    switch (offset) {
      case Reg.VER:
      case Reg.CAP:
      case Reg.ECAP:
      case Reg.GSTS:
      case Reg.PQT:
      case Reg.IQH:
        return; // read-only
      case Reg.GCMD:
        return this.writeGcmd(v.lo);
      case Reg.FSTS: {
        // Write 1 to clear PFO, IQE, ICE, ITE (and PRO on old parts). PPF reflects the F bits.
        const r = this.reg(Reg.FSTS);
        const clear = v.lo & ((1 << FSTS.PFO) | (1 << FSTS.IQE) | (1 << FSTS.ICE) | (1 << FSTS.ITE) | (1 << FSTS.PRO));
        this.setReg(Reg.FSTS, 0, r.lo & ~clear);
        if (clear & (1 << FSTS.ITE)) this.processQueue(); // the queue resumes once ITE is cleared
        if (clear & (1 << FSTS.IQE)) this.processQueue();
        return;
      }
      case Reg.ICS:
        if (v.lo & 1) this.setRegBit(Reg.ICS, ICS.IWC, false);
        return;
      case Reg.PRS: {
        const r = this.reg(Reg.PRS);
        this.setReg(Reg.PRS, 0, r.lo & ~(v.lo & ((1 << PRS.PPR) | (1 << PRS.PRO))));
        return;
      }
      case Reg.FECTL:
        this.setReg(Reg.FECTL, 0, (v.lo & 0x8000_0000) | (this.reg(Reg.FECTL).lo & 0x4000_0000));
        return;
      case Reg.IQT:
        // QT is bits 18:4; bits 3:0 and 63:19 are reserved (read-only 0).
        this.setReg(Reg.IQT, 0, v.lo & 0x7_fff0);
        return this.processQueue();
      default:
        this.setReg(offset, v.hi, v.lo);
    }
  }

  /**
   * Takes a register file captured from a real machine (debugfs `iommu_regset`) as the unit's state at that
   * moment: values are stored as read, with no write side effects, and what the hardware had latched (root
   * table, translation enable) follows from them. VER, CAP and ECAP come from the unit's configuration and
   * are not overwritten. Caches start empty: a dump does not show them.
   */
  loadRegisterFile(values: Iterable<{ readonly offset: number; readonly value: U64 }>): void {
    for (const { offset, value } of values) {
      if (offset === Reg.VER || offset === Reg.CAP || offset === Reg.ECAP) continue;
      this.setReg(offset, value.hi, value.lo);
    }
    const sts = this.reg(Reg.GSTS).lo;
    if ((sts >>> GSTS.RTPS) & 1) this.latchRootTable();
    this.tes = ((sts >>> GSTS.TES) & 1) === 1;
    if ((sts >>> GSTS.IRTPS) & 1) {
      const irta = this.reg(Reg.IRTA);
      this.ir.latch(irta.hi, irta.lo);
    }
    this.ctxCache = new Array(65536);
    this.pasidCache.clear();
    this.iotlb.clear();
    this.ir.clearCache();
  }

  private frcdName(offset: number): string {
    const i = Math.floor((offset - this.frcdBase) / 16);
    return i >= 0 && i < this.frcdCount ? `FRCD${i}_${offset % 16 === 0 ? 'LO' : 'HI'}` : `0x${offset.toString(16)}`;
  }

  /**
   * Set root table pointer: latches RTADDR's RTA (the root table's address) and TTM (its format). RTA is
   * bits 63:12 (TTM 11:10, bits 9:0 reserved), and the hardware ignores and does not implement bits 63:HAW
   * (the RTADDR_REG field definition): the root table is at bits HAW-1:12 of what was written.
   */
  private latchRootTable(): void {
    const rt = this.reg(Reg.RTADDR);
    const hiBits = this.memory.hostAddressWidth - 32;
    this.rootTable = (rt.hi % 2 ** hiBits) * TWO_32 + ((rt.lo & 0xffff_f000) >>> 0);
    this.ttm = (rt.lo >>> 10) & 3;
    this.scalable = this.ttm === RTADDR_TTM_SCALABLE;
  }

  private writeGcmd(cmd: number): void {
    let sts = this.reg(Reg.GSTS).lo;
    const set = (bit: number, on: boolean) => (sts = on ? sts | (1 << bit) : sts & ~(1 << bit));
    if (cmd & (1 << GCMD.SRTP)) {
      this.latchRootTable();
      set(GSTS.RTPS, true);
    }
    set(GSTS.TES, (cmd & (1 << GCMD.TE)) !== 0);
    const qie = (cmd & (1 << GCMD.QIE)) !== 0;
    if (qie && !(sts & (1 << GSTS.QIES))) this.setReg(Reg.IQH, 0, 0);
    set(GSTS.QIES, qie);
    if (this.ecap.ir) {
      // Interrupt remapping (IRE, SIRTP, CFI are reserved on a unit without ECAP.IR).
      if (cmd & (1 << GCMD.SIRTP)) {
        const irta = this.reg(Reg.IRTA);
        this.ir.latch(irta.hi, irta.lo);
        set(GSTS.IRTPS, true);
      }
      set(GSTS.IRES, (cmd & (1 << GCMD.IRE)) !== 0);
      set(GSTS.CFIS, (cmd & (1 << GCMD.CFI)) !== 0);
    }
    this.setReg(Reg.GCMD, 0, cmd & ~((1 << GCMD.SRTP) | (1 << GCMD.SIRTP) | (1 << GCMD.WBF)));
    this.setReg(Reg.GSTS, 0, sts);
    this.tes = ((sts >>> GSTS.TES) & 1) === 1;
  }

  get translationEnabled(): boolean {
    return this.tes;
  }

  /** Whether the latched root table is in scalable-mode format (RTADDR.TTM = 01 when SRTP was last set). */
  get scalableMode(): boolean {
    return this.scalable;
  }

  get rootTableAddress(): number {
    return this.rootTable;
  }

  // =====================================================================================================
  // Interrupt remapping
  // =====================================================================================================

  /**
   * An interrupt request (a device's DWORD write to 0xfeeXXXXX) through the interrupt-remapping hardware:
   * remapped, posted, passed through or blocked with a recorded fault (vtd/interrupt-remap.ts). Uses and
   * fills the interrupt entry cache; emits an `interrupt-remap` event. DMA to the same range by translation
   * is a different path: `translate` faults when a translation lands there (0x0e / 0x87).
   */
  interrupt(request: InterruptRequest, options?: TranslateOptions): InterruptResult {
    const r = this.ir.run(request, options?.trace ? [] : null, false);
    if (this.events.active) {
      this.events.emit({
        type: 'interrupt-remap',
        unit: this.name,
        sid: request.sid & 0xffff,
        address: '0x' + request.address.toString(16),
        data: '0x' + (request.data >>> 0).toString(16),
        index: r.index ?? null,
        outcome: r.outcome,
        source: r.outcome === 'remapped' || r.outcome === 'posted' ? r.source : null,
        vector: r.ok ? r.vector : null,
        destination: r.outcome === 'remapped' || r.outcome === 'pass-through' ? r.destination : null,
        descriptor: r.outcome === 'posted' ? r.descriptor : null,
        fault: r.ok ? null : r.reason,
        ...(r.stale ? { stale: r.stale } : {}),
        ...(r.trace ? { trace: r.trace } : {}),
      });
    }
    return r;
  }

  /** What an interrupt request would do with the tables as they are now: no cache, no fault recorded, no event. */
  probeInterrupt(request: InterruptRequest, options?: TranslateOptions): InterruptResult {
    return this.ir.run(request, options?.trace ? [] : null, true);
  }

  /** The latched interrupt-remapping table (GCMD.SIRTP): address, entries (2^(S+1)), x2APIC mode (EIME). */
  get interruptRemapTable(): { base: number; entries: number; eime: boolean } {
    return { base: this.ir.table, entries: this.ir.entries, eime: this.ir.eime };
  }

  /** The interrupt entry cache: which IRTE indices it holds. */
  get interruptEntryCache(): { size: number; indices: number[] } {
    return { size: this.ir.iecSize, indices: this.ir.cachedIndices() };
  }

  // =====================================================================================================
  // Translation
  // =====================================================================================================

  /** Translates a DMA request as the hardware would: caches, faults recorded, A/D bits set, events emitted. */
  translate(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    const trace = options?.trace ? ([] as WalkStep[]) : null;
    const r = this.run(normalize(request, this.scratch), trace, false);
    if (this.events.active) this.emitTranslation(request, r);
    return r;
  }

  /**
   * The translation the current tables give, without touching anything: no cache is read or filled, no
   * fault recorded, no A/D bit set, no event. Used to check whether a cached translation is stale, and by
   * views that want to show what a walk would do.
   */
  probe(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    return this.run(normalize(request, this.scratch), options?.trace ? [] : null, true);
  }

  /** The request being translated; reused, as translation is never re-entered. */
  private readonly scratch: Req = { sid: 0, hasPasid: false, pasid: 0, hi: 0, lo: 0, write: false, exec: false, priv: false, kind: 'untranslated' };

  private run(q: Req, trace: WalkStep[] | null, probe: boolean): TranslationResult {
    this.stale = undefined;
    this.walker.reads = 0;
    if (q.exec && (!q.hasPasid || q.write)) {
      // PCIe carries Execute Requested in the PASID TLP prefix, and only reads may set it: without a PASID or
      // on a write there is no execute request to make.
      if (trace) trace.push(note('request', `${q.write ? 'a write' : 'a request without PASID'} cannot ask to execute (Execute Requested is a PASID-prefix bit of reads): walked as a ${q.write ? 'write' : 'read'}`, true));
      q.exec = false;
    }
    const useCache = this.caching && !probe;
    if (!this.translationEnabled) {
      if (trace) trace.push(note('translation', 'GSTS.TES = 0: DMA remapping is off; the address passes through untranslated', true));
      return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'pass-through', undefined, trace);
    }
    const ctx = this.context(q.sid, trace, useCache);
    if (typeof ctx === 'number') return this.fault(q, ctx, this.lastCtxFpd, trace, probe);

    if (!ctx.scalable) {
      if (q.hasPasid) return this.fault(q, 0x31, false, trace, probe);
      if (q.kind !== 'untranslated' && ctx.tt !== 1) return this.fault(q, 0x0d, ctx.fpd, trace, probe);
      if (q.kind === 'translated') return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'translated', undefined, trace);
      if (ctx.tt === 2) {
        if (trace) trace.push(note('context-entry', 'TT = 10b: pass-through', true));
        return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'pass-through', ctx.did, trace);
      }
      const levels = ctx.aw + 2;
      const width = Math.min(30 + 9 * ctx.aw, this.cap.mgaw + 1);
      if (q.hi >= POW2[Math.max(0, width - 32)]!) return this.fault(q, 0x04, ctx.fpd, trace, probe);
      const bucket = useCache ? this.iotlb.bucket(ctx.did, -1, 'sl') : undefined;
      return this.pagedTranslation(q, bucket, ctx.did, 'sl', ctx.slptptr, levels, LEGACY_SL, ctx.fpd, trace, probe, null);
    }

    // Scalable mode.
    if (q.hasPasid && !ctx.pasidEnable) return this.fault(q, 0x45, ctx.fpd, trace, probe);
    if (q.kind !== 'untranslated' && !ctx.dte) return this.fault(q, 0x44, ctx.fpd, trace, probe);
    if (q.kind === 'translated') return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'translated', undefined, trace);
    const pasid = q.hasPasid ? q.pasid : ctx.ridPasid;
    if (pasid >= POW2[ctx.pdts + 13]!) return this.fault(q, q.hasPasid ? 0x46 : 0x48, ctx.fpd, trace, probe);
    const pe = this.pasidEntry(ctx, pasid, trace, useCache);
    if (typeof pe === 'number') return this.fault(q, pe, this.lastPasidFpd, trace, probe);
    const priv = q.hasPasid ? q.priv : ctx.ridPriv;
    if (q.exec && !pe.ere && (pe.pgtt === PGTT.FIRST_LEVEL || pe.pgtt === PGTT.NESTED)) return this.fault(q, 0x5c, pe.fpd, trace, probe);
    if (priv && !pe.sre && (pe.pgtt === PGTT.FIRST_LEVEL || pe.pgtt === PGTT.NESTED)) return this.fault(q, 0x5d, pe.fpd, trace, probe);

    switch (pe.pgtt) {
      case PGTT.PASS_THROUGH: {
        if (trace) trace.push(note('pasid-entry', 'PGTT = 100b: pass-through', true));
        return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'pass-through', pe.did, trace);
      }
      case PGTT.SECOND_LEVEL: {
        const width = Math.min(30 + 9 * pe.aw, this.cap.mgaw + 1);
        if (q.hi >= POW2[Math.max(0, width - 32)]!) return this.fault(q, 0x83, pe.fpd, trace, probe);
        const bucket = useCache ? this.bucketFor(pe, 'sl') : undefined;
        return this.pagedTranslation(q, bucket, pe.did, 'sl', pe.slptptr, pe.aw + 2, SM_SL, pe.fpd, trace, probe, null, pe.ssade ? pe : null, pe.slee);
      }
      case PGTT.FIRST_LEVEL:
      case PGTT.NESTED: {
        const five = pe.flpm === 1;
        if (!canonical(q.hi, five)) return this.fault(q, FL_CODES.nonCanonical, pe.fpd, trace, probe);
        const mode = pe.pgtt === PGTT.NESTED ? 'nested' : 'fl';
        const bucket = useCache ? this.bucketFor(pe, mode) : undefined;
        return this.pagedTranslation(q, bucket, pe.did, mode, pe.flptptr, five ? 5 : 4, SM_SL, pe.fpd, trace, probe, { pe, priv });
      }
      default:
        return this.fault(q, 0x5b, pe.fpd, trace, probe);
    }
  }

  private bucketFor(pe: PasidCacheEntry, mode: 'sl' | 'fl' | 'nested'): IotlbBucket {
    if (pe.bucket === undefined || pe.bucket.mode !== mode) pe.bucket = this.iotlb.bucket(pe.did, pe.pasid, mode);
    return pe.bucket;
  }

  /**
   * IOTLB lookup, then (on a miss) a walk from the deepest cached paging-structure entry, then a fill.
   * `fl` is set for first-level and nested translations.
   */
  private pagedTranslation(
    q: Req,
    bucket: IotlbBucket | undefined,
    did: number,
    mode: 'sl' | 'fl' | 'nested',
    root: number,
    levels: number,
    slCodes: SlFaultCodes,
    fpd: boolean,
    trace: WalkStep[] | null,
    probe: boolean,
    fl: { pe: PasidCacheEntry; priv: boolean } | null,
    /** A second-level-only PASID entry with SSADE: the walk sets A/D bits in the second-level entries. */
    slAd: PasidCacheEntry | null = null,
    /** A second-level-only PASID entry's SLEE: without it an execute request needs only read permission. */
    slee = false,
  ): TranslationResult {
    const addrBits = fl ? (levels === 5 ? 0x1ff_ffff : 0xffff) : 0xf_ffff;
    const vpn = (q.hi & addrBits) * 0x10_0000 + (q.lo >>> 12);
    const offset = q.lo & 0xfff;
    const need = q.write ? Perm.W : Perm.R;
    const needAll = need | (q.exec ? Perm.X : 0);
    const user = fl !== null && !fl.priv;

    // 1. IOTLB.
    if (bucket !== undefined) {
      const e = lookupTlb(bucket, vpn);
      const flRules = fl ? { user, wpe: fl.pe.wpe, smep: fl.pe.smep, nested: mode === 'nested' } : null;
      if (e !== undefined && (e.fault !== 0 || permitted(e.perms, needAll, flRules, slAd !== null))) {
        this.checkStale(e, 'iotlb');
        if (trace) trace.push(tlbStep(e, bucket));
        if (e.fault !== 0) return this.fault(q, e.fault, fpd, trace, probe);
        const pages = e.size / 4096;
        const out = e.output + (vpn % pages) * 4096 + offset;
        if (out >= INTERRUPT_BASE && out <= INTERRUPT_LAST) return this.interruptWindow(q, out, fpd, trace, probe);
        return this.ok(out, e.size, e.perms, 'iotlb', did, trace);
      }
    }

    // 2. Walk, starting below the deepest paging-structure cache hit. A second-level root pointer that cannot be
    // read is reported as such (0x7b) in scalable mode, before any table is touched.
    if (fl === null ? slCodes === SM_SL : mode === 'nested') {
      const slRoot = fl === null ? root : fl.pe.slptptr;
      if (!this.readable(slRoot)) return this.fault(q, 0x7b, fpd, trace, probe);
    }
    const w = this.walker;
    let table = root;
    let start = levels;
    let startPerms = Perm.R | Perm.W | Perm.X | Perm.U;
    let deps: Deps | null = bucket !== undefined ? [] : null;
    if (bucket !== undefined && mode !== 'nested') {
      for (let level = 2; level <= levels; level++) {
        const key = Math.floor(vpn / LEVEL_PAGES[level]!);
        const p = bucket.pwc[level]!.get(key);
        if (p !== undefined && p.valid) {
          this.checkStale(p, 'paging-structure-cache');
          if (trace) trace.push(pwcStep(p, level, mode));
          table = p.table;
          start = level - 1;
          startPerms = p.perms;
          deps = p.deps.slice();
          break;
        }
      }
    }
    w.deps = deps;
    w.pwcFills = bucket !== undefined && mode !== 'nested' ? [] : null;
    const ad = probe ? null : this.adUpdates;
    if (ad) ad.length = 0;
    let ok: boolean;
    if (mode === 'sl') {
      ok = w.secondLevel(table, start, vpn, offset, needAll, slCodes, trace, undefined, startPerms, slAd ? ad : null, q.exec && !slee);
    } else if (mode === 'fl') {
      ok = w.firstLevel(table, start, levels, startPerms, vpn, offset, needAll, user, fl!.pe.wpe, fl!.pe.nxe, fl!.pe.smep, trace, ad);
    } else {
      ok = this.nestedWalk(fl!.pe, vpn, offset, needAll, user, trace, ad);
    }
    const fillDeps = w.deps;
    const fills = w.pwcFills;
    w.deps = null;
    w.pwcFills = null;
    if (!ok) {
      const code = w.fault;
      if (bucket !== undefined && this.cacheNotPresent && NOT_PRESENT_FAULTS.has(code)) {
        this.iotlb.insert(bucket, { vpn, size: 4096, output: 0, perms: 0, fault: code, levels: 0, deps: fillDeps ?? [], verifiedAt: this.memory.writeCount, valid: true });
      }
      return this.fault(q, code, fpd, trace, probe);
    }
    if (ad && ad.length > 0) {
      const adFault = this.applyAdUpdates(ad, fl ? fl.pe : slAd!, mode, trace);
      if (adFault) return this.fault(q, adFault, fpd, trace, probe);
    }
    if (bucket !== undefined) {
      // A walk that started from a stale cached entry yields entries that must be re-verified on every use.
      const verifiedAt = this.stale ? -1 : this.memory.writeCount;
      const size = w.size;
      const pageOut = w.output - offset - ((vpn % (size / 4096)) * 4096);
      this.iotlb.insert(bucket, {
        vpn: Math.floor(vpn / (size / 4096)),
        size,
        output: pageOut,
        perms: w.perms,
        fault: 0,
        levels: w.reads,
        deps: fillDeps!,
        verifiedAt,
        valid: true,
      });
      if (fills && fills.length > 0) this.fillPwc(bucket, vpn, fills, fillDeps!, verifiedAt);
    }
    if (w.output >= INTERRUPT_BASE && w.output <= INTERRUPT_LAST) return this.interruptWindow(q, w.output, fpd, trace, probe);
    return this.ok(w.output, w.size, w.perms, 'walk', did, trace);
  }

  /** A translation that lands in the interrupt window 0xfee00000-0xfeefffff is a fault (0x0e legacy, 0x87 SM). */
  private interruptWindow(q: Req, out: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): TranslationFault {
    if (trace) trace.push(note('output', `the output address 0x${out.toString(16)} falls in the interrupt window 0xfee00000-0xfeefffff`, false));
    return this.fault(q, this.scalable ? 0x87 : 0x0e, fpd, trace, probe);
  }

  private fillPwc(bucket: IotlbBucket, vpn: number, fills: number[], deps: Deps, verifiedAt: number): void {
    // Each non-leaf entry gets the dependencies of the entries above it and itself.
    for (let i = 0; i < fills.length; i += 6) {
      const level = fills[i]!;
      const entryAddr = fills[i + 3]!;
      let depEnd = 0;
      while (depEnd < deps.length && deps[depEnd] !== entryAddr) depEnd += 4;
      this.iotlb.insertPwc(bucket, level, Math.floor(vpn / LEVEL_PAGES[level]!), {
        table: fills[i + 1]!,
        perms: fills[i + 2]!,
        entryAddr,
        raw: [fills[i + 5]!, fills[i + 4]!],
        deps: deps.slice(0, depEnd + 4),
        verifiedAt,
        valid: true,
      });
    }
  }

  /**
   * Nested translation (PGTT = 011b): a first-level walk over guest-physical tables, each table pointer and
   * the final output translated through the second-level tables (VT-d spec 3.8; 24 reads for 4 over 4).
   */
  private nestedWalk(pe: PasidCacheEntry, vpn: number, offset: number, need: number, user: boolean, trace: WalkStep[] | null, ad: number[] | null): boolean {
    const w = this.walker;
    const slLevels = pe.aw + 2;
    const slWidth = Math.min(30 + 9 * pe.aw, this.cap.mgaw + 1);
    const five = pe.flpm === 1;
    const translateTable = (gpa: number, top: boolean, adWrite: boolean, t: WalkStep[] | null): number => {
      const codes = top ? NESTED_TOP : NESTED_TABLE;
      if (gpa >= POW2[slWidth]!) {
        w.fail(codes.beyond);
        return -1;
      }
      const saveOut = w.output;
      const ok = w.secondLevel(pe.slptptr, slLevels, Math.floor(gpa / 4096), gpa % 4096, adWrite ? Perm.W : Perm.R, codes, t, 2);
      const hpa = w.output;
      w.output = saveOut;
      return ok ? hpa : -1;
    };
    if (!w.firstLevel(pe.flptptr, five ? 5 : 4, five ? 5 : 4, Perm.R | Perm.W | Perm.X | Perm.U, vpn, offset, need, user, pe.wpe, pe.nxe, pe.smep, trace, ad, translateTable)) return false;
    // The first-level output is a guest-physical address: translate it through the second level.
    const gpa = w.output;
    const flSize = w.size;
    const flPerms = w.perms;
    if (gpa >= POW2[slWidth]!) return w.fail(0x79);
    const finalTrace = trace ? ([] as WalkStep[]) : null;
    // With SSADE the second level of a nested walk is dirty-tracked too: the final translation sets its A/D.
    const slAd = pe.ssade ? ad : null;
    // The final page is a request-with-PASID (spec 3.8.2): an execute request needs X there only with SLEE.
    if (!w.secondLevel(pe.slptptr, slLevels, Math.floor(gpa / 4096), gpa % 4096, need & ~Perm.U, SM_SL, finalTrace, 2, undefined, slAd, (need & Perm.X) !== 0 && !pe.slee)) {
      if (trace) trace.push({ ...note('nested-output', `second-level translation of the output GPA 0x${gpa.toString(16)}`, false), nestedTrace: finalTrace! });
      return false;
    }
    if (trace) trace.push({ ...note('nested-output', `second-level translation of the output GPA 0x${gpa.toString(16)} -> 0x${w.output.toString(16)}`, true), nestedTrace: finalTrace! });
    w.size = Math.min(flSize, w.size);
    // Cached as dirty only when both stages are: a write through it then needs no walk to set either D.
    const dirty = flPerms & Perm.D && (slAd === null || w.perms & Perm.D) ? Perm.D : 0;
    w.perms = (flPerms & (Perm.R | Perm.W | Perm.X | Perm.U)) | dirty | ((w.perms & (Perm.R | Perm.W | Perm.X)) << SL_SHIFT);
    return true;
  }

  /**
   * Sets the accessed/dirty bits a walk found clear, as the hardware does: first-level entries always,
   * second-level ones when the PASID entry has SSADE. The update is an atomic read-modify-write that needs
   * snooped page walks (PWSNP); without them the walk faults (0x90 first level, 0x7c second level). In a
   * nested walk the write goes through the second level and needs write permission there (else 0x77).
   * Returns the fault reason, or 0.
   */
  private applyAdUpdates(ad: number[], pe: PasidCacheEntry, mode: 'sl' | 'fl' | 'nested', trace: WalkStep[] | null): number {
    if (!pe.pwsnp) {
      const second = ad[4] === AD_SECOND_LEVEL;
      if (trace) trace.push(note(`${second ? 'sl' : 'fl'}-ad-update`, `setting A/D at 0x${ad[0]!.toString(16)} needs snooped page walks, and the PASID entry has PWSNP = 0`, false));
      return second ? 0x7c : 0x90;
    }
    for (let i = 0; i < ad.length; i += 5) {
      const entryAddr = ad[i]!;
      const second = ad[i + 4] === AD_SECOND_LEVEL;
      if (mode === 'nested' && !second) {
        const gpaTable = ad[i + 3]!;
        const w = this.walker;
        const save = [w.output, w.size, w.perms, w.reads];
        // An atomic A/D update of a guest entry needs R and W through the second level (spec 3.8.2).
        const ok = w.secondLevel(pe.slptptr, pe.aw + 2, Math.floor(gpaTable / 4096), 0, Perm.R | Perm.W, ad[i + 4] ? NESTED_TOP : NESTED_TABLE, null, 2);
        [w.output, w.size, w.perms, w.reads] = save as [number, number, number, number];
        if (!ok) {
          if (trace) trace.push(note('fl-ad-update', `setting A/D at 0x${entryAddr.toString(16)} needs write access to the guest page-table page 0x${gpaTable.toString(16)} through the second level`, false));
          return 0x77;
        }
      }
      this.memory.write64(entryAddr, ad[i + 1]!, ad[i + 2]!, second ? 'sl-ad-update' : 'fl-ad-update');
    }
    return 0;
  }

  // ---- context and PASID resolution ----

  private lastCtxFpd = false;
  private lastPasidFpd = false;

  /** The context entry for `sid`, from the context cache or from memory; a number is a fault reason. */
  private context(sid: number, trace: WalkStep[] | null, useCache: boolean): ContextCacheEntry | number {
    if (useCache) {
      const e = this.ctxCache[sid];
      if (e !== undefined && e.valid) {
        this.checkStale(e, 'context-cache');
        if (trace) trace.push(cachedEntryStep(e.scalable ? CONTEXT_SCALABLE : CONTEXT_LEGACY, e.ctxAddr, e.words, 'context-cache', e.fault));
        this.lastCtxFpd = e.fpd;
        return e.fault !== 0 ? e.fault : e;
      }
    }
    const mem = this.memory;
    const bus = sid >>> 8;
    const devfn = sid & 0xff;
    const sm = this.scalable;
    const rootAddr = this.rootTable + bus * 16;
    this.lastCtxFpd = false;
    if (!this.readable(this.rootTable)) {
      if (trace) trace.push(note('root-table', `RTADDR 0x${this.rootTable.toString(16)} cannot be read`, false));
      return !sm ? 0x08 : 0x38;
    }
    const root = readWords(mem, rootAddr, 2);
    this.walker.reads++;
    const rootLayout = sm ? ROOT_SCALABLE : ROOT_LEGACY;
    const upper = sm && devfn >= 0x80;
    const present = (root[upper ? 2 : 0]! & 1) === 1;
    const rootBad = reservedViolations(rootLayout, root);
    const ctp = (root[upper ? 3 : 1]! & 0xf_ffff) * TWO_32 + ((root[upper ? 2 : 0]! & 0xffff_f000) >>> 0);
    if (trace) trace.push(entryStep(rootLayout, 'root-entry', this.rootTable, bus, root, !present ? `${sm ? (upper ? 'UP' : 'LP') : 'P'} = 0: no context table for bus 0x${bus.toString(16).padStart(2, '0')}${sm ? (upper ? ' (devfn 0x80-0xff)' : ' (devfn 0x00-0x7f)') : ''}` : rootBad.length ? `reserved bits set: ${rootBad.join(', ')}` : `context table at 0x${ctp.toString(16)}`, present && rootBad.length === 0));
    // Verification data is only kept for entries that go into a cache.
    const deps: Deps = useCache ? [rootAddr, root[1]!, root[0]!, -1, rootAddr + 8, root[3]!, root[2]!, -1] : NO_DEPS;
    if (!present) return this.negativeContext(sid, sm ? 0x39 : 0x01, root, rootAddr, [], 0, deps, useCache, false);
    if (rootBad.length) return sm ? 0x3a : 0x0a;
    if (!this.readable(ctp)) {
      if (trace) trace.push(note('context-table', `context table 0x${ctp.toString(16)} cannot be read`, false));
      return sm ? 0x40 : 0x09;
    }
    const entrySize = sm ? 32 : 16;
    const ctxAddr = ctp + (sm ? devfn & 0x7f : devfn) * entrySize;
    const words = readWords(mem, ctxAddr, sm ? 4 : 2);
    this.walker.reads++;
    if (useCache) for (let i = 0; i < words.length; i += 2) deps.push(ctxAddr + i * 4, words[i + 1]!, words[i]!, -1);
    const layout = sm ? CONTEXT_SCALABLE : CONTEXT_LEGACY;
    const ctxPresent = (words[0]! & 1) === 1;
    const fpd = (words[0]! & 2) === 2;
    this.lastCtxFpd = fpd;
    const bad = reservedViolations(layout, words);
    let problem = 0;
    let why = '';
    if (!ctxPresent) {
      problem = sm ? 0x41 : 0x02;
      why = `P = 0: device ${bdf(sid)} has no context entry (not attached)`;
    } else if (bad.length) {
      problem = sm ? 0x42 : 0x0b;
      why = `reserved bits set: ${bad.join(', ')}`;
    } else if (!sm) {
      const tt = (words[0]! >>> 2) & 3;
      const aw = words[2]! & 7;
      if (tt === 3 || (tt === 2 && !this.ecap.pt) || (tt === 1 && !this.ecap.dt)) {
        problem = 0x03;
        why = `translation type ${tt} is not supported`;
      } else if (tt !== 2 && !((this.cap.sagaw >>> aw) & 1)) {
        problem = 0x03;
        why = `AW ${aw} (${30 + 9 * aw}-bit) is not in CAP.SAGAW`;
      }
    } else if ((words[0]! & 4 && !this.ecap.dt) || (words[0]! & 8 && !this.ecap.pasid) || (words[0]! & 16 && !this.ecap.prs)) {
      // DTE, PASIDE and PRE are reserved on a unit without device TLBs, PASIDs or page requests.
      problem = 0x42;
      why = `reserved bits set: ${[words[0]! & 4 && !this.ecap.dt && 'DTE (ECAP.DT = 0)', words[0]! & 8 && !this.ecap.pasid && 'PASIDE (ECAP.PASID = 0)', words[0]! & 16 && !this.ecap.prs && 'PRE (ECAP.PRS = 0)'].filter(Boolean).join(', ')}`;
    } else if (this.ecap.pasid && ((words[0]! >>> 9) & 7) + 13 > this.ecap.pss + 1) {
      problem = 0x43;
      why = `PDTS ${(words[0]! >>> 9) & 7} sizes the PASID directory for 2^${((words[0]! >>> 9) & 7) + 13} PASIDs, more than the ${this.ecap.pss + 1}-bit PASIDs of ECAP.PSS`;
    }
    if (trace) trace.push(entryStep(layout, 'context-entry', ctp, sm ? devfn & 0x7f : devfn, words, problem ? why : describeContext(words, sm), problem === 0));
    if (problem) return this.negativeContext(sid, problem, root, rootAddr, words, ctxAddr, deps, useCache, fpd);
    const e: ContextCacheEntry = {
      sid,
      scalable: sm,
      rootWords: root,
      words,
      rootAddr,
      ctxAddr,
      fault: 0,
      fpd,
      tt: sm ? 0 : (words[0]! >>> 2) & 3,
      aw: sm ? 0 : words[2]! & 7,
      did: sm ? 0 : (words[2]! >>> 8) & 0xffff,
      slptptr: (words[1]! & 0xf_ffff) * TWO_32 + ((words[0]! & 0xffff_f000) >>> 0),
      dte: (words[0]! & 4) === 4,
      pasidEnable: (words[0]! & 8) === 8,
      pre: (words[0]! & 16) === 16,
      pdts: (words[0]! >>> 9) & 7,
      pasidDir: (words[1]! & 0xf_ffff) * TWO_32 + ((words[0]! & 0xffff_f000) >>> 0),
      ridPasid: sm ? words[2]! & 0xf_ffff : 0,
      ridPriv: sm && ((words[2]! >>> 20) & 1) === 1,
      lastPasid: -1,
      lastPe: undefined,
      deps,
      verifiedAt: mem.writeCount,
      valid: true,
    };
    if (useCache) this.ctxCache[sid] = e;
    return e;
  }

  private negativeContext(sid: number, fault: number, rootWords: number[], rootAddr: number, words: number[], ctxAddr: number, deps: Deps, useCache: boolean, fpd: boolean): number {
    if (useCache && this.cacheNotPresent && NOT_PRESENT_FAULTS.has(fault)) {
      this.ctxCache[sid] = {
        sid, scalable: this.scalable, rootWords, words, rootAddr, ctxAddr, fault, fpd,
        tt: 0, aw: 0, did: 0, slptptr: 0, dte: false, pasidEnable: false, pre: false, pdts: 0, pasidDir: 0, ridPasid: 0, ridPriv: false,
        lastPasid: -1, lastPe: undefined, deps, verifiedAt: this.memory.writeCount, valid: true,
      };
    }
    return fault;
  }

  private pasidEntry(ctx: ContextCacheEntry, pasid: number, trace: WalkStep[] | null, useCache: boolean): PasidCacheEntry | number {
    if (useCache) {
      let e = ctx.lastPasid === pasid ? ctx.lastPe : undefined;
      if (e === undefined || !e.valid) e = this.pasidCache.get(ctx.sid * 0x10_0000 + pasid);
      if (e !== undefined && e.valid) {
        ctx.lastPasid = pasid;
        ctx.lastPe = e;
        this.checkStale(e, 'pasid-cache');
        if (trace) trace.push(cachedEntryStep(PASID_ENTRY, e.entryAddr, e.words, 'pasid-cache', e.fault, pasid));
        this.lastPasidFpd = e.fpd;
        return e.fault !== 0 ? e.fault : e;
      }
    }
    const mem = this.memory;
    this.lastPasidFpd = ctx.fpd;
    const dirAddr = ctx.pasidDir + Math.floor(pasid / 64) * 8;
    if (!this.readable(ctx.pasidDir)) {
      if (trace) trace.push(note('pasid-directory', `PASID directory 0x${ctx.pasidDir.toString(16)} cannot be read`, false));
      return 0x50;
    }
    const dir = readWords(mem, dirAddr, 1);
    this.walker.reads++;
    const deps: Deps = useCache ? [dirAddr, dir[1]!, dir[0]!, -1] : NO_DEPS;
    const dirPresent = (dir[0]! & 1) === 1;
    const dirFpd = (dir[0]! & 2) === 2;
    this.lastPasidFpd = ctx.fpd || dirFpd;
    const dirBad = reservedViolations(PASID_DIR_ENTRY, dir);
    const tbl = (dir[1]! & 0xf_ffff) * TWO_32 + ((dir[0]! & 0xffff_f000) >>> 0);
    if (trace) trace.push(entryStep(PASID_DIR_ENTRY, 'pasid-dir-entry', ctx.pasidDir, Math.floor(pasid / 64), dir, !dirPresent ? `P = 0: no PASID table for PASIDs 0x${(Math.floor(pasid / 64) * 64).toString(16)}-0x${(Math.floor(pasid / 64) * 64 + 63).toString(16)}` : dirBad.length ? `reserved bits set: ${dirBad.join(', ')}` : `PASID table at 0x${tbl.toString(16)}`, dirPresent && dirBad.length === 0));
    if (!dirPresent) return this.negativePasid(ctx, pasid, 0x51, dirAddr, dir, 0, [], deps, useCache, ctx.fpd || dirFpd);
    if (dirBad.length) return 0x52;
    if (!this.readable(tbl)) {
      if (trace) trace.push(note('pasid-table', `PASID table 0x${tbl.toString(16)} cannot be read`, false));
      return 0x58;
    }
    const entryAddr = tbl + (pasid & 63) * 64;
    const words = readWords(mem, entryAddr, 8);
    this.walker.reads++;
    if (useCache) for (let i = 0; i < 16; i += 2) deps.push(entryAddr + i * 4, words[i + 1]!, words[i]!, -1);
    const present = (words[0]! & 1) === 1;
    const fpd = ctx.fpd || dirFpd || (words[0]! & 2) === 2;
    this.lastPasidFpd = fpd;
    const bad = reservedViolations(PASID_ENTRY, words);
    const pgtt = (words[0]! >>> 6) & 7;
    const aw = (words[0]! >>> 2) & 7;
    const flpm = (words[4]! >>> 2) & 3;
    let problem = 0;
    let why = '';
    if (!present) {
      problem = 0x59;
      why = `P = 0: PASID 0x${pasid.toString(16)} is not set up on ${bdf(ctx.sid)}`;
    } else if (bad.length) {
      problem = 0x5a;
      why = `reserved bits set: ${bad.join(', ')}`;
    } else {
      const supported = { 1: this.ecap.flts, 2: this.ecap.slts, 3: this.ecap.nest, 4: this.ecap.pt } as Record<number, number>;
      if (!supported[pgtt]) {
        problem = 0x5b;
        why = `PGTT ${pgtt} is ${pgtt >= 1 && pgtt <= 4 ? `not supported (ECAP)` : 'reserved'}`;
      } else if ((pgtt === 2 || pgtt === 3) && (aw < 1 || aw > 3 || !((this.cap.sagaw >>> aw) & 1))) {
        problem = 0x5b;
        why = `AW ${aw} is not in CAP.SAGAW`;
      } else if ((pgtt === 1 || pgtt === 3) && (flpm > 1 || (flpm === 1 && !this.cap.fl5lp))) {
        problem = 0x5b;
        why = `FLPM ${flpm} (5-level) is not supported (CAP.FL5LP = 0)`;
      } else if (words[0]! & 0x200 && !this.ecap.slads) {
        problem = 0x5a;
        why = 'reserved bits set: SSADE (ECAP.SLADS = 0)';
      } else if ((words[0]! & 0x20 || words[4]! & 2) && !this.ecap.ers) {
        // The execute controls exist only on units that take execute requests.
        problem = 0x5a;
        why = `reserved bits set: ${words[0]! & 0x20 ? 'SLEE' : 'ERE'} (ECAP.ERS = 0)`;
      }
    }
    if (trace) trace.push(entryStep(PASID_ENTRY, 'pasid-entry', tbl, pasid & 63, words, problem ? why : `${PGTT_NAMES[pgtt]} translation, DID ${(words[2]! & 0xffff)}`, problem === 0));
    if (problem) return this.negativePasid(ctx, pasid, problem, dirAddr, dir, entryAddr, words, deps, useCache, fpd);
    const e: PasidCacheEntry = {
      sid: ctx.sid,
      pasid,
      dirAddr,
      dirWords: dir,
      entryAddr,
      words,
      fault: 0,
      fpd,
      pgtt,
      did: words[2]! & 0xffff,
      aw,
      ssade: (words[0]! & 0x200) !== 0,
      pwsnp: (words[2]! & 0x80_0000) !== 0,
      slptptr: (words[1]! & 0xf_ffff) * TWO_32 + ((words[0]! & 0xffff_f000) >>> 0),
      flptptr: (words[5]! & 0xf_ffff) * TWO_32 + ((words[4]! & 0xffff_f000) >>> 0),
      flpm,
      sre: (words[4]! & 1) === 1,
      ere: (words[4]! & 2) === 2,
      slee: (words[0]! & 0x20) !== 0,
      smep: (words[4]! & 0x40) !== 0,
      wpe: (words[4]! & 0x10) !== 0,
      nxe: (words[4]! & 0x20) !== 0,
      eafe: (words[4]! & 0x80) !== 0,
      bucket: undefined,
      deps,
      verifiedAt: mem.writeCount,
      valid: true,
    };
    if (useCache) {
      this.pasidCache.set(ctx.sid * 0x10_0000 + pasid, e);
      ctx.lastPasid = pasid;
      ctx.lastPe = e;
    }
    return e;
  }

  private negativePasid(ctx: ContextCacheEntry, pasid: number, fault: number, dirAddr: number, dirWords: number[], entryAddr: number, words: number[], deps: Deps, useCache: boolean, fpd: boolean): number {
    if (useCache && this.cacheNotPresent && NOT_PRESENT_FAULTS.has(fault)) {
      this.pasidCache.set(ctx.sid * 0x10_0000 + pasid, {
        sid: ctx.sid, pasid, dirAddr, dirWords, entryAddr, words, fault, fpd, pgtt: 0, did: -1, aw: 0, ssade: false, pwsnp: false,
        slptptr: 0, flptptr: 0, flpm: 0, sre: false, ere: false, slee: false, smep: false, wpe: false, nxe: false, eafe: false, bucket: undefined,
        deps, verifiedAt: this.memory.writeCount, valid: true,
      });
    }
    return fault;
  }

  private readable(addr: number): boolean {
    return addr < this.hawLimit && (!this.memory.hasHoles || this.memory.accessible(addr));
  }

  /** Compares a cached entry with memory if memory was written since it was last verified. */
  private checkStale(e: Verified & { fault?: number }, cache: StaleUse['cache']): void {
    if (e.verifiedAt === this.memory.writeCount) return;
    const at = firstMismatch(this.memory, e.deps);
    if (at < 0) {
      e.verifiedAt = this.memory.writeCount;
      return;
    }
    if (this.stale) return;
    const a = e.deps[at]!;
    const cached = hexPad(e.deps[at + 1]! >>> 0, 8) + hexPad(e.deps[at + 2]! >>> 0, 8);
    const now = hexPad(this.memory.readHi(a), 8) + hexPad(this.memory.readLo(a), 8);
    this.stale = {
      cache,
      entryAddress: '0x' + a.toString(16),
      cached: [cached],
      memory: [now],
      message: `the ${cache} entry used here was built from 0x${cached} at 0x${a.toString(16)}, but memory now holds 0x${now}: the table changed without the invalidation that would drop the cached copy`,
    };
  }

  // ---- results and faults ----

  private ok(output: number, size: number, perms: number, source: TranslationOk['source'], did: number | undefined, trace: WalkStep[] | null): TranslationOk {
    return new Translated(output, size, permsOf(perms), source, did, this.stale, trace ?? undefined, this.walker.reads);
  }

  private fault(q: Req, reason: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): TranslationFault {
    const info = linuxFaultReason(reason);
    const qualified = FAULT_REASONS.get(reason)?.qualified ?? true;
    let outcome: 'recorded' | 'suppressed-fpd' | 'overflow' | 'reported-to-device' = 'recorded';
    let index: number | undefined;
    if (probe) outcome = 'suppressed-fpd';
    else if (q.kind === 'translation-request') outcome = 'reported-to-device';
    else if (fpd && qualified) outcome = 'suppressed-fpd';
    else {
      index = this.recordFault(q, reason);
      if (index < 0) {
        outcome = 'overflow';
        index = undefined;
      }
    }
    if (trace) {
      trace.push(note('fault', `fault reason 0x${reason.toString(16).padStart(2, '0')}: ${info.text}${outcome === 'suppressed-fpd' && !probe ? ' (not recorded: FPD is set)' : outcome === 'overflow' ? ' (not recorded: fault recording registers full, PFO set)' : outcome === 'reported-to-device' ? ' (returned to the device in the ATS completion)' : ''}`, false));
    }
    if (!probe && this.events.active) {
      this.events.emit({
        type: 'fault',
        unit: this.name,
        ...requestFields(q),
        reason,
        reasonText: info.text,
        frcdIndex: index ?? null,
        outcome,
        ...(trace ? { trace: trace.slice() } : {}),
      });
    }
    return {
      ok: false,
      reason,
      reasonText: info.text,
      recorded: outcome === 'recorded',
      ...(index !== undefined ? { frcdIndex: index } : {}),
      ...(this.stale ? { stale: this.stale } : {}),
      ...(trace ? { trace } : {}),
      reads: this.walker.reads,
    };
  }

  /** Writes a fault into the next fault recording register; returns its index, or -1 on overflow (PFO). */
  private recordFault(q: Req, reason: number): number {
    // qword 0: FI (the faulting page); qword 1: SID, PRIV 29, EXE 30, PP 31 | FR 39:32, PV 59:40, AT 61:60, T 62, F 63
    const lo1 = (q.sid & 0xffff) | (q.hasPasid && q.priv ? 1 << 29 : 0) | (q.hasPasid && q.exec ? 1 << 30 : 0) | (q.hasPasid ? 1 << 31 : 0);
    const at = q.kind === 'translation-request' ? 1 : q.kind === 'translated' ? 2 : 0;
    const hi1 = (reason & 0xff) | ((q.hasPasid ? q.pasid & 0xf_ffff : 0) << 8) | (at << 28) | (q.write ? 0 : 1 << 30);
    return this.writeFaultRecord(q.hi, (q.lo & 0xffff_f000) >>> 0, lo1, hi1);
  }

  /**
   * Fills the next fault recording register with the two qwords (as 32-bit halves) and sets F; raises the
   * fault event unless masked. Returns the register index, or -1 when it is still full (PFO set instead).
   */
  private writeFaultRecord(qw0hi: number, qw0lo: number, qw1lo: number, qw1hi: number): number {
    const i = this.frcdNext;
    const off = this.frcdBase + i * 16;
    if ((this.reg(off + 8).hi >>> 31) & 1) {
      this.setRegBit(Reg.FSTS, FSTS.PFO, true);
      return -1;
    }
    this.setReg(off, qw0hi, qw0lo);
    this.setReg(off + 8, qw1hi | (1 << 31), qw1lo);
    this.frcdNext = (i + 1) % this.frcdCount;
    const fectl = this.reg(Reg.FECTL).lo;
    if (!(fectl & 0x8000_0000) && !(fectl & 0x4000_0000)) {
      this.setReg(Reg.FECTL, 0, fectl | 0x4000_0000);
      if (this.events.active) this.events.emit({ type: 'interrupt', unit: this.name, source: 'fault-event' });
    }
    return i;
  }

  private writeFrcd(offset: number, v: U64): void {
    // Only F (bit 127 = bit 31 of the top dword) is writable: write 1 to clear.
    if ((offset - this.frcdBase) % 16 !== 8 || !((v.hi >>> 31) & 1)) return;
    const r = this.reg(offset);
    this.setReg(offset, r.hi & 0x7fff_ffff, r.lo);
  }

  /** FSTS with PPF computed from the F bits and FRI pointing at the oldest pending record. */
  private fsts(): number {
    let v = this.reg(Reg.FSTS).lo & ~((1 << FSTS.PPF) | 0xff00);
    for (let k = 0; k < this.frcdCount; k++) {
      const i = (this.frcdNext + k) % this.frcdCount;
      if ((this.reg(this.frcdBase + i * 16 + 8).hi >>> 31) & 1) {
        v |= (1 << FSTS.PPF) | (i << 8);
        break;
      }
    }
    return v >>> 0;
  }

  /** The pending fault records, oldest first (what Linux's fault handler reads). */
  pendingFaults(): { index: number; sid: number; pasid: number | null; address: U64; reason: number; write: boolean; exec: boolean; priv: boolean; type: number }[] {
    const out = [];
    for (let k = 0; k < this.frcdCount; k++) {
      const i = (this.frcdNext + k) % this.frcdCount;
      const lo = this.reg(this.frcdBase + i * 16);
      const hi = this.reg(this.frcdBase + i * 16 + 8);
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

  get faultRecordingRegisters(): { base: number; count: number } {
    return { base: this.frcdBase, count: this.frcdCount };
  }

  private emitTranslation(request: DmaRequest, r: TranslationResult): void {
    const q = normalize(request);
    this.events.emit({
      type: 'translation',
      unit: this.name,
      ...requestFields(q),
      requestKind: q.kind,
      output: r.ok ? r.output : null,
      source: r.ok ? r.source : null,
      fault: r.ok ? null : r.reason,
      ...(r.stale ? { stale: r.stale } : {}),
      ...(r.trace ? { trace: r.trace } : {}),
    });
  }

  // =====================================================================================================
  // Invalidation queue
  // =====================================================================================================

  /** Queue geometry from IQA: base, descriptor size (16 or 32 bytes), number of entries. */
  get invalidationQueue(): { base: number; descSize: 16 | 32; entries: number; head: number; tail: number } {
    const iqa = this.reg(Reg.IQA);
    const descSize = (iqa.lo >>> 11) & 1 ? 32 : 16;
    const bytes = 4096 * 2 ** (iqa.lo & 7);
    return {
      base: iqa.hi * TWO_32 + ((iqa.lo & 0xffff_f000) >>> 0),
      descSize,
      entries: bytes / descSize,
      head: this.reg(Reg.IQH).lo / descSize,
      tail: this.reg(Reg.IQT).lo / descSize,
    };
  }

  /**
   * Fetches and executes descriptors from IQH to IQT, stopping at an invalid one (IQE, IQH left on it, the
   * reason in IQERCD.IQEI: the table at IQEI in descriptors.ts) or a device-TLB time-out (ITE).
   */
  private processQueue(): void {
    if (!this.regBit(Reg.GSTS, GSTS.QIES)) return;
    const fsts = this.reg(Reg.FSTS).lo;
    if (fsts & ((1 << FSTS.IQE) | (1 << FSTS.ITE))) return;
    const q = this.invalidationQueue;
    const words = q.descSize === 32 ? 4 : 2;
    const tail = this.reg(Reg.IQT).lo;
    const iqh = this.reg(Reg.IQH).lo / q.descSize;
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
      if (this.ttm > RTADDR_TTM_SCALABLE) {
        this.queueError('IQE', head, `RTADDR.TTM ${this.ttm.toString(2).padStart(2, '0')}b latched by SRTP is reserved`, { iqei: IQEI.INVALID_TTM });
        return;
      }
      // Scalable mode takes 256-bit descriptors only: with IQA.DW = 0 every descriptor is invalid.
      if (this.scalable && words === 2) {
        this.queueError('IQE', head, `128-bit descriptor at index ${head} while the unit is in scalable mode (IQA.DW = 0)`, { iqei: IQEI.INVALID_WIDTH });
        return;
      }
      const addr = q.base + head * q.descSize;
      if (!this.readable(addr)) {
        this.queueError('IQE', head, `descriptor at index ${head} (0x${addr.toString(16)}) cannot be read`, { iqei: IQEI.FETCH_ERROR });
        return;
      }
      const w = readWords(this.memory, addr, words);
      const d = decodeDescriptor(w, words as 2 | 4);
      if (d.invalid) {
        this.queueError('IQE', head, `${d.name} at index ${head}: ${d.invalid}`, { iqei: d.iqei ?? IQEI.RESERVED_FIELD });
        return;
      }
      const t = this.traps;
      let de: VtdDescriptorEvent | undefined;
      if (t !== undefined) {
        const qwords: U64[] = [];
        for (let i = 0; i < words; i++) qwords.push(new U64(w[i * 2 + 1]! >>> 0, w[i * 2]! >>> 0));
        de = { index: head, type: d.type, typeName: d.name, qwords, fields: d.fields };
      }
      const result = t?.descriptor?.(de!) === 'handled' ? 'ok' : this.execute(d.type, d.fields, head, w, d);
      if (de !== undefined && result !== 'invalid') t!.descriptorDone?.(de);
      if (result === 'invalid') return; // IQE: IQH stays on the descriptor
      head = (head + 1) % q.entries;
      this.setReg(Reg.IQH, 0, head * q.descSize);
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
    this.setRegBit(Reg.FSTS, error === 'IQE' ? FSTS.IQE : error === 'ITE' ? FSTS.ITE : FSTS.ICE, true);
    const iqer = this.reg(Reg.IQER);
    const iqei = o.iqei ?? IQEI.NOT_AVAILABLE;
    if (error === 'IQE') this.setReg(Reg.IQER, iqer.hi, (iqer.lo & ~0xf) | iqei);
    if (error === 'ITE' && sid !== undefined) this.setReg(Reg.IQER, (iqer.hi & 0xffff_0000) | sid, iqer.lo);
    if (error === 'ICE' && sid !== undefined) this.setReg(Reg.IQER, ((iqer.hi & 0xffff) | (sid << 16)) >>> 0, iqer.lo);
    if (this.events.active) this.events.emit({ type: 'queue-error', unit: this.name, error, index, ...(error === 'IQE' ? { iqei } : {}), message, ...(sid !== undefined ? { sid } : {}) });
    const fectl = this.reg(Reg.FECTL).lo;
    if (!(fectl & 0x8000_0000) && !(fectl & 0x4000_0000)) {
      this.setReg(Reg.FECTL, 0, fectl | 0x4000_0000);
      if (this.events.active) this.events.emit({ type: 'interrupt', unit: this.name, source: 'fault-event' });
    }
  }

  private execute(type: number, f: Record<string, number>, index: number, words: number[], d: ReturnType<typeof decodeDescriptor>): 'ok' | 'timeout' | 'invalid' {
    const dropped: Record<string, number> = {};
    let status: 'ok' | 'timeout' = 'ok';
    let completionInterrupt = false;
    const add = (k: string, n: number) => (dropped[k] = (dropped[k] ?? 0) + n);
    switch (type) {
      case DescType.CONTEXT_CACHE: {
        const fm = f.FM!;
        const mask = fm === 0 ? 0xffff : fm === 1 ? 0xfffb : fm === 2 ? 0xfff9 : 0xfff8;
        add('context-cache', this.dropContexts((e) => f.G === 1 || (f.G === 2 ? this.scalable || e.did === f.DID : (e.sid & mask) === (f.SID! & mask))));
        break;
      }
      case DescType.IOTLB: {
        const select = (b: IotlbBucket) => f.G === 1 || (b.did === f.DID && b.mode !== 'fl');
        const range = f.G === 3 ? { base: f.ADDR! * 4096, size: 4096 * 2 ** f.AM!, leafOnly: f.IH === 1 } : undefined;
        if (range && (f.AM! > this.cap.mamv || range.base % range.size !== 0)) {
          this.queueError('IQE', index, `IOTLB invalidation: address 0x${range.base.toString(16)} is not aligned to 2^AM pages or AM > CAP.MAMV`, { iqei: IQEI.RESERVED_FIELD });
          return 'invalid';
        }
        const n = this.iotlb.invalidate(select, range);
        add('iotlb', n.iotlb);
        add('paging-structure-cache', n.pwc);
        break;
      }
      case DescType.PASID_IOTLB: {
        const select = (b: IotlbBucket) => b.did === f.DID && b.pasid === f.PASID && (b.mode === 'fl' || b.mode === 'nested');
        const range = f.G === 3 ? { base: f.ADDR! * 4096, size: 4096 * 2 ** f.AM!, leafOnly: f.IH === 1 } : undefined;
        const n = this.iotlb.invalidate(select, range);
        add('iotlb', n.iotlb);
        add('paging-structure-cache', n.pwc);
        break;
      }
      case DescType.PASID_CACHE: {
        add('pasid-cache', this.dropPasids((e) => f.G === 3 || ((e.did === f.DID || e.fault !== 0) && (f.G === 0 || e.pasid === f.PASID))));
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
          this.setRegBit(Reg.ICS, ICS.IWC, true);
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
        const pasid = f.PP ? f.PASID! : -1;
        const ep = this.endpointOf(f.RID!);
        const group = ep?.completeGroup(pasid, f.PRGI!, f.RC!);
        if (this.events.active) {
          this.events.emit({ type: 'page-response', unit: this.name, sid: f.RID!, pasid: f.PP ? f.PASID! : null, prgIndex: f.PRGI!, code: f.RC!, codeName: responseCodeName(f.RC!), origin: 'descriptor' });
        }
        add('page-request-groups', group ? 1 : 0);
        break;
      }
    }
    if (this.events.active) {
      this.events.emit({
        type: 'invalidation',
        unit: this.name,
        index,
        descriptorType: d.name,
        granularity: d.granularity,
        words: rawWords(words, words.length / 2),
        fields: f,
        dropped,
      });
      if (completionInterrupt) this.events.emit({ type: 'interrupt', unit: this.name, source: 'invalidation-completion' });
    }
    return status;
  }

  private dropContexts(match: (e: ContextCacheEntry) => boolean): number {
    let n = 0;
    for (let sid = 0; sid < 65536; sid++) {
      const e = this.ctxCache[sid];
      if (e && match(e)) {
        e.valid = false;
        this.ctxCache[sid] = undefined;
        n++;
      }
    }
    return n;
  }

  private dropPasids(match: (e: PasidCacheEntry) => boolean): number {
    let n = 0;
    for (const [k, e] of this.pasidCache) {
      if (match(e)) {
        e.valid = false;
        this.pasidCache.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Number of entries in each cache (for views and tests). */
  cacheSizes(): { context: number; pasid: number; iotlb: number } {
    let context = 0;
    for (const e of this.ctxCache) if (e) context++;
    return { context, pasid: this.pasidCache.size, iotlb: this.iotlb.entryCount };
  }

  // =====================================================================================================
  // Page requests
  // =====================================================================================================

  get pageRequestQueue(): { base: number; entries: number; head: number; tail: number } {
    const pqa = this.reg(Reg.PQA);
    const bytes = 4096 * 2 ** (pqa.lo & 7);
    return {
      base: pqa.hi * TWO_32 + ((pqa.lo & 0xffff_f000) >>> 0),
      entries: bytes / 32,
      head: this.reg(Reg.PQH).lo / 32,
      tail: this.reg(Reg.PQT).lo / 32,
    };
  }

  /**
   * A page request from an endpoint (PCIe PRI) arrives. The hardware checks the context, writes a page
   * request descriptor at PQT and raises the page request event; when the queue is full it sets PRS.PRO
   * and, for a last-in-group request, answers the device itself with Success so it retries.
   */
  receivePageRequest(req: PriRequest): 'queued' | 'overflow' | 'rejected' {
    let outcome: 'queued' | 'overflow' | 'rejected' = 'queued';
    let queueIndex: number | null = null;
    const words = encodePageRequest(req);
    const q: Req = { sid: req.rid, hasPasid: req.pasid !== undefined, pasid: req.pasid ?? 0, hi: Math.floor(req.address / TWO_32), lo: req.address >>> 0, write: req.write, exec: req.exec, priv: req.priv, kind: 'translation-request' };
    if (!this.scalable) {
      this.fault({ ...q, kind: 'untranslated' }, 0x32, false, null, false);
      outcome = 'rejected';
    } else {
      const ctx = this.context(req.rid, null, this.caching);
      if (typeof ctx === 'number' || !ctx.pre) {
        this.fault({ ...q, kind: 'untranslated' }, typeof ctx === 'number' ? ctx : 0x47, typeof ctx === 'number' ? this.lastCtxFpd : ctx.fpd, null, false);
        outcome = 'rejected';
      }
    }
    if (outcome === 'queued') {
      const pq = this.pageRequestQueue;
      const next = (pq.tail + 1) % pq.entries;
      if (next === pq.head || pq.entries === 0) {
        outcome = 'overflow';
        this.setRegBit(Reg.PRS, PRS.PRO, true);
      } else {
        const addr = pq.base + pq.tail * 32;
        for (let i = 0; i < 8; i += 2) this.memory.write64(addr + i * 4, words[i + 1]!, words[i]!, 'prq-descriptor');
        queueIndex = pq.tail;
        this.setReg(Reg.PQT, 0, next * 32);
        this.setRegBit(Reg.PRS, PRS.PPR, true);
        const pectl = this.reg(Reg.PECTL).lo;
        if (!(pectl & 0x8000_0000) && !(pectl & 0x4000_0000)) {
          this.setReg(Reg.PECTL, 0, pectl | 0x4000_0000);
          if (this.events.active) this.events.emit({ type: 'interrupt', unit: this.name, source: 'page-request' });
        }
      }
    }
    if (this.events.active) {
      this.events.emit({
        type: 'page-request',
        unit: this.name,
        sid: req.rid,
        pasid: req.pasid ?? null,
        address: '0x' + req.address.toString(16),
        read: req.read,
        write: req.write,
        exec: req.exec,
        priv: req.priv,
        prgIndex: req.prgIndex,
        lastInGroup: req.lastInGroup,
        outcome,
        queueIndex,
        descriptor: rawWords(words, 4),
      });
    }
    if (outcome !== 'queued' && req.lastInGroup) {
      // Overflow: Success so the device retries. Rejected: Invalid Request so it stops waiting for this group.
      const code = outcome === 'overflow' ? 0 : 1;
      this.endpointOf(req.rid)?.completeGroup(req.pasid ?? -1, req.prgIndex, code);
      if (this.events.active) {
        this.events.emit({ type: 'page-response', unit: this.name, sid: req.rid, pasid: req.pasid ?? null, prgIndex: req.prgIndex, code, codeName: responseCodeName(code), origin: 'hardware-overflow' });
      }
    }
    return outcome;
  }

  // =====================================================================================================
  // Snapshots
  // =====================================================================================================

  capture(): VtdUnitState {
    const copyDeps = <T extends Verified>(e: T): T => ({ ...e, deps: e.deps.slice() });
    const tlb: Mutable<VtdUnitState['tlb']> = [];
    const pwc: Mutable<VtdUnitState['pwc']> = [];
    for (const b of this.iotlb.buckets.values()) {
      for (const m of [b.small, b.mid, b.big]) for (const e of m.values()) tlb.push({ did: b.did, pasid: b.pasid, mode: b.mode, entry: copyDeps(e) });
      b.pwc.forEach((m, level) => {
        for (const [key, e] of m) pwc.push({ did: b.did, pasid: b.pasid, mode: b.mode, level, key, entry: copyDeps(e) });
      });
    }
    return {
      regs: [...this.regs.entries()].map(([k, v]) => [k, { ...v }] as const),
      frcdNext: this.frcdNext,
      rootTable: this.rootTable,
      scalable: this.scalable,
      ttm: this.ttm,
      contexts: this.ctxCache.filter((e): e is ContextCacheEntry => e !== undefined).map((e) => ({ ...copyDeps(e), lastPasid: -1, lastPe: undefined })),
      pasids: [...this.pasidCache.values()].map((e) => ({ ...copyDeps(e), bucket: undefined })),
      tlb,
      pwc,
      ir: this.ir.capture(),
    };
  }

  restore(state: unknown): void {
    const s = state as VtdUnitState;
    this.regs.clear();
    for (const [k, v] of s.regs) this.regs.set(k, { ...v });
    this.frcdNext = s.frcdNext;
    this.rootTable = s.rootTable;
    this.scalable = s.scalable;
    this.ttm = s.ttm ?? (s.scalable ? RTADDR_TTM_SCALABLE : 0);
    this.ctxCache = new Array(65536);
    for (const e of s.contexts) this.ctxCache[e.sid] = { ...e, deps: e.deps.slice(), lastPasid: -1, lastPe: undefined };
    this.pasidCache = new Map(s.pasids.map((e) => [e.sid * 0x10_0000 + e.pasid, { ...e, deps: e.deps.slice(), bucket: undefined }]));
    this.iotlb.clear();
    for (const t of s.tlb) this.iotlb.insert(this.iotlb.bucket(t.did, t.pasid, t.mode), { ...t.entry, deps: t.entry.deps.slice() });
    for (const p of s.pwc) this.iotlb.insertPwc(this.iotlb.bucket(p.did, p.pasid, p.mode), p.level, p.key, { ...p.entry, deps: p.entry.deps.slice() });
    this.ir.restore(s.ir);
  }
}

export interface VtdUnitState {
  readonly regs: readonly (readonly [number, RegValue])[];
  readonly frcdNext: number;
  readonly rootTable: number;
  readonly scalable: boolean;
  /** RTADDR.TTM as latched (absent in states captured before it was kept: then 01 or 00 from `scalable`). */
  readonly ttm?: number;
  readonly contexts: readonly ContextCacheEntry[];
  readonly pasids: readonly PasidCacheEntry[];
  readonly tlb: readonly { did: number; pasid: number; mode: IotlbBucket['mode']; entry: TlbEntry }[];
  readonly pwc: readonly { did: number; pasid: number; mode: IotlbBucket['mode']; level: number; key: number; entry: PwcEntry }[];
  /** Interrupt remapping: latched IRTA and the interrupt entry cache (absent in states captured before it existed). */
  readonly ir?: InterruptRemapState;
}

// ---- helpers ----

type Mutable<T> = T extends readonly (infer E)[] ? E[] : never;

/** The request as events show it. */
function requestFields(q: Req): { sid: number; pasid: number | null; address: string; access: 'read' | 'write' | 'exec' } {
  return { sid: q.sid, pasid: q.hasPasid ? q.pasid : null, address: '0x' + (q.hi * TWO_32 + q.lo).toString(16), access: q.exec ? 'exec' : q.write ? 'write' : 'read' };
}

function normalize(r: DmaRequest, into?: Req): Req {
  const q: Req = into ?? { sid: 0, hasPasid: false, pasid: 0, hi: 0, lo: 0, write: false, exec: false, priv: false, kind: 'untranslated' };
  const a = r.addr;
  if (typeof a === 'number') {
    if (!(a >= 0 && a <= Number.MAX_SAFE_INTEGER && a === Math.floor(a))) throw new RangeError(`DMA address ${a} is not an exact unsigned integer; pass a U64`);
    q.hi = a < TWO_32 ? 0 : Math.floor(a / TWO_32);
    q.lo = a >>> 0;
  } else {
    q.hi = a.hi;
    q.lo = a.lo;
  }
  q.sid = r.sid & 0xffff;
  q.hasPasid = r.pasid !== undefined;
  q.pasid = r.pasid ?? 0;
  q.write = r.write ?? false;
  q.exec = r.exec ?? false;
  q.priv = r.priv ?? false;
  q.kind = r.kind ?? 'untranslated';
  return q;
}

function canonical(hi: number, fiveLevel: boolean): boolean {
  const top = fiveLevel ? hi >>> 24 : hi >>> 15;
  const all = fiveLevel ? 0xff : 0x1_ffff;
  return top === 0 || top === all;
}

function lookupTlb(b: IotlbBucket, vpn: number): TlbEntry | undefined {
  const e = b.small.get(vpn);
  if (e !== undefined) return e;
  if (b.mid.size > 0) {
    const m = b.mid.get(Math.floor(vpn / 512));
    if (m !== undefined) return m;
  }
  if (b.big.size > 0) return b.big.get(Math.floor(vpn / 262144));
  return undefined;
}

/**
 * Whether a cached translation allows the access (an entry that does not is treated as a miss, and the
 * walk decides). Second-level permissions are plain R/W/X. First-level ones follow the CPU's rules: user
 * requests need U/S, writes need R/W unless a supervisor request runs with WPE = 0, execute needs X (which
 * the walk of an execute request computed from XD and NXE) and, for a supervisor request under SMEP, a
 * supervisor page. Nested entries carry the second stage's R/W/X in the SL bits as well. An entry cached by
 * a walk for another kind of request may lack an X that an execute request would get: that is a miss too.
 */
function permitted(perms: number, need: number, fl: { user: boolean; wpe: boolean; smep: boolean; nested: boolean } | null, slDirty = false): boolean {
  // With second-level A/D (SSADE), a write through an entry cached while the leaf was clean walks again to set D.
  if (fl === null) return (perms & need) === need && !(slDirty && need & Perm.W && !(perms & Perm.D));
  if (fl.user && !(perms & Perm.U)) return false;
  if (need & Perm.W && !(perms & Perm.W) && (fl.user || fl.wpe)) return false;
  // A write through an entry cached before the leaf was dirty walks again, to set D (as a CPU TLB does).
  if (need & Perm.W && !(perms & Perm.D)) return false;
  if (need & Perm.X && !(perms & Perm.X)) return false;
  if (need & Perm.X && !fl.user && fl.smep && perms & Perm.U) return false;
  if (fl.nested) {
    const sl = need & (Perm.R | Perm.W | Perm.X);
    if (((perms >>> SL_SHIFT) & sl) !== sl) return false;
  }
  return true;
}

/** In a nested IOTLB entry the second stage's R/W/X sit at these bits. */
const SL_SHIFT = 5;

/** One shared, frozen Permissions object per combination of R/W/X/U, so results allocate none. */
const PERMS: readonly Permissions[] = Array.from({ length: 16 }, (_, p) =>
  Object.freeze({ read: (p & Perm.R) !== 0, write: (p & Perm.W) !== 0, exec: (p & Perm.X) !== 0, priv: (p & Perm.U) === 0 }),
);

function permsOf(p: number): Permissions {
  // Nested entries: effective permission is what both stages allow.
  const sl = (p >>> SL_SHIFT) & 7;
  const eff = sl !== 0 ? p & (sl | Perm.U) : p;
  return PERMS[eff & 15]!;
}

/** A copy of a successful translation with some fields changed (results are immutable). */
export function translationWith(r: TranslationOk, changes: { source?: TranslationOk['source']; stale?: StaleUse; address?: number }): TranslationOk {
  return new Translated(changes.address ?? r.address, r.pageSize, r.perms, changes.source ?? r.source, r.did, changes.stale ?? r.stale, r.trace, r.reads);
}

/** A successful translation. `output` is formatted only when someone reads it. */
class Translated implements TranslationOk {
  readonly ok = true as const;
  constructor(
    readonly address: number,
    readonly pageSize: number,
    readonly perms: Permissions,
    readonly source: TranslationOk['source'],
    readonly did: number | undefined,
    readonly stale: StaleUse | undefined,
    readonly trace: readonly WalkStep[] | undefined,
    readonly reads: number,
  ) {}

  get output(): string {
    return '0x' + this.address.toString(16);
  }

  toJSON(): TranslationOk {
    const { ok, output, address, pageSize, perms, source, did, stale, trace, reads } = this;
    return { ok, output, address, pageSize, perms, source, reads, ...(did !== undefined ? { did } : {}), ...(stale ? { stale } : {}), ...(trace ? { trace } : {}) };
  }
}

function readWords(mem: PhysicalMemory, addr: number, qwords: number): number[] {
  const out = new Array<number>(qwords * 2);
  for (let i = 0; i < qwords; i++) {
    out[i * 2] = mem.readLo(addr + i * 8);
    out[i * 2 + 1] = mem.readHi(addr + i * 8);
  }
  return out;
}

/** Whether an ATS-style address has every bit from 12 to 62 set: "invalidate everything" with S = 1. */
function allOnesBelow(pageField: number): boolean {
  return pageField >= 2 ** 51 - 1;
}

function bdf(sid: number): string {
  return `${(sid >>> 8).toString(16).padStart(2, '0')}:${((sid >>> 3) & 0x1f).toString(16).padStart(2, '0')}.${sid & 7}`;
}

function note(structure: string, check: string, ok: boolean): WalkStep {
  return { structure, raw: [], fields: {}, check, ok };
}

function entryStep(layout: Layout, structure: string, table: number, index: number, words: number[], check: string, ok: boolean): WalkStep {
  const size = layout.words * 8;
  return {
    structure,
    table: '0x' + table.toString(16),
    index,
    entryAddress: '0x' + (table + index * size).toString(16),
    raw: rawWords(words, layout.words),
    fields: decodeEntry(layout, words),
    check,
    ok,
  };
}

function cachedEntryStep(layout: Layout, addr: number, words: readonly number[], cache: 'context-cache' | 'pasid-cache', fault: number, pasid?: number): WalkStep {
  return {
    structure: layout === PASID_ENTRY ? 'pasid-entry' : 'context-entry',
    entryAddress: '0x' + addr.toString(16),
    raw: words.length ? rawWords(words, layout.words) : [],
    fields: words.length ? decodeEntry(layout, words) : {},
    check: fault ? `cached not-present entry (fault 0x${fault.toString(16)}), used without reading memory` : `from the ${cache}${pasid !== undefined ? ` (PASID 0x${pasid.toString(16)})` : ''}`,
    ok: fault === 0,
    cached: cache,
  };
}

function tlbStep(e: TlbEntry, b: IotlbBucket): WalkStep {
  return {
    structure: 'iotlb',
    raw: [],
    fields: { DID: b.did, ...(b.pasid >= 0 ? { PASID: b.pasid } : {}), mode: b.mode, page: '0x' + (e.vpn * e.size).toString(16), size: e.size, output: '0x' + e.output.toString(16) },
    check: e.fault ? `cached not-present translation (fault 0x${e.fault.toString(16)})` : `IOTLB hit: 0x${(e.vpn * e.size).toString(16)} -> 0x${e.output.toString(16)}`,
    ok: e.fault === 0,
    cached: 'iotlb',
  };
}

function pwcStep(p: PwcEntry, level: number, mode: string): WalkStep {
  const prefix = mode === 'sl' ? 'sl' : 'fl';
  const names = ['', 'pte', 'pde', 'pdpe', 'pml4e', 'pml5e'];
  return {
    structure: `${prefix}-${names[level]}`,
    level,
    entryAddress: '0x' + p.entryAddr.toString(16),
    raw: rawWords(p.raw, 1),
    fields: {},
    check: `from the paging-structure cache: the level-${level - 1} table is at 0x${p.table.toString(16)}`,
    ok: true,
    cached: 'paging-structure-cache',
  };
}

export { describeContext };
function describeContext(words: number[], sm: boolean): string {
  if (!sm) {
    const tt = (words[0]! >>> 2) & 3;
    return tt === 2 ? 'pass-through' : `second-level table, ${30 + 9 * (words[2]! & 7)}-bit, DID ${(words[2]! >>> 8) & 0xffff}`;
  }
  const pdts = (words[0]! >>> 9) & 7;
  return `PASID directory with ${2 ** (pdts + 7)} entries, RID_PASID ${words[2]! & 0xf_ffff}`;
}

import type { Endpoint } from '../hw/endpoint';
import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import type { DmaRequest, InterruptRequest, InterruptResult, IommuUnit, PriRequest, TranslateOptions, TranslationRecord, TranslationResult } from '../hw/types';
import { U64 } from '../u64';
import type { Iotlb } from './caches';
import { capabilitiesOf, decodeCap, decodeEcap, type VtdCap, type VtdEcap, type VtdFeatures } from './cap';
import { FaultRecorder, type PendingFault } from './fault-recording';
import { InterruptRemapper } from './interrupt-remap';
import { InvalidationQueue } from './invalidation-queue';
import { PageRequestQueue } from './page-requests';
import { readableAt } from './reads';
import { RegisterFile } from './register-file';
import { RegisterInvalidation } from './register-invalidation';
import { GCMD, GSTS, Reg, REG64, type RegName } from './registers';
import { captureUnit, restoreUnit, type SnapshotParts, type VtdUnitState } from './snapshot';
import { type FaultRecordAs, Translation } from './translation';
import { VIRTUAL_COMMAND_REGISTERS, type VtdTraps } from './traps';

export type { VtdUnitState } from './snapshot';
export type { VtdDescriptorEvent, VtdRegisterWrite, VtdTraps } from './traps';

/**
 * One Intel VT-d remapping unit (a DRHD), composed of the hardware's own blocks, each in its module:
 *
 * | block | module | registers |
 * |---|---|---|
 * | register file | register-file.ts | storage and write dispatch for all of them |
 * | translation and its caches | translation.ts, context-lookup.ts (walk.ts, caches.ts) | GCMD.TE/SRTP, RTADDR |
 * | fault recording | fault-recording.ts | FRCD at CAP.FRO, FSTS, FECTL |
 * | invalidation | invalidation-queue.ts, register-invalidation.ts (invalidation.ts) | IQA, IQH, IQT, ICS, IQERCD; CCMD, IVA and IOTLB at ECAP.IRO |
 * | page request queue | page-requests.ts | PQA, PQH, PQT, PRS, PECTL |
 * | interrupt remapping | interrupt-remap.ts | IRTA, GCMD.IRE/SIRTP/CFI |
 * | snapshots | snapshot.ts | |
 *
 * Software (the driver model, or a test) programs the unit only as real software does: by writing memory
 * and registers. The unit itself keeps the global command register (GCMD fans out to the blocks) and the
 * public face the rest of the model uses.
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
  /** Record some faults with other codes than the specification's, as an emulation does (translation.ts). */
  readonly recordAs?: FaultRecordAs;
}

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
  readonly iotlb: Iotlb;

  private readonly regs: RegisterFile;
  private readonly faults: FaultRecorder;
  private readonly translation: Translation;
  private readonly iq: InvalidationQueue;
  private readonly prq: PageRequestQueue;
  private readonly registerInvalidation: RegisterInvalidation;
  /** Interrupt remapping: the latched IRTA and the interrupt entry cache (vtd/interrupt-remap.ts). */
  private readonly ir: InterruptRemapper;
  private readonly parts: SnapshotParts;
  private endpointOf: (sid: number) => Endpoint | undefined = () => undefined;

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

    const regs = (this.regs = new RegisterFile(this.name, events));
    regs.set(Reg.VER, 0, (this.version[0] << 4) | this.version[1]);
    regs.set(Reg.CAP, this.capRaw.hi, this.capRaw.lo);
    regs.set(Reg.ECAP, this.ecapRaw.hi, this.ecapRaw.lo);
    regs.readOnly(Reg.VER, Reg.CAP, Reg.ECAP, Reg.GSTS);
    regs.claim(Reg.GCMD, (v) => this.writeGcmd(v.lo));
    // The virtual command registers are named (for events and traps) but not implemented: a VMM emulates them.
    if (this.ecap.vcs) for (const r of VIRTUAL_COMMAND_REGISTERS) regs.nameRegister(r.offset, r.name, 64);
    const endpointOf = (sid: number) => this.endpointOf(sid);
    const hawLimit = 2 ** memory.hostAddressWidth;

    this.faults = new FaultRecorder(regs, this.name, events, this.cap);
    this.translation = new Translation(memory, events, this.name, this.cap, this.ecap, this.faults, {
      caching: this.caching,
      cacheNotPresent: this.cacheNotPresent,
      iotlbEntries: config.iotlbEntries ?? 4096,
      pwcEntries: config.pwcEntries ?? 1024,
      ...(config.recordAs ? { recordAs: config.recordAs } : {}),
    });
    this.iotlb = this.translation.iotlb;
    this.prq = new PageRequestQueue(regs, memory, events, this.name, this.translation, endpointOf);
    this.ir = new InterruptRemapper(
      {
        name: this.name,
        memory,
        events,
        features: { ir: this.ecap.ir === 1, eim: this.ecap.eim === 1, pi: this.cap.pi === 1, esirtps: this.cap.esirtps === 1 },
        gsts: () => regs.get(Reg.GSTS).lo,
        readable: (addr) => readableAt(memory, hawLimit, addr),
        recordFault: (qw0hi, qw0lo, qw1lo, qw1hi) => this.faults.writeRecord(qw0hi, qw0lo, qw1lo, qw1hi),
      },
      config.iecEntries,
    );
    this.iq = new InvalidationQueue(regs, memory, events, this.name, this.cap, this.ecap, this.translation, this.faults, this.ir, this.prq, endpointOf);
    this.registerInvalidation = new RegisterInvalidation(regs, events, this.name, this.cap, this.ecap, this.version, this.translation);
    this.parts = { regs, faults: this.faults, translation: this.translation, ir: this.ir };
  }

  /** How the unit finds an endpoint by requester ID (the machine wires this). */
  connect(endpointOf: (sid: number) => Endpoint | undefined): void {
    this.endpointOf = endpointOf;
  }

  // ---- registers ----

  /** Reads a register by name or offset (FRCD registers by offset). */
  readRegister(which: RegName | number): U64 {
    return this.regs.read(typeof which === 'number' ? which : Reg[which]);
  }

  /** Every architectural register with its current value, in offset order (for the debugfs regset). */
  registers(): { name: string; offset: number; width: 32 | 64; value: U64 }[] {
    return (Object.keys(Reg) as RegName[])
      .map((name) => ({ name, offset: Reg[name], width: (REG64.has(name) ? 64 : 32) as 32 | 64, value: this.readRegister(name) }))
      .sort((a, b) => a.offset - b.offset);
  }

  /** Writes a register with the side effects the hardware gives that write. */
  writeRegister(which: RegName | number, value: U64 | number): void {
    this.regs.write(typeof which === 'number' ? which : Reg[which], typeof value === 'number' ? U64.fromNumber(value) : value);
  }

  /**
   * Sets a register from the hardware side: stored as given, with none of a software write's semantics and
   * no trap. For registers a VMM emulates (e.g. VCRSP answering a virtual command).
   */
  setRegisterValue(offset: number, value: U64): void {
    this.regs.set(offset, value.hi, value.lo);
  }

  /**
   * Attaches a VMM's hooks (traps.ts) to this unit's register writes and invalidation descriptors. One
   * trapper at a time; returns the detach function.
   */
  trap(traps: VtdTraps): () => void {
    if (this.regs.traps !== null) throw new Error(`${this.name} is already trapped`);
    this.regs.traps = traps;
    this.iq.traps = traps;
    return () => {
      if (this.regs.traps !== traps) return;
      this.regs.traps = null;
      this.iq.traps = null;
    };
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
      this.regs.set(offset, value.hi, value.lo);
    }
    const sts = this.regs.get(Reg.GSTS).lo;
    if ((sts >>> GSTS.RTPS) & 1) this.translation.lookup.latchRootTable(this.regs.get(Reg.RTADDR));
    this.translation.tes = ((sts >>> GSTS.TES) & 1) === 1;
    if ((sts >>> GSTS.IRTPS) & 1) {
      const irta = this.regs.get(Reg.IRTA);
      this.ir.latch(irta.hi, irta.lo);
    }
    this.translation.lookup.reload();
    this.iotlb.clear();
    this.ir.clearCache();
  }

  /** The global command: each bit is a command to one block, and GSTS reports what took effect. */
  private writeGcmd(cmd: number): void {
    let sts = this.regs.get(Reg.GSTS).lo;
    const set = (bit: number, on: boolean) => (sts = on ? sts | (1 << bit) : sts & ~(1 << bit));
    if (cmd & (1 << GCMD.SRTP)) {
      this.translation.lookup.latchRootTable(this.regs.get(Reg.RTADDR));
      set(GSTS.RTPS, true);
    }
    set(GSTS.TES, (cmd & (1 << GCMD.TE)) !== 0);
    const qie = (cmd & (1 << GCMD.QIE)) !== 0;
    if (qie && !(sts & (1 << GSTS.QIES))) this.iq.enabled();
    set(GSTS.QIES, qie);
    if (this.ecap.ir) {
      // Interrupt remapping (IRE, SIRTP, CFI are reserved on a unit without ECAP.IR).
      if (cmd & (1 << GCMD.SIRTP)) {
        const irta = this.regs.get(Reg.IRTA);
        this.ir.latch(irta.hi, irta.lo);
        set(GSTS.IRTPS, true);
      }
      set(GSTS.IRES, (cmd & (1 << GCMD.IRE)) !== 0);
      set(GSTS.CFIS, (cmd & (1 << GCMD.CFI)) !== 0);
    }
    this.regs.set(Reg.GCMD, 0, cmd & ~((1 << GCMD.SRTP) | (1 << GCMD.SIRTP) | (1 << GCMD.WBF)));
    this.regs.set(Reg.GSTS, 0, sts);
    this.translation.tes = ((sts >>> GSTS.TES) & 1) === 1;
  }

  get translationEnabled(): boolean {
    return this.translation.tes;
  }

  /** Whether the latched root table is in scalable-mode format (RTADDR.TTM = 01 when SRTP was last set). */
  get scalableMode(): boolean {
    return this.translation.lookup.scalable;
  }

  get rootTableAddress(): number {
    return this.translation.lookup.rootTable;
  }

  // ---- translation ----

  /** Translates a DMA request as the hardware would: caches, faults recorded, A/D bits set, events emitted. */
  translate(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    return this.translation.translate(request, options);
  }

  /** `translate` without a trace or a result object: the outcome goes into `out` (allocates nothing). */
  translateInto(request: DmaRequest, out: TranslationRecord): boolean {
    return this.translation.translateInto(request, out);
  }

  /**
   * The translation the current tables give, without touching anything: no cache is read or filled, no
   * fault recorded, no A/D bit set, no event. Used to check whether a cached translation is stale, and by
   * views that want to show what a walk would do.
   */
  probe(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    return this.translation.probe(request, options);
  }

  /** Number of entries in each cache (for views and tests). */
  cacheSizes(): { context: number; pasid: number; iotlb: number } {
    const { lookup } = this.translation;
    return { context: lookup.contextCacheSize, pasid: lookup.pasidCacheSize, iotlb: this.iotlb.entryCount };
  }

  // ---- interrupt remapping ----

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

  // ---- fault recording ----

  /** The pending fault records, oldest first (what Linux's fault handler reads). */
  pendingFaults(): PendingFault[] {
    return this.faults.pending();
  }

  get faultRecordingRegisters(): { base: number; count: number } {
    return { base: this.faults.base, count: this.faults.count };
  }

  // ---- queues ----

  /** Invalidation queue geometry from IQA: base, descriptor size (16 or 32 bytes), entries; IQH and IQT as indices. */
  get invalidationQueue(): { base: number; descSize: 16 | 32; entries: number; head: number; tail: number } {
    return this.iq.geometry;
  }

  /** Where the register-based invalidation registers are: IVA and IOTLB at ECAP.IRO * 16 and + 8. */
  get iotlbRegisters(): { iva: number; iotlb: number } {
    return { iva: this.registerInvalidation.ivaOffset, iotlb: this.registerInvalidation.iotlbOffset };
  }

  get pageRequestQueue(): { base: number; entries: number; head: number; tail: number } {
    return this.prq.geometry;
  }

  /**
   * A page request from an endpoint (PCIe PRI) arrives. The hardware checks the context, writes a page
   * request descriptor at PQT and raises the page request event; when the queue is full it sets PRS.PRO
   * and, for a last-in-group request, answers the device itself with Success so it retries.
   */
  receivePageRequest(req: PriRequest): 'queued' | 'overflow' | 'rejected' {
    return this.prq.receive(req);
  }

  // ---- snapshots ----

  capture(): VtdUnitState {
    return captureUnit(this.parts);
  }

  restore(state: unknown): void {
    restoreUnit(this.parts, state as VtdUnitState);
  }
}

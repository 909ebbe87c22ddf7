import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import { Translated } from '../hw/translation-result';
import type { DmaRequest, TranslationFault, TranslationOk, TranslationResult, TranslateOptions, WalkStep } from '../hw/types';
import { POW2 } from '../u64';
import { type Deps, Iotlb, type IotlbBucket, type PasidCacheEntry, Perm } from './caches';
import type { VtdCap, VtdEcap } from './cap';
import { CM_CACHED_FAULTS, ContextLookup } from './context-lookup';
import type { FaultRecorder } from './fault-recording';
import { FAULT_REASONS, linuxFaultReason } from './fault-reasons';
import { lookupTlb, permitted, permsOf, SL_SHIFT } from './iotlb-use';
import { readableAt } from './reads';
import { newRequest, normalize, type Req, requestFields, TWO_32 } from './request';
import { StaleCheck } from './stale-check';
import { PGTT } from './structures';
import { AD_SECOND_LEVEL, FL_CODES, LEGACY_SL, LEVEL_PAGES, NESTED_TABLE, NESTED_TOP, SM_SL, type SlFaultCodes, Walker } from './walk';
import { note, pwcStep, tlbStep } from './walk-steps';

const INTERRUPT_BASE = 0xfee0_0000;
const INTERRUPT_LAST = 0xfeef_ffff;

export interface TranslationConfig {
  readonly caching: boolean;
  readonly cacheNotPresent: boolean;
  readonly iotlbEntries: number;
  readonly pwcEntries: number;
  readonly recordAs?: FaultRecordAs;
}

/**
 * What an emulation records where the specification records `reason` (a vIOMMU that behaves as QEMU 7.2 does,
 * vmm/qemu-faults.ts): the code it puts in FRCD.FR and whether FPD can suppress it; undefined to record as
 * the specification says.
 */
export type FaultRecordAs = (reason: number, request: { readonly write: boolean; readonly hasPasid: boolean }) => { readonly code: number; readonly qualified: boolean } | undefined;

/**
 * The translation block of a unit: context and PASID lookup (context-lookup.ts), the IOTLB and
 * paging-structure caches (caches.ts), first-level, second-level and nested walks (walk.ts) with the
 * accessed/dirty updates they make, and the result or fault of each request (faults recorded through the
 * fault recording block). The hot path is `translate` with tracing off: one reused request object, no
 * closures, and a result object as the only allocation on a hit.
 */
export class Translation {
  /** GSTS.TES, kept as a field: it is read on every translation. */
  tes = false;
  readonly iotlb: Iotlb;
  readonly lookup: ContextLookup;
  readonly caching: boolean;
  readonly cacheNotPresent: boolean;

  private readonly walker: Walker;
  private readonly stale: StaleCheck;
  private readonly hawLimit: number;
  // Scratch for the hot path.
  private readonly adUpdates: number[] = [];

  private readonly recordAs: FaultRecordAs | undefined;

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly events: EventStream,
    private readonly unitName: string,
    private readonly cap: VtdCap,
    ecap: VtdEcap,
    private readonly faults: FaultRecorder,
    config: TranslationConfig,
  ) {
    this.caching = config.caching;
    this.cacheNotPresent = config.cacheNotPresent;
    this.recordAs = config.recordAs;
    this.iotlb = new Iotlb(config.iotlbEntries, config.pwcEntries);
    this.hawLimit = 2 ** memory.hostAddressWidth;
    this.walker = new Walker(memory, {
      large2M: (cap.sllps & 1) === 1,
      large1G: (cap.sllps & 2) === 2,
      hawLimit: 2 ** memory.hostAddressWidth,
    });
    this.stale = new StaleCheck(memory);
    this.lookup = new ContextLookup(memory, this.walker, this.stale, cap, ecap, config.cacheNotPresent);
  }

  /**
   * The context entry a page request from `sid` is checked against (the page request queue asks): a fault
   * reason, or the entry; `lastCtxFpd` tells whether the fault is to be recorded.
   */
  contextFor(sid: number) {
    return this.lookup.context(sid, null, this.caching);
  }

  /** Records (or not, as FPD and the request kind say) and reports a fault found outside a translation. */
  faultFor(q: Req, reason: number, fpd: boolean): TranslationFault {
    return this.fault(q, reason, fpd, null, false);
  }

  private readable(addr: number): boolean {
    return readableAt(this.memory, this.hawLimit, addr);
  }

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
  private readonly scratch: Req = newRequest();

  private run(q: Req, trace: WalkStep[] | null, probe: boolean): TranslationResult {
    this.stale.current = undefined;
    this.walker.reads = 0;
    if (q.exec && (!q.hasPasid || q.write)) {
      // PCIe carries Execute Requested in the PASID TLP prefix, and only reads may set it: without a PASID or
      // on a write there is no execute request to make.
      if (trace) trace.push(note('request', `${q.write ? 'a write' : 'a request without PASID'} cannot ask to execute (Execute Requested is a PASID-prefix bit of reads): walked as a ${q.write ? 'write' : 'read'}`, true));
      q.exec = false;
    }
    const useCache = this.caching && !probe;
    if (!this.tes) {
      if (trace) trace.push(note('translation', 'GSTS.TES = 0: DMA remapping is off; the address passes through untranslated', true));
      return this.ok(q.hi * TWO_32 + q.lo, 4096, Perm.R | Perm.W | Perm.X, 'pass-through', undefined, trace);
    }
    const ctx = this.lookup.context(q.sid, trace, useCache);
    if (typeof ctx === 'number') return this.fault(q, ctx, this.lookup.lastCtxFpd, trace, probe);

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
    const pe = this.lookup.pasidEntry(ctx, pasid, trace, useCache);
    if (typeof pe === 'number') return this.fault(q, pe, this.lookup.lastPasidFpd, trace, probe);
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
        this.stale.check(e, 'iotlb');
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
          this.stale.check(p, 'paging-structure-cache');
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
      if (bucket !== undefined && this.cacheNotPresent && CM_CACHED_FAULTS.has(code)) {
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
      const verifiedAt = this.stale.current ? -1 : this.memory.writeCount;
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
    return this.fault(q, this.lookup.scalable ? 0x87 : 0x0e, fpd, trace, probe);
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

  // ---- results and faults ----

  private ok(output: number, size: number, perms: number, source: TranslationOk['source'], did: number | undefined, trace: WalkStep[] | null): TranslationOk {
    return new Translated(output, size, permsOf(perms), source, did, this.stale.current, trace ?? undefined, this.walker.reads);
  }

  private fault(q: Req, specReason: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): TranslationFault {
    const as = this.recordAs?.(specReason, q);
    const reason = as?.code ?? specReason;
    const info = linuxFaultReason(reason);
    const qualified = as?.qualified ?? FAULT_REASONS.get(reason)?.qualified ?? true;
    let outcome: 'recorded' | 'suppressed-fpd' | 'overflow' | 'reported-to-device' = 'recorded';
    let index: number | undefined;
    if (probe) outcome = 'suppressed-fpd';
    else if (q.kind === 'translation-request') outcome = 'reported-to-device';
    else if (fpd && qualified) outcome = 'suppressed-fpd';
    else {
      index = this.faults.record(q, reason);
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
        unit: this.unitName,
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
      ...(this.stale.current ? { stale: this.stale.current } : {}),
      ...(trace ? { trace } : {}),
      reads: this.walker.reads,
    };
  }

  private emitTranslation(request: DmaRequest, r: TranslationResult): void {
    const q = normalize(request);
    this.events.emit({
      type: 'translation',
      unit: this.unitName,
      ...requestFields(q),
      requestKind: q.kind,
      output: r.ok ? r.output : null,
      source: r.ok ? r.source : null,
      fault: r.ok ? null : r.reason,
      ...(r.stale ? { stale: r.stale } : {}),
      ...(r.trace ? { trace: r.trace } : {}),
    });
  }
}

function canonical(hi: number, fiveLevel: boolean): boolean {
  const top = fiveLevel ? hi >>> 24 : hi >>> 15;
  const all = fiveLevel ? 0xff : 0x1_ffff;
  return top === 0 || top === all;
}

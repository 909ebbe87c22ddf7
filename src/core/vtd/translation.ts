import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import { newTranslationRecord, resultOf } from '../hw/translation-result';
import type { DmaRequest, TranslationFault, TranslationOk, TranslationRecord, TranslationResult, TranslateOptions, WalkStep } from '../hw/types';
import { POW2 } from '../u64';
import { type Deps, Iotlb, type IotlbBucket, type PasidCacheEntry, Perm } from './caches';
import { leafSize } from './iotlb-table';
import type { VtdCap, VtdEcap } from './cap';
import { CM_CACHED_FAULTS, ContextLookup } from './context-lookup';
import type { FaultRecorder } from './fault-recording';
import { FAULT_REASONS, linuxFaultReason } from './fault-reasons';
import { PERMS, permitted, permsOf } from './iotlb-use';
import { readableAt } from './reads';
import { newRequest, normalize, type Req, requestFields, TWO_32 } from './request';
import { StaleCheck } from './stale-check';
import { PGTT } from './structures';
import { AD_NO_SL_WRITE, AD_SECOND_LEVEL, FL_CODES, LEGACY_SL, LEVEL_PAGES, SM_SL, type SlFaultCodes, Walker } from './walk';
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
 * fault recording block). The hot path is `translateInto` with tracing off: one reused request object, the
 * outcome in the caller's record, entries that go into no cache decoded into reused scratch, no closures and
 * no object arguments: a translation allocates nothing (a cache fill allocates its entries). `translate` is
 * the same run followed by the result object.
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
    this.rec = this.ownRecord;
    this.fault(q, reason, fpd, null, false);
    return resultOf(this.rec) as TranslationFault;
  }

  private readable(addr: number): boolean {
    return readableAt(this.memory, this.hawLimit, addr);
  }

  /** Translates a DMA request as the hardware would: caches, faults recorded, A/D bits set, events emitted. */
  translate(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    const trace = options?.trace ? ([] as WalkStep[]) : null;
    this.rec = this.ownRecord;
    this.run(normalize(request, this.scratch), trace, false);
    const r = resultOf(this.rec);
    if (this.events.active) this.emitTranslation(request, r);
    return r;
  }

  /** `translate` without a trace or a result object: the outcome goes into `out`. Returns `out.ok`. */
  translateInto(request: DmaRequest, out: TranslationRecord): boolean {
    this.rec = out;
    const ok = this.run(normalize(request, this.scratch), null, false);
    // Someone listening gets the event, and pays for its object.
    if (this.events.active) this.emitTranslation(request, resultOf(out));
    return ok;
  }

  /**
   * The translation the current tables give, without touching anything: no cache is read or filled, no
   * fault recorded, no A/D bit set, no event. Used to check whether a cached translation is stale, and by
   * views that want to show what a walk would do.
   */
  probe(request: DmaRequest, options?: TranslateOptions): TranslationResult {
    this.rec = this.ownRecord;
    this.run(normalize(request, this.scratch), options?.trace ? [] : null, true);
    return resultOf(this.rec);
  }

  /** Where `run` leaves its outcome: the caller's record (`translateInto`) or this block's own. */
  private rec: TranslationRecord = newTranslationRecord();
  private readonly ownRecord = this.rec;

  /** The request being translated; reused, as translation is never re-entered. */
  private readonly scratch: Req = newRequest();

  private run(q: Req, trace: WalkStep[] | null, probe: boolean): boolean {
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
      return this.okInput(q, Perm.R | Perm.W | Perm.X, 'pass-through', undefined, trace);
    }
    const ctx = this.lookup.context(q.sid, trace, useCache);
    if (typeof ctx === 'number') return this.fault(q, ctx, this.lookup.lastCtxFpd, trace, probe);

    if (!ctx.scalable) {
      if (q.hasPasid) return this.fault(q, 0x31, false, trace, probe);
      if (q.kind !== 'untranslated' && ctx.tt !== 1) return this.fault(q, 0x0d, ctx.fpd, trace, probe);
      if (q.kind === 'translated') return this.okInput(q, Perm.R | Perm.W | Perm.X, 'translated', undefined, trace);
      if (ctx.tt === 2) {
        if (trace) trace.push(note('context-entry', 'TT = 10b: pass-through', true));
        return this.okInput(q, Perm.R | Perm.W | Perm.X, 'pass-through', ctx.did, trace);
      }
      const levels = ctx.aw + 2;
      const width = Math.min(30 + 9 * ctx.aw, this.cap.mgaw + 1);
      if (q.hi >= POW2[Math.max(0, width - 32)]!) return this.fault(q, 0x04, ctx.fpd, trace, probe);
      const bucket = useCache ? this.iotlb.bucket(ctx.did, -1, 'sl') : undefined;
      return this.pagedTranslation(q, bucket, ctx.did, 'sl', ctx.slptptr, levels, LEGACY_SL, ctx.fpd, trace, probe, null, false);
    }

    // Scalable mode.
    if (q.hasPasid && !ctx.pasidEnable) return this.fault(q, 0x45, ctx.fpd, trace, probe);
    if (q.kind !== 'untranslated' && !ctx.dte) return this.fault(q, 0x44, ctx.fpd, trace, probe);
    if (q.kind === 'translated') return this.okInput(q, Perm.R | Perm.W | Perm.X, 'translated', undefined, trace);
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
        return this.okInput(q, Perm.R | Perm.W | Perm.X, 'pass-through', pe.did, trace);
      }
      case PGTT.SECOND_LEVEL: {
        const width = Math.min(30 + 9 * pe.aw, this.cap.mgaw + 1);
        if (q.hi >= POW2[Math.max(0, width - 32)]!) return this.fault(q, 0x83, pe.fpd, trace, probe);
        const bucket = useCache ? this.bucketFor(pe, 'sl') : undefined;
        return this.pagedTranslation(q, bucket, pe.did, 'sl', pe.slptptr, pe.aw + 2, SM_SL, pe.fpd, trace, probe, null, false, pe.ssade ? pe : null, pe.slee);
      }
      case PGTT.FIRST_LEVEL:
      case PGTT.NESTED: {
        const five = pe.flpm === 1;
        if (!canonical(q.hi, five)) return this.fault(q, FL_CODES.nonCanonical, pe.fpd, trace, probe);
        const mode = pe.pgtt === PGTT.NESTED ? 'nested' : 'fl';
        const bucket = useCache ? this.bucketFor(pe, mode) : undefined;
        return this.pagedTranslation(q, bucket, pe.did, mode, pe.flptptr, five ? 5 : 4, SM_SL, pe.fpd, trace, probe, pe, priv);
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
   * `fl` is the PASID entry of a first-level or nested translation (`priv`: a privileged request).
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
    fl: PasidCacheEntry | null,
    priv: boolean,
    /** A second-level-only PASID entry with SSADE: the walk sets A/D bits in the second-level entries. */
    slAd: PasidCacheEntry | null = null,
    /** A second-level-only PASID entry's SLEE: without it an execute request needs only read permission. */
    slee = false,
  ): boolean {
    const addrBits = fl ? (levels === 5 ? 0x1ff_ffff : 0xffff) : 0xf_ffff;
    const vpn = (q.hi & addrBits) * 0x10_0000 + (q.lo >>> 12);
    const offset = q.lo & 0xfff;
    const need = q.write ? Perm.W : Perm.R;
    const needAll = need | (q.exec ? Perm.X : 0);
    const user = fl !== null && !priv;

    // 1. IOTLB.
    if (bucket !== undefined) {
      const t = this.iotlb.leaves;
      const e = this.iotlb.lookup(bucket, vpn);
      if (e >= 0 && (t.faults[e] !== 0 || permitted(t.perms[e]!, needAll, fl !== null, user, fl !== null && fl.wpe, fl !== null && fl.smep, mode === 'nested', slAd !== null))) {
        if (t.verifiedAt[e] !== this.memory.writeCount && this.stale.verify(t.deps[e]!, 'iotlb')) t.verifiedAt[e] = this.memory.writeCount;
        if (trace) trace.push(tlbStep(t.entryAt(e), bucket));
        const fault = t.faults[e]!;
        if (fault !== 0) return this.fault(q, fault, fpd, trace, probe);
        const size = leafSize(t.tags[e]!);
        // The page within the entry by mask (pages is a power of two): `%` on a page number is floating point.
        const out = t.outputs[e]! + (vpn & (size / 4096 - 1)) * 4096 + offset;
        if (out >= INTERRUPT_BASE && out <= INTERRUPT_LAST) return this.interruptWindow(q, out, fpd, trace, probe);
        // The address goes straight into the record: passed to a call, a number beyond 31 bits is allocated.
        this.rec.address = out;
        return this.ok(size, t.perms[e]!, 'iotlb', did, trace);
      }
    }

    // 2. Walk, starting below the deepest paging-structure cache hit. A second-level root pointer that cannot be
    // read is reported as such (0x7b) in scalable mode, before any table is touched.
    if (fl === null ? slCodes === SM_SL : mode === 'nested') {
      const slRoot = fl === null ? root : fl.slptptr;
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
    if (ad !== null && ad.length !== 0) ad.length = 0;
    let ok: boolean;
    if (mode === 'sl') {
      ok = w.secondLevel(table, start, vpn, offset, needAll, slCodes, trace, undefined, startPerms, slAd ? ad : null, q.exec && !slee);
    } else if (mode === 'fl') {
      ok = w.firstLevel(table, start, levels, startPerms, vpn, offset, needAll, user, fl!.wpe, fl!.nxe, fl!.smep, trace, ad);
    } else {
      ok = w.nested(fl!, Math.min(30 + 9 * fl!.aw, this.cap.mgaw + 1), vpn, offset, needAll, user, trace, ad);
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
      const adFault = this.applyAdUpdates(ad, fl ?? slAd!, trace);
      if (adFault) return this.fault(q, adFault, fpd, trace, probe);
    }
    if (bucket !== undefined) {
      // A walk that started from a stale cached entry yields entries that must be re-verified on every use.
      const verifiedAt = this.stale.current ? -1 : this.memory.writeCount;
      const size = w.size;
      const pageOut = w.output - offset - (vpn & (size / 4096 - 1)) * 4096;
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
    this.rec.address = w.output;
    return this.ok(w.size, w.perms, 'walk', did, trace);
  }

  /** A translation that lands in the interrupt window 0xfee00000-0xfeefffff is a fault (0x0e legacy, 0x87 SM). */
  private interruptWindow(q: Req, out: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): false {
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
   * Sets the accessed/dirty bits a walk found clear, as the hardware does: first-level entries always,
   * second-level ones when the PASID entry has SSADE. The update is an atomic read-modify-write that needs
   * snooped page walks (PWSNP); without them the walk faults (0x90 first level, 0x7c second level). In a
   * nested walk the write goes through the second level and needs write permission there (else 0x77).
   * Returns the fault reason, or 0.
   */
  private applyAdUpdates(ad: number[], pe: PasidCacheEntry, trace: WalkStep[] | null): number {
    if (!pe.pwsnp) {
      const second = (ad[4]! & AD_SECOND_LEVEL) !== 0;
      if (trace) trace.push(note(`${second ? 'sl' : 'fl'}-ad-update`, `setting A/D at 0x${ad[0]!.toString(16)} needs snooped page walks, and the PASID entry has PWSNP = 0`, false));
      return second ? 0x7c : 0x90;
    }
    for (let i = 0; i < ad.length; i += 5) {
      const entryAddr = ad[i]!;
      const marker = ad[i + 4]!;
      // A guest entry of a nested walk in a page the second level maps without write permission (Walker.nested).
      if (marker & AD_NO_SL_WRITE) {
        if (trace) trace.push(note('fl-ad-update', `setting A/D at 0x${entryAddr.toString(16)} needs write access to the guest page-table page 0x${ad[i + 3]!.toString(16)} through the second level`, false));
        return 0x77;
      }
      this.memory.write64(entryAddr, ad[i + 1]!, ad[i + 2]!, marker & AD_SECOND_LEVEL ? 'sl-ad-update' : 'fl-ad-update');
    }
    return 0;
  }

  // ---- results and faults ----

  /** A success, its address already in the record. */
  private ok(size: number, perms: number, source: TranslationOk['source'], did: number | undefined, trace: WalkStep[] | null): true {
    const r = this.rec;
    r.ok = true;
    r.pageSize = size;
    r.perms = permsOf(perms);
    r.source = source;
    r.did = did === undefined ? -1 : did;
    r.reason = 0;
    r.reasonText = '';
    r.recorded = false;
    r.frcdIndex = -1;
    r.stale = this.stale.current;
    r.trace = trace ?? undefined;
    r.reads = this.walker.reads;
    return true;
  }

  /** A success whose output is the input address (pass-through, translated requests). */
  private okInput(q: Req, perms: number, source: TranslationOk['source'], did: number | undefined, trace: WalkStep[] | null): true {
    this.rec.address = q.hi * TWO_32 + q.lo;
    return this.ok(4096, perms, source, did, trace);
  }

  private fault(q: Req, specReason: number, fpd: boolean, trace: WalkStep[] | null, probe: boolean): false {
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
    const r = this.rec;
    r.ok = false;
    r.address = 0;
    r.pageSize = 0;
    r.perms = PERMS[0]!;
    r.source = 'walk';
    r.did = -1;
    r.reason = reason;
    r.reasonText = info.text;
    r.recorded = outcome === 'recorded';
    r.frcdIndex = index ?? -1;
    r.stale = this.stale.current;
    r.trace = trace ?? undefined;
    r.reads = this.walker.reads;
    return false;
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

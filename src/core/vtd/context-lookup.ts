import type { PhysicalMemory } from '../hw/memory';
import type { WalkStep } from '../hw/types';
import type { ContextCacheEntry, Deps, PasidCacheEntry } from './caches';
import type { VtdCap, VtdEcap } from './cap';
import type { RegValue } from './register-file';
import { readableAt, readWords, readWordsInto } from './reads';
import { RTADDR_TTM_SCALABLE } from './registers';
import { TWO_32 } from './request';
import type { StaleCheck } from './stale-check';
import { CONTEXT_LEGACY, CONTEXT_SCALABLE, PASID_DIR_ENTRY, PASID_ENTRY, PGTT_NAMES, reservedViolations, ROOT_LEGACY, ROOT_SCALABLE } from './structures';
import { bdf, cachedEntryStep, describeContext, entryStep, note } from './walk-steps';
import { entryTarget, type Walker } from './walk';

const NO_DEPS: Deps = [];
const NO_VIOLATIONS: string[] = [];
// The reserved-bit masks as typed arrays: the clean-entry check is then a handful of integer ANDs.
const ROOT_LEGACY_MASKS = Int32Array.from(ROOT_LEGACY.reservedMasks);
const ROOT_SM_MASKS = Int32Array.from(ROOT_SCALABLE.reservedMasks);
const CONTEXT_LEGACY_MASKS = Int32Array.from(CONTEXT_LEGACY.reservedMasks);
const CONTEXT_SM_MASKS = Int32Array.from(CONTEXT_SCALABLE.reservedMasks);
const PASID_DIR_MASKS = Int32Array.from(PASID_DIR_ENTRY.reservedMasks);
const PASID_ENTRY_MASKS = Int32Array.from(PASID_ENTRY.reservedMasks);

/** Words of memory that is not backed: entries read there are all zero. */
const ZERO_PAGE = new Uint32Array(1024);

/** Whether the entry at word `at` of `page` has a reserved bit set (anyReserved, read in place). */
function anyReservedAt(masks: Int32Array, page: Uint32Array, at: number): boolean {
  let any = 0;
  for (let i = 0; i < masks.length; i += 2) any |= (page[at + i]! & masks[i]!) | (page[at + i + 1]! & masks[i + 1]!);
  return any !== 0;
}

/** Whether an entry has a reserved bit set; only then does reservedViolations name the bits. */
function anyReserved(masks: Int32Array, w: ArrayLike<number>): boolean {
  let any = 0;
  // Entries are whole 64-bit words: two halves per step.
  for (let i = 0; i < masks.length; i += 2) any |= (w[i]! & masks[i]!) | (w[i + 1]! & masks[i + 1]!);
  return any !== 0;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** A context-cache entry to fill in; every entry is made here or by negativeContext, in this field order (one shape). */
function blankContext(): Writable<ContextCacheEntry> {
  return {
    sid: 0, scalable: false, rootWords: NO_DEPS, words: NO_DEPS, rootAddr: 0, ctxAddr: 0, fault: 0, fpd: false, tt: 0, aw: 0, did: 0, slptptr: 0,
    dte: false, pasidEnable: false, pre: false, pdts: 0, pasidDir: 0, ridPasid: 0, ridPriv: false, lastPasid: -1, lastPe: undefined, deps: NO_DEPS, verifiedAt: 0, valid: false,
  };
}

/** A PASID-cache entry to fill in (as blankContext, with negativePasid's field order). */
function blankPasid(): Writable<PasidCacheEntry> {
  return {
    sid: 0, pasid: 0, dirAddr: 0, dirWords: NO_DEPS, entryAddr: 0, words: NO_DEPS, fault: 0, fpd: false, pgtt: 0, did: 0, aw: 0, ssade: false, pwsnp: false,
    slptptr: 0, flptptr: 0, flpm: 0, sre: false, ere: false, slee: false, smep: false, wpe: false, nxe: false, eafe: false, bucket: undefined, deps: NO_DEPS, verifiedAt: 0, valid: false,
  };
}
/**
 * What caching-mode hardware (CAP.CM = 1) may cache: the faults of entries that are not present or erroneous.
 * CAP.CM = 0 means "Not-present and erroneous entries are not cached in any of the remapping caches" (the CAP
 * register's field definition); with CM = 1 they may be, and software invalidates after every change, not
 * present to present included. That covers root, context and PASID entries and second-level
 * (second-stage) paging entries, but not first-stage ones: "any software updates to remapping structures
 * other than first-stage mapping requires explicit invalidation" (VT-d spec section 6.1, as Linux 6.12 quotes
 * it above cache_tag_flush_range_np, which for that reason flushes nothing on a first-stage map). So 0x71 and
 * 0x72 (first-level entry not present, reserved) are never cached, and neither are access errors (a table
 * address that cannot be read is not an entry).
 *
 * Root and context: 0x01 0x02 0x03 0x0a 0x0b (legacy), 0x39 0x3a 0x41 0x42 0x43 (scalable). PASID: 0x51 0x52
 * 0x59 0x5a 0x5b. Second level: 0x05 0x06 0x0c (legacy), 0x79 0x7a, and 0x75 0x76 0x77 (a nested walk's
 * second-stage translation of a first-stage table).
 */
export const CM_CACHED_FAULTS: ReadonlySet<number> = new Set([
  0x01, 0x02, 0x03, 0x0a, 0x0b, 0x39, 0x3a, 0x41, 0x42, 0x43, 0x51, 0x52, 0x59, 0x5a, 0x5b, 0x05, 0x06, 0x0c, 0x75, 0x76, 0x77, 0x79, 0x7a,
]);

/**
 * The device-lookup half of translation: the root table as SRTP latched it, and the context and PASID
 * entries, from the context cache and PASID cache or from memory, with every check of the spec and the fault
 * reason each one raises. A number returned instead of an entry is that fault reason; `lastCtxFpd` and
 * `lastPasidFpd` say whether the entries read before the fault asked for it not to be recorded.
 */
export class ContextLookup {
  /** RTADDR as SRTP last latched it: the root table's address, TTM (00 legacy, 01 scalable; 10 and 11 are reserved here). */
  rootTable = 0;
  ttm = 0;
  scalable = false;
  lastCtxFpd = false;
  lastPasidFpd = false;

  private ctxCache: (ContextCacheEntry | undefined)[] = new Array(65536);
  private pasidCache = new Map<number, PasidCacheEntry>();
  private readonly hawLimit: number;
  // Entries that go into no cache (caching off, probes) are decoded into these: such a lookup allocates
  // nothing. Translation is never re-entered, so one of each is enough.
  private readonly scratchRoot = new Uint32Array(4);
  private readonly scratchCtxLegacy = new Uint32Array(4);
  private readonly scratchCtxSm = new Uint32Array(8);
  private readonly scratchDir = new Uint32Array(2);
  private readonly scratchPasid = new Uint32Array(16);
  private readonly scratchContext = blankContext();
  private readonly scratchPasidEntry = blankPasid();

  constructor(
    private readonly memory: PhysicalMemory,
    private readonly walker: Walker,
    private readonly stale: StaleCheck,
    private readonly cap: VtdCap,
    private readonly ecap: VtdEcap,
    private readonly cacheNotPresent: boolean,
  ) {
    this.hawLimit = 2 ** memory.hostAddressWidth;
  }

  /**
   * Set root table pointer: latches RTADDR's RTA (the root table's address) and TTM (its format). RTA is
   * bits 63:12 (TTM 11:10, bits 9:0 reserved), and the hardware ignores and does not implement bits 63:HAW
   * (the RTADDR_REG field definition): the root table is at bits HAW-1:12 of what was written.
   */
  latchRootTable(rt: Readonly<RegValue>): void {
    const hiBits = this.memory.hostAddressWidth - 32;
    this.rootTable = (rt.hi % 2 ** hiBits) * TWO_32 + ((rt.lo & 0xffff_f000) >>> 0);
    this.ttm = (rt.lo >>> 10) & 3;
    this.scalable = this.ttm === RTADDR_TTM_SCALABLE;
  }

  /** The context entry for `sid`, from the context cache or from memory; a number is a fault reason. */
  context(sid: number, trace: WalkStep[] | null, useCache: boolean): ContextCacheEntry | number {
    if (!useCache && trace === null) {
      const e = this.contextInPlace(sid);
      if (e !== null) return e;
    }
    if (useCache) {
      const e = this.ctxCache[sid];
      if (e !== undefined && e.valid) {
        this.stale.check(e, 'context-cache');
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
    const root = useCache ? readWords(mem, rootAddr, 2) : readWordsInto(mem, rootAddr, this.scratchRoot);
    this.walker.reads++;
    const rootLayout = sm ? ROOT_SCALABLE : ROOT_LEGACY;
    const upper = sm && devfn >= 0x80;
    const present = (root[upper ? 2 : 0]! & 1) === 1;
    const rootBad = anyReserved(sm ? ROOT_SM_MASKS : ROOT_LEGACY_MASKS, root) ? reservedViolations(rootLayout, root) : NO_VIOLATIONS;
    const ctp = (root[upper ? 3 : 1]! & 0xf_ffff) * TWO_32 + ((root[upper ? 2 : 0]! & 0xffff_f000) >>> 0);
    if (trace) trace.push(entryStep(rootLayout, 'root-entry', this.rootTable, bus, root, !present ? `${sm ? (upper ? 'UP' : 'LP') : 'P'} = 0: no context table for bus 0x${bus.toString(16).padStart(2, '0')}${sm ? (upper ? ' (devfn 0x80-0xff)' : ' (devfn 0x00-0x7f)') : ''}` : rootBad.length ? `reserved bits set: ${rootBad.join(', ')}` : `context table at 0x${ctp.toString(16)}`, present && rootBad.length === 0));
    // Verification data is only kept for entries that go into a cache.
    const deps: Deps = useCache ? [rootAddr, root[1]!, root[0]!, -1, rootAddr + 8, root[3]!, root[2]!, -1] : NO_DEPS;
    if (!present) return this.negativeContext(sid, sm ? 0x39 : 0x01, root, rootAddr, [], 0, deps, useCache, false);
    if (rootBad.length) return this.negativeContext(sid, sm ? 0x3a : 0x0a, root, rootAddr, [], 0, deps, useCache, false);
    if (!this.readable(ctp)) {
      if (trace) trace.push(note('context-table', `context table 0x${ctp.toString(16)} cannot be read`, false));
      return sm ? 0x40 : 0x09;
    }
    const entrySize = sm ? 32 : 16;
    const ctxAddr = ctp + (sm ? devfn & 0x7f : devfn) * entrySize;
    const words = useCache ? readWords(mem, ctxAddr, sm ? 4 : 2) : readWordsInto(mem, ctxAddr, sm ? this.scratchCtxSm : this.scratchCtxLegacy);
    this.walker.reads++;
    if (useCache) for (let i = 0; i < words.length; i += 2) deps.push(ctxAddr + i * 4, words[i + 1]!, words[i]!, -1);
    const layout = sm ? CONTEXT_SCALABLE : CONTEXT_LEGACY;
    const ctxPresent = (words[0]! & 1) === 1;
    const fpd = (words[0]! & 2) === 2;
    this.lastCtxFpd = fpd;
    const bad = anyReserved(sm ? CONTEXT_SM_MASKS : CONTEXT_LEGACY_MASKS, words) ? reservedViolations(layout, words) : NO_VIOLATIONS;
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
    const e = useCache ? blankContext() : this.scratchContext;
    e.sid = sid;
    e.scalable = sm;
    e.rootWords = root;
    e.words = words;
    e.rootAddr = rootAddr;
    e.ctxAddr = ctxAddr;
    e.fault = 0;
    e.fpd = fpd;
    e.tt = sm ? 0 : (words[0]! >>> 2) & 3;
    e.aw = sm ? 0 : words[2]! & 7;
    e.did = sm ? 0 : (words[2]! >>> 8) & 0xffff;
    // SLPTPTR (legacy) and PASIDDIRPTR (scalable) are the same bits 63:12.
    e.slptptr = entryTarget(words[1]!, words[0]!);
    e.dte = (words[0]! & 4) === 4;
    e.pasidEnable = (words[0]! & 8) === 8;
    e.pre = (words[0]! & 16) === 16;
    e.pdts = (words[0]! >>> 9) & 7;
    e.pasidDir = e.slptptr;
    e.ridPasid = sm ? words[2]! & 0xf_ffff : 0;
    e.ridPriv = sm && ((words[2]! >>> 20) & 1) === 1;
    e.lastPasid = -1;
    e.lastPe = undefined;
    e.deps = deps;
    e.verifiedAt = mem.writeCount;
    e.valid = true;
    if (useCache) this.ctxCache[sid] = e;
    return e;
  }

  /**
   * A context lookup that faulted, cached under caching mode. It is tagged with domain-id 0, whatever DID the
   * entry holds: "If Caching mode is set, then invalid translations are tagged with domain-id 0" (Linux
   * iommu_init_domains, which reserves DID 0 for that reason), and context_present_cache_flush invalidates
   * a newly present context entry with a device-selective invalidation for DID 0.
   */
  private negativeContext(sid: number, fault: number, rootWords: ArrayLike<number>, rootAddr: number, words: ArrayLike<number>, ctxAddr: number, deps: Deps, useCache: boolean, fpd: boolean): number {
    if (useCache && this.cacheNotPresent && CM_CACHED_FAULTS.has(fault)) {
      this.ctxCache[sid] = {
        sid, scalable: this.scalable, rootWords, words, rootAddr, ctxAddr, fault, fpd,
        tt: 0, aw: 0, did: 0, slptptr: 0, dte: false, pasidEnable: false, pre: false, pdts: 0, pasidDir: 0, ridPasid: 0, ridPriv: false,
        lastPasid: -1, lastPe: undefined, deps, verifiedAt: this.memory.writeCount, valid: true,
      };
    }
    return fault;
  }

  pasidEntry(ctx: ContextCacheEntry, pasid: number, trace: WalkStep[] | null, useCache: boolean): PasidCacheEntry | number {
    if (!useCache && trace === null) {
      const e = this.pasidInPlace(ctx, pasid);
      if (e !== null) return e;
    }
    if (useCache) {
      let e = ctx.lastPasid === pasid ? ctx.lastPe : undefined;
      if (e === undefined || !e.valid) e = this.pasidCache.get(ctx.sid * 0x10_0000 + pasid);
      if (e !== undefined && e.valid) {
        ctx.lastPasid = pasid;
        ctx.lastPe = e;
        this.stale.check(e, 'pasid-cache');
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
    const dir = useCache ? readWords(mem, dirAddr, 1) : readWordsInto(mem, dirAddr, this.scratchDir);
    this.walker.reads++;
    const deps: Deps = useCache ? [dirAddr, dir[1]!, dir[0]!, -1] : NO_DEPS;
    const dirPresent = (dir[0]! & 1) === 1;
    const dirFpd = (dir[0]! & 2) === 2;
    this.lastPasidFpd = ctx.fpd || dirFpd;
    const dirBad = anyReserved(PASID_DIR_MASKS, dir) ? reservedViolations(PASID_DIR_ENTRY, dir) : NO_VIOLATIONS;
    const tbl = (dir[1]! & 0xf_ffff) * TWO_32 + ((dir[0]! & 0xffff_f000) >>> 0);
    if (trace) trace.push(entryStep(PASID_DIR_ENTRY, 'pasid-dir-entry', ctx.pasidDir, Math.floor(pasid / 64), dir, !dirPresent ? `P = 0: no PASID table for PASIDs 0x${(Math.floor(pasid / 64) * 64).toString(16)}-0x${(Math.floor(pasid / 64) * 64 + 63).toString(16)}` : dirBad.length ? `reserved bits set: ${dirBad.join(', ')}` : `PASID table at 0x${tbl.toString(16)}`, dirPresent && dirBad.length === 0));
    if (!dirPresent) return this.negativePasid(ctx, pasid, 0x51, dirAddr, dir, 0, [], deps, useCache, ctx.fpd || dirFpd);
    if (dirBad.length) return this.negativePasid(ctx, pasid, 0x52, dirAddr, dir, 0, [], deps, useCache, ctx.fpd || dirFpd);
    if (!this.readable(tbl)) {
      if (trace) trace.push(note('pasid-table', `PASID table 0x${tbl.toString(16)} cannot be read`, false));
      return 0x58;
    }
    const entryAddr = tbl + (pasid & 63) * 64;
    const words = useCache ? readWords(mem, entryAddr, 8) : readWordsInto(mem, entryAddr, this.scratchPasid);
    this.walker.reads++;
    if (useCache) for (let i = 0; i < 16; i += 2) deps.push(entryAddr + i * 4, words[i + 1]!, words[i]!, -1);
    const present = (words[0]! & 1) === 1;
    const fpd = ctx.fpd || dirFpd || (words[0]! & 2) === 2;
    this.lastPasidFpd = fpd;
    const bad = anyReserved(PASID_ENTRY_MASKS, words) ? reservedViolations(PASID_ENTRY, words) : NO_VIOLATIONS;
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
      const supported = pgtt === 1 ? this.ecap.flts : pgtt === 2 ? this.ecap.slts : pgtt === 3 ? this.ecap.nest : pgtt === 4 ? this.ecap.pt : 0;
      if (!supported) {
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
    const e = useCache ? blankPasid() : this.scratchPasidEntry;
    e.sid = ctx.sid;
    e.pasid = pasid;
    e.dirAddr = dirAddr;
    e.dirWords = dir;
    e.entryAddr = entryAddr;
    e.words = words;
    e.fault = 0;
    e.fpd = fpd;
    e.pgtt = pgtt;
    e.did = words[2]! & 0xffff;
    e.aw = aw;
    e.ssade = (words[0]! & 0x200) !== 0;
    e.pwsnp = (words[2]! & 0x80_0000) !== 0;
    e.slptptr = entryTarget(words[1]!, words[0]!);
    e.flptptr = entryTarget(words[5]!, words[4]!);
    e.flpm = flpm;
    e.sre = (words[4]! & 1) === 1;
    e.ere = (words[4]! & 2) === 2;
    e.slee = (words[0]! & 0x20) !== 0;
    e.smep = (words[4]! & 0x40) !== 0;
    e.wpe = (words[4]! & 0x10) !== 0;
    e.nxe = (words[4]! & 0x20) !== 0;
    e.eafe = (words[4]! & 0x80) !== 0;
    e.bucket = undefined;
    e.deps = deps;
    e.verifiedAt = mem.writeCount;
    e.valid = true;
    if (useCache) {
      this.pasidCache.set(ctx.sid * 0x10_0000 + pasid, e);
      ctx.lastPasid = pasid;
      ctx.lastPe = e;
    }
    return e;
  }

  /**
   * The uncached, untraced lookup of a usable context entry, decoded straight from the page words with no
   * copy (the hot path of a unit with caching off). It accepts only entries that pass every check of
   * `context`; for anything else (a fault to report) it returns null, and `context` decodes again in full,
   * so faults have one implementation. The scratch entry's rootWords/words are not filled here: no reader of
   * an uncached entry uses them (traces take the full path).
   */
  private contextInPlace(sid: number): ContextCacheEntry | null {
    const mem = this.memory;
    const devfn = sid & 0xff;
    const sm = this.scalable;
    const rootAddr = this.rootTable + (sid >>> 8) * 16;
    if (!this.readable(this.rootTable)) return null;
    const rp = mem.pageForRead(rootAddr) ?? ZERO_PAGE;
    const ra = (rootAddr & 0xfff) >>> 2;
    const half = sm && devfn >= 0x80 ? ra + 2 : ra;
    if ((rp[half]! & 1) !== 1 || anyReservedAt(sm ? ROOT_SM_MASKS : ROOT_LEGACY_MASKS, rp, ra)) return null;
    const ctp = (rp[half + 1]! & 0xf_ffff) * TWO_32 + ((rp[half]! & 0xffff_f000) >>> 0);
    if (!this.readable(ctp)) return null;
    const ctxAddr = ctp + (sm ? (devfn & 0x7f) * 32 : devfn * 16);
    const cp = mem.pageForRead(ctxAddr) ?? ZERO_PAGE;
    const c = (ctxAddr & 0xfff) >>> 2;
    const w0 = cp[c]!;
    const w2 = cp[c + 2]!;
    if ((w0 & 1) !== 1 || anyReservedAt(sm ? CONTEXT_SM_MASKS : CONTEXT_LEGACY_MASKS, cp, c)) return null;
    if (!sm) {
      const tt = (w0 >>> 2) & 3;
      if (tt === 3 || (tt === 2 && !this.ecap.pt) || (tt === 1 && !this.ecap.dt)) return null;
      if (tt !== 2 && !((this.cap.sagaw >>> (w2 & 7)) & 1)) return null;
    } else {
      if ((w0 & 4 && !this.ecap.dt) || (w0 & 8 && !this.ecap.pasid) || (w0 & 16 && !this.ecap.prs)) return null;
      if (this.ecap.pasid && ((w0 >>> 9) & 7) + 13 > this.ecap.pss + 1) return null;
    }
    this.walker.reads += 2;
    const fpd = (w0 & 2) === 2;
    this.lastCtxFpd = fpd;
    const e = this.scratchContext;
    e.sid = sid;
    e.scalable = sm;
    e.rootAddr = rootAddr;
    e.ctxAddr = ctxAddr;
    e.fault = 0;
    e.fpd = fpd;
    e.tt = sm ? 0 : (w0 >>> 2) & 3;
    e.aw = sm ? 0 : w2 & 7;
    e.did = sm ? 0 : (w2 >>> 8) & 0xffff;
    e.slptptr = entryTarget(cp[c + 1]!, w0);
    e.dte = (w0 & 4) === 4;
    e.pasidEnable = (w0 & 8) === 8;
    e.pre = (w0 & 16) === 16;
    e.pdts = (w0 >>> 9) & 7;
    e.pasidDir = e.slptptr;
    e.ridPasid = sm ? w2 & 0xf_ffff : 0;
    e.ridPriv = sm && ((w2 >>> 20) & 1) === 1;
    e.lastPasid = -1;
    e.lastPe = undefined;
    e.deps = NO_DEPS;
    e.verifiedAt = mem.writeCount;
    e.valid = true;
    return e;
  }

  /** The uncached, untraced lookup of a usable PASID entry, in place (as contextInPlace; null: decode in full). */
  private pasidInPlace(ctx: ContextCacheEntry, pasid: number): PasidCacheEntry | null {
    const mem = this.memory;
    const dirAddr = ctx.pasidDir + Math.floor(pasid / 64) * 8;
    if (!this.readable(ctx.pasidDir)) return null;
    const dp = mem.pageForRead(dirAddr) ?? ZERO_PAGE;
    const d = (dirAddr & 0xfff) >>> 2;
    const d0 = dp[d]!;
    if ((d0 & 1) !== 1 || anyReservedAt(PASID_DIR_MASKS, dp, d)) return null;
    const tbl = (dp[d + 1]! & 0xf_ffff) * TWO_32 + ((d0 & 0xffff_f000) >>> 0);
    if (!this.readable(tbl)) return null;
    const entryAddr = tbl + (pasid & 63) * 64;
    const pp = mem.pageForRead(entryAddr) ?? ZERO_PAGE;
    const p = (entryAddr & 0xfff) >>> 2;
    const w0 = pp[p]!;
    const w2 = pp[p + 2]!;
    const w4 = pp[p + 4]!;
    if ((w0 & 1) !== 1 || anyReservedAt(PASID_ENTRY_MASKS, pp, p)) return null;
    const pgtt = (w0 >>> 6) & 7;
    const aw = (w0 >>> 2) & 7;
    const flpm = (w4 >>> 2) & 3;
    const supported = pgtt === 1 ? this.ecap.flts : pgtt === 2 ? this.ecap.slts : pgtt === 3 ? this.ecap.nest : pgtt === 4 ? this.ecap.pt : 0;
    if (!supported) return null;
    if ((pgtt === 2 || pgtt === 3) && (aw < 1 || aw > 3 || !((this.cap.sagaw >>> aw) & 1))) return null;
    if ((pgtt === 1 || pgtt === 3) && (flpm > 1 || (flpm === 1 && !this.cap.fl5lp))) return null;
    if (w0 & 0x200 && !this.ecap.slads) return null;
    if ((w0 & 0x20 || w4 & 2) && !this.ecap.ers) return null;
    this.walker.reads += 2;
    const fpd = ctx.fpd || (d0 & 2) === 2 || (w0 & 2) === 2;
    this.lastPasidFpd = fpd;
    const e = this.scratchPasidEntry;
    e.sid = ctx.sid;
    e.pasid = pasid;
    e.dirAddr = dirAddr;
    e.entryAddr = entryAddr;
    e.fault = 0;
    e.fpd = fpd;
    e.pgtt = pgtt;
    e.did = w2 & 0xffff;
    e.aw = aw;
    e.ssade = (w0 & 0x200) !== 0;
    e.pwsnp = (w2 & 0x80_0000) !== 0;
    e.slptptr = entryTarget(pp[p + 1]!, w0);
    e.flptptr = entryTarget(pp[p + 5]!, w4);
    e.flpm = flpm;
    e.sre = (w4 & 1) === 1;
    e.ere = (w4 & 2) === 2;
    e.slee = (w0 & 0x20) !== 0;
    e.smep = (w4 & 0x40) !== 0;
    e.wpe = (w4 & 0x10) !== 0;
    e.nxe = (w4 & 0x20) !== 0;
    e.eafe = (w4 & 0x80) !== 0;
    e.bucket = undefined;
    e.deps = NO_DEPS;
    e.verifiedAt = mem.writeCount;
    e.valid = true;
    return e;
  }

  private negativePasid(ctx: ContextCacheEntry, pasid: number, fault: number, dirAddr: number, dirWords: ArrayLike<number>, entryAddr: number, words: ArrayLike<number>, deps: Deps, useCache: boolean, fpd: boolean): number {
    if (useCache && this.cacheNotPresent && CM_CACHED_FAULTS.has(fault)) {
      this.pasidCache.set(ctx.sid * 0x10_0000 + pasid, {
        sid: ctx.sid, pasid, dirAddr, dirWords, entryAddr, words, fault, fpd, pgtt: 0, did: -1, aw: 0, ssade: false, pwsnp: false,
        slptptr: 0, flptptr: 0, flpm: 0, sre: false, ere: false, slee: false, smep: false, wpe: false, nxe: false, eafe: false, bucket: undefined,
        deps, verifiedAt: this.memory.writeCount, valid: true,
      });
    }
    return fault;
  }

  private readable(addr: number): boolean {
    return readableAt(this.memory, this.hawLimit, addr);
  }

  // ---- invalidation ----

  /** Drops the context-cache entries `match` selects; returns how many. */
  dropContexts(match: (e: ContextCacheEntry) => boolean): number {
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

  /** Drops the PASID-cache entries `match` selects; returns how many. */
  dropPasids(match: (e: PasidCacheEntry) => boolean): number {
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

  get contextCacheSize(): number {
    let n = 0;
    for (const e of this.ctxCache) if (e) n++;
    return n;
  }

  get pasidCacheSize(): number {
    return this.pasidCache.size;
  }

  // ---- snapshots ----

  cachedContexts(): ContextCacheEntry[] {
    return this.ctxCache.filter((e): e is ContextCacheEntry => e !== undefined);
  }

  cachedPasids(): PasidCacheEntry[] {
    return [...this.pasidCache.values()];
  }

  /** Replaces both caches (empty when nothing is given, as after a register-file import). */
  reload(contexts: readonly ContextCacheEntry[] = [], pasids: readonly PasidCacheEntry[] = []): void {
    this.ctxCache = new Array(65536);
    for (const e of contexts) this.ctxCache[e.sid] = e;
    this.pasidCache = new Map(pasids.map((e) => [e.sid * 0x10_0000 + e.pasid, e]));
  }
}

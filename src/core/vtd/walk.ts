import { sizeName } from '../hw/walk-text';
import type { PhysicalMemory } from '../hw/memory';
import type { WalkStep } from '../hw/types';
import { hexPad, POW2 } from '../u64';
import { Perm } from './caches';
import { decodeEntry, FL_PTE, FLB, rawWords, SL_PTE, SLB } from './structures';

/**
 * Page-table walks over simulated memory: second-level (EPT-like) and first-level (IA-32e) formats,
 * 3/4/5 levels, 4 KiB / 2 MiB / 1 GiB pages. The hot path: no allocation unless a trace or dependency list is
 * asked for; the result is left in the walker's fields rather than returned in a new object.
 *
 * Fault codes depend on the mode: legacy (`codes = LEGACY_SL`) or scalable mode, and inside a nested walk on
 * whether the second-level walk translates a first-level table pointer or the final address.
 *
 * Execute requests (VT-d spec 3.6.2, 3.8.2; PCIe: Execute Requested sits in the PASID TLP prefix, on reads
 * only) are instruction fetches: reads that also need execute permission. The walks get them with `need`
 * holding R and X. First level: X is taken away by XD = 1 in any entry only when the PASID entry has NXE set
 * (with NXE clear, fetches are allowed wherever reads are); with SMEP set, a supervisor fetch also needs
 * U/S = 0 in at least one entry. Second level (second-level-only and the final stage of nested): with SLEE
 * clear the X bit is ignored and a fetch needs R only (`xFromR`); with SLEE set it needs R and X in every
 * entry. A refused fetch is 0x82 ("No execute permission for request with PASID and ER=1"); one without read
 * permission is a refused read (0x86). The X in a result means something only for an execute request (an
 * ATS completion's Exe answers one), so other walks leave it as the entries' raw bits.
 */

const TWO_32 = 0x1_0000_0000;

/** Fault codes a second-level walk raises, by situation. */
export interface SlFaultCodes {
  readonly access: number;
  /** An entry with R = W = 0. */
  readonly notPresentRead: number;
  readonly notPresentWrite: number;
  /** A present leaf without the permission the request needs. */
  readonly noRead: number;
  readonly noWrite: number;
  /** A present leaf that refuses an execute request that has read permission. */
  readonly noExec: number;
  readonly reserved: number;
  /** An entry pointing beyond the host address width. */
  readonly entryBeyond: number;
  readonly beyond: number;
}

// Legacy mode reports permission problems as "PTE Read/Write access is not set" (0x6/0x5) whether or not the
// entry is present, as Linux's strings and QEMU's model say. Its requests carry no PASID, so never ER: noExec
// is never raised there, nor in a nested walk's table reads (requests-without-PASID, spec 3.8.2).
export const LEGACY_SL: SlFaultCodes = { access: 0x07, notPresentRead: 0x06, notPresentWrite: 0x05, noRead: 0x06, noWrite: 0x05, noExec: 0x06, reserved: 0x0c, entryBeyond: 0x0c, beyond: 0x04 };
export const SM_SL: SlFaultCodes = { access: 0x78, notPresentRead: 0x79, notPresentWrite: 0x79, noRead: 0x86, noWrite: 0x85, noExec: 0x82, reserved: 0x7a, entryBeyond: 0x84, beyond: 0x83 };
/** Second-level translation of a first-level table pointer in a nested walk (top-level table / lower tables). */
export const NESTED_TOP: SlFaultCodes = { access: 0x78, notPresentRead: 0x75, notPresentWrite: 0x77, noRead: 0x75, noWrite: 0x77, noExec: 0x75, reserved: 0x7a, entryBeyond: 0x84, beyond: 0x74 };
export const NESTED_TABLE: SlFaultCodes = { access: 0x78, notPresentRead: 0x76, notPresentWrite: 0x77, noRead: 0x76, noWrite: 0x77, noExec: 0x76, reserved: 0x7a, entryBeyond: 0x84, beyond: 0x74 };

export const FL_CODES = {
  topAccess: 0x73,
  access: 0x70,
  notPresent: 0x71,
  reserved: 0x72,
  nonCanonical: 0x80,
  user: 0x81,
  exec: 0x82,
  write: 0x85,
} as const;

export interface WalkParams {
  /** Second-level: large pages allowed by CAP.SLLPS; first-level: 1 GiB allowed by CAP.FL1GP (2 MiB always). */
  readonly large2M: boolean;
  readonly large1G: boolean;
  /** Host address width limit (2^HAW): table pointers and outputs at or above it are reserved-bit errors. */
  readonly hawLimit: number;
}

/** 512^(level-1): the pages one entry at `level` covers. */
export const LEVEL_PAGES: readonly number[] = [0, 1, 512, 262144, 2 ** 27, 2 ** 36, 2 ** 45];

/**
 * Index of `vpn` (address >> 12) at `level` (1 = PTE). Levels above 3 need bits beyond 32: divide instead of
 * shift (exact, by a power of two; `& 511` then keeps the low bits of the integer part).
 */
export function levelIndex(vpn: number, level: number): number {
  return level <= 3 ? (vpn >>> (9 * (level - 1))) & 511 : (vpn / LEVEL_PAGES[level]!) & 511;
}

// Address arithmetic: `x & m` (m < 2^32) keeps the low bits of any integer below 2^53 exactly, and compiles to
// integer instructions, where `x % m` on a number beyond 31 bits is a floating-point remainder (a library call).

/**
 * The 4 KiB-aligned address an entry points to (bits 51:12). Below 4 GiB it stays an integer, which keeps the
 * walk's address arithmetic out of floating point (the dependent chain of a walk is its cost).
 */
export function entryTarget(hi: number, lo: number): number {
  const top = hi & 0xf_ffff;
  return top === 0 ? (lo & 0xffff_f000) >>> 0 : top * TWO_32 + ((lo & 0xffff_f000) >>> 0);
}

export const SL_LEVEL_NAMES = ['', 'sl-pte', 'sl-pde', 'sl-pdpe', 'sl-pml4e', 'sl-pml5e'];
export const FL_LEVEL_NAMES = ['', 'fl-pte', 'fl-pde', 'fl-pdpe', 'fl-pml4e', 'fl-pml5e'];

/**
 * A pending A/D update is five numbers: entry address, high word, new low word, the table holding the entry
 * (guest-physical for a nested walk's first-level entries) and a marker: AD_SECOND_LEVEL for a second-level
 * entry; for a first-level one AD_TOP when it is in the top-level table, and (nested walks) AD_NO_SL_WRITE
 * when the second level maps its table page without write permission, so the update cannot be made (0x77).
 */
export const AD_TOP = 1;
export const AD_SECOND_LEVEL = 2;
export const AD_NO_SL_WRITE = 4;

/** In a nested translation's permissions, the second stage's R/W/X sit this many bits up. */
export const NESTED_SL_SHIFT = 5;

/** What a nested walk needs of the PASID entry (a PasidCacheEntry has it all). */
export interface NestedTables {
  readonly flptptr: number;
  /** 1: 5-level first-level tables. */
  readonly flpm: number;
  readonly slptptr: number;
  /** Second-level AW: levels = aw + 2. */
  readonly aw: number;
  readonly wpe: boolean;
  readonly nxe: boolean;
  readonly smep: boolean;
  readonly slee: boolean;
  readonly ssade: boolean;
}

/** Queues an A/D update, merged with one pending for the same entry (the bits to set accumulate). */
export function queueAd(list: number[], entryAddr: number, hi: number, lo: number, table: number, marker: number): void {
  for (let i = 0; i < list.length; i += 5) {
    if (list[i] !== entryAddr) continue;
    list[i + 2] = (list[i + 2]! | lo) >>> 0;
    return;
  }
  list.push(entryAddr, hi, lo, table, marker);
}

export class Walker {
  // The outcome of the last walk.
  fault = 0;
  output = 0;
  size = 0;
  perms = 0;
  reads = 0;
  /** The address of the entry that faulted or, on success, the leaf entry (for A/D updates and traces). */
  entryAddr = 0;
  leafLevel = 0;
  /** The second-level leaf entry of the last successful second-level walk: its words and table. */
  leafHi = 0;
  leafLo = 0;
  leafTable = 0;
  /** Dependencies the walk read (address, hi, lo, mask), if `deps` was given. */
  deps: number[] | null = null;
  /** Non-leaf entries the walk used, for the paging-structure caches: (level, next table, perms, entry address, hi, lo). */
  pwcFills: number[] | null = null;

  constructor(
    private readonly mem: PhysicalMemory,
    private readonly params: WalkParams,
  ) {}

  /**
   * Second-level walk of the input page `vpn` (input address >> 12) from `table` with `levels` levels.
   * `need` is the Perm bits the request needs (R for reads, W for writes, R and X for execute). `xFromR`
   * (an execute request under a PASID entry with SLEE = 0) ignores the X bits: execute is allowed wherever
   * read is. Leaves the outcome in the walker's fields; returns false on a fault.
   */
  secondLevel(table: number, levels: number, vpn: number, offset: number, need: number, codes: SlFaultCodes, trace: WalkStep[] | null, stage?: 2, initPerms = Perm.R | Perm.W | Perm.X | Perm.U, adUpdates: number[] | null = null, xFromR = false): boolean {
    const mem = this.mem;
    const limit = this.params.hawLimit;
    const holes = mem.hasHoles;
    const deps = this.deps;
    const pwcFills = this.pwcFills;
    // Permissions of cached upper levels (a paging-structure cache hit) carry X as the entries have it.
    let perms = xFromR ? (initPerms & ~Perm.X) | ((initPerms & Perm.R) << 2) : initPerms;
    for (let level = levels; level >= 1; level--) {
      const idx = levelIndex(vpn, level);
      // Tables are 4 KiB aligned (their pointers have no low bits), so the entry is word idx * 2 of the page.
      const entryAddr = table + idx * 8;
      if (table >= limit || (holes && !mem.accessible(table))) {
        this.entryAddr = entryAddr;
        if (trace) trace.push(unreadableStep(SL_LEVEL_NAMES[level]!, level, table, idx, stage));
        return this.fail(codes.access);
      }
      const page = mem.pageForRead(table);
      const lo = page === undefined ? 0 : page[idx * 2]!;
      const hi = page === undefined ? 0 : page[idx * 2 + 1]!;
      this.reads++;
      if (deps !== null) deps.push(entryAddr, hi, lo, ~(SLB.A | SLB.D));
      if ((lo & (SLB.R | SLB.W)) === 0) {
        this.entryAddr = entryAddr;
        if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, 'not present (R = W = 0)', false, stage));
        return this.fail(need & Perm.W ? codes.notPresentWrite : codes.notPresentRead);
      }
      const next = entryTarget(hi, lo);
      // Bit 7 is PS in the entries of levels 2 and up; a level-1 entry (which maps a 4 KiB page) ignores it,
      // as the EPT page-table entry the second-level format follows does (bits 11:7 ignored).
      const large = level > 1 && (lo & SLB.PS) !== 0;
      if (next >= limit) {
        this.entryAddr = entryAddr;
        if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, 'points beyond the host address width', false, stage));
        return this.fail(codes.entryBeyond);
      }
      if (large) {
        const bad = this.slReserved(level, next);
        if (bad) {
          this.entryAddr = entryAddr;
          if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, `reserved: ${bad}`, false, stage));
          return this.fail(codes.reserved);
        }
      }
      // The second level has no user/supervisor distinction: U stays set.
      perms &= (xFromR ? (lo & 3) | ((lo & 1) << 2) : lo & 7) | Perm.U;
      if (adUpdates !== null && (lo & SLB.A) === 0) queueAd(adUpdates, entryAddr, hi, (lo | SLB.A) >>> 0, table, AD_SECOND_LEVEL);
      if (level === 1 || large) {
        this.entryAddr = entryAddr;
        const missing = need & ~perms & (Perm.R | Perm.W | Perm.X);
        if (missing) {
          const what = missing & Perm.W ? 'write' : missing & Perm.R ? 'read' : 'execute';
          const why = what === 'execute' ? ' (X = 0 in an entry, and the PASID entry has SLEE = 1)' : '';
          if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, `leaf lacks ${what} permission${why}`, false, stage));
          return this.fail(what === 'write' ? codes.noWrite : what === 'read' ? codes.noRead : codes.noExec);
        }
        const dirty = adUpdates !== null && ((lo & SLB.D) !== 0 || (need & Perm.W) !== 0);
        if (adUpdates !== null && need & Perm.W && (lo & SLB.D) === 0) queueAd(adUpdates, entryAddr, hi, (lo | SLB.A | SLB.D) >>> 0, table, AD_SECOND_LEVEL);
        // A translation cached as dirty stops setting D: software clearing D without a flush is a stale use.
        if (dirty && deps !== null) this.dirtyDep(entryAddr, lo, SLB.D, SLB.A);
        const size = level === 1 ? 4096 : level === 2 ? 0x20_0000 : 0x4000_0000;
        if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, `leaf: ${sizeName(size)} page, ${permWords(perms)}`, true, stage));
        this.output = level === 1 ? next + offset : next + (vpn & (LEVEL_PAGES[level]! - 1)) * 4096 + offset;
        this.size = size;
        this.perms = dirty ? perms | Perm.D : perms;
        this.leafLevel = level;
        this.leafHi = hi;
        this.leafLo = lo;
        this.leafTable = table;
        this.fault = 0;
        return true;
      }
      if (trace) trace.push(pteStep(SL_PTE, SL_LEVEL_NAMES[level]!, level, table, idx, hi, lo, `points to the level-${level - 1} table at 0x${next.toString(16)}`, true, stage));
      if (pwcFills !== null) pwcFills.push(level, next, perms, entryAddr, hi, lo);
      table = next;
    }
    return this.fail(codes.reserved);
  }

  /** What is wrong with a large-page (PS = 1) entry at `level`, if anything. */
  private slReserved(level: number, next: number): string | undefined {
    if (level >= 4) return `PS set at level ${level}`;
    if (level === 3 && !this.params.large1G) return 'PS set for a 1 GiB page (CAP.SLLPS has no 1 GiB)';
    if (level === 2 && !this.params.large2M) return 'PS set for a 2 MiB page (CAP.SLLPS has no 2 MiB)';
    const align = 4096 * LEVEL_PAGES[level]!;
    if (next % align !== 0) return `${sizeName(align)} page address not ${sizeName(align)} aligned`;
    return undefined;
  }

  /**
   * First-level walk. `vpn` is the page number within the 48/57-bit space (sign bits removed). `user` is
   * true for user-mode requests; `wpe`, `nxe` and `smep` come from the PASID entry (spec 3.6.2). A/D
   * updates are made by the caller from `adUpdates`. (`nested` runs the same walk over guest-physical tables.)
   */
  firstLevel(
    table: number,
    levels: number,
    topLevel: number,
    initPerms: number,
    vpn: number,
    offset: number,
    need: number,
    user: boolean,
    wpe: boolean,
    nxe: boolean,
    smep: boolean,
    trace: WalkStep[] | null,
    adUpdates: number[] | null,
  ): boolean {
    return this.flWalk(table, levels, topLevel, initPerms, vpn, offset, need, user, wpe, nxe, smep, trace, adUpdates, false);
  }

  private flWalk(
    table: number,
    levels: number,
    topLevel: number,
    initPerms: number,
    vpn: number,
    offset: number,
    need: number,
    user: boolean,
    wpe: boolean,
    nxe: boolean,
    smep: boolean,
    trace: WalkStep[] | null,
    adUpdates: number[] | null,
    /** The tables are guest-physical: each table pointer is translated through the second level (`nested`). */
    nested: boolean,
  ): boolean {
    const mem = this.mem;
    const limit = this.params.hawLimit;
    const holes = mem.hasHoles;
    const deps = this.deps;
    const pwcFills = this.pwcFills;
    const stage = nested ? 1 : undefined;
    // XD takes execute away only where it counts: for an execute request under NXE = 1.
    const xdCounts = !(need & Perm.X) || nxe;
    // Cached upper levels (a paging-structure cache hit) may have lost X to an XD that does not count here.
    let perms = xdCounts ? initPerms : initPerms | Perm.X;
    // In a nested walk: what the second-level translation of the current table page allowed, and its leaf.
    let slWritable = true;
    let slLeaf = 0;
    let slLeafHi = 0;
    let slLeafLo = 0;
    let slLeafTable = 0;
    for (let level = levels; level >= 1; level--) {
      const idx = levelIndex(vpn, level);
      const top = level === topLevel;
      const gpaTable = table;
      let nestedTrace: WalkStep[] | null = null;
      if (nested) {
        nestedTrace = trace ? [] : null;
        // Read through the second level; an A/D update of an entry in this page is a write to it (queueGuestAd).
        if (!this.tableThroughSl(table, top, nestedTrace)) {
          if (trace) trace.push({ ...unreadableStep(FL_LEVEL_NAMES[level]!, level, table, idx, 1), check: 'the second-level table does not map this guest page-table page', nestedTrace: nestedTrace! });
          return false;
        }
        table = this.output;
        slWritable = (this.perms & Perm.W) !== 0;
        slLeaf = this.entryAddr;
        slLeafHi = this.leafHi;
        slLeafLo = this.leafLo;
        slLeafTable = this.leafTable;
      }
      const entryAddr = table + idx * 8;
      this.entryAddr = entryAddr;
      if (table >= limit || (holes && !mem.accessible(table))) {
        if (trace) trace.push(unreadableStep(FL_LEVEL_NAMES[level]!, level, table, idx, stage));
        return this.fail(top ? FL_CODES.topAccess : FL_CODES.access);
      }
      const page = mem.pageForRead(table);
      const lo = page === undefined ? 0 : page[idx * 2]!;
      const hi = page === undefined ? 0 : page[idx * 2 + 1]!;
      this.reads++;
      if (deps !== null) deps.push(entryAddr, hi, lo, ~(FLB.A | FLB.D | FLB.EA));
      if ((lo & FLB.P) === 0) {
        if (trace) trace.push(flStep(level, table, gpaTable, idx, hi, lo, 'not present (P = 0)', false, stage, nestedTrace));
        return this.fail(FL_CODES.notPresent);
      }
      const next = entryTarget(hi, lo);
      // Bit 7 is PS in a PDE or PDPE; in a PTE (level 1, a 4 KiB page) it is PAT, not a page size.
      const large = level > 1 && (lo & FLB.PS) !== 0;
      if (large || (!nested && next >= limit)) {
        const bad = this.flReserved(level, large, next, nested);
        if (bad) {
          if (trace) trace.push(flStep(level, table, gpaTable, idx, hi, lo, `reserved: ${bad}`, false, stage, nestedTrace));
          return this.fail(FL_CODES.reserved);
        }
      }
      if ((lo & FLB.RW) === 0) perms &= ~Perm.W;
      if ((lo & FLB.US) === 0) perms &= ~Perm.U;
      if ((hi & FLB.XD_HI) !== 0 && xdCounts) perms &= ~Perm.X;
      if (adUpdates !== null && (lo & FLB.A) === 0) {
        if (nested) this.queueGuestAd(adUpdates, entryAddr, hi, (lo | FLB.A) >>> 0, gpaTable, top, slWritable, slLeaf, slLeafHi, slLeafLo, slLeafTable);
        else queueAd(adUpdates, entryAddr, hi, (lo | FLB.A) >>> 0, gpaTable, top ? AD_TOP : 0);
      }
      if (level === 1 || large) {
        const size = level === 1 ? 4096 : level === 2 ? 0x20_0000 : 0x4000_0000;
        const problem =
          user && !(perms & Perm.U) ? FL_CODES.user
          : need & Perm.W && !(perms & Perm.W) && (user || wpe) ? FL_CODES.write
          : need & Perm.X && !(perms & Perm.X) ? FL_CODES.exec
          : need & Perm.X && !user && smep && perms & Perm.U ? FL_CODES.exec
          : 0;
        if (problem) {
          const why =
            problem === FL_CODES.user ? 'user request to a supervisor page (U/S = 0)'
            : problem === FL_CODES.write ? 'write to a read-only page (R/W = 0)'
            : !(perms & Perm.X) ? 'execute from a no-execute page (XD = 1, NXE = 1)'
            : 'supervisor execute from a user page (U/S = 1 in every entry, SMEP = 1)';
          if (trace) trace.push(flStep(level, table, gpaTable, idx, hi, lo, why, false, stage, nestedTrace));
          return this.fail(problem);
        }
        const dirty = (lo & FLB.D) !== 0 || (need & Perm.W) !== 0;
        if (adUpdates !== null && need & Perm.W && (lo & FLB.D) === 0) {
          // The leaf gets D as well as A (merged with a pending A-only update of this entry).
          if (nested) this.queueGuestAd(adUpdates, entryAddr, hi, (lo | FLB.A | FLB.D) >>> 0, gpaTable, top, slWritable, slLeaf, slLeafHi, slLeafLo, slLeafTable);
          else queueAd(adUpdates, entryAddr, hi, (lo | FLB.A | FLB.D) >>> 0, gpaTable, top ? AD_TOP : 0);
        }
        if (deps !== null && dirty) this.dirtyDep(entryAddr, lo, FLB.D, FLB.A | FLB.EA);
        if (trace) trace.push(flStep(level, table, gpaTable, idx, hi, lo, `leaf: ${sizeName(size)} page, ${permWords(perms & ~Perm.U)}${perms & Perm.U ? ', user' : ', supervisor'}`, true, stage, nestedTrace));
        // A large page's address field has PAT at bit 12: the page base is the field rounded down to the size.
        this.output = level === 1 ? next + offset : next - (next & (size - 1)) + (vpn & (LEVEL_PAGES[level]! - 1)) * 4096 + offset;
        this.size = size;
        this.perms = dirty ? perms | Perm.D : perms & ~Perm.D;
        this.leafLevel = level;
        this.fault = 0;
        return true;
      }
      if (trace) trace.push(flStep(level, table, gpaTable, idx, hi, lo, `points to the level-${level - 1} table at 0x${next.toString(16)}${nested ? ' (GPA)' : ''}`, true, stage, nestedTrace));
      if (pwcFills !== null) pwcFills.push(level, next, perms, entryAddr, hi, lo);
      table = next;
    }
    return this.fail(FL_CODES.reserved);
  }

  // ---- nested translation (PGTT = 011b) ----

  // The second-level tables of the nested walk in progress.
  private nSlTable = 0;
  private nSlLevels = 0;
  private nSlLimit = 0;
  /** The A/D update list when the PASID entry has SSADE (second-level A/D), else null. */
  private nSlAd: number[] | null = null;

  /**
   * Nested translation (VT-d spec 3.8): a first-level walk over guest-physical tables, each table pointer and
   * the final output translated through the second-level tables (24 paging reads for 4 levels over 4).
   * `slWidth` is the second level's address width in bits: a GPA at or above 2^slWidth faults. Leaves the outcome in the
   * walker's fields; the permissions hold the first level's R/W/X/U, D when both stages' leaves are dirty, and
   * the second level's R/W/X shifted by NESTED_SL_SHIFT.
   *
   * A/D updates queued in `adUpdates` (applied by the caller once the walk succeeded), by the rules of the
   * second-level format (EPT's, whose A/D definition it shares) and the nested fault reasons:
   * - first-level entries: A in every entry used, D in the leaf of a write, as in any first-level walk;
   * - such an update is a write to the guest page-table page: it needs write permission in the second-level
   *   translation of that page (marked AD_NO_SL_WRITE when missing, which the caller reports as 0x77);
   * - with SSADE: A in every second-level entry used, by the translations of the table pointers as well as by
   *   the final one; D in the second-level leaf of the output page on a write, and in the second-level leaf
   *   that maps a guest page-table page the walk writes A/D into (that page changed: dirty tracking must see
   *   it, or a migrated guest loses its own A/D bits). Table reads that update nothing stay reads.
   */
  nested(pe: NestedTables, slWidth: number, vpn: number, offset: number, need: number, user: boolean, trace: WalkStep[] | null, adUpdates: number[] | null): boolean {
    const flLevels = pe.flpm === 1 ? 5 : 4;
    const slLevels = pe.aw + 2;
    const slAd = pe.ssade ? adUpdates : null;
    // The limit as a field, not an argument: a number beyond 31 bits passed to a call is a new heap object.
    const slLimit = POW2[slWidth]!;
    this.nSlTable = pe.slptptr;
    this.nSlLevels = slLevels;
    this.nSlLimit = slLimit;
    this.nSlAd = slAd;
    if (!this.flWalk(pe.flptptr, flLevels, flLevels, Perm.R | Perm.W | Perm.X | Perm.U, vpn, offset, need, user, pe.wpe, pe.nxe, pe.smep, trace, adUpdates, true)) return false;
    // The first-level output is a guest-physical address: translate it through the second level.
    const gpa = this.output;
    const flSize = this.size;
    const flPerms = this.perms;
    // An output GPA beyond the second level's width has no second-level entry: 0x79, as a missing mapping.
    if (gpa >= slLimit) return this.fail(0x79);
    const finalTrace = trace ? ([] as WalkStep[]) : null;
    // The final page is a request-with-PASID (spec 3.8.2): an execute request needs X there only with SLEE.
    if (!this.secondLevel(pe.slptptr, slLevels, Math.floor(gpa / 4096), gpa & 0xfff, need & ~Perm.U, SM_SL, finalTrace, 2, Perm.R | Perm.W | Perm.X | Perm.U, slAd, (need & Perm.X) !== 0 && !pe.slee)) {
      if (trace) trace.push(nestedOutputStep(`second-level translation of the output GPA 0x${gpa.toString(16)}`, false, finalTrace!));
      return false;
    }
    if (trace) trace.push(nestedOutputStep(`second-level translation of the output GPA 0x${gpa.toString(16)} -> 0x${this.output.toString(16)}`, true, finalTrace!));
    this.size = Math.min(flSize, this.size);
    // Cached as dirty only when both stages are: a write through it then needs no walk to set either D.
    const dirty = flPerms & Perm.D && (slAd === null || this.perms & Perm.D) ? Perm.D : 0;
    this.perms = (flPerms & (Perm.R | Perm.W | Perm.X | Perm.U)) | dirty | ((this.perms & (Perm.R | Perm.W | Perm.X)) << NESTED_SL_SHIFT);
    return true;
  }

  /** The second-level translation of a first-level table's GPA (a read); the HPA is left in `output`. */
  private tableThroughSl(gpa: number, top: boolean, trace: WalkStep[] | null): boolean {
    const codes = top ? NESTED_TOP : NESTED_TABLE;
    if (gpa >= this.nSlLimit) return this.fail(codes.beyond);
    return this.secondLevel(this.nSlTable, this.nSlLevels, Math.floor(gpa / 4096), gpa & 0xfff, Perm.R, codes, trace, 2, Perm.R | Perm.W | Perm.X | Perm.U, this.nSlAd, false);
  }

  /**
   * Queues an A/D update of a guest (first-level) entry in a nested walk: marked when the second level does
   * not let the walk write the table page, and with SSADE preceded by D in the second-level leaf mapping it.
   */
  private queueGuestAd(ad: number[], entryAddr: number, hi: number, lo: number, gpaTable: number, top: boolean, slWritable: boolean, slLeaf: number, slLeafHi: number, slLeafLo: number, slLeafTable: number): void {
    const slAd = this.nSlAd;
    if (slWritable && slAd !== null && (slLeafLo & SLB.D) === 0) queueAd(slAd, slLeaf, slLeafHi, (slLeafLo | SLB.A | SLB.D) >>> 0, slLeafTable, AD_SECOND_LEVEL);
    queueAd(ad, entryAddr, hi, lo, gpaTable, (top ? AD_TOP : 0) | (slWritable ? 0 : AD_NO_SL_WRITE));
  }

  // XD is never reserved. The spec revisions with execute requests reserved it under NXE = 0; the current one
  // dropped execute requests and deprecated NXE and XD, and Linux stopped setting both (e995fcde6070
  // "iommu/vt-d: Remove control over Execute-Requested requests", 6.11) while CPU page tables used for SVA
  // are full of NX bits. XD restricts execute requests under NXE = 1 only (see the header).
  private flReserved(level: number, large: boolean, next: number, nested: boolean): string | undefined {
    if (!nested && next >= this.params.hawLimit) return 'address above the host address width';
    if (!large) return undefined;
    if (level >= 4) return `PS set at level ${level}`;
    if (level === 3 && !this.params.large1G) return 'PS set for a 1 GiB page (CAP.FL1GP = 0)';
    // Bit 12 of a large-page entry is PAT; the bits between it and the page size must be zero.
    const align = 4096 * LEVEL_PAGES[level]!;
    if ((next % align) - (next % 0x2000) !== 0) return `${sizeName(align)} page address not ${sizeName(align)} aligned`;
    return undefined;
  }

  /**
   * The leaf's dependency once its translation is cached as dirty: D counts (as set) and only the bits the
   * hardware may still set are ignored.
   */
  private dirtyDep(entryAddr: number, lo: number, d: number, ignored: number): void {
    const deps = this.deps!;
    for (let i = deps.length - 4; i >= 0; i -= 4) {
      if (deps[i] !== entryAddr) continue;
      deps[i + 2] = (lo | d) >>> 0;
      deps[i + 3] = ~ignored;
      return;
    }
  }

  fail(code: number): false {
    this.fault = code;
    return false;
  }
}

// ---- trace steps ----

export function permWords(p: number): string {
  const words = [p & Perm.R ? 'read' : '', p & Perm.W ? 'write' : '', p & Perm.X ? 'execute' : ''].filter(Boolean);
  return words.length ? words.join('/') : 'no';
}

function pteStep(layout: typeof SL_PTE, structure: string, level: number, table: number, index: number, hi: number, lo: number, check: string, ok: boolean, stage?: 1 | 2): WalkStep {
  const words = [lo, hi];
  return {
    structure,
    ...(stage ? { stage } : {}),
    level,
    table: '0x' + table.toString(16),
    index,
    entryAddress: '0x' + (table + index * 8).toString(16),
    raw: rawWords(words, 1),
    fields: decodeEntry(layout, words),
    check,
    ok,
  };
}

function flStep(level: number, table: number, gpaTable: number, index: number, hi: number, lo: number, check: string, ok: boolean, stage: 1 | undefined, nestedTrace: WalkStep[] | null): WalkStep {
  const s = pteStep(FL_PTE, FL_LEVEL_NAMES[level]!, level, table, index, hi, lo, check, ok, stage);
  return nestedTrace ? { ...s, table: '0x' + gpaTable.toString(16) + ' (GPA) -> 0x' + table.toString(16), nestedTrace } : s;
}

function nestedOutputStep(check: string, ok: boolean, nestedTrace: WalkStep[]): WalkStep {
  return { structure: 'nested-output', raw: [], fields: {}, check, ok, nestedTrace };
}

function unreadableStep(structure: string, level: number, table: number, index: number, stage?: 1 | 2): WalkStep {
  return {
    structure,
    ...(stage ? { stage } : {}),
    level,
    table: '0x' + table.toString(16),
    index,
    entryAddress: '0x' + (table + index * 8).toString(16),
    raw: [],
    fields: {},
    check: `the table at 0x${table.toString(16)} cannot be read`,
    ok: false,
  };
}

export function hex64(hi: number, lo: number): string {
  return hexPad(hi >>> 0, 8) + hexPad(lo >>> 0, 8);
}

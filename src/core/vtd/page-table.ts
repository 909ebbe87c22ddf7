import type { PhysicalMemory } from '../hw/memory';
import { FLB, SLB } from './structures';
import { FL_LEVEL_NAMES, levelIndex, SL_LEVEL_NAMES } from './walk';

/**
 * An I/O page table in simulated memory, in VT-d second-level (EPT-like) or first-level (IA-32e) format, as
 * the Linux VT-d driver builds them: map picks the largest page size the alignment and the hardware allow,
 * non-leaf entries carry the permissions Linux gives them, and unmap frees table pages that a range empties.
 * It only writes memory; keeping caches coherent (invalidation) is the caller's job, as in the kernel.
 */

export type PageTableFormat = 'second-level' | 'first-level';

export interface LeafAttributes {
  readonly read: boolean;
  readonly write: boolean;
  readonly exec?: boolean;
  /** First level: user-accessible (U/S). Linux sets it for DMA mappings, which are user-mode requests. */
  readonly user?: boolean;
  /** Second level: snoop (SNP, bit 11), set by Linux when the domain enforces cache coherency. */
  readonly snoop?: boolean;
  /** First level: pre-set A (and D when writable), as Linux does so the IOMMU need not write them. */
  readonly accessed?: boolean;
}

export interface PageTableOptions {
  readonly format: PageTableFormat;
  /** 3, 4 or 5 levels (first level: 4 or 5). */
  readonly levels: number;
  readonly large2M?: boolean;
  readonly large1G?: boolean;
  /** Where to take table pages from; defaults to the memory's table allocator. */
  readonly allocPage?: () => number;
  readonly freePage?: (addr: number) => void;
}

export interface Leaf {
  readonly iova: number;
  readonly output: number;
  readonly size: number;
  readonly level: number;
  /** The entries from the top level down to the leaf: (address, hi, lo). */
  readonly path: readonly { readonly addr: number; readonly hi: number; readonly lo: number }[];
}

export class PageTableError extends Error {}

const TWO_32 = 0x1_0000_0000;
const SIZES = [0, 4096, 0x20_0000, 0x4000_0000];

export class IoPageTable {
  readonly root: number;
  readonly format: PageTableFormat;
  readonly levels: number;
  private readonly large2M: boolean;
  private readonly large1G: boolean;
  private readonly alloc: () => number;
  private readonly free: (addr: number) => void;
  /** Table pages freed by the last map (superpage promotion) or unmap: Linux then flushes with IH = 0. */
  tablesFreed = 0;
  // Sequential mappings reuse the last table found at each level.
  private readonly memoKey: number[] = [-1, -1, -1, -1, -1, -1];
  private readonly memoTable: number[] = [0, 0, 0, 0, 0, 0];

  constructor(
    private readonly mem: PhysicalMemory,
    options: PageTableOptions,
  ) {
    this.format = options.format;
    this.levels = options.levels;
    if (![3, 4, 5].includes(this.levels) || (this.format === 'first-level' && this.levels === 3)) {
      throw new PageTableError(`a ${this.format} table cannot have ${this.levels} levels`);
    }
    this.large2M = options.large2M ?? true;
    this.large1G = options.large1G ?? false;
    this.alloc = options.allocPage ?? (() => mem.allocPage());
    this.free = options.freePage ?? ((a) => mem.freePage(a));
    this.root = this.alloc();
  }

  /** The input addresses the table covers: 2^(12 + 9 * levels). */
  get span(): number {
    return 2 ** (12 + 9 * this.levels);
  }

  private nonLeaf(next: number): [hi: number, lo: number] {
    const hi = Math.floor(next / TWO_32);
    const lo = next >>> 0;
    // Linux: second level R|W on table entries; first level P|R/W|U/S|A.
    return this.format === 'second-level' ? [hi, (lo | SLB.R | SLB.W) >>> 0] : [hi, (lo | FLB.P | FLB.RW | FLB.US | FLB.A) >>> 0];
  }

  private leaf(output: number, level: number, a: LeafAttributes): [hi: number, lo: number] {
    let hi = Math.floor(output / TWO_32);
    let lo = output >>> 0;
    const large = level > 1 ? 0x80 : 0;
    if (this.format === 'second-level') {
      lo |= (a.read ? SLB.R : 0) | (a.write ? SLB.W : 0) | (a.exec ? SLB.X : 0) | (a.snoop ? SLB.SNP : 0) | large;
    } else {
      lo |= FLB.P | (a.write ? FLB.RW : 0) | ((a.user ?? true) ? FLB.US : 0) | large;
      if (a.accessed ?? true) lo |= FLB.A | (a.write ? FLB.D : 0);
      if (a.exec === false) hi |= FLB.XD_HI;
    }
    return [hi >>> 0, lo >>> 0];
  }

  private entryName(level: number): string {
    return (this.format === 'second-level' ? SL_LEVEL_NAMES : FL_LEVEL_NAMES)[level]!;
  }

  private present(lo: number): boolean {
    return this.format === 'second-level' ? (lo & (SLB.R | SLB.W)) !== 0 : (lo & FLB.P) !== 0;
  }

  /** The table holding the entries of `level` for page `vpn`, creating intermediate tables as needed. */
  private tableFor(vpn: number, level: number, create: boolean): number {
    const key = Math.floor(vpn / 512 ** level);
    if (this.memoKey[level] === key) return this.memoTable[level]!;
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const entry = table + levelIndex(vpn, l) * 8;
      const lo = this.mem.readLo(entry);
      const hi = this.mem.readHi(entry);
      if (!this.present(lo)) {
        if (!create) return -1;
        const next = this.alloc();
        const [nh, nl] = this.nonLeaf(next);
        this.mem.write64(entry, nh, nl, this.entryName(l));
        table = next;
      } else {
        if (lo & 0x80) throw new PageTableError(`0x${(vpn * 4096).toString(16)} is inside a ${SIZES[l]! / 0x10_0000} MiB page`);
        table = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
      }
    }
    this.memoKey[level] = key;
    this.memoTable[level] = table;
    return table;
  }

  /**
   * Maps [iova, iova+size) to [output, output+size). Uses the largest page size that the alignment of both
   * addresses, the remaining size and the hardware allow. Returns the number of leaf entries written.
   * Throws on an overlap with an existing mapping, as Linux refuses (and warns about) double maps.
   */
  map(iova: number, output: number, size: number, attrs: LeafAttributes): number {
    if (iova % 4096 || output % 4096 || size % 4096 || size <= 0) throw new PageTableError('map: addresses and size must be 4 KiB aligned and the size positive');
    if (iova + size > this.span) throw new PageTableError(`map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond the ${12 + 9 * this.levels}-bit table`);
    const written: number[] = [];
    this.tablesFreed = 0;
    try {
      return this.mapRange(iova, output, size, attrs, written);
    } catch (e) {
      // Like iommu_map(): a map that fails half-way unmaps the leaves it wrote, so the call has no effect.
      for (let i = 0; i < written.length; i += 2) this.unmap(written[i]!, written[i + 1]!);
      throw e;
    }
  }

  private mapRange(iova: number, output: number, size: number, attrs: LeafAttributes, written: number[]): number {
    let leaves = 0;
    while (size > 0) {
      const level =
        this.large1G && iova % 0x4000_0000 === 0 && output % 0x4000_0000 === 0 && size >= 0x4000_0000 ? 3
        : this.large2M && iova % 0x20_0000 === 0 && output % 0x20_0000 === 0 && size >= 0x20_0000 ? 2
        : 1;
      const pageSize = SIZES[level]!;
      const vpn = iova / 4096;
      const table = this.tableFor(vpn, level, true);
      const entry = table + levelIndex(vpn, level) * 8;
      const old = this.mem.readLo(entry);
      if (this.present(old)) {
        // A superpage where a table of small pages was: allowed when that table maps nothing (Linux frees it:
        // switch_to_super_page). The caller must then flush the range, as for any freed table.
        if (level === 1 || old & 0x80 || !this.emptyTable(this.mem.readHi(entry), old, level - 1)) {
          throw new PageTableError(`map: 0x${iova.toString(16)} is already mapped`);
        }
        const old64 = (this.mem.readHi(entry) & 0xf_ffff) * TWO_32 + ((old & 0xffff_f000) >>> 0);
        this.mem.write64(entry, 0, 0, this.entryName(level));
        this.tablesFreed += this.freeTables(old64, level - 1);
        this.memoKey.fill(-1);
      }
      const [hi, lo] = this.leaf(output, level, attrs);
      this.mem.write64(entry, hi, lo, this.entryName(level));
      written.push(iova, pageSize);
      leaves++;
      iova += pageSize;
      output += pageSize;
      size -= pageSize;
    }
    return leaves;
  }

  /**
   * Unmaps whatever lies in [iova, iova+size). A large page that the range only partly covers is unmapped
   * whole, as Linux does (and the returned size says so). Table pages left empty are freed. Returns the
   * number of bytes unmapped.
   */
  unmap(iova: number, size: number): number {
    if (iova % 4096 || size % 4096) throw new PageTableError('unmap: address and size must be 4 KiB aligned');
    this.memoKey.fill(-1);
    this.tablesFreed = 0;
    const end = Math.min(iova + size, this.span);
    return this.clear(this.root, this.levels, 0, iova, end);
  }

  /** Clears the range in the table at `level` that covers input addresses from `base`; returns bytes unmapped. */
  private clear(table: number, level: number, base: number, start: number, end: number): number {
    const span = 4096 * 512 ** (level - 1);
    let unmapped = 0;
    const first = Math.max(0, Math.floor((start - base) / span));
    const last = Math.min(511, Math.floor((end - 1 - base) / span));
    for (let i = first; i <= last; i++) {
      const entry = table + i * 8;
      const lo = this.mem.readLo(entry);
      if (!this.present(lo)) continue;
      const hi = this.mem.readHi(entry);
      const entryBase = base + i * span;
      if (level === 1 || lo & 0x80) {
        this.mem.write64(entry, 0, 0, this.entryName(level));
        unmapped += span;
        continue;
      }
      const next = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
      unmapped += this.clear(next, level - 1, entryBase, start, end);
      if (start <= entryBase && entryBase + span <= end) {
        // The whole range of this table is gone: free the table page as Linux's unmap does.
        this.mem.write64(entry, 0, 0, this.entryName(level));
        this.free(next);
        this.tablesFreed++;
      }
    }
    return unmapped;
  }

  /** Whether the table an entry points to (at `level`) maps nothing. */
  private emptyTable(hi: number, lo: number, level: number): boolean {
    const table = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
    for (let i = 0; i < 512; i++) {
      const e = this.mem.readLo(table + i * 8);
      if (!this.present(e)) continue;
      if (level === 1 || e & 0x80 || !this.emptyTable(this.mem.readHi(table + i * 8), e, level - 1)) return false;
    }
    return true;
  }

  /** Software lookup: the leaf mapping `iova`, or undefined. */
  lookup(iova: number): { output: number; size: number; level: number; hi: number; lo: number } | undefined {
    let table = this.root;
    const vpn = Math.floor(iova / 4096);
    for (let level = this.levels; level >= 1; level--) {
      const entry = table + levelIndex(vpn, level) * 8;
      const lo = this.mem.readLo(entry);
      const hi = this.mem.readHi(entry);
      if (!this.present(lo)) return undefined;
      const next = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
      if (level === 1 || lo & 0x80) {
        const size = SIZES[level]!;
        const base = this.format === 'first-level' && level > 1 ? next - (next % size) : next;
        return { output: base + (iova % size), size, level, hi, lo };
      }
      table = next;
    }
    return undefined;
  }

  /** Every present leaf in address order, with the entries on its path (what debugfs prints per row). */
  leaves(): Generator<Leaf> {
    return pageTableLeaves(this.mem, this.root, this.levels, this.format);
  }

  /** Frees every table page, including the root (the table must not be in use). */
  destroy(): void {
    this.freeTables(this.root, this.levels);
  }

  /** Frees a table and the tables below it; returns how many pages were freed. */
  private freeTables(table: number, level: number): number {
    let n = 0;
    if (level > 1) {
      for (let i = 0; i < 512; i++) {
        const lo = this.mem.readLo(table + i * 8);
        if (!this.present(lo) || lo & 0x80) continue;
        const hi = this.mem.readHi(table + i * 8);
        n += this.freeTables((hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0), level - 1);
      }
    }
    this.free(table);
    return n + 1;
  }
}

/** Every present leaf of a table in memory, in address order: for tables the model did not build (a debugfs import). */
export function* pageTableLeaves(mem: PhysicalMemory, root: number, levels: number, format: PageTableFormat): Generator<Leaf> {
  const present = format === 'second-level' ? SLB.R | SLB.W : FLB.P;
  function* walk(table: number, level: number, base: number, path: Leaf['path'][number][]): Generator<Leaf> {
    const span = 4096 * 512 ** (level - 1);
    for (let i = 0; i < 512; i++) {
      const addr = table + i * 8;
      const lo = mem.readLo(addr);
      if ((lo & present) === 0) continue;
      const hi = mem.readHi(addr);
      const here = [...path, { addr, hi, lo }];
      const next = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
      if (level === 1 || lo & 0x80) {
        const size = SIZES[level]!;
        yield { iova: base + i * span, output: format === 'first-level' && level > 1 ? next - (next % size) : next, size, level, path: here };
      } else {
        yield* walk(next, level - 1, base + i * span, here);
      }
    }
  }
  yield* walk(root, levels, 0, []);
}

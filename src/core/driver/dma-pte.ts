import type { PhysicalMemory } from '../hw/memory';
import { FL_LEVEL_NAMES, SL_LEVEL_NAMES } from '../vtd/walk';
import type { KernelVersion } from './log';

/**
 * The VT-d driver's own page-table code for map (drivers/iommu/intel/iommu.c: pfn_to_dma_pte,
 * dma_pfn_level_pte, dma_pte_clear_range, dma_pte_free_level, switch_to_super_page, __domain_mapping), as
 * 6.12 has it, over the domain's table in simulated memory. It is the kernel's algorithm, mistakes included:
 * it believes the table it walks, so a 4 KiB map inside a superpage walks into the superpage's data as if it
 * were a table, and a present leaf it meets is left alone with a complaint. Entries are 64-bit words; the
 * values written here stay below 2^53 (a 52-bit frame plus attribute bits below 4 KiB), so they are numbers.
 */

/**
 * Second-stage leaves mapped with IOMMU_WRITE alone. From eea53c581688 "iommu/vt-d: Remove WO permissions on
 * second-level paging entries" every leaf gets DMA_FL_PTE_PRESENT, which is DMA_PTE_READ's bit, so they are
 * read+write; 6f5dc7658094 "iommu/vt-d: Restore WO permissions on second-level paging entries" sets it for
 * the first stage only, so they are write-only again. Checked: the 5.10 (Debian, carrying the 5.10.y
 * backport), 6.1 and 6.12 sources set it for both stages; the 6.16 merge-window patch mail quotes the
 * diff, and a later fix names 6f5dc7658094 as merged in v6.16-rc1. That eea53c581688 is mainline 5.13 comes
 * from its AUTOSEL backports to 5.10.y and 5.12.y in May 2021, quoting it as upstream.
 */
export const WRITE_ONLY_LEAVES = { removed: '5.13', restored: '6.16' } as const satisfies Record<string, KernelVersion>;

/** DMA_PTE_READ, DMA_PTE_WRITE, DMA_PTE_LARGE_PAGE, DMA_PTE_SNP; DMA_FL_PTE_PRESENT is bit 0 too. */
export const DMA_PTE = { READ: 0x1, WRITE: 0x2, LARGE_PAGE: 0x80, SNP: 0x800 } as const;
/** DMA_FL_PTE_US, DMA_FL_PTE_ACCESS, DMA_FL_PTE_DIRTY. */
const DMA_FL_PTE = { PRESENT: 0x1, US: 0x4, ACCESS: 0x20, DIRTY: 0x40 } as const;

const TWO_32 = 0x1_0000_0000;
const STRIDE = 512;

/** The domain's table as the driver sees it (struct dmar_domain: pgd, agaw, use_first_level, iommu_superpage). */
export interface DmaTable {
  readonly mem: PhysicalMemory;
  readonly pgd: number;
  /** agaw_to_level(domain->agaw). */
  readonly levels: number;
  readonly firstLevel: boolean;
  /** domain->iommu_superpage: 0 none, 1 up to 2 MiB, 2 up to 1 GiB. */
  readonly superpage: number;
}

/** What __domain_mapping meets on its way, for the caller to print, flush and record. */
export interface MappingEvents {
  /** The cmpxchg found a non-zero entry: pr_crit("ERROR: DMA PTE for vPFN ... already set ...") and WARN_ON(1). */
  alreadySet(iovPfn: number, old: Pte, pteval: number): void;
  /** switch_to_super_page freed what a present entry held: cache_tag_flush_range(start << 12, end << 12, 0). */
  flush(startPfn: number, endPfn: number): void;
  /** pfn_to_dma_pte went on through a superpage leaf, taking the page it maps for the next table. */
  walkedIntoPage(level: number, entry: number, page: number): void;
}

/** lvl_to_nr_pages / level_size: the 4 KiB pages an entry at `level` covers. */
const levelPages = (level: number): number => STRIDE ** (level - 1);
/** pfn_level_offset. */
const levelOffset = (pfn: number, level: number): number => Math.floor(pfn / levelPages(level)) % STRIDE;
const firstInPage = (pte: number): boolean => pte % 4096 === 0;

/** One entry as two 32-bit halves: what the table holds may be anything (a superpage's data, walked into). */
export interface Pte {
  readonly hi: number;
  readonly lo: number;
}

function read(mem: PhysicalMemory, pte: number): Pte {
  return { hi: mem.readHi(pte) >>> 0, lo: mem.readLo(pte) >>> 0 };
}

function write(mem: PhysicalMemory, pte: number, value: number, what: string): void {
  mem.write64(pte, Math.floor(value / TWO_32) >>> 0, value >>> 0, what);
}

/** dma_pte_present: R or W (first level: P or R/W). */
const present = (v: Pte): boolean => (v.lo & 3) !== 0;
/** dma_pte_superpage. */
const superpage = (v: Pte): boolean => (v.lo & DMA_PTE.LARGE_PAGE) !== 0;
/** dma_pte_addr: bits 51:12 (the kernel masks 63:12; physical addresses end at bit 51). */
const pteAddr = (v: Pte): number => (v.hi & 0xf_ffff) * TWO_32 + ((v.lo & 0xffff_f000) >>> 0);
const isZero = (v: Pte): boolean => v.hi === 0 && v.lo === 0;

function entryName(t: DmaTable, level: number): string {
  return (t.firstLevel ? FL_LEVEL_NAMES : SL_LEVEL_NAMES)[level]!;
}

/**
 * pfn_to_dma_pte with a target level (every caller here gives one): the entry for `pfn` at that level,
 * allocating the tables above it that are missing (R|W, and U/S|A at the first level). It does not stop at
 * a superpage above the target: it takes the superpage's frame for the next table (walkedIntoPage says so).
 */
export function pfnToDmaPte(t: DmaTable, pfn: number, target: number, events?: Pick<MappingEvents, 'walkedIntoPage'>): number {
  let parent = t.pgd;
  for (let level = t.levels; ; level--) {
    const pte = parent + levelOffset(pfn, level) * 8;
    if (level === target) return pte;
    let v = read(t.mem, pte);
    if (!present(v)) {
      const page = t.mem.allocPage();
      const pteval = page + DMA_PTE.READ + DMA_PTE.WRITE + (t.firstLevel ? DMA_FL_PTE.US + DMA_FL_PTE.ACCESS : 0);
      // try_cmpxchg64 against 0: a not-present entry that is not zero keeps its value ("use theirs").
      if (isZero(v)) {
        write(t.mem, pte, pteval, entryName(t, level));
        v = read(t.mem, pte);
      } else {
        t.mem.freePage(page);
      }
    } else if (superpage(v) && level > 1) {
      events?.walkedIntoPage(level, pte, pteAddr(v));
    }
    if (level === 1) return pte;
    parent = pteAddr(v);
  }
}

/** dma_pfn_level_pte(pfn, 1, &large_page): the leaf for `pfn`, or undefined with the level where the walk stopped. */
function leafPte(t: DmaTable, pfn: number): { pte: number | undefined; level: number } {
  let parent = t.pgd;
  for (let total = t.levels; total >= 1; total--) {
    const pte = parent + levelOffset(pfn, total) * 8;
    if (total === 1) return { pte, level: 1 };
    const v = read(t.mem, pte);
    if (!present(v)) return { pte: undefined, level: total };
    if (superpage(v)) return { pte, level: total };
    parent = pteAddr(v);
  }
  return { pte: undefined, level: 1 };
}

/** dma_pte_clear_range: clears the leaves in [start, last], whatever their size. */
function clearRange(t: DmaTable, start: number, last: number): void {
  do {
    const { pte: first, level } = leafPte(t, start);
    if (first === undefined) {
      // align_to_level(start + 1, level + 1)
      const size = levelPages(level + 1);
      start = Math.ceil((start + 1) / size) * size;
      continue;
    }
    let pte = first;
    do {
      write(t.mem, pte, 0, entryName(t, level));
      start += levelPages(level);
      pte += 8;
    } while (start <= last && !firstInPage(pte));
  } while (start && start <= last);
}

/**
 * dma_pte_free_level: below `retainLevel`, clears every entry whose whole span [start, last] covers and frees
 * the table it points to, deepest first.
 */
function freeLevel(t: DmaTable, level: number, retainLevel: number, table: number, pfn: number, start: number, last: number): void {
  pfn = Math.max(start, pfn);
  let pte = table + levelOffset(pfn, level) * 8;
  do {
    const v = read(t.mem, pte);
    if (present(v) && !superpage(v)) {
      const levelPfn = pfn - (pfn % levelPages(level));
      const next = pteAddr(v);
      if (level > 2) freeLevel(t, level - 1, retainLevel, next, levelPfn, start, last);
      if (level < retainLevel && !(start > levelPfn || last < levelPfn + levelPages(level) - 1)) {
        write(t.mem, pte, 0, entryName(t, level));
        t.mem.freePage(next);
      }
    }
    pfn += levelPages(level);
    pte += 8;
  } while (!firstInPage(pte) && pfn <= last);
}

/**
 * switch_to_super_page: for each `level` slot of [start, end] whose entry is present (a table of smaller
 * pages, or a superpage already), dma_pte_free_pagetable over that slot (leaves cleared, tables below
 * `level` freed) and then a flush from that slot to the end of the run: one flush per replaced entry.
 */
function switchToSuperPage(t: DmaTable, start: number, end: number, level: number, events: MappingEvents): void {
  const lvlPages = levelPages(level);
  let pte: number | undefined;
  while (start <= end) {
    pte ??= pfnToDmaPte(t, start, level, events);
    if (present(read(t.mem, pte))) {
      clearRange(t, start, start + lvlPages - 1);
      freeLevel(t, t.levels, level + 1, t.pgd, 0, start, start + lvlPages - 1);
      events.flush(start, end);
    }
    pte += 8;
    start += lvlPages;
    if (firstInPage(pte)) pte = undefined;
  }
}

/** hardware_largepage_caps: the largest level both frame numbers are aligned to and `pages` fills. */
function largepageLevel(superpages: number, iovPfn: number, physPfn: number, pages: number): number {
  let level = 1;
  for (let support = superpages; support > 0 && iovPfn % STRIDE === 0 && physPfn % STRIDE === 0; support--) {
    pages = Math.floor(pages / STRIDE);
    if (!pages) break;
    iovPfn /= STRIDE;
    physPfn /= STRIDE;
    level++;
  }
  return level;
}

/**
 * __domain_mapping's loop, after its checks: `attr` is the leaf's attribute bits (R/W/SNP, present, and
 * the first level's U/S, A, D), the caller's to decide. Each run of entries in one table page is found with
 * pfn_to_dma_pte at the level hardware_largepage_caps gives; a superpage run first goes through
 * switch_to_super_page. Every entry is written only if it is zero (cmpxchg): a non-zero one is reported and
 * kept, and the map goes on.
 */
export function domainMapping(t: DmaTable, iovPfn: number, physPfn: number, nrPages: number, attr: number, events: MappingEvents): void {
  let pteval = physPfn * 4096 + attr;
  const large = () => Math.floor(pteval / DMA_PTE.LARGE_PAGE) % 2 === 1;
  let pte: number | undefined;
  let level = 1;
  let lvlPages = 1;
  while (nrPages > 0) {
    if (pte === undefined) {
      level = largepageLevel(t.superpage, iovPfn, physPfn, nrPages);
      pte = pfnToDmaPte(t, iovPfn, level, events);
      lvlPages = levelPages(level);
      if (level > 1) {
        if (!large()) pteval += DMA_PTE.LARGE_PAGE;
        // nr_pte_to_next_page: the entries from here to the end of the table page.
        const toNextPage = (4096 - (pte % 4096)) / 8;
        const remove = Math.min(nrPages - (nrPages % lvlPages), toNextPage * lvlPages);
        switchToSuperPage(t, iovPfn, iovPfn + remove - 1, level, events);
      } else if (large()) {
        pteval -= DMA_PTE.LARGE_PAGE;
      }
    }
    const old = read(t.mem, pte);
    if (isZero(old)) write(t.mem, pte, pteval, entryName(t, level));
    else events.alreadySet(iovPfn, old, pteval);
    nrPages -= lvlPages;
    iovPfn += lvlPages;
    physPfn += lvlPages;
    pteval += lvlPages * 4096;
    pte += 8;
    if (!nrPages || firstInPage(pte) || (level > 1 && nrPages < lvlPages)) pte = undefined;
  }
}

/** The attribute bits __domain_mapping gives a leaf. */
export function leafAttributes(o: { readonly read: boolean; readonly write: boolean; readonly snoop: boolean; readonly firstLevel: boolean; readonly presentImpliesRead: boolean }): number {
  let attr = (o.read ? DMA_PTE.READ : 0) + (o.write ? DMA_PTE.WRITE : 0) + (o.snoop ? DMA_PTE.SNP : 0);
  // DMA_FL_PTE_PRESENT is bit 0, DMA_PTE_READ's bit: every leaf of a kernel that sets it for both stages is readable.
  if ((o.firstLevel || o.presentImpliesRead) && !o.read) attr += DMA_FL_PTE.PRESENT;
  if (o.firstLevel) attr += DMA_FL_PTE.US + DMA_FL_PTE.ACCESS + (o.write ? DMA_FL_PTE.DIRTY : 0);
  return attr;
}

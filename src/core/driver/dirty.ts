import type { PhysicalMemory } from '../hw/memory';
import type { IoPageTable } from '../vtd/page-table';
import { SLB } from '../vtd/structures';
import { levelIndex, SL_LEVEL_NAMES } from '../vtd/walk';

/**
 * Second-stage dirty harvesting as the VT-d driver does it (intel_iommu_read_and_clear_dirty): walk the
 * domain's table over a range, one entry at a time as `pfn_to_dma_pte` finds it, report every present leaf
 * whose D bit (bit 9) is set, and clear that bit unless told not to. Reports go to the caller's bitmap and
 * widen an IOTLB gather that the caller then flushes (iommu_iotlb_sync), as iommufd does.
 */

/** One dirty leaf: the IOVA the walk reached it from and the leaf's size (iommu_dirty_bitmap_record). */
export interface DirtyRecord {
  readonly iova: number;
  readonly size: number;
}

/** `struct iommu_iotlb_gather` as a harvest fills it: [start, end], inclusive; empty while start > end. */
export interface IotlbGather {
  start: number;
  end: number;
}

/** iommu_iotlb_gather_init: start = ULONG_MAX, end = 0. */
export function emptyGather(): IotlbGather {
  return { start: Infinity, end: 0 };
}

/** iommu_iotlb_gather_add_range. */
export function gatherAdd(gather: IotlbGather, iova: number, size: number): void {
  if (gather.start > iova) gather.start = iova;
  if (gather.end < iova + size - 1) gather.end = iova + size - 1;
}

const TWO_32 = 0x1_0000_0000;
/** D (bit 9) of a second-level entry; R or W (bits 0-1) make it present. */
const SL_D = SLB.D;
const SL_PRESENT = SLB.R | SLB.W;

/**
 * `pfn_to_dma_pte(domain, pfn, &level = 0)`: from the root down, stop at a non-present entry, a large-page
 * leaf, or the 4 KiB level; returns that entry's address and level.
 */
export function slEntryAt(mem: PhysicalMemory, pt: IoPageTable, iova: number): { addr: number; level: number } {
  const vpn = Math.floor(iova / 4096);
  let table = pt.root;
  for (let level = pt.levels; ; level--) {
    const addr = table + levelIndex(vpn, level) * 8;
    const lo = mem.readLo(addr);
    if (!(lo & SL_PRESENT) || lo & 0x80 || level === 1) return { addr, level };
    table = (mem.readHi(addr) & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
  }
}

/**
 * The loop of intel_iommu_read_and_clear_dirty over [iova, iova + size): it steps by the size of the entry
 * it reached (a non-present table entry skips its whole span) from wherever it stands, as the kernel does,
 * and always looks at one entry even for size 0. Addresses beyond the table count as 4 KiB holes.
 */
export function harvestDirty(mem: PhysicalMemory, pt: IoPageTable, iova: number, size: number, noClear: boolean, record: (iova: number, size: number) => void): void {
  const end = iova + size - 1;
  let at = iova;
  do {
    let pgsize = 4096;
    if (at < pt.span) {
      const { addr, level } = slEntryAt(mem, pt, at);
      pgsize = 4096 * 512 ** (level - 1);
      const lo = mem.readLo(addr);
      if (lo & SL_PRESENT && lo & SL_D) {
        // dma_sl_pte_test_and_clear_dirty: an atomic test-and-clear of bit 9, or a plain test with NO_CLEAR.
        if (!noClear) mem.write64(addr, mem.readHi(addr), (lo & ~SL_D) >>> 0, SL_LEVEL_NAMES[level]);
        record(at, pgsize);
      }
    }
    at += pgsize;
  } while (at < end);
}

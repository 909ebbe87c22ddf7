/**
 * The IOMMU core's side of iommu_map and iommu_unmap (drivers/iommu/iommu.c): how a range is cut into the
 * calls the driver gets (iommu_pgsize), and the gather that collects what an unmap must flush
 * (iommu_iotlb_gather_add_page). The VT-d driver's side is in kernel.ts.
 */

/**
 * iommu_pgsize: the largest page size of `pgsizes` (ascending) that fits `size` and the alignment of `iova`
 * and `paddr`, and how many of them to hand over at once: up to the next boundary of the next larger page
 * size, if `size` reaches a whole larger page beyond it and both addresses sit at the same offset in it.
 */
export function iommuPgsize(pgsizes: readonly number[], iova: number, paddr: number, size: number): { pgsize: number; count: number } {
  let pgsize = pgsizes[0]!;
  for (const p of pgsizes) if (p <= size && iova % p === 0 && paddr % p === 0) pgsize = p;
  let span = size;
  const next = pgsizes.find((p) => p > pgsize);
  if (next !== undefined && iova % next === paddr % next) {
    const offset = next - (iova % next);
    if (offset + next <= size) span = offset;
  }
  return { pgsize, count: Math.floor(span / pgsize) };
}

/** `struct iommu_iotlb_gather` as an unmap fills it: [start, end] inclusive, empty while start > end. */
export interface UnmapGather {
  start: number;
  end: number;
  /** The size of the last range added (`gather->pgsize`); 0 for a fresh gather. */
  pgsize: number;
  /** A page-table page went on the freelist: the flush then has IH = 0. */
  freed: boolean;
}

/** iommu_iotlb_gather_init. */
export function unmapGather(): UnmapGather {
  return { start: Infinity, end: 0, pgsize: 0, freed: false };
}

/**
 * iommu_iotlb_gather_add_page: a range of another size than the last one, or one that neither touches nor
 * overlaps the gathered range (iommu_iotlb_gather_is_disjoint), first has what was gathered synced.
 */
export function gatherAddPage(g: UnmapGather, iova: number, size: number, sync: (g: UnmapGather) => void): void {
  const end = iova + size - 1;
  const disjoint = g.end !== 0 && (end + 1 < g.start || iova > g.end + 1);
  if ((g.pgsize && g.pgsize !== size) || disjoint) sync(g);
  g.pgsize = size;
  if (g.start > iova) g.start = iova;
  if (g.end < end) g.end = end;
}

/** What iommu_iotlb_sync leaves: a fresh gather. */
export function resetGather(g: UnmapGather): void {
  g.start = Infinity;
  g.end = 0;
  g.pgsize = 0;
  g.freed = false;
}

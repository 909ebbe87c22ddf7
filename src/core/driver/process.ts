import type { PhysicalMemory } from '../hw/memory';
import { IoPageTable } from '../vtd/page-table';

/**
 * A user process as SVA sees it: an address space with a CPU page table in simulated memory (IA-32e format,
 * which is exactly the VT-d first-level format, so the IOMMU walks the very same table), virtual memory areas,
 * demand paging, and the MMU notifiers that tell the IOMMU driver when mappings go away.
 */

export interface Vma {
  readonly start: number;
  readonly end: number;
  readonly write: boolean;
  readonly exec: boolean;
  /** MAP_HUGETLB: backed by 2 MiB pages, each physically contiguous and 2 MiB aligned. */
  readonly huge?: boolean;
}

const HUGE = 0x20_0000;

export interface MmuNotifier {
  /** Mappings in [start, end) were removed: secondary TLBs (IOTLB, device TLBs) must drop them. */
  invalidate(start: number, end: number): void;
  /** The address space is going away (process exit). */
  release(): void;
}

export class Process {
  readonly pageTable: IoPageTable;
  readonly vmas: Vma[] = [];
  /** The process's SVA PASID (mm->iommu_mm->pasid): allocated at the first bind, kept until exit. */
  pasid: number | undefined;
  readonly notifiers = new Set<MmuNotifier>();
  exited = false;

  constructor(
    private readonly mem: PhysicalMemory,
    readonly pid: number,
    readonly name: string,
    options: { fiveLevel?: boolean } = {},
  ) {
    this.pageTable = new IoPageTable(mem, { format: 'first-level', levels: options.fiveLevel ? 5 : 4, large2M: true, large1G: true });
  }

  /** The CR3 value the IOMMU uses as FLPTPTR. */
  get pgd(): number {
    return this.pageTable.root;
  }

  /**
   * Adds a mapping area; pages appear on first touch (demand paging). `hugetlb` (MAP_HUGETLB) backs it with
   * 2 MiB pages: start and size must then be 2 MiB aligned.
   */
  mmap(start: number, size: number, prot: { write?: boolean; exec?: boolean; hugetlb?: boolean } = {}): void {
    const align = prot.hugetlb ? HUGE : 4096;
    if (start % align || size % align || size <= 0) throw new RangeError(`mmap: start and size must be ${prot.hugetlb ? '2 MiB' : 'page'} aligned`);
    if (this.vmas.some((v) => v.start < start + size && start < v.end)) throw new RangeError(`mmap: 0x${start.toString(16)} overlaps an existing area`);
    this.vmas.push({ start, end: start + size, write: prot.write ?? true, exec: prot.exec ?? false, ...(prot.hugetlb ? { huge: true } : {}) });
  }

  vmaAt(addr: number): Vma | undefined {
    return this.vmas.find((v) => addr >= v.start && addr < v.end);
  }

  /**
   * `handle_mm_fault`: makes the page at `addr` present if an area allows the access; false when the access
   * is a segfault (no area, or a write to a read-only area).
   */
  handleFault(addr: number, write: boolean): boolean {
    const vma = this.vmaAt(addr);
    if (!vma || (write && !vma.write) || this.exited) return false;
    if (vma.huge) return this.hugeFault(addr, vma);
    const page = addr - (addr % 4096);
    const hit = this.pageTable.lookup(page);
    if (hit && (hit.lo & 2 || !write)) return true;
    if (hit) this.pageTable.unmap(page, 4096);
    this.pageTable.map(page, this.mem.allocPage(), 4096, { read: true, write: vma.write, user: true, exec: vma.exec, accessed: false });
    return true;
  }

  /** A 2 MiB page for a hugetlb area: 512 contiguous, 2 MiB-aligned frames, mapped by one large leaf. */
  private hugeFault(addr: number, vma: Vma): boolean {
    const page = addr - (addr % HUGE);
    if (this.pageTable.lookup(page)) return true;
    // The frame allocator hands out contiguous frames in order: skip to the next 2 MiB boundary.
    const next = this.mem.allocContiguous(1) + 4096;
    const pad = (HUGE - (next % HUGE)) % HUGE;
    if (pad) this.mem.allocContiguous(pad / 4096);
    const base = this.mem.allocContiguous(HUGE / 4096);
    this.pageTable.map(page, base, HUGE, { read: true, write: vma.write, user: true, exec: vma.exec, accessed: false });
    return true;
  }

  /** A CPU access: faults the page in, as the CPU would. */
  touch(addr: number, write = false): boolean {
    return this.handleFault(addr, write);
  }

  /** Removes [start, start+size): pages are unmapped and the notifiers told, as munmap does. */
  munmap(start: number, size: number): void {
    const end = start + size;
    for (let i = this.vmas.length - 1; i >= 0; i--) {
      const v = this.vmas[i]!;
      if (v.end <= start || v.start >= end) continue;
      this.vmas.splice(i, 1);
      if (v.start < start) this.vmas.push({ ...v, end: start });
      if (v.end > end) this.vmas.push({ ...v, start: end });
    }
    this.pageTable.unmap(start, size);
    for (const n of this.notifiers) n.invalidate(start, end);
  }

  exit(): void {
    this.exited = true;
    for (const n of [...this.notifiers]) n.release();
  }
}

import type { Process } from '../driver/process';
import type { PhysicalMemory } from '../hw/memory';
import { userPagePhysical } from './user-pages';

/**
 * The user's dirty bitmap of IOMMU_HWPT_GET_DIRTY_BITMAP (drivers/iommu/iommufd/iova_bitmap.c, 6.17): bit
 * n stands for [iova + n * page_size, iova + (n + 1) * page_size), bit n of the byte array at `data` (bit
 * n % 8 of byte n / 8). The kernel pins a window of the bitmap's user pages (at most 512, from the byte
 * that covers the IOVA being recorded) and sets bits in the pinned pages; recording outside the pinned
 * window moves it. A window that cannot be pinned (an unmapped bitmap) drops the bits silently, as
 * iova_bitmap_set does: the ioctl still succeeds. Bits beyond the bitmap's last byte but inside a pinned
 * page can be set (a large leaf that runs past the range), as in the kernel. Values are the uAPI's u64s.
 */

const U64 = (1n << 64n) - 1n;
const PAGE = 4096n;
const BITS_PER_PAGE = 4096n * 8n;
/** PAGE_SIZE / sizeof(struct page *): the most bitmap pages pinned at once. */
const MAX_PINNED = 512n;

export class IovaBitmap {
  private readonly pgshift: bigint;
  /** mapped_total_index: bytes of bitmap the range needs. */
  private readonly totalIndex: bigint;
  private baseIndex = 0n;
  /** Physical addresses of the pinned bitmap pages (mapped->pages). */
  private pinned: number[] = [];
  private mappedIova: bigint;
  private mappedLength = 0n;
  private pgoff = 0n;

  constructor(
    private readonly mm: Process,
    private readonly memory: PhysicalMemory,
    readonly iova: bigint,
    readonly length: bigint,
    pageSize: bigint,
    readonly data: bigint,
  ) {
    let shift = 0n;
    while (((pageSize >> shift) & 1n) === 0n) shift++;
    this.pgshift = shift;
    this.totalIndex = this.offsetToIndex((length - 1n) & U64) + 1n;
    this.mappedIova = iova;
  }

  private offsetToIndex(offset: bigint): bigint {
    return offset / (8n << this.pgshift);
  }

  private indexToOffset(index: bigint): bigint {
    return ((index * 8n) << this.pgshift) & U64;
  }

  /** iova_bitmap_get: pin the window of bitmap pages from `baseIndex`; false when nothing could be pinned. */
  private get(): boolean {
    const addr = (this.data + this.baseIndex) & U64;
    let npages = (this.totalIndex - this.baseIndex + PAGE - 1n) / PAGE + (addr % PAGE ? 1n : 0n);
    if (npages > MAX_PINNED) npages = MAX_PINNED;
    const first = addr - (addr % PAGE);
    const pages: number[] = [];
    for (let i = 0n; i < npages; i++) {
      try {
        pages.push(userPagePhysical(this.mm, first + i * PAGE, true));
      } catch {
        break;
      }
    }
    if (pages.length === 0) return false;
    this.pinned = pages;
    this.mappedIova = (this.iova + this.indexToOffset(this.baseIndex)) & U64;
    this.pgoff = addr % PAGE;
    this.mappedLength = this.mappedLengthNow();
    return true;
  }

  private mappedLengthNow(): bigint {
    const maxIova = (this.iova + this.length - 1n) & U64;
    const bytes = BigInt(this.pinned.length) * PAGE - this.pgoff;
    const left = this.totalIndex - this.baseIndex;
    let remaining = this.indexToOffset(left < bytes ? left : bytes);
    const end = (this.mappedIova + remaining - 1n) & U64;
    if (end > maxIova) remaining = (remaining - (end - maxIova)) & U64;
    return remaining;
  }

  private mappedRange(iova: bigint, length: bigint): boolean {
    return this.pinned.length > 0 && iova >= this.mappedIova && ((iova + length - 1n) & U64) <= ((this.mappedIova + this.mappedLength - 1n) & U64);
  }

  /** iova_bitmap_advance_to. */
  private advanceTo(iova: bigint): boolean {
    const index = this.offsetToIndex((iova - this.iova) & U64);
    if (index >= this.totalIndex) return false;
    this.baseIndex = index;
    this.pinned = [];
    return this.get();
  }

  /** iova_bitmap_set: the bits for [iova, iova + length - 1]. */
  set(iova: bigint, length: bigint): void {
    for (;;) {
      if (!this.mappedRange(iova, length) && !this.advanceTo(iova)) return;
      const lastPage = BigInt(this.pinned.length - 1);
      let cur = (((iova - this.mappedIova) & U64) >> this.pgshift) + this.pgoff * 8n;
      const last = ((((iova + length - 1n) & U64) - this.mappedIova) & U64) >> this.pgshift;
      const lastBit = last + this.pgoff * 8n;
      let moved = false;
      do {
        const page = cur / BITS_PER_PAGE;
        const offset = cur % BITS_PER_PAGE;
        const nbits = BITS_PER_PAGE - offset < lastBit - cur + 1n ? BITS_PER_PAGE - offset : lastBit - cur + 1n;
        if (page > lastPage) {
          const left = ((lastBit - cur + 1n) << this.pgshift) & U64;
          iova = (iova + length - left) & U64;
          length = left;
          moved = true;
          break;
        }
        setBits(this.memory, this.pinned[Number(page)]!, Number(offset), Number(nbits));
        cur += nbits;
      } while (cur <= lastBit);
      if (!moved) return;
    }
  }
}

/** bitmap_set on a page: bits [offset, offset + n) of the page at physical address `pa`. */
function setBits(memory: PhysicalMemory, pa: number, offset: number, n: number): void {
  let bit = offset;
  const end = offset + n;
  while (bit < end) {
    const word = bit >>> 5;
    const from = bit & 31;
    const count = Math.min(32 - from, end - bit);
    const mask = count === 32 ? 0xffff_ffff : ((2 ** count - 1) << from) >>> 0;
    const addr = pa + word * 4;
    memory.write32(addr, (memory.read32(addr) | mask) >>> 0, 'iommufd-dirty-bitmap');
    bit += count;
  }
}

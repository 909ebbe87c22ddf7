/**
 * Simulated physical memory: sparse, page-granular, up to 52-bit addresses. Every IOMMU structure lives
 * here in its real little-endian binary layout; a 64-bit word at byte address A is the two 32-bit halves
 * page[(A & 0xfff) >> 2] (low) and the next one (high).
 *
 * Why this shape:
 * - Page walks read a handful of entries per translation and must cost less than a Map.get each, so pages
 *   are found through 16 MiB chunks (4096 pages) with a one-entry chunk cache: table pages are allocated
 *   close together, so a walk almost always stays in one chunk and a read is a compare and an array index.
 * - `writeCount` counts every write. Caches remember it when they fill and re-verify their entries against
 *   memory only when it moved, which is how stale-cache use is detected without slowing down cache hits.
 * - Snapshots are copy-on-write: the first write to a page after a snapshot saves the page, so taking a
 *   snapshot is O(1) and restoring costs what was written since.
 */

const PAGE_SIZE = 4096;
const CHUNK_PAGES = 4096;
const SLAB_PAGES = 256;
const TWO_32 = 0x1_0000_0000;

interface Chunk {
  readonly pages: (Uint32Array | undefined)[];
  /** Snapshot generation in which each page was last saved (see `saveBeforeWrite`). */
  readonly saved: Int32Array;
}

interface SnapshotRecord {
  generation: number;
  /** Page frame number -> the page's content when the snapshot was taken (undefined: it did not exist). */
  readonly pages: Map<number, Uint32Array | undefined>;
  /** Allocator state when the snapshot was taken. */
  allocator: AllocatorState;
  writeCount: number;
}

interface AllocatorState {
  next: number;
  free: number[];
}

/** A memory access that cannot be served: the address is beyond the host address width or in a hole. */
export class MemoryAccessError extends Error {
  constructor(readonly address: number) {
    super(`no memory at 0x${address.toString(16)}`);
  }
}

export interface MemoryOptions {
  /** Host address width in bits (from the ACPI DMAR table); addresses at or above 2^haw do not exist. */
  readonly hostAddressWidth?: number;
  /** Where table pages are allocated from (the allocator hands out pages upwards from here). */
  readonly tableBase?: number;
}

export type SnapshotId = number;

/**
 * What the IOMMU model, the driver and the VMM need of a physical address space. Host memory is a
 * SparseMemory; a VM's guest-physical memory (vmm/guest-memory.ts) is a view of host pages through the VM's
 * GPA-to-HPA map, so a table the guest writes is where the host hardware reads it in a nested walk.
 */
export interface PhysicalMemory {
  readonly hostAddressWidth: number;
  /** Incremented on every write; caches compare it to decide whether to re-verify an entry. */
  readonly writeCount: number;
  observer: ((addr: number, beforeHi: number, beforeLo: number, hi: number, lo: number, what: string) => void) | undefined;
  readonly hasHoles: boolean;
  readonly populatedPages: number;
  readonly bytesUsed: number;
  addHole(base: number, size: number): void;
  accessible(addr: number): boolean;
  /** The page holding `addr` as 1024 32-bit words, or undefined when nothing was ever written there. */
  pageForRead(addr: number): Uint32Array | undefined;
  readLo(addr: number): number;
  readHi(addr: number): number;
  read32(addr: number): number;
  write64(addr: number, hi: number, lo: number, what?: string): void;
  write32(addr: number, value: number, what?: string): void;
  zeroPage(addr: number): void;
  allocPage(): number;
  allocContiguous(pages: number): number;
  freePage(addr: number): void;
  pages(): Generator<{ addr: number; data: Uint32Array }>;
  snapshot(): SnapshotId;
  restore(id: SnapshotId): void;
  release(id: SnapshotId): void;
}

/** Host physical memory: sparse pages in 16 MiB chunks (see the file comment). */
export class SparseMemory implements PhysicalMemory {
  readonly hostAddressWidth: number;
  private readonly limit: number;
  private readonly chunks = new Map<number, Chunk>();
  private lastChunkId = -1;
  private lastChunk: Chunk | undefined;
  /** `lastChunk.pages`, one load closer to a read. */
  private lastPages: (Uint32Array | undefined)[] = [];
  private holes: { base: number; end: number }[] = [];
  /** Incremented on every write; caches compare it to decide whether to re-verify an entry. */
  writeCount = 0;
  /**
   * Called on every 64-bit write with the old and new value and what the writer said it wrote. Set only
   * while someone listens (see Machine), so unobserved simulations pay one null check per write.
   */
  observer: ((addr: number, beforeHi: number, beforeLo: number, hi: number, lo: number, what: string) => void) | undefined;
  private pageCount = 0;
  private allocator: AllocatorState;
  private readonly tableBase: number;
  private snapshots: SnapshotRecord[] = [];
  private generation = 0;
  private nextSnapshotId = 1;
  private readonly snapshotIds = new Map<SnapshotId, SnapshotRecord>();

  constructor(options: MemoryOptions = {}) {
    this.hostAddressWidth = options.hostAddressWidth ?? 46;
    if (this.hostAddressWidth < 32 || this.hostAddressWidth > 52) throw new RangeError('host address width must be 32..52');
    this.limit = 2 ** this.hostAddressWidth;
    this.tableBase = options.tableBase ?? 0x1000_0000;
    this.allocator = { next: this.tableBase, free: [] };
  }

  /** Makes [base, base+size) unreadable, like an MMIO hole: table reads there are access errors. */
  addHole(base: number, size: number): void {
    this.holes.push({ base, end: base + size });
  }

  get hasHoles(): boolean {
    return this.holes.length > 0;
  }

  /** Whether a table read at `addr` would succeed. */
  accessible(addr: number): boolean {
    if (addr >= this.limit || addr < 0) return false;
    for (const h of this.holes) if (addr >= h.base && addr < h.end) return false;
    return true;
  }

  /** Number of pages that hold data (for memory accounting). */
  get populatedPages(): number {
    return this.pageCount;
  }

  private chunkFor(pfn: number, create: boolean): Chunk | undefined {
    const id = pfn < TWO_32 ? pfn >>> 12 : Math.floor(pfn / CHUNK_PAGES);
    if (id === this.lastChunkId) return this.lastChunk;
    let chunk = this.chunks.get(id);
    if (!chunk) {
      if (!create) return undefined;
      chunk = { pages: new Array<Uint32Array | undefined>(CHUNK_PAGES).fill(undefined), saved: new Int32Array(CHUNK_PAGES) };
      this.chunks.set(id, chunk);
    }
    this.lastChunkId = id;
    this.lastChunk = chunk;
    this.lastPages = chunk.pages;
    return chunk;
  }

  /**
   * The page holding `addr` for reading, or undefined when it was never written (reads as zeros).
   * Hot path: callers index it with `(addr & 0xfff) >> 2`.
   */
  pageForRead(addr: number): Uint32Array | undefined {
    // The common case, small enough to inline into a walk: below 4 GiB, in the chunk used last.
    if (addr < TWO_32 && addr >>> 24 === this.lastChunkId) return this.lastPages[(addr >>> 12) & (CHUNK_PAGES - 1)];
    const pfn = addr < TWO_32 ? addr >>> 12 : Math.floor(addr / PAGE_SIZE);
    const chunk = this.chunkFor(pfn, false);
    return chunk === undefined ? undefined : chunk.pages[pfn & (CHUNK_PAGES - 1)];
  }

  private pageForWrite(addr: number): Uint32Array {
    const pfn = addr < TWO_32 ? addr >>> 12 : Math.floor(addr / PAGE_SIZE);
    const chunk = this.chunkFor(pfn, true)!;
    const i = pfn & (CHUNK_PAGES - 1);
    if (this.snapshots.length > 0 && chunk.saved[i] !== this.generation) this.saveBeforeWrite(chunk, i, pfn);
    let page = chunk.pages[i];
    if (page === undefined) {
      page = this.newPage();
      chunk.pages[i] = page;
      this.pageCount++;
    }
    return page;
  }

  // Pages are views into 1 MiB slabs: one backing store per 256 pages instead of one per page, which is what
  // made populating many tables (65,536 devices' PASID tables) slow. Fresh slab memory is already zero.
  private slab: ArrayBuffer | undefined;
  private slabUsed = SLAB_PAGES;

  private newPage(): Uint32Array {
    if (this.slabUsed === SLAB_PAGES) {
      this.slab = new ArrayBuffer(SLAB_PAGES * PAGE_SIZE);
      this.slabUsed = 0;
    }
    return new Uint32Array(this.slab!, this.slabUsed++ * PAGE_SIZE, PAGE_SIZE / 4);
  }

  private saveBeforeWrite(chunk: Chunk, i: number, pfn: number): void {
    const record = this.snapshots[this.snapshots.length - 1]!;
    if (!record.pages.has(pfn)) {
      const page = chunk.pages[i];
      record.pages.set(pfn, page === undefined ? undefined : page.slice());
    }
    chunk.saved[i] = this.generation;
  }

  /** Low 32 bits of the 64-bit word at `addr` (8-byte aligned). */
  readLo(addr: number): number {
    const p = this.pageForRead(addr);
    return p === undefined ? 0 : p[(addr & 0xfff) >>> 2]!;
  }

  /** High 32 bits of the 64-bit word at `addr`. */
  readHi(addr: number): number {
    const p = this.pageForRead(addr);
    return p === undefined ? 0 : p[((addr & 0xfff) >>> 2) + 1]!;
  }

  read32(addr: number): number {
    const p = this.pageForRead(addr);
    return p === undefined ? 0 : p[(addr & 0xfff) >>> 2]!;
  }

  /** Writes a 64-bit word given as halves; `what` names the structure for the event stream. */
  write64(addr: number, hi: number, lo: number, what = 'memory'): void {
    const p = this.pageForWrite(addr);
    const i = (addr & 0xfff) >>> 2;
    if (this.observer !== undefined) this.observer(addr, p[i + 1]!, p[i]!, hi >>> 0, lo >>> 0, what);
    p[i] = lo;
    p[i + 1] = hi;
    this.writeCount++;
  }

  write32(addr: number, value: number, what = 'memory'): void {
    const p = this.pageForWrite(addr);
    const i = (addr & 0xfff) >>> 2;
    if (this.observer !== undefined) {
      const q = i & ~1;
      const newLo = i === q ? value >>> 0 : p[q]!;
      const newHi = i === q ? p[q + 1]! : value >>> 0;
      this.observer(addr - (addr & 4), p[q + 1]!, p[q]!, newHi, newLo, what);
    }
    p[i] = value;
    this.writeCount++;
  }

  /** Zeroes a whole page (used when a table page is allocated or freed). */
  zeroPage(addr: number): void {
    const pfn = addr < TWO_32 ? addr >>> 12 : Math.floor(addr / PAGE_SIZE);
    const chunk = this.chunkFor(pfn, true)!;
    const i = pfn & (CHUNK_PAGES - 1);
    if (this.snapshots.length > 0 && chunk.saved[i] !== this.generation) this.saveBeforeWrite(chunk, i, pfn);
    if (chunk.pages[i] !== undefined) {
      chunk.pages[i] = undefined;
      this.pageCount--;
    }
    this.writeCount++;
  }

  /** A zeroed 4 KiB page for a table, from the table region. Deterministic: freed pages are reused first. */
  allocPage(): number {
    const addr = this.allocator.free.length > 0 ? this.allocator.free.pop()! : this.bump();
    this.zeroPage(addr);
    return addr;
  }

  /** `pages` physically contiguous zeroed table pages (a PASID directory, the page request queue). */
  allocContiguous(pages: number): number {
    const base = this.allocator.next;
    if (base + pages * PAGE_SIZE > this.limit) throw new RangeError('simulated memory is full');
    this.allocator.next = base + pages * PAGE_SIZE;
    for (let i = 0; i < pages; i++) this.zeroPage(base + i * PAGE_SIZE);
    return base;
  }

  private bump(): number {
    const addr = this.allocator.next;
    if (addr + PAGE_SIZE > this.limit) throw new RangeError('simulated memory is full: no room for another table page');
    this.allocator.next = addr + PAGE_SIZE;
    return addr;
  }

  /** Returns a table page to the allocator; its contents are cleared, as a freed page may be reused. */
  freePage(addr: number): void {
    this.zeroPage(addr);
    this.allocator.free.push(addr);
  }

  /** Every populated page's frame number and content, in address order (for dumps and tests). */
  *pages(): Generator<{ addr: number; data: Uint32Array }> {
    const ids = [...this.chunks.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const chunk = this.chunks.get(id)!;
      for (let i = 0; i < CHUNK_PAGES; i++) {
        const data = chunk.pages[i];
        if (data) yield { addr: (id * CHUNK_PAGES + i) * PAGE_SIZE, data };
      }
    }
  }

  /** Bytes the simulation itself uses for page contents (excludes JS object headers). */
  get bytesUsed(): number {
    return this.pageCount * PAGE_SIZE;
  }

  // ---- snapshots ----

  /** Marks the current contents; `restore(id)` brings them back. Cheap: pages are saved on first write. */
  snapshot(): SnapshotId {
    this.generation++;
    const record: SnapshotRecord = {
      generation: this.generation,
      pages: new Map(),
      allocator: { next: this.allocator.next, free: this.allocator.free.slice() },
      writeCount: this.writeCount,
    };
    this.snapshots.push(record);
    const id = this.nextSnapshotId++;
    this.snapshotIds.set(id, record);
    return id;
  }

  /** Returns memory to its state at `snapshot(id)`. Snapshots taken after it are discarded; `id` stays valid. */
  restore(id: SnapshotId): void {
    const record = this.snapshotIds.get(id);
    if (!record) throw new Error(`unknown or discarded memory snapshot ${id}`);
    const at = this.snapshots.indexOf(record);
    for (let k = this.snapshots.length - 1; k >= at; k--) {
      const r = this.snapshots[k]!;
      for (const [pfn, content] of r.pages) {
        const chunk = this.chunkFor(pfn, true)!;
        const i = pfn & (CHUNK_PAGES - 1);
        const had = chunk.pages[i] !== undefined;
        chunk.pages[i] = content === undefined ? undefined : content.slice();
        this.pageCount += (content !== undefined ? 1 : 0) - (had ? 1 : 0);
      }
    }
    for (const r of this.snapshots.splice(at + 1)) {
      for (const [sid, rec] of this.snapshotIds) if (rec === r) this.snapshotIds.delete(sid);
    }
    record.pages.clear();
    this.allocator = { next: record.allocator.next, free: record.allocator.free.slice() };
    // A fresh generation, so writes from now on are saved into this record again.
    this.generation++;
    record.generation = this.generation;
    // Restored contents differ from what caches may have verified: make every cache re-check.
    this.writeCount++;
  }

  /** Forgets a snapshot; its saved pages fold into the one before (or are dropped if it was the oldest). */
  release(id: SnapshotId): void {
    const record = this.snapshotIds.get(id);
    if (!record) return;
    const at = this.snapshots.indexOf(record);
    const previous = this.snapshots[at - 1];
    if (previous) for (const [pfn, content] of record.pages) if (!previous.pages.has(pfn)) previous.pages.set(pfn, content);
    this.snapshots.splice(at, 1);
    this.snapshotIds.delete(id);
    if (at === this.snapshots.length && previous) {
      // The newest record is gone: writes must be saved into `previous` from now on.
      this.generation++;
      previous.generation = this.generation;
    }
  }
}

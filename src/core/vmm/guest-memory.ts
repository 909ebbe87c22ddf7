import { MemoryAccessError, type PhysicalMemory, type SnapshotId } from '../hw/memory';

/**
 * A VM's guest-physical memory: guest RAM [0, size) backed by host memory at [hostBase, hostBase + size).
 *
 * Why a view and not a memory of its own: in a nested walk the host IOMMU reads the guest's first-level
 * tables at the host-physical addresses its second level gives, and the guest wrote them at guest-physical
 * addresses. Both must be the same bytes, so every guest access is a host access at `hostBase + gpa`, and a
 * guest write moves the host's `writeCount` (host caches holding guest entries re-verify, and a missing
 * invalidation shows up as stale use on the host too).
 *
 * Why contiguous: the VMM maps guest RAM as one block (QEMU's RAM block; KVM's memslot and the VFIO DMA map
 * of it are page-by-page in reality, but nothing in the model depends on the host pages being scattered),
 * which keeps GPA to HPA a subtraction and lets migration place the same RAM elsewhere on another host.
 * The second-level (GPA to HPA) domain the VMM builds for assigned devices maps exactly this block.
 */
export interface GuestRam {
  /** Bytes of guest RAM, a multiple of 2 MiB. */
  readonly size: number;
  /** Host-physical address of guest-physical 0 (2 MiB aligned, so the GPA map can use large pages). */
  readonly hostBase: number;
  /** Guest-physical address width the guest's CPUs and vIOMMU see (bits). */
  readonly addressWidth?: number;
  /** Where the guest kernel's page allocator starts handing out table pages (default: the upper half of RAM). */
  readonly tableBase?: number;
}

const PAGE = 4096;

export class GuestMemory implements PhysicalMemory {
  readonly hostAddressWidth: number;
  readonly size: number;
  /** Where guest RAM is on the host; moves when the VM migrates (rebase). */
  hostBase: number;
  observer: ((addr: number, beforeHi: number, beforeLo: number, hi: number, lo: number, what: string) => void) | undefined;
  private holes: { base: number; end: number }[] = [];
  private next: number;
  private free: number[] = [];
  private readonly tableBase: number;
  private readonly saved = new Map<SnapshotId, { next: number; free: number[] }>();
  private nextSnapshot = 1;

  private hostMemory: PhysicalMemory;

  constructor(host: PhysicalMemory, ram: GuestRam) {
    this.hostMemory = host;
    if (ram.size <= 0 || ram.size % 0x20_0000 !== 0) throw new RangeError(`guest RAM size 0x${ram.size.toString(16)} is not a positive multiple of 2 MiB`);
    if (ram.hostBase % 0x20_0000 !== 0) throw new RangeError(`guest RAM host base 0x${ram.hostBase.toString(16)} is not 2 MiB aligned`);
    if (ram.hostBase + ram.size > 2 ** host.hostAddressWidth) throw new RangeError(`guest RAM at 0x${ram.hostBase.toString(16)} does not fit the host's ${host.hostAddressWidth}-bit address space`);
    this.size = ram.size;
    this.hostBase = ram.hostBase;
    this.hostAddressWidth = ram.addressWidth ?? Math.max(32, Math.ceil(Math.log2(ram.size)));
    if (2 ** this.hostAddressWidth < ram.size) throw new RangeError(`a ${this.hostAddressWidth}-bit guest cannot address 0x${ram.size.toString(16)} bytes of RAM`);
    this.tableBase = ram.tableBase ?? ram.size / 2;
    this.next = this.tableBase;
  }

  get host(): PhysicalMemory {
    return this.hostMemory;
  }

  /**
   * Live migration's RAM copy: every populated guest page is written to `host` at `hostBase` + its GPA, the
   * source pages are zeroed (the source host gets its memory back), and from now on the guest's accesses go
   * to the destination. The guest sees the same bytes at the same guest-physical addresses.
   */
  rebase(host: PhysicalMemory, hostBase: number): number {
    if (hostBase % 0x20_0000 !== 0 || hostBase + this.size > 2 ** host.hostAddressWidth) throw new RangeError(`guest RAM cannot move to 0x${hostBase.toString(16)}`);
    const pages = [...this.pages()].map((p) => ({ gpa: p.addr, data: p.data.slice() }));
    for (const p of pages) {
      for (let i = 0; i < 1024; i += 2) if (p.data[i] !== 0 || p.data[i + 1] !== 0) host.write64(hostBase + p.gpa + i * 4, p.data[i + 1]!, p.data[i]!, 'migration');
      this.hostMemory.zeroPage(this.hostBase + p.gpa);
    }
    this.hostMemory = host;
    this.hostBase = hostBase;
    return pages.length;
  }

  /** The host-physical address behind `gpa`, or -1 when no RAM is there. */
  hpa(gpa: number): number {
    return gpa >= 0 && gpa < this.size ? this.hostBase + gpa : -1;
  }

  /** The guest-physical address of host-physical `hpa`, or -1 when it is not this guest's RAM. */
  gpa(hpa: number): number {
    const g = hpa - this.hostBase;
    return g >= 0 && g < this.size ? g : -1;
  }

  private backing(gpa: number): number {
    if (gpa < 0 || gpa >= this.size) throw new MemoryAccessError(gpa);
    return this.hostBase + gpa;
  }

  get writeCount(): number {
    return this.hostMemory.writeCount;
  }

  get hasHoles(): boolean {
    return this.holes.length > 0;
  }

  addHole(base: number, size: number): void {
    this.holes.push({ base, end: base + size });
  }

  accessible(gpa: number): boolean {
    if (gpa < 0 || gpa >= this.size) return false;
    for (const h of this.holes) if (gpa >= h.base && gpa < h.end) return false;
    return true;
  }

  pageForRead(gpa: number): Uint32Array | undefined {
    return gpa >= 0 && gpa < this.size ? this.hostMemory.pageForRead(this.hostBase + gpa) : undefined;
  }

  readLo(gpa: number): number {
    return gpa >= 0 && gpa < this.size ? this.hostMemory.readLo(this.hostBase + gpa) : 0;
  }

  readHi(gpa: number): number {
    return gpa >= 0 && gpa < this.size ? this.hostMemory.readHi(this.hostBase + gpa) : 0;
  }

  read32(gpa: number): number {
    return gpa >= 0 && gpa < this.size ? this.hostMemory.read32(this.hostBase + gpa) : 0;
  }

  write64(gpa: number, hi: number, lo: number, what = 'memory'): void {
    const hpa = this.backing(gpa);
    if (this.observer !== undefined) this.observer(gpa, this.hostMemory.readHi(hpa), this.hostMemory.readLo(hpa), hi >>> 0, lo >>> 0, what);
    this.hostMemory.write64(hpa, hi, lo, what);
  }

  write32(gpa: number, value: number, what = 'memory'): void {
    const hpa = this.backing(gpa);
    if (this.observer !== undefined) {
      const q = hpa - (hpa & 4);
      const lo = (hpa & 4) === 0 ? value >>> 0 : this.hostMemory.readLo(q);
      const hi = (hpa & 4) === 0 ? this.hostMemory.readHi(q) : value >>> 0;
      this.observer(gpa - (gpa & 4), this.hostMemory.readHi(q), this.hostMemory.readLo(q), hi, lo, what);
    }
    this.hostMemory.write32(hpa, value, what);
  }

  zeroPage(gpa: number): void {
    this.hostMemory.zeroPage(this.backing(gpa - (gpa % PAGE)));
  }

  /** The guest kernel's page allocator: zeroed pages from the table region of guest RAM, freed pages first. */
  allocPage(): number {
    let gpa = this.free.pop();
    if (gpa === undefined) {
      if (this.next + PAGE > this.size) throw new RangeError(`guest memory is full: no room for another table page below 0x${this.size.toString(16)}`);
      gpa = this.next;
      this.next += PAGE;
    }
    this.zeroPage(gpa);
    return gpa;
  }

  allocContiguous(pages: number): number {
    const base = this.next;
    if (base + pages * PAGE > this.size) throw new RangeError(`guest memory is full: no room for ${pages} contiguous pages`);
    this.next = base + pages * PAGE;
    for (let i = 0; i < pages; i++) this.zeroPage(base + i * PAGE);
    return base;
  }

  freePage(gpa: number): void {
    this.zeroPage(gpa);
    this.free.push(gpa);
  }

  *pages(): Generator<{ addr: number; data: Uint32Array }> {
    for (const p of this.hostMemory.pages()) {
      const g = this.gpa(p.addr);
      if (g >= 0) yield { addr: g, data: p.data };
    }
  }

  get populatedPages(): number {
    let n = 0;
    for (const _ of this.pages()) n++;
    return n;
  }

  get bytesUsed(): number {
    return this.populatedPages * PAGE;
  }

  /**
   * Guest RAM's contents are host pages, which the host's snapshot covers; what only the guest has is its
   * page allocator. A VM snapshot is therefore the host memory's snapshot plus this one (vm.ts takes both).
   */
  snapshot(): SnapshotId {
    const id = this.nextSnapshot++;
    this.saved.set(id, { next: this.next, free: this.free.slice() });
    return id;
  }

  restore(id: SnapshotId): void {
    const s = this.saved.get(id);
    if (!s) throw new Error(`unknown guest memory snapshot ${id}`);
    this.next = s.next;
    this.free = s.free.slice();
    for (const k of [...this.saved.keys()]) if (k > id) this.saved.delete(k);
  }

  release(id: SnapshotId): void {
    this.saved.delete(id);
  }
}

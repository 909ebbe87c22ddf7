import type { Domain } from '../driver/domain';
import type { HostIommu } from './host-iommu';
import type { PhysicalMemory } from '../hw/memory';
import type { GuestMemory } from './guest-memory';

/**
 * Shadowing a guest's second-level (IOVA to GPA) tables into a host domain (IOVA to HPA), as QEMU does for a
 * vfio-pci device behind its vIOMMU: on every trapped IOTLB invalidation it walks the guest's tables over the
 * invalidated range (vtd_page_walk) and turns what it finds into VFIO MAP and UNMAP calls, which the host
 * driver carries out on the device's host domain. Caching mode is what makes this work: the guest must
 * invalidate even when it makes an entry present, so the VMM hears of every new mapping.
 */

/** A present leaf of the guest's second-level table. */
export interface GuestLeaf {
  readonly iova: number;
  readonly gpa: number;
  readonly size: number;
  readonly read: boolean;
  readonly write: boolean;
}

const TWO_32 = 0x1_0000_0000;
const SPAN = [0, 0x1000, 0x20_0000, 0x4000_0000, 0x80_0000_0000, 0x1_0000_0000_0000];

/**
 * The present leaves of a second-level table that intersect [start, end), walking only the entries that
 * cover the range (a page-selective invalidation costs a few reads, not a walk of the whole table).
 */
export function guestLeaves(mem: PhysicalMemory, root: number, levels: number, start: number, end: number, out: GuestLeaf[] = []): GuestLeaf[] {
  walk(mem, root, levels, 0, start, end, out);
  return out;
}

function walk(mem: PhysicalMemory, table: number, level: number, base: number, start: number, end: number, out: GuestLeaf[]): void {
  const span = SPAN[level]!;
  const first = Math.max(0, Math.floor((start - base) / span));
  const last = Math.min(511, Math.floor((end - 1 - base) / span));
  for (let i = first; i <= last; i++) {
    const addr = table + i * 8;
    const lo = mem.readLo(addr);
    if ((lo & 3) === 0) continue;
    const hi = mem.readHi(addr);
    const next = (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
    const iova = base + i * span;
    if (level === 1 || (lo & 0x80) !== 0) out.push({ iova, gpa: next - (next % span), size: span, read: (lo & 1) !== 0, write: (lo & 2) !== 0 });
    else walk(mem, next, level - 1, iova, start, end, out);
  }
}

/** One MAP or UNMAP notification of a replay, as QEMU's vtd_page_walk_one traces it (perm 0: unmap). */
export interface ReplayChange {
  readonly iova: number;
  readonly gpa: number;
  readonly size: number;
  /** IOMMU_RO 1, IOMMU_WO 2, IOMMU_RW 3; IOMMU_NONE 0 for an unmap. */
  readonly perm: number;
}

export interface ReplayResult {
  readonly mapped: number;
  readonly unmapped: number;
  readonly changes: readonly ReplayChange[];
  /** Guest mappings whose GPA is not guest RAM: nothing to map them to (QEMU skips them with an error report). */
  readonly outsideRam: number;
}

interface Shadowed {
  readonly hpa: number;
  readonly size: number;
  readonly write: boolean;
}

/** One device's shadow: the host domain and what the VMM has mapped in it, by IOVA. */
export class ShadowSpace {
  private readonly entries = new Map<number, Shadowed>();
  private readonly scratch: GuestLeaf[] = [];
  /**
   * The guest table this shadow follows, as the VMM read it at the last context or PASID-cache invalidation
   * (QEMU caches the context entry the same way): under caching mode a change to it comes with one of those.
   */
  table = { root: 0, levels: 4, did: 0 };

  constructor(
    readonly domain: Domain,
    private readonly host: HostIommu,
    private readonly memory: GuestMemory,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** What the shadow maps at `iova`, if anything (for tests and views). */
  lookup(iova: number): { hpa: number; size: number; write: boolean } | undefined {
    for (const [base, e] of this.entries) if (iova >= base && iova < base + e.size) return { hpa: e.hpa + (iova - base), size: e.size, write: e.write };
    return undefined;
  }

  /**
   * Makes the host domain agree with the guest table over [start, end): unmaps what changed or went away,
   * maps what is new. Returns what it did.
   */
  replay(start: number, end: number): ReplayResult {
    const { root, levels } = this.table;
    const leaves = this.scratch;
    leaves.length = 0;
    guestLeaves(this.memory, root, levels, start, end, leaves);
    let mapped = 0;
    let unmapped = 0;
    let outsideRam = 0;
    const changes: ReplayChange[] = [];
    // What the shadow has in the range and the guest no longer has (or has differently).
    const wanted = new Map<number, GuestLeaf>();
    for (const l of leaves) wanted.set(l.iova, l);
    for (const base of this.inRange(start, end)) {
      const e = this.entries.get(base)!;
      const w = wanted.get(base);
      if (w && w.size === e.size && this.memory.hpa(w.gpa) === e.hpa && w.write === e.write) {
        wanted.delete(base);
        continue;
      }
      this.host.unmap(this.domain, base, e.size);
      this.entries.delete(base);
      unmapped++;
      changes.push({ iova: base, gpa: 0, size: e.size, perm: 0 });
    }
    for (const l of wanted.values()) {
      const hpa = this.memory.hpa(l.gpa);
      if (hpa < 0 || this.memory.hpa(l.gpa + l.size - 1) < 0) {
        outsideRam++;
        continue;
      }
      this.host.map(this.domain, l.iova, hpa, l.size, { read: l.read || l.write, write: l.write });
      this.entries.set(l.iova, { hpa, size: l.size, write: l.write });
      mapped++;
      changes.push({ iova: l.iova, gpa: l.gpa, size: l.size, perm: (l.read || l.write ? 1 : 0) | (l.write ? 2 : 0) });
    }
    return { mapped, unmapped, outsideRam, changes };
  }

  /** Drops every shadow mapping (the guest switched the device away from this table). */
  clear(): number {
    let n = 0;
    for (const [base, e] of this.entries) {
      this.host.unmap(this.domain, base, e.size);
      n++;
    }
    this.entries.clear();
    return n;
  }

  private inRange(start: number, end: number): number[] {
    const out: number[] = [];
    // A small range is probed at each possible leaf base; a large one scans the shadow's entries.
    if (end - start <= 512 * 0x1000) {
      for (let a = start - (start % 0x1000); a < end; a += 0x1000) if (this.entries.has(a)) out.push(a);
      for (const big of [0x20_0000, 0x4000_0000]) {
        const b = start - (start % big);
        if (b !== start && this.entries.get(b)?.size === big) out.push(b);
      }
      return out;
    }
    for (const [base, e] of this.entries) if (base < end && base + e.size > start) out.push(base);
    return out;
  }
}

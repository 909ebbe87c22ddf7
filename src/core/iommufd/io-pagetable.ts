import { emptyGather } from '../driver/dirty';
import type { Domain } from '../driver/domain';
import { fail, KernelError } from '../driver/errors';
import type { IommuKernel } from '../driver/kernel';
import { HPAGE_SIZE, PAGE_SIZE, U64_MAX, ULONG_MAX } from './uapi';
import type { IovaBitmap } from './iova-bitmap';
import { firstIn, holes, type IovaRange, lowestSetBit, roundupPowerOfTwo, usedSpans } from './intervals';
import type { UserPages } from './user-pages';

/**
 * The IO address space behind an IOAS (drivers/iommu/iommufd/io_pagetable.c): areas of user memory at
 * IOVAs, reserved ranges nothing may be mapped in (domain apertures, a device's MSI window, test
 * reservations), allowed ranges that confine kernel-chosen IOVAs, the IOVA alignment the attached domains
 * force, and the paging domains that mirror every area. Errors are the kernel's, in the kernel's order.
 */

/** Every VT-d domain takes 4 KiB pages, so any domain in an IOAS forces 4 KiB IOVA alignment. */
const DOMAIN_MIN_PAGE = 4096n;
const PAGE = Number(PAGE_SIZE);

export interface Area extends IovaRange {
  readonly pages: UserPages;
  /** Offset of the area's first byte from `pages.base` (its page offset is the user VA's page offset). */
  readonly startByte: bigint;
  readonly read: boolean;
  readonly write: boolean;
  /** Physical pages pinned for the domains, from the first domain fill until the last domain leaves. */
  domainPins: number[] | undefined;
  /** Pages pinned by in-kernel accesses inside this area (`num_accesses`). */
  accessPins: number;
}

export interface ReservedRange extends IovaRange {
  /** Who reserved it: a domain (aperture), a device (its reserved regions), or the test reservation. */
  readonly owner: unknown;
}

/** A slice of user pages to map: IOAS_MAP has one, IOAS_COPY one per source area it spans. */
export interface PagesSlice {
  readonly pages: UserPages;
  readonly startByte: bigint;
  readonly length: bigint;
}

/** An in-kernel user of the IOAS that pins pages (iommufd_access) and must let go when they are unmapped. */
export interface AccessUser {
  /** 1, or PAGE_SIZE for an access that pins pages: it joins the IOAS's alignment. */
  readonly iovaAlignment: bigint;
  unmapNotify(iova: bigint, length: bigint): void;
}

export class IoPagetable {
  readonly areas: Area[] = [];
  readonly reserved: ReservedRange[] = [];
  allowed: IovaRange[] = [];
  readonly domains: Domain[] = [];
  readonly accesses = new Set<AccessUser>();
  disableLargePages = false;
  iovaAlignment = 1n;

  constructor(private readonly kernel: IommuKernel) {}

  // ---- IOVA choice and checks ----

  /** iopt_check_iova: a fixed IOVA must be aligned, must not wrap, and must land on free, unreserved space. */
  checkIova(iova: bigint, length: bigint): void {
    if (iova & (this.iovaAlignment - 1n)) fail('EINVAL', `IOVA 0x${iova.toString(16)} is not aligned to the IOAS alignment 0x${this.iovaAlignment.toString(16)}`);
    const last = iova + length - 1n;
    if (last > ULONG_MAX) fail('EOVERFLOW', `IOVA 0x${iova.toString(16)} + 0x${length.toString(16)} wraps`);
    const r = firstIn(this.reserved, iova, last);
    if (r) fail('EINVAL', `[0x${iova.toString(16)}, 0x${last.toString(16)}] meets the reserved range [0x${r.start.toString(16)}, 0x${r.last.toString(16)}]`);
    const a = firstIn(this.areas, iova, last);
    if (a) fail('EEXIST', `[0x${iova.toString(16)}, 0x${last.toString(16)}] overlaps the area at 0x${a.start.toString(16)}`);
  }

  /**
   * iopt_alloc_iova: the first hole (inside the allowed ranges, if any) that fits, aligned to the smaller
   * of the length rounded up to a power of two and the alignment the user address already has (capped at
   * the THP size), keeping the user address's page offset. IOVA 0 is never chosen.
   */
  allocIova(addr: bigint, length: bigint): bigint {
    const pageOffset = addr % PAGE_SIZE;
    if (length === 0n || length >= ULONG_MAX / 2n) fail('EOVERFLOW', `length 0x${length.toString(16)} cannot be placed`);
    const fromLength = roundupPowerOfTwo(length);
    let align = addr === 0n ? fromLength : fromLength < lowestSetBit(addr) ? fromLength : lowestSetBit(addr);
    if (align >= HPAGE_SIZE) align = HPAGE_SIZE;
    if (align < this.iovaAlignment) fail('EINVAL', `the user address 0x${addr.toString(16)} and length 0x${length.toString(16)} allow alignment 0x${align.toString(16)}, below the IOAS alignment 0x${this.iovaAlignment.toString(16)}`);
    const fit = (start: bigint, last: bigint): bigint | undefined => {
      const up = start + align - 1n;
      if (up > ULONG_MAX) return undefined;
      const aligned = (up & ~(align - 1n)) | pageOffset;
      return aligned >= last || last - aligned < length - 1n ? undefined : aligned;
    };
    const lo = PAGE_SIZE;
    const hi = ULONG_MAX - PAGE_SIZE;
    const allowed = this.allowed.length ? usedSpans(this.allowed, lo, hi) : [{ start: lo, last: hi }];
    for (const span of allowed) {
      const from = fit(span.start, span.last);
      if (from === undefined) continue;
      for (const h of holes([...this.reserved, ...this.areas], from, span.last)) {
        const at = fit(h.start, h.last);
        if (at !== undefined) return at;
      }
    }
    return fail('ENOSPC', `no free IOVA range of 0x${length.toString(16)} bytes at alignment 0x${align.toString(16)}`);
  }

  // ---- map, unmap, copy ----

  /**
   * iopt_map_pages: areas for the slices at a fixed or kernel-chosen IOVA, then every domain filled. On any
   * failure the IOAS is left as it was. Returns the IOVA.
   */
  mapPages(slices: readonly PagesSlice[], length: bigint, iova: bigint | undefined, prot: { read: boolean; write: boolean }): bigint {
    if (length === 0n || length & (this.iovaAlignment - 1n)) fail('EINVAL', `length 0x${length.toString(16)} is zero or not a multiple of the IOAS alignment 0x${this.iovaAlignment.toString(16)}`);
    let dst: bigint;
    if (iova === undefined) {
      const first = slices[0]!;
      dst = this.allocIova(first.pages.base + first.startByte, length);
    } else {
      this.checkIova(iova, length);
      dst = iova;
    }
    const created: Area[] = [];
    try {
      let at = dst;
      for (const s of slices) {
        created.push(this.insertArea(s, at, prot));
        at += s.length;
      }
      for (const a of created) this.fillArea(a);
    } catch (e) {
      for (const a of created) this.removeArea(a);
      throw e;
    }
    return dst;
  }

  /** iopt_insert_area. */
  private insertArea(s: PagesSlice, iova: bigint, prot: { read: boolean; write: boolean }): Area {
    if (prot.write && !s.pages.writable) fail('EPERM', 'a writeable mapping of pages that were mapped read-only');
    if ((s.startByte % PAGE_SIZE) & (this.iovaAlignment - 1n)) fail('EINVAL', `user address page offset 0x${(s.startByte % PAGE_SIZE).toString(16)} is not aligned to the IOAS alignment 0x${this.iovaAlignment.toString(16)}`);
    const last = iova + s.length - 1n;
    if (last > ULONG_MAX) fail('EOVERFLOW', 'the area wraps');
    const area: Area = { start: iova, last, pages: s.pages, startByte: s.startByte, read: prot.read, write: prot.write, domainPins: undefined, accessPins: 0 };
    this.areas.push(area);
    this.areas.sort((a, b) => (a.start < b.start ? -1 : 1));
    return area;
  }

  private removeArea(area: Area): void {
    const i = this.areas.indexOf(area);
    if (i < 0) return;
    this.unfillArea(area);
    this.areas.splice(i, 1);
  }

  /**
   * iopt_unmap_iova_range: removes the areas inside [start, last], one after the other. An area that sticks
   * out of the range is ENOENT (areas are never split); areas removed before it stay removed, as in the
   * kernel. Nothing at all in the range is ENOENT. Returns the bytes unmapped (whole areas only).
   */
  unmapRange(start: bigint, last: bigint): bigint {
    let unmapped = 0n;
    let from = start;
    for (;;) {
      const area = from > last ? undefined : firstIn(this.areas, from, last);
      if (!area) break;
      if (area.start < start || area.last > last) fail('ENOENT', `the area [0x${area.start.toString(16)}, 0x${area.last.toString(16)}] is not inside [0x${start.toString(16)}, 0x${last.toString(16)}]; areas are unmapped whole`);
      if (area.accessPins > 0) {
        for (const a of [...this.accesses]) a.unmapNotify(area.start, area.last - area.start + 1n);
        if (area.accessPins > 0) fail('EBUSY', `an access still pins pages of the area at 0x${area.start.toString(16)}`);
      }
      this.removeArea(area);
      unmapped += area.last - area.start + 1n;
      from = area.last + 1n;
    }
    if (unmapped === 0n) fail('ENOENT', `nothing is mapped in [0x${start.toString(16)}, 0x${last.toString(16)}]`);
    return unmapped;
  }

  /** iopt_unmap_all: like unmapping [0, ULONG_MAX], but an empty IOAS is not an error. */
  unmapAll(): bigint {
    if (this.areas.length === 0) return 0n;
    return this.unmapRange(0n, ULONG_MAX);
  }

  /** iopt_get_pages (IOAS_COPY's source): slices of the areas that cover [iova, iova + length) without a gap. */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    if (length === 0n) fail('EINVAL', 'copy of zero bytes');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) fail('EOVERFLOW', 'the source range wraps');
    return this.contiguousAreas(iova, last).map(({ area, from, to }) => ({ pages: area.pages, startByte: area.startByte + (from - area.start), length: to - from + 1n }));
  }

  // ---- domains ----

  /** Page index range of the user pages an area spans. */
  private pageSpan(area: Area): { first: number; count: number } {
    const first = Number(area.startByte / PAGE_SIZE);
    const lastPage = Number((area.startByte + (area.last - area.start)) / PAGE_SIZE);
    return { first, count: lastPage - first + 1 };
  }

  /** Pins the area's pages (once, whatever the number of domains) and maps it into every domain. */
  private fillArea(area: Area): void {
    if (this.domains.length === 0) return;
    const { first, count } = this.pageSpan(area);
    area.domainPins = area.pages.pinRange(first, count);
    const done: Domain[] = [];
    try {
      for (const d of this.domains) {
        this.mapAreaInto(d, area);
        done.push(d);
      }
    } catch (e) {
      for (const d of done) this.kernel.unmap(d, Number(area.start), Number(area.last - area.start + 1n));
      area.pages.unpinRange(first, count);
      area.domainPins = undefined;
      throw e;
    }
  }

  private unfillArea(area: Area): void {
    if (!area.domainPins) return;
    for (const d of this.domains) this.kernel.unmap(d, Number(area.start), Number(area.last - area.start + 1n));
    const { first, count } = this.pageSpan(area);
    area.pages.unpinRange(first, count);
    area.domainPins = undefined;
  }

  /**
   * iommu_map of one area: physically contiguous runs go in one call (so the driver can use large pages),
   * unless large pages are disabled for this IOAS. A failure unmaps what this call mapped.
   */
  private mapAreaInto(domain: Domain, area: Area): void {
    // The driver refuses a leaf with neither permission (IOAS_COPY asks for neither unless told) and, in a
    // nest parent, a read-only one (erratum 772415): kernel.map fails before writing anything.
    const pas = area.domainPins!;
    const base = Number(area.start);
    let i = 0;
    try {
      while (i < pas.length) {
        let j = i + 1;
        if (!this.disableLargePages) while (j < pas.length && pas[j] === pas[j - 1]! + PAGE) j++;
        this.kernel.map(domain, base + i * PAGE, pas[i]!, (j - i) * PAGE, { read: area.read, write: area.write });
        i = j;
      }
    } catch (e) {
      if (i > 0) this.kernel.unmap(domain, base, i * PAGE);
      throw e;
    }
  }

  /**
   * iopt_table_add_domain: the domain's page size raises the IOVA alignment (every area must already
   * satisfy it), its aperture reserves what lies outside, then every area is pinned and mapped into it.
   */
  addDomain(domain: Domain): void {
    const align = this.iovaAlignment > DOMAIN_MIN_PAGE ? this.iovaAlignment : DOMAIN_MIN_PAGE;
    if (align !== this.iovaAlignment) this.checkAlignment(align);
    const apertureEnd = (1n << BigInt(domain.addressWidth)) - 1n;
    if (apertureEnd !== ULONG_MAX) this.reserve(apertureEnd + 1n, ULONG_MAX, domain);
    const filled: Area[] = [];
    this.domains.push(domain);
    try {
      for (const a of this.areas) {
        if (a.domainPins) this.mapAreaInto(domain, a);
        else this.fillArea(a);
        filled.push(a);
      }
    } catch (e) {
      this.domains.pop();
      for (const a of filled) {
        this.kernel.unmap(domain, Number(a.start), Number(a.last - a.start + 1n));
        if (this.domains.length === 0) this.unpinForDomains(a);
      }
      this.removeReserved(domain);
      throw e;
    }
    this.iovaAlignment = align;
  }

  /** iopt_table_remove_domain: unmap everything from it, unpin if it was the last, drop its aperture. */
  removeDomain(domain: Domain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    for (const a of this.areas) if (a.domainPins) this.kernel.unmap(domain, Number(a.start), Number(a.last - a.start + 1n));
    this.domains.splice(i, 1);
    if (this.domains.length === 0) for (const a of this.areas) this.unpinForDomains(a);
    this.removeReserved(domain);
    this.recalculateAlignment();
  }

  private unpinForDomains(area: Area): void {
    if (!area.domainPins) return;
    const { first, count } = this.pageSpan(area);
    area.pages.unpinRange(first, count);
    area.domainPins = undefined;
  }

  // ---- reserved and allowed ranges, alignment ----

  /** iopt_reserve_iova: nothing mapped and nothing allowed may be reserved. */
  reserve(start: bigint, last: bigint, owner: unknown): void {
    const a = firstIn(this.areas, start, last);
    if (a) fail('EADDRINUSE', `[0x${start.toString(16)}, 0x${last.toString(16)}] cannot be reserved: the area at 0x${a.start.toString(16)} is mapped there`);
    const al = firstIn(this.allowed, start, last);
    if (al) fail('EADDRINUSE', `[0x${start.toString(16)}, 0x${last.toString(16)}] cannot be reserved: it meets the allowed range [0x${al.start.toString(16)}, 0x${al.last.toString(16)}]`);
    this.reserved.push({ start, last, owner });
  }

  removeReserved(owner: unknown): void {
    for (let i = this.reserved.length - 1; i >= 0; i--) if (this.reserved[i]!.owner === owner) this.reserved.splice(i, 1);
  }

  /** iopt_set_allow_iova: the new set replaces the old one only if no reserved range meets it. */
  setAllowed(ranges: readonly IovaRange[]): void {
    for (const r of ranges) {
      const res = firstIn(this.reserved, r.start, r.last);
      if (res) fail('EADDRINUSE', `allowed range [0x${r.start.toString(16)}, 0x${r.last.toString(16)}] meets the reserved range [0x${res.start.toString(16)}, 0x${res.last.toString(16)}]`);
    }
    this.allowed = ranges.map((r) => ({ start: r.start, last: r.last }));
  }

  /** The usable IOVA ranges IOAS_IOVA_RANGES reports: the holes of the reserved ranges. */
  usableRanges(): IovaRange[] {
    return holes(this.reserved, 0n, ULONG_MAX);
  }

  /** iopt_check_iova_alignment: every area's IOVA, length and page offset must be aligned. */
  private checkAlignment(align: bigint): void {
    const mask = align - 1n;
    for (const a of this.areas) {
      if (a.start & mask || (a.last - a.start + 1n) & mask || (a.startByte % PAGE_SIZE) & mask) {
        fail('EADDRINUSE', `the area at 0x${a.start.toString(16)} is not aligned to 0x${align.toString(16)}`);
      }
    }
  }

  /** iopt_calculate_iova_alignment. */
  recalculateAlignment(): void {
    let align = this.disableLargePages ? PAGE_SIZE : 1n;
    if (this.domains.length && DOMAIN_MIN_PAGE > align) align = DOMAIN_MIN_PAGE;
    for (const a of this.accesses) if (a.iovaAlignment > align) align = a.iovaAlignment;
    if (align > this.iovaAlignment) this.checkAlignment(align);
    this.iovaAlignment = align;
  }

  /** iopt_disable_large_pages (OPTION HUGE_PAGES = 0). */
  disableLarge(): void {
    if (this.disableLargePages) return;
    if (this.domains.length && this.areas.length) fail('EINVAL', 'large pages cannot be disabled while domains hold mappings');
    this.disableLargePages = true;
    try {
      this.recalculateAlignment();
    } catch (e) {
      this.disableLargePages = false;
      throw e;
    }
  }

  /** iopt_enable_large_pages (OPTION HUGE_PAGES = 1). */
  enableLarge(): void {
    this.disableLargePages = false;
    this.recalculateAlignment();
  }

  /** iopt_area_contig_iter: the areas covering [iova, last] back to back, each with the part of it in the range. */
  contiguousAreas(iova: bigint, last: bigint): { area: Area; from: bigint; to: bigint }[] {
    const out: { area: Area; from: bigint; to: bigint }[] = [];
    let cur = iova;
    while (cur <= last) {
      const area = this.areas.find((a) => a.start <= cur && cur <= a.last);
      if (!area) fail('ENOENT', `nothing is mapped at IOVA 0x${cur.toString(16)}`);
      const to = area.last < last ? area.last : last;
      out.push({ area, from: cur, to });
      cur = to + 1n;
    }
    return out;
  }

  // ---- dirty tracking ----

  /**
   * iopt_set_dirty_tracking: EOPNOTSUPP for a domain without dirty ops. Turning tracking on first clears
   * the D bits every area's leaves hold (iopt_clear_dirty_data: a clear-only harvest per area, then one
   * IOTLB sync of what was found), so that the first bitmap holds only what the devices wrote since; then
   * the driver sets SSADE. Turning it off only clears SSADE.
   */
  setDirtyTracking(domain: Domain, enable: boolean): void {
    if (!domain.dirtyOps) fail('EOPNOTSUPP', `${domain.name} was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING`);
    if (enable) {
      const gather = emptyGather();
      for (const a of this.areas) this.kernel.readAndClearDirty(domain, Number(a.start), Number(a.last - a.start + 1n), { clearOnly: true, gather });
      this.kernel.iotlbSync(domain, gather);
    }
    this.kernel.setDirtyTracking(domain, enable);
  }

  /**
   * iopt_read_and_clear_dirty_data (IOMMU_HWPT_GET_DIRTY_BITMAP). iommufd_check_iova_range first: the range
   * must not wrap (EOVERFLOW) and must start and end on the IOAS alignment and on `pageSize`, which must not
   * be 0 (EINVAL); then a domain without dirty ops is EOPNOTSUPP. The driver then harvests each area that
   * covers the range contiguously from its start, into the bitmap, and unless NO_CLEAR the IOTLB is synced
   * over what was found. As in 6.17, what the harvest itself returns is dropped (iommu_read_and_clear_dirty
   * ignores iova_bitmap_for_each's result): a gap in the areas ends the walk there, and tracking being off
   * makes the driver refuse, and both still return success with whatever bits were set.
   */
  readAndClearDirtyData(domain: Domain, noClear: boolean, range: { iova: bigint; length: bigint; pageSize: bigint }, bitmap: () => IovaBitmap): void {
    const { iova, length, pageSize } = range;
    const last = iova + ((length - 1n) & U64_MAX);
    if (last > U64_MAX) fail('EOVERFLOW', `0x${iova.toString(16)} + 0x${length.toString(16)} wraps`);
    const end = (last + 1n) & U64_MAX;
    const align = this.iovaAlignment;
    if (iova & (align - 1n) || end & (align - 1n)) fail('EINVAL', `[0x${iova.toString(16)}, 0x${last.toString(16)}] does not start and end on the IOAS alignment 0x${align.toString(16)}`);
    if (pageSize === 0n) fail('EINVAL', 'page_size is 0');
    if (iova & (pageSize - 1n) || end & (pageSize - 1n)) fail('EINVAL', `[0x${iova.toString(16)}, 0x${last.toString(16)}] does not start and end on page_size 0x${pageSize.toString(16)}`);
    if (!domain.dirtyOps) fail('EOPNOTSUPP', `${domain.name} was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING`);
    const bits = bitmap();
    const gather = emptyGather();
    const record = (at: number, size: number) => bits.set(BigInt(at), BigInt(size));
    try {
      // __iommu_read_and_clear_dirty: iopt_for_each_contig_area over [iova, iova + length - 1].
      const lastIova = (iova + length - 1n) & U64_MAX;
      let cur = iova;
      for (;;) {
        const area = this.areas.find((a) => a.start <= cur && cur <= a.last);
        if (!area) break;
        const to = area.last < lastIova ? area.last : lastIova;
        this.kernel.readAndClearDirty(domain, Number(cur), Number(to - cur + 1n), { noClear, record, gather });
        if (lastIova <= area.last) break;
        cur = area.last + 1n;
      }
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
    }
    if (!noClear) this.kernel.iotlbSync(domain, gather);
  }

  /** iopt_add_access / iopt_remove_access. */
  addAccess(a: AccessUser): void {
    this.accesses.add(a);
    try {
      this.recalculateAlignment();
    } catch (e) {
      this.accesses.delete(a);
      throw e;
    }
  }

  removeAccess(a: AccessUser): void {
    this.accesses.delete(a);
    this.recalculateAlignment();
  }
}

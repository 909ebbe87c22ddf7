import type { DeviceInfo } from './device';
import type { CacheTag, CacheTagType, Domain } from './domain';
import type { IntelIommu } from './intel-iommu';
import { GCMD } from '../vtd/registers';
import type { VtdUnit } from '../vtd/unit';
import { type Desc, Descs, FULL_RANGE_MASK, type SubmitResult } from './qi';

/**
 * Cache tags and the flushes built from them, as Linux's drivers/iommu/intel/cache.c does it: a domain
 * keeps one tag per (IOMMU, DID, PASID) for the IOTLB and one per (device, DID, PASID) for device TLBs; a
 * range flush walks the tags and emits, per tag, the descriptor the domain's kind needs.
 */

/** What a caller may deliberately leave out, to reproduce missing-invalidation bugs. */
export interface FlushOptions {
  /** true: issue nothing; 'device-tlb': issue the IOTLB flushes but no device-TLB invalidation. */
  readonly skipInvalidation?: boolean | 'device-tlb';
}

/** IOTLB tags are per (IOMMU, DID, PASID); device-TLB tags per device as well. */
function tagKey(type: CacheTagType, iommu: IntelIommu, did: number, pasid: number, device: DeviceInfo): string {
  const perDevice = type === 'devtlb' || type === 'nesting_devtlb';
  return `${type}:${iommu.seq}:${did}:${pasid}${perDevice ? `:${device.sid}` : ''}`;
}

export function assignTag(domain: Domain, type: CacheTagType, iommu: IntelIommu, did: number, pasid: number, device: DeviceInfo): void {
  const key = tagKey(type, iommu, did, pasid, device);
  const t = domain.tags.get(key);
  if (t) t.users++;
  else domain.tags.set(key, { type, iommu, did, pasid, device, users: 1 });
}

export function unassignTag(domain: Domain, type: CacheTagType, iommu: IntelIommu, did: number, pasid: number, device: DeviceInfo): void {
  const key = tagKey(type, iommu, did, pasid, device);
  const t = domain.tags.get(key);
  if (t && --t.users === 0) domain.tags.delete(key);
}

/** Tags in flush order: per IOMMU, IOTLB-class tags before device-TLB tags, each in assignment order. */
function orderedTags(domain: Domain): CacheTag[] {
  const tlb: CacheTag[] = [];
  const dev: CacheTag[] = [];
  for (const t of domain.tags.values()) (t.type === 'iotlb' || t.type === 'nesting_iotlb' ? tlb : dev).push(t);
  const iommus = [...new Set([...tlb, ...dev].map((t) => t.iommu))];
  return iommus.flatMap((i) => [...tlb.filter((t) => t.iommu === i), ...dev.filter((t) => t.iommu === i)]);
}

/**
 * Linux `calculate_psi_aligned_address`: the smallest naturally aligned power-of-two block of 4 KiB pages
 * that covers [start, end] (inclusive), as (address, mask).
 */
export function psiAligned(start: number, end: number): { addr: number; mask: number } {
  const first = Math.floor(start / 4096);
  const last = Math.floor(end / 4096);
  const pages = last - first + 1;
  let mask = Math.ceil(Math.log2(pages));
  if (2 ** mask < pages) mask++;
  if (first % 2 ** mask !== 0) {
    // Grow the mask until both ends fall in the same aligned block.
    while (mask < FULL_RANGE_MASK && Math.floor(first / 2 ** mask) !== Math.floor(last / 2 ** mask)) mask++;
  }
  return { addr: Math.floor(first / 2 ** mask) * 2 ** mask * 4096, mask };
}

const U64_MASK = (1n << 64n) - 1n;

/**
 * `calculate_psi_aligned_address` exactly, in the kernel's unsigned 64-bit arithmetic, for ranges a caller
 * hands in unchecked (a nested domain's invalidation entries): an empty or wrapped range (end < start)
 * computes as the kernel computes it. `__roundup_pow_of_two(0)` shifts by 64, which is undefined in C;
 * x86 masks the count to 0, so it yields 1 (one page at `start`). [0, ULONG_MAX] is `cache_tag_flush_range`'s
 * "everything" (mask 52). Cold path: BigInt is fine here.
 */
export function linuxPsiAligned(start: bigint, end: bigint): { addr: number; mask: number } {
  if (start === 0n && end === U64_MASK) return { addr: 0, mask: FULL_RANGE_MASK };
  const size = (end - start + 1n) & U64_MASK;
  const pages = ((((start & 0xfffn) + size) & U64_MASK) + 0xfffn & U64_MASK & ~0xfffn) >> 12n;
  const fls = (x: bigint) => x.toString(2).length - (x === 0n ? 1 : 0);
  const aligned = 1n << BigInt(fls((pages - 1n) & U64_MASK) & 63);
  const bitmask = aligned - 1n;
  let mask = fls(aligned) - 1;
  const pfn = start >> 12n;
  if (bitmask & pfn) {
    const endPfn = (pfn + pages - 1n) & U64_MASK;
    const shared = ~(pfn ^ endPfn) & ~bitmask & U64_MASK;
    mask = shared ? shared.toString(2).length - shared.toString(2).lastIndexOf('1') - 1 : FULL_RANGE_MASK;
  }
  const align = (4096n << BigInt(mask)) & U64_MASK;
  return { addr: Number(start & ~((align - 1n) & U64_MASK) & U64_MASK), mask };
}

/** The descriptors `cache_tag_flush_range` issues for one domain, grouped per IOMMU in tag order. */
export function rangeFlushDescriptors(domain: Domain, start: number, end: number, ih: boolean, options: FlushOptions = {}): Map<IntelIommu, Desc[]> {
  const all = start === 0 && end >= 2 ** 64 - 1;
  const { addr, mask } = all ? { addr: 0, mask: FULL_RANGE_MASK } : psiAligned(start, end);
  return psiFlushDescriptors(domain, addr, mask, ih, options);
}

/** The descriptors `cache_tag_flush_range` issues once it has the aligned address and mask. */
export function psiFlushDescriptors(domain: Domain, addr: number, mask: number, ih: boolean, options: FlushOptions = {}): Map<IntelIommu, Desc[]> {
  const out = new Map<IntelIommu, Desc[]>();
  const add = (iommu: IntelIommu, d: Desc) => {
    const list = out.get(iommu) ?? [];
    list.push(d);
    out.set(iommu, list);
  };
  for (const tag of orderedTags(domain)) {
    const unit = tag.iommu.unit;
    switch (tag.type) {
      case 'iotlb':
      case 'nesting_iotlb':
        if (domain.pasidBasedInvalidation && tag.type === 'iotlb') {
          add(tag.iommu, mask >= FULL_RANGE_MASK ? Descs.piotlbAll(tag.did, tag.pasid) : Descs.piotlbPsi(tag.did, tag.pasid, addr, mask, ih));
        } else if (!unit.cap.psi || mask > unit.cap.mamv) {
          add(tag.iommu, Descs.iotlbDsi(unit, tag.did));
        } else {
          add(tag.iommu, Descs.iotlbPsi(unit, tag.did, addr, mask, ih));
        }
        break;
      case 'devtlb':
      case 'nesting_devtlb': {
        if (options.skipInvalidation === 'device-tlb' || !unit.translationEnabled) break;
        // A nested child's device TLB holds combined translations: the driver cannot tell which an S2 change hit.
        const [a, m] = tag.type === 'nesting_devtlb' ? [0, FULL_RANGE_MASK] : [addr, mask];
        add(tag.iommu, devTlbDesc(tag.device, tag.pasid, a, m));
        break;
      }
    }
  }
  return out;
}

export function devTlbDesc(device: DeviceInfo, pasid: number, addr: number, mask: number): Desc {
  const ep = device.endpoint;
  const pfsid = device.iommu.unit.ecap.dit ? device.sid : 0;
  return pasid === 0 ? Descs.devTlb(device.sid, pfsid, ep.atsQueueDepth, addr, mask) : Descs.pasidDevTlb(device.sid, pfsid, pasid, ep.atsQueueDepth, addr, mask);
}

/** Submits descriptors in batches of at most 16 per IOMMU, each batch followed by its wait (qi_batch). */
export function submitBatches(batches: Map<IntelIommu, Desc[]>): SubmitResult {
  let result: SubmitResult = 'ok';
  for (const [iommu, descs] of batches) {
    for (let i = 0; i < descs.length; i += 16) {
      const r = iommu.qi.submit(descs.slice(i, i + 16));
      if (r !== 'ok') result = r;
    }
  }
  return result;
}

/** `cache_tag_flush_range(domain, start, end, ih)`, end inclusive. */
export function flushRange(domain: Domain, start: number, end: number, ih: boolean, options: FlushOptions = {}): SubmitResult {
  if (options.skipInvalidation === true) return 'ok';
  return submitBatches(rangeFlushDescriptors(domain, start, end, ih, options));
}

/** `cache_tag_flush_all`. */
export function flushAll(domain: Domain, options: FlushOptions = {}): SubmitResult {
  return flushRange(domain, 0, 2 ** 64 - 1, false, options);
}

/**
 * `cache_tag_flush_range_np`, after a not-present to present change (map), for a domain with iotlb_sync_map.
 * Per tag: on a unit without caching mode, or for a first-stage domain, only a write-buffer flush
 * (iommu_flush_write_buffer: GCMD.WBF, and only where CAP.RWBF asks for it); else an IOTLB PSI (or DSI
 * without PSI or past CAP.MAMV) for IOTLB and nesting IOTLB tags, IH = 0, and never a device-TLB
 * invalidation. The range goes through calculate_psi_aligned_address without cache_tag_flush_range's
 * "everything" case: an empty range (a map of size 0) computes to one page at `start`.
 */
export function flushRangeNp(domain: Domain, start: number, end: number, options: FlushOptions = {}): SubmitResult {
  if (options.skipInvalidation === true) return 'ok';
  const { addr, mask } = end < start ? { addr: start - (start % 4096), mask: 0 } : psiAligned(start, end);
  const out = new Map<IntelIommu, Desc[]>();
  for (const tag of orderedTags(domain)) {
    const unit = tag.iommu.unit;
    if (!unit.cap.cm || domain.stage === 'first') {
      flushWriteBuffer(unit);
      continue;
    }
    if (tag.type !== 'iotlb' && tag.type !== 'nesting_iotlb') continue;
    const d = !unit.cap.psi || mask > unit.cap.mamv ? Descs.iotlbDsi(unit, tag.did) : Descs.iotlbPsi(unit, tag.did, addr, mask, false);
    out.set(tag.iommu, [...(out.get(tag.iommu) ?? []), d]);
  }
  return submitBatches(out);
}

/** The GCMD bits that stay set while their feature is on (iommu->gcmd: TE, QIE, IRE). */
const GCMD_PERSISTENT = (1 << GCMD.TE) | (1 << GCMD.QIE) | (1 << GCMD.IRE);

/** iommu_flush_write_buffer: GCMD.WBF, only where CAP.RWBF asks for write-buffer flushing. */
export function flushWriteBuffer(unit: VtdUnit): void {
  if (unit.cap.rwbf) unit.writeRegister('GCMD', ((unit.readRegister('GSTS').lo & GCMD_PERSISTENT) | (1 << GCMD.WBF)) >>> 0);
}

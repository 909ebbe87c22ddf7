import { hexPad } from '../u64';
import { pasidEntryAddress } from '../vtd/tables';
import { hex64 } from '../vtd/walk';
import { type IotlbGather, slEntryAt } from './dirty';
import { domainMapping, leafAttributes, WRITE_ONLY_LEAVES } from './dma-pte';
import type { Domain } from './domain';
import { fail } from './errors';
import { devTlbDesc, type FlushOptions, flushRange, flushRangeNp } from './flush';
import { gatherAddPage, iommuPgsize, resetGather, unmapGather, type UnmapGather } from './iommu-map';
import { isAtLeast } from './log';
import { IOMMU_NO_PASID } from './pasid-alloc';
import { Descs, FULL_RANGE_MASK } from './qi';
import type { KernelState } from './state';

/**
 * iommu_map's prot: IOMMU_READ and IOMMU_WRITE, each off unless given. The VT-d driver gives leaves no
 * execute permission and ignores IOMMU_NOEXEC and IOMMU_CACHE (snooping comes from the domain).
 */
export interface Prot {
  readonly read?: boolean;
  readonly write?: boolean;
}

/** A 64-bit hex string without its leading zeros, as %llx prints it. */
function trimHex(h: string): string {
  return h.replace(/^0+(?=.)/, '');
}

/** Map and unmap: iommu_map and iommu_unmap over the VT-d driver's map_pages and unmap_pages, and cache coherency. */
export class Mapping {
  constructor(private readonly k: KernelState) {}

  /**
   * iommu_map (6.17): the core's checks (a domain without a page table is EINVAL; an address or size that is
   * not 4 KiB aligned is EINVAL with its "unaligned" line; size 0 maps nothing and succeeds), then the range
   * in iommu_pgsize chunks, each an intel_iommu_map_pages call, then iotlb_sync_map over the whole range
   * (intel_iommu_iotlb_sync_map: cache_tag_flush_range_np, only for a domain allocated with iotlb_sync_map).
   * A chunk that fails has the chunks before it unmapped again, with their flushes (__iommu_map's unroll).
   * An entry already mapped is kept, with the kernel's pr_crit line and WARN, and the map succeeds.
   */
  map(domain: Domain, iova: number, paddr: number, size: number, prot: Prot = { read: true, write: true }, options: FlushOptions = {}): void {
    if (domain.type !== 'paging') fail('EINVAL', `${domain.name} (${domain.type}) has no kernel-managed page table`);
    if (iova % 4096 || paddr % 4096 || size % 4096) {
      this.k.log.err(`iommu: unaligned: iova 0x${iova.toString(16)} pa 0x${hexPad(paddr, 16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} -> 0x${paddr.toString(16)} is not 4 KiB aligned`);
    }
    let at = iova;
    let pa = paddr;
    try {
      while (at < iova + size) {
        const { pgsize, count } = iommuPgsize(domain.pgsizes, at, pa, iova + size - at);
        this.intelMap(domain, at, pa, pgsize * count, prot, options);
        at += pgsize * count;
        pa += pgsize * count;
      }
    } catch (e) {
      if (at > iova) this.unmap(domain, iova, at - iova, options);
      throw e;
    }
    if (domain.iotlbSyncMap) flushRangeNp(domain, iova, iova + size - 1, options);
  }

  /**
   * intel_iommu_map then __domain_mapping (6.12) for one chunk: beyond the domain's address width is EFAULT
   * with its line; beyond what its table levels reach (domain_pfn_supported), a leaf with neither read nor
   * write, and a read-only leaf in a nest parent (VT-d erratum 772415 on Sapphire Rapids, applied to every
   * IOMMU, with its ratelimited line) are EINVAL. The leaf gets what IOMMU_READ and IOMMU_WRITE ask for, SNP
   * once a second-stage domain enforces cache coherency (set_pte_snp), and DMA_FL_PTE_PRESENT, which is
   * DMA_PTE_READ's bit: a write-only second-stage leaf is readable until 6.16 (WRITE_ONLY_LEAVES). Then the
   * kernel's loop (dma-pte.ts): small-page tables and superpages a superpage replaces are freed and flushed,
   * one cache_tag_flush_range per replaced entry (switch_to_super_page); an entry already set is kept, with
   * the pr_crit line and a WARN, and the map goes on and succeeds.
   */
  private intelMap(domain: Domain, iova: number, paddr: number, size: number, prot: Prot, options: FlushOptions): void {
    const pt = domain.pageTable!;
    if (iova + size > 2 ** domain.addressWidth) {
      this.k.log.err(`DMAR: intel_iommu_map: iommu width (${domain.addressWidth}) is not sufficient for the mapped address (${(iova + size).toString(16)})`);
      fail('EFAULT', `map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond the ${domain.addressWidth}-bit aperture`);
    }
    if (iova + size > pt.span) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} is beyond what ${pt.levels} levels of table reach`);
    const read = prot.read ?? false;
    const write = prot.write ?? false;
    if (!read && !write) fail('EINVAL', `map: 0x${iova.toString(16)}+0x${size.toString(16)} would be a leaf with neither read nor write permission`);
    if (!write && domain.nestParent) {
      if (this.k.ratelimit('__domain_mapping')) this.k.log.err('DMAR: Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)');
      fail('EINVAL', `map: ${domain.name} is a nest parent: no read-only leaves (VT-d erratum 772415, SPR17)`);
    }
    domain.hasMappings = true;
    const firstLevel = domain.stage === 'first';
    const attr = leafAttributes({
      read,
      write,
      snoop: domain.stage === 'second' && domain.forceSnooping,
      firstLevel,
      presentImpliesRead: isAtLeast(this.k.version, WRITE_ONLY_LEAVES.removed) && !isAtLeast(this.k.version, WRITE_ONLY_LEAVES.restored),
    });
    const table = { mem: this.k.machine.memory, pgd: pt.root, levels: pt.levels, firstLevel, superpage: domain.pgsizes.length - 1 };
    domainMapping(table, iova / 4096, paddr / 4096, size / 4096, attr, {
      alreadySet: (pfn, old, pteval) => {
        this.k.log.crit(`DMAR: ERROR: DMA PTE for vPFN 0x${pfn.toString(16)} already set (to ${trimHex(hex64(old.hi, old.lo))} not ${pteval.toString(16)})`);
        this.k.warnOn('__domain_mapping', domain.name, `WARNING at drivers/iommu/intel/iommu.c:1884 __domain_mapping: ${domain.name}'s entry for IOVA 0x${(pfn * 4096).toString(16)} was already set: kept as it was, and the map went on (it returns success)`);
      },
      flush: (start, end) => flushRange(domain, start * 4096, end * 4096, false, options),
      walkedIntoPage: (level, entry, page) =>
        this.k.findings.push({
          kind: 'silent',
          function: 'pfn_to_dma_pte',
          unit: domain.name,
          logLine: this.k.log.length,
          message: `${domain.name}: mapping IOVA 0x${iova.toString(16)}+0x${size.toString(16)} met the ${level === 2 ? '2 MiB' : '1 GiB'} page at entry 0x${entry.toString(16)} and walked on into the memory it maps (0x${page.toString(16)}) as if it were a page table: what is written there is the device's data, not a table`,
        }),
    });
  }

  /**
   * iommu_unmap (6.17 driver, newest core) in strict mode: a domain without a page table, or an address or
   * size that is not 4 KiB aligned (with its "unaligned" line), unmaps nothing and returns 0. Otherwise the
   * range goes to intel_iommu_unmap in iommu_pgsize chunks until `size` bytes or more are done; each call
   * unmaps at least the span of the entry the walk stops at (pfn_to_dma_pte), mapped or not, and says so,
   * so an unmapped range is "unmapped" (and flushed) by the span of the empty entry that covers it. The
   * gather is synced (cache_tag_flush_range, IH = no table page freed) whenever a chunk of another size or a
   * disjoint one comes, and at the end; an empty gather flushes nothing (90c5def10bea "iommu: Do not call
   * drivers for empty gathers"). Returns the bytes the driver reported.
   */
  unmap(domain: Domain, iova: number, size: number, options: FlushOptions = {}): number {
    if (domain.type !== 'paging') return 0;
    if (iova % 4096 || size % 4096) {
      this.k.log.err(`iommu: unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x1000`);
      return 0;
    }
    const gather = unmapGather();
    let unmapped = 0;
    while (unmapped < size) {
      const { pgsize, count } = iommuPgsize(domain.pgsizes, iova + unmapped, iova + unmapped, size - unmapped);
      const got = this.intelUnmap(domain, iova + unmapped, pgsize * count, gather, options);
      if (!got) break;
      unmapped += got;
    }
    this.gatherSync(domain, gather, options);
    return unmapped;
  }

  /**
   * intel_iommu_unmap: 0 beyond the domain's tables; else `size` grows to the span of the entry the walk
   * stops at, [iova, iova + size) is cleared (domain_unmap: tables it covers whole are freed) and added to the
   * gather. A span reaching past the table is not cleared (domain_unmap's WARN_ON) but still reported and
   * gathered, as the kernel does.
   */
  private intelUnmap(domain: Domain, iova: number, size: number, gather: UnmapGather, options: FlushOptions): number {
    const pt = domain.pageTable!;
    if (iova >= pt.span) return 0;
    const { level } = slEntryAt(this.k.machine.memory, pt, iova);
    const span = 4096 * 512 ** (level - 1);
    if (size < span) size = span;
    if (iova + size > pt.span) {
      this.k.warnOn('domain_unmap', domain.name, `${domain.name}: unmap of 0x${iova.toString(16)}+0x${size.toString(16)} reaches past the ${pt.levels}-level table: WARN_ON(!domain_pfn_supported()), nothing cleared`);
    } else {
      pt.unmap(iova, size);
      if (pt.tablesFreed > 0) gather.freed = true;
    }
    gatherAddPage(gather, iova, size, (g) => this.gatherSync(domain, g, options));
    return size;
  }

  /** iommu_iotlb_sync for an unmap's gather: intel_iommu_tlb_sync, then a fresh gather. */
  private gatherSync(domain: Domain, g: UnmapGather, options: FlushOptions): void {
    if (g.start <= g.end) flushRange(domain, g.start, g.end, !g.freed, options);
    resetGather(g);
  }

  /**
   * enforce_cache_coherency (6.17), as iommufd asks for it when a device's IOMMU can snoop (ECAP.SC). Refused
   * (false) when a device attached to the domain sits behind a unit without snoop control, or, for a
   * second-stage domain, once something is mapped (the SNP bit is per leaf: set_pte_snp applies to later
   * maps only). A first-stage domain gets PGSNP in the PASID entry of every RID attached to it
   * (intel_pasid_setup_page_snoop_control: PASID-cache PSI, PASID-based IOTLB, device TLB) and in every
   * entry set up later.
   */
  enforceCacheCoherency(domain: Domain, options: FlushOptions = {}): boolean {
    if (domain.type !== 'paging') return false;
    if (domain.stage === 'first' && domain.forceSnooping) return true;
    const ridDevices = domain.ridDevices;
    if (ridDevices.some((d) => !d.iommu.unit.ecap.sc)) return false;
    if (domain.stage === 'second') {
      if (domain.hasMappings) return false;
      domain.forceSnooping = true;
      return true;
    }
    domain.forceSnooping = true;
    const mem = this.k.machine.memory;
    for (const dev of ridDevices) {
      const table = this.k.entries.pasidTable(dev, IOMMU_NO_PASID, false);
      if (table === undefined) continue;
      const addr = pasidEntryAddress(table, IOMMU_NO_PASID);
      if (!(mem.readLo(addr) & 1)) continue;
      // PGSNP is PASID-entry bit 88: qw1 bit 24.
      mem.write64(addr + 8, mem.readHi(addr + 8), (mem.readLo(addr + 8) | (1 << 24)) >>> 0, 'pasid-entry.qw1');
      const did = mem.readLo(addr + 8) & 0xffff;
      if (options.skipInvalidation === true) continue;
      dev.iommu.qi.submit([Descs.pasidCache(did, IOMMU_NO_PASID)]);
      dev.iommu.qi.submit([Descs.piotlbAll(did, IOMMU_NO_PASID)]);
      if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') dev.iommu.qi.submit([devTlbDesc(dev, IOMMU_NO_PASID, 0, FULL_RANGE_MASK)]);
    }
    return true;
  }

  /**
   * iommu_iotlb_sync after a harvest (intel_iommu_tlb_sync): cache_tag_flush_range over the gather with
   * IH = 1, since no page-table page was freed. An empty gather flushes nothing: the core stopped calling
   * drivers for empty gathers in 2026 ("iommu: Do not call drivers for empty gathers", 90c5def10bea).
   */
  iotlbSync(domain: Domain, gather: IotlbGather, options: FlushOptions = {}): void {
    if (!(gather.start < gather.end)) return;
    flushRange(domain, gather.start, gather.end, true, options);
  }
}

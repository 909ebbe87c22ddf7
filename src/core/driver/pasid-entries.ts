import { PASID_ENTRY, PGTT } from '../vtd/structures';
import { clearPasidEntry, encodePasidEntry, pasidEntryAddress, type PasidEntryFields, readEntry, writeEntry, writePasidDirEntry } from '../vtd/tables';
import type { DeviceInfo } from './device';
import type { Domain } from './domain';
import { fail } from './errors';
import { devTlbDesc, type FlushOptions, flushWriteBuffer } from './flush';
import type { IntelIommu } from './intel-iommu';
import { Descs, FULL_RANGE_MASK } from './qi';
import type { KernelState } from './state';

/** PASID tables and entries: allocation on first use, intel_pasid_setup_* and intel_pasid_tear_down_entry. */
export class PasidEntries {
  constructor(private readonly k: KernelState) {}

  /** The PASID table covering `pasid` (allocated and hooked into the directory on first use). */
  pasidTable(dev: DeviceInfo, pasid: number, create: boolean): number | undefined {
    const index = Math.floor(pasid / 64);
    let t = dev.pasidTables.get(index);
    if (t === undefined && create) {
      t = this.k.machine.memory.allocPage();
      dev.pasidTables.set(index, t);
      writePasidDirEntry(this.k.machine.memory, dev.pasidDir, pasid, t);
    }
    return t;
  }

  private pasidEntryFields(domain: Domain, did: number, iommu: IntelIommu): PasidEntryFields {
    const pwsnp = iommu.unit.ecap.smpwc === 1;
    switch (domain.type) {
      case 'identity':
        return { pgtt: PGTT.PASS_THROUGH, did, aw: iommu.agaw, pwsnp };
      case 'sva':
        return { pgtt: PGTT.FIRST_LEVEL, flptptr: domain.process!.pgd, flpm: domain.process!.pageTable.levels === 5 ? 1 : 0, did, aw: iommu.agaw, pwsnp };
      case 'nested': {
        const s1 = domain.s1!;
        const parent = domain.parent!;
        return {
          pgtt: PGTT.NESTED,
          flptptr: s1.pgtblAddr,
          flpm: s1.addrWidth === 57 ? 1 : 0,
          sre: s1.sre,
          wpe: s1.sre && s1.wpe,
          eafe: s1.eafe,
          slptptr: parent.pageTable!.root,
          aw: parent.pageTable!.levels - 2,
          did,
          pwsnp,
          pgsnp: parent.forceSnooping,
          ssade: parent.dirtyTracking,
        };
      }
      case 'paging':
        return domain.stage === 'first'
          ? { pgtt: PGTT.FIRST_LEVEL, flptptr: domain.pageTable!.root, flpm: domain.pageTable!.levels === 5 ? 1 : 0, did, aw: iommu.agaw, pwsnp, pgsnp: domain.forceSnooping }
          : { pgtt: PGTT.SECOND_LEVEL, slptptr: domain.pageTable!.root, aw: domain.pageTable!.levels - 2, did, ssade: domain.dirtyTracking, pwsnp };
      default:
        return fail('EINVAL', `a ${domain.type} domain has no PASID entry`);
    }
  }

  /**
   * intel_pasid_setup_*: a fresh entry (EBUSY if one is present), then the new-entry flush (pasid_flush_caches). A
   * first-level entry (first-stage paging, SVA) is first checked as intel_pasid_setup_first_level does:
   * ECAP.FLTS, and CAP.FL5LP for 5-level paging (the domain's, or for SVA the CPU's LA57), each EINVAL with
   * its pr_err line.
   */
  setupPasidEntry(dev: DeviceInfo, pasid: number, domain: Domain, did: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.k.machine.memory;
    if (domain.type === 'sva' || (domain.type === 'paging' && domain.stage === 'first')) {
      const fiveLevel = domain.type === 'sva' ? this.k.la57(domain.process!) : domain.pageTable!.levels === 5;
      if (!iommu.unit.ecap.flts) {
        this.k.log.err(`DMAR: No first level translation support on ${iommu.name}`);
        fail('EINVAL', `${iommu.name} has no first-level translation (ECAP.FLTS)`);
      }
      if (fiveLevel && !iommu.unit.cap.fl5lp) {
        this.k.log.err(`DMAR: No 5-level paging support for first-level on ${iommu.name}`);
        fail('EINVAL', `${iommu.name} has no 5-level first-level paging (CAP.FL5LP)`);
      }
    }
    const table = this.pasidTable(dev, pasid, true)!;
    const addr = pasidEntryAddress(table, pasid);
    if (mem.readLo(addr) & 1) fail('EBUSY', `${dev.name}: PASID ${pasid} entry is already present`);
    writeEntry(mem, addr, encodePasidEntry(this.pasidEntryFields(domain, did, iommu)), 'pasid-entry');
    // pasid_flush_caches: with caching mode the PASID cache and the PASID's IOTLB, else a write-buffer flush.
    if (!options.skipInvalidation) {
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.pasidCache(did, pasid)]);
        iommu.qi.submit([Descs.piotlbAll(did, pasid)]);
      } else {
        flushWriteBuffer(iommu.unit);
      }
    }
  }

  /**
   * intel_pasid_tear_down_entry as 6.12.118 and the newest kernels have it (75ed00055c05 "iommu/vt-d: Clear
   * Present bit before tearing down PASID entry", in 7.0 and the 6.12.y/6.18.y/6.19.y stables): clear P, then
   * PASID-cache PSI, then IOTLB by PGTT (PASID-based for first-level and pass-through, domain-selective for
   * second-level and nested), then the device TLB, then zero the entry, then drain page requests for the
   * PASID unless `faultIgnore`. The zeroing (intel_pasid_clear_entry) keeps FPD for `faultIgnore` only if the
   * entry is still present, and it no longer is: since that commit an mm release leaves an all-zero entry.
   * An entry found not present is left alone unless it has FPD set (left by an older kernel's mm release,
   * or by a table the model imported): then it is zeroed and the PASID's page requests drained, nothing
   * flushed.
   */
  teardownPasidEntry(dev: DeviceInfo, pasid: number, faultIgnore: boolean, options: FlushOptions): void {
    const iommu = dev.iommu;
    const mem = this.k.machine.memory;
    const table = this.pasidTable(dev, pasid, false);
    if (table === undefined) return;
    const addr = pasidEntryAddress(table, pasid);
    const words = readEntry(mem, addr, PASID_ENTRY);
    if (!(words[0]! & 1)) {
      if (!(words[0]! & 2)) return;
      clearPasidEntry(mem, table, pasid);
      if (dev.iopfEnabled > 0) this.k.prq.drainPasidPrq(dev, pasid, options);
      return;
    }
    const did = words[2]! & 0xffff;
    const pgtt = (words[0]! >>> 6) & 7;
    mem.write64(addr, words[1]!, (words[0]! & ~1) >>> 0, 'pasid-entry.qw0');
    if (options.skipInvalidation !== true) {
      iommu.qi.submit([Descs.pasidCache(did, pasid)]);
      iommu.qi.submit([pgtt === PGTT.FIRST_LEVEL || pgtt === PGTT.PASS_THROUGH ? Descs.piotlbAll(did, pasid) : Descs.iotlbDsi(iommu.unit, did)]);
      if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, pasid, 0, FULL_RANGE_MASK)]);
    }
    clearPasidEntry(mem, table, pasid);
    if (!faultIgnore && dev.iopfEnabled > 0) this.k.prq.drainPasidPrq(dev, pasid, options);
  }
}

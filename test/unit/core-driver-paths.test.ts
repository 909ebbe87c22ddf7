// The driver model on the kernel's error and edge paths: what each kernel function returns, what it leaves
// behind, which flushes it issues and which lines it prints. Expected values come from the Linux sources
// (6.12.118 on disk, 6.17 where the model follows it), each test naming the function it checks.
import * as assert from 'node:assert/strict';
import { Machine } from '../../src/core/hw/machine';
import { capabilitiesOf, type VtdFeatures } from '../../src/core/vtd/cap';
import { U64 } from '../../src/core/u64';
import { IommuKernel, type KernelOptions } from '../../src/core/driver/kernel';
import type { PageFault } from '../../src/core/driver/domain';
import { contextEntryAddress, pasidEntryAddress } from '../../src/core/vtd/tables';
import { descriptorsDuring } from '../support/descriptors';
import { ATS_PRI_PASID, platform, throwsErrno } from '../support/kernel-platform';
import { vtdUnits } from '../../src/core/vtd/factory';

/** The log lines `fn` printed. */
function linesDuring(k: IommuKernel, fn: () => void): string[] {
  const before = k.log.lines.length;
  fn();
  return k.log.lines.slice(before).map((l) => l.text);
}

/** The 16 32-bit halves of a (device, PASID)'s PASID entry. */
function pasidEntry(k: IommuKernel, sid: number, pasid: number): number[] {
  const dev = k.device(sid);
  const t = dev.pasidTables.get(Math.floor(pasid / 64))!;
  const a = pasidEntryAddress(t, pasid);
  return [...Array(16).keys()].map((i) => k.machine.memory.read32(a + i * 4));
}

describe('driver model on the kernel\'s error paths', () => {
  describe('SVA: iommu_sva_bind_device, intel_svm_set_dev_pasid, the mm notifier and the PASID\'s lifetime', () => {
    it('iommu_alloc_mm_data runs first: a bind intel_iommu_sva_supported refuses (no ATS: EINVAL) keeps the PASID it allocated', () => {
      const { k } = platform({ devices: { '6a:01.0': ATS_PRI_PASID, '00:04.0': { pasid: { width: 20 } } } });
      const p = k.newProcess('app');
      throwsErrno(() => k.svaBind('00:04.0', p), 'EINVAL');
      assert.equal(p.pasid, 1, 'mm->iommu_mm->pasid stays');
      assert.equal(k.pasids.global.size, 1);
      assert.equal(k.domains.filter((d) => d.type === 'sva').length, 0, 'no SVA domain was left behind');
      assert.equal(k.svaBind('6a:01.0', p).pasid, 1, 'the next bind uses it');
    });

    it('iommu_alloc_mm_data: a PASID the device cannot reach is EOVERFLOW; a device without PASIDs gets none (iommu_alloc_global_pasid: ENOSPC)', () => {
      const { k } = platform({ devices: { '6a:01.0': ATS_PRI_PASID, '6c:00.0': { ats: {}, pri: {}, pasid: { width: 1 } }, '00:04.0': { ats: {} } } });
      for (const name of ['a', 'b']) k.svaBind('6a:01.0', k.newProcess(name));
      const c = k.newProcess('c');
      k.svaBind('6a:01.0', c);
      assert.equal(c.pasid, 3);
      // max_pasids of a 1-bit PASID capability is 2: PASID 3 is beyond it.
      throwsErrno(() => k.svaBind('6c:00.0', c), 'EOVERFLOW');
      const d = k.newProcess('d');
      throwsErrno(() => k.svaBind('00:04.0', d), 'ENOSPC');
      assert.equal(d.pasid, undefined);
    });

    it('intel_svm_check at boot: a unit without 1 GiB first-level pages on a GBPAGES CPU is not SVM-capable (its line; bind ENODEV); without GBPAGES it is', () => {
      const lines = (cpu: KernelOptions['cpu']) => {
        const { k } = platform({ features: { firstLevel1G: false }, kernel: { cpu } });
        return { k, boot: k.log.lines.map((l) => l.text).filter((t) => t.includes('SVM')) };
      };
      const gb = lines(undefined);
      // svm.c: pr_err("%s SVM disabled, incompatible 1GB page capability\n", iommu->name), no pr_fmt.
      assert.deepEqual(gb.boot, ['dmar0 SVM disabled, incompatible 1GB page capability']);
      throwsErrno(() => gb.k.svaBind('6a:01.0', gb.k.newProcess('app')), 'ENODEV');
      const none = lines({ gbpages: false });
      assert.deepEqual(none.boot, []);
      assert.equal(none.k.svaBind('6a:01.0', none.k.newProcess('app')).pasid, 1);
      const la57 = platform({ kernel: { cpu: { la57: true } } });
      assert.ok(la57.k.log.lines.some((l) => l.text === 'dmar0 SVM disabled, incompatible paging mode'));
    });

    it('intel_iommu_sva_supported asks for PRI enabled only where PRI is supported (ATS, ECAP.PRS and the capability): a PRI device on a unit without page requests binds, without IOPF', () => {
      const { k } = platform({ features: { pageRequests: false } });
      const dev = k.device('6a:01.0');
      assert.equal(dev.priSupported, false);
      const h = k.svaBind(dev, k.newProcess('app'));
      assert.equal(dev.iopfEnabled, 0);
      k.svaUnbind(h);
    });

    it('intel_pasid_setup_first_level: no ECAP.FLTS is EINVAL with its line, once per SVA domain tried; a 5-level mm on a unit without FL5LP likewise', () => {
      const { k } = platform({ features: { firstLevel: false } });
      const p = k.newProcess('app');
      let lines: string[] = [];
      lines = linesDuring(k, () => throwsErrno(() => k.svaBind('6a:01.0', p), 'EINVAL'));
      // pasid.c (pr_fmt "DMAR: "): pr_err("No first level translation support on %s\n", iommu->name).
      assert.deepEqual(lines, ['DMAR: No first level translation support on dmar0']);
      assert.equal(k.device('6a:01.0').pasidDomains.size, 0);
      assert.equal(k.domains.filter((d) => d.type === 'sva').length, 0, 'the new domain was freed (iommu_domain_free)');
      const five = platform();
      lines = linesDuring(five.k, () => throwsErrno(() => five.k.svaBind('6a:01.0', five.k.newProcess('big', { fiveLevel: true })), 'EINVAL'));
      assert.deepEqual(lines, ['DMAR: No 5-level paging support for first-level on dmar0']);
      assert.deepEqual([five.k.device('6a:01.0').pasidDomains.size, five.k.device('6a:01.0').iopfEnabled], [0, 0]);
    });

    it('intel_mm_release tears the PASID down with fault_ignore and, since 75ed00055c05, leaves it all zero (no FPD); the PASID is freed only when the last domain goes (mm_pasid_drop)', () => {
      const { m, k } = platform();
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x1000);
      const h = k.svaBind('6a:01.0', p);
      const exit = descriptorsDuring(m, () => p.exit(), { waits: true });
      // intel_pasid_tear_down_entry(fault_ignore): PASID cache, PASID-based IOTLB (first level), device TLB, each
      // with its wait; no drain (no PD wait).
      assert.deepEqual(exit, [
        'pc_inv G=1 DID=1 PASID=1',
        'inv_wait SW=1 FN=0 PD=0',
        'p_iotlb_inv G=2 DID=1 PASID=1',
        'inv_wait SW=1 FN=0 PD=0',
        'p_dev_tlb_inv SID=0x6a08 PASID=1 QDEP=0 ADDR=ALL S=1',
        'inv_wait SW=1 FN=0 PD=0',
      ]);
      assert.deepEqual(pasidEntry(k, 0x6a08, 1), new Array(16).fill(0), 'intel_pasid_clear_entry sees P already clear: no FPD kept');
      assert.equal(k.pasids.global.has(1), true, 'the SVA domain still holds the mm');
      assert.equal(k.svaBind('6b:00.0', k.newProcess('next')).pasid, 2);
      // The unbind finds a non-present entry without FPD: nothing to flush, nothing to drain.
      assert.deepEqual(descriptorsDuring(m, () => k.svaUnbind(h), { waits: true }), []);
      assert.equal(k.pasids.global.has(1), false, 'the last domain went: mmdrop frees the PASID');
    });

    it('intel_svm_domain_free: after the last unbind the mm notifier is gone, so a munmap flushes nothing', () => {
      const { m, k } = platform();
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x2000);
      k.svaUnbind(k.svaBind('6a:01.0', p));
      assert.deepEqual(descriptorsDuring(m, () => p.munmap(0x7000_0000, 0x2000), { waits: true }), []);
      assert.equal(k.pasids.global.size, 1, 'the process lives: its PASID stays');
      p.exit();
      assert.equal(k.pasids.global.size, 0);
    });

    it('intel_pasid_tear_down_entry on a non-present entry with FPD set (an older kernel\'s mm release): zeroed and drained, no cache flush', () => {
      const { m, k } = platform();
      const dev = k.device('6a:01.0');
      const d = k.allocPagingDomain({ stage: 'first' });
      d.iopfHandler = () => 'success';
      k.attachDevicePasid(d, dev, 4);
      const a = pasidEntryAddress(dev.pasidTables.get(0)!, 4);
      m.memory.write64(a, 0, 2, 'test: FPD only');
      const stream = descriptorsDuring(m, () => k.detachDevicePasid(dev, 4), { waits: true });
      // intel_iommu_drain_pasid_prq: a fenced wait, PASID-based IOTLB and device TLB, then the wait with PD.
      // The IOTLB descriptor carries the DID of the device's RID domain (info->domain), as the kernel's does.
      const ridDid = k.didOf(dev.ridDomain!, dev.iommu)!;
      assert.deepEqual(stream, ['inv_wait SW=0 FN=1 PD=0', `p_iotlb_inv G=2 DID=${ridDid} PASID=4`, 'p_dev_tlb_inv SID=0x6a08 PASID=4 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=1']);
      assert.deepEqual(pasidEntry(k, 0x6a08, 4), new Array(16).fill(0));
    });

    it('iommu_sva_handle_mm: an execute request on a VMA without VM_EXEC is INVALID; with it, Success', () => {
      const { m, k, unit } = platform();
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x1000);
      p.mmap(0x7100_0000, 0x1000, { exec: true });
      const h = k.svaBind('6a:01.0', p);
      const ask = (address: number, prgIndex: number) =>
        descriptorsDuring(m, () => {
          unit.receivePageRequest({ rid: 0x6a08, pasid: h.pasid, address, read: false, write: true, exec: true, priv: false, lastInGroup: true, prgIndex });
          k.serviceInterrupts();
        });
      assert.deepEqual(ask(0x7000_0000, 1), ['page_grp_resp RID=0x6a08 PP=1 PASID=1 PRGI=1 LPIG=1 RC=1']);
      assert.deepEqual(ask(0x7100_0000, 2), ['page_grp_resp RID=0x6a08 PP=1 PASID=1 PRGI=2 LPIG=1 RC=0']);
    });
  });

  describe('dirty tracking: intel_iommu_set_dirty_tracking, the allocation checks', () => {
    it('a device that refuses (its entry is first-level) stops the walk; the unwind walks the list again, so the line comes twice and the device set before is set back', () => {
      const { m, k } = platform({ features: { secondLevelAccessDirty: true }, devices: { '00:02.0': {}, '00:03.0': {} } });
      const d = k.allocPagingDomain({ dirtyTracking: true });
      k.attachDevice(d, '00:02.0');
      k.attachDevice(d, '00:03.0');
      // domain->devices is newest first: 00:03.0, then 00:02.0, whose entry says PGTT 1 (first level).
      const a = pasidEntryAddress(k.device('00:02.0').pasidTables.get(0)!, 0);
      m.memory.write64(a, m.memory.readHi(a), ((m.memory.readLo(a) & ~0x1c0) | (1 << 6)) >>> 0, 'test: PGTT 1');
      let stream: string[] = [];
      const lines = linesDuring(k, () => (stream = descriptorsDuring(m, () => throwsErrno(() => k.setDirtyTracking(d, true), 'EOPNOTSUPP'))));
      // pasid.c has no dev_fmt: dev_err_ratelimited(dev, "Dirty tracking not supported on translation type %d\n"),
      // after dev_printk's "<driver or bus> <device>: " (no driver is bound: the bus, pci).
      assert.deepEqual(lines, ['pci 0000:00:02.0: Dirty tracking not supported on translation type 1', 'pci 0000:00:02.0: Dirty tracking not supported on translation type 1']);
      const did = k.didOf(d, k.device('00:03.0').iommu)!;
      assert.deepEqual(stream, [`pc_inv G=1 DID=${did} PASID=0`, `iotlb_inv G=2 DID=${did}`, `pc_inv G=1 DID=${did} PASID=0`, `iotlb_inv G=2 DID=${did}`], 'on for 00:03.0, then off again');
      assert.equal(pasidEntry(k, 0x18, 0)[0]! & 0x200, 0, 'SSADE back off');
      assert.equal(d.dirtyTracking, false);
    });

    it('intel_iommu_domain_alloc_paging_flags: dirty tracking and nest parents are second stage only, and need scalable mode (ssads_supported, nested_supported)', () => {
      const { k } = platform({ features: { secondLevelAccessDirty: true } });
      throwsErrno(() => k.allocPagingDomain({ stage: 'first', dirtyTracking: true }), 'EOPNOTSUPP');
      throwsErrno(() => k.allocPagingDomain({ stage: 'first', nestParent: true }), 'EOPNOTSUPP');
      const legacy = platform({ features: { secondLevelAccessDirty: true, nested: true }, kernel: { scalableMode: false } });
      throwsErrno(() => legacy.k.allocPagingDomain({ dirtyTracking: true }), 'EOPNOTSUPP');
      throwsErrno(() => legacy.k.allocPagingDomain({ nestParent: true }), 'EOPNOTSUPP');
    });
  });

  describe('probe and release: intel_iommu_probe_device, probe_finalize, release_device', () => {
    it('pasid_supported needs ECAP.PASID: a PASID device on a scalable unit without it gets no PASIDE, no PASID, no page request queue; PRE needs ATS as well as PRI', () => {
      const { k } = platform({ features: { pasidBits: 0 }, devices: { '6a:01.0': ATS_PRI_PASID } });
      const dev = k.device('6a:01.0');
      assert.equal(dev.pasidEnabled, false);
      assert.equal(dev.iommu.prqBase, 0, 'init_dmars enables the PRQ only where pasid_supported()');
      const noAts = platform({ devices: { '6a:01.0': { pri: {}, pasid: { width: 20 } } } });
      const ctx = noAts.k.machine.memory.readLo(noAts.k.device('6a:01.0').iommu.contextTable(0x6a, 0x08) + 0x08 * 32);
      // SM context qw0: P 0, FPD 1, DTE 2, PASIDE 3, PRE 4 (context_entry_set_pasid_table, 6.17).
      assert.deepEqual([ctx & 1, (ctx >> 2) & 1, (ctx >> 3) & 1, (ctx >> 4) & 1], [1, 0, 1, 0], 'no ATS: no DTE and no PRE');
      const full = platform();
      const c2 = full.k.machine.memory.readLo(full.k.device('6a:01.0').iommu.contextTable(0x6a, 0x08) + 0x08 * 32);
      assert.deepEqual([(c2 >> 2) & 1, (c2 >> 3) & 1, (c2 >> 4) & 1], [1, 1, 1]);
    });

    it('releaseDevice: the blocking domain first (PASID 0 torn down with ATS still on), then PRI/ATS/PASID off and the context entry cleared with a device-selective context-cache flush only', () => {
      const { m, k } = platform();
      const dev = k.device('6a:01.0');
      const did = k.didOf(dev.ridDomain!, dev.iommu)!;
      const stream = descriptorsDuring(m, () => k.releaseDevice(dev));
      assert.deepEqual(stream, [
        `pc_inv G=1 DID=${did} PASID=0`,
        `p_iotlb_inv G=2 DID=${did} PASID=0`,
        'dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=ALL S=1',
        // device_pasid_table_teardown: the SM context entry's DID field reads 0.
        'cc_inv G=3 DID=0 SID=0x6a08 FM=0',
      ]);
      const ctx = dev.iommu.contextTable(0x6a, 0x08);
      assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => m.memory.read32(ctx + 0x08 * 32 + i * 4)), new Array(8).fill(0));
      assert.equal(dev.endpoint.atsEnabled || dev.endpoint.priEnabled || dev.endpoint.pasidEnabled, false);
      throwsErrno(() => k.device('6a:01.0'), 'ENODEV');
      const other = platform();
      other.k.attachDevicePasid(other.k.allocPagingDomain({ stage: 'first' }), '6b:00.0', 3);
      throwsErrno(() => other.k.releaseDevice('6b:00.0'), 'EBUSY');
    });

    it('IOMMU groups: a slot\'s functions share one (pci_device_group); a group\'s number is freed when its last device leaves and the lowest free one is taken next (iommu_group_release ida_free, iommu_group_alloc ida_alloc)', () => {
      const { m, k } = platform({ devices: { '00:02.0': {}, '00:03.0': {}, '00:03.1': {}, '00:04.0': {} } });
      const group = (bdf: string) => k.device(bdf).group;
      assert.deepEqual(['00:02.0', '00:03.0', '00:03.1', '00:04.0'].map(group), [0, 1, 1, 2]);
      const added = (from: number) => k.log.lines.slice(from).map((l) => l.text).filter((t) => t.includes('iommu group'));
      k.releaseDevice('00:03.0');
      let at = k.log.lines.length;
      k.probeDevice(m.endpoint('00:03.0'));
      assert.deepEqual(added(at), ['pci 0000:00:03.0: Adding to iommu group 1'], 'its sibling kept group 1 alive');
      k.releaseDevice('00:02.0');
      k.releaseDevice('00:03.0');
      k.releaseDevice('00:03.1');
      at = k.log.lines.length;
      k.probeDevice(m.endpoint('00:03.1'));
      k.probeDevice(m.endpoint('00:02.0'));
      k.probeDevice(m.endpoint('00:03.0'));
      assert.deepEqual(added(at), ['pci 0000:00:03.1: Adding to iommu group 0', 'pci 0000:00:02.0: Adding to iommu group 1', 'pci 0000:00:03.0: Adding to iommu group 0']);
      assert.equal(group('00:04.0'), 2);
    });
  });

  describe('map and unmap: iommu_map, intel_iommu_map_pages, iommu_unmap, intel_iommu_unmap', () => {
    it('__iommu_map: an unaligned range is EINVAL with the core\'s line; size 0 maps nothing and succeeds', () => {
      const { k } = platform();
      const d = k.device('00:02.0').ridDomain!;
      // iommu.c (pr_fmt "iommu: "): "unaligned: iova 0x%lx pa %pa size 0x%zx min_pagesz 0x%x"; %pa is 0x and 16 digits.
      assert.deepEqual(linesDuring(k, () => throwsErrno(() => k.map(d, 0x1001, 0x9000_0000, 0x1000), 'EINVAL')), ['iommu: unaligned: iova 0x1001 pa 0x0000000090000000 size 0x1000 min_pagesz 0x1000']);
      assert.deepEqual(linesDuring(k, () => k.map(d, 0x4000, 0x9000_0000, 0)), []);
      assert.equal(d.pageTable!.lookup(0x4000), undefined);
    });

    it('intel_iommu_map: past the domain\'s width is EFAULT with its line; __iommu_map unmaps (and flushes) the chunks it had mapped', () => {
      const { m, k } = platform();
      const d = k.device('00:02.0').ridDomain!;
      // Chunks by iommu_pgsize: 4 KiB up to the 2 MiB boundary, one 2 MiB page ending at 2^48, then 4 KiB past it.
      const iova = 2 ** 48 - 0x20_1000;
      let stream: string[] = [];
      const lines = linesDuring(k, () => (stream = descriptorsDuring(m, () => throwsErrno(() => k.map(d, iova, 0x8fff_f000, 0x20_2000), 'EFAULT'))));
      assert.deepEqual(lines, ['DMAR: intel_iommu_map: iommu width (48) is not sufficient for the mapped address (1000000001000)']);
      assert.equal(d.pageTable!.lookup(iova), undefined);
      assert.equal(d.pageTable!.lookup(iova + 0x1000), undefined);
      // iommu_unmap of the two chunks: two gathers (4 KiB, then 2 MiB), each synced on its own.
      const did = k.didOf(d, k.device('00:02.0').iommu)!;
      assert.deepEqual(stream, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0xffffffdff000 AM=0 IH=1`, `p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0xffffffe00000 AM=9 IH=1`]);
    });

    it('__domain_mapping over a mapped page keeps the old entry with the pr_crit line and a WARN, maps the rest of the chunk and succeeds', () => {
      const { k } = platform();
      const d = k.allocPagingDomain({ stage: 'second' });
      k.map(d, 0x2000, 0x9000_0000, 0x1000, { read: true, write: true });
      const lines = linesDuring(k, () => k.map(d, 0x1000, 0xa000_0000, 0x3000, { read: true, write: false }));
      // pr_crit("ERROR: DMA PTE for vPFN 0x%lx already set (to %llx not %llx)"): the R|W leaf found, then the
      // read-only one 0x2000 into the chunk; WARN_ON(1) then prints its cut-here line.
      assert.deepEqual(lines, ['DMAR: ERROR: DMA PTE for vPFN 0x2 already set (to 90000003 not a0001001)', '------------[ cut here ]------------']);
      assert.deepEqual(k.log.lines.slice(-2).map((l) => l.level), ['crit', 'warn']);
      assert.deepEqual([0x1000, 0x2000, 0x3000].map((a) => d.pageTable!.lookup(a)!.output.toString(16)), ['a0000000', '90000000', 'a0002000']);
      assert.deepEqual(k.findings.map((f) => [f.kind, f.function, f.unit, f.logLine]), [['warn', '__domain_mapping', d.name, k.log.length]]);
      assert.match(k.findings[0]!.message, /^WARNING at drivers\/iommu\/intel\/iommu\.c:1884 __domain_mapping: /);
    });

    it('prot as intel_iommu_map has it: IOMMU_WRITE alone is a write-only second-stage leaf only from 6.16 (before, DMA_FL_PTE_PRESENT is DMA_PTE_READ); first-stage leaves are always present', () => {
      const leaf = (version: KernelOptions['version'], stage: 'first' | 'second', prot: { read?: boolean; write?: boolean }) => {
        const { k } = platform({ kernel: { version } });
        const d = k.allocPagingDomain({ stage });
        k.map(d, 0x1000, 0x9000_0000, 0x1000, prot);
        return (d.pageTable!.lookup(0x1000)!.lo & 0xfff).toString(16);
      };
      // Second stage: R 1, W 2. 6.12 sets bit 0 on every leaf; 6f5dc7658094 (6.16) only on first-stage ones.
      assert.deepEqual([leaf('6.12', 'second', { write: true }), leaf('6.12', 'second', { read: false, write: true }), leaf('6.12', 'second', { read: true })], ['3', '3', '1']);
      assert.deepEqual([leaf('6.16', 'second', { write: true }), leaf('6.17', 'second', { read: true, write: true })], ['2', '3']);
      // Before eea53c581688 (5.13) write-only was write-only too.
      assert.equal(leaf('5.12', 'second', { write: true }), '2');
      // First stage: P|R/W|U/S|A|D for a writable leaf, P|U/S|A for a read-only one, in every version.
      assert.deepEqual([leaf('6.12', 'first', { write: true }), leaf('6.17', 'first', { write: true }), leaf('6.17', 'first', { read: true })], ['67', '67', '25']);
    });

    it('switch_to_super_page: each present entry a superpage replaces (a table with leaves, an empty one) is freed and flushed from its own slot to the end of the run', () => {
      const { m, k } = platform();
      const dev = k.device('00:02.0');
      const d = dev.ridDomain!;
      const did = k.didOf(d, dev.iommu)!;
      k.map(d, 0x20_0000, 0x9000_0000, 0x1000);
      k.map(d, 0x40_0000, 0x9100_0000, 0x1000);
      k.unmap(d, 0x40_0000, 0x1000); // leaves the level-1 table under 0x400000 empty
      const pde = d.pageTable!.leaves().next().value!.path.at(-2)!;
      const tables = [(pde.lo & ~0xfff) >>> 0, (m.memory.readLo(pde.addr + 8) & ~0xfff) >>> 0];
      const stream = descriptorsDuring(m, () => k.map(d, 0x20_0000, 0xa000_0000, 0x40_0000));
      // cache_tag_flush_range(start_pfn << 12, end_pfn << 12, 0) per replaced entry: [0x200000, 0x5ff000] is
      // AM 11 from 0, [0x400000, 0x5ff000] AM 9 from 0x400000 (calculate_psi_aligned_address).
      assert.deepEqual(stream, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x0 AM=11 IH=0`, `p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x400000 AM=9 IH=0`]);
      assert.deepEqual([0x20_0000, 0x40_0000].map((a) => [d.pageTable!.lookup(a)!.size, d.pageTable!.lookup(a)!.output.toString(16)]), [[0x20_0000, 'a0000000'], [0x20_0000, 'a0200000']]);
      assert.deepEqual(tables.map((t) => m.memory.pageForRead(t)), [undefined, undefined], 'both level-1 tables were freed (freed pages are zeroed)');
      assert.deepEqual(linesDuring(k, () => k.map(d, 0x20_0000, 0xb000_0000, 0x20_0000)), [], 'a superpage over a superpage is replaced the same way, silently');
      assert.equal(d.pageTable!.lookup(0x20_0000)!.output, 0xb000_0000);
    });

    it('a 4 KiB map inside a superpage: pfn_to_dma_pte takes the superpage\'s frame for a table and writes the leaf into the device\'s data (a finding; dmesg says nothing)', () => {
      const { m, k } = platform();
      const d = k.device('00:02.0').ridDomain!;
      k.map(d, 0x20_0000, 0xa000_0000, 0x20_0000);
      assert.deepEqual(linesDuring(k, () => k.map(d, 0x20_1000, 0xb000_0000, 0x1000)), []);
      // Entry 1 of the "table" at 0xa0000000: the first-stage leaf P|R/W|U/S|A|D for 0xb0000000.
      assert.deepEqual([m.memory.readHi(0xa000_0008), m.memory.readLo(0xa000_0008).toString(16)], [0, 'b0000067']);
      assert.equal(d.pageTable!.lookup(0x20_1000)!.output, 0xa000_1000, 'the IOMMU still walks the superpage');
      assert.deepEqual(k.findings.map((f) => [f.kind, f.function]), [['silent', 'pfn_to_dma_pte']]);
      assert.match(k.findings[0]!.message, /met the 2 MiB page at entry 0x[0-9a-f]+ and walked on into the memory it maps \(0xa0000000\)/);
      // Where the data is not zero, the cmpxchg fails: the kernel's complaint names the data as the old entry.
      m.memory.write64(0xa000_0010, 0x1234, 0x5678_9abc);
      assert.deepEqual(linesDuring(k, () => k.map(d, 0x20_2000, 0xb000_1000, 0x1000)), ['DMAR: ERROR: DMA PTE for vPFN 0x202 already set (to 123456789abc not b0001067)', '------------[ cut here ]------------']);
    });

    it('iommu_unmap: unaligned is 0 with the core\'s line and no flush; an unmapped page is reported as the span of the empty entry the walk stops at, and that span is flushed', () => {
      const { m, k } = platform();
      const dev = k.device('00:02.0');
      const d = dev.ridDomain!;
      const did = k.didOf(d, dev.iommu)!;
      let got = -1;
      let stream = descriptorsDuring(m, () => assert.deepEqual(linesDuring(k, () => (got = k.unmap(d, 0x1800, 0x1000))), ['iommu: unaligned: iova 0x1800 size 0x1000 min_pagesz 0x1000']));
      assert.deepEqual([got, stream], [0, []]);
      // An empty 4-level table: pfn_to_dma_pte stops at the top-level entry, whose span is 512 GiB.
      stream = descriptorsDuring(m, () => (got = k.unmap(d, 0, 0x1000)));
      assert.equal(got, 2 ** 39);
      assert.deepEqual(stream, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x0 AM=27 IH=1`]);
      // A hole in a populated last-level table is one page, flushed as such.
      k.map(d, 0x10_0000, 0x9000_0000, 0x1000);
      stream = descriptorsDuring(m, () => (got = k.unmap(d, 0x10_1000, 0x1000)));
      assert.deepEqual([got, stream], [0x1000, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x101000 AM=0 IH=1`]]);
    });

    it('iommu_iotlb_gather_add_page: a chunk of another page size syncs what was gathered first, so a 4 KiB + 2 MiB unmap is two flushes', () => {
      const { m, k } = platform();
      const dev = k.device('00:02.0');
      const d = dev.ridDomain!;
      const did = k.didOf(d, dev.iommu)!;
      k.map(d, 0x1f_f000, 0x8fff_f000, 0x20_1000);
      assert.equal(d.pageTable!.lookup(0x20_0000)!.size, 0x20_0000);
      let got = 0;
      const stream = descriptorsDuring(m, () => (got = k.unmap(d, 0x1f_f000, 0x20_1000)));
      assert.equal(got, 0x20_1000);
      assert.deepEqual(stream, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x1ff000 AM=0 IH=1`, `p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x200000 AM=9 IH=1`]);
    });

    it('intel_iommu_iotlb_sync_map: caching mode flushes a second-stage map (also of size 0: one page), never a first-stage one', () => {
      const { m, k } = platform({ features: { cachingMode: true } });
      const ss = k.allocPagingDomain({ stage: 'second', device: '00:02.0' });
      k.attachDevice(ss, '00:02.0');
      const did = k.didOf(ss, k.device('00:02.0').iommu)!;
      assert.deepEqual(descriptorsDuring(m, () => k.map(ss, 0x5000, 0x9000_0000, 0)), [`iotlb_inv G=3 DID=${did} ADDR=0x5000 AM=0 IH=0`]);
      assert.deepEqual(descriptorsDuring(m, () => k.map(ss, 0x6000, 0x9000_0000, 0x2000)), [`iotlb_inv G=3 DID=${did} ADDR=0x6000 AM=1 IH=0`]);
      const fs = k.device('6b:00.0').ridDomain!;
      assert.deepEqual(descriptorsDuring(m, () => k.map(fs, 0x6000, 0x9000_0000, 0x2000)), []);
    });

    it('paging_domain_compatible: a second-stage domain without iotlb_sync_map on a caching-mode unit, 1 GiB pages on a unit without them, or another page-walk coherency are EINVAL', () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: {} });
      m.addUnit(vtdUnits, { name: 'dmar1', features: { cachingMode: true, secondLevelLargePages: ['2M'] } });
      m.addUnit(vtdUnits, { name: 'dmar2', features: { pageWalkCoherent: false } });
      m.addEndpoint('00:02.0', {}, 'dmar0');
      m.addEndpoint('00:03.0', {}, 'dmar1');
      m.addEndpoint('00:04.0', {}, 'dmar2');
      const k = new IommuKernel(m).boot();
      const ss0 = k.allocPagingDomain({ stage: 'second', device: '00:02.0' });
      assert.deepEqual(ss0.pgsizes, [0x1000, 0x20_0000, 0x4000_0000]);
      throwsErrno(() => k.attachDevice(ss0, '00:03.0'), 'EINVAL');
      const ss1 = k.allocPagingDomain({ stage: 'second', device: '00:03.0' });
      assert.deepEqual([ss1.pgsizes, ss1.iotlbSyncMap], [[0x1000, 0x20_0000], true]);
      k.attachDevice(ss1, '00:02.0');
      throwsErrno(() => k.attachDevice(k.allocPagingDomain({ stage: 'first', device: '00:02.0' }), '00:04.0'), 'EINVAL');
    });

    it('intel_pasid_setup_first_level: a 5-level first-stage domain on a unit without CAP.FL5LP passes the compatibility check and fails its setup with the line; the RID stays blocked, the DID goes back', () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: { agaws: [48, 57], mgaw: 57, firstLevel5Level: true } });
      m.addUnit(vtdUnits, { name: 'dmar1', features: { agaws: [48, 57], mgaw: 57 } });
      m.addEndpoint('00:02.0', {}, 'dmar0');
      m.addEndpoint('00:03.0', {}, 'dmar1');
      const k = new IommuKernel(m).boot();
      const wide = k.allocPagingDomain({ stage: 'first', addressWidth: 57, device: '00:02.0' });
      const dev = k.device('00:03.0');
      const lines = linesDuring(k, () => throwsErrno(() => k.attachDevice(wide, dev), 'EINVAL'));
      assert.deepEqual(lines, ['DMAR: No 5-level paging support for first-level on dmar1']);
      assert.deepEqual([dev.ridDomain, wide.dids.size, wide.attachmentCount], [undefined, 0, 0]);
    });

    it('set_pte_snp: second-stage leaves get SNP only after enforce_cache_coherency, which a domain that maps already refuses; a first-stage domain gets PGSNP in its attached entries, flushed', () => {
      const { m, k } = platform();
      const plain = k.allocPagingDomain({ stage: 'second' });
      k.map(plain, 0x1000, 0x9000_0000, 0x1000);
      assert.equal(plain.pageTable!.lookup(0x1000)!.lo & 0x800, 0, 'as the real 6.12 dumps: no SNP');
      assert.equal(k.enforceCacheCoherency(plain), false, 'has_mappings');
      const cc = k.allocPagingDomain({ stage: 'second' });
      assert.equal(k.enforceCacheCoherency(cc), true);
      k.map(cc, 0x1000, 0x9000_0000, 0x1000);
      assert.equal(cc.pageTable!.lookup(0x1000)!.lo & 0x800, 0x800);
      const dev = k.device('6a:01.0');
      const fs = dev.ridDomain!;
      const did = k.didOf(fs, dev.iommu)!;
      const stream = descriptorsDuring(m, () => assert.equal(k.enforceCacheCoherency(fs), true));
      assert.equal((pasidEntry(k, 0x6a08, 0)[2]! >>> 24) & 1, 1, 'PGSNP (bit 88)');
      // intel_pasid_setup_page_snoop_control -> intel_pasid_flush_present.
      assert.deepEqual(stream, [`pc_inv G=1 DID=${did} PASID=0`, `p_iotlb_inv G=2 DID=${did} PASID=0`, 'dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=ALL S=1']);
    });
  });

  describe('page requests: prq_event_thread, iommu_report_device_fault, intel_iommu_page_response', () => {
    const req = { rid: 0x6a08, read: true, write: false, exec: false, priv: false };

    it('bad requests print the IOMMU\'s name and the descriptor with %08llx, always; only a last-in-group one is answered INVALID', () => {
      const { m, k, unit } = platform();
      let stream: string[] = [];
      const lines = linesDuring(k, () => {
        stream = descriptorsDuring(m, () => {
          unit.receivePageRequest({ ...req, pasid: 2, address: 0x5000, priv: true, lastInGroup: false, prgIndex: 4 });
          unit.receivePageRequest({ ...req, address: 0x8000_0000_0000, lastInGroup: true, prgIndex: 5 });
          k.serviceInterrupts();
        });
      });
      // qw0 = RID 0x6a08 << 16 | PASID present (bit 8) | type 1, PASID 2 and PM (bit 53) above; qw1 = address | PRGI << 3 | LPIG (bit 2) | R.
      assert.deepEqual(lines, [
        'IOMMU: dmar0: Page request in Privilege Mode',
        'dmar0: Invalid page request: 2000026a080101 00005021',
        'IOMMU: dmar0: Address is not canonical',
        'dmar0: Invalid page request: 6a080001 80000000002d',
      ]);
      assert.deepEqual(stream, ['page_grp_resp RID=0x6a08 PP=0 PASID=0 PRGI=5 LPIG=1 RC=1']);
    });

    it('no fault handler: each request is answered INVALID with its own last-page flag, a partial one too (iopf_error_response)', () => {
      const { m, k, unit } = platform();
      const stream = descriptorsDuring(m, () => {
        unit.receivePageRequest({ ...req, address: 0x5000, lastInGroup: false, prgIndex: 7 });
        unit.receivePageRequest({ ...req, address: 0x6000, lastInGroup: true, prgIndex: 7 });
        k.serviceInterrupts();
      });
      assert.deepEqual(stream, ['page_grp_resp RID=0x6a08 PP=0 PASID=0 PRGI=7 LPIG=0 RC=1', 'page_grp_resp RID=0x6a08 PP=0 PASID=0 PRGI=7 LPIG=1 RC=1']);
    });

    it('after a refused RID attach, requests without PASID still reach the old domain\'s handler (the core keeps its attach handle)', () => {
      const { m, k, unit } = platform();
      const dev = k.device('6a:01.0');
      const old = k.allocPagingDomain({ stage: 'first' });
      const seen: PageFault[] = [];
      old.iopfHandler = (g) => {
        seen.push(...g);
        return 'deferred';
      };
      k.attachDevice(old, dev);
      const wide = k.allocPagingDomain({ stage: 'first' });
      Object.defineProperty(wide, 'addressWidth', { value: 57 });
      throwsErrno(() => k.attachDevice(wide, dev), 'EINVAL');
      assert.equal(dev.ridDomain, undefined);
      const stream = descriptorsDuring(m, () => {
        unit.receivePageRequest({ ...req, address: 0x4000, lastInGroup: true, prgIndex: 9 });
        k.serviceInterrupts();
      });
      assert.deepEqual(stream, [], 'no INVALID: the group waits for its handler\'s answer');
      assert.deepEqual(seen.map((f) => [f.address, f.prgIndex]), [[0x4000, 9]]);
      k.pageResponse(dev, undefined, 9, 'success');
    });

    it('a handler that fails is iommu_report_device_fault\'s err_abort: its dev_warn line, then IOMMU_PAGE_RESP_FAILURE as RC 2, which the device takes as Response Failure (a finding, since dmesg says nothing of it)', () => {
      const { m, k } = platform();
      const dev = k.device('6a:01.0');
      const d = k.allocPagingDomain({ stage: 'first' });
      d.iopfHandler = () => 'failure';
      k.attachDevicePasid(d, dev, 3);
      let stream: string[] = [];
      const lines = linesDuring(k, () => (stream = descriptorsDuring(m, () => assert.ok(k.dma(dev, { pasid: 3, addr: 0x7000 }).pageRequest))));
      // io-pgfault.c: dev_warn_ratelimited(dev, "iopf with pasid %d aborted\n", fault->prm.pasid), no dev_fmt.
      assert.deepEqual(lines, ['pci 0000:6a:01.0: iopf with pasid 3 aborted']);
      assert.equal(stream.length, 1);
      assert.match(stream[0]!, /^page_grp_resp RID=0x6a08 PP=1 PASID=3 PRGI=\d+ LPIG=1 RC=2$/);
      assert.deepEqual(k.findings.map((f) => [f.kind, f.function, f.unit, f.logLine]), [['silent', 'intel_iommu_page_response', 'dmar0', k.log.length]]);
      assert.match(k.findings[0]!.message, /^0000:6a:01\.0: IOMMU_PAGE_RESP_FAILURE went out as Response Code 2 .*PRI is disabled/);
      assert.equal(dev.endpoint.priResponseFailure, true);
      assert.equal(k.dma(dev, { pasid: 3, addr: 0x8000 }).pageRequest, undefined, 'the device sends no more page requests');
    });

    it('release and re-probe after a Response Failure: pci_disable_pri leaves RF set; pci_reset_pri and pci_enable_pri at probe clear it, and page requests flow again', () => {
      // drivers/pci/ats.c: pci_disable_pri clears PRI Control.Enable only; pci_reset_pri writes Control = Reset;
      // pci_enable_pri wants PRI Status.Stopped, then writes Enable. The VT-d driver resets before enabling (6.1
      // iommu_enable_pci_caps, 6.12 intel_iommu_enable_iopf). PCIe PRI Status: RF is RW1C, and Enable going from
      // clear to set clears the status flags; Stopped is Enable clear with no page request outstanding.
      const { m, k } = platform();
      const failing = k.allocPagingDomain({ stage: 'first' });
      failing.iopfHandler = () => 'failure';
      k.attachDevicePasid(failing, '6a:01.0', 3);
      assert.ok(k.dma('6a:01.0', { pasid: 3, addr: 0x7000 }).pageRequest);
      const ep = m.endpoints.find((e) => e.name === '0000:6a:01.0')!;
      assert.deepEqual([ep.priEnabled, ep.priStatus], [true, 0x0001], 'RF set, Enable still set');
      assert.equal(k.dma('6a:01.0', { pasid: 3, addr: 0x8000 }).pageRequest, undefined, 'no page request while RF is set');
      k.detachDevicePasid('6a:01.0', 3);
      k.releaseDevice('6a:01.0');
      assert.deepEqual([ep.priEnabled, ep.priStatus], [false, 0x0101], 'after pci_disable_pri: RF still set, Stopped');
      const dev = k.probeDevice(ep);
      assert.deepEqual([dev.priEnabled, ep.priEnabled, ep.priStatus], [true, true, 0], 'RF cleared by the Enable transition');
      const working = k.allocPagingDomain({ stage: 'first' });
      const seen: number[] = [];
      working.iopfHandler = (g) => {
        seen.push(...g.map((f) => f.address));
        return 'success';
      };
      k.attachDevicePasid(working, dev, 3);
      const stream = descriptorsDuring(m, () => assert.ok(k.dma(dev, { pasid: 3, addr: 0x9000 }).pageRequest, 'page requests flow again'));
      assert.deepEqual(seen, [0x9000]);
      assert.equal(stream.length, 1);
      assert.match(stream[0]!, /^page_grp_resp RID=0x6a08 PP=1 PASID=3 PRGI=\d+ LPIG=1 RC=0$/);
      assert.deepEqual([ep.priStatus, ep.outstandingRequests], [0, 0], 'the Success response completed the group');
    });

    it('iopf_group_alloc takes every partial request of the device with the PRG index, whatever its PASID; IOMMU_PAGE_RESP_FAILURE goes out as RC 2', () => {
      const { m, k, unit } = platform();
      const dev = k.device('6a:01.0');
      const d = k.allocPagingDomain({ stage: 'first' });
      const groups: number[][] = [];
      d.iopfHandler = (g) => {
        groups.push(g.map((f) => f.pasid ?? -1));
        return 'failure';
      };
      k.attachDevicePasid(d, dev, 3);
      k.attachDevicePasid(d, dev, 4);
      const stream = descriptorsDuring(m, () => {
        unit.receivePageRequest({ ...req, pasid: 3, address: 0x5000, lastInGroup: false, prgIndex: 6 });
        unit.receivePageRequest({ ...req, pasid: 4, address: 0x6000, lastInGroup: true, prgIndex: 6 });
        k.serviceInterrupts();
      });
      assert.deepEqual(groups, [[3, 4]]);
      // intel_iommu_page_response writes the core's code as is: IOMMU_PAGE_RESP_FAILURE is 2.
      assert.deepEqual(stream, ['page_grp_resp RID=0x6a08 PP=1 PASID=4 PRGI=6 LPIG=1 RC=2']);
      assert.deepEqual(k.findings.map((f) => f.function), ['intel_iommu_page_response']);
    });
  });

  describe('legacy mode: ATS across attaches (domain_context_mapping_one, iommu_enable_pci_caps, device_block_translation)', () => {
    /** A legacy-mode unit with caching mode (QEMU's, as in the real 6.12 VM) and an ATS device at 00:04.0. */
    function legacy(version?: KernelOptions['version'], features: VtdFeatures = { cachingMode: true }, cap?: (c: U64) => U64) {
      const m = new Machine();
      const built = capabilitiesOf({ scalableMode: false, ...features });
      m.addUnit(vtdUnits, { name: 'dmar0', features: { scalableMode: false, ...features }, ...(cap ? { cap: cap(built.cap) } : {}) });
      m.addEndpoint('00:04.0', { ats: { invalidateQueueDepth: 0 } }, 'dmar0');
      const k = new IommuKernel(m, { version, scalableMode: false }).boot();
      const dev = k.device('00:04.0');
      const ctx = () => {
        const a = contextEntryAddress(dev.iommu.contextTable(0, 0x20), 0x20, false);
        return { lo: m.memory.readLo(a), hi: m.memory.readLo(a + 8) };
      };
      return { m, k, dev, ctx };
    }

    it('6.12: ATS comes on after a paging domain\'s context entry (TT 01) and goes off before the block clears it, so the clear has no device-TLB flush; pass-through never enables it', () => {
      const { m, k, dev, ctx } = legacy('6.12');
      const d = dev.ridDomain!;
      const did = k.didOf(d, dev.iommu)!;
      assert.deepEqual([dev.atsEnabled, dev.endpoint.atsEnabled, (ctx().lo >>> 2) & 3], [true, true, 1], 'the default domain: TT 01 (device TLB), ATS on');
      assert.deepEqual([...d.tags.values()].map((t) => t.type), ['iotlb', 'devtlb'], 'cache_tag_assign_domain after ATS: a DEVTLB tag');
      const block = descriptorsDuring(m, () => k.detachDevice(dev));
      // domain_context_clear_one -> intel_context_flush_no_pasid: context cache (entry's DID), IOTLB DSI; ATS is already off.
      assert.deepEqual(block, [`cc_inv G=3 DID=${did} SID=0x20 FM=0`, `iotlb_inv G=2 DID=${did}`]);
      assert.deepEqual([dev.atsEnabled, dev.endpoint.atsEnabled, ctx()], [false, false, { lo: 0, hi: 0 }]);
      const pt = descriptorsDuring(m, () => k.attachDevice(k.identity, dev));
      // context_setup_pass_through: TT 10, DID 1, AW = msagaw; context_present_cache_flush with caching mode.
      assert.deepEqual(pt, ['cc_inv G=3 DID=0 SID=0x20 FM=0', 'iotlb_inv G=2 DID=1']);
      assert.deepEqual([(ctx().lo >>> 2) & 3, (ctx().hi >>> 8) & 0xffff, ctx().hi & 7, dev.atsEnabled], [2, 1, dev.iommu.msagaw, false]);
      const d2 = k.allocPagingDomain({ device: dev });
      k.attachDevice(d2, dev);
      assert.equal(dev.atsEnabled, true, 'a paging domain enables it again');
      k.map(d2, 0x1000, 0x9000_0000, 0x1000);
      const did2 = k.didOf(d2, dev.iommu)!;
      assert.deepEqual(descriptorsDuring(m, () => k.unmap(d2, 0x1000, 0x1000)), [`iotlb_inv G=3 DID=${did2} ADDR=0x1000 AM=0 IH=1`, 'dev_tlb_inv SID=0x20 QDEP=0 ADDR=0x1000 S=0']);
    });

    it('6.15 and later: ATS goes off after domain_context_clear, so the block flushes the whole device TLB first (5518f239aff1)', () => {
      const { m, k, dev } = legacy('6.17');
      const did = k.didOf(dev.ridDomain!, dev.iommu)!;
      const block = descriptorsDuring(m, () => k.detachDevice(dev));
      assert.deepEqual(block, [`cc_inv G=3 DID=${did} SID=0x20 FM=0`, `iotlb_inv G=2 DID=${did}`, 'dev_tlb_inv SID=0x20 QDEP=0 ADDR=ALL S=1']);
      assert.equal(dev.atsEnabled, false);
    });

    it('without caching mode a new entry gets a write-buffer flush where CAP.RWBF asks for one (context_present_cache_flush, pasid_flush_caches)', () => {
      const wbf = (m: Machine, fn: () => void) => {
        m.events.startRecording();
        fn();
        return m.events.recorded().filter((e) => e.type === 'register-write' && e.register === 'GCMD' && (BigInt(e.value) >> 27n) & 1n).length;
      };
      const rwbf = (c: U64) => new U64(c.hi, (c.lo | 0x10) >>> 0);
      const a = legacy('6.12', {}, rwbf);
      assert.equal(wbf(a.m, () => a.k.attachDevice(a.k.identity, a.dev)), 1, 'the pass-through context entry');
      const b = legacy('6.12', {});
      assert.equal(wbf(b.m, () => b.k.attachDevice(b.k.identity, b.dev)), 0, 'no CAP.RWBF: nothing');
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: {}, cap: rwbf(capabilitiesOf({}).cap) });
      m.addEndpoint('00:02.0', {}, 'dmar0');
      const k = new IommuKernel(m).boot();
      assert.equal(wbf(m, () => k.attachDevice(k.identity, '00:02.0')), 1, 'a PASID entry in scalable mode (pasid_flush_caches)');
    });
  });
});

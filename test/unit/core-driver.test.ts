import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import type { EndpointCapabilities } from '../../src/core/hw/endpoint';
import { Machine } from '../../src/core/hw/machine';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { IoPageTable } from '../../src/core/vtd/page-table';
import type { Domain } from '../../src/core/driver/domain';
import { KernelError } from '../../src/core/driver/errors';
import { IommuKernel, type KernelOptions } from '../../src/core/driver/kernel';
import { dmarFaultLines } from '../../src/core/driver/log';
import { PasidAllocator, PasidContext } from '../../src/core/driver/pasid-alloc';
import { psiAligned } from '../../src/core/driver/flush';
import { attachmentTree } from '../../src/core/driver/tree';
import { descriptorsDuring } from '../support/descriptors';

const ATS_PRI_PASID: EndpointCapabilities = { ats: {}, pri: {}, pasid: { width: 20 } };

function platform(o: { features?: VtdFeatures; kernel?: KernelOptions; devices?: Record<string, EndpointCapabilities> } = {}) {
  const m = new Machine();
  m.addVtdUnit({ name: 'dmar0', regBase: 0xaa3f_c000, features: { supervisorRequests: true, ...o.features } });
  for (const [bdf, caps] of Object.entries(o.devices ?? { '6a:01.0': ATS_PRI_PASID, '6b:00.0': { ats: {}, pasid: { width: 20 } }, '00:02.0': {} })) m.addEndpoint(bdf, caps, 'dmar0');
  const k = new IommuKernel(m, o.kernel).boot();
  return { m, k };
}

const throwsErrno = (fn: () => unknown, errno: string) =>
  assert.throws(fn, (e: unknown) => e instanceof KernelError && e.errno === errno, `expected ${errno}`);

/** Guest first-level tables in GPA space: the table pages are mapped 1:1 in the nest parent so the walk can read them. */
function guestTable(k: IommuKernel, parent: Domain, maps: [gva: number, gpa: number][]): IoPageTable {
  const pages: number[] = [];
  const t = new IoPageTable(k.machine.memory, { format: 'first-level', levels: 4, allocPage: () => (pages.push(k.machine.memory.allocPage()), pages.at(-1)!) });
  for (const [gva, gpa] of maps) t.map(gva, gpa, 4096, { read: true, write: true, user: true });
  for (const p of pages) k.map(parent, p, p, 4096, { read: true, write: true });
  return t;
}

describe('driver model: the Linux IOMMU core and VT-d driver', () => {
  it('boots like Linux: boot lines, scalable mode, a first-stage default DMA domain per device', () => {
    const { k } = platform();
    const text = k.log.lines.map((l) => l.text);
    assert.ok(text.includes('DMAR: Host address width 46'));
    assert.ok(text.includes('DMAR: DRHD base: 0x000000aa3fc000 flags: 0x0'));
    assert.ok(text.some((t) => /^DMAR: dmar0: reg_base_addr aa3fc000 ver 6:0 cap [0-9a-f]+ ecap [0-9a-f]+$/.test(t)));
    assert.ok(text.includes('DMAR: dmar0: Using Queued invalidation'));
    const rid1 = k.device('6a:01.0');
    assert.equal(rid1.ridDomain?.type, 'paging');
    assert.equal(rid1.ridDomain?.stage, 'first');
    assert.deepEqual([rid1.atsEnabled, rid1.priEnabled, rid1.pasidEnabled, rid1.maxPasids], [true, true, true, 2 ** 20]);
    assert.equal(k.device('00:02.0').maxPasids, 0);
  });

  it('prints a DMA fault in the current kernel format, after the fault status line', () => {
    const { k } = platform();
    const out = k.dma('00:02.0', { addr: 0x1000_0000 });
    assert.ok(!out.result.ok && out.result.reason === 0x71);
    const text = k.log.lines.map((l) => l.text);
    assert.deepEqual(text.slice(-2), [
      'DMAR: DRHD: handling fault status reg 2',
      'DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x10000000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
    ]);
    assert.match(k.log.dmesg().split('\n').at(-2)!, /^\[ +0\.\d{6}\] DMAR: \[DMA Read NO_PASID\]/);
    assert.equal(k.machine.unit('dmar0') && k.iommus[0]!.unit.pendingFaults().length, 0, 'the handler cleared the record');
  });

  it('ratelimits the fault printk and reports what it suppressed', () => {
    const { k } = platform();
    // dmar_fault spends one ratelimit budget (10 per 5 s) on the status line and each fault line alike.
    for (let i = 0; i < 30; i++) k.dma('00:02.0', { addr: 0x1000_0000 + i * 4096 });
    assert.equal(k.log.lines.filter((l) => l.text.includes('Request device')).length, 5);
    k.log.tick(6);
    k.dma('00:02.0', { addr: 0x2000_0000 });
    assert.ok(k.log.lines.some((l) => l.text === 'dmar_fault: 50 callbacks suppressed'));
  });

  describe('seed 001: RID vs RID+PASID attachment', () => {
    const X = 0x10, Y = 0x11, A = 0x20, B = 0x21, C = 0x22;
    const label = (p: number) => ({ [X]: 'PASID-x', [Y]: 'PASID-y', [A]: 'PASID-a', [B]: 'PASID-b', [C]: 'PASID-c' })[p] ?? `PASID ${p}`;

    function seed() {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const rid2 = k.device('6b:00.0');
      rid1.label = 'RID1';
      rid2.label = 'RID2';
      const domain1 = rid1.ridDomain!;
      domain1.name = 'domain1';
      const domain2 = k.allocPagingDomain({ name: 'domain2', description: 'vm1, GPA', nestParent: true });
      const domain3 = k.allocPagingDomain({ name: 'domain3', description: 'vm2, GPA', nestParent: true });
      k.attachDevicePasid(domain2, rid1, X);
      k.attachDevicePasid(domain3, rid1, Y);
      k.attachDevice(domain3, rid2);
      k.map(domain1, 0x1000_0000, 0x4_4000_0000, 0x20_0000);
      k.map(domain2, 0x1_0000_0000, 0x10_0000_0000, 0x4000_0000);
      k.map(domain3, 0x1_0000_0000, 0x20_0000_0000, 0x4000_0000);
      return { m, k, rid1, rid2, domain1, domain2, domain3 };
    }

    it('yields the seed\'s attachment tree, and each (RID, PASID) translates through its domain', () => {
      const { k, rid1 } = seed();
      assert.equal(
        attachmentTree(rid1, k.domains, label),
        [
          'RID1 --- domain1 (default, IOVA)',
          '     |      |',
          '     |      |-- [RID1]',
          '     |',
          '     |-- domain2 (vm1, GPA)',
          '     |      |',
          '     |      |-- [RID1, PASID-x]',
          '     |',
          '     |-- domain3 (vm2, GPA)',
          '     |      |',
          '     |      |-- [RID1, PASID-y]',
          '     |      |',
          '     |      |-- [RID2]',
        ].join('\n'),
      );
      const out = (dev: string, pasid: number | undefined, addr: number) => {
        const r = k.dma(dev, { addr, ...(pasid !== undefined ? { pasid } : {}) }).result;
        return r.ok ? r.output : `fault 0x${r.reason.toString(16)}`;
      };
      assert.equal(out('6a:01.0', undefined, 0x1000_0040), '0x440000040');
      assert.equal(out('6a:01.0', X, 0x1_0000_2008), '0x1000002008');
      assert.equal(out('6a:01.0', Y, 0x1_0000_3010), '0x2000003010');
      assert.equal(out('6b:00.0', undefined, 0x1_0000_3010), '0x2000003010');
      // Each address space is isolated: vm1's GPA is not reachable through the IOVA domain.
      assert.match(out('6a:01.0', undefined, 0x1_0000_2000), /^fault/);
    });

    it('after guest SVA, nested tables bound at PASIDs appear under their parents and translate through both stages', () => {
      const { k, rid1, rid2, domain2, domain3 } = seed();
      const bind = (parent: Domain, dev: typeof rid1, pasid: number, note: string, gva: number, gpa: number) =>
        k.bindPgtablePasid(parent, dev, guestTable(k, parent, [[gva, gpa]]).root, pasid, { note });
      bind(domain2, rid1, A, 'nested for vm1 process1', 0x4000_0000, 0x1_0000_5000);
      bind(domain2, rid1, B, 'nested for vm1 process2', 0x4000_0000, 0x1_0000_6000);
      bind(domain3, rid1, C, 'nested for vm2 process1', 0x4000_0000, 0x1_0000_7000);
      bind(domain3, rid2, A, 'nested for vm2 process2', 0x4000_0000, 0x1_0000_8000);
      assert.equal(
        attachmentTree(rid1, k.domains, label),
        [
          'RID1 --- domain1 (default, IOVA)',
          '     |      |',
          '     |      |-- [RID1]',
          '     |',
          '     |-- domain2 (vm1, GPA)',
          '     |      |',
          '     |      |-- [RID1, PASID-x]',
          '     |      |-- [RID1, PASID-a] // nested for vm1 process1',
          '     |      |-- [RID1, PASID-b] // nested for vm1 process2',
          '     |',
          '     |-- domain3 (vm2, GPA)',
          '     |      |',
          '     |      |-- [RID1, PASID-y]',
          '     |      |-- [RID1, PASID-c] // nested for vm2 process1',
          '     |      |',
          '     |      |-- [RID2]',
          '     |      |-- [RID2, PASID-a] // nested for vm2 process2',
        ].join('\n'),
      );
      const out = (dev: string, pasid: number, addr: number) => {
        const r = k.dma(dev, { addr, pasid }).result;
        return r.ok ? r.output : `fault 0x${r.reason.toString(16)}`;
      };
      // GVA 0x4000_0000 -> guest's GPA -> host's HPA, a different process behind each (RID, PASID).
      assert.equal(out('6a:01.0', A, 0x4000_0010), '0x1000005010');
      assert.equal(out('6a:01.0', B, 0x4000_0010), '0x1000006010');
      assert.equal(out('6a:01.0', C, 0x4000_0010), '0x2000007010');
      assert.equal(out('6b:00.0', A, 0x4000_0010), '0x2000008010', 'the same PASID value means a different space on RID2');
    });
  });

  describe('invalidation streams, descriptor by descriptor', () => {
    it('unmap of a first-stage domain: PASID-based PSI (Linux alignment, IH = 1) then the ATS device TLB', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const d = rid1.ridDomain!;
      const did = k.didOf(d, rid1.iommu);
      k.map(d, 0x5000, 0x9000_0000, 0x2000);
      assert.deepEqual(descriptorsDuring(m, () => k.unmap(d, 0x5000, 0x2000), { waits: true }), [
        `p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x4000 AM=2 IH=1`,
        'dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=0x5000 S=1',
        'inv_wait SW=1 FN=0 PD=0',
      ]);
    });

    it('computes PSI-aligned ranges exactly as calculate_psi_aligned_address', () => {
      assert.deepEqual(psiAligned(0x10000, 0x1ffff), { addr: 0x10000, mask: 4 });
      assert.deepEqual(psiAligned(0x8000, 0xafff), { addr: 0x8000, mask: 2 });
      assert.deepEqual(psiAligned(0x5000, 0x6fff), { addr: 0x4000, mask: 2 });
      assert.deepEqual(psiAligned(0x3000, 0x4fff), { addr: 0x0, mask: 3 });
    });

    it('unmap of a second-stage domain: IOTLB PSI, or domain-selective when the mask exceeds CAP.MAMV', () => {
      const { m, k } = platform({ features: { maxAddressMask: 2 } });
      const dev = k.device('00:02.0');
      const d = k.allocPagingDomain({ stage: 'second' });
      k.attachDevice(d, dev);
      const did = k.didOf(d, dev.iommu);
      k.map(d, 0x10_0000, 0x9000_0000, 0x10_0000);
      assert.deepEqual(descriptorsDuring(m, () => k.unmap(d, 0x10_0000, 0x4000)), [`iotlb_inv G=3 DID=${did} ADDR=0x100000 AM=2 IH=1`]);
      assert.deepEqual(descriptorsDuring(m, () => k.unmap(d, 0x10_8000, 0x8000)), [`iotlb_inv G=2 DID=${did}`]);
    });

    it('map: nothing on real hardware; with caching mode, an IOTLB PSI for second-stage domains only', () => {
      const plain = platform();
      const d0 = plain.k.allocPagingDomain({ stage: 'second' });
      plain.k.attachDevice(d0, '00:02.0');
      assert.deepEqual(descriptorsDuring(plain.m, () => plain.k.map(d0, 0x1000, 0x9000_0000, 0x1000)), []);
      const cm = platform({ features: { cachingMode: true } });
      const sl = cm.k.allocPagingDomain({ stage: 'second' });
      const fl = cm.k.allocPagingDomain({ stage: 'first' });
      cm.k.attachDevice(sl, '00:02.0');
      cm.k.attachDevice(fl, '6b:00.0');
      const did = cm.k.didOf(sl, cm.k.iommus[0]!);
      // Pages 3 and 4 straddle an 8 KiB boundary: the aligned block is 0x0-0x7fff (AM = 3), as Linux computes it.
      assert.deepEqual(descriptorsDuring(cm.m, () => cm.k.map(sl, 0x3000, 0x9000_0000, 0x2000)), [`iotlb_inv G=3 DID=${did} ADDR=0x0 AM=3 IH=0`]);
      assert.deepEqual(descriptorsDuring(cm.m, () => cm.k.map(fl, 0x3000, 0x9000_0000, 0x2000)), []);
    });

    it('attach under caching mode flushes the new PASID entry: PASID-cache PSI, then PASID-based IOTLB', () => {
      const { m, k } = platform({ features: { cachingMode: true } });
      const d = k.allocPagingDomain({ stage: 'first' });
      const dev = k.device('6b:00.0');
      const stream = descriptorsDuring(m, () => k.attachDevicePasid(d, dev, 7), { waits: true });
      const did = k.didOf(d, dev.iommu);
      assert.deepEqual(stream, [`pc_inv G=1 DID=${did} PASID=7`, 'inv_wait SW=1 FN=0 PD=0', `p_iotlb_inv G=2 DID=${did} PASID=7`, 'inv_wait SW=1 FN=0 PD=0']);
    });

    it('PASID detach: PASID cache, IOTLB by PGTT, the whole device TLB, then the page-request drain', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const fl = k.allocPagingDomain({ stage: 'first' });
      const sl = k.allocPagingDomain({ stage: 'second' });
      fl.iopfHandler = () => 'success'; // IOPF on: the detach drains page requests
      k.attachDevicePasid(fl, rid1, 5);
      k.attachDevicePasid(sl, rid1, 6);
      const rid = k.didOf(rid1.ridDomain!, rid1.iommu);
      const dfl = k.didOf(fl, rid1.iommu);
      const dsl = k.didOf(sl, rid1.iommu);
      assert.deepEqual(descriptorsDuring(m, () => k.detachDevicePasid(rid1, 5), { waits: true }), [
        `pc_inv G=1 DID=${dfl} PASID=5`, 'inv_wait SW=1 FN=0 PD=0',
        `p_iotlb_inv G=2 DID=${dfl} PASID=5`, 'inv_wait SW=1 FN=0 PD=0',
        'p_dev_tlb_inv SID=0x6a08 PASID=5 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=0',
        'inv_wait SW=0 FN=1 PD=0', `p_iotlb_inv G=2 DID=${rid} PASID=5`, 'p_dev_tlb_inv SID=0x6a08 PASID=5 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=1',
      ]);
      // A second-stage entry is flushed domain-selectively; without IOPF there is no drain.
      assert.deepEqual(descriptorsDuring(m, () => k.detachDevicePasid(rid1, 6)), [`pc_inv G=1 DID=${dsl} PASID=6`, `iotlb_inv G=2 DID=${dsl}`, 'p_dev_tlb_inv SID=0x6a08 PASID=6 QDEP=0 ADDR=ALL S=1']);
    });

    it('a nest parent\'s unmap flushes every nested child by the child\'s DID, and the child\'s whole device TLB', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const parent = k.allocPagingDomain({ nestParent: true });
      k.map(parent, 0x1_0000_0000, 0x10_0000_0000, 0x20_0000);
      const nested = k.bindPgtablePasid(parent, rid1, guestTable(k, parent, [[0x4000_0000, 0x1_0000_1000]]).root, 9);
      const child = k.didOf(nested, rid1.iommu);
      // 4 KiB out of a 2 MiB page unmaps the whole page, and Linux flushes [iova, iova + 2 MiB - 1]: AM = 10.
      assert.deepEqual(descriptorsDuring(m, () => k.unmap(parent, 0x1_0000_1000, 0x1000)), [`iotlb_inv G=3 DID=${child} ADDR=0x100000000 AM=10 IH=1`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=ALL S=1']);
      // The guest's own invalidation (HWPT_INVALIDATE, VTD_S1) is PASID-based with the nested DID.
      let r: ReturnType<IommuKernel['invalidateNested']> | undefined;
      assert.deepEqual(descriptorsDuring(m, () => (r = k.invalidateNested(nested, [{ addr: 0x4000_0000, npages: 1, leaf: true }, { addr: 0x123, npages: 1 }]))), [
        `p_iotlb_inv G=3 DID=${child} PASID=9 ADDR=0x40000000 AM=0 IH=1`,
        'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=0x40000000 S=0',
      ]);
      assert.equal(r!.handled, 1);
      assert.equal(r!.error?.errno, 'EINVAL', 'the unaligned second entry fails; entry_num says one was done');
    });

    it('forgetting an invalidation leaves a stale translation that the hardware model reports', () => {
      const { k } = platform();
      const d = k.device('00:02.0').ridDomain!;
      k.map(d, 0x1000, 0x9000_0000, 0x1000);
      assert.ok(k.dma('00:02.0', { addr: 0x1000 }).result.ok);
      k.unmap(d, 0x1000, 0x1000, { skipInvalidation: true });
      const stale = k.dma('00:02.0', { addr: 0x1000 }).result;
      assert.ok(stale.ok && stale.stale?.cache === 'iotlb', 'the IOTLB still translates the unmapped page, flagged stale');
      // The ATS device: the IOTLB is flushed but the device-TLB invalidation is forgotten.
      const rid1 = k.device('6a:01.0');
      k.map(rid1.ridDomain!, 0x1000, 0x9000_0000, 0x1000);
      assert.equal(k.dma(rid1, { addr: 0x1000 }).path, 'ats-fill');
      k.unmap(rid1.ridDomain!, 0x1000, 0x1000, { skipInvalidation: 'device-tlb' });
      const dt = k.dma(rid1, { addr: 0x1000 });
      assert.equal(dt.path, 'device-tlb');
      assert.equal(dt.result.stale?.cache, 'device-tlb');
    });
  });

  describe('PASID allocation', () => {
    const dev = (name: string, bits: number) => ({ name, maxPasids: 2 ** bits });

    it('global PASIDs are unique, fit every device they are for, and never collide with per-device ones', () => {
      fc.assert(
        fc.property(fc.array(fc.oneof(fc.constant('g'), fc.constant('d'), fc.constant('fg'), fc.constant('fd')), { maxLength: 60 }), (ops) => {
          const a = new PasidAllocator();
          const small = dev('small', 5);
          const big = dev('big', 20);
          const globals: number[] = [];
          const locals: number[] = [];
          for (const op of ops) {
            if (op === 'g') {
              try {
                const p = a.allocGlobal([small, big]);
                assert.ok(p >= 1 && p < small.maxPasids, 'valid on both devices');
                assert.ok(!globals.includes(p) && !locals.includes(p));
                globals.push(p);
              } catch (e) {
                assert.equal((e as KernelError).errno, 'ENOSPC');
                assert.ok(globals.length + locals.filter((l) => l < 32).length >= 31);
              }
            } else if (op === 'd') {
              const p = a.allocDevice(big);
              assert.ok(!globals.includes(p) && !locals.includes(p));
              locals.push(p);
            } else if (op === 'fg' && globals.length) a.freeGlobal(globals.pop()!);
            else if (op === 'fd' && locals.length) a.freeDevice(big, locals.pop()!);
          }
          for (const g of globals) a.freeGlobal(g);
          for (const l of locals) a.freeDevice(big, l);
          assert.equal(a.global.size, 0, 'clean release');
        }),
      );
    });

    it('reports exhaustion and devices without PASIDs clearly', () => {
      const a = new PasidAllocator();
      const d = dev('tiny', 1); // PASIDs 0 and 1
      assert.equal(a.allocGlobal(d), 1);
      throwsErrno(() => a.allocGlobal(d), 'ENOSPC');
      throwsErrno(() => a.allocGlobal({ name: 'nopasid', maxPasids: 0 }), 'EOPNOTSUPP');
      throwsErrno(() => a.takeDevice(dev('x', 4), 16), 'ERANGE');
    });

    it('seed 003\'s hybrid split: local PASIDs below the minimum, host-global ones above it on every device', () => {
      const a = new PasidAllocator();
      const ctx = new PasidContext('ioasid_fd', a, 1024);
      const wq1 = dev('wq1', 20);
      const wq2 = dev('wq2', 14);
      ctx.addDevice(wq1);
      ctx.addDevice(wq2);
      ctx.useLocal(wq1, 5);
      ctx.useLocal(wq2, 5); // local PASIDs are per device
      throwsErrno(() => ctx.useLocal(wq1, 5), 'EBUSY');
      throwsErrno(() => ctx.useLocal(wq1, 1024), 'ERANGE');
      const g = ctx.allocGlobal();
      assert.ok(g >= 1024 && g < wq2.maxPasids, 'one global PASID valid on both devices (ENQCMD)');
      throwsErrno(() => ctx.setGlobalMin(2048), 'EBUSY');
      throwsErrno(() => ctx.addDevice(dev('narrow', 10)), 'ERANGE');
      ctx.freeGlobal(g);
      ctx.releaseLocal(wq1, 5);
      ctx.releaseLocal(wq2, 5);
      ctx.setGlobalMin(2048);
      assert.ok(ctx.allocGlobal() >= 2048);
    });
  });

  describe('fault log formats by kernel version', () => {
    const read = { sid: 0x6a08, address: '10000000', reason: 0x06, write: false };
    const sm = { sid: 0x6a08, pasid: 5, address: '10000000', reason: 0x71, write: false };
    it('4.1: two lines, decimal reason', () => {
      assert.deepEqual(dmarFaultLines(read, '4.1'), ['DMAR:[DMA Read] Request device [6a:01.0] fault addr 10000000 ', 'DMAR:[fault reason 06] PTE Read access is not set']);
    });
    it('4.2 to 5.4: one line, decimal reason', () => {
      assert.deepEqual(dmarFaultLines({ ...read, write: true, reason: 5 }, '5.4'), ['DMAR: [DMA Write] Request device [6a:01.0] fault addr 10000000 [fault reason 05] PTE Write access is not set']);
    });
    it('5.5 to 5.13: PASID field, ffffffff without PASID, decimal scalable-mode codes', () => {
      assert.deepEqual(dmarFaultLines(read, '5.10'), ['DMAR: [DMA Read] Request device [6a:01.0] PASID ffffffff fault addr 10000000 [fault reason 06] PTE Read access is not set']);
      assert.deepEqual(dmarFaultLines(sm, '5.10'), ['DMAR: [DMA Read] Request device [6a:01.0] PASID 5 fault addr 10000000 [fault reason 113] SM: Present bit in first-level paging entry is clear']);
    });
    it('5.14 to 5.19: NO_PASID and the 0x-prefixed bus', () => {
      assert.deepEqual(dmarFaultLines(read, '5.15'), ['DMAR: [DMA Read NO_PASID] Request device [0x6a:0x01.0] fault addr 0x10000000 [fault reason 0x06] PTE Read access is not set']);
    });
    it('6.0 and later: the current format', () => {
      assert.deepEqual(dmarFaultLines(sm, '6.8'), ['DMAR: [DMA Read PASID 0x5] Request device [6a:01.0] fault addr 0x10000000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear']);
      assert.deepEqual(dmarFaultLines({ sid: 0x00f8, address: '0', reason: 0x25, write: false, index: 0x1f }, '6.8'), ['DMAR: [INTR-REMAP] Request device [00:1f.0] fault index 0x1f [fault reason 0x25] Blocked a compatibility format interrupt request']);
    });
    it('an older kernel prints its own format for a real fault', () => {
      const { k } = platform({ kernel: { version: '5.4' } });
      k.dma('00:02.0', { addr: 0x1000_0000, write: true });
      assert.equal(k.log.lines.at(-1)!.text, 'DMAR: [DMA Write] Request device [00:02.0] fault addr 10000000 [fault reason 113] SM: Present bit in first-level paging entry is clear');
    });
  });

  describe('page requests, SVA and the fault handler chain', () => {
    it('SVA: a device fault on a process page goes PRQ -> iopf -> handle_mm_fault -> Success, and the retry translates', () => {
      const { m, k } = platform();
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x10_000);
      const h = k.svaBind('6a:01.0', p);
      assert.equal(h.pasid, 1, 'the first global PASID');
      let stream: string[] = [];
      let out!: ReturnType<IommuKernel['dma']>;
      stream = descriptorsDuring(m, () => (out = k.dma('6a:01.0', { pasid: h.pasid, addr: 0x7000_1234, write: true })));
      assert.equal(out.pageRequest?.outcome, 'queued');
      assert.deepEqual(stream, [`page_grp_resp RID=0x6a08 PP=1 PASID=1 PRGI=${out.pageRequest!.prgIndex} LPIG=1 RC=0`]);
      const retry = k.dma('6a:01.0', { pasid: h.pasid, addr: 0x7000_1234, write: true });
      assert.ok(retry.result.ok, 'the page was faulted in');
      assert.equal(retry.result.output, '0x' + (p.pageTable.lookup(0x7000_1000)!.output + 0x234).toString(16));
      // Outside any mapping: Invalid Request.
      const bad = descriptorsDuring(m, () => k.dma('6a:01.0', { pasid: h.pasid, addr: 0x9000_0000 }));
      assert.match(bad[0]!, /page_grp_resp .* RC=1$/);
      // munmap: the MMU notifier flushes the IOTLB and the device TLB for the process's PASID (DID 1).
      assert.deepEqual(descriptorsDuring(m, () => p.munmap(0x7000_0000, 0x2000)), ['p_iotlb_inv G=3 DID=1 PASID=1 ADDR=0x70000000 AM=1 IH=0', 'p_dev_tlb_inv SID=0x6a08 PASID=1 QDEP=0 ADDR=0x70000000 S=1']);
      k.svaUnbind(h);
      assert.equal(k.device('6a:01.0').pasidDomains.size, 0);
      p.exit();
      assert.equal(k.pasids.global.size, 0, 'the PASID goes back when the process exits');
    });

    it('seed 000: host PASID faults carry the guest PASID as private data, and a deferred response is sent later', () => {
      const { k } = platform();
      const rid1 = k.device('6a:01.0');
      const parent = k.allocPagingDomain({ nestParent: true });
      const nested = k.bindPgtablePasid(parent, rid1, guestTable(k, parent, []).root, 0x30, { privateData: { gpasid: 7 } });
      const seen: { pasid?: number; gpasid?: number | string }[] = [];
      nested.iopfHandler = (group) => {
        for (const f of group) seen.push({ pasid: f.pasid, gpasid: f.privateData?.gpasid });
        return 'deferred';
      };
      const out = k.dma(rid1, { pasid: 0x30, addr: 0x4000_0000 });
      assert.equal(out.pageRequest?.outcome, 'queued');
      assert.deepEqual(seen, [{ pasid: 0x30, gpasid: 7 }]);
      assert.equal(k.pendingGroups.size, 1);
      assert.ok(rid1.endpoint.pendingGroups.length === 1, 'the device still waits');
      k.pageResponse(rid1, 0x30, out.pageRequest!.prgIndex, 'success');
      assert.equal(rid1.endpoint.pendingGroups.length, 0);
      throwsErrno(() => k.pageResponse(rid1, 0x30, out.pageRequest!.prgIndex, 'success'), 'EINVAL');
    });

    it('detach drains: a group still waiting for its response is answered INVALID', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const d = k.allocPagingDomain({ stage: 'first' });
      d.iopfHandler = () => 'deferred';
      k.attachDevicePasid(d, rid1, 4);
      const out = k.dma(rid1, { pasid: 4, addr: 0x8000 });
      const stream = descriptorsDuring(m, () => k.detachDevicePasid(rid1, 4));
      assert.ok(stream.includes(`page_grp_resp RID=0x6a08 PP=1 PASID=4 PRGI=${out.pageRequest!.prgIndex} LPIG=1 RC=1`));
      assert.equal(rid1.endpoint.pendingGroups.length, 0);
    });

    it('unrecoverable faults reach the domain\'s fault handlers with the attachment\'s private data', () => {
      const { k } = platform();
      const dev = k.device('00:02.0');
      const d = k.allocPagingDomain({ stage: 'second' });
      k.attachDevice(d, dev, { privateData: { owner: 'vm7' } });
      const faults: string[] = [];
      d.setFaultHandler((f) => faults.push(`${f.device.name} ${f.address} 0x${f.reason.toString(16)} ${f.privateData?.owner}`));
      k.dma(dev, { addr: 0x5000 });
      assert.deepEqual(faults, ['0000:00:02.0 0x5000 0x79 vm7']);
    });
  });

  describe('errors as the kernel returns them', () => {
    it('EBUSY for a double PASID attach, EINVAL for a PASID out of range, EOPNOTSUPP without PASID support', () => {
      const { k } = platform();
      const d = k.allocPagingDomain();
      k.attachDevicePasid(d, '6a:01.0', 3);
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 3), 'EBUSY');
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 2 ** 20), 'EINVAL');
      throwsErrno(() => k.attachDevicePasid(d, '00:02.0', 3), 'EOPNOTSUPP');
      throwsErrno(() => k.map(d, 0x1001, 0, 0x1000), 'EINVAL');
      throwsErrno(() => k.map(d, 2 ** 48 - 0x1000, 0, 0x2000), 'EFAULT');
      k.map(d, 0x1000, 0x2000, 0x1000);
      throwsErrno(() => k.map(d, 0x1000, 0x3000, 0x1000), 'EEXIST');
      throwsErrno(() => k.freeDomain(d), 'EBUSY');
      throwsErrno(() => k.replaceDevicePasid(d, '6a:01.0', 9), 'EINVAL');
    });

    it('allocates for a device from its own IOMMU, and refuses a domain another unit cannot use (EINVAL)', () => {
      const m = new Machine();
      m.addVtdUnit({ name: 'dmar0', features: {} });
      m.addVtdUnit({ name: 'dmar1', features: { scalableMode: false } });
      m.addEndpoint('6a:01.0', { pasid: { width: 20 } }, 'dmar0');
      m.addEndpoint('00:02.0', {}, 'dmar1');
      const k = new IommuKernel(m).boot();
      assert.equal(k.device('6a:01.0').ridDomain?.stage, 'first', 'the default domain follows the device\'s unit');
      assert.equal(k.device('00:02.0').ridDomain?.stage, 'second');
      const fl = k.allocPagingDomain({ device: '6a:01.0' });
      assert.equal(fl.stage, 'first');
      throwsErrno(() => k.attachDevice(fl, '00:02.0'), 'EINVAL');
      assert.equal(k.allocPagingDomain().stage, 'second', 'without a device every unit must agree');
      throwsErrno(() => k.allocPagingDomain({ nestParent: true }), 'EOPNOTSUPP');
      const parent = k.allocPagingDomain({ nestParent: true, device: '6a:01.0' });
      throwsErrno(() => k.attachDevice(parent, '00:02.0'), 'EINVAL');
    });

    it('replaces a PASID attachment, flushing with the old domain\'s DID', () => {
      const { m, k } = platform();
      const a = k.allocPagingDomain({ stage: 'first' });
      const b = k.allocPagingDomain({ stage: 'first' });
      k.map(a, 0x1000, 0xa000, 0x1000);
      k.map(b, 0x1000, 0xb000, 0x1000);
      k.attachDevicePasid(a, '6b:00.0', 3);
      assert.equal(k.dma('6b:00.0', { pasid: 3, addr: 0x1000 }).result.ok && 'ok', 'ok');
      const dev = k.device('6b:00.0');
      const oldDid = k.didOf(a, dev.iommu);
      const stream = descriptorsDuring(m, () => k.replaceDevicePasid(b, dev, 3));
      assert.deepEqual(stream.slice(0, 2), [`pc_inv G=1 DID=${oldDid} PASID=3`, `p_iotlb_inv G=2 DID=${oldDid} PASID=3`]);
      const r = k.dma('6b:00.0', { pasid: 3, addr: 0x1000 }).result;
      assert.ok(r.ok && r.output === '0xb000');
      assert.equal(a.attachmentCount, 0);
    });
  });
});

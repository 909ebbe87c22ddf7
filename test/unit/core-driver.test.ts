import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Machine } from '../../src/core/hw/machine';
import { U64 } from '../../src/core/u64';
import type { Domain } from '../../src/core/driver/domain';
import { KernelError } from '../../src/core/driver/errors';
import { IommuKernel } from '../../src/core/driver/kernel';
import { dmarFaultLines } from '../../src/core/driver/log';
import { PasidAllocator, PasidContext } from '../../src/core/driver/pasid-alloc';
import { psiAligned } from '../../src/core/driver/flush';
import { Descs } from '../../src/core/driver/qi';
import { attachmentTree } from '../../src/core/driver/tree';
import { descriptorsDuring } from '../support/descriptors';
import { pasidEntryAddress } from '../../src/core/vtd/tables';
import { Perm } from '../../src/core/vtd/caches';
import { guestTable } from '../support/guest-table';
import { ATS_PRI_PASID, platform, throwsErrno } from '../support/kernel-platform';
import { vtdUnits } from '../../src/core/vtd/factory';

const dmaOk = (k: IommuKernel, dev: string, addr: number) => k.dma(dev, { addr }).result.ok;

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

  it('boots the real 6.12 VM (legacy mode, caching mode) with its lines from Queued invalidation to the banner: batching disallowed, each device added to its IOMMU group (a slot\'s functions share one), then the banner', () => {
    // QEMU 7.2's intel-iommu as the real VM had it (dmar0's CAP and ECAP from its boot line), its PCI devices.
    const m = new Machine({ hostAddressWidth: 48 });
    m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xfed9_0000, cap: U64.fromHex('d2008c222f0686')!, ecap: U64.fromHex('f00f4e')! });
    for (const bdf of ['00:00.0', '00:01.0', '00:02.0', '00:1f.0', '00:1f.2', '00:1f.3']) m.addEndpoint(bdf, {}, 'dmar0');
    m.addEndpoint('01:00.0', { ats: {} }, 'dmar0');
    const k = new IommuKernel(m, { scalableMode: false }).boot();
    const real = readFileSync(join(__dirname, '../../../test/fixtures/real-vm/custom612-legacy/dmesg-boot.txt'), 'utf8')
      .split('\n')
      .map((l) => l.replace(/^\[ *\d+\.\d{6}\] /, ''));
    const from = (lines: string[]) => lines.slice(lines.indexOf('DMAR: dmar0: Using Queued invalidation'), lines.indexOf('DMAR: Intel(R) Virtualization Technology for Directed I/O') + 1);
    const iommuLines = from(real).filter((l) => l.startsWith('DMAR') || l.includes('iommu group'));
    assert.equal(iommuLines.length, 10);
    assert.deepEqual(from(k.log.lines.map((l) => l.text)), iommuLines);
    assert.ok(k.log.lines.some((l) => l.text === 'DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap d2008c222f0686 ecap f00f4e'));
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
    it('4.1: one record of two lines behind the dmar: prefix, decimal reason', () => {
      assert.deepEqual(dmarFaultLines(read, '4.1'), ['dmar: DMAR:[DMA Read] Request device [6a:01.0] fault addr 10000000 \nDMAR:[fault reason 06] PTE Read access is not set']);
    });
    it('4.7 to 5.3: one line, decimal reason', () => {
      assert.deepEqual(dmarFaultLines({ ...read, write: true, reason: 5 }, '5.3'), ['DMAR: [DMA Write] Request device [6a:01.0] fault addr 10000000 [fault reason 05] PTE Write access is not set']);
    });
    it('5.4 to 5.13: PASID field, ffffffff without PASID, decimal scalable-mode codes', () => {
      assert.deepEqual(dmarFaultLines(read, '5.10'), ['DMAR: [DMA Read] Request device [6a:01.0] PASID ffffffff fault addr 10000000 [fault reason 06] PTE Read access is not set']);
      assert.deepEqual(dmarFaultLines(sm, '5.10'), ['DMAR: [DMA Read] Request device [6a:01.0] PASID 5 fault addr 10000000 [fault reason 113] SM: Present bit in first-level paging entry is clear']);
    });
    it('5.14 only: NO_PASID and the 0x-prefixed bus', () => {
      assert.deepEqual(dmarFaultLines(read, '5.14'), ['DMAR: [DMA Read NO_PASID] Request device [0x6a:0x01.0] fault addr 0x10000000 [fault reason 0x06] PTE Read access is not set']);
    });
    it('5.15 and later: the current format', () => {
      assert.deepEqual(dmarFaultLines(sm, '6.8'), ['DMAR: [DMA Read PASID 0x5] Request device [6a:01.0] fault addr 0x10000000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear']);
      assert.deepEqual(dmarFaultLines({ sid: 0x00f8, address: '0', reason: 0x25, write: false, index: 0x1f }, '6.8'), ['DMAR: [INTR-REMAP] Request device [00:1f.0] fault index 0x1f [fault reason 0x25] Blocked a compatibility format interrupt request']);
    });
    it('an older kernel prints its own format for a real fault, and "Unknown" for a scalable-mode code before its table existed', () => {
      const { k } = platform({ kernel: { version: '5.3' } });
      k.dma('00:02.0', { addr: 0x1000_0000, write: true });
      assert.equal(k.log.lines.at(-1)!.text, 'DMAR: [DMA Write] Request device [00:02.0] fault addr 10000000 [fault reason 113] Unknown');
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
      // The fault handler is the domain's from its allocation (iommufd sets it before any attach), so the
      // attach turns IOPF on for the device.
      const nested = k.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, addrWidth: 48, pgtblAddr: guestTable(k, parent, []).root });
      const seen: { pasid?: number; gpasid?: number | string }[] = [];
      nested.iopfHandler = (group) => {
        for (const f of group) seen.push({ pasid: f.pasid, gpasid: f.privateData?.gpasid });
        return 'deferred';
      };
      k.attachDevicePasid(nested, rid1, 0x30, { privateData: { gpasid: 7 } });
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
    it('EBUSY for a double PASID attach, EINVAL for PASID 0 or a PASID out of range; map checks', () => {
      const { k } = platform();
      const d = k.allocPagingDomain();
      k.attachDevicePasid(d, '6a:01.0', 3);
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 3), 'EBUSY');
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 2 ** 20), 'EINVAL');
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 0), 'EINVAL');
      throwsErrno(() => k.map(d, 0x1001, 0, 0x1000), 'EINVAL');
      throwsErrno(() => k.map(d, 2 ** 48 - 0x1000, 0, 0x2000), 'EFAULT');
      k.map(d, 0x1000, 0x2000, 0x1000);
      k.map(d, 0x1000, 0x3000, 0x1000); // __domain_mapping keeps the entry it finds and succeeds
      assert.equal(d.pageTable!.lookup(0x1000)!.output, 0x2000);
      throwsErrno(() => k.freeDomain(d), 'EBUSY');
      throwsErrno(() => k.replaceDevicePasid(d, '6a:01.0', 9), 'EINVAL');
    });

    it('allocates for a device from its own IOMMU, and refuses a domain another unit cannot use (EINVAL)', () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: {} });
      m.addUnit(vtdUnits, { name: 'dmar1', features: { scalableMode: false } });
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
  describe('dirty tracking: SSADE, D-bit harvesting, the IOTLB sync', () => {
    const DIRTY = { secondLevelAccessDirty: true };
    /** SSADE (bit 9) of a device's PASID entry. */
    const ssade = (k: IommuKernel, which: string, pasid = 0) => {
      const dev = k.device(which);
      return (k.machine.memory.readLo(pasidEntryAddress(dev.pasidTables.get(Math.floor(pasid / 64))!, pasid)) & 0x200) !== 0;
    };
    /** D (bit 9) of the leaf mapping `iova`. */
    const dirtyBit = (d: Domain, iova: number) => (d.pageTable!.lookup(iova)!.lo & 0x200) !== 0;

    it('turning tracking on sets SSADE in the PASID entry of every attached RID, newest first: PASID cache, IOTLB DSI, device TLB', () => {
      const { m, k } = platform({ features: DIRTY });
      const d = k.allocPagingDomain({ dirtyTracking: true });
      assert.deepEqual([d.stage, d.dirtyOps, d.dirtyTracking], ['second', true, false]);
      k.attachDevice(d, '00:02.0');
      k.attachDevice(d, '6a:01.0');
      assert.deepEqual([ssade(k, '00:02.0'), ssade(k, '6a:01.0')], [false, false], 'tracking starts off');
      const did = k.didOf(d, k.iommus[0]!);
      const perDevice = (ats: string[]) => [`pc_inv G=1 DID=${did} PASID=0`, 'inv_wait SW=1 FN=0 PD=0', `iotlb_inv G=2 DID=${did}`, 'inv_wait SW=1 FN=0 PD=0', ...ats];
      const on = descriptorsDuring(m, () => k.setDirtyTracking(d, true), { waits: true });
      assert.deepEqual(on, [...perDevice(['dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=0']), ...perDevice([])]);
      assert.deepEqual([ssade(k, '00:02.0'), ssade(k, '6a:01.0'), d.dirtyTracking], [true, true, true]);
      assert.deepEqual(descriptorsDuring(m, () => k.setDirtyTracking(d, true)), [], 'no change, no flush');
      // A device attached while tracking is on gets SSADE in its new entry.
      const late = k.allocPagingDomain({ dirtyTracking: true });
      k.attachDevice(late, '6b:00.0');
      k.setDirtyTracking(late, true);
      k.attachDevice(d, '6b:00.0');
      assert.equal(ssade(k, '6b:00.0'), true);
      const off = descriptorsDuring(m, () => k.setDirtyTracking(d, false));
      assert.equal(off.filter((x) => x.startsWith('pc_inv')).length, 3);
      assert.deepEqual([ssade(k, '00:02.0'), ssade(k, '6a:01.0'), ssade(k, '6b:00.0')], [false, false, false]);
      throwsErrno(() => k.setDirtyTracking(k.allocPagingDomain({ stage: 'second' }), true), 'EOPNOTSUPP');
    });

    it('a DMA write after tracking is on is reported dirty at leaf granularity, cleared, flushed with IH = 1; the next write sets D again', () => {
      const { m, k } = platform({ features: DIRTY });
      const d = k.allocPagingDomain({ dirtyTracking: true });
      k.attachDevice(d, '00:02.0');
      const did = k.didOf(d, k.iommus[0]!);
      k.map(d, 0x10_0000, 0x9000_0000, 0x4000);
      k.map(d, 0x20_0000, 0x4000_0000, 0x20_0000); // one 2 MiB leaf
      assert.equal(d.pageTable!.lookup(0x20_0000)!.size, 0x20_0000);
      k.dma('00:02.0', { addr: 0x10_1000, write: true });
      assert.equal(dirtyBit(d, 0x10_1000), false, 'no D while tracking is off');
      k.setDirtyTracking(d, true);
      k.dma('00:02.0', { addr: 0x10_1000, write: true });
      k.dma('00:02.0', { addr: 0x10_2000 });
      k.dma('00:02.0', { addr: 0x2f_0123, write: true });
      assert.deepEqual([dirtyBit(d, 0x10_1000), dirtyBit(d, 0x10_2000), dirtyBit(d, 0x20_0000)], [true, false, true], 'writes set D, a read does not');
      const kept = k.readAndClearDirty(d, 0x10_0000, 0x30_0000, { noClear: true });
      assert.deepEqual(kept.records, [{ iova: 0x10_1000, size: 0x1000 }, { iova: 0x20_0000, size: 0x20_0000 }]);
      assert.equal(dirtyBit(d, 0x10_1000), true, 'NO_CLEAR leaves D set');
      let h!: ReturnType<IommuKernel['readAndClearDirty']>;
      assert.deepEqual(descriptorsDuring(m, () => (h = k.readAndClearDirty(d, 0x10_0000, 0x30_0000))), [], 'the harvest itself flushes nothing');
      assert.deepEqual(h.records, kept.records);
      assert.deepEqual(h.gather, { start: 0x10_1000, end: 0x3f_ffff });
      assert.deepEqual([dirtyBit(d, 0x10_1000), dirtyBit(d, 0x20_0000)], [false, false]);
      // iommu_iotlb_sync over the gather: cache_tag_flush_range(0x101000, 0x3fffff, IH = 1).
      assert.deepEqual(descriptorsDuring(m, () => k.iotlbSync(d, h.gather), { waits: true }), [`iotlb_inv G=3 DID=${did} ADDR=0x0 AM=10 IH=1`, 'inv_wait SW=1 FN=0 PD=0']);
      assert.deepEqual(k.readAndClearDirty(d, 0x10_0000, 0x30_0000).records, [], 'read clears');
      assert.deepEqual(descriptorsDuring(m, () => k.iotlbSync(d, k.readAndClearDirty(d, 0, 0x40_0000).gather)), [], 'an empty gather flushes nothing');
      const again = k.dma('00:02.0', { addr: 0x10_1000, write: true }).result;
      assert.ok(again.ok && again.source === 'walk' && again.stale === undefined);
      assert.equal(dirtyBit(d, 0x10_1000), true, 'dirty again after the harvest and flush');
    });

    it('without the flush, a cached dirty translation sets no D bit: the hardware does not update A/D for what it holds as dirty', () => {
      const { k } = platform({ features: DIRTY });
      const d = k.allocPagingDomain({ dirtyTracking: true });
      k.attachDevice(d, '00:02.0');
      k.map(d, 0x10_0000, 0x9000_0000, 0x1000);
      k.setDirtyTracking(d, true);
      k.dma('00:02.0', { addr: 0x10_0000, write: true });
      const h = k.readAndClearDirty(d, 0x10_0000, 0x1000);
      assert.equal(h.records.length, 1);
      const leaf = d.pageTable!.lookup(0x10_0000)!;
      const cached = () => k.iommus[0]!.unit.capture().tlb.find((t) => t.did === k.didOf(d, k.iommus[0]!) && t.entry.vpn === 0x100)?.entry;
      assert.equal(cached()!.perms & Perm.D, Perm.D, 'the IOTLB holds the translation as dirty');
      // Forgotten iotlbSync: the write hits the cached dirty translation, and the IOMMU does not set D again.
      const r = k.dma('00:02.0', { addr: 0x10_0000, write: true }).result;
      assert.ok(r.ok && r.source === 'iotlb', 'served from the IOTLB');
      assert.equal(cached()!.perms & Perm.D, Perm.D, 'still cached dirty');
      assert.equal(dirtyBit(d, 0x10_0000), false, 'the write is lost to the next harvest');
      // The model reports it: a translation cached as dirty depends on D staying set in memory.
      assert.equal(r.stale?.cache, 'iotlb');
      assert.equal(r.stale?.entryAddress, `0x${[...d.pageTable!.leaves()].find((l) => l.iova === 0x10_0000)!.path.at(-1)!.addr.toString(16)}`);
      assert.match(r.stale!.message, /changed without the invalidation/);
      assert.deepEqual(k.readAndClearDirty(d, 0x10_0000, 0x1000).records, []);
      assert.equal(leaf.lo & 0x200, 0);
      // With the flush the device's next write walks again and sets D.
      k.iotlbSync(d, h.gather);
      const w = k.dma('00:02.0', { addr: 0x10_0000, write: true }).result;
      assert.ok(w.ok && w.source === 'walk' && w.stale === undefined);
      assert.equal(dirtyBit(d, 0x10_0000), true);
    });

    it('harvest rules: EOPNOTSUPP without dirty ops, EINVAL with tracking off unless clear-only; the walk steps by entry', () => {
      const { k } = platform({ features: DIRTY });
      const d = k.allocPagingDomain({ dirtyTracking: true });
      k.attachDevice(d, '00:02.0');
      k.map(d, 0x1000, 0x9000_0000, 0x1000);
      throwsErrno(() => k.readAndClearDirty(k.allocPagingDomain({ stage: 'second' }), 0, 0x1000), 'EOPNOTSUPP');
      throwsErrno(() => k.readAndClearDirty(d, 0, 0x2000), 'EINVAL');
      assert.deepEqual(k.readAndClearDirty(d, 0, 0x2000, { clearOnly: true }).records, []);
      k.setDirtyTracking(d, true);
      k.dma('00:02.0', { addr: 0x1000, write: true });
      // From 0x800 the walk reaches the 4 KiB leaf of 0x0 (not present), then 0x1800 - inside the dirty page, reported from there.
      assert.deepEqual(k.readAndClearDirty(d, 0x800, 0x2000, { noClear: true }).records, [{ iova: 0x1800, size: 0x1000 }]);
      // A range in an empty 1 GiB region is one step of the non-present PDPE's span.
      assert.deepEqual(k.readAndClearDirty(d, 0x4000_0000, 0x4000_0000).records, []);
    });

    it('a dirty nest parent: tracking covers the RIDs of its nested domains (nested DID); a nested PASID keeps its SSADE', () => {
      const { m, k } = platform({ features: DIRTY });
      const parent = k.allocPagingDomain({ nestParent: true, dirtyTracking: true });
      const table = guestTable(k, parent, []);
      const onRid = k.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, pgtblAddr: table.root, addrWidth: 48 });
      k.attachDevice(onRid, '6b:00.0');
      const onPasid = k.bindPgtablePasid(parent, '6a:01.0', table.root, 7);
      const child = k.didOf(onRid, k.iommus[0]!);
      const stream = descriptorsDuring(m, () => k.setDirtyTracking(parent, true));
      assert.deepEqual(stream, [`pc_inv G=1 DID=${child} PASID=0`, `iotlb_inv G=2 DID=${child}`, 'dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=ALL S=1']);
      assert.deepEqual([ssade(k, '6b:00.0'), ssade(k, '6a:01.0', 7)], [true, false]);
      assert.ok(onPasid.parent === parent);
      // A nested attach made while the parent tracks gets SSADE at setup.
      k.detachDevicePasid('6a:01.0', 7);
      k.attachDevicePasid(onPasid, '6a:01.0', 7);
      assert.equal(ssade(k, '6a:01.0', 7), true);
    });

    it('a dirty domain is refused on a PASID and on an IOMMU without SLADS (EINVAL)', () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: DIRTY });
      m.addUnit(vtdUnits, { name: 'dmar1', features: {} });
      m.addEndpoint('6a:01.0', ATS_PRI_PASID, 'dmar0');
      m.addEndpoint('00:02.0', {}, 'dmar1');
      const k = new IommuKernel(m).boot();
      const d = k.allocPagingDomain({ dirtyTracking: true, device: '6a:01.0' });
      throwsErrno(() => k.allocPagingDomain({ dirtyTracking: true }), 'EOPNOTSUPP');
      throwsErrno(() => k.attachDevicePasid(d, '6a:01.0', 5), 'EINVAL');
      throwsErrno(() => k.attachDevice(d, '00:02.0'), 'EINVAL');
      k.attachDevice(d, '6a:01.0');
    });
  });

  describe('driver fixes: what Linux does', () => {
    it('map into a nest parent: a read-only leaf is EINVAL with the ratelimited erratum 772415 line; a leaf with neither permission is EINVAL anywhere, silently', () => {
      const { k } = platform();
      const parent = k.allocPagingDomain({ nestParent: true });
      const plain = k.allocPagingDomain({ stage: 'second' });
      const line = 'DMAR: Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)';
      const before = k.log.length;
      throwsErrno(() => k.map(parent, 0x1000, 0x9000_0000, 0x1000, { read: true, write: false }), 'EINVAL');
      assert.deepEqual(k.log.lines.slice(before).map((l) => l.text), [line]);
      throwsErrno(() => k.map(parent, 0x1000, 0x9000_0000, 0x1000, { read: false, write: false }), 'EINVAL');
      throwsErrno(() => k.map(plain, 0x1000, 0x9000_0000, 0x1000, { read: false, write: false }), 'EINVAL');
      assert.equal(k.log.length, before + 1, 'no line for the permission-less leaf (checked first)');
      assert.equal(parent.pageTable!.lookup(0x1000), undefined);
      k.map(parent, 0x1000, 0x9000_0000, 0x1000, { read: false, write: true });
      k.map(plain, 0x1000, 0x9000_0000, 0x1000, { read: true, write: false });
      // pr_err_ratelimited: 10 lines per 5 s; the first after the window says how many were dropped.
      for (let i = 0; i < 14; i++) throwsErrno(() => k.map(parent, 0x10_0000, 0x9000_0000, 0x1000, { read: true }), 'EINVAL');
      assert.equal(k.log.lines.slice(before).filter((l) => l.text === line).length, 10);
      k.log.tick(6);
      throwsErrno(() => k.map(parent, 0x10_0000, 0x9000_0000, 0x1000, { read: true }), 'EINVAL');
      assert.deepEqual(k.log.lines.slice(-2).map((l) => l.text), ['__domain_mapping: 5 callbacks suppressed', line]);
    });

    it('a domain that takes page faults on a device without PRI is ENODEV, on the RID (left blocked, intel_iommu_attach_device) and on a PASID; SVA without PRI needs no IOPF', () => {
      const { k } = platform();
      const dev = k.device('6b:00.0'); // ATS and PASID, no PRI
      const before = dev.ridDomain;
      const fl = k.allocPagingDomain({ stage: 'first' });
      fl.iopfHandler = () => 'deferred';
      throwsErrno(() => k.attachDevice(fl, dev), 'ENODEV');
      assert.equal(dev.ridDomain, undefined, 'device_block_translation ran before iopf_for_domain_set refused');
      assert.equal(dev.coreRidDomain, before, 'the core still records the old domain');
      throwsErrno(() => k.attachDevicePasid(fl, dev, 3), 'ENODEV');
      assert.equal(dev.pasidDomains.size, 0);
      const parent = k.allocPagingDomain({ nestParent: true });
      // A nested domain with a bad S1 width: the IOPF check (ENODEV) comes before the setup's checks (EINVAL).
      const nested = k.allocNestedDomain(parent, { sre: false, eafe: false, wpe: false, pgtblAddr: guestTable(k, parent, []).root, addrWidth: 64 });
      nested.iopfHandler = () => 'deferred';
      throwsErrno(() => k.attachDevicePasid(nested, dev, 3), 'ENODEV');
      nested.iopfHandler = undefined;
      throwsErrno(() => k.attachDevicePasid(nested, dev, 3), 'EINVAL');
      const p = k.newProcess('app');
      p.mmap(0x7000_0000, 0x1000);
      const h = k.svaBind(dev, p);
      assert.equal(dev.iopfEnabled, 0, 'the device handles its own faults');
      k.svaUnbind(h);
      k.attachDevicePasid(fl, '6a:01.0', 3);
      assert.equal(k.device('6a:01.0').iopfEnabled, 1);
    });

    it('a refused RID attach leaves the RID blocked (intel_iommu_attach_device blocks before paging_domain_compatible); the core keeps the old domain, so attaching it again changes nothing', () => {
      const { k, m } = platform({ devices: { '00:02.0': {}, '00:03.0': {} } });
      const dev = k.device('00:02.0');
      const old = dev.ridDomain!;
      k.map(old, 0x10_0000, 0x9000_0000, 0x1000);
      assert.equal(dmaOk(k, '00:02.0', 0x10_0000), true);
      // A domain this IOMMU cannot address (57 bits on a 48-bit unit, as one allocated on another unit would be):
      // EINVAL from paging_domain_compatible.
      const wide = k.allocPagingDomain({ stage: 'first' });
      Object.defineProperty(wide, 'addressWidth', { value: 57 });
      const stream = descriptorsDuring(m, () => throwsErrno(() => k.attachDevice(wide, dev), 'EINVAL'));
      // The tear-down of the old entry ran (PASID cache, PASID-based IOTLB of the old DID), nothing was set up.
      const did = 2;
      assert.deepEqual(stream, [`pc_inv G=1 DID=${did} PASID=0`, `p_iotlb_inv G=2 DID=${did} PASID=0`]);
      assert.equal(dmaOk(k, '00:02.0', 0x10_0000), false, 'DMA is blocked');
      assert.equal(dev.ridDomain, undefined);
      assert.equal(old.attachedAt(dev, undefined), undefined, 'the old domain no longer has the device (nor its cache tags)');
      assert.equal(old.tags.size, 0);
      assert.equal(dev.coreRidDomain, old);
      // __iommu_group_set_domain_internal: group->domain == new_domain is success without calling the driver.
      const again = descriptorsDuring(m, () => k.attachDevice(old, dev));
      assert.deepEqual(again, []);
      assert.equal(dmaOk(k, '00:02.0', 0x10_0000), false, 'still blocked: the driver was not called');
      // Another domain attaches normally.
      const other = k.allocPagingDomain({ stage: 'first' });
      k.map(other, 0x10_0000, 0x9000_0000, 0x1000);
      k.attachDevice(other, dev);
      assert.equal(dmaOk(k, '00:02.0', 0x10_0000), true);
      assert.equal(dev.coreRidDomain, other);
    });

    it('a nested RID attach refused by intel_pasid_setup_nested (SRE without ECAP.SRS) logs its line, leaves the RID blocked and gives back the DID, tags and IOPF', () => {
      const { k } = platform({ features: { supervisorRequests: false } });
      const dev = k.device('6a:01.0');
      const parent = k.allocPagingDomain({ nestParent: true });
      const nested = k.allocNestedDomain(parent, { sre: true, eafe: false, wpe: false, pgtblAddr: guestTable(k, parent, []).root, addrWidth: 48 });
      nested.iopfHandler = () => 'deferred';
      const before = k.log.lines.length;
      throwsErrno(() => k.attachDevice(nested, dev), 'EINVAL');
      // pasid.c: pr_err_ratelimited("No supervisor request support on %s\n", iommu->name), pr_fmt "DMAR: ".
      assert.deepEqual(k.log.lines.slice(before).map((l) => l.text), ['DMAR: No supervisor request support on dmar0']);
      assert.equal(dev.ridDomain, undefined);
      assert.deepEqual([nested.dids.size, nested.tags.size, parent.tags.size, dev.iopfEnabled], [0, 0, 0, 0]);
    });

    it('replacing a fault-taking RID domain by another paging domain keeps the IOPF reference (6.17 turns it off only in blocking_domain_attach_dev)', () => {
      const { k } = platform();
      const dev = k.device('6a:01.0');
      const faulting = k.allocPagingDomain({ stage: 'first' });
      faulting.iopfHandler = () => 'deferred';
      k.attachDevice(faulting, dev);
      assert.equal(dev.iopfEnabled, 1);
      k.attachDevice(k.allocPagingDomain({ stage: 'first' }), dev);
      assert.equal(dev.iopfEnabled, 1, 'intel_iommu_attach_device calls iopf_for_domain_set for the new domain only');
      k.attachDevice(faulting, dev);
      assert.equal(dev.iopfEnabled, 2);
      k.detachDevice(dev);
      assert.equal(dev.iopfEnabled, 1, 'blocking_domain_attach_dev: iopf_for_domain_remove of the current domain');
    });

    it('qi_submit_sync on an IQE at the batch\'s first descriptor: qi_dump_fault\'s lines (6.12 dmar.c), the wait copied over the slot, -EINVAL; the queue goes on', () => {
      const { k } = platform();
      const qi = k.iommus[0]!.qi;
      const unit = k.iommus[0]!.unit;
      assert.equal(qi.submit([Descs.iecGlobal()]), 'ok');
      const index = unit.invalidationQueue.tail;
      const before = k.log.lines.length;
      // An IEC invalidation of 2^31 entries: IM above ECAP.MHMV (15) is a reserved-field violation (IQEI 4).
      assert.equal(qi.submit([Descs.iec(0, 31)]), 'invalid-descriptor');
      const prior = (qi.statusBase + ((index + 255) % 256) * 4).toString(16);
      assert.deepEqual(k.log.lines.slice(before).map((l) => l.text), [
        'DMAR: VT-d detected Invalidation Queue Error: Reason 4',
        // QI_IEC_TYPE | QI_IEC_SELECTIVE | QI_IEC_IM(31) | QI_IEC_IIDEX(0)
        'DMAR: QI HEAD: Interrupt Entry Cache Invalidation qw0 = 0xf8000014, qw1 = 0x0',
        // the previous submission's wait: QI_IWD_STATUS_DATA(QI_DONE) | QI_IWD_STATUS_WRITE | QI_IWD_TYPE
        `DMAR: QI PRIOR: Invalidation Wait qw0 = 0x200000025, qw1 = 0x${prior}`,
        'DMAR: Invalidation Queue Error (IQE) cleared',
      ]);
      assert.equal(unit.readRegister('FSTS').lo & (1 << 4), 0);
      assert.equal(qi.submit([Descs.iecGlobal()]), 'ok');
      assert.deepEqual([index, index + 1, index + 2, index + 3].map((i) => qi.status(i % 256)), [0, 0, 0, 0], 'every slot back to QI_FREE');
    });

    it('qi_check_fault on an IQE at a later descriptor of the batch: 6.12 never claims it (IQH is not the first slot) and spins, a located finding; 7.3 repairs it (754d07b940c4)', () => {
      for (const version of ['6.12', '7.3'] as const) {
        const { k } = platform({ kernel: { version } });
        const qi = k.iommus[0]!.qi;
        const unit = k.iommus[0]!.unit;
        const index = unit.invalidationQueue.tail;
        const before = k.log.lines.length;
        // Slot index: a global IEC (valid); index + 1: IM 31 above ECAP.MHMV, a reserved field (IQEI 4).
        const r = qi.submit([Descs.iecGlobal(), Descs.iec(0, 31)]);
        const lines = k.log.lines.slice(before).map((l) => l.text);
        // qi_dump_fault (6.12 dmar.c): the reason, then the descriptor at IQH and the one before it.
        assert.deepEqual(lines.slice(0, 3), [
          'DMAR: VT-d detected Invalidation Queue Error: Reason 4',
          'DMAR: QI HEAD: Interrupt Entry Cache Invalidation qw0 = 0xf8000014, qw1 = 0x0',
          'DMAR: QI PRIOR: Interrupt Entry Cache Invalidation qw0 = 0x4, qw1 = 0x0',
        ]);
        if (version === '6.12') {
          assert.equal(r, 'hang');
          assert.equal(lines.length, 3, 'no "cleared" line: the IQE stays set');
          assert.equal(unit.readRegister('FSTS').lo & (1 << 4), 1 << 4);
          assert.deepEqual(k.findings.map((f) => [f.kind, f.function, f.unit, f.logLine]), [['hang', 'qi_submit_sync', 'dmar0', before + 3]]);
          assert.match(k.findings[0]!.message, new RegExp(`wait descriptor at slot ${index + 2} \\(batch from slot ${index}\\) never completes; FSTS 0x10, IQH at slot ${index + 1}`));
          assert.equal(qi.submit([Descs.iecGlobal()]), 'hang', 'the queue lock stays held');
        } else {
          assert.equal(r, 'invalid-descriptor');
          assert.deepEqual(lines.slice(3), ['DMAR: Invalidation Queue Error (IQE) cleared']);
          assert.deepEqual(k.findings, []);
          assert.equal(unit.readRegister('FSTS').lo & (1 << 4), 0);
          assert.equal(qi.submit([Descs.iecGlobal()]), 'ok');
        }
      }
    });

    it('an ITE: the SID from IQERCD[47:32], HEAD and PRIOR, the cleared line; the wait the hardware had not fetched completes, so the flush returns success', () => {
      const { k, m } = platform();
      const dev = k.device('6a:01.0');
      const d = dev.ridDomain!;
      k.map(d, 0x10_0000, 0x9000_0000, 0x1000);
      m.endpoints.find((e) => e.sid === dev.sid)!.invalidationTimeout = true;
      const before = k.log.lines.length;
      k.unmap(d, 0x10_0000, 0x1000);
      const lines = k.log.lines.slice(before).map((l) => l.text);
      assert.equal(lines[0], 'DMAR: VT-d detected Invalidation Time-out Error: SID 6a08');
      assert.match(lines[1]!, /^DMAR: QI HEAD: Invalidation Wait qw0 = 0x200000025, qw1 = 0x[0-9a-f]+$/);
      assert.match(lines[2]!, /^DMAR: QI PRIOR: Device-TLB Invalidation qw0 = 0x6a08[0-9a-f]{8}, qw1 = 0x[0-9a-f]+$/);
      assert.deepEqual(lines.slice(3), ['DMAR: Invalidation Time-out Error (ITE) cleared']);
      assert.equal(k.iommus[0]!.unit.readRegister('FSTS').lo & (1 << 6), 0);
    });

    it('qi_check_fault\'s ITE walk: from 7.0 (fe89277c9ceb) every slot; 5.8-6.x odd slots only (`head |= 1`, step 2), which never meets an even IQT - 1: a hard lockup, a located finding', () => {
      // 5.10 dmar.c and the 6.12-stable review of fe89277c9ceb: head = ((IQH >> shift) - 1) | 1, tail = (IQT >> shift) - 1,
      // ITE cleared (and its line printed) before `do { ... head -= 2 } while (head != tail)`.
      for (const [version, waitParity, spins] of [['6.12', 0, true], ['6.12', 1, false], ['5.10', 0, true], ['7.0', 0, false], ['7.0', 1, false]] as const) {
        const { m, k, unit } = platform({ kernel: { version } });
        const qi = k.iommus[0]!.qi;
        const dev = k.device('6a:01.0');
        // A submission of one device-TLB invalidation puts its wait at tail + 1: pad with a lone wait to choose the parity.
        if ((unit.invalidationQueue.tail + 1) % 2 !== waitParity) assert.equal(qi.submit([]), 'ok');
        const waitIndex = unit.invalidationQueue.tail + 1;
        m.endpoints.find((e) => e.sid === dev.sid)!.invalidationTimeout = true;
        const before = k.log.lines.length;
        const r = qi.submit([Descs.devTlb(dev.sid, 0, 0, 0, 52)]);
        const lines = k.log.lines.slice(before).map((l) => l.text);
        const label = `${version}, wait at slot ${waitIndex}`;
        // 5.10 prints nothing for an ITE; from 5.13 (6ca69e5841f0) the dump's three lines, then the cleared line.
        const printed = version === '5.10' ? 0 : 4;
        assert.equal(lines.length, printed, label);
        if (printed) assert.deepEqual([lines[0], lines[3]], ['DMAR: VT-d detected Invalidation Time-out Error: SID 6a08', 'DMAR: Invalidation Time-out Error (ITE) cleared'], label);
        assert.equal(unit.readRegister('FSTS').lo & (1 << 6), 0, `${label}: ITE is cleared before the walk`);
        if (spins) {
          assert.equal(r, 'hang', label);
          assert.deepEqual(k.findings.map((f) => [f.kind, f.function, f.unit, f.logLine]), [['hang', 'qi_check_fault', 'dmar0', before + printed]], label);
          assert.match(k.findings[0]!.message, new RegExp(`starts at odd slot ${(waitIndex - 1) | 1} \\(IQH ${waitIndex} - 1, \\| 1\\) and steps by 2, so it never meets the even slot ${waitIndex} \\(IQT ${waitIndex + 1} - 1\\)`), label);
          assert.equal(qi.submit([Descs.iecGlobal()]), 'hang', `${label}: the queue lock stays held`);
        } else {
          assert.equal(r, 'ok', `${label}: the wait the hardware had not fetched completes once ITE is cleared`);
          assert.deepEqual(k.findings, [], label);
          assert.equal(qi.submit([Descs.iecGlobal()]), 'ok', label);
        }
      }
    });

    it('invalidateNested with npages 0: the kernel\'s range ends before it starts; from 0 that is everything, elsewhere one page; never a bad descriptor', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const parent = k.allocPagingDomain({ nestParent: true });
      const nested = k.bindPgtablePasid(parent, rid1, guestTable(k, parent, []).root, 9);
      const did = k.didOf(nested, rid1.iommu);
      const run = (entries: Parameters<IommuKernel['invalidateNested']>[1]) => {
        let r!: ReturnType<IommuKernel['invalidateNested']>;
        const stream = descriptorsDuring(m, () => (r = k.invalidateNested(nested, entries)));
        assert.ok(stream.every((x) => !/NaN|Infinity|undefined/.test(x)), stream.join('\n'));
        return { stream, handled: r.handled, error: r.error?.errno };
      };
      assert.deepEqual(run([{ addr: 0x4000_0000, npages: 0, leaf: true }]), { stream: [`p_iotlb_inv G=3 DID=${did} PASID=9 ADDR=0x40000000 AM=0 IH=1`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=0x40000000 S=0'], handled: 1, error: undefined });
      assert.deepEqual(run([{ addr: 0, npages: 0 }]).stream, [`p_iotlb_inv G=2 DID=${did} PASID=9`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=ALL S=1']);
      assert.deepEqual(run([{ addr: 0, npages: 2n ** 64n - 1n }]).stream, [`p_iotlb_inv G=2 DID=${did} PASID=9`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=ALL S=1']);
      // A count that wraps the 64-bit end: mask 53 in the kernel, so everything.
      assert.deepEqual(run([{ addr: 0x2000, npages: 2n ** 52n - 1n }]).stream, [`p_iotlb_inv G=2 DID=${did} PASID=9`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=ALL S=1']);
      assert.deepEqual(run([{ addr: 0x3000, npages: 2 }]).stream, [`p_iotlb_inv G=3 DID=${did} PASID=9 ADDR=0x0 AM=3 IH=0`, 'p_dev_tlb_inv SID=0x6a08 PASID=9 QDEP=0 ADDR=0x3000 S=1']);
    });

    it('a PASID attach on a device without PASID support succeeds in the core without calling the driver (6.15+); PASID 0 is EINVAL', () => {
      const { m, k } = platform();
      const dev = k.device('00:02.0');
      assert.equal(dev.maxPasids, 0);
      const d = k.allocPagingDomain();
      const writes = m.memory.writeCount;
      assert.deepEqual(descriptorsDuring(m, () => k.attachDevicePasid(d, dev, 3)), []);
      assert.equal(m.memory.writeCount, writes, 'no PASID entry, no table');
      assert.equal(dev.pasidDomains.get(3), d);
      assert.equal(k.didOf(d, dev.iommu), undefined, 'no domain ID taken');
      throwsErrno(() => k.attachDevicePasid(d, dev, 3), 'EBUSY');
      const e = k.allocPagingDomain();
      k.replaceDevicePasid(e, dev, 3);
      assert.equal(dev.pasidDomains.get(3), e);
      assert.deepEqual(descriptorsDuring(m, () => k.detachDevicePasid(dev, 3)), []);
      assert.equal(dev.pasidDomains.size, 0);
      throwsErrno(() => k.attachDevicePasid(d, dev, 0), 'EINVAL');
      throwsErrno(() => k.replaceDevicePasid(d, dev, 0), 'EINVAL');
    });

    it('nested attach: an IOMMU whose AGAW is below the parent\'s is ENODEV on a RID (with its line), EINVAL on a PASID; an incompatible parent is EINVAL', () => {
      const m = new Machine();
      m.addUnit(vtdUnits, { name: 'dmar0', features: { agaws: [48, 57], mgaw: 57, firstLevel5Level: true } });
      m.addUnit(vtdUnits, { name: 'dmar1', features: { agaws: [48] } });
      m.addEndpoint('6a:01.0', ATS_PRI_PASID, 'dmar0');
      m.addEndpoint('6b:00.0', { ats: {}, pasid: { width: 20 } }, 'dmar1');
      const k = new IommuKernel(m).boot();
      assert.deepEqual(k.iommus.map((i) => i.agaw), [3, 2]);
      const wide = k.allocPagingDomain({ nestParent: true, addressWidth: 57, device: '6a:01.0' });
      const nested = k.allocNestedDomain(wide, { sre: false, eafe: false, wpe: false, pgtblAddr: 0x1000, addrWidth: 48 });
      const before = k.log.length;
      throwsErrno(() => k.attachDevice(nested, '6b:00.0'), 'ENODEV');
      assert.deepEqual(k.log.lines.slice(before).map((l) => l.text), ['pci 0000:6b:00.0: Adjusted guest address width not compatible'], 'dev_err_ratelimited: the bus name before a driver binds');
      throwsErrno(() => k.attachDevicePasid(nested, '6b:00.0', 4), 'EINVAL');
      throwsErrno(() => k.attachDevice(wide, '6b:00.0'), 'EINVAL');
      // A 48-bit parent fits both; a parent without nesting support on the device's IOMMU is EINVAL.
      const narrow = k.allocPagingDomain({ nestParent: true, device: '6a:01.0' });
      k.attachDevice(k.allocNestedDomain(narrow, { sre: false, eafe: false, wpe: false, pgtblAddr: 0x1000, addrWidth: 48 }), '6b:00.0');
      k.attachDevice(nested, '6a:01.0');
    });

    it('page-request groups still waiting are answered after the PASID detach\'s tear-down and drain, newest first; a RID detach answers before its tear-down (no drain)', () => {
      const { m, k } = platform();
      const rid1 = k.device('6a:01.0');
      const d = k.allocPagingDomain({ stage: 'first' });
      d.iopfHandler = () => 'deferred';
      k.attachDevicePasid(d, rid1, 4);
      const a = k.dma(rid1, { pasid: 4, addr: 0x8000 }).pageRequest!.prgIndex;
      const b = k.dma(rid1, { pasid: 4, addr: 0x9000 }).pageRequest!.prgIndex;
      const dd = k.didOf(d, rid1.iommu);
      const rd = k.didOf(rid1.ridDomain!, rid1.iommu);
      assert.deepEqual(descriptorsDuring(m, () => k.detachDevicePasid(rid1, 4), { waits: true }), [
        `pc_inv G=1 DID=${dd} PASID=4`, 'inv_wait SW=1 FN=0 PD=0',
        `p_iotlb_inv G=2 DID=${dd} PASID=4`, 'inv_wait SW=1 FN=0 PD=0',
        'p_dev_tlb_inv SID=0x6a08 PASID=4 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=0',
        'inv_wait SW=0 FN=1 PD=0', `p_iotlb_inv G=2 DID=${rd} PASID=4`, 'p_dev_tlb_inv SID=0x6a08 PASID=4 QDEP=0 ADDR=ALL S=1', 'inv_wait SW=1 FN=0 PD=1',
        `page_grp_resp RID=0x6a08 PP=1 PASID=4 PRGI=${b} LPIG=1 RC=1`, 'inv_wait SW=1 FN=0 PD=0',
        `page_grp_resp RID=0x6a08 PP=1 PASID=4 PRGI=${a} LPIG=1 RC=1`, 'inv_wait SW=1 FN=0 PD=0',
      ]);
      assert.equal(rid1.endpoint.pendingGroups.length, 0);
      // While another fault-taking domain stays attached, the groups wait for their owner.
      const other = k.allocPagingDomain({ stage: 'first' });
      other.iopfHandler = () => 'deferred';
      k.attachDevicePasid(d, rid1, 4);
      k.attachDevicePasid(other, rid1, 5);
      const c = k.dma(rid1, { pasid: 4, addr: 0x8000 }).pageRequest!.prgIndex;
      assert.ok(!descriptorsDuring(m, () => k.detachDevicePasid(rid1, 4)).some((x) => x.startsWith('page_grp_resp')));
      k.pageResponse(rid1, 4, c, 'invalid');
      k.detachDevicePasid(rid1, 5);
      // RID: blocking_domain_attach_dev turns IOPF off first, so the answer precedes the tear-down, and no drain follows.
      const ridDomain = k.allocPagingDomain({ stage: 'first' });
      ridDomain.iopfHandler = () => 'deferred';
      k.attachDevice(ridDomain, rid1);
      const g = k.dma(rid1, { addr: 0x8000 }).pageRequest!.prgIndex;
      const did = k.didOf(ridDomain, rid1.iommu);
      assert.deepEqual(descriptorsDuring(m, () => k.detachDevice(rid1)), [`page_grp_resp RID=0x6a08 PP=0 PASID=0 PRGI=${g} LPIG=1 RC=1`, `pc_inv G=1 DID=${did} PASID=0`, `p_iotlb_inv G=2 DID=${did} PASID=0`, 'dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=ALL S=1']);
    });
  });
});

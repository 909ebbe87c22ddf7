import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { HWPT_ALLOC, HWPT_DIRTY_TRACKING_ENABLE, HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOAS_MAP, iommufdIoctl, IOMMUFD_CMD, OPTION, OPTION_OP, PAGE_RESP, readBytes, U64_MAX, VTD_INV_FLAGS_LEAF, VTD_MSI_WINDOW, type HwptNested, type HwptPaging } from '../../src/core/iommufd';
import { Machine } from '../../src/core/hw/machine';
import { IommuKernel } from '../../src/core/driver/kernel';
import { Iommufd } from '../../src/core/iommufd';
import { descriptorsDuring } from '../support/descriptors';
import { allocNested, BASE, BUFFER, BUFFER_SIZE, dmaTarget, errnoOf, FIXED_RW, invalidate, mapAuto, mapFixed, P, platform, readUser, testBit, throwsErrno, unmap, userPhys, writeUser } from '../support/iommufd';
import { vtdUnits } from '../../src/core/vtd/factory';

const phys = (fd: ReturnType<typeof platform>['fd'], va: bigint, off = 0n) => '0x' + (BigInt(userPhys(fd, va)) + off).toString(16);

describe('iommufd: IOAS mappings reach the hardware', () => {
  it('after IOAS_MAP the device\'s DMA lands on the user pages with the map\'s permissions; IOAS_UNMAP flushes and it faults', () => {
    const { k, m, fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const dev = fd.bindDevice('00:02.0');
    const hwpt = fd.objects.get(dev.attachPt({ ptId: ioasId }).ptId) as HwptPaging;
    const iova = mapAuto(fd, ioasId, 4n * P);
    assert.equal(iova, 0x4000n, 'aligned to the length, and never 0');
    for (let i = 0n; i < 4n; i++) assert.equal(dmaTarget(k, '00:02.0', iova + i * P + 0x24n, { write: true }), phys(fd, BUFFER + i * P, 0x24n));
    const ro = fd.ioasMap({ ioasId, flags: IOAS_MAP.READABLE, userVa: BUFFER + 8n * P, length: P }).iova;
    assert.equal(dmaTarget(k, '00:02.0', ro), phys(fd, BUFFER + 8n * P));
    assert.match(dmaTarget(k, '00:02.0', ro, { write: true }), /^fault/, 'a READABLE-only map refuses writes');
    // The auto domain is first-stage: the unmap is a PASID-based page-selective flush of its DID.
    const did = k.didOf(hwpt.domain, k.iommus[0]!);
    assert.deepEqual(descriptorsDuring(m, () => unmap(fd, ioasId, iova, 4n * P)), [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x4000 AM=2 IH=1`]);
    assert.match(dmaTarget(k, '00:02.0', iova), /^fault 0x/);
  });

  it('IOAS_MAP and IOAS_COPY hand IOMMU_READ / IOMMU_WRITE to the driver as the flags say; a WRITEABLE-only map is readable (its first-stage leaf is present), and IOAS_COPY checks its flags before the IOAS', () => {
    const { k, fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const dev = fd.bindDevice('00:02.0');
    const hwpt = fd.objects.get(dev.attachPt({ ptId: ioasId }).ptId) as HwptPaging;
    const wo = fd.ioasMap({ ioasId, flags: IOAS_MAP.WRITEABLE, userVa: BUFFER, length: P }).iova;
    // conv_iommu_prot: WRITEABLE is IOMMU_WRITE; __domain_mapping's first-stage leaf is P|R/W|U/S|A|D.
    assert.equal(hwpt.domain.pageTable!.lookup(Number(wo))!.lo & 0xfff, 0x67);
    assert.equal(dmaTarget(k, '00:02.0', wo), phys(fd, BUFFER));
    // iommufd_ioas_copy: unknown flags are EOPNOTSUPP before EOVERFLOW; neither READABLE nor WRITEABLE is
    // EINVAL before the source IOAS is looked up.
    throwsErrno(() => fd.ioasCopy({ flags: 0x80, dstIoasId: ioasId, srcIoasId: ioasId, length: U64_MAX, srcIova: 0n }), 'EOPNOTSUPP');
    throwsErrno(() => fd.ioasCopy({ flags: IOAS_MAP.FIXED_IOVA, dstIoasId: ioasId, srcIoasId: 9999, length: P, dstIova: BASE, srcIova: wo }), 'EINVAL');
  });

  it('a device attached after the map finds the IOAS already in its new domain', () => {
    const { k, fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    mapFixed(fd, ioasId, BASE, 2n * P);
    assert.equal(fd.pinnedPages, 0, 'no domain yet: nothing pinned');
    fd.bindDevice('00:02.0').attachPt({ ptId: ioasId });
    assert.equal(fd.pinnedPages, 2);
    assert.equal(dmaTarget(k, '00:02.0', BASE + P + 1n), phys(fd, BUFFER + P, 1n));
  });

  it('pinned pages stay behind the IOVA even when the process unmaps them (the IOMMU holds the page, not the mapping)', () => {
    const { k, fd, mm } = platform();
    const { ioasId } = fd.ioasAlloc();
    fd.bindDevice('00:02.0').attachPt({ ptId: ioasId });
    const before = userPhys(fd, BUFFER);
    mapFixed(fd, ioasId, BASE, P);
    mm.munmap(Number(BUFFER), 4096);
    assert.equal(dmaTarget(k, '00:02.0', BASE), before);
  });

  it('every attached device reserves the VT-d MSI window in its IOAS: fixed maps there are EINVAL; a map there blocks the attach', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const dev = fd.bindDevice('00:02.0');
    dev.attachPt({ ptId: ioasId });
    throwsErrno(() => mapFixed(fd, ioasId, VTD_MSI_WINDOW.start, P), 'EINVAL');
    dev.detachPt();
    mapFixed(fd, ioasId, VTD_MSI_WINDOW.start, P);
    throwsErrno(() => dev.attachPt({ ptId: ioasId }), 'EADDRINUSE');
    assert.equal(dev.dev.ridDomain, fd.kernel.blocked, 'the device stays blocked');
    assert.equal(fd.objects.values().filter((o) => o.type === 'HWPT_PAGING').length, 0, 'the auto domain made for the attach is gone');
  });

  it('an area the domain cannot take (misaligned, or past its 48-bit aperture) stops the attach with EADDRINUSE', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    fd.ioasMap({ ioasId, flags: FIXED_RW, userVa: BUFFER + 0x800n, length: 0x800n, iova: BASE + 0x800n });
    const dev = fd.bindDevice('00:02.0');
    throwsErrno(() => dev.attachPt({ ptId: ioasId }), 'EADDRINUSE');
    unmap(fd, ioasId, 0n, U64_MAX);
    mapFixed(fd, ioasId, 1n << 48n, P);
    throwsErrno(() => dev.attachPt({ ptId: ioasId }), 'EADDRINUSE');
  });

  it('IOAS_COPY shares the pages: the copy survives the source\'s unmap; a WRITEABLE copy of a read-only area is EPERM', () => {
    const { k, fd } = platform();
    const { ioasId: src } = fd.ioasAlloc();
    const { ioasId: dst } = fd.ioasAlloc();
    fd.bindDevice('00:02.0').attachPt({ ptId: dst });
    mapFixed(fd, src, BASE, 2n * P);
    fd.ioasCopy({ flags: FIXED_RW, srcIoasId: src, dstIoasId: dst, srcIova: BASE, dstIova: 2n * BASE, length: 2n * P });
    unmap(fd, src, BASE, 2n * P);
    assert.equal(dmaTarget(k, '00:02.0', 2n * BASE + P), phys(fd, BUFFER + P));
    fd.ioasMap({ ioasId: src, flags: IOAS_MAP.FIXED_IOVA | IOAS_MAP.READABLE, userVa: BUFFER, length: P, iova: BASE });
    throwsErrno(() => fd.ioasCopy({ flags: FIXED_RW, srcIoasId: src, dstIoasId: dst, srcIova: BASE, dstIova: 0n, length: P }), 'EPERM');
  });

  it('a nest parent refuses read-only mappings (VT-d erratum 772415), at map time and at allocation', () => {
    const { k, fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const devId = fd.bindDevice('00:02.0').devId;
    fd.hwptAlloc({ devId, ptId: ioasId, flags: HWPT_ALLOC.NEST_PARENT });
    throwsErrno(() => fd.ioasMap({ ioasId, flags: IOAS_MAP.READABLE, userVa: BUFFER, length: P }), 'EINVAL');
    assert.equal(k.log.lines.at(-1)!.text, 'DMAR: Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration, due to HW errata (ERRATA_772415_SPR17)');
    assert.equal(fd.pinnedPages, 0, 'the failed map left nothing behind');
    const { ioasId: other } = fd.ioasAlloc();
    fd.ioasMap({ ioasId: other, flags: IOAS_MAP.READABLE, userVa: BUFFER, length: P });
    throwsErrno(() => fd.hwptAlloc({ devId, ptId: other, flags: HWPT_ALLOC.NEST_PARENT }), 'EINVAL');
    fd.destroy(other);
  });

  it('HUGE_PAGES cannot be turned off while a domain holds mappings', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    fd.bindDevice('00:02.0').attachPt({ ptId: ioasId });
    mapFixed(fd, ioasId, BASE, P);
    throwsErrno(() => fd.option({ optionId: OPTION.HUGE_PAGES, op: OPTION_OP.SET, objectId: ioasId, val64: 0n }), 'EINVAL');
  });
});

describe('iommufd: device ownership (VFIO cdev bind)', () => {
  it('binding blocks the RID until an attach; one owner at a time; closing the device returns it to its default domain', () => {
    const { k, fd } = platform();
    const dev = k.device('00:02.0');
    const dflt = dev.ridDomain!;
    const vfio = fd.bindDevice('00:02.0');
    assert.equal(dev.ridDomain, k.blocked);
    throwsErrno(() => vfio.bindIommufd(fd), 'EINVAL');
    throwsErrno(() => fd.bindDevice('00:02.0'), 'EBUSY');
    throwsErrno(() => fd.destroy(vfio.devId), 'EBUSY');
    vfio.close();
    assert.equal(dev.ridDomain, dflt);
    throwsErrno(() => vfio.attachPt({ ptId: 1 }), 'EINVAL');
    fd.bindDevice('00:02.0');
  });

  it('VFIO_DEVICE_ATTACH_IOMMUFD_PT with the PASID flag attaches, then replaces; detach of nothing is fine', () => {
    const { k, fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    mapFixed(fd, ioasId, BASE, P);
    const vfio = fd.bindDevice('6a:01.0');
    const a = fd.hwptAlloc({ devId: vfio.devId, ptId: ioasId, flags: HWPT_ALLOC.PASID }).hwptId;
    const b = fd.hwptAlloc({ devId: vfio.devId, ptId: ioasId, flags: HWPT_ALLOC.PASID }).hwptId;
    const PASID_FLAG = 1;
    throwsErrno(() => vfio.attachPt({ ptId: a, flags: PASID_FLAG, pasid: 0 }), 'EINVAL');
    throwsErrno(() => vfio.attachPt({ ptId: a, flags: 2 }), 'EINVAL');
    assert.equal(vfio.attachPt({ ptId: a, flags: PASID_FLAG, pasid: 7 }).ptId, a);
    assert.equal(vfio.attachPt({ ptId: b, flags: PASID_FLAG, pasid: 7 }).ptId, b, 'a second attach replaces');
    assert.equal(k.device('6a:01.0').pasidDomains.get(7), (fd.objects.get(b) as HwptPaging).domain);
    assert.equal(dmaTarget(k, '6a:01.0', BASE + 4n, { pasid: 7 }), phys(fd, BUFFER, 4n));
    vfio.detachPt({ flags: PASID_FLAG, pasid: 7 });
    vfio.detachPt({ flags: PASID_FLAG, pasid: 7 });
    vfio.detachPt();
    assert.equal(k.device('6a:01.0').pasidDomains.size, 0);
  });

  it('without interrupt remapping a bind is EPERM, unless unsafe interrupts are allowed (with a warning)', () => {
    throwsErrno(() => platform({ features: { interruptRemapping: false } }).fd.bindDevice('00:02.0'), 'EPERM');
    const { k, fd } = platform({ features: { interruptRemapping: false }, iommufd: { allowUnsafeInterrupts: true } });
    fd.bindDevice('00:02.0');
    // iommufd_device_bind's dev_warn, on a device VFIO's vfio-pci driver is bound to.
    assert.equal(
      k.log.lines.at(-1)!.text,
      'vfio-pci 0000:00:02.0: MSI interrupts are not secure, they cannot be isolated by the platform. Check that platform features like interrupt remapping are enabled. Use the "allow_unsafe_interrupts" module parameter to override',
    );
  });

  it('isolated MSIs come from interrupt remapping being on (the IR irq domain\'s ISOLATED_MSI flag), not from ECAP.IR: intremap=off on a unit that has it refuses the bind', () => {
    const m = new Machine();
    m.addUnit(vtdUnits, { name: 'dmar0', features: {} });
    m.addEndpoint('00:02.0', {}, 'dmar0');
    const k = new IommuKernel(m).boot();
    assert.equal(k.iommus[0]!.unit.ecap.ir, 1);
    throwsErrno(() => new Iommufd(k).bindDevice('00:02.0'), 'EPERM');
    const on = new IommuKernel(new Machine(), { interruptRemapping: true });
    on.machine.addUnit(vtdUnits, { name: 'dmar0', features: {} });
    on.machine.addEndpoint('00:02.0', {}, 'dmar0');
    on.boot();
    new Iommufd(on).bindDevice('00:02.0');
  });

  it('a device a kernel driver has put on a PASID cannot be bound', () => {
    const { k, fd } = platform();
    k.attachDevicePasid(k.allocPagingDomain(), '6a:01.0', 5);
    throwsErrno(() => fd.bindDevice('6a:01.0'), 'EBUSY');
  });
});

/** A device on a nested HWPT whose guest S1 root is the first (empty) page of the buffer, mapped at BASE. */
function nestedSetup(o: { fault?: boolean } = {}) {
  const p = platform();
  const { ioasId } = p.fd.ioasAlloc();
  mapFixed(p.fd, ioasId, BASE, BUFFER_SIZE);
  const vfio = p.fd.bindDevice('6b:00.0');
  const devId = vfio.devId;
  vfio.attachPt({ ptId: ioasId });
  const parent = p.fd.hwptAlloc({ devId, ptId: ioasId, flags: HWPT_ALLOC.NEST_PARENT }).hwptId;
  const fault = o.fault ? p.fd.faultQueueAlloc() : undefined;
  const nested = allocNested(p.fd, devId, parent, fault ? { flags: HWPT_ALLOC.FAULT_ID_VALID, faultId: fault.faultId } : {});
  vfio.attachPt({ ptId: nested });
  const did = p.k.didOf((p.fd.objects.get(nested) as HwptNested).domain, p.k.iommus[0]!)!;
  return { ...p, ioasId, vfio, devId, parent, nested, did, fault };
}

describe('iommufd: HWPT_INVALIDATE on a VT-d nested HWPT', () => {
  it('each good entry is a PASID-based IOTLB flush of the nested DID, then the device TLB; nothing from the failing entry on', () => {
    const { m, fd, nested, did } = nestedSetup();
    let r!: ReturnType<typeof invalidate>;
    const stream = descriptorsDuring(m, () => (r = invalidate(fd, { hwptId: nested, entries: [{ addr: 0x4000_0000, npages: 1, flags: VTD_INV_FLAGS_LEAF }, { addr: 0x8000, npages: 1, flags: 2 }, { addr: 0x9000, npages: 1 }] })));
    assert.deepEqual(r, { errno: 'EOPNOTSUPP', entryNum: 1 });
    assert.deepEqual(stream, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x40000000 AM=0 IH=1`, 'dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=0x40000000 S=0']);
    // addr 0 with U64_MAX pages: everything of the nested domain.
    assert.deepEqual(descriptorsDuring(m, () => fd.hwptInvalidate({ hwptId: nested, entries: [{ addr: 0, npages: U64_MAX }] })), [`p_iotlb_inv G=2 DID=${did} PASID=0`, 'dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=ALL S=1']);
    // Two entries, two flushes, each submitted before the next entry is read.
    assert.equal(descriptorsDuring(m, () => fd.hwptInvalidate({ hwptId: nested, entries: [{ addr: 0x1000, npages: 2 }, { addr: 0x10_0000, npages: 16 }] }), { waits: true }).filter((d) => d.startsWith('inv_wait')).length, 2);
    // npages 0 counts as handled and reaches the driver: its range [addr, addr - 1] is one page at addr in the
    // kernel's arithmetic, and everything from address 0.
    let zero!: ReturnType<typeof invalidate>;
    const zeros = descriptorsDuring(m, () => (zero = invalidate(fd, { hwptId: nested, entries: [{ addr: 0x5000, npages: 0 }, { addr: 0, npages: 0 }] })));
    assert.deepEqual(zero, { errno: 'ok', entryNum: 2 });
    assert.deepEqual(zeros, [`p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x5000 AM=0 IH=0`, 'dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=0x5000 S=0', `p_iotlb_inv G=2 DID=${did} PASID=0`, 'dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=ALL S=1']);
  });

  it('an IOAS unmap flushes the nested child by its own DID (the nest parent\'s NESTING tags)', () => {
    const { m, fd, ioasId, did } = nestedSetup();
    const stream = descriptorsDuring(m, () => unmap(fd, ioasId, BASE, BUFFER_SIZE));
    assert.ok(stream.includes(`iotlb_inv G=3 DID=${did} ADDR=0x1000000 AM=4 IH=1`), stream.join('\n'));
    assert.ok(stream.includes('dev_tlb_inv SID=0x6b00 QDEP=0 ADDR=ALL S=1'));
  });
});

describe('iommufd: the fault queue', () => {
  it('groups wait until read; cookies are checked; a device leaving the HWPT gets INVALID once for each pending group', () => {
    const { k, m, vfio, parent, fault } = nestedSetup({ fault: true });
    const q = fault!.fd;
    const first = k.dma('6b:00.0', { addr: 0x4000_0000 });
    const second = k.dma('6b:00.0', { addr: 0x5000_0000 });
    assert.deepEqual([first.pageRequest?.outcome, second.pageRequest?.outcome], ['queued', 'queued']);
    throwsErrno(() => q.read(39), 'ESPIPE');
    const [one, ...rest] = q.read(40);
    assert.deepEqual([one!.addr, one!.cookie, rest.length], [0x4000_0000n, 1, 0], 'one record fits: the first group, cookie 1');
    throwsErrno(() => q.write([{ cookie: one!.cookie, code: 2 }]), 'EINVAL');
    throwsErrno(() => q.write([{ cookie: 99, code: PAGE_RESP.SUCCESS }]), 'EINVAL');
    throwsErrno(() => q.write([{ cookie: one!.cookie, code: PAGE_RESP.SUCCESS }], 7), 'ESPIPE');
    assert.equal(m.endpoint('6b:00.0').pendingGroups.length, 2);
    // The first group has been read, the second not: both are answered INVALID when the device leaves, newest
    // first. Leaving its last fault-taking domain takes the device off the iopf queue, which answers every
    // pending group from the head of its list (iopf_group_alloc adds there); iommufd then finds none left.
    const stream = descriptorsDuring(m, () => vfio.attachPt({ ptId: parent })).filter((d) => d.startsWith('page_grp_resp'));
    assert.deepEqual(stream, [second, first].map((o) => `page_grp_resp RID=0x6b00 PP=0 PASID=0 PRGI=${o.pageRequest!.prgIndex} LPIG=1 RC=1`));
    assert.equal(m.endpoint('6b:00.0').pendingGroups.length, 0);
    throwsErrno(() => q.write([{ cookie: one!.cookie, code: PAGE_RESP.SUCCESS }]), 'EINVAL');
    assert.deepEqual(q.read(), []);
  });

  it('a write stops at the first bad response and reports the bytes it consumed', () => {
    const { k, fd, fault } = nestedSetup({ fault: true });
    k.dma('6b:00.0', { addr: 0x4000_0000 });
    const [f] = fault!.fd.read();
    assert.equal(fault!.fd.write([{ cookie: f!.cookie, code: PAGE_RESP.INVALID }, { cookie: 77, code: PAGE_RESP.SUCCESS }]), 8);
    fault!.fd.close();
    throwsErrno(() => fault!.fd.read(), 'EBADF');
    fd.close();
  });

  it('a fault HWPT cannot be attached to a device without PRI (ENODEV)', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const dev = fd.bindDevice('00:02.0');
    const { faultId } = fd.faultQueueAlloc();
    const h = fd.hwptAlloc({ devId: dev.devId, ptId: ioasId, flags: HWPT_ALLOC.FAULT_ID_VALID, faultId }).hwptId;
    throwsErrno(() => dev.attachPt({ ptId: h }), 'ENODEV');
  });
});

describe('iommufd: IOAS invariants under random operations (property)', () => {
  type Op = { kind: 'auto'; pages: number } | { kind: 'fixed'; at: number; pages: number } | { kind: 'unmap'; at: number; pages: number } | { kind: 'reserve'; at: number; pages: number };
  const op = fc.oneof(
    fc.record({ kind: fc.constant('auto' as const), pages: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('fixed' as const), at: fc.integer({ min: 0, max: 64 }), pages: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('unmap' as const), at: fc.integer({ min: 0, max: 64 }), pages: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('reserve' as const), at: fc.integer({ min: 0, max: 64 }), pages: fc.integer({ min: 1, max: 4 }) }),
  );

  it('areas never overlap each other or a reserved range; each mapped IOVA translates to its user page; failed ops change nothing', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), (ops: Op[]) => {
        const { fd } = platform();
        const { ioasId } = fd.ioasAlloc();
        const hwpt = fd.objects.get(fd.bindDevice('00:02.0').attachPt({ ptId: ioasId }).ptId) as HwptPaging;
        const ioas = hwpt.ioas.iopt;
        for (const o of ops) {
          const before = ioas.areas.map((a) => `${a.start}-${a.last}`).join();
          try {
            if (o.kind === 'auto') {
              const iova = mapAuto(fd, ioasId, BigInt(o.pages) * P);
              assert.equal(iova % 4096n, 0n);
              assert.ok(iova > 0n);
            } else if (o.kind === 'fixed') mapFixed(fd, ioasId, BASE + BigInt(o.at) * P, BigInt(o.pages) * P);
            else if (o.kind === 'unmap') unmap(fd, ioasId, BASE + BigInt(o.at) * P, BigInt(o.pages) * P);
            else fd.addReserved(ioasId, BASE + BigInt(o.at) * P, BigInt(o.pages) * P);
          } catch (e) {
            if (!(e instanceof Error && /^E[A-Z0-9]+: /.test(e.message))) throw e;
            if (o.kind !== 'unmap') assert.equal(ioas.areas.map((a) => `${a.start}-${a.last}`).join(), before, `${o.kind} failed with no effect`);
          }
          const areas = ioas.areas;
          for (let i = 1; i < areas.length; i++) assert.ok(areas[i - 1]!.last < areas[i]!.start, 'areas are disjoint');
          for (const a of areas) {
            assert.ok(!ioas.reserved.some((r) => r.start <= a.last && a.start <= r.last), 'no area in a reserved range');
            for (const iova of [a.start, a.last - 4095n]) {
              const user = a.pages.base + a.startByte + (iova - a.start);
              assert.equal(hwpt.domain.pageTable!.lookup(Number(iova))?.output, fd.mm.pageTable.lookup(Number(user))?.output);
            }
          }
        }
        fd.close();
        assert.equal(fd.pinnedPages, 0);
      }),
      { numRuns: 60, seed: 20250701 },
    );
  });
});

describe('iommufd: the binary ioctl ABI', () => {
  const le = (n: number) => new DataView(new ArrayBuffer(n));
  const bytes = (v: DataView) => new Uint8Array(v.buffer);

  it('IOAS_ALLOC, IOAS_MAP and IOAS_IOVA_RANGES through raw structs; pointer fields are the process\'s memory', () => {
    const { fd, mm } = platform();
    const alloc = le(12);
    alloc.setUint32(0, 12, true);
    assert.equal(iommufdIoctl(fd, IOMMUFD_CMD.IOAS_ALLOC, bytes(alloc)), 0);
    const ioasId = alloc.getUint32(8, true);
    assert.equal(fd.objects.get(ioasId).type, 'IOAS');
    const map = le(40);
    map.setUint32(0, 40, true);
    map.setUint32(4, IOAS_MAP.READABLE | IOAS_MAP.WRITEABLE, true);
    map.setUint32(8, ioasId, true);
    map.setBigUint64(16, BUFFER, true);
    map.setBigUint64(24, 2n * P, true);
    iommufdIoctl(fd, IOMMUFD_CMD.IOAS_MAP, bytes(map));
    assert.equal(map.getBigUint64(32, true), 0x2000n, 'the chosen IOVA is written back');
    fd.addReserved(ioasId, P, P);
    const ranges = le(32);
    ranges.setUint32(0, 32, true);
    ranges.setUint32(4, ioasId, true);
    ranges.setUint32(8, 1, true);
    const array = 0x7200_0000n;
    mm.mmap(Number(array), 4096);
    ranges.setBigUint64(16, array, true);
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.IOAS_IOVA_RANGES, bytes(ranges)), 'EMSGSIZE');
    assert.equal(ranges.getUint32(8, true), 2, 'num_iovas is the count needed, written back even on EMSGSIZE');
    const first = new DataView(readBytes(fd.kernel.machine.memory, mm.pageTable.lookup(Number(array))!.output, 16).buffer);
    assert.deepEqual([first.getBigUint64(0, true), first.getBigUint64(8, true)], [0n, P - 1n]);
  });

  it('HWPT_INVALIDATE reads its entries from user memory and writes entry_num back on failure', () => {
    const { fd, mm, nested, m, did } = nestedSetup();
    const array = 0x7300_0000n;
    mm.mmap(Number(array), 4096);
    const entries = le(48);
    entries.setBigUint64(0, 0x4000_0000n, true);
    entries.setBigUint64(8, 1n, true);
    entries.setBigUint64(24, 0x4000_1001n, true);
    entries.setBigUint64(32, 1n, true);
    writeUser(fd, array, bytes(entries));
    const cmd = le(32);
    cmd.setUint32(0, 32, true);
    cmd.setUint32(4, nested, true);
    cmd.setBigUint64(8, array, true);
    cmd.setUint32(20, 24, true);
    cmd.setUint32(24, 2, true);
    const stream = descriptorsDuring(m, () => throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.HWPT_INVALIDATE, bytes(cmd)), 'EINVAL'));
    assert.equal(cmd.getUint32(24, true), 1);
    assert.equal(stream[0], `p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x40000000 AM=0 IH=0`);
    // Entries past the end of mapped user memory fault where the driver reaches them.
    cmd.setBigUint64(8, array + 4096n - 24n, true);
    cmd.setUint32(24, 2, true);
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.HWPT_INVALIDATE, bytes(cmd)), 'EFAULT');
    assert.equal(cmd.getUint32(24, true), 1);
  });
});

describe('iommufd: accesses (emulated devices)', () => {
  it('a pinning access raises the IOAS alignment to a page, and an access that ignores an unmap makes it EBUSY', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const access = fd.accessCreate({ ioasId, needsPinPages: true, onUnmap: () => {} });
    assert.equal(fd.ioasIovaRanges({ ioasId }).outIovaAlignment, 4096n);
    mapFixed(fd, ioasId, BASE, 2n * P);
    throwsErrno(() => access.pinPages(BASE + P, 2n * P), 'ENOENT');
    access.pinPages(BASE, P, { write: true });
    throwsErrno(() => unmap(fd, ioasId, BASE, 2n * P), 'EBUSY');
    access.destroy();
    assert.equal(unmap(fd, ioasId, BASE, 2n * P), 2n * P);
    assert.equal(fd.ioasIovaRanges({ ioasId }).outIovaAlignment, 1n);
  });

  it('replacing an access\'s IOAS tells its driver to unmap everything first', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    const { ioasId: other } = fd.ioasAlloc();
    const seen: [bigint, bigint][] = [];
    const access = fd.accessCreate({ ioasId, needsPinPages: true, onUnmap: (a, iova, len) => (seen.push([iova, len]), a.unpinOverlapping(iova, len)) });
    mapFixed(fd, ioasId, BASE, P);
    access.pinPages(BASE, P);
    access.replace(other);
    assert.deepEqual(seen, [[0n, U64_MAX]]);
    assert.equal(access.pins.length, 0);
    fd.destroy(ioasId);
    throwsErrno(() => fd.destroy(other), 'EBUSY');
  });
});

describe('iommufd: dirty tracking (HWPT_SET_DIRTY_TRACKING, HWPT_GET_DIRTY_BITMAP)', () => {
  const BITMAP = 0x7400_0000n;
  /** A dirty HWPT on an IOAS holding the 64 KiB buffer at BASE, the plain device on it, tracking on. */
  function dirtySetup() {
    const p = platform({ dirtyTracking: true });
    const { ioasId } = p.fd.ioasAlloc();
    mapFixed(p.fd, ioasId, BASE, BUFFER_SIZE);
    const vfio = p.fd.bindDevice('00:02.0');
    const devId = vfio.devId;
    const hwpt = p.fd.hwptAlloc({ devId, ptId: ioasId, flags: HWPT_ALLOC.DIRTY_TRACKING }).hwptId;
    vfio.attachPt({ ptId: hwpt });
    p.mm.mmap(Number(BITMAP), 2 * 4096);
    const get = (o: { iova?: bigint; length?: bigint; pageSize?: bigint; flags?: number; data?: bigint; reserved?: number; hwptId?: number } = {}) =>
      p.fd.hwptGetDirtyBitmap({ hwptId: o.hwptId ?? hwpt, flags: o.flags ?? 0, iova: o.iova ?? BASE, length: o.length ?? BUFFER_SIZE, pageSize: o.pageSize ?? P, data: o.data ?? BITMAP, ...(o.reserved ? { reserved: o.reserved } : {}) });
    const bits = (n = 16) => {
      const b = readUser(p.fd, BITMAP, Math.ceil(n / 8));
      return Array.from({ length: n }, (_, i) => (testBit(b, i) ? 1 : 0)).join('');
    };
    const clearBitmap = () => writeUser(p.fd, BITMAP, new Uint8Array(8));
    return { ...p, ioasId, vfio, devId, hwpt, get, bits, clearBitmap };
  }

  it('the uAPI checks in the kernel\'s order: flags, __reserved, the HWPT, the range (overflow, IOAS alignment, page_size), then dirty ops', () => {
    const d = dirtySetup();
    const plain = d.fd.hwptAlloc({ devId: d.devId, ptId: d.ioasId }).hwptId;
    throwsErrno(() => d.get({ flags: 2 }), 'EOPNOTSUPP');
    throwsErrno(() => d.get({ reserved: 1 }), 'EOPNOTSUPP');
    throwsErrno(() => d.get({ hwptId: d.ioasId }), 'ENOENT');
    throwsErrno(() => d.get({ hwptId: 0 }), 'ENOENT');
    throwsErrno(() => d.get({ iova: U64_MAX - 0xfffn, length: 2n * P }), 'EOVERFLOW');
    throwsErrno(() => d.get({ iova: 1n, length: 0n }), 'EOVERFLOW');
    throwsErrno(() => d.get({ iova: BASE + 0x800n }), 'EINVAL');
    throwsErrno(() => d.get({ length: 0x1800n }), 'EINVAL');
    throwsErrno(() => d.get({ pageSize: 0n }), 'EINVAL');
    throwsErrno(() => d.get({ iova: BASE + P, length: P, pageSize: 2n * P }), 'EINVAL');
    throwsErrno(() => d.get({ hwptId: plain, iova: BASE + 0x800n }), 'EINVAL');
    throwsErrno(() => d.get({ hwptId: plain }), 'EOPNOTSUPP');
    d.get();
    d.get({ flags: HWPT_GET_DIRTY_BITMAP_NO_CLEAR, pageSize: 0x800n });
    // SET_DIRTY_TRACKING checks flags only (not __reserved), then the HWPT, then dirty ops.
    throwsErrno(() => d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: 2 }), 'EOPNOTSUPP');
    throwsErrno(() => d.fd.hwptSetDirtyTracking({ hwptId: d.ioasId, flags: HWPT_DIRTY_TRACKING_ENABLE }), 'ENOENT');
    throwsErrno(() => d.fd.hwptSetDirtyTracking({ hwptId: plain, flags: HWPT_DIRTY_TRACKING_ENABLE }), 'EOPNOTSUPP');
    d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE, reserved: 7 });
  });

  it('bits at page_size granularity: a 4 KiB leaf sets two 2 KiB bits, two leaves share an 8 KiB bit; the bitmap may start anywhere', () => {
    const d = dirtySetup();
    d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE });
    const write = (page: number) => d.k.dma('00:02.0', { addr: Number(BASE) + page * 4096, write: true });
    write(1);
    write(2);
    d.clearBitmap();
    d.get({ pageSize: 0x800n, flags: HWPT_GET_DIRTY_BITMAP_NO_CLEAR });
    assert.equal(d.bits(), '0011110000000000');
    d.clearBitmap();
    d.get({ pageSize: 0x2000n });
    assert.equal(d.bits(8), '11000000', '[0, 8K) holds page 1, [8K, 16K) page 2');
    write(5);
    d.clearBitmap();
    d.get({ iova: BASE + 4n * P, length: 4n * P, data: BITMAP + 3n });
    assert.equal(d.bits(32).slice(24), '01000000', 'bit 1 of the byte at data + 3: page 5 from BASE + 4 pages');
  });

  it('kernel quirks kept: tracking off, a gap in the areas, an unmapped bitmap all return success; the bits and the clears are what the walk reached', () => {
    const d = dirtySetup();
    d.clearBitmap();
    d.get();
    assert.equal(d.bits(), '0000000000000000', 'tracking off: the driver refuses (EINVAL) and iommufd drops the error');
    d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE });
    // A second area after a one-page gap: the walk stops at the gap.
    d.mm.mmap(0x7600_0000, 4096);
    mapFixed(d.fd, d.ioasId, BASE + BUFFER_SIZE + P, P, 0x7600_0000n);
    d.k.dma('00:02.0', { addr: Number(BASE), write: true });
    d.k.dma('00:02.0', { addr: Number(BASE + BUFFER_SIZE + P), write: true });
    d.clearBitmap();
    d.get({ length: BUFFER_SIZE + 2n * P });
    assert.equal(d.bits(18), '100000000000000000');
    d.clearBitmap();
    d.get({ iova: BASE + BUFFER_SIZE + P, length: P });
    assert.equal(d.bits(1), '1', 'the second area on its own');
    // An unmapped bitmap: nothing is written, yet D was cleared and the ioctl succeeds.
    d.k.dma('00:02.0', { addr: Number(BASE), write: true });
    assert.equal(errnoOf(() => d.get({ data: 0x9000_0000n })), 'ok');
    d.clearBitmap();
    d.get();
    assert.equal(d.bits(), '0000000000000000', 'the dirty page was harvested into nowhere');
  });

  it('enabling clears dirty bits left from an earlier period and flushes them; disabling leaves D bits alone', () => {
    const d = dirtySetup();
    const did = d.k.didOf(d.k.device('00:02.0').ridDomain!, d.k.iommus[0]!);
    d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE });
    d.k.dma('00:02.0', { addr: Number(BASE + 3n * P), write: true });
    d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: 0 });
    const stream = descriptorsDuring(d.m, () => d.fd.hwptSetDirtyTracking({ hwptId: d.hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE }));
    assert.deepEqual(stream, [`iotlb_inv G=3 DID=${did} ADDR=0x${(BASE + 3n * P).toString(16)} AM=0 IH=1`, `pc_inv G=1 DID=${did} PASID=0`, `iotlb_inv G=2 DID=${did}`]);
    d.clearBitmap();
    d.get();
    assert.equal(d.bits(), '0000000000000000', 'the old dirty page is not reported');
  });

  it('through the binary ABI: SET_DIRTY_TRACKING (16 bytes) and GET_DIRTY_BITMAP (48 bytes) with the bitmap in the process\'s memory', () => {
    const d = dirtySetup();
    const le = (n: number) => new DataView(new ArrayBuffer(n));
    const set = le(16);
    set.setUint32(0, 16, true);
    set.setUint32(4, HWPT_DIRTY_TRACKING_ENABLE, true);
    set.setUint32(8, d.hwpt, true);
    assert.equal(iommufdIoctl(d.fd, IOMMUFD_CMD.HWPT_SET_DIRTY_TRACKING, new Uint8Array(set.buffer)), 0);
    d.k.dma('00:02.0', { addr: Number(BASE + 2n * P), write: true });
    const get = le(48);
    get.setUint32(0, 48, true);
    get.setUint32(4, d.hwpt, true);
    get.setBigUint64(16, BASE, true);
    get.setBigUint64(24, BUFFER_SIZE, true);
    get.setBigUint64(32, P, true);
    get.setBigUint64(40, BITMAP, true);
    d.clearBitmap();
    assert.equal(iommufdIoctl(d.fd, IOMMUFD_CMD.HWPT_GET_DIRTY_BITMAP, new Uint8Array(get.buffer)), 0);
    assert.equal(d.bits(), '0010000000000000');
    throwsErrno(() => iommufdIoctl(d.fd, IOMMUFD_CMD.HWPT_GET_DIRTY_BITMAP, new Uint8Array(get.buffer).subarray(0, 40)), 'EFAULT');
    const short = new Uint8Array(48);
    short.set(new Uint8Array(get.buffer));
    new DataView(short.buffer).setUint32(0, 47, true);
    throwsErrno(() => iommufdIoctl(d.fd, IOMMUFD_CMD.HWPT_GET_DIRTY_BITMAP, short), 'EINVAL');
    const long = new Uint8Array(17);
    long.set(new Uint8Array(set.buffer));
    new DataView(long.buffer).setUint32(0, 17, true);
    long[16] = 1;
    throwsErrno(() => iommufdIoctl(d.fd, IOMMUFD_CMD.HWPT_SET_DIRTY_TRACKING, long), 'E2BIG');
  });
});

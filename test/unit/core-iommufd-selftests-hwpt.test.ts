// Replays of the iommufd selftests about HWPTs: nested allocation and invalidation, hardware info, dirty
// tracking, fault queues, vIOMMU/vdevice and PASID attach (tools/testing/selftests/iommu/iommufd.c), against
// the iommufd layer over the VT-d driver model. Mock-only steps are replaced by what VT-d hardware shows:
// TRIGGER_IOPF by a real DMA that makes the device issue a page request, MD_CHECK_IOTLB by the invalidation
// descriptors the driver queues. docs/iommufd-coverage.md says where VT-d differs from the mock.
import * as assert from 'node:assert/strict';
import {
  HW_CAP,
  HW_INFO_FLAG_INPUT_TYPE,
  HW_INFO_TYPE,
  HW_INFO_VTD_ERRATA_772415_SPR17,
  HWPT_ALLOC,
  HWPT_DATA,
  HWPT_INVALIDATE_DATA,
  HWPT_DIRTY_TRACKING_ENABLE,
  HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  LAB_VIOMMU_TYPE_VTD,
  PAGE_RESP,
  PGFAULT_FLAGS,
  PGFAULT_PERM,
  U64_MAX,
  VTD_INV_FLAGS_LEAF,
  type FaultFd,
} from '../../src/core/iommufd';
import { descriptorsDuring } from '../support/descriptors';
import { allocNested, BASE, BUFFER_SIZE, dmaTarget, invalidate, mapFixed, platform, type PlatformOptions, readUser, S1, testBit, throwsErrno, writeUser } from '../support/iommufd';

const { NEST_PARENT, DIRTY_TRACKING, FAULT_ID_VALID, PASID } = HWPT_ALLOC;
const GVA = 0x4000_0000;

/** An IOAS holding guest RAM (the user buffer at BASE, whose first page is the guest's empty S1 root) and one device on it. */
function guestFixture(dev = '6b:00.0', o: PlatformOptions = {}) {
  const p = platform(o);
  const { ioasId } = p.fd.ioasAlloc();
  mapFixed(p.fd, ioasId, BASE, BUFFER_SIZE);
  const vfio = p.fd.bindDevice(dev);
  const autoHwpt = vfio.attachPt({ ptId: ioasId }).ptId;
  return { ...p, ioasId, vfio, devId: vfio.devId, autoHwpt };
}

/**
 * TRIGGER_IOPF on VT-d: the device reads a guest address its S1 does not map; the failed ATS translation
 * makes it send a page request, which the PRQ thread hands to the HWPT's fault queue. Then the selftest
 * helper's read and SUCCESS response, which must reach the device as a Page Group Response.
 */
function triggerIopf(p: ReturnType<typeof platform>, dev: string, faultFd: FaultFd, devId: number, pasid?: number): void {
  const out = p.k.dma(dev, { addr: GVA, write: true, ...(pasid !== undefined ? { pasid } : {}) });
  assert.equal(out.pageRequest?.outcome, 'queued', 'the device asked for the page');
  const faults = faultFd.read();
  assert.equal(faults.length, 1);
  const f = faults[0]!;
  const pasidFlags = pasid !== undefined ? PGFAULT_FLAGS.PASID_VALID | PGFAULT_FLAGS.NEEDS_PASID : 0;
  assert.deepEqual({ ...f, cookie: 0 }, { flags: PGFAULT_FLAGS.LAST_PAGE | pasidFlags, devId, pasid: pasid ?? 0, grpid: out.pageRequest!.prgIndex, perm: PGFAULT_PERM.WRITE, addr: BigInt(GVA), length: 0, cookie: 0 });
  const ep = p.m.endpoint(dev);
  assert.equal(ep.pendingGroups.length, 1, 'the device waits for the response');
  const stream = descriptorsDuring(p.m, () => assert.equal(faultFd.write([{ cookie: f.cookie, code: PAGE_RESP.SUCCESS }]), 8));
  assert.deepEqual(stream, [`page_grp_resp RID=0x${ep.sid.toString(16)} PP=${pasid !== undefined ? 1 : 0} PASID=${pasid ?? 0} PRGI=${f.grpid} LPIG=1 RC=0`]);
  assert.equal(ep.pendingGroups.length, 0);
}

describe('iommufd selftests, replayed on VT-d: iommufd_ioas.alloc_hwpt_nested', () => {
  for (const variant of ['mock_domain', 'two_mock_domain'] as const) {
    it(`iommufd_ioas.alloc_hwpt_nested (${variant}): VT-d S1 data, invalidation entries, attach, IOPF, teardown`, () => {
      const p = guestFixture();
      const { fd, ioasId, devId, vfio } = p;
      if (variant === 'two_mock_domain') fd.bindDevice('00:02.0').attachPt({ ptId: ioasId });
      const nestedOn = (ptId: number, o: Parameters<typeof allocNested>[3] = {}) => allocNested(fd, devId, ptId, o);

      // 1: wrong object types and conflicting flags.
      throwsErrno(() => fd.hwptAlloc({ devId: ioasId, ptId: devId }), 'ENOENT');
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: devId }), 'EINVAL');
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: ioasId, flags: NEST_PARENT | FAULT_ID_VALID }), 'EOPNOTSUPP');
      // 2
      const parent = fd.hwptAlloc({ devId, ptId: ioasId, flags: NEST_PARENT }).hwptId;
      const plain = fd.hwptAlloc({ devId, ptId: ioasId }).hwptId;
      // 3: bad nested allocations (VT-d: the S1 struct is 24 bytes and its minimum length is all of it).
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: parent, dataType: HWPT_DATA.NONE, data: S1, dataLen: 24 }), 'EINVAL');
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: parent, dataType: HWPT_DATA.VTD_S1 + 1, data: S1 }), 'EOPNOTSUPP');
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: parent, dataType: HWPT_DATA.VTD_S1, data: S1, dataLen: 23 }), 'EINVAL');
      throwsErrno(() => fd.hwptAlloc({ devId, ptId: parent, dataType: HWPT_DATA.VTD_S1, data: null, dataLen: 24 }), 'EFAULT');
      throwsErrno(() => nestedOn(parent, { flags: NEST_PARENT }), 'EOPNOTSUPP');
      throwsErrno(() => nestedOn(plain), 'EINVAL');
      // 4: nested HWPTs and a fault-capable one. VT-d takes unknown S1 flags and reserved bits at allocation.
      const { faultId, fd: faultFd } = fd.faultQueueAlloc();
      const nested0 = nestedOn(parent);
      const nested1 = nestedOn(parent, { data: { ...S1, flags: 0x80, reserved: 7 } });
      throwsErrno(() => nestedOn(parent, { flags: FAULT_ID_VALID, faultId: 0xffff_ffff }), 'ENOENT');
      const iopfHwpt = nestedOn(parent, { flags: FAULT_ID_VALID, faultId });
      // 5
      throwsErrno(() => nestedOn(nested0), 'EINVAL');
      throwsErrno(() => fd.destroy(parent), 'EBUSY');
      // 6: a paging HWPT takes no invalidation (6.8-era kernels said ENOENT).
      const entry = { addr: 0x1000, npages: 1 };
      assert.deepEqual(invalidate(fd, { hwptId: parent, entries: [entry] }), { errno: 'EINVAL', entryNum: 0 });
      // 7: probing the type with no entries, then each kind of bad entry alone.
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [], entryNum: 0 }), { errno: 'ok', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, dataType: HWPT_INVALIDATE_DATA.VIOMMU_ARM_SMMUV3, entries: [entry] }), { errno: 'EINVAL', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [entry], entryLen: 9 }), { errno: 'EINVAL', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [entry], entryLen: 1 }), { errno: 'EINVAL', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [{ ...entry, flags: 0xffff_ffff }] }), { errno: 'EOPNOTSUPP', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: null, entryNum: 1 }), { errno: 'EINVAL', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [entry], entryLen: 0 }), { errno: 'EINVAL', entryNum: 0 });
      // VT-d's out-of-range entry (the mock's iotlb_id 4): an unaligned address, or "everything" not from 0.
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [{ addr: 0x1001, npages: 1 }] }), { errno: 'EINVAL', entryNum: 0 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [{ addr: 0x1000, npages: U64_MAX }] }), { errno: 'EINVAL', entryNum: 0 });
      // 8: the good entry before a bad one has been handled.
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [entry, { ...entry, flags: 0xffff_ffff }] }), { errno: 'EOPNOTSUPP', entryNum: 1 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [entry, { addr: 0x1001, npages: 1 }] }), { errno: 'EINVAL', entryNum: 1 });
      // 9
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [{ addr: 0x2000, npages: 1, flags: VTD_INV_FLAGS_LEAF }] }), { errno: 'ok', entryNum: 1 });
      assert.deepEqual(invalidate(fd, { hwptId: nested0, entries: [{ addr: 0x3000, npages: 1 }, { addr: 0x4000, npages: 2 }] }), { errno: 'ok', entryNum: 2 });
      assert.deepEqual(invalidate(fd, { hwptId: nested1, entries: [{ addr: 0, npages: U64_MAX }] }), { errno: 'ok', entryNum: 1 });
      // 10: attached nested HWPTs are busy.
      vfio.attachPt({ ptId: nested0 });
      throwsErrno(() => fd.destroy(nested0), 'EBUSY');
      vfio.attachPt({ ptId: nested1 });
      throwsErrno(() => fd.destroy(nested1), 'EBUSY');
      fd.destroy(nested0);
      // 11: a page fault through the fault-capable nested HWPT, read and answered.
      vfio.attachPt({ ptId: iopfHwpt });
      throwsErrno(() => fd.destroy(iopfHwpt), 'EBUSY');
      triggerIopf(p, '6b:00.0', faultFd, devId);
      // 12: teardown.
      vfio.attachPt({ ptId: parent });
      fd.destroy(nested1);
      fd.destroy(iopfHwpt);
      vfio.attachPt({ ptId: ioasId });
      fd.destroy(parent);
      fd.destroy(plain);
      throwsErrno(() => fd.destroy(faultId), 'EBUSY');
      faultFd.close();
      fd.destroy(faultId);
    });
  }

  it('iommufd_ioas.alloc_hwpt_nested (no_domain): without a device everything is ENOENT', () => {
    const { fd } = platform();
    const { ioasId } = fd.ioasAlloc();
    throwsErrno(() => fd.hwptAlloc({ devId: 0, ptId: ioasId, flags: NEST_PARENT }), 'ENOENT');
    throwsErrno(() => allocNested(fd, 0, ioasId), 'ENOENT');
    throwsErrno(() => fd.deviceReplace(0, ioasId), 'ENOENT');
  });
});

describe('iommufd selftests, replayed on VT-d: iommufd_ioas.get_hw_info', () => {
  it('iommufd_ioas.get_hw_info (mock_domain): the VT-d register pair, buffer sizes, input types, PASID width', () => {
    const p = guestFixture('00:02.0');
    const { fd, devId } = p;
    const pasidDev = fd.bindDevice('6a:01.0').devId;
    const unit = p.k.iommus[0]!.unit;
    const empty = fd.getHwInfo({ devId, dataLen: 0 });
    assert.deepEqual([empty.dataLen, empty.data.length, empty.outDataType], [24, 0, HW_INFO_TYPE.INTEL_VTD]);
    const full = fd.getHwInfo({ devId });
    assert.equal(full.info.flags, HW_INFO_VTD_ERRATA_772415_SPR17);
    assert.ok(full.info.capReg.equals(unit.capRaw) && full.info.ecapReg.equals(unit.ecapRaw));
    const dv = new DataView(full.data.buffer);
    assert.deepEqual([dv.getUint32(0, true), dv.getUint32(8, true), dv.getUint32(12, true)], [1, unit.capRaw.lo, unit.capRaw.hi]);
    throwsErrno(() => fd.getHwInfo({ devId, flags: HW_INFO_FLAG_INPUT_TYPE, inDataType: HW_INFO_TYPE.INTEL_VTD + 1 }), 'EOPNOTSUPP');
    assert.deepEqual(fd.getHwInfo({ devId, flags: HW_INFO_FLAG_INPUT_TYPE, inDataType: HW_INFO_TYPE.INTEL_VTD }).data, full.data);
    const big = fd.getHwInfo({ devId, dataLen: 40 });
    assert.deepEqual([...big.data.subarray(0, 24)], [...full.data]);
    assert.deepEqual([...big.data.subarray(24)], new Array(16).fill(0), 'the tail of a larger buffer is zeroed');
    assert.deepEqual([...fd.getHwInfo({ devId, dataLen: 4 }).data], [1, 0, 0, 0], 'a 4-byte buffer gets the flags only');
    assert.equal(full.outMaxPasidLog2, 0);
    assert.equal(fd.getHwInfo({ devId: pasidDev }).outMaxPasidLog2, 20);
  });

  it('iommufd_ioas.get_hw_info (no_domain): device 0 is ENOENT', () => {
    throwsErrno(() => platform().fd.getHwInfo({ devId: 0 }), 'ENOENT');
  });
});

const MiB = 0x10_0000;
/** FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, ...) of 6.17: buffer sizes, and hugetlb buffers (2 MiB leaves on VT-d). */
const DIRTY_VARIANTS = [
  { name: 'domain_dirty8k', size: 8 * 1024, huge: false },
  { name: 'domain_dirty16k', size: 16 * 1024, huge: false },
  { name: 'domain_dirty64k', size: 64 * 1024, huge: false },
  { name: 'domain_dirty128k', size: 128 * 1024, huge: false },
  { name: 'domain_dirty320k', size: 320 * 1024, huge: false },
  { name: 'domain_dirty64M', size: 64 * MiB, huge: false },
  { name: 'domain_dirty64M_huge', size: 64 * MiB, huge: true },
  { name: 'domain_dirty128M', size: 128 * MiB, huge: false },
  { name: 'domain_dirty128M_huge', size: 128 * MiB, huge: true },
];
/** MOCK_PAGE_SIZE: the selftests' bitmap granularity (self->page_size), allowed on VT-d as it divides 4 KiB. */
const MOCK_PAGE_SIZE = 2048n;
/** The fixture's mock device: a device without ATS, so DMA goes through the IOTLB. */
const DIRTY_DEV = '00:02.0';

/**
 * FIXTURE_SETUP(iommufd_dirty_tracking): a buffer of the variant's size (hugetlb for _huge), a bitmap of
 * buffer_size / MOCK_PAGE_SIZE bits plus a page for the unaligned placements, an IOAS, and the mock device on it.
 */
function dirtyFixture(size: number, huge: boolean) {
  const p = platform({ dirtyTracking: true });
  const buffer = huge ? 0x4000_0000n : 0x2000_0000n;
  p.fd.mm.mmap(Number(buffer), huge ? Math.max(size, 2 * MiB) : size, { hugetlb: huge });
  const bitmapBytes = Math.ceil(size / Number(MOCK_PAGE_SIZE) / 8);
  const bitmap = 0x6000_0000n;
  p.fd.mm.mmap(Number(bitmap), Math.ceil((bitmapBytes + 4096) / 4096) * 4096);
  const { ioasId } = p.fd.ioasAlloc();
  const vfio = p.fd.bindDevice(DIRTY_DEV);
  vfio.attachPt({ ptId: ioasId });
  return { ...p, buffer, bitmap, bitmapBytes, ioasId, vfio, devId: vfio.devId };
}

describe('iommufd selftests, replayed on VT-d: fixture iommufd_dirty_tracking', () => {
  it('iommufd_dirty_tracking.enforce_dirty: a dirty HWPT takes devices whose IOMMU has SLADS; a device behind one without is EINVAL at attach, EOPNOTSUPP at allocation', () => {
    // The mock's NO_DIRTY device is, on VT-d, a device behind an IOMMU without ECAP.SLADS (dmar1 here).
    const p = guestFixture('6b:00.0', { dirtyTracking: true, dmar1: { devices: { '80:01.0': {} } } });
    const h = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId, flags: DIRTY_TRACKING }).hwptId;
    p.fd.bindDevice('00:02.0').attachPt({ ptId: h });
    const d = p.k.device('00:02.0').ridDomain!;
    assert.deepEqual([d.dirtyOps, d.dirtyTracking, d.stage], [true, false, 'second'], 'dirty ops from the allocation; tracking starts off');
    const noDirty = p.fd.bindDevice('80:01.0');
    throwsErrno(() => noDirty.attachPt({ ptId: h }), 'EINVAL');
    const { ioasId: other } = p.fd.ioasAlloc();
    noDirty.attachPt({ ptId: other });
    throwsErrno(() => p.fd.hwptAlloc({ devId: noDirty.devId, ptId: other, flags: DIRTY_TRACKING }), 'EOPNOTSUPP');
  });

  it('iommufd_dirty_tracking.set_dirty_tracking: enable then disable; VT-d sets and clears SSADE in the attached RID\'s PASID entry', () => {
    const p = guestFixture('6b:00.0', { dirtyTracking: true });
    const h = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId, flags: DIRTY_TRACKING }).hwptId;
    p.fd.bindDevice('6a:01.0').attachPt({ ptId: h });
    const dev = p.k.device('6a:01.0');
    const did = p.k.didOf(dev.ridDomain!, dev.iommu);
    const entry = () => p.m.memory.readLo(dev.pasidTables.get(0)!) & 0x200; // PASID 0: the first entry of table 0
    const flushes = [`pc_inv G=1 DID=${did} PASID=0`, `iotlb_inv G=2 DID=${did}`, 'dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=ALL S=1'];
    assert.deepEqual(descriptorsDuring(p.m, () => p.fd.hwptSetDirtyTracking({ hwptId: h, flags: HWPT_DIRTY_TRACKING_ENABLE })), flushes);
    assert.equal(entry(), 0x200);
    assert.deepEqual(descriptorsDuring(p.m, () => p.fd.hwptSetDirtyTracking({ hwptId: h, flags: 0 })), flushes);
    assert.equal(entry(), 0);
  });

  for (const v of DIRTY_VARIANTS) {
    for (const noClear of [false, true]) {
      const name = noClear ? 'get_dirty_bitmap_no_clear' : 'get_dirty_bitmap';
      it(`iommufd_dirty_tracking.${name} (${v.name}): DMA writes to every other leaf come back as bits, ${noClear ? 'and again' : 'then none'}; three bitmap placements`, function () {
        if (v.size >= 64 * MiB) this.timeout(20_000);
        const f = dirtyFixture(v.size, v.huge);
        const { fd, k, m } = f;
        const { ioasId } = fd.ioasAlloc();
        mapFixed(fd, ioasId, BASE, BigInt(v.size), f.buffer);
        const hwpt = fd.hwptAlloc({ devId: f.devId, ptId: ioasId, flags: DIRTY_TRACKING }).hwptId;
        // VT-d: D bits come from the device's own writes, so the device moves onto the dirty HWPT.
        f.vfio.attachPt({ ptId: hwpt });
        const leaf = v.huge ? 0x20_0000 : 0x1000;
        assert.equal(k.device(DIRTY_DEV).ridDomain!.pageTable!.lookup(Number(BASE))!.size, leaf, 'the IOAS maps the buffer with leaves of that size');
        fd.hwptSetDirtyTracking({ hwptId: hwpt, flags: HWPT_DIRTY_TRACKING_ENABLE });
        const flags = noClear ? HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0;
        for (const offset of [0n, MOCK_PAGE_SIZE, 0xff1n]) {
          const bitmap = f.bitmap + offset;
          // test_mock_dirty_bitmaps with npte bits per leaf: leaves 0, 2, 4, ... are written (IOMMU_TEST_OP_DIRTY on the mock).
          const npte = leaf / Number(MOCK_PAGE_SIZE);
          const pteset = 2 * npte;
          const nbits = v.size / Number(MOCK_PAGE_SIZE);
          for (let i = 0; i < nbits; i += pteset) k.dma(DIRTY_DEV, { addr: Number(BASE) + i * Number(MOCK_PAGE_SIZE) + 0x10, write: true });
          const get = () => {
            writeUser(fd, bitmap, new Uint8Array(f.bitmapBytes));
            const stream = descriptorsDuring(m, () => fd.hwptGetDirtyBitmap({ hwptId: hwpt, flags, iova: BASE, length: BigInt(v.size), pageSize: MOCK_PAGE_SIZE, data: bitmap }));
            return { bits: readUser(fd, bitmap, f.bitmapBytes), stream };
          };
          const first = get();
          for (let i = 0; i < nbits; i += pteset) for (let j = 0; j < pteset && i + j < nbits; j++) assert.equal(testBit(first.bits, i + j), j < npte, `bit ${i + j}`);
          for (let i = nbits; i < f.bitmapBytes * 8; i++) assert.equal(testBit(first.bits, i), false, `bit ${i} lies beyond the range`);
          // The harvest's IOTLB sync: one flush over [first dirty leaf, last dirty leaf], IH = 1; none with NO_CLEAR.
          if (noClear) assert.deepEqual(first.stream, []);
          else assert.match(first.stream.join('\n'), /^iotlb_inv G=[23] DID=\d+( ADDR=0x[0-9a-f]+ AM=\d+ IH=1)?$/);
          const second = get();
          assert.deepEqual(second.stream, [], 'nothing new: nothing to flush');
          for (let i = 0; i < nbits; i += pteset) for (let j = 0; j < pteset && i + j < nbits; j++) assert.equal(testBit(second.bits, i + j), noClear && j < npte, `second read, bit ${i + j}`);
        }
        fd.hwptSetDirtyTracking({ hwptId: hwpt, flags: 0 });
        f.vfio.attachPt({ ptId: f.ioasId });
        fd.destroy(hwpt);
      });
    }
  }

  it('iommufd_dirty_tracking.pasid_set_dirty_tracking: VT-d refuses a dirty-tracking domain on a PASID (EINVAL)', () => {
    const p = guestFixture('6a:01.0', { dirtyTracking: true });
    const h = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId, flags: PASID | DIRTY_TRACKING }).hwptId;
    p.vfio.attachPt({ ptId: h });
    throwsErrno(() => p.fd.deviceAttach(p.devId, h, 100), 'EINVAL');
    assert.equal(p.fd.attachedHwpt(p.devId, 100), 0);
  });

  it('iommufd_dirty_tracking.device_dirty_capability: GET_HW_INFO reports IOMMU_HW_CAP_DIRTY_TRACKING with SLADS', () => {
    const p = guestFixture('6b:00.0', { dirtyTracking: true });
    const h = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId }).hwptId;
    p.vfio.attachPt({ ptId: h });
    assert.equal(p.fd.getHwInfo({ devId: p.devId }).outCapabilities & HW_CAP.DIRTY_TRACKING, HW_CAP.DIRTY_TRACKING);
    const plain = guestFixture();
    assert.equal(plain.fd.getHwInfo({ devId: plain.devId }).outCapabilities & HW_CAP.DIRTY_TRACKING, 0);
  });
});

/** FIXTURE_SETUP(iommufd_viommu), mock_viommu variant, with the model's VT-d vIOMMU. */
function viommuFixture() {
  const p = guestFixture('6b:00.0', { iommufd: { viommu: 'lab-vtd' } });
  const parent = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId, flags: NEST_PARENT }).hwptId;
  const viommuId = p.fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId: p.devId, hwptId: parent }).viommuId;
  const nested = allocNested(p.fd, p.devId, viommuId);
  return { ...p, parent, viommuId, nested };
}

describe('iommufd selftests, replayed on VT-d: fixture iommufd_viommu', () => {
  it('iommufd_viommu.viommu_auto_destroy (no_viommu, 6.17 VT-d): VIOMMU_ALLOC is EOPNOTSUPP', () => {
    const p = guestFixture();
    const parent = p.fd.hwptAlloc({ devId: p.devId, ptId: p.ioasId, flags: NEST_PARENT }).hwptId;
    throwsErrno(() => p.fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId: p.devId, hwptId: parent }), 'EOPNOTSUPP');
    throwsErrno(() => p.fd.viommuAlloc({ type: 0, devId: p.devId, hwptId: parent }), 'EOPNOTSUPP');
    p.fd.close();
  });

  it('iommufd_viommu.viommu_auto_destroy (mock_viommu): closing with a vIOMMU and its nested HWPT', () => {
    const f = viommuFixture();
    f.fd.close();
    assert.equal(f.fd.objects.size, 0);
  });

  it('iommufd_viommu.viommu_negative_tests (mock_viommu and no_viommu)', () => {
    const f = viommuFixture();
    const { fd, devId } = f;
    throwsErrno(() => fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId, hwptId: 0 }), 'ENOENT');
    throwsErrno(() => fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId, hwptId: f.autoHwpt }), 'EINVAL');
    throwsErrno(() => fd.viommuAlloc({ type: 0xdead, devId, hwptId: f.parent }), 'EOPNOTSUPP');
    throwsErrno(() => fd.destroy(f.parent), 'EBUSY');
    throwsErrno(() => fd.destroy(f.viommuId), 'EBUSY');
    throwsErrno(() => platform({ iommufd: { viommu: 'lab-vtd' } }).fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId: 0, hwptId: 0 }), 'ENOENT');
  });

  it('iommufd_viommu.viommu_alloc_nested_iopf (mock_viommu): a nested HWPT on a vIOMMU needs the vdevice to attach', () => {
    const f = viommuFixture();
    const { fd, devId, vfio } = f;
    const { faultId, fd: faultFd } = fd.faultQueueAlloc();
    throwsErrno(() => allocNested(fd, devId, f.viommuId, { flags: FAULT_ID_VALID, faultId: 0xffff_ffff }), 'ENOENT');
    throwsErrno(() => allocNested(fd, devId, f.viommuId, { flags: (FAULT_ID_VALID | 0x8000_0000) >>> 0, faultId }), 'EOPNOTSUPP');
    const iopfHwpt = allocNested(fd, devId, f.viommuId, { flags: FAULT_ID_VALID, faultId });
    throwsErrno(() => vfio.attachPt({ ptId: iopfHwpt }), 'ENOENT');
    fd.vdeviceAlloc({ viommuId: f.viommuId, devId, virtId: 0x99 });
    vfio.attachPt({ ptId: iopfHwpt });
    throwsErrno(() => fd.destroy(iopfHwpt), 'EBUSY');
    triggerIopf(f, '6b:00.0', faultFd, devId);
    vfio.attachPt({ ptId: f.ioasId });
    fd.destroy(iopfHwpt);
    faultFd.close();
    fd.destroy(faultId);
  });

  it('iommufd_viommu.vdevice_alloc (partial, mock_viommu): one vdevice per device and per virtual ID', () => {
    const f = viommuFixture();
    const { fd, devId, vfio } = f;
    throwsErrno(() => vfio.attachPt({ ptId: f.nested }), 'ENOENT');
    const v1 = fd.vdeviceAlloc({ viommuId: f.viommuId, devId, virtId: 0x99 }).vdeviceId;
    vfio.attachPt({ ptId: f.nested });
    throwsErrno(() => fd.vdeviceAlloc({ viommuId: f.viommuId, devId, virtId: 0x99 }), 'EEXIST');
    const other = fd.bindDevice('6a:01.0').devId;
    throwsErrno(() => fd.vdeviceAlloc({ viommuId: f.viommuId, devId: other, virtId: 0x99 }), 'EEXIST');
    vfio.attachPt({ ptId: f.ioasId });
    fd.destroy(v1);
    fd.vdeviceAlloc({ viommuId: f.viommuId, devId, virtId: 0x88 });
    vfio.attachPt({ ptId: f.nested });
    // What a VMM asks: the physical device behind the guest's RID.
    assert.equal(fd.vdeviceByVirtId(f.viommuId, 0x88), f.k.device('6b:00.0'));
    assert.equal(fd.vdeviceByVirtId(f.viommuId, 0x99), undefined);
    throwsErrno(() => platform({ iommufd: { viommu: 'lab-vtd' } }).fd.vdeviceAlloc({ viommuId: 0, devId: 0, virtId: 1 }), 'ENOENT');
  });

  it('iommufd_viommu.vdevice_tombstone (mock_viommu): unbinding the device destroys its vdevice; the id stays dead', () => {
    const f = viommuFixture();
    const vdev = f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 }).vdeviceId;
    f.vfio.close();
    throwsErrno(() => f.fd.destroy(vdev), 'ENOENT');
    assert.notEqual(f.fd.ioasAlloc().ioasId, vdev, 'a tombstone keeps its id');
    f.fd.destroy(f.nested);
    f.fd.destroy(f.viommuId);
  });
});

describe('iommufd selftests, replayed on VT-d: fixture iommufd_device_pasid', () => {
  for (const variant of ['no_pasid', 'has_pasid'] as const) {
    it(`iommufd_device_pasid.pasid_attach (${variant}): compatibility, EBUSY, replace, failed replace, IOPF on a PASID`, () => {
      const p = guestFixture('6a:01.0');
      const { fd, k, ioasId, devId: d, vfio } = p;
      const n = variant === 'no_pasid' ? fd.bindDevice('00:02.0') : undefined;
      if (n) n.attachPt({ ptId: ioasId });
      const check = (pasid: number, hwpt: number) => assert.equal(fd.attachedHwpt(d, pasid), hwpt, `PASID ${pasid}`);
      // 1
      fd.deviceDetach(d, 100);
      // 2: the nested HWPTs on a vIOMMU cannot be made on VT-d 6.17 (nested2 is dropped).
      const parent = fd.hwptAlloc({ devId: d, ptId: ioasId, flags: NEST_PARENT }).hwptId;
      const nested0 = allocNested(fd, d, parent, { flags: PASID });
      const nested1 = allocNested(fd, d, parent, { flags: PASID });
      const { faultId, fd: faultFd } = fd.faultQueueAlloc();
      const iopfHwpt = allocNested(fd, d, parent, { flags: FAULT_ID_VALID | PASID, faultId });
      throwsErrno(() => fd.viommuAlloc({ type: LAB_VIOMMU_TYPE_VTD, devId: d, hwptId: parent }), 'EOPNOTSUPP');
      const s2 = fd.hwptAlloc({ devId: d, ptId: ioasId, flags: PASID }).hwptId;
      // 3: the RID's HWPT must be PASID-compatible once a PASID is attached, and the other way round.
      vfio.attachPt({ ptId: parent });
      throwsErrno(() => fd.deviceAttach(d, s2, 100), 'EINVAL');
      // 4
      vfio.attachPt({ ptId: s2 });
      fd.deviceAttach(d, nested0, 100);
      throwsErrno(() => fd.deviceReplace(d, parent), 'EINVAL');
      fd.deviceDetach(d, 100);
      check(100, 0);
      // 5: a PASID-compatible HWPT works on the RID of a device without PASID; PASIDs do not.
      if (n) {
        n.attachPt({ ptId: nested0 });
        n.attachPt({ ptId: ioasId });
        throwsErrno(() => fd.deviceAttach(n.devId, parent, 100), 'EINVAL');
        throwsErrno(() => fd.deviceAttach(n.devId, s2, 100), 'EINVAL');
      }
      // 6: neither the nest parent nor an auto domain is PASID-compatible.
      throwsErrno(() => fd.deviceAttach(d, parent, 100), 'EINVAL');
      check(100, 0);
      throwsErrno(() => fd.deviceAttach(d, ioasId, 100), 'EINVAL');
      check(100, 0);
      // 7: attach over an attachment is EBUSY; replace is the way.
      fd.deviceAttach(d, s2, 100);
      check(100, s2);
      assert.equal(dmaTarget(k, '6a:01.0', BASE + 0x10n, { pasid: 100 }), dmaTarget(k, '6a:01.0', BASE + 0x10n), 'PASID 100 translates through s2, like the RID');
      throwsErrno(() => fd.deviceAttach(d, nested0, 100), 'EBUSY');
      fd.deviceDetach(d, 100);
      check(100, 0);
      fd.deviceAttach(d, nested0, 100);
      check(100, nested0);
      throwsErrno(() => fd.deviceAttach(d, nested0, 100), 'EBUSY');
      fd.deviceDetach(d, 100);
      // 8: replace needs an attachment; an IOAS gives a new auto domain, which is not PASID-compatible.
      throwsErrno(() => fd.deviceReplace(d, s2, 200), 'EINVAL');
      fd.deviceAttach(d, s2, 200);
      throwsErrno(() => fd.deviceReplace(d, ioasId, 200), 'EINVAL');
      check(200, s2);
      fd.deviceReplace(d, nested0, 200);
      fd.deviceReplace(d, nested1, 200);
      check(200, nested1);
      fd.deviceDetach(d, 200);
      // 9: a replace the driver refuses leaves the old HWPT in place. VT-d's refusal: S1 data that is checked
      // only at attach (a 57-bit S1 without 5-level first-stage paging); the mock used a designed ENOMEM.
      const wide = allocNested(fd, d, parent, { flags: PASID, data: { pgtblAddr: BASE, addrWidth: 57 } });
      fd.deviceAttach(d, s2, 1024);
      throwsErrno(() => fd.deviceReplace(d, wide, 1024), 'EINVAL');
      check(1024, s2);
      assert.match(dmaTarget(k, '6a:01.0', BASE, { pasid: 1024 }), /^0x/, 'PASID 1024 still translates through s2');
      fd.deviceDetach(d, 1024);
      // 10: IOPF on a PASID, then replace.
      fd.deviceAttach(d, iopfHwpt, 2048);
      check(2048, iopfHwpt);
      triggerIopf(p, '6a:01.0', faultFd, d, 2048);
      fd.deviceReplace(d, s2, 2048);
      check(2048, s2);
      fd.deviceDetach(d, 2048);
      // 11
      fd.destroy(iopfHwpt);
      faultFd.close();
      fd.destroy(faultId);
      vfio.attachPt({ ptId: ioasId });
    });
  }
});

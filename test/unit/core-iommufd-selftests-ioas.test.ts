// Replays of the iommufd selftests (tools/testing/selftests/iommu/iommufd.c) for the bare context and the
// IOAS fixtures, against the iommufd layer over the VT-d driver model. Each test is named after the
// selftest and checks the same outcome (success or errno) at each step; where VT-d differs from the mock
// driver (4 KiB IOVA alignment instead of 2 KiB, an aperture from 0, the MSI window reserved by every
// device, auto domains shared between compatible devices), the step says so. docs/iommufd-coverage.md
// lists what is replayed and what is not.
import * as assert from 'node:assert/strict';
import { IOAS_MAP, iommufdIoctl, IOMMUFD_CMD, IOMMUFD_CMD_BASE, OPTION, OPTION_OP, U64_MAX, VFIO_IOAS_OP, type VfioDevice } from '../../src/core/iommufd';
import { BASE, BUFFER, BUFFER_SIZE, dmaTarget, errnoOf, FIXED_RW, mapAuto, mapFixed, P, pattern, platform, throwsErrno, UAPI, unmap, userPhys, writeUser } from '../support/iommufd';

const MSI_LAST = 0xfeef_ffffn;
const VTD_APERTURE_LAST = (1n << 48n) - 1n;

function option(fd: ReturnType<typeof platform>['fd'], optionId: number, op: number, objectId: number, val64 = 0n) {
  return fd.option({ optionId, op, objectId, val64 }).val64;
}

describe('iommufd selftests, replayed on VT-d: fixture iommufd (bare context)', () => {
  it('iommufd.simple_close: a context opened and closed leaves nothing behind', () => {
    const { fd } = platform();
    fd.close();
    assert.equal(fd.objects.size, 0);
    assert.equal(fd.pinnedPages, 0);
    throwsErrno(() => fd.ioasAlloc(), 'EBADF');
  });

  /** A zeroed struct of `n` bytes whose size field says `size` (default n), optionally ending in `last`. */
  const struct = (n: number, o: { size?: number; last?: number } = {}) => {
    const b = new Uint8Array(n);
    new DataView(b.buffer).setUint32(0, o.size ?? n, true);
    if (o.last !== undefined) b[n - 1] = o.last;
    return b;
  };

  it('iommufd.cmd_fail: DESTROY(0) is ENOENT, a NULL argument EFAULT, a number below the iommufd range ENOTTY', () => {
    const { fd } = platform();
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, struct(8)), 'ENOENT');
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, null), 'EFAULT');
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD_BASE - 1, struct(8)), 'ENOTTY');
  });

  it('iommufd.cmd_length: below the first version EINVAL, a non-zero byte past the struct E2BIG, trailing zeros change nothing', () => {
    const { fd } = platform();
    // TEST_LENGTH for every command, with the sizes of the kernel header (the fixture), not the model's.
    // Commands the model does not implement stop after the envelope with a RangeError: that is their result.
    const result = (fn: () => unknown) => {
      try {
        return errnoOf(fn);
      } catch (e) {
        if (e instanceof RangeError) return 'not modelled';
        throw e;
      }
    };
    for (const [c, op] of Object.entries(UAPI.ioctls)) {
      const size = UAPI.structs[op.struct]!.size;
      assert.equal(result(() => iommufdIoctl(fd, op.nr, struct(size + 1, { size: op.minSize - 1, last: 0xff }))), 'EINVAL', `${c}: size ${op.minSize - 1}`);
      assert.equal(result(() => iommufdIoctl(fd, op.nr, struct(size + 1, { last: 0xff }))), 'E2BIG', `${c}: a non-zero byte past ${size}`);
      const exact = result(() => iommufdIoctl(fd, op.nr, struct(size + 1, { size, last: 0xff })));
      assert.equal(result(() => iommufdIoctl(fd, op.nr, struct(size + 1, { last: 0 }))), exact, `${c}: the same result (${exact}) with a zero byte more`);
    }
  });

  it('iommufd.cmd_ex_fail: DESTROY grown to 16 bytes: zeros are accepted (ENOENT), a 1 is E2BIG; 7 bytes are EINVAL', () => {
    const { fd } = platform();
    const ex = struct(16);
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, ex), 'ENOENT');
    ex[8] = 1;
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, ex), 'E2BIG');
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, struct(8)), 'ENOENT');
    throwsErrno(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, struct(8, { size: 7 })), 'EINVAL');
  });

  it('iommufd.global_options: RLIMIT_MODE get/set, HUGE_PAGES with object 0 is ENOENT', () => {
    const { fd } = platform();
    assert.equal(option(fd, OPTION.RLIMIT_MODE, OPTION_OP.GET, 0), 0n);
    assert.equal(option(fd, OPTION.RLIMIT_MODE, OPTION_OP.SET, 0, 1n), 1n);
    throwsErrno(() => option(fd, OPTION.RLIMIT_MODE, OPTION_OP.SET, 0, 2n), 'EINVAL');
    assert.equal(option(fd, OPTION.RLIMIT_MODE, OPTION_OP.GET, 0), 1n);
    assert.equal(option(fd, OPTION.RLIMIT_MODE, OPTION_OP.SET, 0, 0n), 0n);
    throwsErrno(() => option(fd, OPTION.HUGE_PAGES, OPTION_OP.GET, 0), 'ENOENT');
    throwsErrno(() => option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, 0), 'ENOENT');
    // Not in the selftest, same rules: object_id on the global option, a non-empty context, no capability.
    throwsErrno(() => option(fd, OPTION.RLIMIT_MODE, OPTION_OP.GET, 1), 'EOPNOTSUPP');
    fd.ioasAlloc();
    throwsErrno(() => option(fd, OPTION.RLIMIT_MODE, OPTION_OP.SET, 0, 1n), 'EBUSY');
    throwsErrno(() => option(platform({ iommufd: { capSysResource: false } }).fd, OPTION.RLIMIT_MODE, OPTION_OP.SET, 0, 1n), 'EPERM');
  });

  it('iommufd.vfio_ioas: GET without a compat IOAS is ENODEV; SET, GET, CLEAR', () => {
    const { fd } = platform();
    throwsErrno(() => fd.vfioIoas({ op: VFIO_IOAS_OP.GET }), 'ENODEV');
    throwsErrno(() => fd.vfioIoas({ op: VFIO_IOAS_OP.SET, ioasId: 0 }), 'ENOENT');
    const { ioasId } = fd.ioasAlloc();
    fd.vfioIoas({ op: VFIO_IOAS_OP.SET, ioasId });
    assert.equal(fd.vfioIoas({ op: VFIO_IOAS_OP.GET }).ioasId, ioasId);
    fd.vfioIoas({ op: VFIO_IOAS_OP.CLEAR });
    throwsErrno(() => fd.vfioIoas({ op: VFIO_IOAS_OP.GET }), 'ENODEV');
  });
});

type IoasVariant = 'no_domain' | 'mock_domain' | 'two_mock_domain';

/**
 * FIXTURE_SETUP(iommufd_ioas): an IOAS and 0, 1 or 2 devices attached to it. `mock_domain` also puts the
 * PASID-capable device on the IOAS. The devices are VFIO cdevs bound to the context.
 */
function ioasFixture(variant: IoasVariant) {
  const p = platform();
  const { ioasId } = p.fd.ioasAlloc();
  const names = variant === 'no_domain' ? [] : variant === 'mock_domain' ? ['6b:00.0'] : ['6b:00.0', '00:02.0'];
  const devs: VfioDevice[] = [];
  const hwptIds: number[] = [];
  for (const n of names) {
    const d = p.fd.bindDevice(n);
    hwptIds.push(d.attachPt({ ptId: ioasId }).ptId);
    devs.push(d);
  }
  if (variant === 'mock_domain') p.fd.bindDevice('6a:01.0').attachPt({ ptId: ioasId });
  const hasDomain = devs.length > 0;
  return { ...p, ioasId, devs, hwptIds, hasDomain, devId: devs[0]?.devId ?? 0, hwptId: hwptIds[0] ?? 0, base: hasDomain ? BASE : 0n };
}

for (const variant of ['no_domain', 'mock_domain', 'two_mock_domain'] as const) {
  describe(`iommufd selftests, replayed on VT-d: fixture iommufd_ioas (${variant})`, () => {
    const name = (test: string) => `iommufd_ioas.${test} (${variant})`;

    it(`${name('ioas_auto_destroy')}: closing the context frees the IOAS, its HWPTs and the devices`, () => {
      const f = ioasFixture(variant);
      f.fd.close();
      assert.equal(f.fd.objects.size, 0);
      for (const d of f.devs) assert.equal(d.dev.ridDomain, d.dev.defaultDomain, `${d.dev.name} is back on its default domain`);
      assert.ok(f.k.domains.every((d) => !d.name.startsWith('hwpt')), 'every HWPT domain was freed');
    });

    it(`${name('ioas_destroy')}: an IOAS with an auto domain is busy`, () => {
      const f = ioasFixture(variant);
      if (f.hasDomain) throwsErrno(() => f.fd.destroy(f.ioasId), 'EBUSY');
      else f.fd.destroy(f.ioasId);
    });

    it(`${name('hwpt_attach')}: a new device attaches directly to the existing HWPT`, () => {
      const f = ioasFixture(variant);
      const spare = f.fd.bindDevice('00:03.0');
      if (!f.hasDomain) {
        throwsErrno(() => spare.attachPt({ ptId: 0 }), 'ENOENT');
        return;
      }
      assert.equal(spare.attachPt({ ptId: f.hwptId }).ptId, f.hwptId);
      assert.equal(spare.dev.ridDomain, f.devs[0]!.dev.ridDomain, 'both devices translate through one domain');
    });

    it(`${name('ioas_area_destroy')}: areas do not hold the IOAS; a device's auto domain does`, () => {
      const f = ioasFixture(variant);
      mapFixed(f.fd, f.ioasId, f.base, P);
      if (f.hasDomain) throwsErrno(() => f.fd.destroy(f.ioasId), 'EBUSY');
      else f.fd.destroy(f.ioasId);
    });

    it(`${name('ioas_area_auto_destroy')}: ten areas, then close unpins and unmaps everything`, () => {
      const f = ioasFixture(variant);
      for (let i = 0n; i < 10n; i++) mapFixed(f.fd, f.ioasId, f.base + i * P, P, BUFFER + i * P);
      assert.equal(f.fd.pinnedPages, f.hasDomain ? 10 : 0, 'pages are pinned only when a domain needs them');
      f.fd.close();
      assert.equal(f.fd.pinnedPages, 0);
      for (const d of f.devs) assert.equal(d.dev.ridDomain, d.dev.defaultDomain);
      if (f.hasDomain) assert.match(dmaTarget(f.k, '6b:00.0', BASE), /^fault/, 'the IOAS mappings are gone from the device');
    });

    it(`${name('area')}: unmap of nothing is ENOENT, areas are never split, overlaps are EEXIST`, () => {
      const { fd, ioasId, base } = ioasFixture(variant);
      for (let i = 0n; i < 10n; i++) throwsErrno(() => unmap(fd, ioasId, i * P, P), 'ENOENT');
      for (let i = 0n; i < 10n; i++) mapFixed(fd, ioasId, base + i * P, P);
      for (let i = 0n; i < 10n; i++) assert.equal(unmap(fd, ioasId, base + i * P, P), P);
      mapFixed(fd, ioasId, base + 16n * P, 2n * P);
      throwsErrno(() => unmap(fd, ioasId, base + 16n * P, P), 'ENOENT');
      throwsErrno(() => unmap(fd, ioasId, base + 17n * P, P), 'ENOENT');
      for (const [len, at] of [[2n, 16n], [1n, 16n], [1n, 17n], [2n, 15n], [3n, 15n]] as const) {
        throwsErrno(() => mapFixed(fd, ioasId, base + at * P, len * P), 'EEXIST');
      }
      assert.equal(unmap(fd, ioasId, 0n, U64_MAX), 2n * P);
      assert.equal(unmap(fd, ioasId, 0n, U64_MAX), 0n, 'unmapping everything of an empty IOAS succeeds');
    });

    it(`${name('unmap_fully_contained_areas')}: a range that cuts an area is ENOENT; holes do not count`, () => {
      const f = ioasFixture(variant);
      const { fd, ioasId } = f;
      const base = f.base + 4n * P;
      for (let i = 0n; i < 4n; i++) mapFixed(fd, ioasId, base + i * 16n * P, 8n * P);
      throwsErrno(() => unmap(fd, ioasId, base - 4n * P, 8n * P), 'ENOENT');
      throwsErrno(() => unmap(fd, ioasId, base + 3n * 16n * P + 4n * P, 8n * P), 'ENOENT');
      assert.equal(unmap(fd, ioasId, base - 4n * P, 3n * 16n * P + 8n * P + 4n * P), 32n * P);
    });

    it(`${name('area_auto_iova')}: kernel-chosen IOVAs are aligned, avoid reserved ranges and stay in the allowed ones`, () => {
      const { fd, ioasId, hasDomain, base } = ioasFixture(variant);
      // Without a domain nothing is pinned, so an address nobody mapped is fine.
      const uva = hasDomain ? BUFFER : 0x8000_0000n;
      const mapAll = () => {
        const out: [bigint, bigint][] = [];
        for (let i = 1n; i <= 10n; i++) {
          const len = i * P;
          const iova = mapAuto(fd, ioasId, len, uva);
          assert.equal(iova % (len & -len), 0n, `IOVA 0x${iova.toString(16)} for 0x${len.toString(16)} bytes is aligned`);
          out.push([iova, len]);
        }
        return out;
      };
      const iovas: bigint[] = [];
      for (let i = 0; i < 10; i++) iovas.push(mapAuto(fd, ioasId, P, uva));
      for (const iova of iovas) unmap(fd, ioasId, iova, P);
      for (const [iova, len] of mapAll()) unmap(fd, ioasId, iova, len);

      fd.addReserved(ioasId, 4n * P, 100n * P);
      for (const [iova, len] of mapAll()) {
        assert.ok(iova + len - 1n < 4n * P || iova >= 104n * P, `0x${iova.toString(16)} avoids the reserved range`);
        unmap(fd, ioasId, iova, len);
      }
      throwsErrno(() => fd.ioasAllowIovas({ ioasId, iovas: [{ start: P, last: 600n * P }] }), 'EADDRINUSE');
      const allowed = hasDomain ? { start: base + P, last: base + 600n * P - 1n } : { start: 200n * P, last: 600n * P - 1n };
      fd.ioasAllowIovas({ ioasId, iovas: [allowed] });
      for (const [iova, len] of mapAll()) {
        assert.ok(iova >= allowed.start && iova + len - 1n <= allowed.last, `0x${iova.toString(16)} is inside the allowed range`);
        unmap(fd, ioasId, iova, len);
      }
    });

    it(`${name('reserved_overflow')}: a reservation up to near ULONG_MAX leaves no room, without overflowing the search`, () => {
      const { fd, ioasId } = ioasFixture(variant);
      fd.addReserved(ioasId, 6n, 0xffff_ffff_ffff_8001n);
      throwsErrno(() => mapAuto(fd, ioasId, 0x5000n), 'ENOSPC');
    });

    it(`${name('area_allowed')}: allowed and reserved ranges exclude each other (EADDRINUSE)`, () => {
      const { fd, ioasId, base } = ioasFixture(variant);
      fd.ioasAllowIovas({ ioasId, iovas: [{ start: base, last: base + 600n * P }] });
      throwsErrno(() => fd.addReserved(ioasId, base + P, P), 'EADDRINUSE');
      fd.ioasAllowIovas({ ioasId, iovas: [] });
      fd.addReserved(ioasId, base + P, P);
      throwsErrno(() => fd.ioasAllowIovas({ ioasId, iovas: [{ start: base, last: base + 600n * P }] }), 'EADDRINUSE');
    });

    it(`${name('copy_area')}: IOAS_COPY within the IOAS and to a second one`, () => {
      const { fd, k, ioasId, base, hasDomain } = ioasFixture(variant);
      mapFixed(fd, ioasId, base, P);
      fd.ioasCopy({ flags: IOAS_MAP.FIXED_IOVA | IOAS_MAP.WRITEABLE, dstIoasId: ioasId, srcIoasId: ioasId, length: P, dstIova: base + P, srcIova: base });
      const { ioasId: ioas2 } = fd.ioasAlloc();
      fd.ioasCopy({ flags: IOAS_MAP.FIXED_IOVA | IOAS_MAP.WRITEABLE, dstIoasId: ioas2, srcIoasId: ioasId, length: P, dstIova: 0n, srcIova: base });
      // The copy maps the very pages of the source (VT-d check in place of MD_CHECK_MAP).
      if (hasDomain) assert.equal(dmaTarget(k, '6b:00.0', base + P + 8n, { write: true }), dmaTarget(k, '6b:00.0', base + 8n));
    });

    it(`${name('iova_ranges')}: the holes of the reserved ranges, and EMSGSIZE with the count when the array is short`, () => {
      const { fd, ioasId, hasDomain } = ioasFixture(variant);
      // VT-d: the aperture is [0, 2^48 - 1] and every device reserves its MSI window.
      const initial = hasDomain ? [{ start: 0n, last: 0xfedf_ffffn }, { start: MSI_LAST + 1n, last: VTD_APERTURE_LAST }] : [{ start: 0n, last: U64_MAX }];
      const r = fd.ioasIovaRanges({ ioasId, numIovas: 8 });
      assert.deepEqual(r.ranges, initial);
      assert.equal(r.outIovaAlignment, hasDomain ? 4096n : 1n);
      const short = throwsErrno<{ numIovas: number; ranges: unknown[] }>(() => fd.ioasIovaRanges({ ioasId, numIovas: 0 }), 'EMSGSIZE');
      assert.deepEqual([short.out.numIovas, short.out.ranges], [initial.length, []]);
      fd.addReserved(ioasId, P, P);
      const after = [{ start: 0n, last: P - 1n }, { start: 2n * P, last: initial[0]!.last }, ...initial.slice(1)];
      assert.deepEqual(fd.ioasIovaRanges({ ioasId, numIovas: 8 }).ranges, after);
      const one = throwsErrno<{ numIovas: number; ranges: unknown[] }>(() => fd.ioasIovaRanges({ ioasId, numIovas: 1 }), 'EMSGSIZE');
      assert.deepEqual([one.out.numIovas, one.out.ranges], [after.length, [after[0]]]);
    });

    it(`${name('access_domain_destory')}: an access pins one 4 KiB page of a 2 MiB hugetlb page; the devices go, then the access`, () => {
      const { fd, k, ioasId, devs, base } = ioasFixture(variant);
      const huge = 0x4000_0000n;
      fd.mm.mmap(Number(huge), 0x40_0000, { hugetlb: true });
      mapFixed(fd, ioasId, base, 0x40_0000n, huge);
      const access = fd.accessCreate({ ioasId, needsPinPages: true });
      const pin = access.pinPages(base + P, P);
      assert.deepEqual(pin.pages, [Number(BigInt(userPhys(fd, huge + P)))], 'the sub-page of the huge page');
      assert.equal(BigInt(userPhys(fd, huge + P)) - BigInt(userPhys(fd, huge)), P, 'physically contiguous');
      if (devs.length) assert.equal(k.device(devs[0]!.dev.name).ridDomain!.pageTable!.lookup(Number(base))!.size, 0x20_0000, 'a 2 MiB leaf');
      for (const d of devs) d.close();
      // mock_domain keeps its PASID-capable device on the IOAS, so a domain still holds the page too.
      assert.equal(fd.pinCount(huge + P), variant === 'mock_domain' ? 2 : 1);
      access.unpinPages(pin.id);
      access.destroy();
      unmap(fd, ioasId, base, 0x40_0000n);
      assert.equal(fd.pinnedPages, 0);
    });

    it(`${name('access_pin')}: an access pins the user pages, twice if asked; a device added meanwhile sees them mapped`, () => {
      const { fd, k, ioasId } = ioasFixture(variant);
      const access = fd.accessCreate({ ioasId, needsPinPages: true });
      const userPages = Array.from({ length: 16 }, (_, i) => Number(BigInt(userPhys(fd, BUFFER + BigInt(i) * P))));
      for (let npages = 1; npages < 16; npages++) {
        const len = BigInt(npages) * P;
        mapFixed(fd, ioasId, BASE, BUFFER_SIZE);
        const single = access.pinPages(BASE, len);
        assert.deepEqual(single.pages, userPages.slice(0, npages));
        access.unpinPages(single.id);
        const a = access.pinPages(BASE, len);
        const b = access.pinPages(BASE, len);
        assert.equal(fd.pinCount(BUFFER), variant === 'no_domain' ? 2 : 3, 'each user pins');
        access.unpinPages(b.id);
        access.unpinPages(a.id);
        const c = access.pinPages(BASE, len);
        const spare = fd.bindDevice('00:03.0');
        spare.attachPt({ ptId: ioasId });
        for (let i = 0; i < 16; i++) assert.equal(dmaTarget(k, '00:03.0', BASE + BigInt(i) * P), '0x' + userPages[i]!.toString(16));
        spare.close();
        access.unpinPages(c.id);
        unmap(fd, ioasId, BASE, BUFFER_SIZE);
      }
      access.destroy();
      assert.equal(fd.pinnedPages, 0);
    });

    it(`${name('access_pin_unmap')}: an unmap makes the access drop its pins; they are gone afterwards (ENOENT)`, () => {
      const { fd, ioasId } = ioasFixture(variant);
      const access = fd.accessCreate({ ioasId, needsPinPages: true });
      mapFixed(fd, ioasId, BASE, BUFFER_SIZE);
      const pin = access.pinPages(BASE, BUFFER_SIZE);
      assert.equal(unmap(fd, ioasId, BASE, BUFFER_SIZE), BUFFER_SIZE);
      throwsErrno(() => access.unpinPages(pin.id), 'ENOENT');
    });

    const rwChecks = (fd: ReturnType<typeof platform>['fd'], ioasId: number, iova: bigint) => {
      const access = fd.accessCreate({ ioasId });
      const shadow = pattern(Number(BUFFER_SIZE));
      writeUser(fd, BUFFER, shadow);
      for (let io = iova + P - 50n; io < iova + P + 50n; io++) {
        const off = Number(io - iova);
        for (let len = 1; len < 64; len++) {
          const got = new Uint8Array(len);
          access.rw(io, got);
          assert.deepEqual(got, shadow.subarray(off, off + len), `read of ${len} at +${off}`);
          const put = pattern(len, off * 64 + len);
          access.rw(io, put, { write: true });
          shadow.set(put, off);
          access.rw(io, got);
          assert.deepEqual(got, put);
        }
      }
      const all = new Uint8Array(Number(BUFFER_SIZE));
      access.rw(iova, all);
      assert.deepEqual(all, shadow);
      access.destroy();
    };

    it(`${name('access_rw')}: CPU reads and writes through the IOAS at every offset and length around a page boundary`, () => {
      const { fd, ioasId } = ioasFixture(variant);
      rwChecks(fd, ioasId, mapAuto(fd, ioasId, BUFFER_SIZE));
    });

    it(`${name('access_rw_unaligned')}: the same at an IOVA 2 KiB into a page${variant === 'no_domain' ? '' : ' (VT-d: the 4 KiB alignment refuses it)'}`, () => {
      const { fd, ioasId, base, hasDomain } = ioasFixture(variant);
      if (hasDomain) {
        throwsErrno(() => mapFixed(fd, ioasId, base + 2048n, BUFFER_SIZE), 'EINVAL');
        return;
      }
      mapFixed(fd, ioasId, base + 2048n, BUFFER_SIZE);
      rwChecks(fd, ioasId, base + 2048n);
    });

    it(`${name('ioas_option_huge_pages')}: GET 1, SET 0, GET 0, SET 2 is EINVAL, SET 1`, () => {
      const { fd, ioasId } = ioasFixture(variant);
      assert.equal(option(fd, OPTION.HUGE_PAGES, OPTION_OP.GET, ioasId), 1n);
      option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 0n);
      assert.equal(option(fd, OPTION.HUGE_PAGES, OPTION_OP.GET, ioasId), 0n);
      throwsErrno(() => option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 2n), 'EINVAL');
      option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 1n);
      assert.equal(option(fd, OPTION.HUGE_PAGES, OPTION_OP.GET, ioasId), 1n);
    });

    it(`${name('ioas_iova_alloc')}: with a domain every length must be a multiple of 4 KiB (the mock: 2 KiB)`, () => {
      const { fd, ioasId, hasDomain } = ioasFixture(variant);
      for (let len = 1n; len < 2n * P; len++) {
        if (hasDomain && len % 4096n) {
          assert.equal(errnoOf(() => mapAuto(fd, ioasId, len)), 'EINVAL', `length ${len}`);
          continue;
        }
        unmap(fd, ioasId, mapAuto(fd, ioasId, len), len);
      }
    });

    if (variant === 'no_domain') {
      it(`${name('ioas_align_change')}: HUGE_PAGES=0 raises the alignment to a page; it cannot while an area is misaligned`, () => {
        const { fd, ioasId } = ioasFixture(variant);
        mapFixed(fd, ioasId, BASE, P);
        option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 0n);
        throwsErrno(() => mapFixed(fd, ioasId, BASE + P, P, BUFFER + 2048n), 'EINVAL');
        option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 0n);
        option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 1n);
        mapFixed(fd, ioasId, BASE + P, P, BUFFER + 2048n);
        throwsErrno(() => option(fd, OPTION.HUGE_PAGES, OPTION_OP.SET, ioasId, 0n), 'EADDRINUSE');
        unmap(fd, ioasId, BASE, P);
        unmap(fd, ioasId, BASE + P, P);
      });
    }

    it(`${name('copy_sweep')}: 2 KiB copies across the source area: ENOENT wherever the source is not fully mapped`, () => {
      const { fd, ioasId, hasDomain } = ioasFixture(variant);
      const { ioasId: dst } = fd.ioasAlloc();
      const last = BASE + BUFFER_SIZE - (hasDomain ? 1n : 2n);
      mapFixed(fd, ioasId, BASE, last - BASE + 1n);
      let copied = 0;
      for (let iova = BASE - P; iova <= last; iova += 511n) {
        const cmd = { flags: IOAS_MAP.FIXED_IOVA | IOAS_MAP.WRITEABLE, srcIoasId: ioasId, dstIoasId: dst, dstIova: BASE, srcIova: iova, length: 2048n };
        if (iova < BASE || iova + 2047n > last) {
          throwsErrno(() => fd.ioasCopy(cmd), 'ENOENT');
        } else {
          fd.ioasCopy(cmd);
          unmap(fd, dst, BASE, 2048n);
          copied++;
        }
      }
      assert.ok(copied > 100);
      fd.destroy(dst);
    });
  });
}

type DomainVariant = 'one_domain' | 'two_domains';

/** FIXTURE_SETUP(iommufd_mock_domain): an IOAS with one or two devices (VT-d shares one auto domain). */
function mockDomainFixture(variant: DomainVariant) {
  const p = platform();
  const { ioasId } = p.fd.ioasAlloc();
  const devs = (variant === 'one_domain' ? ['6b:00.0'] : ['6b:00.0', '00:02.0']).map((n) => p.fd.bindDevice(n));
  const hwptIds = devs.map((d) => d.attachPt({ ptId: ioasId }).ptId);
  /** check_mock_iova: DMA from every device of the fixture at each page lands on the pinned user page. */
  const checkIova = (uva: bigint, iova: bigint, len: bigint, ...extra: VfioDevice[]) => {
    for (let off = 0n; off < len; off += P) {
      for (const d of [...devs, ...extra]) assert.equal(dmaTarget(p.k, d.dev.name, iova + off + 0x18n), '0x' + (BigInt(userPhys(p.fd, uva + off)) + 0x18n).toString(16), `${d.dev.name} at IOVA 0x${(iova + off).toString(16)}`);
    }
  };
  return { ...p, ioasId, devs, hwptIds, checkIova };
}

for (const variant of ['one_domain', 'two_domains'] as const) {
  describe(`iommufd selftests, replayed on VT-d: fixture iommufd_mock_domain (${variant})`, () => {
    const name = (test: string) => `iommufd_mock_domain.${test} (${variant})`;

    it(`${name('basic')}: a map reaches the user pages; user memory that is not all there is EFAULT`, () => {
      const f = mockDomainFixture(variant);
      const iova = mapAuto(f.fd, f.ioasId, P);
      f.checkIova(BUFFER, iova, P);
      const buf = 0x7100_0000;
      f.mm.mmap(buf, 2 * 4096);
      f.mm.munmap(buf + 4096, 4096);
      throwsErrno(() => mapAuto(f.fd, f.ioasId, 2n * P, BigInt(buf)), 'EFAULT');
      f.mm.munmap(buf, 4096);
      throwsErrno(() => mapAuto(f.fd, f.ioasId, 2n * P, BigInt(buf)), 'EFAULT');
      assert.equal(f.fd.pinnedPages, 1, 'the failed maps left nothing pinned');
    });

    it(`${name('all_aligns')}: every start and end page of the buffer maps the right pages, pinned once`, () => {
      const f = mockDomainFixture(variant);
      const size = 8n * P;
      for (let start = 0n; start < size; start += P) {
        for (let end = start + P; end <= size; end += P) {
          const iova = mapAuto(f.fd, f.ioasId, end - start, BUFFER + start);
          f.checkIova(BUFFER + start, iova, end - start);
          for (let off = start; off < end; off += P) assert.equal(f.fd.pinCount(BUFFER + off), 1);
          unmap(f.fd, f.ioasId, iova, end - start);
        }
      }
      for (let off = 0n; off < size; off += P) assert.equal(f.fd.pinCount(BUFFER + off), 0);
    });

    it(`${name('all_aligns_copy')}: a domain added while the area exists is filled with the same translations`, () => {
      const f = mockDomainFixture(variant);
      const size = 8n * P;
      for (let start = 0n; start < size; start += 2n * P) {
        for (let end = start + P; end <= size; end += 3n * P) {
          const iova = mapAuto(f.fd, f.ioasId, end - start, BUFFER + start);
          // VT-d would reuse the compatible auto domain for a new device, so the new domain is allocated.
          const { hwptId } = f.fd.hwptAlloc({ devId: f.devs[0]!.devId, ptId: f.ioasId });
          const spare = f.fd.bindDevice('00:03.0');
          spare.attachPt({ ptId: hwptId });
          f.checkIova(BUFFER + start, iova, end - start, spare);
          spare.close();
          f.fd.destroy(hwptId);
          unmap(f.fd, f.ioasId, iova, end - start);
        }
      }
    });

    it(`${name('user_copy')}: pages mapped in a domain-less IOAS, copied into the device's IOAS, outlive the source`, () => {
      const f = mockDomainFixture(variant);
      const { ioasId: ioas2 } = f.fd.ioasAlloc();
      const src = mapAuto(f.fd, ioas2, BUFFER_SIZE);
      f.fd.ioasCopy({ flags: FIXED_RW, dstIoasId: f.ioasId, srcIoasId: ioas2, length: BUFFER_SIZE, dstIova: BASE, srcIova: src });
      f.checkIova(BUFFER, BASE, BUFFER_SIZE);
      f.fd.destroy(ioas2);
      f.checkIova(BUFFER, BASE, BUFFER_SIZE);
      unmap(f.fd, f.ioasId, BASE, BUFFER_SIZE);
    });

    it(`${name('replace')}: an auto domain dies with its last device; replacing to the same IOAS is a no-op`, () => {
      const f = mockDomainFixture(variant);
      const { ioasId: ioas2 } = f.fd.ioasAlloc();
      const dev0 = f.devs[0]!;
      const auto2 = dev0.attachPt({ ptId: ioas2 }).ptId;
      if (variant === 'one_domain') {
        throwsErrno(() => dev0.attachPt({ ptId: f.hwptIds[0]! }), 'ENOENT');
      } else {
        // VT-d: the two devices shared one auto domain, which the second device still holds.
        assert.equal(f.hwptIds[0], f.hwptIds[1]);
        dev0.attachPt({ ptId: f.hwptIds[1]! });
        dev0.attachPt({ ptId: f.hwptIds[1]! });
        dev0.attachPt({ ptId: f.hwptIds[0]! });
      }
      const again = dev0.attachPt({ ptId: ioas2 }).ptId;
      if (variant === 'one_domain') assert.equal(again, auto2, 'still attached there: replacing with the same HWPT changes nothing');
      dev0.attachPt({ ptId: f.ioasId });
      f.fd.destroy(ioas2);
    });

    it(`${name('alloc_hwpt')}: user HWPTs are busy while attached and survive detach`, () => {
      const f = mockDomainFixture(variant);
      for (const dev of f.devs) {
        throwsErrno(() => f.fd.hwptAlloc({ devId: dev.devId, ptId: f.ioasId, flags: ~1 >>> 0 }), 'EOPNOTSUPP');
        const h0 = f.fd.hwptAlloc({ devId: dev.devId, ptId: f.ioasId }).hwptId;
        const h1 = f.fd.hwptAlloc({ devId: dev.devId, ptId: f.ioasId, flags: 1 }).hwptId;
        dev.attachPt({ ptId: h0 });
        throwsErrno(() => f.fd.destroy(h0), 'EBUSY');
        dev.attachPt({ ptId: h1 });
        throwsErrno(() => f.fd.destroy(h1), 'EBUSY');
        dev.attachPt({ ptId: f.ioasId });
        f.fd.destroy(h1);
        const spare = f.fd.bindDevice('00:03.0');
        spare.attachPt({ ptId: h0 });
        spare.close();
        f.fd.destroy(h0);
      }
    });
  });
}
